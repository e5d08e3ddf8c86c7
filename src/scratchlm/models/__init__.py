"""Model builders: fresh, randomly initialised models sized from a recipe's settings."""
from __future__ import annotations

import logging

from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from ..arguments import GPT2ModelArguments
from ..errors import ScratchError

logger = logging.getLogger(__name__)


def padded_vocab_size(tokenizer: PreTrainedTokenizerBase, multiple: int) -> int:
    return -(-len(tokenizer) // multiple) * multiple


def build_gpt2(args: GPT2ModelArguments, tokenizer: PreTrainedTokenizerBase, block_size: int) -> GPT2LMHeadModel:
    n_positions = args.n_positions or block_size
    if block_size > n_positions:
        raise ScratchError(f"--block_size {block_size} is larger than the model's positions (--n_positions "
                           f"{n_positions}): lower --block_size or raise --n_positions")
    config = GPT2Config(
        vocab_size=padded_vocab_size(tokenizer, args.pad_vocab_to_multiple_of),
        n_positions=n_positions, n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
        resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
