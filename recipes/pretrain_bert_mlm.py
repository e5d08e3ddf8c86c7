#!/usr/bin/env python
"""Pretrain a BERT-style masked LM from scratch with Trainer.

accelerate launch recipes/pretrain_bert_mlm.py                      # demo: built-in English corpus, CPU
accelerate launch recipes/pretrain_bert_mlm.py --config recipes/pretrain_bert_mlm/config_bert_base.yaml
"""

from __future__ import annotations

from pathlib import Path

from scratchlm.errors import run_cli
from scratchlm.recipe import main

DEFAULT_CONFIG = Path(__file__).parent / "pretrain_bert_mlm" / "config_demo.yaml"
OBJECTIVE = "masked"


def cli(argv: list[str]) -> dict:
    return main(argv, OBJECTIVE, DEFAULT_CONFIG, script="recipes/pretrain_bert_mlm.py")


if __name__ == "__main__":
    run_cli(cli)
