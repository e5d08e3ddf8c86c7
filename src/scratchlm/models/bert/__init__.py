"""BERT, transformers' own `BertForMaskedLM`: learned positions, post-norm, GELU, an MLM head tied to the embeddings."""

from __future__ import annotations

from transformers import BertConfig, BertForMaskedLM

MODEL_CLASS = BertForMaskedLM


def make_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=args.n_embd,
        num_hidden_layers=args.n_layer,
        num_attention_heads=args.n_head,
        intermediate_size=4 * args.n_embd,
        max_position_embeddings=n_positions,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        pad_token_id=special_token_ids["pad_token_id"],
        type_vocab_size=2,
    )
