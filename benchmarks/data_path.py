#!/usr/bin/env python
"""The CPU data path: tokenize + pack throughput against a naive per-document map, the cache-hit reload,
and tokenizer training throughput and peak memory at two corpus sizes.

Every measurement runs in a fresh process with its own caches, so its time and peak RSS are its own.

    python benchmarks/make_corpus.py --size_mb 200 --out /tmp/zh-200mb.txt
    python benchmarks/data_path.py --corpus /tmp/zh-200mb.txt --tokenizer outputs/tokenizer-zh-demo \
        --pack_mb 20 --tokenizer_mb 100 200 --out benchmarks/results/data_path.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Each snippet prints one line: RESULT {json}. Arguments: the text file, the tokenizer, the block size.
COMMON = """
import json, resource, sys, time
from pathlib import Path
corpus, tokenizer_dir, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
def report(**values):
    values["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    values["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(values))
"""

OURS = (
    COMMON
    + """
from scratchlm.arguments import DataArguments
from scratchlm.data import load_lm_data
from scratchlm.objectives import OBJECTIVES
from scratchlm.tokenizer import load_tokenizer
tokenizer = load_tokenizer(tokenizer_dir, required=())
start = time.perf_counter()
data = load_lm_data(DataArguments(train_files=[corpus], block_size=block), tokenizer,
                    OBJECTIVES["causal"].packing(tokenizer, block))
report(seconds=time.perf_counter() - start, blocks=len(data.train) + len(data.validation), cache_hit=data.cache_hit)
"""
)

# What a first attempt usually looks like: one document per call, in one process, then run_clm's grouping.
NAIVE = (
    COMMON
    + """
import datasets
from itertools import chain
from scratchlm.tokenizer import load_tokenizer
tokenizer = load_tokenizer(tokenizer_dir, required=())
start = time.perf_counter()
ds = datasets.load_dataset("text", data_files=[corpus], split="train")
ds = ds.filter(lambda ex: bool(ex["text"].strip()))
ds = ds.map(lambda ex: {"input_ids": tokenizer(ex["text"])["input_ids"] + [tokenizer.eos_token_id]},
            remove_columns=["text"])
def group(batch):
    stream = list(chain(*batch["input_ids"]))
    n = len(stream) // block * block
    return {"input_ids": [stream[i:i + block] for i in range(0, n, block)]}
ds = ds.map(group, batched=True, batch_size=1000)
report(seconds=time.perf_counter() - start, blocks=len(ds))
"""
)

TOKENIZER = (
    COMMON
    + """
from scratchlm.arguments import TokenizerArguments
from scratchlm.tokenizer import train_tokenizer
def lines():
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\\n")
start = time.perf_counter()
train_tokenizer(lines(), TokenizerArguments(vocab_size=32000), Path(sys.argv[4]))
report(seconds=time.perf_counter() - start)
"""
)


def run(
    snippet: str, corpus: Path, tokenizer: str, block: int, tmp: Path, *extra: str, cache: Path | None = None
) -> dict:
    cache = cache or Path(tempfile.mkdtemp(dir=tmp))
    env = {
        **os.environ,
        "HF_DATASETS_CACHE": str(cache / "hf"),
        "SCRATCHLM_CACHE": str(cache / "scratchlm"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", snippet, str(corpus), tokenizer, str(block), *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    line = next(row for row in result.stdout.splitlines() if row.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def head(corpus: Path, mb: float, out: Path) -> Path:
    """The first `mb` MB of `corpus`, cut at a line end."""
    with open(corpus, "rb") as f:
        data = f.read(int(mb * 1e6))
    out.write_bytes(data[: data.rfind(b"\n") + 1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="A large .txt corpus, one document per line.")
    parser.add_argument("--tokenizer", required=True, help="Tokenizer directory for the packing runs.")
    parser.add_argument("--block_size", type=int, default=1024)
    parser.add_argument("--pack_mb", type=float, default=20, help="Text for the tokenize + pack comparison.")
    parser.add_argument(
        "--tokenizer_mb",
        type=float,
        nargs="*",
        default=[100, 200],
        help="Sizes for the tokenizer-training runs (none: skip them).",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_path.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.corpus.parent) as tmp:
        tmp = Path(tmp)
        sample = head(args.corpus, args.pack_mb, tmp / "sample.txt")
        mb = sample.stat().st_size / 1e6
        naive = run(NAIVE, sample, args.tokenizer, args.block_size, tmp)
        cache = Path(tempfile.mkdtemp(dir=tmp))
        ours = run(OURS, sample, args.tokenizer, args.block_size, tmp, cache=cache)
        hit = run(OURS, sample, args.tokenizer, args.block_size, tmp, cache=cache)
        assert hit["cache_hit"] and not ours["cache_hit"]
        for name, r in (
            ("naive map (per document, 1 process)", naive),
            ("scratchlm tokenize + pack", ours),
            ("scratchlm cache hit", hit),
        ):
            rows.append({"step": name, "mb": mb, **r, "mb_per_second": mb / r["seconds"]})
        for size in args.tokenizer_mb:
            text = head(args.corpus, size, tmp / f"tok-{size:g}.txt")
            r = run(TOKENIZER, text, args.tokenizer, args.block_size, tmp, str(tmp / f"tok-out-{size:g}"))
            rows.append(
                {
                    "step": f"tokenizer training (BPE 32k), {size:g} MB",
                    "mb": text.stat().st_size / 1e6,
                    **r,
                    "mb_per_second": text.stat().st_size / 1e6 / r["seconds"],
                }
            )
            text.unlink()
    speedup = rows[0]["seconds"] / rows[1]["seconds"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "device": f"cpu ({os.cpu_count()} cores)",
                "block_size": args.block_size,
                "speedup_over_naive": speedup,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"{'step':<42} {'MB':>6} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>11}")
    for r in rows:
        rss = max(r["peak_rss_mb"], r["children_peak_rss_mb"])
        print(f"{r['step']:<42} {r['mb']:>6.0f} {r['seconds']:>8.1f} {r['mb_per_second']:>7.2f} {rss:>11.0f}")
    print(f"tokenize + pack: {speedup:.1f}x the naive map")


if __name__ == "__main__":
    main()
