"""Preemption: a cluster or spot machine sends SIGTERM (or SIGINT, SIGUSR1) before it kills a job. The run
finishes the optimizer step it is in (with several processes, the first step at which they can agree
cheaply: a log, a save, an evaluation, or every 10 steps), saves a sealed checkpoint and stops; the recipe
then says how to resume and exits with status 75 (`errors.Preempted`). A Ctrl-C under `accelerate launch` reaches
the run twice, from the terminal and from the launcher, which passes it on as SIGTERM: one stop, not two.

`--save_every_minutes` saves a checkpoint whenever that long has passed since the last save, for the kills that
come without a signal or with too short a grace (`accelerate launch` itself SIGKILLs 5 s after it passes a
SIGTERM on). The main process's clock decides, and the processes agree on it where they agree on a stop."""

from __future__ import annotations

import functools
import logging
import os
import signal
import time

import torch
from accelerate import PartialState
from accelerate.utils import reduce
from transformers import TrainerCallback

from ..errors import ECHO_SECONDS, STOP_SIGNALS, take_default_action

logger = logging.getLogger("scratchlm")

AGREE_EVERY = 10


class PreemptionCallback(TrainerCallback):
    def __init__(self, save_every_minutes: float | None = None):
        self.received: str | None = None  # the signal's name, once one came
        self._first_signal: tuple[str, float] | None = None  # this process's own, with when it came
        self.stopped_at: int | None = None
        self.save_every_seconds = save_every_minutes * 60 if save_every_minutes else None
        self._last_save = time.monotonic()
        self._previous: dict = {}

    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self._first_signal is None:
            self._first_signal = (name, now)
            self.received = name
            logger.warning(
                "%s received: finishing this step, then saving a checkpoint and stopping (send it again to stop at "
                "once)",
                name,
            )
            return
        first, first_at = self._first_signal
        if name != first and now - first_at < ECHO_SECONDS:
            # Ctrl-C reaches the launcher too, which passes it on as SIGTERM a moment later: the same request,
            # not a second one (taken as one, it would throw away the checkpoint the first asked for).
            logger.info("%s %.1f s after %s: the same stop, passed on by a launcher", name, now - first_at, first)
            return
        # A second request gets the signal's own action at once (the checkpoint being written then lacks its
        # manifest, so it never counts as complete).
        self.restore_signal_handlers()
        take_default_action(signum)

    def restore_signal_handlers(self) -> None:
        """Put back the handlers the run found, also after an error (`RunCallbacks.after_training`): a handler
        left behind outlives the run, and a worker forked later (a tokenizing pool) ignores the SIGTERM that
        should end it."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
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


def leave_stops_to_the_main_process(dataloader):
    """Makes the loader's worker processes leave a stop to the training process, which finishes its step and
    saves: they ignore SIGINT and SIGUSR1, and end quietly (status 0) on SIGTERM, as torch's workers do when
    their own parent sends it. A terminal's Ctrl-C reaches every process of its group, and `accelerate launch`
    passes the signal on as SIGTERM to every descendant of the run, its loader workers too; a worker killed
    by a signal makes torch raise in the middle of that last step, and the checkpoint is lost."""
    loader = getattr(dataloader, "base_dataloader", dataloader)  # accelerate's wrapper starts the workers of this
    init = loader.worker_init_fn
    if not (isinstance(init, functools.partial) and init.func is _init_loader_worker):  # Trainer reuses a loader
        loader.worker_init_fn = functools.partial(_init_loader_worker, init)
    return dataloader


def _init_loader_worker(then, worker_id: int) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _end_worker if signum == signal.SIGTERM else signal.SIG_IGN)
    if then is not None:
        then(worker_id)


def _end_worker(signum, frame):
    os._exit(0)
