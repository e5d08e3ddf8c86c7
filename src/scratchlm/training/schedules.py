"""Learning-rate schedules: built in one place, for the run and for the health check's shadow copy.

transformers' own schedules come from `get_scheduler`, as Trainer builds them; `one_cycle` is torch's
OneCycleLR. The health check asks a shadow scheduler, built by the same function on a one-parameter
optimizer at rate 1, which multiple of the peak the schedule gives at a step, instead of re-deriving it.
"""

from __future__ import annotations

import logging
import warnings

import torch
from transformers import get_scheduler

from ..arguments import WSD_DECAY_FRACTION

logger = logging.getLogger("scratchlm")

ONE_CYCLE_DIV = 25.0  # start at peak / 25 (fast.ai's and torch's default)
ONE_CYCLE_FINAL_DIV = 1e4  # end at start / 10^4
# Warmup-stable-decay's decay over the last 60% of the steps against the default 20%, both demo configs on
# their full length (recipes/pretrain_gpt2_zh/README.md): 0.11 to 0.15 bits/char lower on a corpus seen 1.1
# to 1.7 times, 0.005 to 0.017 lower at 1.5 and 3 epochs, a tie at 6.0, and 0.024 to 0.13 higher at 8.9 and
# 13.1 epochs, where the long low-rate tail memorises the text.
LONG_DECAY_FRACTION = 0.6
EPOCHS_FOR_A_SHORT_DECAY = 6.0


def resolve_decay_length(args, steps: int, epochs: float | None) -> None:
    """Sets a warmup-stable-decay run's num_decay_steps in steps where the settings left it to the run's
    length: "auto" (the long decay up to EPOCHS_FOR_A_SHORT_DECAY epochs, the default's beyond; a stream,
    which has no epochs, takes the long one), or a fraction of a run counted in epochs."""
    options = args.lr_scheduler_kwargs or {}
    length = options.get("num_decay_steps")
    if args.lr_scheduler_type != "warmup_stable_decay" or not (length == "auto" or 0 < length < 1):
        return
    fraction = length
    if length == "auto":
        few_epochs = epochs is None or epochs <= EPOCHS_FOR_A_SHORT_DECAY
        fraction = LONG_DECAY_FRACTION if few_epochs else WSD_DECAY_FRACTION
        if args.should_log:
            seen = (
                "streams its corpus, which has no epochs" if epochs is None else f"sees its corpus {epochs:.1f} times"
            )
            logger.info(
                "warmup-stable-decay (num_decay_steps auto): decaying over the last %.0f%% of the steps, as the run "
                "%s (%.0f%% up to %g epochs, %.0f%% above)",
                100 * fraction,
                seen,
                100 * LONG_DECAY_FRACTION,
                EPOCHS_FOR_A_SHORT_DECAY,
                100 * WSD_DECAY_FRACTION,
            )
    args.lr_scheduler_kwargs = {**options, "num_decay_steps": max(1, round(fraction * steps))}


def build_scheduler(args, optimizer, num_training_steps: int):
    """The scheduler `args.lr_scheduler_type` names, for `num_training_steps` optimizer steps."""
    warmup = args.get_warmup_steps(num_training_steps)
    if args.lr_scheduler_type == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=num_training_steps,
            pct_start=min(max(1, warmup) / num_training_steps, 0.99),
            anneal_strategy="cos",
            cycle_momentum=False,
            div_factor=ONE_CYCLE_DIV,
            final_div_factor=ONE_CYCLE_FINAL_DIV,
        )
    return get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=warmup,
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )


def peak_rate(group: dict) -> float | None:
    """The peak rate a parameter group's schedule scales: OneCycleLR records it as max_lr, the others as initial_lr."""
    return group.get("max_lr", group.get("initial_lr"))


class ShadowSchedule:
    """The run's schedule on a one-parameter optimizer at peak rate 1: its rate at a step is the multiple of the
    peak that the run's parameter groups should have then."""

    def __init__(self, args, num_training_steps: int):
        self.num_training_steps = num_training_steps
        self.name = args.lr_scheduler_type
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        try:
            self.scheduler = build_scheduler(args, optimizer, num_training_steps)
        except (ValueError, TypeError):
            self.scheduler = None
        if not hasattr(self.scheduler, "get_lr"):  # e.g. reduce_lr_on_plateau: its rate depends on the metrics
            self.scheduler = None

    def factor(self, step: int) -> float | None:
        """The multiple of the peak after `step` scheduler steps; None for a schedule that has no rate by step."""
        if self.scheduler is None or step > self.num_training_steps:
            return None
        self.scheduler.last_epoch = step
        with warnings.catch_warnings():  # get_lr outside step() warns; here it is the closed form we want
            warnings.simplefilter("ignore")
            return float(self.scheduler.get_lr()[0]) / (peak_rate(self.scheduler.optimizer.param_groups[0]) or 1.0)
