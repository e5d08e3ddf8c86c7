"""One clear line for bad input or a stop, a traceback only when asked for; the signals that stop a command."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

# Windows has no SIGUSR1; run_cli refuses Windows, but the modules must import there for that line to be said
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))
# A launcher passes a Ctrl-C on to the run as SIGTERM within milliseconds; a person's second request comes later
# or as the same signal. Long enough for a handler that waits for a long CPU operation to end.
ECHO_SECONDS = 3.0
DEFAULT_HANDLERS = {
    signum: signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL for signum in STOP_SIGNALS
}

TRACEBACK_FLAG = "--traceback"
DEBUG_FLAG = "--debug"  # alone it means --traceback; with a value it is TrainingArguments' own --debug option


WINDOWS = (
    "scratchlm's runs and tools need Linux or macOS: they guard output folders and caches with POSIX file "
    "locks and stop runs with POSIX signals, which Windows lacks. On Windows, run them inside WSL2 "
    "(`wsl --install`, then the README's commands in its Linux shell); the models they train load on Windows "
    "with transformers alone"
)


class ScratchError(Exception):
    """A problem with the user's input or environment, with the fix in its message."""

    exit_code = 2


def writable_folder(path: Path | str, argument: str, fix: str | None = None) -> Path:
    """`path` as a folder that exists and takes files, or one line naming `argument` (what the user typed)."""
    path = Path(path)
    fix = fix or f"choose another {argument}"
    if path.exists() and not path.is_dir():
        raise ScratchError(f"{argument} {path} is a file, not a folder: {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".scratchlm-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ScratchError(f"{argument} {path} cannot be written ({error.strerror}): {fix}") from None
    return path


def quiet_progress_bars_off_a_terminal() -> bool:
    """Progress bars redrawn with carriage returns flood output that goes to a file or a pipe: off there
    (datasets' and transformers', e.g. "Writing model shards" on every save). Returns whether they were."""
    if sys.stderr.isatty():
        return False
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    return True


class Preempted(ScratchError):
    """The run was asked to stop (SIGTERM, SIGINT, SIGUSR1) and saved a checkpoint to resume from."""

    exit_code = 75  # EX_TEMPFAIL: a temporary failure, to be tried again


def run_cli(entry: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
    """Run `entry(argv)`; a ScratchError becomes `error: ...` on stderr and exit status 2.

    `--traceback` or a bare `--debug` (or SCRATCHLM_TRACEBACK=1) re-raises instead, for debugging.
    """
    if sys.platform == "win32":
        say(f"error: {WINDOWS}")
        sys.exit(2)
    argv = list(sys.argv[1:] if argv is None else argv)
    bare_debug = [
        i for i, a in enumerate(argv) if a == DEBUG_FLAG and (i + 1 == len(argv) or argv[i + 1].startswith("--"))
    ]
    show_traceback = TRACEBACK_FLAG in argv or bool(bare_debug) or os.environ.get("SCRATCHLM_TRACEBACK") == "1"
    argv = [a for i, a in enumerate(argv) if a != TRACEBACK_FLAG and i not in bare_debug]
    code = 0
    try:
        with stops_as_an_interrupt():
            entry(argv)
    except Exception as err:
        # A Ctrl-C inside a library's worker pool can surface as that library's own error (datasets: a
        # TimeoutError while it cleans up its pool), with the KeyboardInterrupt only in the context.
        if show_traceback or not (isinstance(err, ScratchError) or raised_by_a_stop(err)):
            raise
        if isinstance(err, ScratchError):
            say(f"{'stopped' if isinstance(err, Preempted) else 'error'}: {err}")
            code = err.exit_code
        else:
            code = say_interrupted()
    except KeyboardInterrupt:
        if show_traceback:
            raise
        code = say_interrupted()
    _close_process_group()
    if code:
        sys.exit(code)


def raised_by_a_stop(err: BaseException) -> bool:
    """Whether `err` is a stop (Ctrl-C, or a signal taken as one), or an error raised while one was handled."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def say(line: str) -> None:
    """One line on stderr in one write: the processes of a multi-process run share the stream, which Python
    leaves unbuffered, and print() writes the line and its newline separately, so two ranks' lines merged."""
    sys.stderr.write(line + "\n")


def what_stopped() -> str:
    """The stop under way, in words: "interrupted (Ctrl-C)" or "SIGTERM received"."""
    name = _first_stop.get("name", "SIGINT")
    return "interrupted (Ctrl-C)" if name == "SIGINT" else f"{name} received"


def say_interrupted() -> int:
    say(
        f"stopped: {what_stopped()}; nothing finished was overwritten, and whatever was half-written is never taken "
        "for complete"
    )
    return 128 + signal.Signals[_first_stop.get("name", "SIGINT")]


# -- stops outside training ------------------------------------------------------------------------------
# While a recipe trains, PreemptionCallback takes these signals and saves a checkpoint. Before that (training a
# tokenizer, tokenizing) and in the other commands, a SIGTERM (`scratchlm stop`, a scheduler) or SIGUSR1 would
# kill the process without a word, and under `accelerate launch` so would a Ctrl-C, which the launcher passes on
# as SIGTERM at once. Each ends the command as a Ctrl-C does, with one `stopped:` line and nothing half-written
# taken for complete; the launcher's copy of a Ctrl-C is the same stop.
_first_stop: dict = {}  # the first signal's name and when it came


def _stop_as_an_interrupt(signum, frame):
    name, now = signal.Signals(signum).name, time.monotonic()
    if not _first_stop:
        _first_stop.update(name=name, at=now)
        raise KeyboardInterrupt
    if name != _first_stop["name"] and now - _first_stop["at"] < ECHO_SECONDS:
        return  # a launcher passing the first one on: the stop is already under way
    take_default_action(signum)  # a second request


def take_default_action(signum: int) -> None:
    """The signal's own action, at once: a SIGINT raises KeyboardInterrupt, a SIGTERM or SIGUSR1 ends the process."""
    signal.signal(signum, DEFAULT_HANDLERS[signum])
    signal.raise_signal(signum)


@contextlib.contextmanager
def stops_as_an_interrupt():
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    _first_stop.clear()
    previous = {signum: signal.signal(signum, _stop_as_an_interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_masks_before_fork: dict[int, set] = {}  # the forking thread's signal mask, by thread


def _hold_stops_across_the_fork() -> None:
    _masks_before_fork[threading.get_ident()] = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _release_stops_held_across_the_fork() -> None:
    mask = _masks_before_fork.pop(threading.get_ident(), None)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _forked_child_takes_signals_by_default() -> None:
    """A forked worker (a tokenizing pool, a loader) must die of the SIGTERM that its pool or a launcher sends it;
    with this handler it would raise in whatever it was doing instead, and its pool could wait for it forever.

    The stop signals are held from just before the fork until the child has its default handlers: one that came
    in between met the inherited handler, whose exception the fork's own clean-up swallows, and the child lived
    on (47 of 50 children SIGTERMed right after their fork). Then a pool's terminate() could miss a worker that
    the pool had just started in place of one the launcher killed, and wait for it forever."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is _stop_as_an_interrupt:
            signal.signal(signum, DEFAULT_HANDLERS[signum])
    _release_stops_held_across_the_fork()  # a stop that came meanwhile is taken now, by the default action


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_hold_stops_across_the_fork,
        after_in_parent=_release_stops_held_across_the_fork,
        after_in_child=_forked_child_takes_signals_by_default,
    )


def leave_interrupts_to_the_main_process() -> None:
    """Called in tokenizing workers: a Ctrl-C reaches every process of the terminal's group, and the main process
    stops the workers and prints the one `stopped:` line, so a worker ignores it instead of printing a traceback.

    A SIGTERM still ends a worker at once (its pool's terminate() sends one, and `accelerate launch` passes a
    Ctrl-C on to every process of the run as one), but one waiting for its next task leaves by unwinding: killed
    there, it kept its pool's task-queue lock forever, and the main process's clean-up of the pool then waited
    for that lock until the launcher's SIGKILL, so the run ended without its line.

    A worker is a process that multiprocessing (or datasets' `multiprocess`) started, by fork, spawn (macOS's
    default) or a forkserver (Linux's from Python 3.14): it records the parent, where a process id inherited
    through fork would tell only forked workers apart."""
    import multiprocessing

    starters = [multiprocessing, sys.modules.get("multiprocess")]  # datasets starts its workers with multiprocess
    if any(starter is not None and starter.parent_process() is not None for starter in starters):
        importlib.import_module(".internals", __package__)  # now, not in the handler while a stop is under way
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _leave_the_pool)


def _leave_the_pool(signum, frame):
    from .internals import waiting_for_a_pool_task

    if waiting_for_a_pool_task(frame):
        raise SystemExit(128 + signum)  # unwinding out of the queue's get() releases its lock
    # Elsewhere an exception could be swallowed (a generator's clean-up, a __del__) and leave the worker running
    take_default_action(signum)


@contextlib.contextmanager
def workers_start_deaf_to_ctrl_c():
    """Processes started inside begin with Ctrl-C ignored, which fork and exec both pass on: a spawned worker
    imports for seconds before its initializer can leave Ctrl-C to the main process, and a Ctrl-C in those
    seconds would print a traceback from every worker (`scratchlm prepare`'s pool). This process ignores Ctrl-C
    too while inside, so keep it to the starting (16 ms for 2 spawned workers, 47 ms for 8)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def _close_process_group() -> None:
    """Close a multi-process run's process group while the interpreter is whole.

    destroy_process_group() alone leaves the gloo threads running: the trainer, its DDP wrapper and the
    accelerator hold the group in reference cycles, so it was destroyed in whatever order interpreter
    teardown took, and about one two-process CPU run in 20 to 50 aborted there on rank 1 with
    'terminate called without an active exception'. Collecting the cycles first frees the group's users,
    and then the group itself, with its threads joined.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()
