"""`scratchlm export OUTPUT_DIR --to gguf`: a run's causal model and tokenizer as one GGUF file, the format of
llama.cpp (and so of Ollama and LM Studio), written with `gguf`, the reader/writer llama.cpp maintains.

It follows llama.cpp's own converter (`convert_hf_to_gguf.py`) in every choice a reader depends on: tensor
names from gguf's name map, GPT-2's Conv1D weights transposed to (out, in), Llama's query and key rows
permuted to GGML's rotary layout, 1-D tensors kept in f32, the vocabulary padded with unused tokens up to
the model's (padded) embedding rows, and the tokenizer declared as byte-level BPE with GPT-2's pre-tokenizer,
which is exactly the pre-tokenizer scratchlm trains. `scratch_decoder` in its default shape (pre-norm,
learned positions, GELU) is GPT-2 and is written as GPT-2.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from .errors import ScratchError

logger = logging.getLogger("scratchlm")

DTYPES = ("f32", "f16", "bf16", "q8_0")
ARCHITECTURES = {"gpt2": "GPT2", "llama": "LLAMA", "qwen3": "QWEN3"}
# scratch_decoder's names -> GPT-2's, for the shape in which the two are the same model.
SCRATCH_TO_GPT2 = {
    "model.embed_tokens.weight": "transformer.wte.weight",
    "model.embed_positions.weight": "transformer.wpe.weight",
    "model.final_norm.weight": "transformer.ln_f.weight",
    "model.final_norm.bias": "transformer.ln_f.bias",
}
SCRATCH_BLOCK_TO_GPT2 = {
    "attn_norm": "ln_1",
    "mlp_norm": "ln_2",
    "attn.qkv": "attn.c_attn",
    "attn.out": "attn.c_proj",
    "mlp.fc": "mlp.c_fc",
    "mlp.proj": "mlp.c_proj",
}
GPT2_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _gguf():
    try:
        import gguf
    except ImportError:
        raise ScratchError(
            "--to gguf needs the gguf package: pip install gguf (or pip install -e '.[export]')"
        ) from None
    return gguf


def exports_to_gguf(model_type: str, config: dict) -> bool:
    """Whether `export_gguf` writes a model of this family and config (a model's `config.to_dict()`)."""
    return model_type in ARCHITECTURES or (model_type == "scratch_decoder" and _not_gpt2_shape(config) is None)


def _not_gpt2_shape(config: dict) -> str | None:
    """Why a scratch_decoder config is not GPT-2's shape, or None."""
    shape = (config.get("norm_placement"), config.get("position_embedding"), config.get("hidden_act"))
    extras = [name for name in ("qk_norm", "logit_softcap") if config.get(name)]
    if shape != ("pre", "learned", "gelu_new") or not config.get("bias", True) or extras:
        return f"norm {shape[0]}, {shape[1]} positions, {shape[2]}{''.join(', ' + name for name in extras)}"
    return None


def _as_gpt2(config: dict, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """A default-shape scratch_decoder's config and weights under GPT-2's names (its linear weights stay (out, in))."""
    problem = _not_gpt2_shape(config)
    if problem:
        raise ScratchError(
            f"export: this scratch_decoder ({problem}) is not GPT-2's shape, and llama.cpp has no architecture "
            "for it; only pre-norm, learned positions, GELU with biases, no qk_norm nor logit_softcap exports"
        )
    gpt2 = {
        "n_positions": config["max_position_embeddings"],
        "n_embd": config["hidden_size"],
        "n_layer": config["num_hidden_layers"],
        "n_head": config["num_attention_heads"],
        "n_inner": config.get("intermediate_size"),
        "layer_norm_epsilon": config.get("layer_norm_eps", 1e-5),
        "vocab_size": config["vocab_size"],
        "tie_word_embeddings": config.get("tie_word_embeddings", True),
    }
    renamed = {}
    for name, tensor in state.items():
        if name in SCRATCH_TO_GPT2:
            renamed[SCRATCH_TO_GPT2[name]] = tensor
            continue
        parts = name.split(".")  # model.layers.{i}.{module...}.{weight|bias}
        if parts[:2] == ["model", "layers"]:
            module = ".".join(parts[3:-1])
            renamed[f"transformer.h.{parts[2]}.{SCRATCH_BLOCK_TO_GPT2[module]}.{parts[-1]}"] = tensor
        elif name == "lm_head.weight":
            renamed[name] = tensor
    return gpt2, renamed


def _llama_permute(weights: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotary halves -> GGML's interleaved pairs, as llama.cpp's converter does for Llama."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _tensors(arch: str, config: dict, state: dict[str, torch.Tensor], gguf) -> dict[str, torch.Tensor]:
    """The model's tensors under their GGUF names, in GGUF's layout."""
    n_layer = config["n_layer"] if arch == "gpt2" else config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, ARCHITECTURES[arch]), n_layer)
    tied = config.get("tie_word_embeddings", True)
    out = {}
    for name, tensor in state.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")) or (name == "lm_head.weight" and tied):
            continue  # GPT-2's causal-mask buffers; a tied head is the embedding
        if arch == "gpt2" and name.endswith(GPT2_CONV1D) and not config.get("_linear_layout"):
            tensor = tensor.t()  # Conv1D stores (in, out)
        if arch == "llama" and name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
            heads = config["num_attention_heads"] if "q_proj" in name else config["num_key_value_heads"]
            tensor = _llama_permute(tensor, heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ScratchError(f"export: no GGUF name for the tensor {name} of this {arch} model")
        out[gguf_name] = tensor.detach().float().contiguous()
    return out


def _tokenizer_metadata(writer, folder: Path, vocab_rows: int, gguf) -> None:
    """Byte-level BPE with GPT-2's pre-tokenizer, padded with unused tokens to the embedding's rows."""
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec.get("model", {})
    if model.get("type") != "BPE" or (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise ScratchError(
            f"export: {folder} has a {model.get('type')} tokenizer; llama.cpp reads byte-level BPE ones "
            "(tokenizer_type bytelevel_bpe)"
        )
    if spec.get("normalizer"):
        logger.warning(
            "export: the tokenizer normalises text (%s) and llama.cpp does not: normalise prompts yourself",
            spec["normalizer"].get("type"),
        )
    vocab: dict[str, int] = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    vocab.update(special)
    size = max(vocab.values()) + 1
    if size > vocab_rows:
        raise ScratchError(f"export: the tokenizer has {size} tokens but the model only {vocab_rows} embedding rows")
    tokens = [f"[PAD{i}]" for i in range(vocab_rows)]
    types = [gguf.TokenType.UNUSED] * vocab_rows
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (
        ("bos_token", writer.add_bos_token_id),
        ("eos_token", writer.add_eos_token_id),
        ("pad_token", writer.add_pad_token_id),
        ("unk_token", writer.add_unk_token_id),
    ):
        token = config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if token in vocab:
            add(vocab[token])
    writer.add_add_bos_token(False)  # scratchlm's causal models were trained without a start token per document


def export_gguf(model_dir: Path, out: Path | None = None, dtype: str = "f16") -> Path:
    """Write `model_dir` (a run's folder or checkpoint) as one GGUF file; returns its path."""
    from safetensors.torch import load_file

    gguf = _gguf()
    if dtype not in DTYPES:
        raise ScratchError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if not (model_dir / "config.json").is_file() or not (model_dir / "model.safetensors").is_file():
        raise ScratchError(
            f"{model_dir} is not a model folder (no config.json and model.safetensors): give a run's output_dir"
        )
    tokenizer_dir = model_dir if (model_dir / "tokenizer.json").is_file() else model_dir.parent
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise ScratchError(f"{model_dir} has no tokenizer.json, nor has its parent folder")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type")
    state = load_file(str(model_dir / "model.safetensors"))
    if model_type == "scratch_decoder":
        config, state = _as_gpt2(config, state)
        config["_linear_layout"] = True  # the weights come from nn.Linear: (out, in) already
        model_type = "gpt2"
    if model_type not in ARCHITECTURES:
        raise ScratchError(
            f"export: {model_type} is not supported for GGUF; it supports gpt2, llama, qwen3 and scratch_decoder in "
            "GPT-2's shape (masked LMs have no llama.cpp architecture)"
        )
    out = out or model_dir / f"{model_dir.resolve().name}-{dtype}.gguf"
    if out.exists():
        raise ScratchError(f"export: {out} already exists: remove it or pass --out with another path")
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, ARCHITECTURES[model_type])])
    writer.add_name(model_dir.resolve().name)
    if model_type == "gpt2":
        writer.add_context_length(config["n_positions"])
        writer.add_embedding_length(config["n_embd"])
        writer.add_feed_forward_length(config.get("n_inner") or 4 * config["n_embd"])
        writer.add_block_count(config["n_layer"])
        writer.add_head_count(config["n_head"])
        writer.add_layer_norm_eps(config.get("layer_norm_epsilon", 1e-5))
        vocab_rows = config["vocab_size"]
    else:
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_head_count(config["num_attention_heads"])
        writer.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
        writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
        rope = config.get("rope_parameters") or {}
        writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
        writer.add_rope_dimension_count(head_dim)
        if model_type == "qwen3":
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        vocab_rows = config["vocab_size"]
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[dtype]
    writer.add_file_type(file_type)
    _tokenizer_metadata(writer, tokenizer_dir, vocab_rows, gguf)
    for name, tensor in _tensors(model_type, config, state, gguf).items():
        data = tensor.numpy()
        if data.ndim == 1 or dtype == "f32":  # norms and biases stay f32, as in llama.cpp's converter
            writer.add_tensor(name, data.astype(np.float32))
        elif dtype == "f16":
            writer.add_tensor(name, data.astype(np.float16))
        else:
            qtype = gguf.GGMLQuantizationType.BF16 if dtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
            if dtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
                writer.add_tensor(name, data.astype(np.float16))  # rows that do not split into 32-blocks
                continue
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
