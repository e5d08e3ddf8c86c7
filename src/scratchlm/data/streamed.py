"""The streamed back-end (`--streaming`): tokenize and pack on the fly while training, for corpora too big
to tokenize up front.

Documents are read in order from local files, a Hub dataset or a built-in corpus. A fixed, small
held-out set is taken from the start of the stream (every k-th document) and materialised once;
training sees every other document. Inside each dataloader worker, training document j goes to
worker j mod num_workers, which tokenizes it and packs it with its own carry-over into blocks.
Across processes, accelerate's default for iterable datasets reads on the main process and sends
each process its slice of every global batch, so no document is read twice or skipped. The order
is deterministic for a given worker count, which is what lets Trainer resume at the exact block.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from itertools import islice

import numpy as np
import torch
from datasets import Dataset

from ..arguments import DataArguments
from ..errors import ScratchError
from .documents import DocumentStream
from .files import TEXT
from .packing import (
    DataStats,
    LMData,
    Packer,
    PackingSpec,
    count_tokens,
    document_stream,
    packer_for,
    require_blocks,
    tokenize,
)
from .sources import Corpus, load_corpus

logger = logging.getLogger(__name__)

TOKENIZE_BATCH = 256  # documents per tokenizer call inside a worker
UNIGRAM_SAMPLE_DOCUMENTS = 20_000  # training documents counted for the unigram baseline


class StreamingBlocks(torch.utils.data.IterableDataset):
    """Packed training blocks made on the fly; see the module docstring for who reads what."""

    def __init__(self, documents: DocumentStream, tokenizer, spec: PackingSpec, shuffle_buffer: int, seed: int):
        self.documents, self.tokenizer, self.spec = documents, tokenizer, spec
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # a new shuffle order each pass over the stream

    def _blocks(self, worker: int, workers: int) -> Iterator[np.ndarray]:
        packer = packer_for(self.spec)
        pending: list[str] = []
        for j, text in enumerate(self.documents.texts()):
            if j % workers != worker:
                continue
            pending.append(text)
            if len(pending) == TOKENIZE_BATCH:
                yield from packer.add_documents(tokenize(pending, self.tokenizer))
                pending = []
        if pending:
            yield from packer.add_documents(tokenize(pending, self.tokenizer))
        yield from packer.finish()

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


def load_streamed(
    args: DataArguments, tokenizer, spec: PackingSpec, tokenizer_fp: str, corpus: Corpus | None = None, seed: int = 0
) -> LMData:
    """Training blocks as a stream, shuffled by `seed`; held-out blocks and the unigram baseline from a sample,
    in memory."""
    corpus = corpus or load_corpus(args)
    heldout = list(corpus.validation[TEXT])
    val_ids = tokenize(heldout, tokenizer)
    validation = Dataset.from_dict({"input_ids": Packer(spec.heldout).add_documents(val_ids).tolist()})
    require_blocks(len(validation), "validation", spec.block_size, "--streaming_validation_documents")
    documents: DocumentStream = corpus.train
    sample = list(islice(documents.texts(), UNIGRAM_SAMPLE_DOCUMENTS))
    if not sample:
        raise ScratchError(f"the stream ({corpus.description}) has no training documents")
    counts = count_tokens([document_stream(tokenize(sample, tokenizer), spec.separator_id)], len(tokenizer))
    stats = DataStats(
        train_blocks=None,
        validation_blocks=len(validation),
        validation_characters=sum(len(t) for t in heldout),
        validation_tokens=sum(len(ids) + 1 for ids in val_ids),
        validation_bytes=sum(len(t.encode()) for t in heldout),
    )
    train = StreamingBlocks(documents, tokenizer, spec, args.streaming_shuffle_buffer, seed=seed)
    logger.info(
        "%s: tokenizing on the fly; %d held-out blocks from %d documents",
        corpus.description,
        len(validation),
        len(heldout),
    )
    return LMData(
        train=train,
        validation=validation,
        stats=stats,
        unigram_counts=counts,
        corpus_description=corpus.description,
        corpus_fingerprint=corpus.fingerprint,
        tokenizer_fingerprint=tokenizer_fp,
    )
