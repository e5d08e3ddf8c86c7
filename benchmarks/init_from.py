#!/usr/bin/env python
"""Does `--init_from` pay? A model trained on one corpus goes on to another, against a model from random
weights that trains the same steps on it with the same tokenizer: held-out bits/char on the second corpus
at every evaluation.

    python benchmarks/init_from.py                                  # people_daily_1998 -> zh_book_reviews
    python benchmarks/init_from.py --seeds 42 43 --steps 600
    python benchmarks/init_from.py --tiny                           # checks the code path in a minute

Every run is `recipes/pretrain_gpt2_zh.py --config CONFIG` (the GPT-2 demo config by default) launched as a
user launches it, one after the other: first the source model on `--source` (its tokenizer is trained there,
on first use), then per seed `scratch` (`--corpus TARGET --tokenizer_name_or_path` the source's tokenizer)
and `init_from` (`--corpus TARGET --init_from` the source model). Every arm starts its warmup and schedule
at step 0, as a user's run does. `--lr_scales 1 0.3` adds an `init_from` arm per scale with every learning rate
of the config scaled (the usual advice for adapting a model); `--target_blocks N` trains the arms on the
target's first N blocks only (`--max_train_samples`), the many-epoch case of a small text of one's own;
`--source_model DIR` starts every arm from a source run already trained (by an earlier run of this script:
WORK_DIR/runs/source). Every arm is evaluated before its first step too: step 0 of the `init_from` curves is
the source model on the target's held-out text. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from quality_per_minute import TINY, Base, launch

from scratchlm.objectives import parse_run_settings

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml"
EVALUATIONS = 5  # per run: the points of each curve


def run_flags(corpus: str, steps: int) -> dict[str, str]:
    # Evaluations on logged steps and no checkpoints: the curve is the result, the final model the only save.
    every = max(1, steps // EVALUATIONS)
    return {
        "--corpus": corpus,
        "--max_steps": str(steps),
        "--eval_steps": str(every),
        "--logging_steps": str(every),
        # The decay the published arms ran with; the config's auto would shorten it to 20% on the 12-epoch arms.
        "--lr_scheduler_kwargs": '{"num_decay_steps": 0.6}',
    }


def curve(history: list[dict]) -> list[tuple[int, float]]:
    return [(e["step"], e["eval_bits_per_char"]) for e in history if "eval_bits_per_char" in e]


def arms_of(config: Path, lr_scales: list[float], source: Path) -> dict[str, dict[str, str]]:
    """name: the flags that start the arm from the source model (none: from random weights)."""
    training = parse_run_settings(["--config", str(config)]).training
    arms = {"scratch": {}}
    for scale in lr_scales:
        flags = {"--init_from": str(source)}
        if scale != 1:
            flags["--learning_rate"] = f"{training.learning_rate * scale:g}"
            if training.optim == "muon":
                flags["--muon_learning_rate"] = f"{training.muon_learning_rate * scale:g}"
        arms["init_from" if scale == 1 else f"init_from_lr_x{scale:g}"] = flags
    return arms


def table(report: dict) -> str:
    names = list(report["arms"])
    blocks = f", its first {report['target_blocks']} blocks" if report["target_blocks"] else ""
    lines = [
        f"{report['source']} ({report['source_steps']} steps) -> {report['target']}{blocks} ({report['steps']} "
        f"steps), {report['device']}: held-out bits/char on {report['target']}",
        "",
        "| seed | step | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for seed, curves in report["seeds"].items():
        for points in zip(*(curves[name] for name in names)):
            lines.append(f"| {seed} | {points[0][0]} | " + " | ".join(f"{bits:.3f}" for _, bits in points) + " |")
    lines.append("")
    for name in names[1:]:
        gains = [curves[name][-1][1] - curves["scratch"][-1][1] for curves in report["seeds"].values()]
        lines.append(f"final {name} - scratch: mean {statistics.mean(gains):+.3f} over {len(gains)} seed(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="The config every run starts from.")
    parser.add_argument("--source", default="people_daily_1998", help="The built-in corpus the source model learns.")
    parser.add_argument("--target", default="zh_book_reviews", help="The built-in corpus both arms then train on.")
    parser.add_argument("--source_steps", type=int, default=300, help="Training steps of the source model.")
    parser.add_argument("--steps", type=int, default=300, help="Training steps of each arm on the target corpus.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="One run of every arm each.")
    parser.add_argument(
        "--lr_scales", type=float, nargs="+", default=[1.0], help="One init_from arm per scale of the rates."
    )
    parser.add_argument("--target_blocks", type=int, default=None, help="Train the arms on this many target blocks.")
    parser.add_argument(
        "--source_model", type=Path, default=None, help="A source run to reuse instead of training one."
    )
    parser.add_argument("--tiny", action="store_true", help="A 1-layer model on 2,000 blocks: checks the code path.")
    parser.add_argument("--work_dir", type=Path, default=None, help="Tokenizer, cache, runs and logs (default: /tmp).")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...).")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        sys.exit(f"--config: no file {args.config}")
    base = Base(args.config)
    stem = f"init_from_{args.source}_to_{args.target}{'_tiny' if args.tiny else ''}"
    out = args.out or ROOT / "benchmarks/results" / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(f"/tmp/{stem}-{os.getpid()}")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    source = args.source_model.resolve() if args.source_model is not None else work / "runs" / "source"
    arms = arms_of(args.config, args.lr_scales, source)
    common = {"--save_strategy": "no", **(TINY if args.tiny else {})}

    report = {
        "config": str(base.path.relative_to(ROOT) if base.path.is_relative_to(ROOT) else base.path),
        "source": args.source,
        "target": args.target,
        "source_steps": args.source_steps,
        "steps": args.steps,
        "target_blocks": args.target_blocks,
        "arms": arms,
        "tiny": args.tiny,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "seeds": {},
    }
    if args.source_model is not None:
        if not (source / "trainer_state.json").is_file():
            sys.exit(f"--source_model: {source} is not a finished run (no trainer_state.json)")
        report["source_steps"] = json.loads((source / "trainer_state.json").read_text())["global_step"]
    else:
        print(f"[{time.strftime('%H:%M:%S')}] source: {args.source_steps} steps on {args.source}", flush=True)
        flags = {**common, **run_flags(args.source, args.source_steps)}
        launch(base, flags, work, source, work / "logs" / "source.log")
    # the tokenizer saved beside the source model, which the init_from arms must use: the scratch arm takes it too
    target = {**common, **run_flags(args.target, args.steps), "--tokenizer_name_or_path": str(source)}
    target["--eval_on_start"] = "true"
    if args.target_blocks:
        target["--max_train_samples"] = str(args.target_blocks)
    for seed in args.seeds:
        curves = report["seeds"][str(seed)] = {}
        for name, start in arms.items():
            flags = {**target, **start, "--seed": str(seed)}
            print(f"[{time.strftime('%H:%M:%S')}] {name}, seed {seed}", flush=True)
            history = launch(base, flags, work, work / "runs" / f"{name}-{seed}", work / "logs" / f"{name}-{seed}.log")
            curves[name] = curve(history)
            out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table(report))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
