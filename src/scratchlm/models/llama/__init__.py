"""Llama, transformers' own `LlamaForCausalLM`: RMSNorm, SwiGLU MLP, rotary positions, no biases."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM

MODEL_CLASS = LlamaForCausalLM


def swiglu_width(n_embd: int) -> int:
    """Llama's MLP width: 8/3 of the hidden width (three matrices cost what GPT-2's two of 4x do), to 64."""
    return -(-8 * n_embd // 3 // 64) * 64


def shape_options(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> dict:
    """The shape flags as keyword arguments of a Llama-style config (Qwen3's takes the same)."""
    return dict(
        vocab_size=vocab_size,
        hidden_size=args.n_embd,
        intermediate_size=swiglu_width(args.n_embd),
        num_hidden_layers=args.n_layer,
        num_attention_heads=args.n_head,
        num_key_value_heads=args.n_head,
        max_position_embeddings=n_positions,
        tie_word_embeddings=True,  # at small sizes the embedding is a large share of the weights
        attention_dropout=args.dropout,
        **special_token_ids,
    )


def make_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> LlamaConfig:
    return LlamaConfig(**shape_options(args, vocab_size, n_positions, special_token_ids), rms_norm_eps=1e-5)
