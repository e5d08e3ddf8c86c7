"""Is the run healthy? Four checks that are cheap while it runs, reported at every evaluation and in the card.

- unigram: the held-out loss against the unigram bar, once the run has seen enough tokens to have learned
  token frequencies (a model that has not by then has a bug or a bad learning rate);
- clipping: the share of optimizer steps whose gradient norm was above `max_grad_norm`, and their mean
  norm (summed on the device, read at the report): a warning when nearly every step is cut hard;
- data wait: the share of training wall time spent fetching batches (Trainer's `get_batch_samples`);
- learning rate: the rate each parameter group was given against the schedule's closed form.

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

logger = logging.getLogger("scratchlm")

UNIGRAM_MARGIN = 0.1  # nats/token the held-out loss must be below the unigram bar
CLIPPING_WARN_SHARE = 0.9
# Clipping on nearly every step is a problem when it scales the updates down hard. Norms just above the
# limit are common late in a healthy run (the demo's grow to 1.1-1.2 as its learning rate decays).
CLIPPING_WARN_FACTOR = 2.0
DATA_WAIT_WARN_SHARE = 0.10
LR_TOLERANCE = 1e-3  # relative


@dataclass
class Verdict:
    check: str
    verdict: str  # ok, warn or n/a
    message: str
    value: float | None = None


def unigram_verdict(eval_loss: float, unigram_loss: float, tokens_seen: int, tokens_needed: int) -> Verdict:
    margin = unigram_loss - eval_loss
    if margin >= UNIGRAM_MARGIN:
        return Verdict("unigram", "ok", f"held-out loss {margin:.2f} nats below the unigram bar", margin)
    if tokens_seen < tokens_needed:
        return Verdict(
            "unigram",
            "n/a",
            f"held-out loss {-margin:+.2f} nats from the unigram bar; judged after {tokens_needed:,} tokens",
            margin,
        )
    return Verdict(
        "unigram",
        "warn",
        f"after {tokens_seen:,} tokens the held-out loss {eval_loss:.3f} is not {UNIGRAM_MARGIN} nats below the "
        f"unigram bar {unigram_loss:.3f}: a model that has not learned token frequencies by now has a bug or a bad "
        "learning rate (try `scratchlm find-lr`)",
        margin,
    )


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


def data_wait_verdict(wait_seconds: float, wall_seconds: float) -> Verdict:
    if wall_seconds <= 0:
        return Verdict("data_wait", "n/a", "no training time since the last report")
    share = wait_seconds / wall_seconds
    line = f"{share:.1%} of training time waiting for data"
    if share > DATA_WAIT_WARN_SHARE:
        return Verdict(
            "data_wait",
            "warn",
            line + ": give the loader --dataloader_num_workers 2-8 (and --dataloader_prefetch_factor), or "
            "`scratchlm prepare` the data once so that training only reads blocks",
            share,
        )
    return Verdict("data_wait", "ok", line, share)


def schedule_factor(kind: str, step: int, total: int, warmup: int, options: dict) -> float | None:
    """The multiple of the peak learning rate after `step` scheduler steps, in closed form; None when unknown."""
    if kind == "one_cycle":
        return one_cycle_factor(step, total, warmup)
    if kind == "warmup_stable_decay":
        return warmup_stable_decay_factor(step, total, warmup, options)
    if step < warmup:
        return step / max(1, warmup) if kind != "constant" else 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "constant" or kind == "constant_with_warmup":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if kind == "cosine":
        return max(0.0, 0.5 * (1 + math.cos(math.pi * 2 * options.get("num_cycles", 0.5) * progress)))
    if kind == "cosine_with_min_lr" and "min_lr_rate" in options:
        floor = options["min_lr_rate"]
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 2 * options.get("num_cycles", 0.5) * progress))
    return None


def warmup_stable_decay_factor(step: int, total: int, warmup: int, options: dict) -> float | None:
    """transformers' warmup-stable-decay: up, flat at the peak, then down over num_decay_steps to min_lr_ratio."""
    decay, floor = options.get("num_decay_steps"), options.get("min_lr_ratio", 0.0)
    if decay is None or options.get("warmup_type", "linear") != "linear":
        return None
    if step < warmup:
        return step / max(1, warmup) * (1 - floor) + floor
    stable = total - warmup - decay
    if step < warmup + stable:
        return 1.0
    if step >= warmup + stable + decay:
        return floor
    progress = (step - warmup - stable) / max(1, decay)
    shapes = {
        "linear": 1 - progress,
        "cosine": 0.5 * (1 + math.cos(math.pi * 2 * options.get("num_cycles", 0.5) * progress)),
        "1-sqrt": 1 - math.sqrt(progress),
    }
    shape = shapes.get(options.get("decay_type", "cosine"))
    return None if shape is None else max(0.0, shape * (1 - floor) + floor)


ONE_CYCLE_DIV = 25.0  # start at peak / 25 (fast.ai's and torch's default)
ONE_CYCLE_FINAL_DIV = 1e4  # end at start / 10^4


def one_cycle_factor(step: int, total: int, warmup: int) -> float:
    """torch's OneCycleLR (cosine, two phases) as a multiple of the peak: up for `warmup` steps, then down."""
    start, end = 1 / ONE_CYCLE_DIV, 1 / ONE_CYCLE_DIV / ONE_CYCLE_FINAL_DIV
    rise = max(1, warmup) - 1
    if step <= rise:
        a, b, pct = start, 1.0, step / max(1, rise)
    else:
        a, b, pct = 1.0, end, (step - rise) / max(1, total - 1 - rise)
    return b + (a - b) * (math.cos(math.pi * pct) + 1) / 2


def learning_rate_verdict(optimizer, kind: str, step: int, total: int, warmup: int, options: dict) -> Verdict:
    factor = schedule_factor(kind, step, total, warmup, options)
    if factor is None or optimizer is None:
        return Verdict("learning_rate", "n/a", f"no closed form for the {kind} schedule here")
    worst = None
    for index, group in enumerate(optimizer.param_groups):
        peak = group.get("max_lr") if kind == "one_cycle" else group.get("initial_lr")
        if peak is None:
            continue
        expected, applied = peak * factor, group["lr"]
        error = abs(applied - expected) / max(abs(expected), 1e-12)
        if worst is None or error > worst[0]:
            worst = (error, index, applied, expected)
    if worst is None:
        return Verdict("learning_rate", "n/a", "the optimizer does not record its peak learning rate")
    error, index, applied, expected = worst
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


class HealthMonitor(TrainerCallback):
    """Collects the counts between evaluations and reports the four verdicts at each one."""

    def __init__(self, trainer, tokens_per_step: int, unigram_tokens: int):
        self.trainer = trainer
        self.tokens_per_step = tokens_per_step
        # Judged after this many tokens, or at the end of a shorter run: small models (BERT's above all) can sit
        # on the unigram bar for a while before they pass it (the BERT demo's held-out loss at half its run).
        self.unigram_tokens = unigram_tokens
        self.clipped: torch.Tensor | int = 0
        self.norm_sum: torch.Tensor | float = 0.0
        self.data_wait = 0.0
        self.window_start: float | None = None
        self.window_end: float | None = None
        self.window_first_step = 0
        self.verdicts: list[Verdict] = []

    # -- counting, called by PretrainingTrainer ------------------------------------------------
    def count_clipping(self, grad_norm: torch.Tensor, max_norm: float) -> None:
        if torch.is_tensor(grad_norm) and math.isfinite(max_norm):  # both sums stay on the device
            self.clipped = self.clipped + (grad_norm.detach() > max_norm).to(torch.int32)
            self.norm_sum = self.norm_sum + grad_norm.detach().float()

    @contextmanager
    def fetching(self):
        start = time.perf_counter()
        self.open_window(start)
        try:
            yield
        finally:
            self.data_wait += time.perf_counter() - start

    # -- callbacks ----------------------------------------------------------------------------
    def open_window(self, now: float) -> None:
        if self.window_start is None:
            self.window_start, self.window_first_step = now, self.trainer.state.global_step

    def on_step_begin(self, args, state, control, **kwargs):
        self.open_window(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.window_end = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_loss" not in metrics:
            return
        self.report(state.global_step, metrics["eval_loss"], metrics.get("eval_unigram_loss"))

    def report(self, step: int, eval_loss: float, unigram_loss: float | None) -> list[Verdict]:
        args = self.trainer.args
        steps = step - self.window_first_step
        clipped = int(self.clipped.item()) if torch.is_tensor(self.clipped) else int(self.clipped)
        norm_sum = float(self.norm_sum.item()) if torch.is_tensor(self.norm_sum) else float(self.norm_sum)
        wall = (self.window_end or 0.0) - (self.window_start or 0.0)
        total = self.trainer.state.max_steps
        scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        verdicts = [
            unigram_verdict(
                eval_loss,
                unigram_loss,
                step * self.tokens_per_step,
                min(self.unigram_tokens, total * self.tokens_per_step),
            )
            if unigram_loss is not None
            else Verdict("unigram", "n/a", "no unigram bar"),
            clipping_verdict(clipped, steps, args.max_grad_norm, norm_sum / max(steps, 1)),
            data_wait_verdict(self.data_wait, wall),
            learning_rate_verdict(
                self.trainer.optimizer,
                scheduler,
                step,
                total,
                args.get_warmup_steps(total),
                dict(args.lr_scheduler_kwargs or {}),
            ),
        ]
        if steps == 0 and self.verdicts:  # an evaluation right after another: keep what the steps showed
            verdicts[1:3] = self.verdicts[1:3]
        self.verdicts = verdicts
        self.clipped, self.norm_sum, self.data_wait, self.window_start, self.window_end = 0, 0.0, 0.0, None, None
        self.window_first_step = step
        if self.trainer.is_world_process_zero():
            summary = "; ".join(f"{v.check} {v.verdict}" for v in verdicts)
            logger.info("health at step %d: %s", step, summary)
            for v in verdicts:
                if v.verdict == "warn":
                    logger.warning("health: %s", v.message)
        return verdicts

    def as_dicts(self) -> list[dict]:
        return [asdict(v) for v in self.verdicts]
