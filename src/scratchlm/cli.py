"""The `scratchlm` command: tools around a pretraining run (the recipes themselves stay scripts)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ScratchError, quiet_progress_bars_off_a_terminal, run_cli


def _log_to_stdout() -> None:
    logging.basicConfig(format="%(message)s", handlers=[logging.StreamHandler(sys.stdout)], level=logging.INFO)
    quiet_progress_bars_off_a_terminal()  # as in a run: "Loading weights" bars, say


# ---------------------------------------------------------------------------------------------
# What each subcommand does: cmd_*(its parsed arguments, the setting flags it passes on to a config)
# ---------------------------------------------------------------------------------------------
def cmd_plot(args, overrides: list[str]) -> None:
    from .plotting import check_reference_path, plot_run, write_reference

    if args.write_reference:
        check_reference_path(args.write_reference)  # before anything is drawn
    written, drawn = plot_run(args.run_dir, args.out, args.compare, reference=not args.no_reference)
    for path in written:
        print(path)
    for role, curve in drawn:
        if role == "reference":
            print(f"drawn behind it: the reference curve of {curve['name']}")
    if args.write_reference:
        print(write_reference(args.run_dir, args.write_reference, args.run_dir.name))


def cmd_find_lr(args, overrides: list[str]) -> None:
    from .lr_finder import find_lr

    out = args.out or Path("outputs") / f"{args.config.stem}-lr-find"
    result = find_lr(args.config, overrides, out, args.min_lr, args.max_lr, args.steps, overwrite=args.overwrite)
    print(
        f"suggested learning_rate: {result['suggested_lr']:.2e} with warmup + cosine (a tenth of the lowest smoothed "
        f"loss's {result['min_loss_lr']:.2e}); {result['one_cycle_lr']:.2e} with --lr_scheduler_type one_cycle; "
        f"steepest descent at {result['steepest_lr']:.2e}"
    )


def cmd_overfit(args, overrides: list[str]) -> None:
    from .overfit import overfit, write_result

    result = overfit(args.config, args.text, overrides, max_steps=args.steps, target=args.target)
    write_result(result, args.json)
    if not result["memorised"]:
        raise ScratchError(
            f"{args.config}: the model did not memorise {args.text.name} in {result['steps']} steps "
            f"(loss {result['final_loss']:.3f}, target {args.target}); see the log above"
        )


def cmd_prepare(args, overrides: list[str]) -> None:
    from .data.prepared import prepare
    from .objectives import parse_run_settings

    settings = parse_run_settings(["--config", str(args.config), *overrides])
    if settings.model.init_from:  # tokenized as the run that starts from that model will read it
        from .recipe import tokenizer_of_the_model

        tokenizer_of_the_model(settings.model.init_from, settings.tokenizer, settings.objective)
    manifest = prepare(
        settings.data,
        settings.tokenizer,
        settings.objective,
        args.out,
        num_proc=args.num_proc,
        shard_tokens=args.shard_tokens,
        overwrite=args.overwrite,
    )
    print(
        f"{manifest['splits']['train']['tokens']:,} train tokens in {len(manifest['splits']['train']['shards'])} "
        f"shards; train with --prepared_data {args.out}"
    )


def cmd_plan(args, overrides: list[str]) -> None:
    from .planner import format_plan, make_plan, measure_tokens_per_second

    options = dict(
        gpu=args.gpu,
        hours=args.hours,
        flops=args.flops,
        num_gpus=args.num_gpus,
        mfu=args.mfu,
        context=args.context,
        vocab=args.vocab,
        global_batch_tokens=args.global_batch_tokens,
        corpus_tokens=args.corpus_tokens,
        fused_loss=args.fused_loss,
    )
    plan = make_plan(**options)
    if args.measure:
        measured = measure_tokens_per_second(plan.shape, plan.context, args.vocab, plan.micro_batch)
        plan = make_plan(**options, measured_tokens_per_second=measured)
    print(format_plan(plan))
    if args.json:
        args.json.write_text(json.dumps(plan.as_dict(), indent=2) + "\n")


def cmd_generate(args, overrides: list[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .evaluation import load_for_eval
    from .generation import generate_samples
    from .precision import cuda_computes_bf16

    if Path(args.model_dir).exists():
        model, tokenizer, causal = load_for_eval(Path(args.model_dir), args.trust_remote_code)
        if not causal:
            raise ScratchError(
                f"{args.model_dir} is a masked LM ({', '.join(model.config.architectures or [])}): "
                "scratchlm generate samples from causal LMs; score a masked LM with scratchlm eval"
            )
    else:
        from .hub import require_hub

        require_hub(f"model {args.model_dir} (not a local directory)", fix="check the path")
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, trust_remote_code=args.trust_remote_code)
    if torch.cuda.is_available():  # bf16 only where the GPU computes it; emulated, it is slower than float32
        model = model.to("cuda", dtype=torch.bfloat16 if cuda_computes_bf16() else torch.float32)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    sampling = {"do_sample": not args.greedy, "repetition_penalty": args.repetition_penalty}
    if not args.greedy:
        sampling.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    else:
        sampling.update(temperature=None, top_k=None, top_p=None)
    prompts = [p for p in args.prompt for _ in range(args.num_samples)]
    samples = generate_samples(model, tokenizer, prompts, args.max_new_tokens, seed=args.seed, **sampling)
    for row in samples.rows():
        print(row["text"])
        print(f"  [distinct-2 {row['distinct_2']:.2f}, repeated 4-gram share {row['repeated_4gram_share']:.2f}]")


def cmd_inspect_tokenizer(args, overrides: list[str]) -> None:
    from .tokenizer import REPORT_FILE, load_tokenizer

    tokenizer = load_tokenizer(str(args.tokenizer_dir), required=(), argument="tokenizer folder")
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    print(
        f"{args.tokenizer_dir}: {type(tokenizer).__name__}, {len(tokenizer)} tokens, "
        f"model {backend['model']['type']}, normalizer {(backend.get('normalizer') or {}).get('type')}"
    )
    print("special tokens:", ", ".join(f"{k}={v!r}" for k, v in tokenizer.special_tokens_map.items()))
    report = Path(args.tokenizer_dir) / REPORT_FILE
    if report.is_file():
        for key, value in json.loads(report.read_text(encoding="utf-8")).items():
            print(f"  {key:32s} {value}")
    for text in args.text or []:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = [tokenizer.decode([i]) for i in ids]
        print(f"{text!r}: {len(ids)} tokens, {len(text) / max(len(ids), 1):.2f} chars/token")
        print("  " + " | ".join(pieces))
        print("  ids: " + " ".join(map(str, ids)))


def cmd_eval(args, overrides: list[str]) -> None:
    from .evaluation import EVAL_FILE, format_table, run_eval

    results = run_eval(
        args.model_dir,
        minimal_pairs=args.minimal_pairs,
        text=args.text,
        trust_remote_code=args.trust_remote_code,
        per_paradigm=args.per_paradigm,
        seed=args.seed,
    )
    print(format_table(results))
    print(
        f"written: {args.model_dir / EVAL_FILE}"
        + (" and the card's Evaluation section" if (args.model_dir / "README.md").is_file() else "")
    )


def cmd_export(args, overrides: list[str]) -> None:
    from .export import export_gguf

    path = export_gguf(args.model_dir, args.out, args.dtype)
    print(f"written: {path} ({path.stat().st_size / 2**20:.1f} MiB); run it with llama.cpp: llama-cli -m {path}")


def cmd_stop(args, overrides: list[str]) -> None:
    from .checkpoints import checkpoint_problem, checkpoints_newest_first
    from .runlock import stop_run

    holder = stop_run(args.run_dir, wait=args.wait)
    print(
        f"sent SIGTERM to pid {holder['pid']}, the run training into {args.run_dir}: it finishes its step, saves a "
        "checkpoint and stops (before its first step, it stops at once)"
    )
    if args.wait:
        newest = next((c for c in checkpoints_newest_first(args.run_dir) if checkpoint_problem(c) is None), None)
        print(f"stopped; newest complete checkpoint: {newest or 'none'}")


# ---------------------------------------------------------------------------------------------
# Each subcommand's arguments
# ---------------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def plot_arguments(plot: argparse.ArgumentParser) -> None:
    plot.add_argument("run_dir", type=Path, help="A run's output_dir (or one with checkpoint-* folders).")
    plot.add_argument("--out", type=Path, default=None, help="Where the PNGs go (default: RUN_DIR/plots).")
    plot.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="Another run's output_dir (or a curve JSON) to draw on the loss plot, by tokens seen; repeat for several.",
    )
    plot.add_argument(
        "--no_reference", action="store_true", help="Leave out the shipped reference curve of the run's config."
    )
    plot.add_argument(
        "--write_reference",
        type=Path,
        help="Also save this run's loss curve and settings as a curve JSON (for --compare, or as a reference).",
    )


def find_lr_arguments(find_lr: argparse.ArgumentParser) -> None:
    find_lr.add_argument("config", type=Path, help="A pretraining recipe's YAML config.")
    find_lr.add_argument("--steps", type=int, default=200, help="Steps from --min_lr to --max_lr (default 200).")
    find_lr.add_argument("--min_lr", type=float, default=1e-6)
    find_lr.add_argument("--max_lr", type=float, default=1e-1)
    find_lr.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Output folder for lr_find.png/json (default: outputs/<config name>-lr-find).",
    )
    find_lr.add_argument("--overwrite", action="store_true", help="Write into an existing --out folder.")


def overfit_arguments(over: argparse.ArgumentParser) -> None:
    over.add_argument("config", type=Path, help="A causal pretraining recipe's YAML config.")
    over.add_argument("--text", type=Path, required=True, help="A small text file, e.g. The Verdict (20 KB).")
    over.add_argument("--steps", type=positive_int, default=500, help="Full-batch steps at most (default 500).")
    over.add_argument("--target", type=float, default=0.1, help="Training loss that counts as memorised (nats/token).")
    over.add_argument("--json", type=Path, help="Also write the result as JSON.")


def prepare_arguments(prep: argparse.ArgumentParser) -> None:
    prep.add_argument("config", type=Path, help="The pretraining recipe's YAML config (tokenizer, corpus, block size).")
    prep.add_argument("--out", type=Path, required=True, help="Folder for the shards and prepared.json.")
    prep.add_argument(
        "--num_proc", type=positive_int, default=None, help="Tokenizing processes (default: CPU count, max 8)."
    )
    prep.add_argument(
        "--shard_tokens", type=positive_int, default=100_000_000, help="Tokens per shard file (default 1e8)."
    )
    prep.add_argument("--overwrite", action="store_true", help="Replace an existing --out folder.")


def plan_arguments(plan: argparse.ArgumentParser) -> None:
    plan.add_argument("--gpu", help="GPU type, e.g. H100, A100, L4 (with --hours).")
    plan.add_argument("--hours", type=float, help="GPU hours per GPU.")
    plan.add_argument("--num_gpus", type=positive_int, default=1)
    plan.add_argument("--flops", type=float, help="Or the budget in FLOPs.")
    plan.add_argument("--mfu", type=float, default=0.35, help="Model FLOPs utilisation to assume (default 0.35).")
    plan.add_argument("--context", type=int, default=1024)
    plan.add_argument("--vocab", type=int, default=50304)
    plan.add_argument("--global_batch_tokens", type=int, default=524288, help="Target tokens per optimizer step.")
    plan.add_argument("--corpus_tokens", type=float, help="Tokens in your corpus, to warn when it is too small.")
    plan.add_argument(
        "--fused_loss", action="store_true", help="Size the micro-batch for a run with --fused_loss (no full logits)."
    )
    plan.add_argument("--measure", action="store_true", help="Measure throughput of the planned shape here.")
    plan.add_argument("--json", type=Path, help="Also write the plan as JSON.")


def generate_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("model_dir", help="A model directory (or Hub id, online).")
    gen.add_argument("--prompt", action="append", required=True, help="Prompt; repeat for several.")
    gen.add_argument("--max_new_tokens", type=positive_int, default=64)
    gen.add_argument("--temperature", type=positive_float, default=0.8)
    gen.add_argument("--top_k", type=non_negative_int, default=50, help="0: no top-k cut.")
    gen.add_argument("--top_p", type=share, default=0.95)
    gen.add_argument("--repetition_penalty", type=positive_float, default=1.1)
    gen.add_argument("--greedy", action="store_true", help="Greedy decoding instead of sampling.")
    gen.add_argument("--num_samples", type=positive_int, default=1, help="Samples per prompt.")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--trust_remote_code", action="store_true", help="For checkpoints that carry their own code.")


def eval_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("model_dir", type=Path, help="A run's output_dir, or one of its checkpoint-N folders.")
    ev.add_argument(
        "--minimal_pairs",
        help="Minimal pairs: a folder of jsonl files (one per paradigm, as BLiMP), one jsonl file, or a Hub dataset.",
    )
    ev.add_argument(
        "--text",
        type=Path,
        help="A UTF-8 text file: the model's bits per byte and per character on it, beside the unigram bar.",
    )
    ev.add_argument("--per_paradigm", type=positive_int, help="Score a seeded sample of this many pairs per paradigm.")
    ev.add_argument("--seed", type=int, default=0, help="Seed of that sample (default 0).")
    ev.add_argument("--trust_remote_code", action="store_true", help="For checkpoints that carry their own code.")


def export_arguments(ex: argparse.ArgumentParser) -> None:
    ex.add_argument("model_dir", type=Path, help="A causal run's output_dir, or one of its checkpoint-N folders.")
    ex.add_argument("--to", choices=["gguf"], default="gguf", help="The format (gguf: llama.cpp, Ollama, LM Studio).")
    ex.add_argument(
        "--dtype", choices=["f32", "f16", "bf16", "q8_0"], default="f16", help="Weights' type (default f16)."
    )
    ex.add_argument("--out", type=Path, help="The file to write (default: MODEL_DIR/<name>-<dtype>.gguf).")


def stop_arguments(stop: argparse.ArgumentParser) -> None:
    stop.add_argument("run_dir", type=Path, help="The --output_dir of a run that is training now.")
    stop.add_argument("--wait", action="store_true", help="Return once the run has saved its checkpoint and exited.")


def inspect_tokenizer_arguments(inspect: argparse.ArgumentParser) -> None:
    inspect.add_argument("tokenizer_dir", type=Path)
    inspect.add_argument("--text", action="append", help="Show how this text is split; repeat for several.")


# ---------------------------------------------------------------------------------------------
# The command table: one entry per subcommand, one dispatch
# ---------------------------------------------------------------------------------------------
OVERRIDES = "The config may also be given as --config FILE. Other flags ({}) override it, as in the recipes."


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], None]
    overrides: str | None = None  # for commands that take a config: examples of the setting flags they pass on


COMMANDS = [
    Command(
        "plot", "PNG plots of a run: loss vs the unigram bar, learning rate, throughput.", plot_arguments, cmd_plot
    ),
    Command(
        "find-lr",
        "LR range test on a pretraining config's model and data; suggests a peak learning rate.",
        find_lr_arguments,
        cmd_find_lr,
        overrides="e.g. --train_files, --max_train_samples",
    ),
    Command(
        "overfit",
        "Can the config's model memorise one small text? Trains on it until the loss is near zero, then samples.",
        overfit_arguments,
        cmd_overfit,
        overrides="e.g. --n_embd 128, --learning_rate 3e-3",
    ),
    Command(
        "prepare",
        "Tokenize and pack a corpus once into sharded memory-mapped files (--prepared_data DIR).",
        prepare_arguments,
        cmd_prepare,
        overrides="e.g. --train_files 'corpus/*.txt', --block_size",
    ),
    Command(
        "plan", "Compute-optimal model size, tokens, shape, batch and wall time for a budget.", plan_arguments, cmd_plan
    ),
    Command(
        "stop",
        "Stop a run that is training (it saves a checkpoint first); safe under accelerate launch.",
        stop_arguments,
        cmd_stop,
    ),
    Command("generate", "Sample from a causal LM checkpoint (ours or stock).", generate_arguments, cmd_generate),
    Command(
        "eval",
        "What did the model learn? Minimal-pair accuracy beside the unigram bar, and bits per byte of a text.",
        eval_arguments,
        cmd_eval,
    ),
    Command(
        "export",
        "A causal model and its tokenizer as one GGUF file for llama.cpp (gpt2, llama, qwen3, scratch_decoder).",
        export_arguments,
        cmd_export,
    ),
    Command(
        "inspect-tokenizer",
        "A tokenizer's type, size, special tokens, report and splits.",
        inspect_tokenizer_arguments,
        cmd_inspect_tokenizer,
    ),
]
BY_NAME = {command.name: command for command in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scratchlm", description="Tools around pretraining runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        epilog = OVERRIDES.format(command.overrides) if command.overrides else None
        command.arguments(sub.add_parser(command.name, help=command.help, epilog=epilog))
    return parser


def config_flag_first(argv: list[str]) -> list[str]:
    """`find-lr --config FILE ...`, as the recipes take it, is `find-lr FILE ...`: the config must come first,
    or argparse takes the value of the first setting flag passed on (such as --train_files F) for it."""
    if not argv or argv[0] not in BY_NAME or not BY_NAME[argv[0]].overrides:  # the commands that take a config
        return argv
    rest = argv[1:]
    for index, token in enumerate(rest):
        if token == "--config" and index + 1 < len(rest):
            return [argv[0], rest[index + 1], *rest[:index], *rest[index + 2 :]]
        if token.startswith("--config="):
            return [argv[0], token.split("=", 1)[1], *rest[:index], *rest[index + 1 :]]
    return argv


def _main(argv: list[str]) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(config_flag_first(list(argv)))
    command = BY_NAME[args.command]
    if extra and not command.overrides:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _log_to_stdout()
    command.run(args, extra)


def main(argv: list[str] | None = None) -> None:
    run_cli(_main, argv)


if __name__ == "__main__":
    main()
