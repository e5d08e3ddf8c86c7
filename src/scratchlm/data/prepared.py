"""The prepared back-end: tokenize and pack a large corpus once into sharded, memory-mapped Arrow files
that recipes read with
`--prepared_data DIR` and never tokenize again.

Memory stays flat whatever the corpus size: documents stream from the (memory-mapped) corpus in
chunks, `num_proc` worker processes tokenize them, and the main process packs them into blocks
(carrying what is not yet packed to the next chunk) and appends them to the current shard.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, Sequence, Value, concatenate_datasets
from datasets.arrow_writer import ArrowWriter

from ..arguments import DataArguments, TokenizerArguments
from ..errors import ScratchError, leave_interrupts_to_the_main_process, workers_start_deaf_to_ctrl_c, writable_folder
from ..tokenizer import load_tokenizer, tokenizer_fingerprint
from . import integrity
from .cached import UNIGRAM_FILE
from .files import TEXT
from .packing import DataStats, LMData, PackingSpec, count_tokens, document_stream, packer_for, require_blocks, tokenize
from .sources import load_corpus

logger = logging.getLogger("scratchlm")

MANIFEST = "prepared.json"
FORMAT_VERSION = 2  # 2: file sizes and hashes in the manifest

_worker_tokenizer = None


def _init_worker(tokenizer_dir: str) -> None:
    global _worker_tokenizer  # Ctrl-C: the pool starts its workers deaf to it (workers_start_deaf_to_ctrl_c)
    leave_interrupts_to_the_main_process()  # and a SIGTERM must not leave its queue locked
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker; the pool gives the parallelism
    _worker_tokenizer = load_tokenizer(tokenizer_dir, required=())


def _tokenize_chunk(args: tuple[list[str], int]) -> tuple[np.ndarray, int, int, int]:
    """A chunk of documents as one token stream, each document followed by the separator; its characters,
    UTF-8 bytes and tokens."""
    texts, separator = args
    stream = document_stream(tokenize(texts, _worker_tokenizer), separator)
    return stream, sum(len(t) for t in texts), sum(len(t.encode()) for t in texts), len(stream)


class _ShardWriter:
    """Appends blocks to Arrow shards of at most `shard_blocks` blocks each."""

    def __init__(self, directory: Path, split: str, features: Features, shard_blocks: int):
        self.directory, self.split, self.features, self.shard_blocks = directory, split, features, shard_blocks
        self.shards: list[dict] = []
        self.writer: ArrowWriter | None = None
        self.in_shard = 0

    def write(self, blocks: np.ndarray) -> None:
        start = 0
        while start < len(blocks):
            if self.writer is None:
                name = f"{self.split}-{len(self.shards):05d}.arrow"
                self.writer = ArrowWriter(features=self.features, path=str(self.directory / name))
                self.shards.append({"file": name, "blocks": 0})
            take = min(len(blocks) - start, self.shard_blocks - self.in_shard)
            part = blocks[start : start + take]
            offsets = pa.array(np.arange(0, part.size + 1, part.shape[1], dtype=np.int32))
            column = pa.ListArray.from_arrays(
                offsets, pa.array(part.ravel(), type=self.features["input_ids"].feature.pa_type)
            )
            self.writer.write_table(pa.table({"input_ids": column}))
            self.shards[-1]["blocks"] += take
            self.in_shard += take
            start += take
            if self.in_shard == self.shard_blocks:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.finalize()
            self.writer.close()
            self.writer, self.in_shard = None, 0


def prepare(
    data_args: DataArguments,
    tokenizer_args: TokenizerArguments,
    objective,
    out: Path,
    num_proc: int | None = None,
    shard_tokens: int = 100_000_000,
    chunk_documents: int = 2000,
    overwrite: bool = False,
) -> dict:
    """Write the packed train and validation splits of `data_args`' corpus to `out`, laid out as `objective`
    (a `scratchlm.objectives.Objective`) packs them; returns the manifest."""
    if out.exists() and not out.is_dir():
        raise ScratchError(f"--out {out} is a file: give a folder for the shards")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ScratchError(f"--out {out} already exists and is not empty: choose another or pass --overwrite")
        if not (out / MANIFEST).is_file():  # --overwrite replaces prepared data, never a run or anything else
            raise ScratchError(
                f"--out {out} holds no prepared data ({MANIFEST}), so --overwrite will not replace it: "
                "give a new folder, or one written by scratchlm prepare"
            )
    writable_folder(out.parent, "the folder of --out", fix="give an --out you can write to")
    tokenizer_dir = tokenizer_args.tokenizer_name_or_path
    if not Path(tokenizer_dir).is_dir():
        raise ScratchError(
            f"tokenizer {tokenizer_dir} does not exist: train it first "
            "(python tokenizer_training/train_tokenizer.py) or point --tokenizer_name_or_path at it"
        )
    tokenizer = load_tokenizer(tokenizer_dir, required=objective.required_special_tokens)
    spec = objective.packing(tokenizer, data_args.block_size, document_aligned=data_args.packing == "aligned")
    num_proc = num_proc or min(os.cpu_count() or 1, 8)
    start = time.perf_counter()
    corpus = load_corpus(data_args, num_proc=num_proc)

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = "uint16" if len(tokenizer) <= 65536 else "uint32"
    features = Features({"input_ids": Sequence(Value(dtype))})
    shard_blocks = max(1, shard_tokens // spec.block_size)
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    splits, characters, val_chars, val_bytes, val_tokens, dropped = {}, 0, 0, 0, 0, 0

    with workers_start_deaf_to_ctrl_c():
        pool = multiprocessing.get_context("spawn").Pool(
            num_proc, initializer=_init_worker, initargs=(str(tokenizer_dir),)
        )
    with pool:
        for split in ("train", "validation"):
            writer = _ShardWriter(tmp, split, features, shard_blocks)
            documents = corpus.train if split == "train" else corpus.validation
            chunks = ((batch[TEXT], spec.separator_id) for batch in documents.iter(chunk_documents))
            packer = packer_for(spec if split == "train" else spec.heldout)
            for chunk in chain(pool.imap(_tokenize_chunk, chunks), [None]):  # None: the end, where packing finishes
                if chunk is None:
                    blocks = packer.finish()
                else:
                    stream, chars, n_bytes, tokens = chunk
                    characters += chars
                    if split == "validation":
                        val_chars, val_bytes, val_tokens = val_chars + chars, val_bytes + n_bytes, val_tokens + tokens
                    blocks = packer.add(stream)
                if len(blocks):
                    writer.write(blocks)
                    if split == "train":
                        counts += count_tokens([blocks], len(tokenizer))
            if split == "train":
                dropped = packer.dropped
            writer.close()
            blocks_total = sum(s["blocks"] for s in writer.shards)
            require_blocks(blocks_total, split, spec.block_size)
            splits[split] = {"shards": writer.shards, "blocks": blocks_total, "tokens": blocks_total * spec.block_size}

    np.save(tmp / UNIGRAM_FILE, counts)
    stats = DataStats(
        splits["train"]["blocks"], splits["validation"]["blocks"], val_chars, val_tokens, val_bytes, dropped
    )
    seconds = time.perf_counter() - start
    manifest = {
        "files": integrity.record(tmp),
        "format": FORMAT_VERSION,
        "tokenizer": str(tokenizer_dir),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "packing": asdict(spec),
        "dtype": dtype,
        "corpus": corpus.description,
        "corpus_fingerprint": corpus.fingerprint,
        "splits": splits,
        "stats": asdict(stats),
        "input_characters": characters,
        "seconds": round(seconds, 1),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)  # a killed run never leaves a folder that looks prepared
    logger.info(
        "prepared %s train / %s validation tokens in %d + %d shards in %.0f s -> %s",
        f"{splits['train']['tokens']:,}",
        f"{splits['validation']['tokens']:,}",
        len(splits["train"]["shards"]),
        len(splits["validation"]["shards"]),
        seconds,
        out,
    )
    return manifest


def load_prepared(directory: str, tokenizer, spec: PackingSpec, full_check: bool = False) -> LMData:
    """The packed splits written by `prepare`, memory-mapped; refuses a tokenizer or layout other than its own,
    and files that changed on disk since they were written (sampled pages, or every byte with `full_check`)."""
    root = Path(directory)
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ScratchError(
            f"--prepared_data {root} has no readable {MANIFEST}: create it with `scratchlm prepare`"
        ) from None
    if manifest["tokenizer_fingerprint"] != tokenizer_fingerprint(tokenizer):
        raise ScratchError(
            f"--prepared_data {root} was tokenized with {manifest['tokenizer']}, not with this run's "
            "tokenizer: use that tokenizer (--tokenizer_name_or_path) or prepare the data again"
        )
    wanted = json.loads(json.dumps(asdict(spec)))  # as stored: tuples become lists
    if {"document_aligned": False, **manifest["packing"]} != wanted:  # data prepared before the option is joined
        raise ScratchError(
            f"--prepared_data {root} holds blocks laid out as {manifest['packing']}, but this run "
            f"needs {wanted}: match --block_size / the recipe, or prepare the data again"
        )
    if "files" not in manifest:
        raise ScratchError(
            f"--prepared_data {root} records no file hashes (it was prepared by an older scratchlm), "
            "so it cannot be checked: prepare it again with `scratchlm prepare ... --overwrite`"
        )
    damage = integrity.problem(root, manifest["files"], full=full_check)
    if damage:
        raise ScratchError(
            f"--prepared_data {root}: {damage}, so it is not used: restore the folder from where it "
            "came, or prepare it again with `scratchlm prepare ... --overwrite`"
        )
    splits = {
        name: concatenate_datasets([Dataset.from_file(str(root / s["file"])) for s in split["shards"]])
        for name, split in manifest["splits"].items()
    }
    return LMData(
        train=splits["train"],
        validation=splits["validation"],
        stats=DataStats(**manifest["stats"]),
        unigram_counts=np.load(root / UNIGRAM_FILE),
        corpus_description=manifest["corpus"],
        corpus_fingerprint=manifest["corpus_fingerprint"],
        tokenizer_fingerprint=manifest["tokenizer_fingerprint"],
        cache_dir=root,
        cache_hit=True,
    )
