"""`--streaming`: tokenize and pack on the fly while training, for corpora too big to tokenize up front.

Documents are read in order from local files, a Hub dataset or a built-in corpus. A fixed, small
held-out set is taken from the start of the stream (every k-th document) and materialised once;
training sees every other document. Inside each dataloader worker, training document j goes to
worker j mod num_workers, which tokenizes it and packs it with its own carry-over into blocks.
Across processes, accelerate's default for iterable datasets reads on the main process and sends
each process its slice of every global batch, so no document is read twice or skipped. The order
is deterministic for a given worker count, which is what lets Trainer resume at the exact block.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from itertools import islice
from typing import Iterator

import datasets
import numpy as np
import torch
from datasets import Dataset

from .arguments import DataArguments
from .corpus import (BUILTIN_CORPORA, TEXT, Corpus, expand_files, load_local, local_loader, require_hub,
                     resolve_builtin)
from .data import DataStats, LMData, PackingSpec, pack_with_carry, tokenize
from .errors import ScratchError
from .tokenizer import tokenizer_fingerprint

logger = logging.getLogger(__name__)

READ_BATCH = 1000  # documents per read from the source
TOKENIZE_BATCH = 256  # documents per tokenizer call inside a worker
UNIGRAM_SAMPLE_DOCUMENTS = 20_000  # training documents counted for the unigram baseline


def _builtin_documents(name: str) -> Iterator[dict]:
    for text in BUILTIN_CORPORA[name].documents():
        yield {TEXT: text}


def _source_and_description(args: DataArguments):
    """The training documents as a datasets IterableDataset (text column only), and a description."""
    if args.train_files:
        files = expand_files(args.train_files, "--train_files")
        loader, kwargs = local_loader(files, args)
        source = datasets.load_dataset(loader, data_files=[str(p) for p in files], split="train", streaming=True,
                                       **kwargs)
        return source, f"local files {' '.join(args.train_files)} (streamed)"
    if args.dataset_name:
        require_hub(f"--dataset_name {args.dataset_name}")
        try:
            source = datasets.load_dataset(args.dataset_name, args.dataset_config_name, revision=args.dataset_revision,
                                           split=args.dataset_split, streaming=True)
        except Exception as err:
            raise ScratchError(f"--dataset_name {args.dataset_name}: could not stream it: {err}".replace("\n", " ")) from None
        return source, f"Hub dataset {args.dataset_name} (streamed)"
    name = resolve_builtin(args.corpus)
    source = datasets.IterableDataset.from_generator(_builtin_documents, gen_kwargs={"name": name})
    return source, f"built-in corpus {name}: {BUILTIN_CORPORA[name].description} (streamed)"


def _stream_fingerprint(args: DataArguments) -> str:
    """Names, sizes and modification times: a content hash would read the whole corpus before training."""
    parts: list = [args.text_column, args.text_sample_by, args.validation_split_percentage,
                   args.streaming_validation_documents]
    if args.train_files:
        for path in expand_files(args.train_files, "--train_files"):
            stat = path.stat()
            parts.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    else:
        parts.append([args.dataset_name, args.dataset_config_name, args.dataset_revision, args.dataset_split, args.corpus])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@dataclass
class DocumentStream:
    """The training documents of a stream, in order, with the held-out ones left out.

    Document i (counting non-blank documents from the start) is held out when `stride` divides it
    and it is among the first `stride * heldout_documents`; `stride` is 0 when the held-out set
    comes from elsewhere (validation files or the dataset's own split).
    """

    source: datasets.IterableDataset
    text_column: str
    stride: int
    heldout_documents: int

    def _documents(self) -> Iterator[tuple[int, str]]:
        index = 0
        # .iter() reads the whole source even inside a dataloader worker; the worker split is ours (below).
        for batch in self.source.iter(batch_size=READ_BATCH):
            if self.text_column not in batch:
                raise ScratchError(f"--text_column {self.text_column} is not in the stream (it has: {', '.join(batch)})")
            for text in batch[self.text_column]:
                if text and text.strip():
                    yield index, text
                    index += 1

    def is_heldout(self, index: int) -> bool:
        return self.stride > 0 and index % self.stride == 0 and index < self.stride * self.heldout_documents

    def texts(self) -> Iterator[str]:
        return (text for index, text in self._documents() if not self.is_heldout(index))

    def heldout_texts(self) -> list[str]:
        texts = []
        for index, text in self._documents():
            if index >= self.stride * self.heldout_documents:
                break
            if self.is_heldout(index):
                texts.append(text)
        return texts

    def iter(self, batch_size: int) -> Iterator[dict]:
        """Batches of `{"text": [...]}`, as datasets' `iter` (the tokenizer trainer reads it so)."""
        batch: list[str] = []
        for text in self.texts():
            batch.append(text)
            if len(batch) == batch_size:
                yield {TEXT: batch}
                batch = []
        if batch:
            yield {TEXT: batch}


class StreamingBlocks(torch.utils.data.IterableDataset):
    """Packed training blocks made on the fly; see the module docstring for who reads what."""

    def __init__(self, documents: DocumentStream, tokenizer, spec: PackingSpec, shuffle_buffer: int, seed: int):
        self.documents, self.tokenizer, self.spec = documents, tokenizer, spec
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # a new shuffle order each pass over the stream

    def _blocks(self, worker: int, workers: int) -> Iterator[list[int]]:
        carry: list[int] = []
        pending: list[str] = []
        for j, text in enumerate(self.documents.texts()):
            if j % workers != worker:
                continue
            pending.append(text)
            if len(pending) == TOKENIZE_BATCH:
                blocks, carry = pack_with_carry(tokenize(pending, self.tokenizer), self.spec, carry)
                yield from blocks
                pending = []
        if pending:
            blocks, _ = pack_with_carry(tokenize(pending, self.tokenizer), self.spec, carry)
            yield from blocks

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers are the parallelism
        rng = random.Random(f"{self.seed}-{self.epoch}-{worker}")
        buffer: list[torch.Tensor] = []  # tensors: a fifth of the memory of lists of Python ints
        for block in map(torch.tensor, self._blocks(worker, workers)):
            if self.shuffle_buffer <= 1:
                yield {"input_ids": block}
                continue
            if len(buffer) < self.shuffle_buffer:
                buffer.append(block)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], block = block, buffer[i]
            yield {"input_ids": block}
        rng.shuffle(buffer)
        for block in buffer:
            yield {"input_ids": block}


def load_streaming_corpus(args: DataArguments) -> Corpus:
    """The stream of training documents and a materialised held-out split, as a Corpus."""
    source, description = _source_and_description(args)
    validation = None
    if args.validation_files:
        validation = list(load_local(expand_files(args.validation_files, "--validation_files"), args,
                                     "--validation_files")[TEXT])
    elif args.dataset_name:
        try:
            names = datasets.get_dataset_split_names(args.dataset_name, args.dataset_config_name,
                                                     revision=args.dataset_revision)
        except Exception:
            names = []
        if "validation" in names and args.dataset_split != "validation":
            stream = DocumentStream(datasets.load_dataset(args.dataset_name, args.dataset_config_name,
                                                          revision=args.dataset_revision, split="validation",
                                                          streaming=True), args.text_column, 0, 0)
            validation = list(islice(stream.texts(), args.streaming_validation_documents))
    stride = 0 if validation is not None else max(2, round(100 / args.validation_split_percentage))
    documents = DocumentStream(source, args.text_column, stride, args.streaming_validation_documents)
    if validation is None:
        validation = documents.heldout_texts()
    validation = [t for t in validation if t and t.strip()]
    if not validation:
        raise ScratchError(f"the stream ({description}) gave no held-out documents: it is empty, or give --validation_files")
    return Corpus(splits={"train": documents, "validation": Dataset.from_dict({TEXT: validation})},
                  fingerprint=_stream_fingerprint(args), description=description)


def prepare_streaming_data(args: DataArguments, tokenizer, spec: PackingSpec, corpus: Corpus | None) -> LMData:
    """Training blocks as a stream; held-out blocks and the unigram baseline from a sample, in memory."""
    corpus = corpus or load_streaming_corpus(args)
    heldout = list(corpus.splits["validation"][TEXT])
    val_ids = tokenize(heldout, tokenizer)
    validation = Dataset.from_dict({"input_ids": spec.apply(val_ids)})
    if len(validation) == 0:
        raise ScratchError(f"the held-out documents are shorter than one block of {spec.block_size} tokens: raise "
                           "--streaming_validation_documents, give longer --validation_files, or lower --block_size")
    if args.max_eval_samples is not None:
        validation = validation.select(range(min(args.max_eval_samples, len(validation))))
    documents: DocumentStream = corpus.splits["train"]
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    sample = list(islice(documents.texts(), UNIGRAM_SAMPLE_DOCUMENTS))
    if not sample:
        raise ScratchError(f"the stream ({corpus.description}) has no training documents")
    for ids in tokenize(sample, tokenizer):
        counts += np.bincount(ids, minlength=len(tokenizer))[:len(tokenizer)]
    counts[spec.separator_id] += len(sample)
    stats = DataStats(train_blocks=None, validation_blocks=len(validation),
                      validation_characters=sum(len(t) for t in heldout),
                      validation_tokens=sum(len(ids) + 1 for ids in val_ids))
    train = StreamingBlocks(documents, tokenizer, spec, args.streaming_shuffle_buffer, seed=0)  # build_trainer sets the run's
    logger.info("%s: tokenizing on the fly; %d held-out blocks from %d documents", corpus.description,
                len(validation), len(heldout))
    return LMData(train, validation.with_format("torch"), stats, counts, None, False, corpus.description,
                  corpus.fingerprint, tokenizer_fingerprint(tokenizer))
