"""Llama and Qwen3 from stock transformers: built by the recipe, trained, and loaded and generated with stock
classes in a process without scratchlm; greedy generation is the same with and without the KV cache."""

import json

import pytest
import torch

from scratchlm.flops import matmul_parameters

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv, run_without_scratchlm

DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.slow
def test_recipe_trains_a_stock_modern_family(tmp_path, zh_file, gpt_tokenizer_dir, family):
    out = tmp_path / family
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--model_type", family, "--sample_max_new_tokens", 40)
    metrics = pretrain_gpt2_zh.cli(argv)
    assert metrics["eval_loss"] < metrics["initial_loss"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family and config["tie_word_embeddings"] is True
    assert "auto_map" not in config  # stock code: nothing to trust remotely
    card = (out / "README.md").read_text()
    assert f"`{family}`" in card and "trust_remote_code" not in card
    done = run_without_scratchlm(
        f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
        model = AutoModelForCausalLM.from_pretrained({str(out)!r})
        tokenizer = AutoTokenizer.from_pretrained({str(out)!r})
        assert type(model).__name__ == {"LlamaForCausalLM" if family == "llama" else "Qwen3ForCausalLM"!r}
        ids = tokenizer("中国", return_tensors="pt").input_ids
        cached = model.generate(ids, max_new_tokens=48, do_sample=False, use_cache=True)
        uncached = model.generate(ids, max_new_tokens=48, do_sample=False, use_cache=False)
        assert torch.equal(cached, uncached), (cached, uncached)
        # rotary positions: past the 32 trained positions without an error
        print(pipeline("text-generation", model=model, tokenizer=tokenizer)("中国", max_new_tokens=40)[0])
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_modern_family_shapes_and_flops():
    from types import SimpleNamespace

    from transformers import LlamaForCausalLM, Qwen3ForCausalLM

    from scratchlm.models.llama import make_config as llama_config
    from scratchlm.models.llama import swiglu_width
    from scratchlm.models.qwen3 import make_config as qwen3_config

    args = SimpleNamespace(n_embd=768, n_layer=12, n_head=12, dropout=0.0)
    special = {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}
    assert swiglu_width(768) == 2048 and swiglu_width(256) == 704
    for make, cls in ((llama_config, LlamaForCausalLM), (qwen3_config, Qwen3ForCausalLM)):
        config = make(args, 32000, 1024, special)
        with torch.device("meta"):
            model = cls(config)
        linear = matmul_parameters(model)
        # attention 4·d² and SwiGLU 3·d·w per layer, plus the tied head: GPT-2 124M-class
        assert linear == 12 * (4 * 768 * 768 + 3 * 768 * 2048) + 32000 * 768
        assert not any(n.endswith(".bias") for n, _ in model.named_parameters())
    qwen = cls(qwen3_config(SimpleNamespace(n_embd=64, n_layer=1, n_head=2, dropout=0.0), 100, 32, special))
    assert any("q_norm" in n for n, _ in qwen.named_parameters())  # QK-norm
