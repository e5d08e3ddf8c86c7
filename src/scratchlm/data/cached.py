"""The cached back-end: documents tokenized and packed with `datasets.map`, saved with `save_to_disk`
under a key of everything that shapes them, and memory-mapped when the same run comes again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from datasets import DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from ..arguments import DataArguments
from ..errors import leave_interrupts_to_the_main_process, writable_folder
from . import integrity
from .files import TEXT
from .packing import DataStats, LMData, PackingSpec, count_tokens, dataset_arrays, packer_for, require_blocks, tokenize
from .sources import Corpus, load_corpus, source_of

logger = logging.getLogger(__name__)

PIPELINE_VERSION = 6  # bump whenever tokenize/pack/cache layout change what a cached dataset holds
META_FILE = "scratchlm_data.json"
UNIGRAM_FILE = "unigram_counts.npy"
# Documents are packed in batches of this many, one process a batch: the last tokens of each, too few for a
# block, are in none (0.11% of zh_demo's training tokens at block 128).
PACKING_BATCH_DOCUMENTS = 1000


def cache_root(args: DataArguments) -> Path:
    if args.data_cache_dir:
        return writable_folder(args.data_cache_dir, "--data_cache_dir") / "packed"
    where = "SCRATCHLM_CACHE" if os.environ.get("SCRATCHLM_CACHE") else "the default data cache"
    root = os.environ.get("SCRATCHLM_CACHE") or Path.home() / ".cache" / "scratchlm"
    return writable_folder(root, where, fix="pass --data_cache_dir with a folder you can write to") / "packed"


def cache_key(corpus_fp: str, tokenizer_fp: str, spec: PackingSpec) -> str:
    payload = json.dumps(
        {"pipeline": PIPELINE_VERSION, "corpus": corpus_fp, "tokenizer": tokenizer_fp, "packing": asdict(spec)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _tokenize_and_pack(batch, tokenizer, spec: PackingSpec):
    """The blocks of a batch of documents, and in `dropped` (on its first block) how many of its tokens are in
    none: a batch too small for one block goes uncounted, as it has no row to carry the count."""
    leave_interrupts_to_the_main_process()
    packer = packer_for(spec)
    blocks = np.concatenate([packer.add_documents(tokenize(batch[TEXT], tokenizer)), packer.finish()])
    return {"input_ids": blocks.tolist(), "dropped": [packer.dropped] + [0] * (len(blocks) - 1) if len(blocks) else []}


def _build(corpus: Corpus, tokenizer, spec: PackingSpec, num_proc: int | None, target: Path) -> None:
    packed, dropped = {}, {}
    for split, docs, layout in (("train", corpus.train, spec), ("validation", corpus.validation, spec.heldout)):
        blocks = docs.map(
            _tokenize_and_pack,
            batched=True,
            batch_size=PACKING_BATCH_DOCUMENTS,
            fn_kwargs={"tokenizer": tokenizer, "spec": layout},
            remove_columns=docs.column_names,
            num_proc=num_proc if num_proc and num_proc > 1 and len(docs) >= 2000 else None,
            desc=f"tokenizing and packing {split}",
        )
        require_blocks(len(blocks), split, spec.block_size)
        dropped[split] = int(np.sum(blocks["dropped"]))
        packed[split] = blocks.remove_columns("dropped")
    val_docs = list(corpus.validation[TEXT])
    stats = DataStats(
        train_blocks=len(packed["train"]),
        validation_blocks=len(packed["validation"]),
        validation_characters=sum(len(t) for t in val_docs),
        validation_tokens=sum(len(ids) + 1 for ids in tokenize(val_docs, tokenizer)),
        validation_bytes=sum(len(t.encode()) for t in val_docs),
        train_dropped_tokens=dropped["train"],
    )
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    DatasetDict(packed).save_to_disk(str(tmp))
    np.save(tmp / UNIGRAM_FILE, count_tokens(dataset_arrays(packed["train"]), len(tokenizer)))
    files = integrity.record(tmp)
    (tmp / META_FILE).write_text(
        json.dumps({"stats": asdict(stats), "corpus": corpus.description, "files": files}, indent=2)
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a killed build never leaves a half-written cache that looks complete


def _intact(target: Path, full: bool) -> bool:
    """Whether `target` is a complete cache whose files are as they were written; a damaged one is said so."""
    if not (target / META_FILE).exists():
        return False
    try:
        meta = json.loads((target / META_FILE).read_text())
        problem = integrity.problem(target, meta["files"], full=full) or (
            None if isinstance(meta.get("stats"), dict) and "corpus" in meta else f"{META_FILE} lacks its fields"
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        problem = f"{META_FILE} is not the record it writes"
    if problem:
        logger.warning("packed dataset cache %s is damaged (%s): building it again", target, problem)
    return problem is None


def load_cached(
    args: DataArguments,
    tokenizer: PreTrainedTokenizerBase,
    spec: PackingSpec,
    tokenizer_fp: str,
    corpus: Corpus | None = None,
) -> LMData:
    """Packed train/validation blocks for `tokenizer`, from the cache when nothing that shapes them changed."""
    num_proc = args.preprocessing_num_workers or min(os.cpu_count() or 1, 8)
    source = source_of(args)
    corpus_fp = corpus.fingerprint if corpus is not None else source.fingerprint()
    if corpus_fp is None:  # a Hub dataset: fingerprinted once loaded
        corpus = load_corpus(args, num_proc=num_proc, source=source)
        corpus_fp = corpus.fingerprint
    target = cache_root(args) / cache_key(corpus_fp, tokenizer_fp, spec)
    full = args.verify_data == "full"
    hit = not args.overwrite_cache and _intact(target, full)
    if not hit:
        # One builder at a time: a second process (another terminal, another job) waits, then reads its work.
        with integrity.exclusive(target.with_name(target.name + ".lock"), str(target)):
            hit = not args.overwrite_cache and _intact(target, full)
            if not hit:
                logger.info("packed dataset cache miss: tokenizing into %s", target)
                corpus = corpus or load_corpus(args, fingerprint=corpus_fp, num_proc=num_proc, source=source)
                _build(corpus, tokenizer, spec, num_proc, target)
    if hit:
        logger.info("packed dataset cache hit: %s (tokenization skipped)", target)
    meta = json.loads((target / META_FILE).read_text())
    packed = load_from_disk(str(target))
    return LMData(
        train=packed["train"],
        validation=packed["validation"],
        stats=DataStats(**meta["stats"]),
        unigram_counts=np.load(target / UNIGRAM_FILE),
        # The cache is keyed by content, so a hit may come from the same files at another path: the run
        # names the files it was given, not those the cache was built from.
        corpus_description=source.describe(),
        corpus_fingerprint=corpus_fp,
        tokenizer_fingerprint=tokenizer_fp,
        cache_dir=target,
        cache_hit=hit,
    )
