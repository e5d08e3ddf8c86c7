"""Our own families, one file per model read top-down: the scratch decoder (causal LM) and the scratch
encoder (masked LM, classification), which share the decoder's layers. They live in one folder because
a checkpoint carries its code (`auto_map`), and transformers copies only same-folder imports with it.

Importing this package registers both with the Auto classes, so a process with scratchlm loads their
checkpoints with stock Auto classes; one without it loads them with `trust_remote_code=True`.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

from .configuration_scratch_decoder import ScratchDecoderConfig
from .configuration_scratch_encoder import ScratchEncoderConfig
from .modeling_scratch_decoder import ScratchDecoderForCausalLM, ScratchDecoderModel
from .modeling_scratch_encoder import (
    ScratchEncoderForMaskedLM,
    ScratchEncoderForSequenceClassification,
    ScratchEncoderModel,
)

AUTO_CLASSES = {
    ScratchDecoderConfig: {AutoModel: ScratchDecoderModel, AutoModelForCausalLM: ScratchDecoderForCausalLM},
    ScratchEncoderConfig: {
        AutoModel: ScratchEncoderModel,
        AutoModelForMaskedLM: ScratchEncoderForMaskedLM,
        AutoModelForSequenceClassification: ScratchEncoderForSequenceClassification,
    },
}


def _register() -> None:
    for config_class, models in AUTO_CLASSES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class()
        for auto_class, model_class in models.items():
            auto_class.register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)


def remote_code_map(config_class) -> dict[str, str]:
    """Every Auto class of a family, so a saved checkpoint of one head loads with any other remotely."""
    modules = {"AutoConfig": f"{config_class.__module__.rsplit('.', 1)[1]}.{config_class.__name__}"}
    for auto_class, model_class in AUTO_CLASSES[config_class].items():
        modules[auto_class.__name__] = f"{model_class.__module__.rsplit('.', 1)[1]}.{model_class.__name__}"
    return modules


def make_decoder_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> ScratchDecoderConfig:
    config = ScratchDecoderConfig(
        vocab_size=vocab_size,
        hidden_size=args.n_embd,
        num_hidden_layers=args.n_layer,
        num_attention_heads=args.n_head,
        max_position_embeddings=n_positions,
        norm_placement=args.norm_placement,
        position_embedding=args.position_embedding,
        hidden_act=args.hidden_act,
        qk_norm=args.qk_norm,
        zero_init_projections=args.zero_init_projections,
        tie_word_embeddings=args.tie_word_embeddings,
        logit_softcap=args.logit_softcap,
        dropout=args.dropout,
        **special_token_ids,
    )
    config.auto_map = remote_code_map(ScratchDecoderConfig)
    return config


def make_encoder_config(args, vocab_size: int, n_positions: int, special_token_ids: dict) -> ScratchEncoderConfig:
    config = ScratchEncoderConfig(
        vocab_size=vocab_size,
        hidden_size=args.n_embd,
        num_hidden_layers=args.n_layer,
        num_attention_heads=args.n_head,
        max_position_embeddings=n_positions,
        norm_placement=args.norm_placement,
        bias=args.bias,
        dropout=args.dropout,
        pad_token_id=special_token_ids["pad_token_id"],
    )
    config.auto_map = remote_code_map(ScratchEncoderConfig)
    return config


_register()
