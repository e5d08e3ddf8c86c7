"""Model families (one folder each, listed in `registry.FAMILIES`) and the builder of fresh models.

Importing `scratchlm` registers our own families with the Auto classes (see `scratch/`).
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from ..errors import ScratchError
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
    "family_names",
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


def name_the_causal_loss(model):
    """transformers takes a model's `loss_type` from its class name, and `GPT2LMHeadModel`'s gives none. The
    model then uses the causal LM loss all the same, but Trainer counts the tokens it divides a batch's summed
    loss by over every label instead of the predicted ones (`labels[..., 1:]`), so every GPT-2 loss it reports
    or trains on is (block_size - 1) / block_size of the true mean, and each process warns "`loss_type=None`
    was set in the config but it is unrecognized". Naming the loss mends both; nothing is saved with the model."""
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"
    return model
