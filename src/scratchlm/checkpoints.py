"""Checkpoints a crash cannot spoil: each is verified against the manifest sealed into it (`provenance.py`)
before it is resumed from, set aside when it is incomplete, and checked against the model that resumes."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

from .errors import ScratchError
from .hashing import file_digest
from .provenance import MANIFEST_FILE

logger = logging.getLogger("scratchlm")

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

# Settings that decide the training trajectory. A resume restores the optimizer, scheduler and data order the
# checkpoint saved, so a changed value here would be recorded without taking effect: it is refused instead.
# (The global batch is compared as a whole: changing the number of processes while keeping it is a resume.)
RESUME_MUST_MATCH = (
    "objective",
    "init_from",
    "optim",
    "optim_args",
    "learning_rate",
    "muon_learning_rate",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "weight_decay",
    "weight_decay_on",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "max_grad_norm",
    "block_size",
    "seed",
    "data_seed",
    "label_smoothing_factor",
    "curriculum_block_size",
    "curriculum_fraction",
    "bad_loss",
    "max_train_samples",
    "validation_split_percentage",
    "text_sample_by",
    "window_order",
    "packing",
    "streaming",
)


def same_decay_fraction(old: dict, new: dict) -> bool:
    """Whether two runs' schedule options differ only in a num_decay_steps that one fraction of their steps
    resolves to: a fraction is turned into steps when the settings are read, so a run extended with the same
    fraction records another number."""
    was, now = dict(old.get("lr_scheduler_kwargs") or {}), dict(new.get("lr_scheduler_kwargs") or {})
    decay_was, decay_now = was.pop("num_decay_steps", None), now.pop("num_decay_steps", None)
    steps_was, steps_now = old.get("max_steps", -1), new.get("max_steps", -1)
    if was != now or decay_was is None or decay_now is None or steps_was <= 0 or steps_now <= 0:
        return False
    # Each side was rounded to whole steps: some fraction gives both if they are within both roundings.
    return abs(decay_was / steps_was - decay_now / steps_now) <= 0.5 / steps_was + 0.5 / steps_now


def global_batch(manifest: dict) -> int:
    config = manifest["config"]
    return config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * manifest["world_size"]


# ---------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------
def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (unsealed, missing, truncated or altered files), or None."""
    try:
        manifest = json.loads((checkpoint / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"it has no complete {MANIFEST_FILE} (the save was interrupted)"
    if "files" not in manifest:  # the final model's manifest lists no files: it is not a checkpoint
        return "it is a run's final model, not a checkpoint-N: it holds no optimizer state to resume from"
    files = manifest["files"]
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


def check_checkpoint_matches(checkpoint: Path, model, run: dict) -> dict:
    """Refuse to resume a model from a checkpoint of another family or shape, trained with another tokenizer, on
    another corpus or with other optimizer, schedule or batch settings. `run` is this run's manifest; returns
    the checkpoint's."""
    tokenizer_fingerprint = run["tokenizer_fingerprint"]
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
    check_resume_settings(checkpoint, manifest, run)
    return manifest


def check_resume_settings(checkpoint: Path, saved: dict, run: dict) -> None:
    """The corpus and the trajectory settings (`RESUME_MUST_MATCH`, the global batch) of the checkpoint's run
    against this run's manifest; manifests from before a setting existed are not held to it."""
    fix = "resume with the settings it was trained with (its run_manifest.json has them) or start a new --output_dir"
    was, now = saved.get("corpus_fingerprint"), run.get("corpus_fingerprint")
    if was and now and was != now:
        raise ScratchError(
            f"--resume_from_checkpoint {checkpoint} was trained on another corpus ({saved.get('corpus')}, hash "
            f"{was[:12]}; this run reads {run.get('corpus')}, hash {now[:12]}): the data order it saved would "
            "point into other text; resume with the corpus it was trained on or start a new --output_dir"
        )
    old, new = saved.get("config", {}), json.loads(json.dumps(run["config"], default=str))  # as it was written
    changed = [
        f"{key} {old[key]!r} (this command: {new.get(key)!r})"
        for key in RESUME_MUST_MATCH
        if key in old
        and old[key] != new.get(key)
        and not (key == "lr_scheduler_kwargs" and same_decay_fraction(old, new))
    ]
    if "world_size" in saved and all(k in old for k in ("per_device_train_batch_size", "gradient_accumulation_steps")):
        if global_batch(saved) != global_batch(run):
            changed.append(f"a global batch of {global_batch(saved)} (this command: {global_batch(run)})")
    if changed:
        raise ScratchError(
            f"--resume_from_checkpoint {checkpoint} was trained with {', '.join(changed)}: a resume restores the "
            f"optimizer, schedule and data order it saved, so the change would not take effect; {fix}"
        )
