"""GPT-2, transformers' own `GPT2LMHeadModel`: learned positions, pre-norm, GELU, tied embeddings."""

from __future__ import annotations

from transformers import GPT2Config, GPT2LMHeadModel

MODEL_CLASS = GPT2LMHeadModel


def make_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        # GPT-2's own tanh-approximated GELU, computed by torch's one fused kernel instead of the seven
        # elementwise ops of transformers' "gelu_new" (outputs within 3e-7); without torch.compile the demo
        # trains faster with it (benchmarks/gelu_kernel.py).
        activation_function="gelu_pytorch_tanh",
        # GPT-2's original name for the context length, which transformers no longer writes and llama.cpp's
        # converter (convert_hf_to_gguf.py) still reads.
        n_ctx=n_positions,
        **special_token_ids,
    )
