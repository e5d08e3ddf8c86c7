#!/usr/bin/env python
"""How long a resumed run takes to reach its place in the data, through the dataloader Trainer builds.

Trainer skips the batches already trained by drawing the sampler's indices, without reading a block,
so the cost grows with the number of blocks skipped but not with their size or the dataset's storage.

    python benchmarks/resume_position.py --blocks 1000000 10000000 --out benchmarks/results/resume_position.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from accelerate import skip_first_batches
from transformers import GPT2Config, GPT2LMHeadModel

from scratchlm.arguments import PretrainingArguments
from scratchlm.objectives import OBJECTIVES
from scratchlm.training import PretrainingTrainer, RunCallbacks


class Blocks(torch.utils.data.Dataset):
    """Stands in for a packed dataset of `n` blocks; counts reads."""

    def __init__(self, n: int, block_size: int = 1024):
        self.n, self.block_size, self.reads = n, block_size, 0

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        self.reads += 1
        return {"input_ids": torch.zeros(self.block_size, dtype=torch.long)}


def measure(n_blocks: int, batch_size: int) -> dict:
    blocks = Blocks(n_blocks)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_positions=8, n_embd=32, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = PretrainingArguments(output_dir=tmp, eval_strategy="no", per_device_train_batch_size=batch_size)
        trainer = PretrainingTrainer(
            model=model,
            args=args,
            train_dataset=blocks,
            objective=OBJECTIVES["causal"],
            run_callbacks=RunCallbacks.for_run(args, tokens_per_step=1),
            chars_per_token=None,
            eval_unigram_loss=1.0,
        )
        loader = trainer.get_train_dataloader()
        skipped = n_blocks // batch_size // 2  # resume half-way through the epoch
        start = time.perf_counter()
        next(iter(skip_first_batches(loader, skipped)))
        seconds = time.perf_counter() - start
    return {
        "blocks": n_blocks,
        "batch_size": batch_size,
        "batches_skipped": skipped,
        "tokens_skipped": skipped * batch_size * blocks.block_size,
        "seconds": round(seconds, 3),
        "blocks_read": blocks.reads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/resume_position.json"))
    args = parser.parse_args()
    rows = [measure(n, args.batch_size) for n in args.blocks]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": "cpu", "rows": rows}, indent=2) + "\n")
    print(f"{'blocks':>12} {'tokens skipped':>16} {'seconds':>8} {'blocks read':>12}")
    for r in rows:
        print(f"{r['blocks']:>12,} {r['tokens_skipped']:>16,} {r['seconds']:>8.2f} {r['blocks_read']:>12}")


if __name__ == "__main__":
    main()
