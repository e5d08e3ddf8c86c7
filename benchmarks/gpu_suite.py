#!/usr/bin/env python
"""Everything worth measuring and checking on one GPU, in one command (about 8 minutes of steps on an H100,
measured before the throughput steps took their levers).

    python benchmarks/gpu_suite.py --data ../shared/data/tinyshakespeare/input.txt      # on a GPU machine
    python benchmarks/gpu_suite.py --data input.txt --tiny                              # the code path, on a CPU

Steps, each a subprocess with its own time limit (a step that fails or runs out of time is reported
as such, and the suite goes on):

1. throughput of the recipe set-up against a per-step-sync variant and the stock Trainer, for the
   baby GPT (ctx 256), GPT-2 124M (ctx 1024, accumulating 16 micro-batches per step as its config does)
   and BERT-base (ctx 128): `throughput.py`, with the levers `blocking_copies` (each batch's copy to the
   GPU waiting, as before the copies stopped blocking) and, for GPT-2 and the baby GPT, `adamw_not_muon`;
2. the loss with and without the full logits at GPT-2 124M's shapes (micro-batch 32): `fused_loss.py`;
   the samples an evaluation draws, prompts one at a time against together, for the baby GPT and GPT-2
   124M, with the cold first call: `samples.py`;
3. time to quality: the baby GPT on the text (90/10 split) until held-out loss 1.47, at most 1,600 steps:
   `time_to_quality.py`;
4. the real recipe on the GPU: `config_gpt2_124m.yaml` on the text for 200 steps with bf16, compile,
   evaluations, samples and checkpoints at steps 100 and 200, the model card written;
5. a resume from that run's step-100 checkpoint, whose losses must match the uninterrupted run's;
6. the DDP and FSDP accelerate configs launched with one process each: they start, train and save;
7. fp16 mixed precision with Muon (what a run on a T4 or V100 takes by default): the debug shapes for
   100 steps of 16 blocks with `--fp16 true --optim muon`, which must end below the unigram bar (in fp32 on
   a CPU the same command ends at 3.88 against a bar of 5.01).

It prints a table and writes JSON (with each step's log beside it under --out_dir), the JSON after
every step so that a suite stopped from outside keeps what it finished. `--only` runs some steps
(`resume` needs `recipe` in the same call), for a lease too short for all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes/pretrain_gpt2_zh.py")
GPT2_124M = str(ROOT / "recipes/pretrain_gpt2_zh/config_gpt2_124m.yaml")
DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
STEPS = (
    "throughput_baby",
    "throughput_gpt2",
    "throughput_bert",
    "fused_loss",
    "samples",
    "time_to_quality",
    "recipe",
    "resume",
    "ddp_1_process",
    "fsdp_1_process",
    "fp16_muon",
)
RECIPE_STEPS = [
    "--max_steps",
    "200",
    "--gradient_accumulation_steps",
    "1",
    "--eval_steps",
    "100",
    "--save_steps",
    "100",
    "--logging_steps",
    "10",
    "--max_eval_samples",
    "64",
    "--sample_prompts",
    "ROMEO:",
    "--sample_max_new_tokens",
    "32",
    "--vocab_size",
    "8000",
    "--text_sample_by",
    "paragraph",  # a play's lines are not documents: by line, "ROMEO:" is a whole one and its sample ends there
]
TINY_RECIPE = [
    "--n_layer",
    "2",
    "--n_head",
    "2",
    "--n_embd",
    "64",
    "--block_size",
    "64",
    "--n_positions",
    "64",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
    "--max_steps",
    "20",
    "--eval_steps",
    "10",
    "--save_steps",
    "10",
    "--logging_steps",
    "2",
    "--torch_compile",
    "false",
    "--dataloader_num_workers",
    "0",
    "--vocab_size",
    "400",
]


def run_step(slack: float, name: str, command: list[str], timeout: float, out_dir: Path, env: dict) -> dict:
    start = time.perf_counter()
    log = out_dir / f"{name}.log"
    with open(log, "w", encoding="utf-8") as handle:
        try:
            code = subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout * slack, env=env, cwd=str(ROOT)
            ).returncode
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout * slack:.0f} s"
    return {"step": name, "status": status, "seconds": round(time.perf_counter() - start, 1), "log": str(log)}


def judge_recipe_run(step: dict, run_dir: Path) -> None:
    step["figures"] = check_recipe_run(run_dir)
    if not step["figures"]["weights"]:
        step["status"] = "failed (the final model's weights were not saved)"


def losses_by_step(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {e["step"]: e["loss"] for e in history if "loss" in e}


def check_recipe_run(run_dir: Path) -> dict:
    """What a finished recipe run must have left: results, a card, sealed checkpoints, samples."""
    results = json.loads((run_dir / "all_results.json").read_text())
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint-*") if (p / "run_manifest.json").is_file())
    return {
        "eval_loss": results["eval_loss"],
        "eval_unigram_loss": results["eval_unigram_loss"],
        "beats_unigram": results["eval_loss"] < results["eval_unigram_loss"],
        "weights": (run_dir / "model.safetensors").is_file(),  # what from_pretrained loads
        "card": (run_dir / "README.md").is_file(),
        "samples": (run_dir / "samples.json").is_file(),
        "sealed_checkpoints": checkpoints,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="A text file: tiny Shakespeare's input.txt.")
    parser.add_argument("--tiny", action="store_true", help="Tiny shapes and no launcher steps: a CPU check.")
    parser.add_argument("--out_dir", type=Path, default=Path("benchmarks/results/gpu_suite"))
    parser.add_argument("--only", default=",".join(STEPS), help=f"Comma-separated steps, of: {', '.join(STEPS)}.")
    parser.add_argument(
        "--time_scale",
        type=float,
        default=None,
        help="Multiplies every step's time limit (default 1 on a GPU, 5 with --tiny), e.g. for steps run side by side.",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(STEPS))
    if not only:
        parser.error(f"--only: name at least one step, of: {', '.join(STEPS)}")
    if unknown:
        parser.error(f"--only: unknown steps {', '.join(unknown)}; the steps are {', '.join(STEPS)}")
    if "resume" in only and "recipe" not in only:
        parser.error("--only: resume continues the recipe step's run; name recipe too")
    import torch

    if not args.tiny and not torch.cuda.is_available():
        parser.error("this suite measures a GPU; on a CPU pass --tiny to check the code path only")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # The limits are a GPU's; a CPU under load may take several times longer on the tiny shapes.
    slack = args.time_scale or (5 if args.tiny else 1)
    data = str(args.data.resolve())
    py = sys.executable
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    steps: list[dict] = []
    suite_start = time.perf_counter()

    def record(step: dict) -> None:
        steps.append(step)
        result = {
            "device": device,
            "torch": torch.__version__,
            "tiny": args.tiny,
            "seconds": round(time.perf_counter() - suite_start, 1),
            "steps": steps,
        }
        (args.out_dir / "gpu_suite.json").write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "SCRATCHLM_CACHE": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"}
        tiny = ["--tiny"] if args.tiny else []
        # Each beside the levers that stand for a setting the recipe took without a GPU figure yet.
        # GPT-2 accumulates 16 micro-batches as its config does, so that Muon's step weighs what it does in a run.
        throughput_steps = (
            ("baby", 80, "blocking_copies,adamw_not_muon", ["--steps", "40", "--warmup", "20"]),
            (
                "gpt2",
                240,
                "blocking_copies,adamw_not_muon",
                ["--steps", "96", "--warmup", "32", "--gradient_accumulation_steps", "16"],
            ),
            ("bert", 120, "blocking_copies", ["--steps", "40", "--warmup", "20"]),
        )
        for model, limit, levers, length in throughput_steps:
            name = f"throughput_{model}"
            if name not in only:
                continue
            if args.tiny and model != "baby":
                # The other shapes run the same code, and GPT-2's vocabulary is slow on a CPU.
                record({"step": name, "status": "skipped (the baby GPT checks this code with --tiny)", "seconds": 0.0})
                continue
            out = args.out_dir / f"{name}.json"
            command = [py, "benchmarks/throughput.py", "--model", model, *length, "--levers", levers]
            step = run_step(slack, name, [*command, *tiny, "--out", str(out)], limit, args.out_dir, env)
            if step["status"] == "ok":
                step["figures"] = {
                    r["run"]: {k: r.get(k) for k in ("tokens_per_second", "mfu", "peak_memory_gb")}
                    for r in json.loads(out.read_text())["rows"]
                }
            record(step)

        if "fused_loss" in only:
            fused_shape = ["--batch", "2", "--block", "64", "--width", "32", "--vocab", "512"] if args.tiny else []
            out = args.out_dir / "fused_loss.json"
            command = [py, "benchmarks/fused_loss.py", *fused_shape, "--out", str(out)]
            step = run_step(slack, "fused_loss", command, 60, args.out_dir, env)
            if step["status"] == "ok":
                step["figures"] = {
                    r["arm"]: {k: r[k] for k in ("peak_extra_gb", "seconds", "loss")}
                    for r in json.loads(out.read_text())["rows"]
                }
            record(step)

        if "samples" in only:
            out = args.out_dir / "samples.json"
            shapes = (
                ["--shape", "tiny"] if args.tiny else ["--device", "cuda", "--shape", "baby", "--shape", "gpt2_124m"]
            )
            command = [py, "benchmarks/samples.py", *shapes, "--out", str(out)]
            step = run_step(slack, "samples", command, 90, args.out_dir, env)
            if step["status"] == "ok":
                step["figures"] = {
                    r["shape"]: {**r["seconds"], "cold_call": r["cold_seconds"], "greedy_same": r["identical"]}
                    for r in json.loads(out.read_text())["rows"]
                }
            record(step)

        if "time_to_quality" in only:
            out = args.out_dir / "time_to_quality.json"
            # Its best held-out loss came at step 1,500 on an H100.
            command = [py, "benchmarks/time_to_quality.py", "--data", data, *(tiny or ["--max_steps", "1600"])]
            step = run_step(slack, "time_to_quality", [*command, "--out", str(out)], 140, args.out_dir, env)
            if step["status"] == "ok":
                result = json.loads(out.read_text())["arms"][0]
                step["figures"] = {k: result[k] for k in ("seconds_to_target", "best_eval_loss", "seconds_total")}
            record(step)

        shape = [DEBUG, *TINY_RECIPE] if args.tiny else [GPT2_124M, *RECIPE_STEPS]
        common = [RECIPE, "--config", *shape, "--train_files", data, "--tokenizer_name_or_path", str(tmp / "tok")]
        if "recipe" in only:
            step = run_step(slack, "recipe", [py, *common, "--output_dir", str(tmp / "run")], 150, args.out_dir, env)
            if step["status"] == "ok":
                judge_recipe_run(step, tmp / "run")
            record(step)

        if "resume" in only:
            halfway = tmp / "run" / ("checkpoint-10" if args.tiny else "checkpoint-100")
            command = [py, *common, "--output_dir", str(tmp / "resumed"), "--resume_from_checkpoint", str(halfway)]
            step = run_step(slack, "resume", command, 120, args.out_dir, env)
            if step["status"] == "ok" and (tmp / "run").is_dir():
                whole, resumed = losses_by_step(tmp / "run"), losses_by_step(tmp / "resumed")
                resumed_at = int(halfway.name.split("-")[1])  # the earlier losses come from the checkpoint's history
                shared = sorted(s for s in set(whole) & set(resumed) if s > resumed_at)
                gap = max((abs(whole[s] - resumed[s]) for s in shared), default=None)
                step["figures"] = {"steps_compared": len(shared), "max_loss_difference": gap}
                if not shared or gap > 1e-2:
                    step["status"] = "failed (the resumed losses differ from the uninterrupted run's)"
            record(step)

        for name, config in (("ddp_1_process", "multi_gpu_ddp.yaml"), ("fsdp_1_process", "fsdp.yaml")):
            if name not in only:
                continue
            if args.tiny:
                record({"step": name, "status": "skipped (needs a GPU)", "seconds": 0.0})
                continue
            launch = [py, "-m", "accelerate.commands.launch", "--config_file"]
            launch += [str(ROOT / "recipes/accelerate_configs" / config), "--num_processes", "1"]
            launch += [RECIPE, "--config", DEBUG, "--train_files", data]
            launch += ["--tokenizer_name_or_path", str(tmp / f"tok-{name}"), "--output_dir", str(tmp / name)]
            launch += ["--max_steps", "20", "--save_steps", "10"]
            step = run_step(slack, name, launch, 90, args.out_dir, env)
            if step["status"] == "ok":
                judge_recipe_run(step, tmp / name)
            record(step)

        if "fp16_muon" in only and args.tiny:
            record({"step": "fp16_muon", "status": "skipped (needs a GPU)", "seconds": 0.0})
        elif "fp16_muon" in only:
            fp16 = [RECIPE, "--config", DEBUG, "--train_files", data, "--tokenizer_name_or_path", str(tmp / "tok-fp16")]
            fp16 += [
                "--output_dir",
                str(tmp / "fp16"),
                "--max_steps",
                "100",
                "--eval_steps",
                "50",
                "--save_steps",
                "50",
            ]
            fp16 += ["--per_device_train_batch_size", "16", "--bf16", "false", "--fp16", "true"]
            fp16 += ["--optim", "muon", "--learning_rate", "0.01"]
            step = run_step(slack, "fp16_muon", [py, *fp16], 60, args.out_dir, env)
            if step["status"] == "ok":
                judge_recipe_run(step, tmp / "fp16")
                if not step["figures"]["beats_unigram"]:
                    step["status"] = "failed (the fp16 run did not get below the unigram bar)"
            record(step)

    seconds = time.perf_counter() - suite_start
    print(f"GPU suite on {device}{' (tiny shapes)' if args.tiny else ''}: {seconds:.0f} s")
    print(f"{'step':<20} {'status':<40} {'seconds':>8}  figures")
    for s in steps:
        print(f"{s['step']:<20} {s['status']:<40} {s['seconds']:>8.1f}  {json.dumps(s.get('figures', {}))}")
    return json.loads((args.out_dir / "gpu_suite.json").read_text())


if __name__ == "__main__":
    main()
