"""Our model families, registered with the Auto classes, and builders of fresh models from recipe settings.

Importing `scratchlm` runs the registration below, so any such process loads our checkpoints with stock
Auto classes; checkpoints also carry their code (`auto_map`) for processes without scratchlm, which
load them with `trust_remote_code=True`.
"""
from __future__ import annotations

from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                          AutoModelForSequenceClassification, BertConfig, BertForMaskedLM, GPT2Config,
                          GPT2LMHeadModel, PreTrainedTokenizerBase)

from ..errors import ScratchError
from .configuration_scratch_decoder import ScratchDecoderConfig
from .configuration_scratch_encoder import ScratchEncoderConfig
from .modeling_scratch_decoder import ScratchDecoderForCausalLM, ScratchDecoderModel
from .modeling_scratch_encoder import (ScratchEncoderForMaskedLM, ScratchEncoderForSequenceClassification,
                                       ScratchEncoderModel)

_FAMILIES = {
    ScratchDecoderConfig: {"AutoModel": ScratchDecoderModel, "AutoModelForCausalLM": ScratchDecoderForCausalLM},
    ScratchEncoderConfig: {"AutoModel": ScratchEncoderModel, "AutoModelForMaskedLM": ScratchEncoderForMaskedLM,
                           "AutoModelForSequenceClassification": ScratchEncoderForSequenceClassification},
}
_AUTO = {"AutoModel": AutoModel, "AutoModelForCausalLM": AutoModelForCausalLM,
         "AutoModelForMaskedLM": AutoModelForMaskedLM,
         "AutoModelForSequenceClassification": AutoModelForSequenceClassification}


def _register() -> None:
    for config_class, models in _FAMILIES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class()
        for auto_name, model_class in models.items():
            _AUTO[auto_name].register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_name)


def remote_code_map(config_class) -> dict[str, str]:
    """Every Auto class of a family, so a saved checkpoint of one head loads with any other remotely."""
    modules = {"AutoConfig": f"{config_class.__module__.rsplit('.', 1)[1]}.{config_class.__name__}"}
    for auto_name, model_class in _FAMILIES[config_class].items():
        modules[auto_name] = f"{model_class.__module__.rsplit('.', 1)[1]}.{model_class.__name__}"
    return modules


_register()


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------
def padded_vocab_size(tokenizer: PreTrainedTokenizerBase, multiple: int) -> int:
    return -(-len(tokenizer) // multiple) * multiple


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, config, where: str) -> None:
    """Token ids past the model's embedding table would fail deep inside the model: say so up front."""
    if len(tokenizer) > config.vocab_size:
        raise ScratchError(f"the tokenizer in {where} has {len(tokenizer)} tokens but the model's vocabulary has "
                           f"{config.vocab_size}: put the tokenizer the model was pretrained with next to it")


def _check_positions(block_size: int, n_positions: int) -> None:
    if block_size > n_positions:
        raise ScratchError(f"--block_size {block_size} is larger than the model's positions (--n_positions "
                           f"{n_positions}): lower --block_size or raise --n_positions")


def build_causal_lm(args, tokenizer: PreTrainedTokenizerBase, block_size: int):
    """A fresh GPT-2 or scratch decoder sized by `CausalLMArguments`, vocab matched to the tokenizer."""
    n_positions = args.n_positions or block_size
    _check_positions(block_size, n_positions)
    vocab = padded_vocab_size(tokenizer, args.pad_vocab_to_multiple_of)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    special = {"bos_token_id": bos, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if args.model_type == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=args.n_embd, n_layer=args.n_layer,
                            n_head=args.n_head, resid_pdrop=args.dropout, embd_pdrop=args.dropout,
                            attn_pdrop=args.dropout, **special)
        model = GPT2LMHeadModel(config)
    else:
        config = ScratchDecoderConfig(
            vocab_size=vocab, hidden_size=args.n_embd, num_hidden_layers=args.n_layer, num_attention_heads=args.n_head,
            max_position_embeddings=n_positions, norm_placement=args.norm_placement,
            position_embedding=args.position_embedding, dropout=args.dropout, **special)
        config.auto_map = remote_code_map(ScratchDecoderConfig)
        model = ScratchDecoderForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_masked_lm(args, tokenizer: PreTrainedTokenizerBase, block_size: int):
    """A fresh BERT or scratch encoder sized by `EncoderModelArguments`."""
    n_positions = args.n_positions or block_size
    _check_positions(block_size, n_positions)
    vocab = padded_vocab_size(tokenizer, args.pad_vocab_to_multiple_of)
    if args.model_type == "bert":
        config = BertConfig(vocab_size=vocab, hidden_size=args.n_embd, num_hidden_layers=args.n_layer,
                            num_attention_heads=args.n_head, intermediate_size=4 * args.n_embd,
                            max_position_embeddings=n_positions, hidden_dropout_prob=args.dropout,
                            attention_probs_dropout_prob=args.dropout, pad_token_id=tokenizer.pad_token_id,
                            type_vocab_size=2)
        return BertForMaskedLM(config)
    config = ScratchEncoderConfig(vocab_size=vocab, hidden_size=args.n_embd, num_hidden_layers=args.n_layer,
                                  num_attention_heads=args.n_head, max_position_embeddings=n_positions,
                                  norm_placement=args.norm_placement, bias=args.bias, dropout=args.dropout,
                                  pad_token_id=tokenizer.pad_token_id)
    config.auto_map = remote_code_map(ScratchEncoderConfig)
    return ScratchEncoderForMaskedLM(config)
