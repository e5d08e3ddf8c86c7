"""Configuration of the scratch encoder: a BERT-style encoder in the spirit of "cramming"."""

from transformers import PretrainedConfig


class ScratchEncoderConfig(PretrainedConfig):
    model_type = "scratch_encoder"

    def __init__(
        self,
        vocab_size=8064,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=None,
        max_position_embeddings=512,
        norm_placement="pre",
        hidden_act="gelu",
        dropout=0.1,
        classifier_dropout=0.1,
        layer_norm_eps=1e-12,
        bias=True,
        initializer_range=0.02,
        tie_word_embeddings=True,
        pad_token_id=0,
        **kwargs,
    ):
        if norm_placement not in ("pre", "post"):
            raise ValueError(f"norm_placement must be 'pre' or 'post', got {norm_placement!r}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.norm_placement = norm_placement
        self.position_embedding = "learned"
        self.hidden_act = hidden_act
        self.dropout = dropout
        self.classifier_dropout = classifier_dropout
        self.layer_norm_eps = layer_norm_eps
        self.bias = bias
        self.initializer_range = initializer_range
        super().__init__(tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id, **kwargs)
