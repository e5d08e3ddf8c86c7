#!/usr/bin/env python
"""Pretrain a BERT-style masked LM from scratch with Trainer.

    accelerate launch recipes/pretrain_bert_mlm.py                      # demo: built-in English corpus, CPU
    accelerate launch recipes/pretrain_bert_mlm.py --config recipes/pretrain_bert_mlm/config_bert_base.yaml
"""
from __future__ import annotations

from pathlib import Path

from transformers import DataCollatorForLanguageModeling, set_seed

from scratchlm.arguments import (RECIPE_SETTINGS, DataArguments, EncoderModelArguments, MaskingArguments,
                                 PretrainingArguments, TokenizerArguments)
from scratchlm.config import parse_config
from scratchlm.data import PackingSpec, prepare_lm_data
from scratchlm.errors import ScratchError, run_cli
from scratchlm.models import build_masked_lm
from scratchlm.training import (build_trainer, ensure_tokenizer, finish_run, log_run_summary, resolve_resume,
                                setup_run, train)

DEFAULT_CONFIG = Path(__file__).parent / "pretrain_bert_mlm" / "config_demo.yaml"


SETTINGS = RECIPE_SETTINGS["bert"]


def main(model_args: EncoderModelArguments, tokenizer_args: TokenizerArguments, data_args: DataArguments,
         masking_args: MaskingArguments, training_args: PretrainingArguments) -> dict:
    setup_run(training_args)
    if tokenizer_args.special_tokens_style != "bert":
        raise ScratchError("a masked LM needs [CLS]/[SEP]/[MASK]: set special_tokens_style: bert")
    resume_from = resolve_resume(training_args)
    set_seed(training_args.seed)

    # ----- Tokenizer: load it, or train it (BERT special tokens and template) on the corpus ----
    with training_args.main_process_first(desc="tokenizer"):
        tokenizer, corpus = ensure_tokenizer(tokenizer_args, data_args)

    # ----- Data: [CLS] ... [SEP] blocks, packed once and cached --------------------------------
    with training_args.main_process_first(desc="tokenizing and packing"):
        data = prepare_lm_data(data_args, tokenizer, PackingSpec.masked(tokenizer, data_args.block_size), corpus)

    # ----- Model: a fresh BERT (or our encoder) sized from the config -------------------------
    model = build_masked_lm(model_args, tokenizer, data_args.block_size)
    tokenizer.model_max_length = data_args.block_size

    # ----- Train with 15% masking (80/10/10), evaluate against the unigram bar, save ----------
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=masking_args.mlm_probability)
    settings = (model_args, tokenizer_args, data_args, masking_args, training_args)
    trainer = build_trainer(model, tokenizer, data, settings, collator, masked=True)
    summary = log_run_summary(trainer, data)
    return finish_run(trainer, train(trainer, resume_from), summary)


def cli(argv: list[str]) -> None:
    main(*parse_config(SETTINGS, argv, default_config=DEFAULT_CONFIG))


if __name__ == "__main__":
    run_cli(cli)
