"""What produced a run: git state, package versions, device, seed, corpus and tokenizer hashes and the resolved
config, written as `run_manifest.json` last into every checkpoint and the final model (its presence, with the
sizes and hashes it lists, marks a checkpoint complete; `checkpoints.py` verifies it)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from .errors import ScratchError
from .hashing import file_digest
from .tokenizer import make_portable

MANIFEST_FILE = "run_manifest.json"


def git_state(start: Path) -> dict | None:
    """The commit and dirtiness of the git checkout holding `start`, or None outside a checkout."""

    def git(*args):
        return subprocess.run(["git", "-C", str(start), *args], capture_output=True, text=True, timeout=30)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return None
        status = git("status", "--porcelain")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()), "path": str(start)}


def code_dirs() -> list[Path]:
    """Where the code that runs lives: the launched script's folder, then the package's."""
    dirs = [Path(__file__).resolve().parent]
    if sys.argv and sys.argv[0] and Path(sys.argv[0]).is_file():
        dirs.insert(0, Path(sys.argv[0]).resolve().parent)
    return dirs


def code_git_state() -> dict | None:
    return next((state for state in map(git_state, code_dirs()) if state is not None), None)


def require_clean_git() -> None:
    state = code_git_state()
    if state is None:
        raise ScratchError(
            "--require_clean_git true: the code does not run from a git checkout, so its version "
            "cannot be pinned; run from a checkout or drop the flag"
        )
    if state["dirty"]:
        raise ScratchError(
            f"--require_clean_git true: the checkout at {state['path']} has uncommitted changes "
            f"(`git status`); commit or stash them, or drop the flag"
        )


def package_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import tokenizers
    import transformers

    from . import __version__

    return {
        "python": platform.python_version(),
        "scratchlm": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "tokenizers": tokenizers.__version__,
        "accelerate": accelerate.__version__,
    }


def device_description() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu ({os.cpu_count()} cores)"


def run_manifest(
    config: dict, corpus_description: str, corpus_fingerprint: str, tokenizer_fingerprint: str, world_size: int
) -> dict:
    """Everything needed to tell what produced a checkpoint, and to reproduce it."""
    return {
        "git": code_git_state(),
        "versions": package_versions(),
        "device": device_description(),
        "world_size": world_size,
        "seed": config.get("seed"),
        "corpus": corpus_description,
        "corpus_fingerprint": corpus_fingerprint,
        "tokenizer_fingerprint": tokenizer_fingerprint,
        "config": config,
    }


def _write_json_atomically(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_manifest(directory: Path, manifest: dict, list_files: bool) -> None:
    """Write the manifest last, so its presence (and the sizes and hashes it lists) marks the folder complete."""
    content = {**manifest, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if list_files:
        content["files"] = {
            str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": file_digest(p)}
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST_FILE
        }
    _write_json_atomically(directory / MANIFEST_FILE, content)


class ManifestCallback(TrainerCallback):
    """Seals each checkpoint with the run manifest once Trainer has written all of it."""

    def __init__(self, manifest: dict):
        self.manifest = manifest

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                make_portable(checkpoint)  # before the seal, which hashes every file
                write_manifest(checkpoint, {**self.manifest, "global_step": state.global_step}, list_files=True)
