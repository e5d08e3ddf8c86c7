#!/usr/bin/env python
"""Train a tokenizer that stock `AutoTokenizer.from_pretrained(output_dir)` loads.

python tokenizer_training/train_tokenizer.py --config tokenizer_training/config_zh_demo.yaml
python tokenizer_training/train_tokenizer.py --train_files 'corpus/*.txt' --vocab_size 32000 --output_dir tok
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scratchlm.arguments import DataArguments, TokenizerArguments
from scratchlm.config import parse_config
from scratchlm.data import load_corpus
from scratchlm.errors import quiet_progress_bars_off_a_terminal, run_cli
from scratchlm.tokenizer import train_tokenizer_on_corpus

DEFAULT_CONFIG = Path(__file__).parent / "config_zh_demo.yaml"
logger = logging.getLogger("scratchlm")


@dataclass
class OutputArguments:
    output_dir: str = field(
        default="outputs/tokenizer", metadata={"help": "Where the tokenizer is saved (must not exist yet)."}
    )
    model_max_length: int | None = field(default=None, metadata={"help": "Context length recorded in the tokenizer."})


def main(tokenizer_args: TokenizerArguments, data_args: DataArguments, output_args: OutputArguments):
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        level=logging.INFO,
    )
    quiet_progress_bars_off_a_terminal()

    # ----- Corpus: the same loader the recipes use, so the held-out split is the same --------
    corpus = load_corpus(data_args, num_proc=data_args.preprocessing_num_workers)
    logger.info(
        "training on %s (%d documents; %d held out for the report)",
        corpus.description,
        len(corpus.train),
        len(corpus.validation),
    )

    # ----- Train, save with save_pretrained, write tokenizer_report.json ----------------------
    return train_tokenizer_on_corpus(corpus, tokenizer_args, output_args.output_dir, output_args.model_max_length)


def cli(argv: list[str]) -> None:
    main(*parse_config((TokenizerArguments, DataArguments, OutputArguments), argv, default_config=DEFAULT_CONFIG))


if __name__ == "__main__":
    run_cli(cli)
