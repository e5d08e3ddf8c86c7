"""Every model family, one entry each: which objective it trains, how the shape flags (n_layer, n_head,
n_embd, dropout, ...) become its config, and which class to build. Adding a family: a folder beside
this file with `make_config` and the model class, then one entry here (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import bert, gpt2, llama, qwen3, scratch


@dataclass(frozen=True)
class Family:
    objective: str  # "causal" or "masked": the recipes and tools that may build it
    make_config: Callable  # (model settings, vocab size, positions, special token ids) -> config
    model_class: type
    ours: bool = False  # its code is ours: checkpoints carry it, loading elsewhere needs trust_remote_code
    rotary: bool = False  # always rotary positions, which need an even head dimension
    help: str = ""


FAMILIES: dict[str, Family] = {
    "gpt2": Family("causal", gpt2.make_config, gpt2.MODEL_CLASS, help="transformers' GPT2LMHeadModel"),
    "llama": Family(
        "causal",
        llama.make_config,
        llama.MODEL_CLASS,
        rotary=True,
        help="transformers' LlamaForCausalLM: RMSNorm, SwiGLU, rotary",
    ),
    "qwen3": Family(
        "causal",
        qwen3.make_config,
        qwen3.MODEL_CLASS,
        rotary=True,
        help="transformers' Qwen3ForCausalLM: Llama's block + QK-norm",
    ),
    "scratch_decoder": Family(
        "causal",
        scratch.make_decoder_config,
        scratch.ScratchDecoderForCausalLM,
        ours=True,
        help="ours: pre/post-norm, learned or rotary positions",
    ),
    "bert": Family("masked", bert.make_config, bert.MODEL_CLASS, help="transformers' BertForMaskedLM"),
    "scratch_encoder": Family(
        "masked",
        scratch.make_encoder_config,
        scratch.ScratchEncoderForMaskedLM,
        ours=True,
        help="ours: pre/post-norm, optional biases",
    ),
}


def family_names(objective: str) -> list[str]:
    return [name for name, family in FAMILIES.items() if family.objective == objective]


def family_help(objective: str) -> str:
    return "; ".join(f"{name} ({FAMILIES[name].help})" for name in family_names(objective))
