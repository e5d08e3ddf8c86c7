"""Optimizer settings a recipe exposes: the one-cycle schedule and which parameters weight decay reaches."""

import json
import logging
import math

import pytest

from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv
from schedule_oracle import schedule_factor


@pytest.mark.parametrize(
    "schedule,flags,options",
    [
        ("one_cycle", [], {}),
        ("warmup_stable_decay", [], {"num_decay_steps": 4}),  # the default: the last 20% of 20 steps
        # a fraction of the steps, as warmup_steps takes one, and transformers' other decay shapes
        (
            "warmup_stable_decay",
            ["--lr_scheduler_kwargs", '{"num_decay_steps": 0.4, "decay_type": "1-sqrt"}'],
            {"num_decay_steps": 8, "decay_type": "1-sqrt"},
        ),
        ("linear", [], {}),  # down to zero
    ],
)
def test_schedules_run_through_trainer_on_their_closed_form(
    tmp_path, zh_file, gpt_tokenizer_dir, schedule, flags, options
):
    out = tmp_path / "out"
    pretrain_gpt2_zh.cli(
        recipe_argv(
            ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml",
            zh_file,
            gpt_tokenizer_dir,
            out,
            *flags,
            "--lr_scheduler_type",
            schedule,
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
    assert len(logged) == 20
    # Trainer logs the rate that the step used: the schedule after step - 1 scheduler steps.
    for step, lr in logged.items():
        assert lr == pytest.approx(1e-2 * schedule_factor(schedule, step - 1, 20, 5, options), rel=1e-6), step
    assert max(logged.values()) == pytest.approx(1e-2)
    if schedule == "one_cycle":
        assert min(logged.values()) < 1e-2 / 25  # it ends far below where it started
    if schedule == "warmup_stable_decay":
        decay_starts = 20 - options["num_decay_steps"]
        assert [logged[s] for s in (6, decay_starts)] == [1e-2, 1e-2]  # flat until the decay
        # logged[s] is the rate after s - 1 steps, and the decay's first step is still at the peak
        assert logged[decay_starts + 2] < 1e-2
    health = {v["check"]: v["verdict"] for v in json.loads((out / "health.json").read_text())}
    assert health["learning_rate"] == "ok"
    assert f"lr_scheduler_type: {schedule}" in (out / "run_config.yaml").read_text()


def test_warmup_stable_decay_by_epochs_decays_over_a_fraction_of_the_steps_they_come_to(
    tmp_path, zh_file, gpt_tokenizer_dir
):
    from scratchlm.training import run_length

    argv = recipe_argv(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml", zh_file, gpt_tokenizer_dir, tmp_path / "o")
    argv += ["--lr_scheduler_type", "warmup_stable_decay", "--max_steps", "-1", "--num_train_epochs", "2"]
    run = build_run(parse_run_settings(argv, objective="causal"))
    steps, epochs = run_length(run.trainer.args, run.data)
    assert epochs == pytest.approx(2, abs=0.01) and steps > 20
    assert run.trainer.args.lr_scheduler_kwargs == {"num_decay_steps": round(0.2 * steps)}


def test_an_auto_decay_over_a_stream_takes_the_long_decay(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    argv = recipe_argv(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml", zh_file, gpt_tokenizer_dir, tmp_path / "o")
    argv += ["--streaming", "true", "--lr_scheduler_type", "warmup_stable_decay", "--max_steps", "20"]
    argv += ["--lr_scheduler_kwargs", '{"num_decay_steps": "auto"}']
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        run = build_run(parse_run_settings(argv, objective="causal"))
    assert run.trainer.args.lr_scheduler_kwargs == {"num_decay_steps": 12}  # a stream has no epochs to count
    assert "as the run streams its corpus, which has no epochs" in caplog.text


@pytest.mark.parametrize("length", ["0", '"ten"'])
def test_a_decay_of_no_steps_or_not_a_number_is_refused(tmp_path, length):
    from scratchlm.errors import ScratchError

    config = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
    kwargs = '{"num_decay_steps": ' + length + "}"
    flags = ["--lr_scheduler_type", "warmup_stable_decay", "--lr_scheduler_kwargs", kwargs]
    with pytest.raises(ScratchError, match="num_decay_steps must be a number above 0"):
        parse_run_settings(["--config", config, *flags, "--output_dir", str(tmp_path)], objective="causal")


@pytest.mark.parametrize(
    "max_steps,decay,warned,decay_steps",
    [
        (1000, 0.6, True, 600),  # about 8 epochs of the small corpus with a 60% decay
        (1000, 0.2, False, 200),  # the same repeats with the default decay
        (100, 0.6, False, 60),  # the long decay on a corpus seen less than once
        (1000, '"auto"', False, 200),  # auto: the short decay above 6 epochs
        (100, '"auto"', False, 60),  # and the long one below
    ],
)
def test_a_long_decay_over_a_corpus_seen_many_times_warns(
    tmp_path, zh_docs, gpt_tokenizer_dir, caplog, max_steps, decay, warned, decay_steps
):
    from scratchlm.training import log_run_summary

    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(zh_docs[:100]) + "\n", encoding="utf-8")
    argv = recipe_argv(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml", corpus, gpt_tokenizer_dir, tmp_path / "o")
    argv += ["--lr_scheduler_type", "warmup_stable_decay", "--max_steps", str(max_steps)]
    argv += ["--lr_scheduler_kwargs", '{"num_decay_steps": ' + str(decay) + "}"]
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        run = build_run(parse_run_settings(argv, objective="causal"))
        summary = log_run_summary(run.trainer, run.data)
    assert run.trainer.args.lr_scheduler_kwargs == {"num_decay_steps": decay_steps}
    assert ("(num_decay_steps auto): decaying over the last" in caplog.text) == (decay == '"auto"')
    epochs = summary["total_tokens"] / summary["train_tokens_available"]
    assert (epochs > 6) == (max_steps == 1000), epochs  # the sizes make the cases what they say
    long_decay = [
        r.getMessage() for r in caplog.records if "--lr_scheduler_kwargs: this run sees its corpus" in r.getMessage()
    ]
    assert bool(long_decay) == warned, long_decay
    if warned:
        assert """set --lr_scheduler_kwargs '{"num_decay_steps": 0.2}'""" in long_decay[0]
        assert f"sees its corpus {epochs:.1f} times and decays over its last 60% of steps" in long_decay[0]


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
