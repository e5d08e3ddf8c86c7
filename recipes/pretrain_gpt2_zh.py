#!/usr/bin/env python
"""Pretrain a GPT-2 causal LM from scratch (Chinese by default) with Trainer.

accelerate launch recipes/pretrain_gpt2_zh.py                       # demo: built-in corpus, CPU about 10 min
accelerate launch recipes/pretrain_gpt2_zh.py --config recipes/pretrain_gpt2_zh/config_gpt2_124m.yaml
"""

from __future__ import annotations

from pathlib import Path

from scratchlm.errors import run_cli
from scratchlm.recipe import main

DEFAULT_CONFIG = Path(__file__).parent / "pretrain_gpt2_zh" / "config_demo.yaml"
OBJECTIVE = "causal"


def cli(argv: list[str]) -> dict:
    return main(argv, OBJECTIVE, DEFAULT_CONFIG, script="recipes/pretrain_gpt2_zh.py")


if __name__ == "__main__":
    run_cli(cli)
