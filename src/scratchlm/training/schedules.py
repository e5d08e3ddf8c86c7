"""Learning-rate schedules: built in one place, for the run and for the health check's shadow copy.

transformers' own schedules come from `get_scheduler`, as Trainer builds them; `one_cycle` is torch's
OneCycleLR. The health check asks a shadow scheduler, built by the same function on a one-parameter
optimizer at rate 1, which multiple of the peak the schedule gives at a step, instead of re-deriving it.
"""

from __future__ import annotations

import warnings

import torch
from transformers import get_scheduler

ONE_CYCLE_DIV = 25.0  # start at peak / 25 (fast.ai's and torch's default)
ONE_CYCLE_FINAL_DIV = 1e4  # end at start / 10^4


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
