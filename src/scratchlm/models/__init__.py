"""Model families (one folder each, listed in `registry.FAMILIES`) and the builder of fresh models.

Importing `scratchlm` registers our own families with the Auto classes (see `scratch/`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, PreTrainedTokenizerBase

from ..errors import ScratchError
from ..hub import require_hub
from .registry import FAMILIES, Family, family_names
from .scratch import (
    ScratchDecoderConfig,
    ScratchDecoderForCausalLM,
    ScratchDecoderModel,
    ScratchEncoderConfig,
    ScratchEncoderForMaskedLM,
    ScratchEncoderForSequenceClassification,
    ScratchEncoderModel,
)

__all__ = [
    "FAMILIES",
    "Family",
    "ScratchDecoderConfig",
    "ScratchDecoderForCausalLM",
    "ScratchDecoderModel",
    "ScratchEncoderConfig",
    "ScratchEncoderForMaskedLM",
    "ScratchEncoderForSequenceClassification",
    "ScratchEncoderModel",
    "build_model",
    "check_tokenizer_fits",
    "config_to_train",
    "family_names",
    "load_model_to_train",
    "name_the_causal_loss",
    "padded_vocab_size",
]


def padded_vocab_size(tokenizer: PreTrainedTokenizerBase, multiple: int) -> int:
    return -(-len(tokenizer) // multiple) * multiple


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, config, where: str) -> None:
    """Token ids past the model's embedding table would fail deep inside the model: say so up front."""
    if len(tokenizer) > config.vocab_size:
        raise ScratchError(
            f"the tokenizer in {where} has {len(tokenizer)} tokens but the model's vocabulary has "
            f"{config.vocab_size}: put the tokenizer the model was pretrained with next to it"
        )


def build_model(args, tokenizer: PreTrainedTokenizerBase, block_size: int):
    """A fresh model of the family `args.model_type`, sized by the shape settings, vocab matched to the tokenizer."""
    family = FAMILIES[args.model_type]
    n_positions = args.n_positions or block_size
    if block_size > n_positions:
        raise ScratchError(
            f"--block_size {block_size} is larger than the model's positions (--n_positions "
            f"{n_positions}): lower --block_size or raise --n_positions"
        )
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    special = {"bos_token_id": bos, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = family.make_config(args, padded_vocab_size(tokenizer, args.pad_vocab_to_multiple_of), n_positions, special)
    return family.model_class(config)


def config_to_train(init_from: str, objective: str):
    """The config of the model `--init_from` names (a local folder, or a Hub id while the Hub can be reached),
    once it is known to be of a family this objective trains."""
    where = f"--init_from {init_from}"
    local = Path(init_from)
    if local.is_file():
        raise ScratchError(f"{where} is a file: pass the folder that holds the model ({local.parent})")
    if local.exists() and not (local / "config.json").is_file():
        raise ScratchError(f"{where} holds no model (no config.json): point it at a run's output_dir or a checkpoint-N")
    if not local.exists():
        require_hub(f"{where} (not a local folder)", fix="check the path")
    config = AutoConfig.from_pretrained(init_from)
    family = FAMILIES.get(config.model_type)
    if family is None:
        raise ScratchError(
            f"{where} holds a model of family {config.model_type}, which scratchlm does not train: start from a "
            f"model of one of {', '.join(family_names(objective))}"
        )
    if family.objective != objective:
        raise ScratchError(
            f"{where} is a {config.model_type} model, a {family.objective} LM, and this run trains a {objective} "
            f"LM: start from a {objective} model, or train it with the {family.objective} recipe"
        )
    return config


# Where the families' configs keep the dropout `build_model` set from --dropout (gpt2, llama/qwen3, bert, ours).
DROPOUT_NAMES = ("resid_pdrop", "attention_dropout", "hidden_dropout_prob", "dropout")


def dropout_of(config) -> float | None:
    return next((value for name in DROPOUT_NAMES if isinstance(value := getattr(config, name, None), float)), None)


SCRATCH_OPTIONS = ("hidden_act", "qk_norm", "zero_init_projections", "tie_word_embeddings", "logit_softcap", "bias")


def load_model_to_train(args, objective: str, tokenizer: PreTrainedTokenizerBase, block_size: int):
    """The trained model `args.init_from` names, in float32 for mixed-precision training, checked against this
    run; `args` then records its family and shape (the run's config and card describe the model it trains)."""
    where = f"--init_from {args.init_from}"
    config = config_to_train(args.init_from, objective)
    family = FAMILIES[config.model_type]
    if block_size > config.max_position_embeddings:
        raise ScratchError(
            f"--block_size {block_size} is larger than the {config.max_position_embeddings} positions of the model "
            f"in {where}: pass --block_size {config.max_position_embeddings} or less"
        )
    check_tokenizer_fits(tokenizer, config, where)
    model = family.model_class.from_pretrained(args.init_from, dtype=torch.float32)
    args.model_type = config.model_type
    args.n_layer, args.n_head = config.num_hidden_layers, config.num_attention_heads
    args.n_embd, args.n_positions = config.hidden_size, config.max_position_embeddings
    if (dropout := dropout_of(config)) is not None:
        args.dropout = dropout
    if family.ours:  # our configs keep these options under the settings' own names
        for name in ("norm_placement", "position_embedding", *SCRATCH_OPTIONS):
            if hasattr(args, name) and hasattr(config, name):
                setattr(args, name, getattr(config, name))
    return model


def name_the_causal_loss(model):
    """transformers takes a model's `loss_type` from its class name, and `GPT2LMHeadModel`'s gives none. The
    model then uses the causal LM loss all the same, but Trainer counts the tokens it divides a batch's summed
    loss by over every label instead of the predicted ones (`labels[..., 1:]`), so every GPT-2 loss it reports
    or trains on is (block_size - 1) / block_size of the true mean, and each process warns "`loss_type=None`
    was set in the config but it is unrecognized". Naming the loss mends both; nothing is saved with the model."""
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"
    return model
