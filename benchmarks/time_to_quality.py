#!/usr/bin/env python
"""Time to quality: wall time from launching the recipe until the first evaluation at or below a held-out
loss, for nanoGPT's "baby GPT" on character-level tiny Shakespeare.

    python benchmarks/time_to_quality.py --data ../shared/data/tinyshakespeare/input.txt          # a GPU run
    python benchmarks/time_to_quality.py --data ../shared/data/tinyshakespeare/input.txt --tiny   # CPU check
    python benchmarks/time_to_quality.py --data ../shared/data/tinyshakespeare/input.txt --small \
        --train_chars 100000 --max_steps 2000 --target 0 --window_order fixed,shifted   # many epochs on a CPU

The first 90% of the characters train and the last 10% validate (`--train_chars` keeps only the start of
the training part, so that a run repeats it for many epochs). Flags the benchmark does not know go to the
recipe, after those of the shape. The recipe runs as a user launches
it (`python recipes/pretrain_gpt2_zh.py --config recipes/pretrain_gpt2_zh/config_baby_shakespeare.yaml`),
with a fresh data cache, so tokenizer training, tokenization, model build and compilation all count;
`--stop_at_eval_loss` ends it at the target. With one token per character, nats/token are nats/char.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "recipes/pretrain_gpt2_zh/config_baby_shakespeare.yaml"
TINY = [
    "--n_layer",
    "2",
    "--n_head",
    "2",
    "--n_embd",
    "64",
    "--block_size",
    "64",
    "--per_device_train_batch_size",
    "8",
    "--max_steps",
    "20",
    "--eval_steps",
    "10",
    "--max_eval_samples",
    "16",
    "--torch_compile",
    "false",
    "--sample_max_new_tokens",
    "8",
    "--dataloader_num_workers",
    "0",
    "--warmup_steps",
    "2",
]
# A baby GPT a CPU trains for thousands of steps in minutes: 0.8M parameters, context 128, batch 16.
SMALL = [
    "--n_layer",
    "4",
    "--n_head",
    "4",
    "--n_embd",
    "128",
    "--block_size",
    "128",
    "--per_device_train_batch_size",
    "16",
    "--eval_steps",
    "100",
    "--max_eval_samples",
    "128",
    "--torch_compile",
    "false",
    "--sample_max_new_tokens",
    "8",
    "--dataloader_num_workers",
    "0",
    "--save_steps",
    "100000",
]
EVAL_LINE = re.compile(r"^\{'eval_loss'.*\}$")


def split(text_file: Path, out: Path, train_chars: int | None = None) -> tuple[Path, Path]:
    text = text_file.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    (out / "train.txt").write_text(text[: min(cut, train_chars or cut)], encoding="utf-8")
    (out / "val.txt").write_text(text[cut:], encoding="utf-8")
    return out / "train.txt", out / "val.txt"


def run_arm(args, window_order: str | None) -> dict:
    """One launch of the recipe; its evaluations as they came."""
    evaluations, reached = [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, val = split(args.data, tmp, args.train_chars)
        command = [
            sys.executable,
            str(ROOT / "recipes/pretrain_gpt2_zh.py"),
            "--config",
            str(CONFIG),
            "--train_files",
            str(train),
            "--validation_files",
            str(val),
            "--tokenizer_name_or_path",
            str(tmp / "tok"),
            "--output_dir",
            str(tmp / "run"),
            "--stop_at_eval_loss",
            str(args.target),
            *(TINY if args.tiny else SMALL if args.small else []),
            *(["--max_steps", str(args.max_steps)] if args.max_steps else []),
            *(["--window_order", window_order] if window_order else []),
            *args.recipe_flags,
        ]
        env = {**os.environ, "SCRATCHLM_CACHE": str(tmp / "cache"), "HF_DATASETS_CACHE": str(tmp / "hf")}
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        tail: list[str] = []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log_file = args.out.with_suffix(f".{window_order}.log" if window_order else ".log")
        log = log_file.open("w", encoding="utf-8")  # the recipe's own log, kept if we are killed
        for line in process.stdout:
            log.write(line)
            log.flush()
            tail = (tail + [line])[-40:]
            if EVAL_LINE.match(line.strip()):
                loss = float(ast.literal_eval(line.strip())["eval_loss"])
                evaluations.append({"seconds": time.perf_counter() - start, "eval_loss": loss})
                if reached is None and loss <= args.target:
                    reached = evaluations[-1]
        log.close()
        if process.wait() != 0:
            sys.exit("the recipe failed:\n" + "".join(tail))
        total = time.perf_counter() - start
        # The console rounds to 4 digits; the run's state has every evaluation's step, epoch and exact loss.
        state = tmp / "run" / "trainer_state.json"
        history = json.loads(state.read_text())["log_history"] if state.is_file() else []
        exact = [entry for entry in history if "eval_loss" in entry]
        if len(exact) == len(evaluations):
            for e, entry in zip(evaluations, exact):
                e.update(step=entry["step"], epoch=entry["epoch"], eval_loss=entry["eval_loss"])
    best = min(evaluations, key=lambda e: e["eval_loss"]) if evaluations else None
    after_best = evaluations[evaluations.index(best) :] if best else []
    return {
        "window_order": window_order or "config default",
        "evaluations": evaluations,
        "seconds_to_target": reached["seconds"] if reached else None,
        "seconds_total": total,
        "best_eval_loss": best["eval_loss"] if best else None,
        "seconds_to_best": best["seconds"] if best else None,
        "epoch_of_best": best.get("epoch") if best else None,
        "final_eval_loss": evaluations[-1]["eval_loss"] if evaluations else None,
        # how far held-out loss climbed back above its best later in the run
        "rise_after_best": max(e["eval_loss"] for e in after_best) - best["eval_loss"] if best else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="tiny Shakespeare's input.txt")
    parser.add_argument("--target", type=float, default=1.47, help="Held-out loss to reach, nats per character.")
    shapes = parser.add_mutually_exclusive_group()
    shapes.add_argument("--tiny", action="store_true", help="A 2-layer model for 20 steps: checks the code path.")
    shapes.add_argument(
        "--small", action="store_true", help="A 0.8M-parameter baby GPT (4 x 128, context 128) that a CPU can train."
    )
    parser.add_argument("--max_steps", type=int, default=None, help="Stop here if the target is not reached first.")
    parser.add_argument(
        "--train_chars", type=int, default=None, help="Train on only the first this many characters (more epochs)."
    )
    parser.add_argument(
        "--window_order",
        default=None,
        help="fixed, shifted, or both comma-separated (one launch each, in that order); default: the config's.",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/time_to_quality.json"))
    args, args.recipe_flags = parser.parse_known_args(argv)  # the rest go to the recipe, after the shape's
    orders = args.window_order.split(",") if args.window_order else [None]
    arms = [run_arm(args, order) for order in orders]
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    shape = "tiny" if args.tiny else "small" if args.small else "baby GPT"
    result = {
        "device": device,
        "shape": shape,
        "recipe_flags": args.recipe_flags,
        "target": args.target,
        "train_chars": args.train_chars,
        "arms": arms,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{shape} on tiny Shakespeare, {device}")
    print(f"{'seconds since launch':>20} {'epoch':>7} " + " ".join(f"{a['window_order']:>14}" for a in arms))
    for row in zip(*(a["evaluations"] for a in arms)):
        print(
            f"{row[0]['seconds']:>20.1f} {row[0].get('epoch') or 0:>7.1f} "
            + " ".join(f"{e['eval_loss']:>14.4f}" for e in row)
        )
    print(f"{'window order':>14} {'best':>7} {'at s':>7} {'epoch':>6} {'final':>7} {'rise':>6} {'to target s':>11}")
    for a in arms:
        to_target = f"{a['seconds_to_target']:.1f}" if a["seconds_to_target"] is not None else "missed"
        print(
            f"{a['window_order']:>14} {a['best_eval_loss']:>7.4f} {a['seconds_to_best']:>7.1f} "
            f"{a['epoch_of_best'] or 0:>6.1f} {a['final_eval_loss']:>7.4f} {a['rise_after_best']:>6.3f} {to_target:>11}"
        )
    return result


if __name__ == "__main__":
    main()
