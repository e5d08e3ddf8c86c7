"""Corpus -> packed blocks. Imports point one way:

sources  (where documents come from: local files, a Hub dataset, a built-in corpus)
packing  (tokenize, the packer, unigram counts, LMData)
   |
cached / prepared / streamed  (the three back-ends)
   |
load_lm_data  (here: picks the back-end from the settings)
   |
windows  (which windows of the packed stream each epoch trains on)
"""

from __future__ import annotations

import logging

from transformers import PreTrainedTokenizerBase

from ..arguments import DataArguments
from ..tokenizer import tokenizer_fingerprint
from .cached import load_cached
from .packing import DataStats, LMData, PackingSpec
from .prepared import load_prepared
from .sources import Corpus, corpus_name, load_corpus, source_of
from .streamed import load_streamed
from .windows import training_windows

logger = logging.getLogger(__name__)

__all__ = [
    "Corpus",
    "DataStats",
    "LMData",
    "PackingSpec",
    "corpus_name",
    "load_corpus",
    "load_lm_data",
    "source_of",
    "training_windows",
]


def load_lm_data(
    args: DataArguments,
    tokenizer: PreTrainedTokenizerBase,
    spec: PackingSpec,
    corpus: Corpus | None = None,
    seed: int = 0,
) -> LMData:
    """Packed train/validation blocks laid out by `spec`: from `--prepared_data`, a `--streaming` source (its
    shuffle follows `seed`), or the cache (built on a miss). `corpus` saves loading the corpus again when the
    caller already has it."""
    tokenizer_fp = tokenizer_fingerprint(tokenizer)
    if args.streaming:
        data = load_streamed(args, tokenizer, spec, tokenizer_fp, corpus, seed)
    elif args.prepared_data:
        logger.info("reading prepared blocks from %s (no tokenization)", args.prepared_data)
        data = load_prepared(args.prepared_data, tokenizer, spec, full_check=args.verify_data == "full")
    else:
        data = load_cached(args, tokenizer, spec, tokenizer_fp, corpus)
    if args.max_train_samples is not None and not data.streaming:
        data.train = data.train.select(range(min(args.max_train_samples, len(data.train))))
    if args.max_eval_samples is not None:
        data.validation = data.validation.select(range(min(args.max_eval_samples, len(data.validation))))
    if not data.streaming:
        data.train = data.train.with_format("torch")
    data.validation = data.validation.with_format("torch")
    return data
