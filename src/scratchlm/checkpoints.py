"""Checkpoints a crash cannot spoil: a manifest written last into each one, resume from the newest
complete one, and a record of what produced every checkpoint and model."""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from .errors import ScratchError
from .hashing import file_digest

logger = logging.getLogger("scratchlm")

MANIFEST_FILE = "run_manifest.json"
QUARANTINE_DIR = "_incomplete-checkpoints"  # outside `checkpoint-*` (rotation, resume) and `_*` is never uploaded
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Config keys that may differ between a checkpoint and the model that resumes from it.
_VOLATILE_CONFIG_KEYS = {
    "transformers_version",
    "architectures",
    "torch_dtype",
    "dtype",
    "_name_or_path",
    "auto_map",
    "use_cache",
}


# ---------------------------------------------------------------------------------------------
# What produced a run
# ---------------------------------------------------------------------------------------------
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
                write_manifest(checkpoint, {**self.manifest, "global_step": state.global_step}, list_files=True)


# ---------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------
def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (unsealed, missing, truncated or altered files), or None."""
    try:
        manifest = json.loads((checkpoint / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError):
        return f"it has no complete {MANIFEST_FILE} (the save was interrupted)"
    if "trainer_state.json" not in files:
        return "it has no trainer_state.json"
    for name, expected in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were written"
        if file_digest(path) != expected["sha256"]:
            return f"{name} does not match the hash written with it"
    return None


def out_of_space(output_dir: Path, err: OSError, model) -> ScratchError:
    """The error for a full disk while saving, with the space a checkpoint takes (the newest complete one's
    size, or weights plus AdamW's two moments in fp32 before the first)."""
    newest = latest_complete_checkpoint(output_dir, is_main_process=False) if output_dir.is_dir() else None
    if newest is not None:
        needed = sum(p.stat().st_size for p in newest.rglob("*") if p.is_file())
    else:
        needed = 12 * sum(p.numel() for p in model.parameters())
    free = shutil.disk_usage(output_dir if output_dir.exists() else output_dir.parent).free
    return ScratchError(
        f"no space left on the device of {err.filename or output_dir} while saving: a checkpoint takes about "
        f"{needed / 1e6:,.0f} MB and {free / 1e6:,.0f} MB are free there; free some space or choose another "
        "--output_dir, then resume with --resume_from_checkpoint true (the unfinished checkpoint is not sealed and "
        "is set aside)"
    )


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def latest_complete_checkpoint(output_dir: Path, is_main_process: bool = True) -> Path | None:
    """The newest checkpoint that verifies; newer broken ones are moved aside (never deleted) so that
    neither resume nor checkpoint rotation picks them up again."""
    if not output_dir.is_dir():
        return None
    for checkpoint in checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        target = output_dir / QUARANTINE_DIR / f"{checkpoint.name}-{int(time.time())}"
        logger.warning("skipping %s: %s; moving it to %s", checkpoint, problem, target)
        if is_main_process:
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(checkpoint), str(target))
    return None


def check_checkpoint_matches(checkpoint: Path, model, tokenizer_fingerprint: str) -> None:
    """Refuse to resume a model from a checkpoint of another family or shape, or trained with another tokenizer."""
    try:
        saved = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ScratchError(  # noqa: B904 (the cause is named in the message)
            f"--resume_from_checkpoint {checkpoint}: no readable config.json, so it is not a "
            "checkpoint of this recipe; pass the checkpoint-N folder of a run of the same config"
        )
    current = model.config.to_dict()
    if saved.get("model_type") == current.get("model_type"):  # fill in the defaults a saved config leaves out
        saved = type(model.config).from_dict(saved).to_dict()
    differing = sorted(
        key
        for key in set(saved) | set(current)
        if key not in _VOLATILE_CONFIG_KEYS and saved.get(key) != current.get(key)
    )
    if differing:
        differing.sort(key=lambda k: k != "model_type")
        shown = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs run {current.get(k)!r}" for k in differing[:4])
        raise ScratchError(
            f"--resume_from_checkpoint {checkpoint} holds a different model ({shown}); resume with "
            "the config that wrote it (its run_manifest.json has it) or start a new --output_dir"
        )
    manifest = json.loads((checkpoint / MANIFEST_FILE).read_text(encoding="utf-8"))
    trained_with = manifest.get("tokenizer_fingerprint")
    if trained_with and trained_with != tokenizer_fingerprint:
        tokenizer = manifest.get("config", {}).get("tokenizer_name_or_path", "?")
        raise ScratchError(
            f"--resume_from_checkpoint {checkpoint} was trained with another tokenizer ({tokenizer}, hash "
            f"{trained_with[:12]}; this run's is {tokenizer_fingerprint[:12]}): the same token ids would mean other "
            "text; resume with --tokenizer_name_or_path set to the tokenizer it was trained with"
        )
