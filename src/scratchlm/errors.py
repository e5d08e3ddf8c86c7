"""One clear line for bad input, a traceback only when asked for."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)

TRACEBACK_FLAG = "--traceback"
DEBUG_FLAG = "--debug"  # alone it means --traceback; with a value it is TrainingArguments' own --debug option


class ScratchError(Exception):
    """A problem with the user's input or environment, with the fix in its message."""

    exit_code = 2


class Preempted(ScratchError):
    """The run was asked to stop (SIGTERM, SIGINT, SIGUSR1) and saved a checkpoint to resume from."""

    exit_code = 75  # EX_TEMPFAIL: a temporary failure, to be tried again


def run_cli(entry: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
    """Run `entry(argv)`; a ScratchError becomes `error: ...` on stderr and exit status 2.

    `--traceback` or a bare `--debug` (or SCRATCHLM_TRACEBACK=1) re-raises instead, for debugging.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    bare_debug = [
        i for i, a in enumerate(argv) if a == DEBUG_FLAG and (i + 1 == len(argv) or argv[i + 1].startswith("--"))
    ]
    show_traceback = TRACEBACK_FLAG in argv or bool(bare_debug) or os.environ.get("SCRATCHLM_TRACEBACK") == "1"
    argv = [a for i, a in enumerate(argv) if a != TRACEBACK_FLAG and i not in bare_debug]
    code = 0
    try:
        entry(argv)
    except KeyboardInterrupt:
        if show_traceback:
            raise
        print(
            "stopped: interrupted (Ctrl-C); nothing finished was overwritten, and whatever was half-written is "
            "never taken for complete",
            file=sys.stderr,
        )
        code = 130
    except ScratchError as err:
        if show_traceback:
            raise
        print(f"{'stopped' if isinstance(err, Preempted) else 'error'}: {err}", file=sys.stderr)
        code = err.exit_code
    _close_process_group()
    if code:
        sys.exit(code)


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
