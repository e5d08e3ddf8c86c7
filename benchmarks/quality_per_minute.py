#!/usr/bin/env python
"""What buys the most held-out quality per minute of training: the GPT-2 demo against one lever at a time
(model family, optimizer, schedule, learning rate and batch, vocabulary size) and the best combinations, each
arm given the same minutes of training on this machine.

    python benchmarks/quality_per_minute.py --corpus zh_demo --minutes 9        # the demo's budget per arm
    python benchmarks/quality_per_minute.py --corpus python_docs --minutes 3
    python benchmarks/quality_per_minute.py --corpus python_docs --tiny         # checks the code path
    python benchmarks/quality_per_minute.py --config recipes/pretrain_gpt2_zh/config_demo.yaml --arms tuning

The second round, `--arms tuning`, starts from a config that already trains with Muon (the demo as the
first round chose it) and turns its remaining knobs: Muon's rate, AdamW's rate on the embeddings and output
layer, and the batch. `--arms decoder` puts the speedrun records' levers, options of scratch_decoder (GPT-2's
architecture without them), on top of a config, and a wider and a deeper model in the same minutes.
`--arms data` trains the config on document-aligned blocks (`--packing aligned`) against its joined ones.
`--arms schedule_and_size` moves how the config spends its steps (the decay's length and shape, warmup,
weight decay) and tries a narrower and a shallower model, which take more steps in the same minutes.
`--arms size_and_vocab` cuts the output layer (a narrower model, a smaller vocabulary) and tries a deeper
one; `--arms rates_and_shape` moves the learning rates and batch again at the narrow shape that round
chose, tries AdamW alone, and a narrower and a shallower model still.

Every arm is `recipes/pretrain_gpt2_zh.py --config CONFIG` (by default
benchmarks/quality_per_minute_baseline.yaml, the GPT-2 demo config as it was before these measurements chose
its levers) plus its flags, launched as a user
launches it, one arm at a time (arms running side by side would share the cores). Before the timed runs, a
short run per arm shape trains its tokenizer, packs the data cache and measures its tokens/s, so the timed
run's `max_steps` fills the budget and its schedule ends where the budget does. Minutes are the recipe's own
`train_seconds`: training only, evaluations and samples left out. Quality is held-out bits per character,
which compares across vocabulary sizes.

The combinations are built from the measurements: `best_gpt2` (`best_llama`, ... after the config's own
family) stacks, from each group but the family, the arm that beat the baseline by the most (none if none
did); `best` puts the same on the best family.
Prints a table and writes JSON and a PNG of held-out bits/char against minutes for every arm.
`--eval_minimal_pairs PAIRS` scores minimal pairs at every evaluation of every arm and adds their final
accuracy, beside the unigram bar, to the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from scratchlm.objectives import parse_run_settings
from scratchlm.plotting import load_history, pyplot

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/pretrain_gpt2_zh.py"
BASELINE_CONFIG = ROOT / "benchmarks/quality_per_minute_baseline.yaml"  # the demo config before these measurements

# name: (group, flags on top of the base config). Flags are a dict so that combinations merge them.
LEVER_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "baseline": ("baseline", {}),
    "llama": ("family", {"--model_type": "llama"}),
    "qwen3": ("family", {"--model_type": "qwen3"}),
    "muon": ("optimizer", {"--optim": "muon"}),
    "wsd": ("schedule", {"--lr_scheduler_type": "warmup_stable_decay"}),
    "linear": ("schedule", {"--lr_scheduler_type": "linear"}),
    "lr_2e-3": ("lr_batch", {"--learning_rate": "2e-3"}),
    "batch_16": ("lr_batch", {"--per_device_train_batch_size": "16"}),
    "vocab_4k": ("vocab", {"--vocab_size": "4000"}),
    "vocab_16k": ("vocab", {"--vocab_size": "16000"}),
}
# --arms tuning: on top of a config that already trains with Muon
TUNING_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "muon_lr_0.01": ("muon_lr", {"--muon_learning_rate": "0.01"}),
    "muon_lr_0.04": ("muon_lr", {"--muon_learning_rate": "0.04"}),
    "adamw_lr_3e-3": ("adamw_lr", {"--learning_rate": "3e-3"}),
    "adamw_lr_1e-2": ("adamw_lr", {"--learning_rate": "1e-2"}),
    "adamw_lr_3e-2": ("adamw_lr", {"--learning_rate": "3e-2"}),
    "batch_4": ("batch", {"--per_device_train_batch_size": "4"}),
}
# --arms decoder: the speedrun records' levers as options of scratch_decoder (which, without them, is GPT-2's
# architecture), and a wider and a deeper GPT-2 in the same minutes
SCRATCH = {"--model_type": "scratch_decoder"}
DECODER_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "scratch_decoder": ("family", SCRATCH),
    "relu2": ("activation", {**SCRATCH, "--hidden_act": "relu2"}),
    "qk_norm": ("qk_norm", {**SCRATCH, "--qk_norm": "true"}),
    "zero_init": ("init", {**SCRATCH, "--zero_init_projections": "true"}),
    "untied_head": ("head", {**SCRATCH, "--tie_word_embeddings": "false"}),
    "softcap_15": ("softcap", {**SCRATCH, "--logit_softcap": "15"}),
    "rotary": ("positions", {**SCRATCH, "--position_embedding": "rotary"}),
    "wider_320": ("shape", {"--n_embd": "320", "--n_head": "5"}),
    "deeper_6": ("shape", {"--n_layer": "6"}),
}
# --arms data: how documents become training blocks (shifted windows would undo aligned blocks)
DATA_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "aligned": ("packing", {"--packing": "aligned", "--window_order": "fixed"}),
}
# Fourth round: how the demo spends its steps (the decay's length and shape, warmup, weight decay) and a
# smaller model that takes more of them in the same minutes.
SCHEDULE_AND_SIZE_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "decay_40": ("decay", {"--lr_scheduler_kwargs": '{"num_decay_steps": 0.4}'}),
    "decay_1-sqrt": ("decay", {"--lr_scheduler_kwargs": '{"decay_type": "1-sqrt"}'}),
    "decay_40_1-sqrt": ("decay", {"--lr_scheduler_kwargs": '{"num_decay_steps": 0.4, "decay_type": "1-sqrt"}'}),
    "no_warmup": ("warmup", {"--warmup_steps": "0"}),
    "weight_decay_0": ("weight_decay", {"--weight_decay": "0"}),
    "narrower_192": ("size", {"--n_embd": "192", "--n_head": "3"}),
    "shallower_3": ("size", {"--n_layer": "3"}),
}
# Fifth round, from the 192-wide demo, whose tied 16k x 192 head costs more per token than its four blocks:
# a narrower model still, a smaller vocabulary (a cheaper head, more tokens per character) and more depth.
SIZE_AND_VOCAB_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "narrower_128": ("size", {"--n_embd": "128", "--n_head": "2"}),
    "vocab_8k": ("vocab", {"--vocab_size": "8000"}),
}
# Sixth round, from the 128-wide demo with the 8k vocabulary: the rates chosen at 256 wide, the batch and
# a smaller model still, which the step's cost at this shape may have moved; and AdamW alone,
# since Muon's float32 orthogonalisation costs a CPU without bf16 units more than the bf16 one cost the
# hosts where Muon was chosen.
RATES_AND_SHAPE_ARMS: dict[str, tuple[str, dict[str, str]]] = {
    "adamw_1e-3": ("optimizer", {"--optim": "adamw_torch_fused", "--learning_rate": "1e-3"}),
    "adamw_2e-3": ("optimizer", {"--optim": "adamw_torch_fused", "--learning_rate": "2e-3"}),
    "muon_lr_0.02": ("muon_lr", {"--muon_learning_rate": "0.02"}),
    "adamw_lr_2e-2": ("adamw_lr", {"--learning_rate": "2e-2"}),
    "narrower_96": ("size", {"--n_embd": "96", "--n_head": "2"}),
}
ARMS = {
    **LEVER_ARMS,
    **TUNING_ARMS,
    **DECODER_ARMS,
    **DATA_ARMS,
    **SCHEDULE_AND_SIZE_ARMS,
    **SIZE_AND_VOCAB_ARMS,
    **RATES_AND_SHAPE_ARMS,
}
ARM_SETS = {
    "levers": list(LEVER_ARMS),
    "tuning": ["baseline", *TUNING_ARMS],
    "decoder": ["baseline", *DECODER_ARMS],
    "data": ["baseline", *DATA_ARMS],
    "schedule_and_size": ["baseline", *SCHEDULE_AND_SIZE_ARMS],
    "size_and_vocab": ["baseline", *SIZE_AND_VOCAB_ARMS, "deeper_6"],
    "rates_and_shape": ["baseline", *RATES_AND_SHAPE_ARMS, "shallower_3", "batch_16"],
}
# Flags that change what a step learns but not what it costs: arms differing only in these share a
# throughput measurement.
SPEED_NEUTRAL = {
    "--lr_scheduler_type",
    "--learning_rate",
    "--muon_learning_rate",
    "--warmup_steps",
    "--lr_scheduler_kwargs",
    "--weight_decay",
    "--packing",
    "--window_order",
}
PROMPTS = {
    "zh_demo": ["中国经济", "今天", "这本书", "我们要"],
    "python_docs": ["The function", "Return the", "This module", "If the"],
}
EVALUATIONS = 6  # per timed run: the points of each curve
UNIGRAM_PAIRS = "eval_minimal_pairs_unigram_accuracy"
TINY = {
    "--n_layer": "1",
    "--n_embd": "32",
    "--n_head": "2",
    "--block_size": "32",
    "--max_eval_samples": "8",
    "--sample_max_new_tokens": "8",
    "--max_train_samples": "2000",
}


class Base:
    """The config every arm starts from, and the settings of it that the benchmark itself needs, as the
    recipe resolves them (its defaults included)."""

    def __init__(self, path: Path):
        self.path = path.resolve()
        settings = parse_run_settings(["--config", str(self.path)])
        self.vocab = settings.tokenizer.vocab_size
        self.batch = settings.training.per_device_train_batch_size
        self.block = settings.data.block_size
        self.family = settings.model.model_type


def launch(base: Base, flags: dict[str, str], work: Path, out: Path, log: Path) -> list[dict]:
    """Runs the recipe with the base config plus `flags`; returns its log history."""
    vocab = int(flags.get("--vocab_size", base.vocab))
    # named by corpus too: a --work_dir reused for another corpus must not tokenize it with this one's BPE
    tokenizer = work / f"tokenizer-{flags['--corpus']}-{vocab}"
    argv = {"--tokenizer_name_or_path": str(tokenizer), "--vocab_size": str(vocab), **flags}
    argv["--output_dir"] = str(out)
    command = [sys.executable, str(RECIPE), "--config", str(base.path)]
    for flag, value in argv.items():
        command += [flag, *value] if isinstance(value, list) else [flag, value]
    env = {**os.environ, "SCRATCHLM_CACHE": str(work / "cache"), "HF_DATASETS_CACHE": str(work / "hf")}
    with log.open("w", encoding="utf-8") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-30:]
        sys.exit(f"arm failed (log: {log}):\n" + "\n".join(tail))
    return load_history(out)


def tokens_per_step(base: Base, flags: dict[str, str]) -> int:
    return int(flags.get("--per_device_train_batch_size", base.batch)) * int(flags.get("--block_size", base.block))


def measure_speed(base: Base, flags: dict[str, str], work: Path, name: str) -> float:
    """Tokens/s of the arm's shape over steps 11-40 (the first 10 carry allocation and warm-up)."""
    probe = {**flags, "--max_steps": "40", "--logging_steps": "10", "--eval_strategy": "no"}
    probe.update({"--save_strategy": "no", "--sample_max_new_tokens": "4", "--max_eval_samples": "8"})
    out = work / "probe" / name
    history = launch(base, probe, work, out, work / "logs" / f"probe-{name}.log")
    shutil.rmtree(out)  # so that a later run in the same --work_dir reuses its tokenizers and cache
    rates = [e["tokens_per_second"] for e in history if "tokens_per_second" in e and e["step"] > 10]
    return sorted(rates)[len(rates) // 2]


def timed_run(base: Base, name: str, flags: dict[str, str], speed: float, minutes: float, work: Path) -> dict:
    per_step = tokens_per_step(base, flags)
    unit = EVALUATIONS * 10  # evaluations fall on logged steps, so each has train_seconds beside it
    steps = max(unit, round(minutes * 60 * speed / per_step / unit) * unit)
    run = {**flags, "--max_steps": str(steps), "--eval_steps": str(steps // EVALUATIONS), "--logging_steps": "10"}
    run.update({"--save_strategy": "no"})
    out = work / "runs" / name
    started = time.perf_counter()
    history = launch(base, run, work, out, work / "logs" / f"{name}.log")
    wall = time.perf_counter() - started
    trained = {e["step"]: e["train_seconds"] for e in history if "train_seconds" in e}
    curve = [
        {
            "step": e["step"],
            "minutes": round(trained[e["step"]] / 60, 3),
            "bits_per_char": e["eval_bits_per_char"],
            "eval_loss": e["eval_loss"],
            "minimal_pairs_accuracy": e.get("eval_minimal_pairs_accuracy"),
        }
        for e in history
        if "eval_bits_per_char" in e and e["step"] in trained
    ]
    samples_file = out / "samples.json"
    samples = json.loads(samples_file.read_text(encoding="utf-8")) if samples_file.is_file() else {}
    unigram = next((e["eval_unigram_loss"] for e in history if "eval_unigram_loss" in e), None)
    pairs_bar = next((e[UNIGRAM_PAIRS] for e in history if UNIGRAM_PAIRS in e), None)
    shutil.rmtree(out)  # the curve is kept; the weights of a dozen arms are not worth the disk
    return {
        "name": name,
        "group": ARMS[name][0] if name in ARMS else "combination",
        "flags": flags,
        "tokens_per_second": speed,
        "max_steps": steps,
        "tokens": steps * per_step,
        "launch_to_exit_seconds": round(wall, 1),
        "curve": curve,
        "final_bits_per_char": curve[-1]["bits_per_char"],
        "final_eval_loss": curve[-1]["eval_loss"],
        "unigram_loss": unigram,
        "final_minimal_pairs_accuracy": curve[-1]["minimal_pairs_accuracy"],
        "minimal_pairs_unigram_accuracy": pairs_bar,
        "distinct_2": samples.get("distinct_2"),
        "samples": samples.get("samples"),
    }


def minutes_to_reach(curve: list[dict], target: float) -> float | None:
    """First training minute at which the curve, linear between evaluations, is at or below `target`."""
    previous = None
    for point in curve:
        if point["bits_per_char"] <= target:
            if previous is None:
                return point["minutes"]
            drop = previous["bits_per_char"] - point["bits_per_char"]
            share = (previous["bits_per_char"] - target) / drop if drop > 0 else 1.0
            return previous["minutes"] + share * (point["minutes"] - previous["minutes"])
        previous = point
    return None


def combinations(results: dict[str, dict], config_family: str = "gpt2") -> dict[str, dict[str, str]]:
    """`best_{config_family}`: each group's winner over the baseline stacked on the config, whose model family
    is `config_family`; `best`: the same on the best family arm."""
    baseline = results["baseline"]["final_bits_per_char"]
    winners: dict[str, dict] = {}
    for result in results.values():
        group = result["group"]
        if group in ("baseline", "combination") or result["final_bits_per_char"] >= baseline:
            continue
        if group not in winners or result["final_bits_per_char"] < winners[group]["final_bits_per_char"]:
            winners[group] = result
    family = winners.pop("family", None)
    stacked: dict[str, str] = {}
    for winner in winners.values():
        stacked.update(winner["flags"])
    combined = {}
    if len(winners) > 1:  # one winner alone is already an arm
        combined[f"best_{config_family}"] = stacked
    if family is not None and winners and {**family["flags"], **stacked} != stacked:
        combined["best"] = {**family["flags"], **stacked}
    return combined


def table(results: dict[str, dict], title: str) -> str:
    baseline = results["baseline"]
    target = baseline["final_bits_per_char"]
    with_pairs = any(r.get("final_minimal_pairs_accuracy") is not None for r in results.values())
    lines = [
        title,
        "",
        "| arm | flags | tokens/s | steps | minutes | bits/char | vs baseline | eval loss "
        "| minutes to baseline's final | distinct-2 |" + (" minimal pairs (unigram bar) |" if with_pairs else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_pairs else ""),
    ]
    for r in results.values():
        flags = " ".join(f"{k} {v}" for k, v in r["flags"].items()) or "baseline config"
        reach = minutes_to_reach(r["curve"], target)
        share = f"{reach:.2f} ({reach / baseline['curve'][-1]['minutes']:.0%})" if reach is not None else "not reached"
        distinct = f"{r['distinct_2']:.2f}" if r["distinct_2"] is not None else "-"
        lines.append(
            f"| {r['name']} | `{flags}` | {r['tokens_per_second']:,.0f} | {r['max_steps']} | "
            f"{r['curve'][-1]['minutes']:.2f} | "
            f"{r['final_bits_per_char']:.3f} | {r['final_bits_per_char'] - target:+.3f} | "
            f"{r['final_eval_loss']:.3f} | {share} | {distinct} |" + (f" {pairs_cell(r)} |" if with_pairs else "")
        )
    return "\n".join(lines)


def pairs_cell(result: dict) -> str:
    accuracy, bar = result.get("final_minimal_pairs_accuracy"), result.get("minimal_pairs_unigram_accuracy")
    if accuracy is None:
        return "-"
    return f"{accuracy:.3f}" + (f" ({bar:.3f})" if bar is not None else "")


def side_by_side(reports: list[dict]) -> str:
    """One row per arm, one column pair per corpus: bits/char after the budget and the change from baseline."""
    header = "| arm | " + " | ".join(f"{r['corpus']}: bits/char (vs baseline, minutes)" for r in reports) + " |"
    lines = [header, "|---|" + "---|" * len(reports)]
    names = list(dict.fromkeys(name for r in reports for name in r["arms"]))
    for name in names:
        cells = []
        for report in reports:
            arm, baseline = report["arms"].get(name), report["arms"]["baseline"]
            if arm is None:
                cells.append("-")
                continue
            delta = arm["final_bits_per_char"] - baseline["final_bits_per_char"]
            flags = " ".join(f"{k} {v}" for k, v in arm["flags"].items())
            stacked = f"; `{flags}`" if arm["group"] == "combination" else ""
            cells.append(f"{arm['final_bits_per_char']:.3f} ({delta:+.3f}, {arm['curve'][-1]['minutes']:.2f}){stacked}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(results: dict[str, dict], title: str, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    colours = iter(plt.cm.tab20.colors)  # a dozen arms: the default cycle of ten would repeat
    for r in results.values():
        colour = "black" if r["name"] == "baseline" else next(colours)
        style = {"linewidth": 2.5 if r["name"] == "baseline" else 1.3, "color": colour}
        if r["group"] == "combination":
            style["linestyle"] = "--"
        axes.plot(
            [p["minutes"] for p in r["curve"]],
            [p["bits_per_char"] for p in r["curve"]],
            marker="o",
            markersize=3,
            label=r["name"],
            **style,
        )
    axes.set_xlabel("minutes of training")
    axes.set_ylabel("held-out bits per character")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="zh_demo", help="A built-in corpus: zh_demo, python_docs, ...")
    parser.add_argument("--minutes", type=float, default=9.0, help="Training minutes per arm (the demo's: 9).")
    parser.add_argument("--config", type=Path, default=BASELINE_CONFIG, help="The config every arm starts from.")
    parser.add_argument(
        "--arms",
        default="levers",
        help=f"Comma-separated arm names (baseline, the config itself, always runs), or a set: {', '.join(ARM_SETS)}.",
    )
    parser.add_argument(
        "--eval_minimal_pairs",
        type=Path,
        default=None,
        help="Minimal pairs (a folder or .jsonl of BLiMP-format pairs) scored at every evaluation of every arm: "
        "the table gains their accuracy beside the unigram bar.",
    )
    parser.add_argument("--no_combinations", action="store_true", help="Only the single-lever arms.")
    parser.add_argument("--tiny", action="store_true", help="A 1-layer model on 2,000 blocks: checks the code path.")
    parser.add_argument("--work_dir", type=Path, default=None, help="Tokenizers, cache and logs (default: a temp dir).")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...).")
    parser.add_argument("--redraw", type=Path, default=None, help="Print the table and draw the PNG of a JSON.")
    parser.add_argument("--side_by_side", type=Path, nargs="+", help="One table of the arms of several JSONs.")
    args = parser.parse_args(argv)
    if args.redraw is not None:
        report = json.loads(args.redraw.read_text(encoding="utf-8"))
        publish(report, args.redraw)
        return report
    if args.side_by_side:
        reports = [json.loads(path.read_text(encoding="utf-8")) for path in args.side_by_side]
        print(side_by_side(reports))
        return {"reports": reports}

    if args.arms in ARM_SETS:
        names = ARM_SETS[args.arms]
    else:
        names = ["baseline", *[a for a in args.arms.split(",") if a != "baseline"]]
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        sys.exit(f"--arms: unknown {', '.join(unknown)}; choose from {', '.join(ARMS)} or {', '.join(ARM_SETS)}")
    if not args.config.is_file():
        sys.exit(f"--config: no file {args.config}")
    base = Base(args.config)
    round_name = "" if args.arms == "levers" else f"_{args.arms}" if args.arms in ARM_SETS else "_arms"
    stem = f"quality_per_minute_{args.corpus}{round_name}{'_tiny' if args.tiny else ''}"
    out = args.out or ROOT / "benchmarks/results" / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(f"/tmp/{stem}-{os.getpid()}")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    common = {"--corpus": args.corpus, "--sample_prompts": PROMPTS.get(args.corpus, ["The", "A"])}
    if args.tiny:
        common.update(TINY)
    if args.eval_minimal_pairs is not None:
        if not args.eval_minimal_pairs.exists():
            sys.exit(f"--eval_minimal_pairs: no file or folder {args.eval_minimal_pairs}")
        common["--eval_minimal_pairs"] = str(args.eval_minimal_pairs.resolve())

    speeds: dict[str, float] = {}

    def speed_of(name: str, flags: dict[str, str]) -> float:
        key = json.dumps({k: v for k, v in flags.items() if k not in SPEED_NEUTRAL}, sort_keys=True)
        if key not in speeds:
            speeds[key] = measure_speed(base, flags, work, name)
        return speeds[key]

    results: dict[str, dict] = {}
    report = {
        "corpus": args.corpus,
        "config": str(base.path.relative_to(ROOT) if base.path.is_relative_to(ROOT) else base.path),
        "minutes_per_arm": args.minutes,
        "tiny": args.tiny,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "arms": results,
    }

    def run(name: str, flags: dict[str, str]) -> None:
        full = {**common, **flags}
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {flags or 'baseline config'}", flush=True)
        results[name] = timed_run(base, name, full, speed_of(name, full), args.minutes, work)
        results[name]["flags"] = flags
        print(f"    bits/char {results[name]['final_bits_per_char']:.4f}", flush=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    for name in names:
        run(name, ARMS[name][1])
    if not args.no_combinations:
        for name, flags in combinations(results, base.family).items():
            run(name, flags)

    publish(report, out)
    return report


def publish(report: dict, out: Path) -> None:
    title = f"{report['corpus']}: {report['minutes_per_arm']:g} training minutes per arm, {report['device']}"
    print(table(report["arms"], title))
    png = out.with_suffix(".png")
    draw(report["arms"], title, png)
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
