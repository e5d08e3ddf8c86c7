"""File hashes, for sealed checkpoints and for data folders that must still be what was written."""

from __future__ import annotations

import hashlib
from pathlib import Path

PAGE = 4096
SAMPLED_PAGES = 64  # per file, evenly spread, the first and last included


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()  # hashlib.file_digest would do this from Python 3.11 on; 3.10 is supported
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def sampled_digest(path: Path) -> str:
    """A hash of `SAMPLED_PAGES` pages spread over the file: reads at most 256 KB, whatever its size."""
    size = path.stat().st_size
    pages = max(1, -(-size // PAGE))
    count = min(SAMPLED_PAGES, pages)
    picks = sorted({round(i * (pages - 1) / max(count - 1, 1)) for i in range(count)})
    hasher = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for page in picks:
            handle.seek(page * PAGE)
            hasher.update(handle.read(PAGE))
    return hasher.hexdigest()
