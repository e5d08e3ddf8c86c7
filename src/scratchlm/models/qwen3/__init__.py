"""Qwen3, transformers' own `Qwen3ForCausalLM`: Llama's block plus RMSNorm on queries and keys (QK-norm)."""

from __future__ import annotations

from transformers import Qwen3Config, Qwen3ForCausalLM

from ..llama import shape_options

MODEL_CLASS = Qwen3ForCausalLM


def make_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> Qwen3Config:
    return Qwen3Config(
        **shape_options(args, vocab_size, n_positions, special_token_ids),
        head_dim=args.n_embd // args.n_head,
        rms_norm_eps=1e-6,
    )
