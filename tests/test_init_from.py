"""--init_from: a new run that starts from a trained model's weights and tokenizer, with a fresh optimizer, schedule
and step count, on any corpus; what cannot work is refused before training."""

import json
import logging
import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, BertConfig, GPT2Config, OPTConfig

from scratchlm.errors import ScratchError
from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv, run_without_scratchlm

DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"


@pytest.fixture
def trained(tmp_path, zh_file, gpt_tokenizer_dir):
    """A finished debug run: the model to start from."""
    out = tmp_path / "first"
    metrics = pretrain_gpt2_zh.cli(recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--max_steps", 16))
    return out, metrics


def test_a_run_from_a_trained_model_starts_at_its_weights_with_a_fresh_step_count(tmp_path, zh_file, trained):
    first, first_metrics = trained
    out = tmp_path / "second"
    # A tokenizer path that does not exist and a shape flag: the model's own tokenizer and shape are used.
    argv = recipe_argv(DEBUG, zh_file, tmp_path / "no-tokenizer", out, "--init_from", first, "--n_layer", 3)
    run = build_run(parse_run_settings([*argv, "--max_steps", "4"], objective="causal"))
    loaded = AutoModelForCausalLM.from_pretrained(first)
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in loaded.state_dict().items())
    metrics = pretrain_gpt2_zh.cli([*argv, "--max_steps", "4"])
    # The same held-out blocks: its first loss is the held-out loss the first run ended at.
    assert metrics["initial_loss"] == pytest.approx(first_metrics["eval_loss"], abs=1e-3)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert (config["init_from"], config["tokenizer_name_or_path"]) == (str(first), str(first))
    assert (config["n_layer"], config["n_embd"], config["model_type"]) == (
        2,
        32,
        "gpt2",
    )  # the model's, not --n_layer 3
    card = (out / "README.md").read_text()
    assert "pretrained further from the weights of `first`" in card and "continued-pretraining" in card
    assert "| layers x width x heads | 2 x 32 x 2 |" in card and "600 tokens" in card  # its tokenizer's report
    result = run_without_scratchlm(
        f"""
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(out)!r})
model = AutoModelForCausalLM.from_pretrained({str(out)!r})
print("OK", model.config.n_layer, len(tok))
""",
        cwd=tmp_path,
    )
    assert result.stdout.split() == ["OK", "2", "600"], result.stderr


@pytest.mark.parametrize("learning_rate,warned", [(1e-3, True), (3e-4, False)])
def test_adapting_to_a_small_text_for_many_epochs_at_the_trained_rate_warns(
    tmp_path, zh_docs, trained, caplog, learning_rate, warned
):
    """At the rates a model was trained with, 12 epochs of a small text ended worse than a model from scratch
    (benchmarks/init_from.py); the debug model was trained at 1e-3."""
    small = tmp_path / "small.txt"
    small.write_text("\n".join(zh_docs[:10]) + "\n", encoding="utf-8")
    argv = recipe_argv(DEBUG, small, trained[0], tmp_path / "adapted", "--init_from", trained[0], "--max_steps", 60)
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        pretrain_gpt2_zh.cli([*argv, "--learning_rate", str(learning_rate), "--eval_strategy", "no"])
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--init_from: this run sees")]
    assert bool(said) == warned, said
    if warned:
        assert "--learning_rate 0.001 (trained at 0.001)" in said[0] and "a third of the rates" in said[0]


def test_data_prepared_for_a_run_from_a_trained_model_uses_its_tokenizer(tmp_path, zh_file, trained):
    from scratchlm.cli import main as scratchlm

    first, _ = trained
    start = ["--init_from", str(first), "--train_files", str(zh_file), "--tokenizer_name_or_path", str(tmp_path / "no")]
    scratchlm(["prepare", str(DEBUG), "--out", str(tmp_path / "shards"), *start])
    metrics = pretrain_gpt2_zh.cli(
        [
            "--config",
            str(DEBUG),
            *start,
            "--prepared_data",
            str(tmp_path / "shards"),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    assert metrics["train_loss"] > 0


def test_a_resume_of_such_a_run_must_start_from_the_same_model(tmp_path, zh_file, trained, gpt_tokenizer_dir):
    first, _ = trained
    other = tmp_path / "other"
    shutil.copytree(first, other)
    out = tmp_path / "second"
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--init_from", first, "--max_steps", "4")
    pretrain_gpt2_zh.cli(argv)
    moved = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--init_from", other, "--max_steps", 8)
    with pytest.raises(ScratchError, match="was trained with init_from"):
        pretrain_gpt2_zh.cli([*moved, "--resume_from_checkpoint", str(out / "checkpoint-4")])


def fake_model(folder, config, tokenizer_dir):
    """A model folder with a config and a tokenizer only: what is refused is refused before weights are read."""
    config.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    return folder


@pytest.mark.parametrize(
    "config, message",
    [
        (BertConfig(vocab_size=640), "is a bert model, a masked LM, and this run trains a causal LM"),
        (GPT2Config(vocab_size=640, n_positions=16), "--block_size 32 is larger than the 16 positions of the model"),
        (GPT2Config(vocab_size=320), "has 600 tokens but the model's vocabulary has 320"),
        (OPTConfig(vocab_size=640), "holds a model of family opt, which scratchlm does not train"),
    ],
    ids=["masked", "positions", "vocabulary", "unknown-family"],
)
def test_a_model_this_run_cannot_train_is_refused(tmp_path, zh_file, gpt_tokenizer_dir, config, message):
    folder = fake_model(tmp_path / "model", config, gpt_tokenizer_dir)
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "out", "--init_from", folder)
    with pytest.raises(ScratchError, match=message):
        build_run(parse_run_settings(argv, objective="causal"))


def test_a_folder_without_a_model_another_tokenizer_or_the_output_dir_itself_is_refused(
    tmp_path, zh_file, zh_docs, gpt_tokenizer_dir
):
    from scratchlm.arguments import TokenizerArguments
    from scratchlm.tokenizer import train_tokenizer

    folder = fake_model(tmp_path / "model", GPT2Config(vocab_size=640), gpt_tokenizer_dir)
    with pytest.raises(ScratchError, match=r"--init_from \S+ holds no model \(no config.json\)"):
        build_run(
            parse_run_settings(
                recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "o", "--init_from", tmp_path),
                objective="causal",
            )
        )
    with pytest.raises(ScratchError, match=f"--init_from {folder / 'config.json'} is a file: pass the folder"):
        build_run(
            parse_run_settings(
                recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "o", "--init_from", folder / "config.json"),
                objective="causal",
            )
        )
    other = tmp_path / "other-tokenizer"
    train_tokenizer(zh_docs[:100], TokenizerArguments(vocab_size=500), other)
    with pytest.raises(ScratchError, match=f"--tokenizer_name_or_path {other} is not the tokenizer the model in"):
        build_run(
            parse_run_settings(
                recipe_argv(DEBUG, zh_file, other, tmp_path / "o", "--init_from", folder), objective="causal"
            )
        )
    with pytest.raises(ScratchError, match="the run would write over the model it starts from"):
        parse_run_settings(
            recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, folder, "--init_from", folder), objective="causal"
        )


def test_the_card_of_a_run_from_a_hub_model_names_it_as_its_base_model():
    from transformers import GPT2LMHeadModel

    from scratchlm.card import pretraining_card
    from scratchlm.objectives import OBJECTIVES

    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    manifest = {"corpus": "local files", "corpus_fingerprint": "0" * 64, "tokenizer_fingerprint": "1" * 64}
    manifest |= {"device": "cpu", "config": {"init_from": "someone/small-gpt2", "output_dir": "outputs/x"}}
    summary = {"parameters": 1, "total_tokens": 1}
    card = pretraining_card(OBJECTIVES["causal"], manifest, model, {}, summary, [], None)
    assert "base_model: someone/small-gpt2" in card and "from the weights of `someone/small-gpt2`" in card
    manifest["config"]["init_from"] = None
    card = pretraining_card(OBJECTIVES["causal"], manifest, model, {}, summary, [], None)
    assert "base_model" not in card and "pretrained from scratch" in card
