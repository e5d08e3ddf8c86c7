"""One run per output folder, and a way to stop it that keeps its checkpoint.

A run holds an exclusive `flock` on `OUTPUT_DIR/_scratchlm_run.lock` from before it writes anything until it
exits, and removes the file then; the kernel drops the lock when the process dies, so the file a crashed run
leaves behind holds nobody back. The file names the training process (pid, host, start, command): a second
run into the same folder is refused with that, and `scratchlm stop OUTPUT_DIR` signals that process itself.
Signalling the process rather than `accelerate launch` matters: the launcher answers SIGTERM and Ctrl-C by
passing SIGTERM on and SIGKILLing the run 5 seconds later (accelerate >= 1.16), which is too little to write
a checkpoint of any real size, while a signal to the script leaves the launcher waiting for it. Trainer's
push and the printed upload command skip `_*` names, so the lock never reaches the Hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from .errors import ScratchError

try:
    import fcntl
except ModuleNotFoundError:  # Windows, which run_cli refuses before any lock is taken
    fcntl = None

LOCK_NAME = "_scratchlm_run.lock"


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # taken a moment ago and not yet written, or written by something else


def _describe(holder: dict) -> str:
    if not holder:
        return "another run"
    return f"the run with pid {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')})"


def _try_lock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def hold_output_dir(out: Path, enabled: bool = True):
    """Holds `out` for this run (only the main process takes it: `enabled`); refuses when a live run holds it.
    A folder that this call created and that holds no file when the run ends is removed again, so a run that
    fails before writing anything leaves nothing behind."""
    if not enabled:
        yield
        return
    if out.exists() and not out.is_dir():
        raise ScratchError(f"--output_dir {out} is a file, not a folder: choose another --output_dir")
    created = not out.exists()
    path = out / LOCK_NAME
    try:  # the lock file is the write test: a probe file would show other processes a folder that is not empty
        out.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(path, "a+", encoding="utf-8")
            if not _try_lock(handle):
                handle.close()
                raise ScratchError(
                    f"--output_dir {out} is in use by {_describe(_holder(path))}: wait for it to end, stop it with "
                    f"`scratchlm stop {out}`, or choose another --output_dir"
                )
            if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
            handle.close()  # the run before removed the file between our open and our lock: take the new one
    except OSError as error:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise ScratchError(
            f"--output_dir {out} cannot be written ({error.strerror}): choose another --output_dir"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": sys.argv,
        }
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no later run can have taken this file
        handle.close()
        if created and all(p.is_dir() for p in out.rglob("*")):  # a seed-N folder that Trainer made and never filled
            shutil.rmtree(out)


def stop_run(out: Path, wait: bool = False, signum: int = signal.SIGTERM) -> dict:
    """Sends `signum` to the process training into `out`: it finishes its step, saves a checkpoint and exits.
    With `wait`, returns once that process has let go of the folder."""
    path = out / LOCK_NAME
    nothing = ScratchError(f"{out}: no run is training here now; nothing to stop")
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise nothing from None
    with handle:
        if _try_lock(handle):
            raise nothing
        holder = _holder(path)
        if not holder.get("pid"):
            raise ScratchError(f"{path} does not name the run's process; stop the training process with kill -TERM")
        if holder.get("host") != socket.gethostname():
            raise ScratchError(
                f"{out}: the run is on host {holder.get('host')} (pid {holder['pid']}); run `scratchlm stop` there"
            )
        os.kill(holder["pid"], signum)
        if wait:
            fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the run has exited
    return holder
