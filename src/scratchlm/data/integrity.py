"""Is a folder of data still what was written? Sizes and hashes recorded when it was built, checked
cheaply (sizes plus a hash of sampled pages) every time it is read, or fully on request; and a lock so
that two processes never build the same folder at once."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from ..hashing import file_digest, sampled_digest

try:
    import fcntl
except ModuleNotFoundError:  # Windows, which run_cli refuses before any lock is taken
    fcntl = None

logger = logging.getLogger(__name__)


def record(directory: Path) -> dict[str, dict]:
    """Size, sampled hash and full hash of every file under `directory`, by relative path."""
    return {
        str(p.relative_to(directory)): {
            "bytes": p.stat().st_size,
            "sampled": sampled_digest(p),
            "sha256": file_digest(p),
        }
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def problem(directory: Path, recorded: dict[str, dict], full: bool = False) -> str | None:
    """What changed in `directory` since `recorded` was taken, or None. `full` hashes every byte."""
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} is {path.stat().st_size} bytes, not the {expected['bytes']} it was written with"
        if sampled_digest(path) != expected["sampled"] or (full and file_digest(path) != expected["sha256"]):
            return f"{name} has changed since it was written (its hash differs)"
    return None


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (waiting for another process that holds it, and saying so)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another process is building %s: waiting for it", what)
            start = time.perf_counter()
            fcntl.flock(handle, fcntl.LOCK_EX)
            logger.info("waited %.0f s for the other process", time.perf_counter() - start)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
