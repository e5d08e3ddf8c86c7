"""Optimizer settings a recipe exposes: the one-cycle schedule and which parameters weight decay reaches."""

import json
import math

import pytest

from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run
from scratchlm.training.health import one_cycle_factor

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv


def test_one_cycle_runs_through_trainer_on_its_closed_form(tmp_path, zh_file, gpt_tokenizer_dir):
    out = tmp_path / "out"
    pretrain_gpt2_zh.cli(
        recipe_argv(
            ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml",
            zh_file,
            gpt_tokenizer_dir,
            out,
            "--lr_scheduler_type",
            "one_cycle",
            "--warmup_steps",
            "0.25",
            "--max_steps",
            "20",
            "--eval_steps",
            "10",
            "--logging_steps",
            "1",
            "--learning_rate",
            "1e-2",
        )
    )
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = {e["step"]: e["learning_rate"] for e in history if "learning_rate" in e}
    # Trainer logs the rate that the step used: the schedule after step - 1 scheduler steps.
    for step, lr in logged.items():
        assert lr == pytest.approx(1e-2 * one_cycle_factor(step - 1, 20, 5), rel=1e-6), step
    assert max(logged.values()) == pytest.approx(1e-2)
    assert min(logged.values()) < 1e-2 / 25  # it ends far below where it started
    health = {v["check"]: v["verdict"] for v in json.loads((out / "health.json").read_text())}
    assert health["learning_rate"] == "ok"
    config = (out / "run_config.yaml").read_text()
    assert "lr_scheduler_type: one_cycle" in config


@pytest.mark.parametrize("policy,expected", [("linear", 3 * 6 + 1), ("matrices", 3 * 6 + 1 + 3)])
def test_weight_decay_policy_counts_the_decayed_tensors_of_a_3_layer_bert(tmp_path, zh_file, policy, expected):
    settings = parse_run_settings(
        [
            "--config",
            str(ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml"),
            "--train_files",
            str(zh_file),
            "--tokenizer_name_or_path",
            str(tmp_path / "tok"),
            "--model_type",
            "bert",
            "--n_layer",
            "3",
            "--output_dir",
            str(tmp_path / "o"),
            "--weight_decay_on",
            policy,
        ],
        objective="masked",
    )
    run = build_run(settings)
    decayed = run.trainer.get_decay_parameter_names(run.model)
    # Per layer: query, key, value, attention output, intermediate, output; plus the head's transform.
    # "matrices" adds the word, position and token-type embeddings.
    assert len(decayed) == expected, decayed
    embeddings = [name for name in decayed if "embeddings" in name]
    assert (len(embeddings) == 0) == (policy == "linear")
    assert all(not math.isnan(p.float().sum().item()) for p in run.model.parameters())
