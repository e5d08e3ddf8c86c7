"""Token ids -> packed blocks, and the counts behind the unigram bar: the steps every back-end shares.

Documents go end to end, each followed by a separator, and one of two packers cuts them into blocks of a
fixed length (`packer_for` picks it from the spec):
- `Packer` (joined) cuts the stream wherever a block is full: no token is lost, and blocks start anywhere;
- `AlignedPacker` (document-aligned) starts every block at a document: it fills each block best-fit from a
  buffer of documents and crops one to fill what is left, so some tokens are dropped (counted in `dropped`).
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..errors import ScratchError

# Documents are tokenized in pieces of at most this many characters: a tokenizer's memory grows with the
# longest text it is given (a 50 MB one-line file took 10.5 GB), and a piece keeps it bounded.
PIECE_CHARS = 100_000
CHARS_AT_ONCE = 10 * PIECE_CHARS


def pieces(text: str, limit: int = PIECE_CHARS) -> list[str]:
    """`text` cut into pieces of at most `limit` characters, each cut just before a space that starts a word,
    where byte-level BPE's pre-tokenizer splits anyway, so the ids are those of the whole text; a stretch with
    no such space (Chinese, say) is cut at the limit."""
    if len(text) <= limit:
        return [text]
    out, start = [], 0
    while len(text) - start > limit:
        end = start + limit
        cut = text.rfind(" ", start + 1, end)
        while cut > start and text[cut + 1 : cut + 2].isspace():  # inside a run of spaces: cut before the run ends
            cut = text.rfind(" ", start + 1, cut)
        cut = cut if cut > start else end
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def _groups(texts: list[str]) -> Iterator[list[str]]:
    """Consecutive texts of about CHARS_AT_ONCE characters together (one batch call each)."""
    group, size = [], 0
    for text in texts:
        group.append(text)
        size += len(text)
        if size >= CHARS_AT_ONCE:
            yield group
            group, size = [], 0
    if group:
        yield group


def tokenize(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each document, without special tokens (packing adds the separators).

    The Rust tokenizer is called directly: same ids, and no warning that a document is longer than the
    model's context (packing cuts documents into blocks anyway). Long documents go in as `pieces`.
    """
    cut = [pieces(text) for text in texts]
    flat = [piece for parts in cut for piece in parts]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    ids: list[list[int]] = []
    for group in _groups(flat):  # a group's encodings are freed before the next group is encoded
        if backend is None:
            ids += tokenizer(group, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        else:
            ids += [encoding.ids for encoding in backend.encode_batch(group, add_special_tokens=False)]
    if len(flat) == len(cut):
        return ids
    out, at = [], 0
    for parts in cut:
        out.append([token for piece_ids in ids[at : at + len(parts)] for token in piece_ids])
        at += len(parts)
    return out


@dataclass(frozen=True)
class PackingSpec:
    """How documents become blocks: the separator between documents and the tokens around each block.
    The objective (`scratchlm.objectives`) decides which."""

    block_size: int
    separator_id: int
    block_prefix: tuple[int, ...] = ()
    block_suffix: tuple[int, ...] = ()
    document_aligned: bool = False  # training blocks only: held-out blocks are joined in every run (`heldout`)

    @property
    def content_size(self) -> int:
        return self.block_size - len(self.block_prefix) - len(self.block_suffix)

    @property
    def heldout(self) -> PackingSpec:
        """The held-out layout: joined whatever the training packing, so held-out losses compare across runs."""
        return replace(self, document_aligned=False)


def document_stream(sequences: Iterable[Sequence[int]], separator_id: int) -> np.ndarray:
    """The documents end to end, each followed by `separator_id`."""
    sequences = list(sequences)
    lengths = np.fromiter((len(ids) + 1 for ids in sequences), dtype=np.int64, count=len(sequences))
    stream = np.full(int(lengths.sum()), separator_id, dtype=np.int64)
    start = 0
    for ids, length in zip(sequences, lengths):
        stream[start : start + length - 1] = ids
        start += int(length)
    return stream


class Packer:
    """Cuts a token stream into `spec.block_size` blocks, `prefix + content + suffix`; what does not fill a
    block waits in `carry` for the next call, and is dropped by `finish`."""

    def __init__(self, spec: PackingSpec):
        if spec.content_size < 1:
            raise ValueError(f"block_size {spec.block_size} leaves no room for content")
        self.spec = spec
        self.carry = np.zeros(0, dtype=np.int64)
        self.dropped = 0  # tokens given to `add` that are in no block
        self._prefix = np.asarray(spec.block_prefix, dtype=np.int64)
        self._suffix = np.asarray(spec.block_suffix, dtype=np.int64)

    def _frame(self, body: np.ndarray) -> np.ndarray:
        """(n, content) -> (n, block_size): the block prefix and suffix around each row."""
        n = len(body)
        return np.hstack([np.tile(self._prefix, (n, 1)), body, np.tile(self._suffix, (n, 1))])

    def add(self, stream: np.ndarray) -> np.ndarray:
        """Blocks, shape (n, block_size), of the carried tokens followed by `stream`."""
        tokens = np.concatenate([self.carry, np.asarray(stream, dtype=np.int64)])
        content = self.spec.content_size
        n = len(tokens) // content
        self.carry = tokens[n * content :]
        return self._frame(tokens[: n * content].reshape(n, content))

    def add_documents(self, sequences: Iterable[Sequence[int]]) -> np.ndarray:
        return self.add(document_stream(sequences, self.spec.separator_id))

    def finish(self) -> np.ndarray:
        """The blocks still held back (none here: the tail that does not fill a block is dropped)."""
        self.dropped += len(self.carry)
        self.carry = self.carry[:0]
        return np.zeros((0, self.spec.block_size), dtype=np.int64)


# Documents the aligned packer chooses among when it fills a block: more leaves less to crop.
BEST_FIT_DOCUMENTS = 1000


class AlignedPacker(Packer):
    """Every block starts at a document (nanochat's BOS-aligned best-fit packing). Each block takes the
    longest buffered document that fits what is left of it, again and again; when none fits, the shortest
    is cropped to fill the block and its rest dropped. A document longer than a block fills whole blocks
    from its start, and its last piece is packed like a short document: nothing of it is lost, but those
    blocks start inside it."""

    def __init__(self, spec: PackingSpec):
        super().__init__(spec)
        self._lengths: list[int] = []  # sorted lengths of the buffered pieces
        self._pieces: dict[int, deque[np.ndarray]] = defaultdict(deque)  # oldest first within a length
        self._buffered = 0  # tokens in the buffer

    def add(self, stream: np.ndarray) -> np.ndarray:
        stream = np.concatenate([self.carry, np.asarray(stream, dtype=np.int64)])
        documents = np.split(stream, np.flatnonzero(stream == self.spec.separator_id) + 1)
        self.carry = documents.pop()  # a document whose separator has not come yet (usually empty)
        for document in documents:
            self._buffer(document)
        return self._blocks(keep=BEST_FIT_DOCUMENTS)

    def finish(self) -> np.ndarray:
        self._buffer(self.carry)
        self.carry = self.carry[:0]
        return self._blocks(keep=0)

    def _buffer(self, document: np.ndarray) -> None:
        content = self.spec.content_size
        for start in range(0, len(document), content):  # each document keeps its separator
            piece = document[start : start + content]
            if len(piece) == 1 and piece[0] == self.spec.separator_id:  # nothing to separate from the next one
                self.dropped += 1
                continue
            insort(self._lengths, len(piece))
            self._pieces[len(piece)].append(piece)
            self._buffered += len(piece)

    def _blocks(self, keep: int) -> np.ndarray:
        content, rows = self.spec.content_size, []
        while len(self._lengths) > keep and (keep == 0 or self._buffered >= content):
            row, room = [], content
            while room and self._lengths:
                i = bisect_right(self._lengths, room) - 1
                length = self._lengths.pop(max(i, 0))  # i < 0: nothing fits, so the shortest is cropped
                piece = self._pieces[length].popleft()
                self._buffered -= length
                row.append(piece[:room])
                self.dropped += max(length - room, 0)
                room -= min(length, room)
            if room:  # the buffer ran out before the block was full
                self.dropped += content - room
                break
            rows.append(np.concatenate(row))
        body = np.stack(rows) if rows else np.zeros((0, content), dtype=np.int64)
        return self._frame(body)


def packer_for(spec: PackingSpec) -> Packer:
    return AlignedPacker(spec) if spec.document_aligned else Packer(spec)


def pack(
    sequences: Sequence[Sequence[int]],
    block_size: int,
    separator_id: int,
    block_prefix: Sequence[int] = (),
    block_suffix: Sequence[int] = (),
) -> list[list[int]]:
    """The blocks of `sequences` alone; the tail that does not fill a block is dropped (at most one block
    per call, so call it on large batches)."""
    spec = PackingSpec(block_size, separator_id, tuple(block_prefix), tuple(block_suffix))
    return Packer(spec).add_documents(sequences).tolist()


def require_blocks(
    count: int, split: str, block_size: int, heldout_flag: str = "--validation_split_percentage"
) -> None:
    """Stop with the fix when a split does not fill a single block."""
    if count > 0:
        return
    if split == "train":
        raise ScratchError(
            f"the training split is shorter than one block of {block_size} tokens: add text or lower --block_size"
        )
    raise ScratchError(
        f"the held-out split is shorter than one block of {block_size} tokens: raise {heldout_flag}, "
        "give longer --validation_files, or lower --block_size"
    )


# ---------------------------------------------------------------------------------------------
# The bar a model must clear
# ---------------------------------------------------------------------------------------------
def count_tokens(arrays: Iterable[np.ndarray], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in `arrays` (blocks or token streams)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for array in arrays:
        counts += np.bincount(np.asarray(array).ravel(), minlength=vocab_size)[:vocab_size]
    return counts


def dataset_arrays(ds: Dataset, batch_size: int = 4096) -> Iterable[np.ndarray]:
    for batch in ds.with_format("numpy").iter(batch_size=batch_size):
        yield np.asarray(batch["input_ids"])


def unigram_cross_entropy(
    train_counts: np.ndarray, blocks: Dataset, skip_first: int = 1, exclude_ids: Sequence[int] = ()
) -> float:
    """Cross-entropy (nats/token) on `blocks` of a unigram model fitted on `train_counts` (add-one smoothed).

    `skip_first` leaves out each block's first positions, which a causal LM never predicts;
    `exclude_ids` are tokens never scored nor predicted (the special tokens an MLM never masks), so
    the result is the expected loss of the unigram model on randomly masked positions.
    """
    counts = train_counts.astype(np.float64)
    counts[list(exclude_ids)] = 0.0
    log_probs = np.log(counts + 1.0) - math.log(counts.sum() + len(counts))
    total, count = 0.0, 0
    for ids in dataset_arrays(blocks):
        ids = ids[:, skip_first:]
        keep = ~np.isin(ids, list(exclude_ids)) if len(exclude_ids) else np.ones(ids.shape, dtype=bool)
        total -= float(log_probs[ids[keep]].sum())
        count += int(keep.sum())
    return total / max(count, 1)


# ---------------------------------------------------------------------------------------------
# What every back-end hands the trainer
# ---------------------------------------------------------------------------------------------
@dataclass
class DataStats:
    train_blocks: int | None  # None for a stream
    validation_blocks: int
    validation_characters: int  # of the validation documents, for bits per character
    validation_tokens: int  # of the same documents, separators included
    validation_bytes: int | None = None  # their UTF-8 bytes, for bits per byte (None: data prepared before it)
    train_dropped_tokens: int | None = None  # training tokens in no block (None: a stream, or not counted)

    @property
    def chars_per_token(self) -> float:
        return self.validation_characters / max(self.validation_tokens, 1)

    @property
    def bytes_per_token(self) -> float | None:
        return None if self.validation_bytes is None else self.validation_bytes / max(self.validation_tokens, 1)


@dataclass
class LMData:
    train: Dataset | torch.utils.data.IterableDataset  # a stream with --streaming
    validation: Dataset
    stats: DataStats
    unigram_counts: np.ndarray  # token counts over the training blocks, for the unigram baseline
    corpus_description: str
    corpus_fingerprint: str
    tokenizer_fingerprint: str
    cache_dir: Path | None = None
    cache_hit: bool = False

    @property
    def block_size(self) -> int:
        return int(self.validation[0]["input_ids"].shape[0])

    @property
    def streaming(self) -> bool:
        return self.stats.train_blocks is None
