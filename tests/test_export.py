"""`scratchlm export --to gguf`: each supported family's run, written as GGUF and read back by transformers' own
GGUF loader, gives the same logits and the same token ids (CJK, emoji, runs of spaces)."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from scratchlm.cli import main as scratchlm

import pretrain_bert_mlm
import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install -e '.[export]')")

GPT_DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
TEXTS = ["中国经济发展很快。", "the cats   sleep 😀 on 3 mats", "今天，天气很好！"]


def read_back(folder, name):
    """transformers' GGUF loader, with the two settings it does not read from GGUF for these architectures."""
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if config.model_type == "gpt2":
        config.n_positions = config.n_ctx  # it maps context_length to n_ctx only
    if config.model_type == "qwen3":
        config.head_dim = config.hidden_size // config.num_attention_heads  # it leaves Qwen3's default of 128
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config).eval()
    return model, AutoTokenizer.from_pretrained(folder, gguf_file=name)


@pytest.mark.parametrize(
    "family,dtype,tolerance",
    [
        ("gpt2", "f32", 1e-5),
        pytest.param("llama", "f32", 1e-5, marks=pytest.mark.slow),
        pytest.param("qwen3", "f16", 5e-3, marks=pytest.mark.slow),
        pytest.param("scratch_decoder", "f32", 1e-5, marks=pytest.mark.slow),
    ],
)
def test_export_reads_back_with_the_same_logits_and_token_ids(tmp_path, zh_file, family, dtype, tolerance, capsys):
    out = tmp_path / "run"
    pretrain_gpt2_zh.cli(recipe_argv(GPT_DEBUG, zh_file, tmp_path / "tok", out, "--model_type", family))
    card = (out / "README.md").read_text()
    assert "`scratchlm export FOLDER --to gguf`" in card  # the card offers what works, and how
    assert ("`-c 32`" in card) == (family in ("gpt2", "scratch_decoder"))  # learned positions stop llama.cpp past them
    assert ("optimum-cli export onnx" in card) == (family != "scratch_decoder")  # optimum knows stock classes only
    scratchlm(["export", str(out), "--to", "gguf", "--dtype", dtype])
    assert "written:" in capsys.readouterr().out
    (gguf_file,) = out.glob("*.gguf")
    original = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    model, gguf_tokenizer = read_back(out, gguf_file.name)
    expected_class = "GPT2LMHeadModel" if family in ("gpt2", "scratch_decoder") else type(original).__name__
    assert type(model).__name__ == expected_class
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert gguf_tokenizer(text, add_special_tokens=False)["input_ids"] == ids, text
        with torch.no_grad():
            want, got = original(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits
        torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)


@pytest.mark.slow
def test_q8_0_writes_a_smaller_file(tmp_path, zh_file):
    out = tmp_path / "run"
    flags = ("--model_type", "llama", "--n_embd", "64")
    pretrain_gpt2_zh.cli(recipe_argv(GPT_DEBUG, zh_file, tmp_path / "tok", out, *flags))
    scratchlm(["export", str(out), "--dtype", "f32", "--out", str(tmp_path / "f32.gguf")])
    scratchlm(["export", str(out), "--dtype", "q8_0", "--out", str(tmp_path / "q8.gguf")])
    assert (tmp_path / "q8.gguf").stat().st_size < 0.6 * (tmp_path / "f32.gguf").stat().st_size
    model, _ = read_back(tmp_path, "q8.gguf")
    assert type(model).__name__ == "LlamaForCausalLM"


def test_what_cannot_be_exported_is_one_line(tmp_path, zh_file, capsys):
    bert = tmp_path / "bert"
    pretrain_bert_mlm.cli(
        recipe_argv(ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml", zh_file, tmp_path / "tok-b", bert)
    )
    rotary = tmp_path / "rotary"
    pretrain_gpt2_zh.cli(
        recipe_argv(
            GPT_DEBUG,
            zh_file,
            tmp_path / "tok",
            rotary,
            "--model_type",
            "scratch_decoder",
            "--position_embedding",
            "rotary",
        )
    )
    assert "--to gguf" not in (rotary / "README.md").read_text() + (bert / "README.md").read_text()
    for folder, message in (
        (bert, "is not supported for GGUF"),  # a masked LM
        (rotary, "is not GPT-2's shape"),
        (tmp_path, "is not a model folder"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            scratchlm(["export", str(folder)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
        assert not list(folder.glob("*.gguf"))
    (tmp_path / "rotary" / "taken.gguf").write_text("mine")
    with pytest.raises(SystemExit):
        scratchlm(["export", str(rotary), "--out", str(rotary / "taken.gguf")])
    assert (rotary / "taken.gguf").read_text() == "mine"  # an existing file is never overwritten
