#!/usr/bin/env python
"""What glibc's malloc costs a CPU run: the recipes as they are (freed memory kept in the heap for the next
step) against glibc's defaults, in one run, each arm a real recipe run in its own process.

    python benchmarks/cpu_allocator.py                       # the three demo configs, 320 steps, twice each
    python benchmarks/cpu_allocator.py --steps 8 --repeats 1 --configs recipes/pretrain_gpt2_zh/config_debug.yaml

"glibc defaults" runs with MALLOC_PERTURB_=0 in its environment: that variable changes nothing (0 is glibc's
own default), but any MALLOC_* variable tells scratchlm that the user chose their own malloc settings, so
it leaves glibc alone (`scratchlm.training.run.keep_freed_memory_in_the_heap`). The arms alternate, so
a host that speeds up or slows down during the run touches both. Each run trains --steps steps from
scratch, evaluates once at the end and saves once; the data cache and tokenizer are built before the
first timed run. Columns: training tokens/s from the run's own log (data loading and logging included,
the evaluation not), the evaluation's seconds, and the process's system CPU seconds, minor page faults
and peak resident memory (from wait4). Linux with glibc only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    "recipes/pretrain_gpt2_zh/config_demo.yaml",
    "recipes/pretrain_gpt2_zh/config_demo_llama.yaml",
    "recipes/pretrain_bert_mlm/config_demo.yaml",
]
ARMS = {"glibc defaults": {"MALLOC_PERTURB_": "0"}, "heap kept (recipe)": {}}


def script_for(config: str) -> Path:
    return ROOT / "recipes" / f"{Path(config).parent.name}.py"


def run_once(config: str, steps: int, out: Path, env_extra: dict) -> dict:
    """One recipe run in a fresh process; its training speed from trainer_state.json, its costs from wait4."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(env_extra)
    cmd = [
        sys.executable, str(script_for(config)), "--config", str(ROOT / config), "--output_dir", str(out),
        "--max_steps", str(steps), "--eval_steps", str(steps), "--save_steps", str(steps),
        "--logging_steps", str(max(1, steps // 5)),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{output[-3000:]}")
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    trained = [h for h in history if "train_seconds" in h][-1]
    evaluated = [h for h in history if "eval_runtime" in h][-1]
    return {
        "tokens_per_second": trained["tokens_seen"] / float(trained["train_seconds"]),
        "eval_seconds": evaluated["eval_runtime"],
        "eval_loss": evaluated["eval_loss"],
        "system_seconds": usage.ru_stime,
        "user_seconds": usage.ru_utime,
        "minor_page_faults": usage.ru_minflt,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "malloc_line": "glibc malloc keeps freed memory" in output,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=CONFIGS, help="recipe configs, relative to the repo root")
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/cpu_allocator.json")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("error: benchmarks/cpu_allocator.py measures glibc's malloc: run it on Linux")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            run_once(config, 1, Path(tmp) / f"warm-{len(results)}", {})  # tokenizer and data cache, outside the timing
            runs = {arm: [] for arm in ARMS}
            for repeat in range(args.repeats):
                for arm, env in ARMS.items():
                    out = (
                        Path(tmp) / f"{Path(config).parent.name}-{Path(config).stem}-{len(results)}-{repeat}-{arm[:4]}"
                    )
                    started = time.perf_counter()
                    runs[arm].append(run_once(config, args.steps, out, env) | {"wall": time.perf_counter() - started})
                    print(
                        f"{config} {arm} #{repeat + 1}: {runs[arm][-1]['tokens_per_second']:,.0f} tokens/s", flush=True
                    )
            for arm, arm_runs in runs.items():
                assert arm_runs[0]["malloc_line"] == (not ARMS[arm]), f"{arm}: the recipe did not do what the arm says"
                row = {"config": config, "arm": arm, "steps": args.steps, "runs": arm_runs}
                for key in ("tokens_per_second", "eval_seconds", "system_seconds", "minor_page_faults", "peak_rss_mb"):
                    row[key] = statistics.median(r[key] for r in arm_runs)
                row["eval_loss"] = arm_runs[0]["eval_loss"]
                results.append(row)
            base, kept = results[-2], results[-1]
            kept["speedup"] = kept["tokens_per_second"] / base["tokens_per_second"]
            kept["eval_speedup"] = base["eval_seconds"] / kept["eval_seconds"]
            base["speedup"] = base["eval_speedup"] = 1.0

    header = ["config", "arm", "tokens/s", "x", "eval s", "eval x", "sys s", "minor faults", "peak RSS MB", "eval loss"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in results:
        cells = [
            r["config"].removeprefix("recipes/"), r["arm"], f"{r['tokens_per_second']:,.0f}", f"{r['speedup']:.2f}",
            f"{r['eval_seconds']:.2f}", f"{r['eval_speedup']:.2f}", f"{r['system_seconds']:.1f}",
            f"{r['minor_page_faults']:,.0f}", f"{r['peak_rss_mb']:,.0f}", f"{r['eval_loss']:.4f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
