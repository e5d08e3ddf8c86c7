#!/usr/bin/env python
"""`scratchlm prepare` on corpora of growing size: wall time, MB/s and peak memory, which must stay flat.

Each size runs in a fresh process, so its peak RSS (the main process, and the largest worker) is its own.

    python benchmarks/make_corpus.py --size_mb 1000 --out /tmp/zh-1000mb.txt   # and --size_mb 100 ...
    python benchmarks/prepare_scaling.py --corpora /tmp/zh-100mb.txt /tmp/zh-1000mb.txt \
        --tokenizer outputs/tokenizer-zh-demo --out benchmarks/results/prepare_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_RUN = """
import json, resource, sys, time
from pathlib import Path
from scratchlm.cli import main
corpus, tokenizer, out, block, num_proc = sys.argv[1:6]
start = time.perf_counter()
main(["prepare", "{config}", "--out", out, "--train_files", corpus, "--tokenizer_name_or_path", tokenizer,
      "--block_size", block, "--num_proc", num_proc, "--preprocessing_num_workers", num_proc])
seconds = time.perf_counter() - start
manifest = json.loads((Path(out) / "prepared.json").read_text())
print("RESULT " + json.dumps({{
    "seconds": seconds, "prepare_seconds": manifest["seconds"],
    "tokens": manifest["splits"]["train"]["tokens"] + manifest["splits"]["validation"]["tokens"],
    "shards": len(manifest["splits"]["train"]["shards"]),
    "main_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "largest_child_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def watch_memory(process: subprocess.Popen, interval: float = 0.2) -> dict:
    """Peak memory of a process and its workers until it exits, from /proc.

    Peak RSS also counts pages of memory-mapped files that were read (Arrow data); the kernel drops
    those under pressure, so the anonymous part (RssAnon) is what must not grow with the corpus.
    """
    main_anon = tree_anon = main_file = 0
    while process.poll() is None:
        tree = [process.pid] + _children(process.pid)
        anon = [_status_kb(pid, "RssAnon") for pid in tree]
        main_anon, tree_anon = max(main_anon, anon[0]), max(tree_anon, sum(anon))
        main_file = max(main_file, _status_kb(process.pid, "RssFile"))
        time.sleep(interval)
    return {
        "main_peak_anon_mb": main_anon / 1024,
        "all_processes_peak_anon_mb": tree_anon / 1024,
        "main_peak_file_backed_mb": main_file / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=Path, nargs="+", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--block_size", type=int, default=1024)
    parser.add_argument("--num_proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prepare_scaling.json"))
    args = parser.parse_args()
    config = ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml"
    rows = []
    for corpus in args.corpora:
        with tempfile.TemporaryDirectory(dir=corpus.parent) as tmp:
            env = {**os.environ, "HF_DATASETS_CACHE": str(Path(tmp) / "hf"), "SCRATCHLM_CACHE": str(Path(tmp) / "c")}
            with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        ONE_RUN.format(config=config),
                        str(corpus),
                        args.tokenizer,
                        str(Path(tmp) / "prepared"),
                        str(args.block_size),
                        str(args.num_proc),
                    ],
                    stdout=stdout,
                    stderr=stderr,
                    text=True,
                    env=env,
                )
                peaks = watch_memory(process)
                stdout.seek(0), stderr.seek(0)
                if process.returncode != 0:
                    sys.exit(stderr.read()[-3000:])
                line = next(row for row in stdout.read().splitlines() if row.startswith("RESULT "))
            row = {"corpus": str(corpus), "mb": corpus.stat().st_size / 1e6, **json.loads(line[7:]), **peaks}
            row["mb_per_second"] = row["mb"] / row["seconds"]
            rows.append(row)
            shutil.rmtree(Path(tmp) / "hf", ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device": f"cpu ({os.cpu_count()} cores)",
                "num_proc": args.num_proc,
                "block_size": args.block_size,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"{'MB':>7} {'tokens':>13} {'shards':>6} {'seconds':>8} {'MB/s':>6} {'main RSS':>9} {'main anon':>9} "
        f"{'all anon':>9} {'worker RSS':>10}  (MB)"
    )
    for r in rows:
        print(
            f"{r['mb']:>7.0f} {r['tokens']:>13,} {r['shards']:>6} {r['seconds']:>8.0f} {r['mb_per_second']:>6.2f} "
            f"{r['main_peak_rss_mb']:>9.0f} {r['main_peak_anon_mb']:>9.0f} {r['all_processes_peak_anon_mb']:>9.0f} "
            f"{r['largest_child_peak_rss_mb']:>10.0f}"
        )


if __name__ == "__main__":
    main()
