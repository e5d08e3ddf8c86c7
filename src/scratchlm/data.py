"""Documents -> token ids -> packed blocks, cached on disk under a key of everything that shapes them.

`tokenize` and `pack` are pure functions over batches; `prepare_lm_data` runs them with `datasets.map`
and caches the result with `save_to_disk` (memory-mapped when loaded again).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from .arguments import DataArguments
from .corpus import TEXT, Corpus, corpus_fingerprint, load_corpus
from .errors import ScratchError
from .tokenizer import tokenizer_fingerprint

logger = logging.getLogger(__name__)

# Bump whenever tokenize/pack/cache layout change what a cached dataset holds.
PIPELINE_VERSION = 2
META_FILE = "scratchlm_data.json"
UNIGRAM_FILE = "unigram_counts.npy"


# ---------------------------------------------------------------------------------------------
# Pure steps
# ---------------------------------------------------------------------------------------------
def tokenize(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each document, without special tokens (packing adds the separators).

    The Rust tokenizer is called directly: same ids, and no warning that a document is longer than the
    model's context (packing cuts documents into blocks anyway).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch(list(texts), add_special_tokens=False)]


def pack(sequences: Sequence[Sequence[int]], block_size: int, separator_id: int,
         block_prefix: Sequence[int] = (), block_suffix: Sequence[int] = ()) -> list[list[int]]:
    """Concatenate documents, each followed by `separator_id`, into non-overlapping blocks.

    Every block is `block_prefix + content + block_suffix` and exactly `block_size` long; the tail
    that does not fill a block is dropped (at most one block per call, so call it on large batches).
    """
    spec = PackingSpec(block_size, separator_id, tuple(block_prefix), tuple(block_suffix))
    return pack_with_carry(sequences, spec, [])[0]


def pack_with_carry(sequences: Sequence[Sequence[int]], spec: "PackingSpec",
                    carry: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    """`pack` that starts from `carry` and returns the tokens that did not fill a block, for the next call."""
    content_size = spec.block_size - len(spec.block_prefix) - len(spec.block_suffix)
    if content_size < 1:
        raise ValueError(f"block_size {spec.block_size} leaves no room for content")
    stream = list(carry)
    for ids in sequences:
        stream.extend(ids)
        stream.append(spec.separator_id)
    full = len(stream) - len(stream) % content_size
    prefix, suffix = list(spec.block_prefix), list(spec.block_suffix)
    return [prefix + stream[i:i + content_size] + suffix for i in range(0, full, content_size)], stream[full:]


@dataclass(frozen=True)
class PackingSpec:
    """How documents become blocks: the separator between documents and the tokens around each block."""

    block_size: int
    separator_id: int
    block_prefix: tuple[int, ...] = ()
    block_suffix: tuple[int, ...] = ()

    @classmethod
    def causal(cls, tokenizer: PreTrainedTokenizerBase, block_size: int) -> "PackingSpec":
        return cls(block_size, tokenizer.eos_token_id)

    @classmethod
    def masked(cls, tokenizer: PreTrainedTokenizerBase, block_size: int) -> "PackingSpec":
        """BERT's layout: `[CLS] ... [SEP]` around every block, `[SEP]` between documents."""
        return cls(block_size, tokenizer.sep_token_id, (tokenizer.cls_token_id,), (tokenizer.sep_token_id,))

    def apply(self, sequences):
        return pack(sequences, self.block_size, self.separator_id, self.block_prefix, self.block_suffix)


def _tokenize_and_pack(batch, tokenizer, spec: PackingSpec):
    return {"input_ids": spec.apply(tokenize(batch[TEXT], tokenizer))}


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def cache_root(args: DataArguments) -> Path:
    root = args.data_cache_dir or os.environ.get("SCRATCHLM_CACHE") or Path.home() / ".cache" / "scratchlm"
    return Path(root) / "packed"


def cache_key(corpus_fp: str, tokenizer_fp: str, spec: PackingSpec) -> str:
    payload = json.dumps({"pipeline": PIPELINE_VERSION, "corpus": corpus_fp, "tokenizer": tokenizer_fp,
                          "packing": asdict(spec)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@dataclass
class DataStats:
    train_blocks: int | None  # None for a stream
    validation_blocks: int
    validation_characters: int  # of the validation documents, for bits per character
    validation_tokens: int  # of the same documents, separators included

    @property
    def chars_per_token(self) -> float:
        return self.validation_characters / max(self.validation_tokens, 1)


@dataclass
class LMData:
    train: Dataset | torch.utils.data.IterableDataset  # a stream with --streaming
    validation: Dataset
    stats: DataStats
    unigram_counts: np.ndarray  # token counts over the training blocks, for the unigram baseline
    cache_dir: Path | None
    cache_hit: bool
    corpus_description: str
    corpus_fingerprint: str
    tokenizer_fingerprint: str

    @property
    def block_size(self) -> int:
        return int(self.validation[0]["input_ids"].shape[0])

    @property
    def streaming(self) -> bool:
        return self.stats.train_blocks is None


def _count_tokens(ds: Dataset, vocab_size: int) -> np.ndarray:
    counts = np.zeros(vocab_size, dtype=np.int64)
    for batch in ds.with_format("numpy").iter(batch_size=4096):
        counts += np.bincount(np.asarray(batch["input_ids"]).ravel(), minlength=vocab_size)[:vocab_size]
    return counts


def _build(corpus: Corpus, tokenizer, spec: PackingSpec, num_proc: int | None, target: Path) -> None:
    fn_kwargs = {"tokenizer": tokenizer, "spec": spec}
    packed = {}
    for split, docs in corpus.splits.items():
        packed[split] = docs.map(
            _tokenize_and_pack, batched=True, batch_size=1000, fn_kwargs=fn_kwargs, remove_columns=docs.column_names,
            num_proc=num_proc if num_proc and num_proc > 1 and len(docs) >= 2000 else None,
            desc=f"tokenizing and packing {split}",
        )
    if len(packed["train"]) == 0:
        raise ScratchError(f"the training corpus is shorter than one block of {spec.block_size} tokens: "
                           "add text or lower --block_size")
    if len(packed["validation"]) == 0:
        raise ScratchError(f"the held-out split is shorter than one block of {spec.block_size} tokens: raise "
                           "--validation_split_percentage, give longer --validation_files, or lower --block_size")
    val_docs = list(corpus.splits["validation"][TEXT])
    stats = DataStats(
        train_blocks=len(packed["train"]), validation_blocks=len(packed["validation"]),
        validation_characters=sum(len(t) for t in val_docs),
        validation_tokens=sum(len(ids) + 1 for ids in tokenize(val_docs, tokenizer)),
    )
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    DatasetDict(packed).save_to_disk(str(tmp))
    np.save(tmp / UNIGRAM_FILE, _count_tokens(packed["train"], len(tokenizer)))
    (tmp / META_FILE).write_text(json.dumps({"stats": asdict(stats), "corpus": corpus.description}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a killed build never leaves a half-written cache that looks complete


def prepare_lm_data(args: DataArguments, tokenizer: PreTrainedTokenizerBase, spec: PackingSpec,
                    corpus: Corpus | None = None) -> LMData:
    """Packed train/validation blocks for `tokenizer`, from the cache when nothing that shapes them changed
    (or from a folder written by `scratchlm prepare`, with `--prepared_data`)."""
    if args.streaming:
        from .streaming import prepare_streaming_data

        return prepare_streaming_data(args, tokenizer, spec, corpus)
    if args.prepared_data:
        from .prepare import load_prepared

        logger.info("reading prepared blocks from %s (no tokenization)", args.prepared_data)
        return _select(load_prepared(args.prepared_data, tokenizer, spec), args)
    num_proc = args.preprocessing_num_workers or min(os.cpu_count() or 1, 8)
    corpus_fp = corpus.fingerprint if corpus is not None else corpus_fingerprint(args)
    if not corpus_fp:  # Hub datasets are fingerprinted once loaded
        corpus = load_corpus(args, num_proc=num_proc)
        corpus_fp = corpus.fingerprint
    tokenizer_fp = tokenizer_fingerprint(tokenizer)
    target = cache_root(args) / cache_key(corpus_fp, tokenizer_fp, spec)
    hit = (target / META_FILE).exists() and not args.overwrite_cache
    if hit:
        logger.info("packed dataset cache hit: %s (tokenization skipped)", target)
    else:
        logger.info("packed dataset cache miss: tokenizing into %s", target)
        corpus = corpus or load_corpus(args, fingerprint=corpus_fp, num_proc=num_proc)
        target.parent.mkdir(parents=True, exist_ok=True)
        _build(corpus, tokenizer, spec, num_proc, target)
    meta = json.loads((target / META_FILE).read_text())
    packed = load_from_disk(str(target))
    return _select(LMData(packed["train"], packed["validation"], DataStats(**meta["stats"]),
                          np.load(target / UNIGRAM_FILE), target, hit, meta["corpus"], corpus_fp, tokenizer_fp), args)


def _select(data: LMData, args: DataArguments) -> LMData:
    """Apply max_train_samples / max_eval_samples and hand out torch tensors."""
    if args.max_train_samples is not None:
        data.train = data.train.select(range(min(args.max_train_samples, len(data.train))))
    if args.max_eval_samples is not None:
        data.validation = data.validation.select(range(min(args.max_eval_samples, len(data.validation))))
    data.train, data.validation = data.train.with_format("torch"), data.validation.with_format("torch")
    return data


# ---------------------------------------------------------------------------------------------
# The bar a model must clear
# ---------------------------------------------------------------------------------------------
def unigram_cross_entropy(train_counts: np.ndarray, blocks: Dataset, skip_first: int = 1,
                          exclude_ids: Sequence[int] = ()) -> float:
    """Cross-entropy (nats/token) on `blocks` of a unigram model fitted on `train_counts` (add-one smoothed).

    `skip_first` leaves out each block's first positions, which a causal LM never predicts;
    `exclude_ids` are tokens never scored nor predicted (the special tokens an MLM never masks), so
    the result is the expected loss of the unigram model on randomly masked positions.
    """
    counts = train_counts.astype(np.float64)
    counts[list(exclude_ids)] = 0.0
    log_probs = np.log(counts + 1.0) - math.log(counts.sum() + len(counts))
    total, count = 0.0, 0
    for batch in blocks.with_format("numpy").iter(batch_size=4096):
        ids = np.asarray(batch["input_ids"])[:, skip_first:]
        keep = ~np.isin(ids, list(exclude_ids)) if len(exclude_ids) else np.ones(ids.shape, dtype=bool)
        total -= float(log_probs[ids[keep]].sum())
        count += int(keep.sum())
    return total / max(count, 1)
