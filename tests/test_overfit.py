"""`scratchlm overfit`: a correct model memorises a small text; one that cannot is reported with an error."""

import json

import pytest

from scratchlm.cli import main as scratchlm
from scratchlm.errors import ScratchError
from scratchlm.overfit import overfit

from conftest import ROOT

DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
WIDER = ["--model_type", "scratch_decoder", "--n_embd", "128", "--learning_rate", "3e-3"]


@pytest.fixture
def verdict_opening(tmp_path, shared_data):
    """The first 5 KB of The Verdict: the same kind of text as the whole 20 KB, memorised four times faster."""
    text = (shared_data / "the-verdict" / "the-verdict.txt").read_text(encoding="utf-8")[:5000]
    path = tmp_path / "verdict-5k.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_the_debug_decoder_memorises_a_small_text(tmp_path, verdict_opening, placement):
    flags = [*WIDER, "--norm_placement", placement, "--tokenizer_name_or_path", str(tmp_path / "tok")]
    result = overfit(DEBUG, verdict_opening, flags, max_steps=300, target=0.5)
    assert result["model_type"] == "scratch_decoder" and result["steps"] <= 300
    assert result["final_loss"] < result["first_loss"] - 3
    if placement == "pre":
        assert result["memorised"] and result["final_loss"] < 0.5
        assert result["greedy_recall"] > 0.5  # greedy decoding gives the text back
    assert result["prompt"] and result["greedy"] and result["sampled_t1"]


def test_overfit_trains_with_the_configs_optimizer_without_weight_decay(tmp_path, verdict_opening):
    flags = ["--optim", "muon", "--tokenizer_name_or_path", str(tmp_path / "tok")]  # the default decay is 0.1
    result = overfit(DEBUG, verdict_opening, flags, max_steps=2)
    assert result["optimizer"] == "MuonWithAdamW" and result["weight_decay"] == 0 and result["steps"] == 2


def test_overfit_says_nothing_of_the_configs_schedule_which_it_does_not_use(tmp_path, verdict_opening, caplog):
    demo = ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml"  # warmup-stable-decay, its decay's length auto
    with caplog.at_level("INFO", logger="scratchlm"):
        overfit(demo, verdict_opening, ["--tokenizer_name_or_path", str(tmp_path / "tok")], max_steps=1)
    assert "training on all " in caplog.text
    assert "decay" not in caplog.text  # the text is repeated thousands of times over the config's steps


def test_overfit_command_fails_when_the_model_does_not_memorise(tmp_path, verdict_opening, capsys, caplog, monkeypatch):
    monkeypatch.setattr("scratchlm.overfit.PROGRESS_SECONDS", 0)  # a line every step, not every 15 s
    out = tmp_path / "overfit.json"
    argv = ["overfit", str(DEBUG), "--text", str(verdict_opening), "--steps", "3", "--json", str(out)]
    with pytest.raises(SystemExit) as exit_info, caplog.at_level("INFO"):
        scratchlm([*argv, "--tokenizer_name_or_path", str(tmp_path / "tok")])
    assert not [r for r in caplog.records if "--validation_files" in r.getMessage()]  # its own held-out set on purpose
    said = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("training on all ") and "until the loss is below 0.1 or 3 steps" in line for line in said
    )
    assert [line.split(":")[0] for line in said if line.startswith("step ")] == ["step 1", "step 2", "step 3"]
    assert exit_info.value.code == ScratchError.exit_code
    assert "did not memorise verdict-5k.txt in 3 steps" in capsys.readouterr().err
    assert json.loads(out.read_text())["memorised"] is False
    with pytest.raises(SystemExit):
        scratchlm(["overfit", str(DEBUG), "--text", str(tmp_path / "missing.txt")])
