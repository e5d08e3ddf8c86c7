"""Run health: each broken run gets its warning at evaluation, a healthy one gets none, and the card says so."""

import json
import logging
import time
from types import SimpleNamespace

import pytest
from transformers import TrainerCallback

from scratchlm.arguments import PretrainingArguments
from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run
from scratchlm.training import RunCallbacks
from scratchlm.training import health as health_checks
from scratchlm.training.health import CLIPPING_FROM_STEP, DATA_WAIT_WARN_SECONDS, data_wait_verdict
from scratchlm.training.run import log_final_summary

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv
from schedule_oracle import one_cycle_factor, schedule_factor

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
# Beats the unigram bar in 80 steps, and its steps are long enough that fetching batches is a small share.
HEALTHY = ["--max_steps", "80", "--eval_steps", "40", "--learning_rate", "1e-2", "--n_embd", "128"]
HEALTHY += ["--per_device_train_batch_size", "32"]


def flags(tmp_path, zh_file, tok, *extra):
    return recipe_argv(DEBUG, zh_file, tok, tmp_path / "out", *HEALTHY, *extra)


def train(argv, caplog, tweak=None):
    run = build_run(parse_run_settings(argv, objective="causal"))
    if tweak is not None:
        tweak(run.trainer)
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        run.trainer.train()
    verdicts = {v.check: v.verdict for v in run.callbacks.health.verdicts}
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("health:")
    ]
    return verdicts, warnings


def test_a_healthy_run_gets_no_warning_and_a_health_section(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    argv = flags(tmp_path, zh_file, gpt_tokenizer_dir)
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        pretrain_gpt2_zh.cli(argv)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("health:")], messages
    assert sum(m.startswith("health at step") for m in messages) == 2  # steps 40 and 80, not again at the end
    assert sum(m.startswith("samples at step 80") for m in messages) == 1
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "eval_loss" in e] == [40, 80]  # no second final evaluation
    # Training seconds leave out the evaluations (and the samples drawn at them).
    seconds = [e["train_seconds"] for e in state["log_history"] if "train_seconds" in e]
    runtime = next(e["train_runtime"] for e in state["log_history"] if "train_runtime" in e)
    evaluating = sum(e["eval_runtime"] for e in state["log_history"] if "eval_runtime" in e)
    assert len(seconds) > 2 and seconds == sorted(seconds) and 0 < seconds[-1] < runtime - evaluating
    health = json.loads((tmp_path / "out" / "health.json").read_text())
    assert [(v["check"], v["verdict"]) for v in health] == [
        ("unigram", "ok"),
        ("clipping", "ok"),
        ("data_wait", "ok"),
        ("learning_rate", "ok"),
        ("overfitting", "n/a"),  # judged from the fourth evaluation on
    ]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Health" in card and "| learning_rate | ok |" in card
    assert messages[-1].startswith("run finished at step 80") and "health unigram: ok" in messages[-1]
    assert " below); " in messages[-1]


def test_the_summary_says_above_for_a_loss_over_the_unigram_bar(caplog):
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=8), args=SimpleNamespace(output_dir="out"))
    metrics = {"eval_loss": 6.045, "eval_unigram_loss": 5.194}
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        log_final_summary(trainer, metrics, [], ["README.md"])
    assert "held-out loss 6.045 nats/token vs unigram 5.194 (0.85 above)" in caplog.records[-1].getMessage()


def test_clipping_on_every_step_warns_once_and_stays_on_in_the_summary(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    argv = flags(tmp_path, zh_file, gpt_tokenizer_dir, "--max_grad_norm", 1e-4, "--eval_steps", 20)
    verdicts, warnings = train(argv, caplog)
    assert verdicts["clipping"] == "warn"
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("health at step")]
    assert [s.split(";")[1].strip() for s in summaries] == ["clipping n/a"] * 2 + ["clipping warn"] * 2
    # Steps 61-80 are clipped as steps 51-60 were: the advice is logged at the first warning only.
    (warning,) = [w for w in warnings if "gradient clipped" in w]
    assert "gradient clipped on 100% of the last 10 steps" in warning


def test_clipping_is_judged_after_the_first_steps_whose_gradients_are_large_in_any_run():
    import torch

    from scratchlm.training.health import HealthMonitor

    monitor = HealthMonitor(tokens_per_step=64, unigram_tokens=10**6, data_wait_fix="")
    for step in range(1, CLIPPING_FROM_STEP + 11):
        monitor.count_clipping(torch.tensor(5.0 if step <= CLIPPING_FROM_STEP else 0.5), max_norm=1.0, step=step)
    assert (monitor.judged_steps, int(monitor.clipped), float(monitor.norm_sum)) == (10, 0, 5.0)


@pytest.mark.slow
def test_a_sleeping_dataloader_warns(tmp_path, zh_file, gpt_tokenizer_dir, caplog, monkeypatch):
    # 30 ms a step over 80 steps: a run this long would have to sleep for minutes to reach the real floor.
    monkeypatch.setattr(health_checks, "DATA_WAIT_WARN_SECONDS", 1.0)

    def sleepy(trainer):
        collate = trainer.data_collator

        def slow_collate(features):
            time.sleep(0.03)
            return collate(features)

        trainer.data_collator = slow_collate

    verdicts, warnings = train(flags(tmp_path, zh_file, gpt_tokenizer_dir), caplog, sleepy)
    assert verdicts["data_wait"] == "warn"
    assert any("waiting for data" in w and "--dataloader_num_workers" in w for w in warnings)


@pytest.mark.parametrize(
    "workers, prepared, said, not_said",
    [
        (0, False, ["--dataloader_num_workers 2-8", "`scratchlm prepare`"], ["more than"]),
        (4, False, ["more than its 4 --dataloader_num_workers", "`scratchlm prepare`"], ["2-8"]),
        (4, True, ["more than its 4 --dataloader_num_workers"], ["prepare"]),
    ],
)
def test_the_data_wait_warning_suggests_only_what_the_run_does_not_do(tmp_path, workers, prepared, said, not_said):
    args = PretrainingArguments(output_dir=str(tmp_path), dataloader_num_workers=workers, report_to="none")
    health = RunCallbacks.for_run(args, tokens_per_step=16, prepared_data=prepared).health
    verdict = data_wait_verdict(0.5, 1.0, health.data_wait_fix, steps=10, run_steps=1000)
    assert verdict.verdict == "warn"
    assert verdict.message.startswith("50.0% of training time waiting for data, 50 ms a step: 50.0 s over the run's ")
    assert all(s in verdict.message for s in said) and not any(s in verdict.message for s in not_said)


def test_a_wait_too_short_to_matter_over_the_whole_run_is_no_warning():
    # The debug config on 2 CPU cores: 1 ms of each 5-ms step fetches the batch, 8 ms over the run.
    fix = "give the loader --dataloader_num_workers 2-8"
    short = data_wait_verdict(0.004, 0.02, fix, steps=4, run_steps=8)
    assert short.verdict == "ok" and short.message.endswith("8 steps, too little to be worth a change")
    assert short.value == pytest.approx(0.2)
    # The same rate over a run long enough for it to add up to the floor warns.
    steps_to_the_floor = int(DATA_WAIT_WARN_SECONDS / 0.001) + 1
    long = data_wait_verdict(0.004, 0.02, fix, steps=4, run_steps=steps_to_the_floor)
    assert long.verdict == "warn" and long.message.endswith(fix)
    assert data_wait_verdict(0.001, 0.02, fix, steps=4, run_steps=10**6).message == (
        "5.0% of training time waiting for data"
    )


def test_the_debug_config_on_its_own_gets_no_data_wait_warning(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        pretrain_gpt2_zh.cli(recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out))
    health = {v["check"]: v for v in json.loads((out / "health.json").read_text())}
    assert health["data_wait"]["verdict"] == "ok", health["data_wait"]["message"]
    assert not [r for r in caplog.records if "waiting for data" in r.getMessage() and r.levelno >= logging.WARNING]


class HalvesTheRate(TrainerCallback):
    """A bug: something sets the optimizer's rate behind the scheduler's back."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        for group in self.trainer.optimizer.param_groups:
            group["lr"] *= 0.5


def test_a_learning_rate_off_its_schedule_warns(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    verdicts, warnings = train(
        flags(tmp_path, zh_file, gpt_tokenizer_dir),
        caplog,
        lambda trainer: trainer.add_callback(HalvesTheRate(trainer)),
    )
    assert verdicts["learning_rate"] == "warn"
    assert any("the schedule is not being applied" in w for w in warnings)


def test_a_loss_stuck_above_the_unigram_bar_warns(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    stuck = flags(tmp_path, zh_file, gpt_tokenizer_dir, "--learning_rate", 1e-7, "--health_unigram_tokens", 10_240)
    verdicts, warnings = train(stuck, caplog)
    assert verdicts["unigram"] == "warn" and verdicts["learning_rate"] == "ok"
    assert any("after 40,960 tokens" in w and "has not learned token frequencies" in w for w in warnings)


def test_a_run_that_ends_above_the_unigram_bar_before_it_is_judged_says_to_train_longer(
    tmp_path, zh_file, gpt_tokenizer_dir, caplog
):
    verdicts, warnings = train(flags(tmp_path, zh_file, gpt_tokenizer_dir, "--learning_rate", 1e-7), caplog)
    assert verdicts["unigram"] == "warn"
    (warning,) = [w for w in warnings if "unigram bar" in w]
    assert "the run ended after 81,920 tokens" in warning and "train longer" in warning
    assert "after 10,000,000 tokens (--health_unigram_tokens) has a bug" in warning


def test_a_loss_back_above_the_unigram_bar_after_clearing_it_is_not_told_to_train_longer():
    """A model adapted to a small text for many epochs (`--init_from`, 12 epochs in benchmarks/init_from.py)
    cleared the bar, then memorised its way back above it: "train longer" contradicted the overfitting check."""
    from scratchlm.training.health import unigram_verdict

    short_run = {"tokens_seen": 300_000, "budget": 10_000_000, "run_tokens": 300_000}
    back = unigram_verdict(8.78, 6.85, **short_run, best_eval_loss=6.15)
    assert back.verdict == "warn" and "train longer" not in back.message
    assert "back above the unigram bar 6.850, after 6.150 at its best" in back.message
    assert "--load_best_model_at_end true" in back.message
    never = unigram_verdict(8.78, 6.85, **short_run, best_eval_loss=6.80)  # never 0.1 below: still a short run
    assert never.verdict == "warn" and "train longer" in never.message
    early = unigram_verdict(8.78, 6.85, tokens_seen=1_000, budget=10_000_000, run_tokens=300_000, best_eval_loss=6.1)
    assert early.verdict == "warn"  # judged at once, not after the budget: it did learn token frequencies


@pytest.mark.slow
def test_a_small_corpus_seen_many_times_warns_of_overfitting(tmp_path, zh_docs, gpt_tokenizer_dir, caplog):
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(zh_docs[:40]) + "\n", encoding="utf-8")
    argv = recipe_argv(DEBUG, corpus, gpt_tokenizer_dir, tmp_path / "out", *HEALTHY)
    argv += ["--max_steps", "240", "--eval_steps", "30", "--learning_rate", "1e-2", "--warmup_steps", "10"]
    argv += ["--window_order", "fixed"]  # the memorising case: shifted windows keep held-out loss down longer
    verdicts, warnings = train(argv, caplog)
    assert verdicts["overfitting"] == "warn", warnings
    rising = [w for w in warnings if "held-out loss rose at two evaluations in a row" in w]
    assert rising and all("epochs: the model is memorising its corpus" in w for w in rising)
    assert all("(--dropout 0.1 (now 0); --weight_decay 0.2 (now 0.1))" in w for w in rising)  # the run's own values


def test_steps_that_fp16_loss_scaling_skips_count_neither_as_clipped_nor_in_the_mean_norm():
    import torch

    from scratchlm.training.health import HealthMonitor

    monitor = HealthMonitor(tokens_per_step=64, unigram_tokens=10**6, data_wait_fix="")
    for norm in (0.5, float("inf"), 2.0, float("nan")):  # an overflowing fp16 step has a non-finite norm
        monitor.count_clipping(torch.tensor(norm), max_norm=1.0, step=CLIPPING_FROM_STEP + 1)
    assert (int(monitor.clipped), float(monitor.norm_sum), int(monitor.overflowed)) == (1, 2.5, 2)


def test_the_overfitting_verdict_needs_two_rises_while_training_loss_falls_and_a_rise_above_the_jitter():
    from scratchlm.training.health import overfitting_verdict

    def points(held_out, training=None):
        training = training or [3.5 - 0.1 * i for i in range(len(held_out))]
        return list(zip(held_out, training))

    assert overfitting_verdict(points([3.0, 2.9, 3.0])).verdict == "n/a"
    memorising = overfitting_verdict(points([3.0, 2.9, 2.95, 3.0, 3.1, 3.2]))
    assert memorising.verdict == "warn" and round(memorising.value, 3) == 0.15  # means 2.95, 2.95, 3.017, 3.1
    assert "its mean over the last 3 now 0.150 above its lowest" in memorising.message
    assert overfitting_verdict(points([3.0, 2.9, 2.95, 3.0, 3.1, 3.05])).verdict == "ok"  # one rise
    assert overfitting_verdict(points([3.0, 2.9, 2.95, 3.0, 3.1, 3.2], [3.5, 3.4, 3.3, 3.2, 3.3, 3.4])).verdict == "ok"
    assert overfitting_verdict([(9.0, None)] + points([3.0, 2.9, 2.95, 3.0, 3.1, 3.2])).verdict == "warn"
    # The small baby GPT under Muon at its constant rate (benchmarks/README.md): two rises by hundredths after a
    # lower evaluation, in a run whose held-out loss went on down to 2.231. The three-evaluation mean rose 0.012.
    jitter = overfitting_verdict(points([2.468, 2.414, 2.425, 2.425, 2.433, 2.443]))
    assert jitter.verdict == "ok" and jitter.message == "held-out loss 2.443, rising"


def test_the_overfitting_advice_regularises_more_than_the_run_does():
    """The baby GPT trains at dropout 0.2: advice to set 0.1 would regularise less."""
    from scratchlm.training.health import overfitting_verdict

    rising = [(3.0, 3.3), (2.9, 3.2), (2.95, 3.1), (3.0, 3.0), (3.1, 2.9), (3.2, 2.8)]
    assert (
        "(--dropout 0.3 (now 0.2); --weight_decay 0.2 (now 0.1))" in overfitting_verdict(rising, 20, 0.2, 0.1).message
    )
    assert "(--dropout 0.1 (now 0); --weight_decay 0.1 (now 0))" in overfitting_verdict(rising, 20, 0.0, 0.0).message
    assert "(--weight_decay 1 (now 0.5))" in overfitting_verdict(rising, 20, 0.5, 0.5).message  # dropout at its most


@pytest.mark.parametrize(
    "kind,options,expected",
    [
        ("linear", {}, [0.0, 0.5, 1.0, 0.5, 0.0]),
        ("cosine", {}, [0.0, 0.5, 1.0, 0.5, 0.0]),
        ("cosine_with_min_lr", {"min_lr_rate": 0.1}, [0.0, 0.5, 1.0, 0.55, 0.1]),
        ("constant_with_warmup", {}, [0.0, 0.5, 1.0, 1.0, 1.0]),
    ],
)
def test_schedule_closed_forms(kind, options, expected):
    got = [schedule_factor(kind, step, 22, 2, options) for step in (0, 1, 2, 12, 22)]
    assert got == pytest.approx(expected)


def test_one_cycle_closed_form_matches_torch():
    import torch

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=50, pct_start=0.2)
    for step in range(50):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(one_cycle_factor(step, 50, 10), rel=1e-6), step
        optimizer.step()
        schedule.step()


def test_profile_steps_write_a_trace_and_the_top_operators(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    argv = flags(tmp_path, zh_file, gpt_tokenizer_dir, "--max_steps", 8, "--eval_steps", 8, "--profile_steps", "3-4")
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        pretrain_gpt2_zh.cli(argv)
    trace = tmp_path / "out" / "profile" / "trace_steps_3-4.json"
    events = json.loads(trace.read_text())["traceEvents"]
    assert any("aten::" in str(e.get("name", "")) for e in events)
    table = (tmp_path / "out" / "profile" / "top_operators_steps_3-4.txt").read_text()
    assert "Self CPU" in table
    assert any(r.getMessage().startswith("profile of steps 3-4") for r in caplog.records)


def test_a_run_that_stops_with_an_error_inside_the_profile_window_writes_the_steps_before_it(
    tmp_path, zh_file, gpt_tokenizer_dir
):
    from scratchlm.errors import ScratchError

    exploding = ("--learning_rate", 1e4, "--warmup_steps", 0, "--max_steps", 20)
    argv = flags(tmp_path, zh_file, gpt_tokenizer_dir, *exploding, "--profile_steps", "1-10")
    with pytest.raises(ScratchError, match="the training loss"):
        pretrain_gpt2_zh.cli(argv)
    events = json.loads((tmp_path / "out" / "profile" / "trace_steps_1-10.json").read_text())["traceEvents"]
    assert any("aten::" in str(e.get("name", "")) for e in events)


@pytest.mark.parametrize("window", ["25-20", "0-3", "twenty"])
def test_a_malformed_profile_window_is_refused(tmp_path, window):
    from scratchlm.errors import ScratchError

    with pytest.raises(ScratchError, match="--profile_steps"):
        parse_run_settings(["--config", DEBUG, "--output_dir", str(tmp_path), "--profile_steps", window], "causal")


@pytest.mark.parametrize(
    "kind,options",
    [
        ("linear", {}),
        ("cosine", {}),
        ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
        ("constant_with_warmup", {}),
        ("warmup_stable_decay", {"num_decay_steps": 5}),
        ("one_cycle", {}),
    ],
)
def test_the_health_checks_shadow_schedule_follows_the_closed_form(tmp_path, kind, options):
    from scratchlm.arguments import PretrainingArguments
    from scratchlm.training.schedules import ShadowSchedule

    args = PretrainingArguments(
        output_dir=str(tmp_path),
        lr_scheduler_type=kind,
        lr_scheduler_kwargs=options,
        warmup_steps=3,
        max_steps=22,
    )
    shadow = ShadowSchedule(args, 22)
    for step in range(23):
        assert shadow.factor(step) == pytest.approx(schedule_factor(kind, step, 22, 3, options), abs=1e-9), step
