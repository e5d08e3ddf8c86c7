"""Qwen3, transformers' own `Qwen3ForCausalLM`: Llama's block plus RMSNorm on queries and keys (QK-norm)."""

from __future__ import annotations

from transformers import Qwen3Config, Qwen3ForCausalLM

from ..llama import swiglu_width

MODEL_CLASS = Qwen3ForCausalLM


def make_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=args.n_embd,
        intermediate_size=swiglu_width(args.n_embd),
        num_hidden_layers=args.n_layer,
        num_attention_heads=args.n_head,
        num_key_value_heads=args.n_head,
        head_dim=args.n_embd // args.n_head,
        max_position_embeddings=n_positions,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_dropout=args.dropout,
        **special_token_ids,
    )
