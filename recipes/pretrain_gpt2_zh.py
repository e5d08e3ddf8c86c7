#!/usr/bin/env python
"""Pretrain a GPT-2 causal LM from scratch (Chinese by default) with Trainer.

    accelerate launch recipes/pretrain_gpt2_zh.py                       # demo: built-in corpus, CPU ~15 min
    accelerate launch recipes/pretrain_gpt2_zh.py --config recipes/pretrain_gpt2_zh/config_gpt2_124m.yaml
"""
from __future__ import annotations

from pathlib import Path

from transformers import DataCollatorForLanguageModeling, set_seed

from scratchlm.arguments import (RECIPE_SETTINGS, CausalLMArguments, DataArguments, PretrainingArguments,
                                 TokenizerArguments)
from scratchlm.config import parse_config
from scratchlm.data import PackingSpec, prepare_lm_data
from scratchlm.errors import run_cli
from scratchlm.models import build_causal_lm
from scratchlm.training import (build_trainer, ensure_tokenizer, finish_run, log_run_summary, resolve_resume,
                                setup_run, train)

DEFAULT_CONFIG = Path(__file__).parent / "pretrain_gpt2_zh" / "config_demo.yaml"
SETTINGS = RECIPE_SETTINGS["gpt2"]


def main(model_args: CausalLMArguments, tokenizer_args: TokenizerArguments, data_args: DataArguments,
         training_args: PretrainingArguments) -> dict:
    setup_run(training_args)
    resume_from = resolve_resume(training_args)
    set_seed(training_args.seed)

    # ----- Tokenizer: load it, or train it on the corpus first -------------------------------
    with training_args.main_process_first(desc="tokenizer"):
        tokenizer, corpus = ensure_tokenizer(tokenizer_args, data_args)

    # ----- Data: tokenize and pack once, then reuse the cache --------------------------------
    with training_args.main_process_first(desc="tokenizing and packing"):
        data = prepare_lm_data(data_args, tokenizer, PackingSpec.causal(tokenizer, data_args.block_size), corpus)

    # ----- Model: a fresh GPT-2 (or our decoder) sized from the config -----------------------
    model = build_causal_lm(model_args, tokenizer, data_args.block_size)
    tokenizer.model_max_length = model_args.n_positions or data_args.block_size

    # ----- Train, evaluate, sample, save ------------------------------------------------------
    trainer = build_trainer(model, tokenizer, data, (model_args, tokenizer_args, data_args, training_args),
                            collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    summary = log_run_summary(trainer, data)
    return finish_run(trainer, train(trainer, resume_from), summary)


def cli(argv: list[str]) -> None:
    main(*parse_config(SETTINGS, argv, default_config=DEFAULT_CONFIG))


if __name__ == "__main__":
    run_cli(cli)
