"""The Hub: failing fast when it cannot be reached, and pushing a finished folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .errors import ScratchError

# The patterns Trainer.push_to_hub leaves out; our quarantined checkpoints start with "_" for this reason.
UPLOAD_IGNORE = ["_*", "checkpoint-*"]


def upload_command(repo: str, out: Path | str) -> str:
    """The command that uploads a finished folder later, leaving out what a push leaves out."""
    return f'hf upload {repo} {out} --exclude "{UPLOAD_IGNORE[1]}" "{UPLOAD_IGNORE[0]}"'


def check_push_possible(args) -> None:
    """Fail at the start, not after hours of training, when --push_to_hub cannot work."""
    if args.push_to_hub:
        require_hub(
            "--push_to_hub",
            fix="drop --push_to_hub (everything is saved in --output_dir; upload it later "
            f"with `{upload_command('REPO_ID', 'OUTPUT_DIR')}`)",
        )


def push_failed(out: Path, repo: str | None, err: Exception) -> ScratchError:
    first_line = (str(err).strip().splitlines() or [""])[0]
    return ScratchError(
        f"pushing {out} to the Hub ({repo or 'repo named after output_dir'}) failed "
        f"({type(err).__name__}: {first_line}); the model is saved locally in {out}: upload it "
        f"later with `{upload_command(repo or 'REPO_ID', out)}`"
    )


def upload_folder(out: Path, args) -> None:
    """Push a finished output folder (recipes whose Trainer does not own the folder, as CoLA)."""
    from huggingface_hub import HfApi

    repo = args.hub_model_id or out.name
    try:
        api = HfApi(token=args.hub_token)
        repo_id = api.create_repo(repo, private=args.hub_private_repo, exist_ok=True).repo_id
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(out),
            ignore_patterns=UPLOAD_IGNORE,
            commit_message="scratchlm: fine-tuned model",
        )
    except Exception as err:  # network, auth, quota: the local folder is complete either way
        raise push_failed(out, repo, err) from err


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
