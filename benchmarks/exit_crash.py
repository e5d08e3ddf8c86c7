#!/usr/bin/env python
"""Two-process CPU runs, many times over: how often does a process abort at exit?

    python benchmarks/exit_crash.py --runs 50 --train_files ../shared/data/the-verdict/the-verdict.txt

Each run is the debug recipe under `accelerate launch` with `recipes/accelerate_configs/cpu_2proc.yaml`
(gloo). A run counts as an abort when either process dies of a signal or the log shows
`terminate called without an active exception` (a C++ thread torn down while still running). The table
gives runs, clean exits, aborts and failures of any other kind, and the JSON keeps each run's exit code.
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
ABORT_MARK = "terminate called without an active exception"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--train_files", required=True, help="A small text file to train on.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/exit_crash.json"))
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SCRATCHLM_CACHE": f"{tmp}/cache", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        for i in range(args.runs):
            command = [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                str(ROOT / "recipes/accelerate_configs/cpu_2proc.yaml"),
                "--main_process_port",
                str(29700 + i % 200),
                str(ROOT / "recipes/pretrain_gpt2_zh.py"),
                "--config",
                str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"),
                "--train_files",
                args.train_files,
                "--tokenizer_name_or_path",
                f"{tmp}/tok",
                "--output_dir",
                f"{tmp}/run-{i}",
                "--per_device_train_batch_size",
                "2",
            ]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            log = result.stdout + result.stderr
            aborted = ABORT_MARK in log or "SIGABRT" in log or "Signal 6" in log or result.returncode < 0
            runs.append(
                {
                    "run": i,
                    "exit_code": result.returncode,
                    "aborted": aborted,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            if result.returncode != 0 or aborted:
                (args.out.parent).mkdir(parents=True, exist_ok=True)
                (args.out.parent / f"exit_crash_run{i}.log").write_text(log)
            print(f"run {i}: exit {result.returncode}{' ABORT' if aborted else ''}", flush=True)
    summary = {
        "runs": len(runs),
        "clean": sum(r["exit_code"] == 0 and not r["aborted"] for r in runs),
        "aborts": sum(r["aborted"] for r in runs),
        "other_failures": sum(r["exit_code"] != 0 and not r["aborted"] for r in runs),
        "each": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'runs':>6} {'clean':>6} {'aborts':>7} {'other failures':>15}")
    print(f"{summary['runs']:>6} {summary['clean']:>6} {summary['aborts']:>7} {summary['other_failures']:>15}")
    return summary


if __name__ == "__main__":
    main()
