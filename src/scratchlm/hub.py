"""The Hub: failing fast when it cannot be reached, and pushing a finished folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from huggingface_hub import HfApi

from .errors import ScratchError

# Never uploaded: checkpoints, and "_*" (the run's lock file, quarantined checkpoints).
UPLOAD_IGNORE = ["checkpoint-*", "_*"]
# Uploaded only with --hub_private_files: a pickle of every setting (a --hub_token included) and the records
# that name local paths (the corpus files, the home folder), at the top or in a seed's folder.
PRIVATE_FILES = ["training_args.bin", "run_manifest.json", "run_config.yaml"]


def upload_ignore(private_files: bool = False) -> list[str]:
    """What an upload leaves out of an output folder."""
    return UPLOAD_IGNORE + ([] if private_files else [p for f in PRIVATE_FILES for p in (f, f"*/{f}")])


def upload_command(repo: str, out: Path | str, private_files: bool = False) -> str:
    """The command that uploads a finished folder later, leaving out what a push leaves out."""
    return f"hf upload {repo} {out} --exclude " + " ".join(f'"{p}"' for p in upload_ignore(private_files))


def check_push_possible(args) -> None:
    """Fail at the start, not after hours of training, when --push_to_hub cannot work."""
    if args.push_to_hub:
        require_hub(
            "--push_to_hub",
            fix="drop --push_to_hub (everything is saved in --output_dir; upload it later "
            f"with `{upload_command('REPO_ID', 'OUTPUT_DIR')}`)",
        )


def push_failed(out: Path, repo: str | None, err: Exception, private_files: bool = False) -> ScratchError:
    first_line = (str(err).strip().splitlines() or [""])[0]
    return ScratchError(
        f"pushing {out} to the Hub ({repo or 'repo named after output_dir'}) failed "
        f"({type(err).__name__}: {first_line}); the model is saved locally in {out}: upload it "
        f"later with `{upload_command(repo or 'REPO_ID', out, private_files)}`"
    )


def upload_folder(
    out: Path, args, repo: str | None = None, commit_message: str = "scratchlm: fine-tuned model"
) -> None:
    """Push a finished output folder, leaving out `upload_ignore`; `repo` is created when not given."""
    try:
        api = HfApi(token=args.hub_token)
        if repo is None:
            repo = args.hub_model_id or out.name
            repo = api.create_repo(repo, private=args.hub_private_repo, exist_ok=True).repo_id
        api.upload_folder(
            repo_id=repo,
            folder_path=str(out),
            ignore_patterns=upload_ignore(args.hub_private_files),
            commit_message=commit_message,
            revision=args.hub_revision,
        )
    except Exception as err:  # network, auth, quota: the local folder is complete either way
        raise push_failed(out, repo or args.hub_model_id, err, args.hub_private_files) from err


# ---------------------------------------------------------------------------------------------
# The Hub: only when asked for, and never a hang when it cannot be reached.
# ---------------------------------------------------------------------------------------------
def hub_reachable(timeout: float = 5.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(what: str, fix: str = "use local files (--train_files) or a built-in corpus (--corpus)") -> None:
    if not hub_reachable():
        raise ScratchError(
            f"{what} needs the Hugging Face Hub, which cannot be reached (offline, or HF_HUB_OFFLINE=1): {fix}, "
            "or go online"
        )
