"""Configuration of the scratch decoder: a GPT-style causal LM with switchable norm placement and positions."""

from transformers import PretrainedConfig


class ScratchDecoderConfig(PretrainedConfig):
    model_type = "scratch_decoder"

    def __init__(
        self,
        vocab_size=8064,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=None,
        max_position_embeddings=1024,
        norm_placement="pre",
        position_embedding="learned",
        hidden_act="gelu_new",
        dropout=0.0,
        layer_norm_eps=1e-5,
        bias=True,
        rope_theta=10000.0,
        initializer_range=0.02,
        tie_word_embeddings=True,
        qk_norm=False,
        zero_init_projections=False,
        logit_softcap=None,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        **kwargs,
    ):
        if norm_placement not in ("pre", "post"):
            raise ValueError(f"norm_placement must be 'pre' or 'post', got {norm_placement!r}")
        if position_embedding not in ("learned", "rotary"):
            raise ValueError(f"position_embedding must be 'learned' or 'rotary', got {position_embedding!r}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.norm_placement = norm_placement
        self.position_embedding = position_embedding
        self.hidden_act = hidden_act
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.bias = bias
        self.rope_theta = rope_theta
        self.initializer_range = initializer_range
        self.qk_norm = qk_norm  # RMSNorm on each head's queries and keys
        self.zero_init_projections = zero_init_projections  # attention and MLP outputs start at zero
        self.logit_softcap = logit_softcap  # logits = cap * tanh(logits / cap)
        super().__init__(
            tie_word_embeddings=tie_word_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **kwargs,
        )
