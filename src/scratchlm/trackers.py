"""--report_to: a tracker that cannot start is named in one line, with its fix.

Trainer starts the trackers at the first step, after the corpus is tokenized and the model built, and a
tracker that cannot start ends the run there with the tracker's own traceback: a misspelt name, a
package not installed, no W&B login in a job without a terminal, or no network (wandb then waits 90 s).
"""

from __future__ import annotations

import contextlib
import importlib.util

from .errors import ScratchError

# The trackers scratchlm has extras for (setup.cfg), each a package of the same name.
EXTRAS = ("wandb", "tensorboard")

OFFLINE_FIX = (
    "run `wandb login` (or set WANDB_API_KEY) where the W&B server can be reached; or set WANDB_MODE=offline "
    "to log on disk and upload later with `wandb sync`; or drop --report_to wandb"
)


def check_trackers(report_to: list[str]) -> None:
    """Refuse, before any work, a tracker that Trainer does not know or whose package is missing."""
    from transformers.integrations import get_reporting_integration_callbacks

    try:
        get_reporting_integration_callbacks(report_to)
    except ValueError as err:
        raise ScratchError(f"--report_to: {err}") from None
    for name in report_to:
        if name in EXTRAS and importlib.util.find_spec(name) is None:
            raise ScratchError(
                f'--report_to {name} needs the {name} package: pip install -e ".[{name}]" (or pip install {name}), '
                "or drop the flag"
            )


@contextlib.contextmanager
def trackers_that_fail_to_start(report_to: list[str]):
    """wandb's own errors (no API key and no terminal to ask for one, a server it cannot reach) as one line."""
    if "wandb" not in report_to:
        yield
        return
    import wandb

    try:
        yield
    except wandb.errors.Error as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScratchError(f"--report_to wandb could not log this run ({reason}): {OFFLINE_FIX}") from None
