"""--optim muon: Muon on the blocks' matrices, AdamW on the rest, one optimizer that trains, accumulates and resumes."""

import json

import pytest
import torch

from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv
from test_resume import flags as resume_flags
from test_resume import kill_at, per_step

DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_every_parameter_is_in_exactly_one_group(tmp_path, zh_file, gpt_tokenizer_dir, family):
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "o", "--optim", "muon", "--model_type", family)
    run = build_run(parse_run_settings(argv, objective="causal"))
    optimizer = run.trainer.create_optimizer()
    muon, adamw = optimizer.muon.param_groups, optimizer.adamw.param_groups
    assert optimizer.param_groups == muon + adamw
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in run.model.parameters()) and len(set(grouped)) == len(grouped)
    in_muon = {id(p) for g in muon for p in g["params"]}
    embedding = run.model.get_input_embeddings().weight
    assert id(embedding) not in in_muon and id(run.model.get_output_embeddings().weight) not in in_muon
    assert all(p.ndim == 2 for g in muon for p in g["params"]) and len(in_muon) >= 4 * 2  # attention + MLP, 2 layers
    names = {id(p): n for n, p in run.model.named_parameters()}
    assert all(
        "norm" in names[id(p)] or "ln" in names[id(p)] or p.ndim < 2 or p is embedding or "wpe" in names[id(p)]
        for g in adamw
        for p in g["params"]
    )
    assert muon[0]["lr"] == 0.02 and {g["lr"] for g in adamw} == {1e-3}


def losses(out):
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [e["loss"] for e in history if "loss" in e]


def test_muon_trains_and_accumulation_takes_the_same_step(tmp_path, zh_file, gpt_tokenizer_dir):
    common = ["--optim", "muon", "--logging_steps", 1, "--eval_steps", 8]
    whole = tmp_path / "whole"
    pretrain_gpt2_zh.cli(recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, whole, *common))
    split = tmp_path / "split"
    accumulate = ["--per_device_train_batch_size", 2, "--gradient_accumulation_steps", 2]
    pretrain_gpt2_zh.cli(recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, split, *common, *accumulate))
    assert len(losses(whole)) == 8 and losses(whole)[-1] < losses(whole)[0]
    assert losses(split) == pytest.approx(losses(whole), abs=1e-4)
    health = {v["check"]: v["verdict"] for v in json.loads((whole / "health.json").read_text())}
    assert health["learning_rate"] == "ok"  # both optimizers follow the schedule


@pytest.mark.slow
def test_killed_muon_run_resumes_to_the_same_losses(tmp_path, zh_file, gpt_tokenizer_dir):
    reference = tmp_path / "uninterrupted"
    pretrain_gpt2_zh.cli(resume_flags(zh_file, gpt_tokenizer_dir, reference, "--optim", "muon"))
    out = tmp_path / "killed"
    kill_at(7, resume_flags(zh_file, gpt_tokenizer_dir, out, "--optim", "muon"), tmp_path)
    pretrain_gpt2_zh.cli(
        resume_flags(zh_file, gpt_tokenizer_dir, out, "--optim", "muon", "--resume_from_checkpoint", "true")
    )
    expected, resumed = per_step(reference, "loss"), per_step(out, "loss")
    for step in range(7, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    state = torch.load(out / "checkpoint-12" / "optimizer.pt", weights_only=False)
    assert set(state) == {"muon", "adamw"} and state["muon"]["state"]  # Muon's momentum is saved


def test_a_cpu_step_orthogonalises_in_float32():
    from scratchlm.training.muon import MuonWithAdamW, newton_schulz_float32

    weight, bias = torch.nn.Parameter(torch.zeros(48, 16)), torch.nn.Parameter(torch.zeros(16))
    weight.grad, bias.grad = torch.randn(48, 16, generator=torch.Generator().manual_seed(0)), torch.zeros(16)
    muon_options = {"lr": 1.0, "weight_decay": 0.0, "momentum": 0.0}
    optimizer = MuonWithAdamW([{"params": [weight]}], [{"params": [bias]}], muon_options, {"lr": 1e-3})
    optimizer.step()
    expected = -((48 / 16) ** 0.5) * newton_schulz_float32(weight.grad, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert torch.allclose(weight.detach(), expected)  # torch's bf16 iteration differs by ~1e-2


def test_muon_under_deepspeed_is_refused_before_anything_runs(monkeypatch):
    from scratchlm.errors import ScratchError

    demo = str(ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml")  # Muon, as both demo configs
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` sets for a DeepSpeed config
    with pytest.raises(ScratchError, match="--optim muon cannot run under DeepSpeed.*multi_gpu_ddp.yaml"):
        parse_run_settings(["--config", demo, "--output_dir", "x"], objective="causal")
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    assert parse_run_settings(["--config", demo, "--output_dir", "x"], objective="causal").training.optim == "muon"
