"""Preemption: a cluster or spot machine sends SIGTERM (or SIGINT, SIGUSR1) before it kills a job. The run
finishes the optimizer step it is in (with several processes, the first step at which they can agree
cheaply: a log, a save, an evaluation, or every 10 steps), saves a sealed checkpoint and stops; the recipe
then says how to resume and exits with status 75 (`errors.Preempted`)."""

from __future__ import annotations

import logging
import signal

import torch
from accelerate import PartialState
from accelerate.utils import reduce
from transformers import TrainerCallback

logger = logging.getLogger("scratchlm")

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
AGREE_EVERY = 10


class PreemptionCallback(TrainerCallback):
    def __init__(self):
        self.received: str | None = None  # the signal's name, once one came
        self.stopped_at: int | None = None
        self._previous: dict = {}

    def _on_signal(self, signum, frame):
        self.received = signal.Signals(signum).name
        # A second signal gets the default action at once (the checkpoint being written then lacks its
        # manifest, so it never counts as complete).
        self._restore()
        logger.warning(
            "%s received: finishing this step, then saving a checkpoint and stopping (send it again to stop at once)",
            self.received,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.received is not None
        processes = PartialState()
        if processes.num_processes > 1:  # every process stops at the same step, or the others hang
            # Agreeing costs a collective and a host sync: do it where Trainer syncs anyway (a log, a save, an
            # evaluation, the end), and at least every AGREE_EVERY steps.
            if not (
                control.should_log
                or control.should_save
                or control.should_evaluate
                or control.should_training_stop
                or state.global_step % AGREE_EVERY == 0
            ):
                return
            flag = torch.tensor(float(stop), device=processes.device)
            stop = reduce(flag, reduction="sum").item() > 0
            if stop and self.received is None:
                self.received = "a signal to another process"
        if stop and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()
