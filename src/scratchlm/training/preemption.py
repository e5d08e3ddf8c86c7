"""Preemption: a cluster or spot machine sends SIGTERM (or SIGINT, SIGUSR1) before it kills a job. The run
finishes the optimizer step it is in (with several processes, the first step at which they can agree
cheaply: a log, a save, an evaluation, or every 10 steps), saves a sealed checkpoint and stops; the recipe
then says how to resume and exits with status 75 (`errors.Preempted`).

`--save_every_minutes` saves a checkpoint whenever that long has passed since the last save, for the kills that
come without a signal or with too short a grace (`accelerate launch` itself SIGKILLs 5 s after it passes a
SIGTERM on). The main process's clock decides, and the processes agree on it where they agree on a stop."""

from __future__ import annotations

import logging
import signal
import time

import torch
from accelerate import PartialState
from accelerate.utils import reduce
from transformers import TrainerCallback

logger = logging.getLogger("scratchlm")

# Windows has no SIGUSR1; run_cli refuses Windows, but the module must import there for that line to be said
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))
AGREE_EVERY = 10


class PreemptionCallback(TrainerCallback):
    def __init__(self, save_every_minutes: float | None = None):
        self.received: str | None = None  # the signal's name, once one came
        self.stopped_at: int | None = None
        self.save_every_seconds = save_every_minutes * 60 if save_every_minutes else None
        self._last_save = time.monotonic()
        self._previous: dict = {}

    def _on_signal(self, signum, frame):
        self.received = signal.Signals(signum).name
        # A second signal gets the default action at once (the checkpoint being written then lacks its
        # manifest, so it never counts as complete).
        self.restore_signal_handlers()
        logger.warning(
            "%s received: finishing this step, then saving a checkpoint and stopping (send it again to stop at once)",
            self.received,
        )

    def restore_signal_handlers(self) -> None:
        """Put back the handlers the run found, also after an error (`RunCallbacks.after_training`): a handler
        left behind outlives the run, and a worker forked later (a tokenizing pool) ignores the SIGTERM that
        should end it."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}
        self._last_save = time.monotonic()

    def on_save(self, args, state, control, **kwargs):
        self._last_save = time.monotonic()

    def _save_due(self, processes: PartialState) -> bool:
        return (
            self.save_every_seconds is not None
            and processes.is_main_process
            and time.monotonic() - self._last_save >= self.save_every_seconds
        )

    def on_step_end(self, args, state, control, **kwargs):
        stop = self.received is not None
        processes = PartialState()
        due = self._save_due(processes)
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
            flags = reduce(torch.tensor([float(stop), float(due)], device=processes.device), reduction="sum").tolist()
            stop, due = flags[0] > 0, flags[1] > 0
            if stop and self.received is None:
                self.received = "a signal to another process"
        if due and not control.should_save:
            logger.info(
                "%g minutes since the last checkpoint: saving one (--save_every_minutes)", self.save_every_seconds / 60
            )
            control.should_save = True
        if stop and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore_signal_handlers()
