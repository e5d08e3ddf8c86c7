"""The scratch encoder: bidirectional blocks (shared with the decoder) with masked-LM and classification heads."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

# Unused here, but transformers 4.x copies only a remote module's direct relative imports, and the decoder's
# module below needs this one beside it.
from .configuration_scratch_decoder import ScratchDecoderConfig  # noqa: F401
from .configuration_scratch_encoder import ScratchEncoderConfig
from .modeling_scratch_decoder import Block, init_transformer_weights, mark_residual_outputs


class ScratchEncoderPreTrainedModel(PreTrainedModel):
    config_class = ScratchEncoderConfig
    base_model_prefix = "encoder"
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        init_transformer_weights(module, self.config)


class ScratchEncoderModel(ScratchEncoderPreTrainedModel):
    def __init__(self, config: ScratchEncoderConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embed_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(Block(config, causal=False) for _ in range(config.num_hidden_layers))
        mark_residual_outputs(self.layers)
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

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs) -> BaseModelOutput:
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        x = self.drop(self.embed_norm(self.embed_tokens(input_ids) + self.embed_positions(position_ids)))  # (B, T, C)
        key_mask = attention_mask if attention_mask is not None and not bool(attention_mask.all()) else None
        for layer in self.layers:
            x = layer(x, position_ids, key_mask)
        return BaseModelOutput(last_hidden_state=self.final_norm(x))


class MaskedLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.act = ACT2FN[config.hidden_act]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # tied to the embeddings

    def forward(self, x):
        return self.decoder(self.norm(self.act(self.dense(x))))


class ScratchEncoderForMaskedLM(ScratchEncoderPreTrainedModel):
    _tied_weights_keys = {"head.decoder.weight": "encoder.embed_tokens.weight"}

    def __init__(self, config: ScratchEncoderConfig):
        super().__init__(config)
        self.encoder = ScratchEncoderModel(config)
        self.head = MaskedLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.head.decoder

    def set_output_embeddings(self, value):
        self.head.decoder = value

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None, **kwargs) -> MaskedLMOutput:
        hidden = self.encoder(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        logits = self.head(hidden)  # (B, T, V)
        loss = None
        if labels is not None:  # -100 everywhere but the masked positions
            # Trainer passes num_items_in_batch (masked tokens over all micro-batches and processes) and then
            # neither averages over accumulation steps nor over processes: the loss must divide by it.
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(loss=loss, logits=logits)


class ScratchEncoderForSequenceClassification(ScratchEncoderPreTrainedModel):
    # A mean over the batch: Trainer then scales for gradient accumulation and processes itself.
    accepts_loss_kwargs = False

    def __init__(self, config: ScratchEncoderConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.encoder = ScratchEncoderModel(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, labels=None, **kwargs
    ) -> SequenceClassifierOutput:
        hidden = self.encoder(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # the [CLS] position
        logits = self.classifier(self.drop(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
