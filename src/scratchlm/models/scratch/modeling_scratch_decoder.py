"""The scratch decoder: a GPT-style causal LM, read top-down.

With norm_placement="pre", position_embedding="learned" and hidden_act="gelu_new" it is GPT-2's
architecture exactly (see `load_gpt2_weights`). The layers here are shared with the scratch encoder.

Options from the speedrun records that stock GPT-2/Llama classes lack, each off by default: `qk_norm`
(RMSNorm on each head's queries and keys), `zero_init_projections` (every block starts as the identity),
`logit_softcap` (cap * tanh(logits / cap)), hidden_act="relu2" (ReLU squared) and an untied output head
(tie_word_embeddings=False).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

try:  # transformers 5: initialisers that leave the weights a checkpoint loaded alone
    from transformers import initialization as init
except ImportError:  # transformers 4.x, which loads these checkpoints too (vLLM and llama.cpp's converter pin it)
    from torch.nn import init

from .configuration_scratch_decoder import ScratchDecoderConfig


# ---------------------------------------------------------------------------------------------
# Positions
# ---------------------------------------------------------------------------------------------
class RotaryEmbedding(nn.Module):
    """Rotary position embedding: rotates query/key channel pairs by position-dependent angles."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", self.frequencies(), persistent=False)

    def frequencies(self) -> torch.Tensor:
        return 1.0 / self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        # x: (B, H, T, D); position_ids: (B, T)
        angles = position_ids[:, None, :, None].float() * self.inv_freq  # (B, 1, T, D/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


# ---------------------------------------------------------------------------------------------
# One block: attention + MLP, each with a residual, norms before (pre) or after (post)
# ---------------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, config, causal: bool):
        super().__init__()
        self.num_heads, self.causal = config.num_attention_heads, causal
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.bias)  # fused: one matmul
        self.out = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.rotary = (
            RotaryEmbedding(self.head_dim, config.rope_theta)
            if getattr(config, "position_embedding", "learned") == "rotary"
            else None
        )
        self.dropout = config.dropout
        qk_norm = getattr(config, "qk_norm", False)  # absent from configs saved before the option existed
        self.q_norm = nn.RMSNorm(self.head_dim, eps=config.layer_norm_eps) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=config.layer_norm_eps) if qk_norm else None

    def forward(self, x, position_ids, key_mask=None, cache=None, layer_idx=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q, position_ids), self.rotary(k, position_ids)
        past = 0
        if cache is not None:  # generation: the keys and values of earlier tokens, then these T appended
            past = cache.get_seq_length(layer_idx)
            k, v = cache.update(k, v, layer_idx)  # (B, H, past + T, D)
        mask = None
        if key_mask is not None or (past and T > 1):  # explicit: padding, or new queries after cached keys
            # query i (at position past + i) sees keys 0 .. past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device)
            mask = mask.tril(diagonal=past) if self.causal else mask
            if key_mask is not None:  # (B, past + T) 1 = real token
                mask = mask & key_mask[:, None, None, -(past + T) :].bool()  # (B, 1, T, past + T)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and mask is None and T > 1,  # one new query sees every cached key
        )  # (B, H, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.bias)
        self.act = ACT2FN[config.hidden_act]
        self.proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.bias)

    def forward(self, x):
        return self.proj(self.act(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config, causal: bool):
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = SelfAttention(config, causal)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, position_ids, key_mask=None, cache=None, layer_idx=None):
        if self.pre_norm:
            x = x + self.drop(self.attn(self.attn_norm(x), position_ids, key_mask, cache, layer_idx))
            return x + self.drop(self.mlp(self.mlp_norm(x)))
        x = self.attn_norm(x + self.drop(self.attn(x, position_ids, key_mask, cache, layer_idx)))
        return self.mlp_norm(x + self.drop(self.mlp(x)))


def init_transformer_weights(module, config):
    """GPT-2's scheme: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers) (or zero with
    zero_init_projections), zero biases."""
    std = config.initializer_range
    if isinstance(module, nn.Linear):
        is_residual_out = getattr(module, "_is_residual_out", False)
        if is_residual_out and getattr(config, "zero_init_projections", False):
            init.zeros_(module.weight)
        else:
            init.normal_(
                module.weight, mean=0.0, std=std / math.sqrt(2 * config.num_hidden_layers) if is_residual_out else std
            )
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.RMSNorm):
        init.ones_(module.weight)
    elif isinstance(module, RotaryEmbedding):
        # transformers 5 builds a model on the meta device before loading it, and a buffer that is not saved
        # would keep whatever memory it then gets
        with torch.no_grad():
            module.inv_freq.copy_(module.frequencies())


def mark_residual_outputs(blocks: nn.ModuleList) -> None:
    for block in blocks:
        block.attn.out._is_residual_out = True
        block.mlp.proj._is_residual_out = True


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def _cache_field(output_class) -> str:
    # transformers renamed the outputs' `past_key_values` to `cache` during 5.x; checkpoints load on either
    return "cache" if "cache" in output_class.__dataclass_fields__ else "past_key_values"


def with_cache(output_class, cache, **fields):
    return output_class(**fields, **{_cache_field(output_class): cache})


def cached(outputs):
    return getattr(outputs, _cache_field(type(outputs)))


class ScratchDecoderPreTrainedModel(PreTrainedModel):
    config_class = ScratchDecoderConfig
    base_model_prefix = "model"
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        init_transformer_weights(module, self.config)


class ScratchDecoderModel(ScratchDecoderPreTrainedModel):
    def __init__(self, config: ScratchDecoderConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.position_embedding == "learned"
            else None
        )
        self.drop = nn.Dropout(config.dropout)
        # every layer built (and so initialised) on its own, never copies of one layer
        self.layers = nn.ModuleList(Block(config, causal=True) for _ in range(config.num_hidden_layers))
        mark_residual_outputs(self.layers)
        # post-norm blocks end in a norm already; pre-norm ones need a final one
        self.final_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
            if config.norm_placement == "pre"
            else nn.Identity()
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None, **kwargs):
        B, T = input_ids.shape
        cache = cache if cache is not None else kwargs.get("past_key_values")  # its name before transformers 5.2x
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0
        if self.embed_positions is not None and past + T > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence of {past + T} tokens is longer than max_position_embeddings "
                f"{self.config.max_position_embeddings} (learned positions end there)"
            )
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device).expand(B, T)
        x = self.embed_tokens(input_ids)  # (B, T, C)
        if self.embed_positions is not None:
            x = x + self.embed_positions(position_ids)
        x = self.drop(x)
        key_mask = attention_mask if attention_mask is not None and not bool(attention_mask.all()) else None
        for index, layer in enumerate(self.layers):
            x = layer(x, position_ids, key_mask, cache, index)
        return with_cache(BaseModelOutputWithPast, cache, last_hidden_state=self.final_norm(x))


class ScratchDecoderForCausalLM(ScratchDecoderPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ScratchDecoderConfig):
        super().__init__(config)
        self.model = ScratchDecoderModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        labels=None,
        cache=None,
        use_cache=None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)
        outputs = self.model(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=use_cache
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)
        cap = getattr(self.config, "logit_softcap", None)
        if cap:
            logits = cap * torch.tanh(logits / cap)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return with_cache(CausalLMOutputWithPast, cached(outputs), loss=loss, logits=logits)


# ---------------------------------------------------------------------------------------------
# GPT-2 weights into the pre-norm, learned-position layout
# ---------------------------------------------------------------------------------------------
def load_gpt2_weights(model: ScratchDecoderForCausalLM, gpt2_state: dict[str, torch.Tensor]) -> None:
    """Copy a `GPT2LMHeadModel` state dict in (GPT-2's Conv1D weights are stored transposed)."""
    ours = {
        "model.embed_tokens.weight": gpt2_state["transformer.wte.weight"],
        "model.embed_positions.weight": gpt2_state["transformer.wpe.weight"],
        "model.final_norm.weight": gpt2_state["transformer.ln_f.weight"],
        "model.final_norm.bias": gpt2_state["transformer.ln_f.bias"],
    }
    names = {
        "ln_1": "attn_norm",
        "ln_2": "mlp_norm",
        "attn.c_attn": "attn.qkv",
        "attn.c_proj": "attn.out",
        "mlp.c_fc": "mlp.fc",
        "mlp.c_proj": "mlp.proj",
    }
    for i in range(model.config.num_hidden_layers):
        for theirs, mine in names.items():
            weight = gpt2_state[f"transformer.h.{i}.{theirs}.weight"]
            ours[f"model.layers.{i}.{mine}.weight"] = weight if theirs.startswith("ln") else weight.t()
            ours[f"model.layers.{i}.{mine}.bias"] = gpt2_state[f"transformer.h.{i}.{theirs}.bias"]
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"GPT-2 weights do not fit: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
