#!/usr/bin/env python
"""Time to quality: wall time from launching the recipe until the first evaluation at or below a held-out
loss, for nanoGPT's "baby GPT" on character-level tiny Shakespeare.

    python benchmarks/time_to_quality.py --data ../shared/data/tinyshakespeare/input.txt          # a GPU run
    python benchmarks/time_to_quality.py --data ../shared/data/tinyshakespeare/input.txt --tiny   # CPU check

The first 90% of the characters train and the last 10% validate. The recipe runs as a user launches
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
EVAL_LINE = re.compile(r"^\{'eval_loss'.*\}$")


def split(text_file: Path, out: Path) -> tuple[Path, Path]:
    text = text_file.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    (out / "train.txt").write_text(text[:cut], encoding="utf-8")
    (out / "val.txt").write_text(text[cut:], encoding="utf-8")
    return out / "train.txt", out / "val.txt"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="tiny Shakespeare's input.txt")
    parser.add_argument("--target", type=float, default=1.47, help="Held-out loss to reach, nats per character.")
    parser.add_argument(
        "--tiny", action="store_true", help="A 2-layer model for 20 steps: checks the code path on a CPU."
    )
    parser.add_argument("--max_steps", type=int, default=None, help="Stop here if the target is not reached first.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/time_to_quality.json"))
    args = parser.parse_args(argv)
    evaluations, reached = [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, val = split(args.data, tmp)
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
            *(TINY if args.tiny else []),
            *(["--max_steps", str(args.max_steps)] if args.max_steps else []),
        ]
        env = {**os.environ, "SCRATCHLM_CACHE": str(tmp / "cache"), "HF_DATASETS_CACHE": str(tmp / "hf")}
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        tail: list[str] = []
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log = args.out.with_suffix(".log").open("w", encoding="utf-8")  # the recipe's own log, kept if we are killed
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
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result = {
        "device": device,
        "tiny": args.tiny,
        "target": args.target,
        "evaluations": evaluations,
        "seconds_to_target": reached["seconds"] if reached else None,
        "seconds_total": total,
        "best_eval_loss": min(e["eval_loss"] for e in evaluations) if evaluations else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"baby GPT on tiny Shakespeare, {device}{' (tiny shapes)' if args.tiny else ''}")
    print(f"{'seconds since launch':>20} {'held-out loss':>14}")
    for e in evaluations:
        print(f"{e['seconds']:>20.1f} {e['eval_loss']:>14.4f}")
    if reached:
        print(f"reached {args.target} nats/char {reached['seconds']:.1f} s after launch")
    else:
        print(f"did not reach {args.target} nats/char (best {result['best_eval_loss']}) in {total:.0f} s")
    return result


if __name__ == "__main__":
    main()
