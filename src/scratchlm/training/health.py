"""Is the run healthy? Five checks that are cheap while it runs, reported at every evaluation and in the card.

- unigram: the held-out loss against the unigram bar, once the run has seen enough tokens to have learned
  token frequencies (a model that has not by then has a bug or a bad learning rate);
- clipping: the share of optimizer steps whose gradient norm was above `max_grad_norm`, and their mean
  norm (summed on the device, read at the report): a warning when nearly every step is cut hard;
- data wait: the share of training wall time spent fetching batches (Trainer's `get_batch_samples`), when at
  that rate the whole run would spend long enough on it to be worth a change;
- learning rate: the rate each parameter group was given against what the schedule gives at that step;
- overfitting: held-out loss rising at two evaluations in a row while the training loss falls, and its mean over
  the last three evaluations above the lowest such mean before by more than the eval-to-eval jitter of a
  healthy run: the sign of a model that memorises a small corpus it has seen many times.

Each check gives a verdict ("ok", "warn" or "n/a") and a line; a "warn" also goes to the log as a warning.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from transformers import TrainerCallback

from ..models import dropout_of
from .schedules import ShadowSchedule, peak_rate

logger = logging.getLogger("scratchlm")

UNIGRAM_MARGIN = 0.1  # nats/token the held-out loss must be below the unigram bar
CLIPPING_WARN_SHARE = 0.9
# Clipping on nearly every step is a problem when it scales the updates down hard. Norms just above the
# limit are common late in a healthy run (the demo's grow to 1.1-1.2 as its learning rate decays).
CLIPPING_WARN_FACTOR = 2.0
# The first steps' gradients are large in any run, while the loss falls from ln(vocab) towards the unigram bar
# (the Llama demo config: norms up to 2.9 until step 35 and under 1 from step 40, at max_grad_norm 1), so
# clipping is judged on the steps after these: a short run's first evaluation would otherwise advise a lower rate.
CLIPPING_FROM_STEP = 50
DATA_WAIT_WARN_SHARE = 0.10
# A large share of tiny steps can still be too little time to be worth a change: the debug config's steps take
# 5 ms on a CPU, of which fetching 4 blocks takes 1 ms (17%), 8 ms over its 8 steps, and neither loader workers
# nor prepared shards shorten it. The wait warns only when, at its rate, the whole run would wait this long.
DATA_WAIT_WARN_SECONDS = 30.0
LR_TOLERANCE = 1e-3  # relative
# At a high constant learning rate a model that still improves moves its held-out loss up and down by a few
# hundredths between evaluations, two rises in a row included (the small baby GPT under Muon rose twice in a
# row four times in a run whose last evaluation was its best): the rise is judged on means of three, whose
# jitter reached 0.036 in such runs (benchmarks/README.md, "The overfitting health verdict on these runs").
OVERFITTING_SPAN = 3
OVERFITTING_MARGIN = 0.05  # nats/token the latest mean must be above the lowest before


@dataclass
class Verdict:
    check: str
    verdict: str  # ok, warn or n/a
    message: str
    value: float | None = None


def unigram_verdict(
    eval_loss: float,
    unigram_loss: float,
    tokens_seen: int,
    budget: int,
    run_tokens: int,
    best_eval_loss: float | None = None,
) -> Verdict:
    """Judged once the run has seen `budget` tokens, or at its end when it is shorter than that; at once when an
    earlier evaluation (`best_eval_loss`, the lowest) was below the bar, where "train longer" would be wrong."""
    margin = unigram_loss - eval_loss
    if margin >= UNIGRAM_MARGIN:
        return Verdict("unigram", "ok", f"held-out loss {margin:.2f} nats below the unigram bar", margin)
    if best_eval_loss is not None and unigram_loss - best_eval_loss >= UNIGRAM_MARGIN:
        message = (
            f"held-out loss {eval_loss:.3f} is back above the unigram bar {unigram_loss:.3f}, after "
            f"{best_eval_loss:.3f} at its best: the model is losing what it learned, by memorising its corpus "
            "(fewer epochs or more text; the overfitting check says when) or at too high a learning rate; "
            "--load_best_model_at_end true with --metric_for_best_model eval_loss keeps the best checkpoint"
        )
        return Verdict("unigram", "warn", message, margin)
    tokens_needed = min(budget, run_tokens)
    if tokens_seen < tokens_needed:
        return Verdict(
            "unigram",
            "n/a",
            f"held-out loss {-margin:+.2f} nats from the unigram bar; judged after {tokens_needed:,} tokens",
            margin,
        )
    stuck = f"is not {UNIGRAM_MARGIN} nats below the unigram bar {unigram_loss:.3f}"
    if tokens_seen < budget:  # a short run (a first try, a debug config) may simply have ended too soon
        message = (
            f"the run ended after {tokens_seen:,} tokens and its held-out loss {eval_loss:.3f} {stuck}: train "
            f"longer; a model still above the bar after {budget:,} tokens (--health_unigram_tokens) has a bug or "
            "a bad learning rate (try `scratchlm find-lr`)"
        )
    else:
        message = (
            f"after {tokens_seen:,} tokens the held-out loss {eval_loss:.3f} {stuck}: a model that has not learned "
            "token frequencies by now has a bug or a bad learning rate (try `scratchlm find-lr`)"
        )
    return Verdict("unigram", "warn", message, margin)


def clipping_verdict(clipped: int, steps: int, max_grad_norm: float, mean_norm: float) -> Verdict:
    if steps == 0 or not max_grad_norm or max_grad_norm <= 0 or not math.isfinite(max_grad_norm):
        return Verdict("clipping", "n/a", "no clipping" if steps else "no optimizer steps since the last report")
    share = clipped / steps
    line = (
        f"gradient clipped on {share:.0%} of the last {steps} steps (mean norm {mean_norm:.3g}, "
        f"max_grad_norm {max_grad_norm:g})"
    )
    if share >= CLIPPING_WARN_SHARE and steps >= 5 and mean_norm >= CLIPPING_WARN_FACTOR * max_grad_norm:
        return Verdict(
            "clipping",
            "warn",
            line + ": every update is cut to a fraction of its size, which usually means the learning rate is "
            "too high for this model or the gradient scale is off; lower --learning_rate or check the loss",
            share,
        )
    return Verdict("clipping", "ok", line, share)


def data_wait_fix(workers: int, prepared: bool) -> str:
    """What shortens the wait for data, given what the run already does."""
    if workers == 0:
        fixes = ["give the loader --dataloader_num_workers 2-8 (and --dataloader_prefetch_factor)"]
    else:
        fixes = [
            f"give the loader more than its {workers} --dataloader_num_workers or a larger --dataloader_prefetch_factor"
        ]
    if not prepared:
        fixes.append("`scratchlm prepare` the data once so that training only reads blocks")
    return ", or ".join(fixes)


def data_wait_verdict(wait_seconds: float, wall_seconds: float, fix: str, steps: int, run_steps: int) -> Verdict:
    """`steps` is how many optimizer steps the wait and wall time cover, `run_steps` how many the run has."""
    if wall_seconds <= 0 or steps <= 0:
        return Verdict("data_wait", "n/a", "no training time since the last report")
    share = wait_seconds / wall_seconds
    line = f"{share:.1%} of training time waiting for data"
    if share <= DATA_WAIT_WARN_SHARE:
        return Verdict("data_wait", "ok", line, share)
    per_step, run_steps = wait_seconds / steps, max(run_steps, steps)
    run_wait = per_step * run_steps
    line += f", {per_step * 1000:.3g} ms a step: {run_wait:,.1f} s over the run's {run_steps:,} steps"
    if run_wait < DATA_WAIT_WARN_SECONDS:
        return Verdict("data_wait", "ok", f"{line}, too little to be worth a change", share)
    return Verdict("data_wait", "warn", f"{line}: {fix}", share)


def learning_rate_verdict(optimizer, schedule: ShadowSchedule, step: int) -> Verdict:
    factor = schedule.factor(step)
    if factor is None or optimizer is None:
        return Verdict("learning_rate", "n/a", f"the {schedule.name} schedule gives no rate by step alone")
    worst = None
    for index, group in enumerate(optimizer.param_groups):
        peak = peak_rate(group)
        if peak is None:
            continue
        expected, applied = peak * factor, group["lr"]
        error = abs(applied - expected) / max(abs(expected), 1e-12)
        if worst is None or error > worst[0]:
            worst = (error, index, applied, expected)
    if worst is None:
        return Verdict("learning_rate", "n/a", "the optimizer does not record its peak learning rate")
    error, index, applied, expected = worst
    kind = schedule.name
    if error > LR_TOLERANCE and abs(applied - expected) > 1e-12:
        return Verdict(
            "learning_rate",
            "warn",
            f"at step {step} parameter group {index} has learning rate {applied:.3e}, but the {kind} schedule "
            f"gives {expected:.3e}: the schedule is not being applied (a bug: check custom optimizers, "
            "callbacks that set the rate, or a resume that restored another run's scheduler)",
            applied,
        )
    return Verdict("learning_rate", "ok", f"learning rate {applied:.3e} as the {kind} schedule gives", applied)


def stronger_regularisation(dropout: float | None, weight_decay: float | None) -> str:
    """The flags that regularise more than the run does now: the run's own values are where the advice starts."""
    flags = []
    if dropout is None:
        flags.append("--dropout 0.1")
    elif dropout < 0.5:
        flags.append(f"--dropout {max(0.1, round(dropout + 0.1, 2)):g} (now {dropout:g})")
    if weight_decay is None:
        flags.append("--weight_decay")
    else:
        flags.append(f"--weight_decay {max(0.1, 2 * weight_decay):g} (now {weight_decay:g})")
    return "; ".join(flags)


def overfitting_verdict(
    points: list[tuple[float, float | None]],
    epoch: float | None = None,
    dropout: float | None = None,
    weight_decay: float | None = None,
) -> Verdict:
    """`points`: (held-out loss, mean training loss since the evaluation before) at each evaluation so far."""
    if len(points) <= OVERFITTING_SPAN:
        return Verdict("overfitting", "n/a", f"judged from evaluation {OVERFITTING_SPAN + 1} on")
    held_out = [loss for loss, _ in points]
    means = [
        sum(held_out[i - OVERFITTING_SPAN : i]) / OVERFITTING_SPAN for i in range(OVERFITTING_SPAN, len(points) + 1)
    ]
    above_best = means[-1] - min(means[:-1])
    (e0, _), (e1, t1), (e2, t2) = points[-3:]
    rising = e0 < e1 < e2
    training_falls = t1 is not None and t2 is not None and t2 < t1
    if rising and training_falls and above_best > OVERFITTING_MARGIN:
        seen = f" after {epoch:.1f} epochs" if epoch and epoch >= 1 else ""
        regularise = stronger_regularisation(dropout, weight_decay)
        return Verdict(
            "overfitting",
            "warn",
            f"held-out loss rose at two evaluations in a row ({e0:.3f}, {e1:.3f}, {e2:.3f}), its mean over the last "
            f"{OVERFITTING_SPAN} now {above_best:.3f} above its lowest, while the training loss fell ({t1:.3f}, "
            f"{t2:.3f}){seen}: the model is memorising its corpus. Train fewer epochs (--max_steps, "
            f"or --stop_at_eval_loss), give it more text, or regularise it ({regularise}); "
            "--load_best_model_at_end true with --metric_for_best_model eval_loss keeps the best checkpoint",
            above_best,
        )
    return Verdict("overfitting", "ok", f"held-out loss {e2:.3f}, {'rising' if rising else 'not rising'}", above_best)


def minimal_pairs_verdict(accuracy: float, unigram_accuracy: float | None) -> Verdict:
    """Information rather than a check: small models sit near word frequencies for a long time, which is no bug."""
    if unigram_accuracy is None:
        return Verdict("minimal_pairs", "n/a", f"minimal-pair accuracy {accuracy:.3f} (no unigram bar)", accuracy)
    line = f"minimal-pair accuracy {accuracy:.3f} against {unigram_accuracy:.3f} from word frequencies alone"
    if accuracy > unigram_accuracy:
        return Verdict("minimal_pairs", "ok", line, accuracy)
    return Verdict("minimal_pairs", "n/a", line + ": not above them yet", accuracy)


class HealthMonitor(TrainerCallback):
    """Collects the counts between evaluations and reports the five verdicts at each one."""

    def __init__(self, tokens_per_step: int, unigram_tokens: int, data_wait_fix: str):
        self.tokens_per_step = tokens_per_step
        self.data_wait_fix = data_wait_fix
        # Judged after this many tokens, or at the end of a shorter run: small models (BERT's above all) can sit
        # on the unigram bar for a while before they pass it (the BERT demo's held-out loss at half its run).
        self.unigram_tokens = unigram_tokens
        self.clipped: torch.Tensor | int = 0
        self.norm_sum: torch.Tensor | float = 0.0
        self.overflowed: torch.Tensor | int = 0  # fp16 loss scaling skips these steps: no norm to count
        self.judged_steps = 0  # optimizer steps after CLIPPING_FROM_STEP since the last report
        self.data_wait = 0.0
        self.window_start: float | None = None
        self.window_end: float | None = None
        self.window_first_step = 0
        self.schedule: ShadowSchedule | None = None
        # Set by PretrainingTrainer when it builds the optimizer: Trainer's callback events pass the optimizer the
        # trainer had when it was constructed (none yet), not the one it trains with.
        self.optimizer = None
        self.verdicts: list[Verdict] = []
        self.evaluations: list[tuple[float, float | None]] = []  # (held-out loss, training loss since the last)
        self.last_evaluated_step = 0

    # -- counting, called by PretrainingTrainer ------------------------------------------------
    def count_clipping(self, grad_norm: torch.Tensor, max_norm: float, step: int) -> None:
        """`step` is the optimizer step the norm belongs to (1 for the first)."""
        if step <= CLIPPING_FROM_STEP:
            return
        self.judged_steps += 1
        if torch.is_tensor(grad_norm) and math.isfinite(max_norm):  # both sums stay on the device
            norm = grad_norm.detach().float()
            finite = torch.isfinite(norm)
            self.clipped = self.clipped + (finite & (norm > max_norm)).to(torch.int32)
            self.norm_sum = self.norm_sum + torch.where(finite, norm, 0.0)
            self.overflowed = self.overflowed + (~finite).to(torch.int32)

    @contextmanager
    def fetching(self, step: int):
        start = time.perf_counter()
        self.open_window(start, step)
        try:
            yield
        finally:
            self.data_wait += time.perf_counter() - start

    # -- callbacks ----------------------------------------------------------------------------
    def open_window(self, now: float, step: int) -> None:
        if self.window_start is None:
            self.window_start, self.window_first_step = now, step

    def on_step_begin(self, args, state, control, **kwargs):
        self.open_window(time.perf_counter(), state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.window_end = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, optimizer=None, model=None, **kwargs):
        if not metrics or "eval_loss" not in metrics:
            return
        verdicts = self.report(
            args,
            state,
            optimizer or self.optimizer,
            metrics["eval_loss"],
            metrics.get("eval_unigram_loss"),
            dropout_of(model.config) if model is not None and hasattr(model, "config") else None,
        )
        if "eval_minimal_pairs_accuracy" in metrics:
            verdicts.append(
                minimal_pairs_verdict(
                    metrics["eval_minimal_pairs_accuracy"], metrics.get("eval_minimal_pairs_unigram_accuracy")
                )
            )

    def report(
        self, args, state, optimizer, eval_loss: float, unigram_loss: float | None, dropout: float | None = None
    ) -> list[Verdict]:
        step, total = state.global_step, state.max_steps
        steps = step - self.window_first_step
        clipped = int(self.clipped.item()) if torch.is_tensor(self.clipped) else int(self.clipped)
        norm_sum = float(self.norm_sum.item()) if torch.is_tensor(self.norm_sum) else float(self.norm_sum)
        overflowed = int(self.overflowed.item()) if torch.is_tensor(self.overflowed) else int(self.overflowed)
        counted = self.judged_steps - overflowed
        wall = (self.window_end or 0.0) - (self.window_start or 0.0)
        if self.schedule is None or self.schedule.num_training_steps != total:
            self.schedule = ShadowSchedule(args, total)
        if steps and not self.judged_steps:
            clipping = Verdict(
                "clipping",
                "n/a",
                f"judged from step {CLIPPING_FROM_STEP + 1} on: the first steps' gradients are large in any run",
            )
        else:
            clipping = clipping_verdict(clipped, counted, args.max_grad_norm, norm_sum / max(counted, 1))
        verdicts = [
            unigram_verdict(
                eval_loss,
                unigram_loss,
                step * self.tokens_per_step,
                self.unigram_tokens,
                total * self.tokens_per_step,
                min((loss for loss, _ in self.evaluations), default=None),
            )
            if unigram_loss is not None
            else Verdict("unigram", "n/a", "no unigram bar"),
            clipping,
            data_wait_verdict(self.data_wait, wall, self.data_wait_fix, steps, total),
            learning_rate_verdict(optimizer, self.schedule, step),
        ]
        if steps == 0 and self.verdicts:  # an evaluation right after another: keep what the steps showed
            verdicts[1:3] = self.verdicts[1:3]
        if step > self.last_evaluated_step or not self.evaluations:
            losses = [
                e["loss"] for e in state.log_history if "loss" in e and self.last_evaluated_step < e["step"] <= step
            ]
            self.evaluations.append((eval_loss, sum(losses) / len(losses) if losses else None))
            self.last_evaluated_step = step
        verdicts.append(
            overfitting_verdict(self.evaluations, state.epoch, dropout, getattr(args, "weight_decay", None))
        )
        # A warning stands until its check turns ok again: the summary line says it is still on, and the
        # full text is logged once, so twenty evaluations do not bury the rest of the log under one advice.
        already_warned = {v.check for v in self.verdicts if v.verdict == "warn"}
        self.verdicts = verdicts
        self.clipped, self.norm_sum, self.overflowed, self.judged_steps = 0, 0.0, 0, 0
        self.data_wait, self.window_start, self.window_end = 0.0, None, None
        self.window_first_step = step
        if state.is_world_process_zero:
            summary = "; ".join(f"{v.check} {v.verdict}" for v in verdicts)
            logger.info("health at step %d: %s", step, summary)
            for v in verdicts:
                if v.verdict == "warn" and v.check not in already_warned:
                    logger.warning("health: %s", v.message)
        return verdicts

    def as_dicts(self) -> list[dict]:
        return [asdict(v) for v in self.verdicts]
