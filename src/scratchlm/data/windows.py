"""Which windows of the token stream each epoch trains on.

The packed blocks cut the stream at fixed places, so on a small corpus every epoch shows the model the
same windows, each token always at the same position of its block, and held-out loss soon rises while
training loss keeps falling. `ShiftedWindows` cuts the same stream at a new place each epoch: epoch `e`
starts its windows `offset(e)` tokens after the block boundaries (epoch 0 at them, so a run shorter than an
epoch trains on exactly the packed blocks). Every epoch still covers every token once: the last window
wraps around to the start of the stream. The offset depends only on the seed and the epoch, so a resumed
run sees the windows it would have seen.
"""

from __future__ import annotations

import random

import torch
from datasets import Dataset

from .packing import PackingSpec

WINDOW_ORDERS = ("shifted", "fixed")


class ShiftedWindows(torch.utils.data.Dataset):
    """The packed `blocks` (layout `spec`: prefix + content + suffix), with their content windows moved by a
    seeded offset each epoch. `set_epoch` is called by `WindowOrderCallback` before each epoch."""

    def __init__(self, blocks: Dataset, spec: PackingSpec, seed: int):
        self.blocks = blocks.with_format("torch")
        self.prefix, self.suffix = len(spec.block_prefix), len(spec.block_suffix)
        self.content = spec.content_size
        self.seed = seed
        self.epoch, self.offset = 0, 0

    def offset_of(self, epoch: int) -> int:
        if epoch == 0 or self.content < 2:
            return 0
        return random.Random(f"scratchlm-windows-{self.seed}-{epoch}").randrange(1, self.content)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.offset = epoch, self.offset_of(epoch)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        rows = self.blocks[indices]["input_ids"]  # (k, block)
        if self.offset:
            following = self.blocks[[(i + 1) % len(self.blocks) for i in indices]]["input_ids"]
            start, end = self.prefix + self.offset, self.prefix + self.content
            # content of row i from the offset on, then the content of row i+1 up to the offset: (k, content)
            content = torch.cat([rows[:, start:end], following[:, self.prefix : start]], dim=1)
            rows = torch.cat([rows[:, : self.prefix], content, rows[:, end:]], dim=1)  # (k, block)
        return [{"input_ids": row} for row in rows]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]


def training_windows(blocks, spec: PackingSpec, window_order: str, seed: int):
    """What the trainer iterates over: the packed blocks as they are (`fixed`, or a stream), or shifted."""
    if window_order == "fixed" or not isinstance(blocks, Dataset):
        return blocks
    return ShiftedWindows(blocks, spec, seed)
