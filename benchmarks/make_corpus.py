#!/usr/bin/env python
"""Write a large synthetic Chinese corpus for data-path benchmarks: documents of 3-12 sentences drawn at
random from the built-in zh_demo corpus, one document per line, until the file reaches --size_mb.

    python benchmarks/make_corpus.py --size_mb 1000 --out /tmp/zh-1g.txt
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from scratchlm.data.builtin import BUILTIN_CORPORA


def sentences() -> list[str]:
    pool = []
    for doc in BUILTIN_CORPORA["zh_demo"].documents():
        pool.extend(s for s in re.split(r"(?<=[。！？])", doc) if len(s) > 4)
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size_mb", type=float, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, pool = random.Random(args.seed), sentences()
    target, written = int(args.size_mb * 1e6), 0
    with open(args.out, "w", encoding="utf-8") as out:
        while written < target:
            lines = []
            for _ in range(1000):
                line = "".join(rng.choices(pool, k=rng.randint(3, 12))) + "\n"
                lines.append(line)
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk.encode("utf-8"))
    print(f"{args.out}: {written / 1e6:.0f} MB from {len(pool):,} distinct sentences")


if __name__ == "__main__":
    main()
