"""The bad-loss guard, kept on the device so that it costs no host sync on the training hot path.

Every micro-step's loss is checked on the device against a running average. The host reads the
verdict only where Trainer syncs anyway: before a log line, before a checkpoint and at the end. A bad
step therefore stops the run a little after it happened, but before anything is saved from it. With
`bad_loss: skip` the verdict must be known before the optimizer step, so it is read once per
optimizer step.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather
from transformers import TrainerCallback

from ..checkpoints import checkpoints_newest_first
from ..errors import ScratchError

logger = logging.getLogger("scratchlm")

# Slots of the guard's device tensor (float64, so the running average matches Python floats exactly; float32 on
# Apple's MPS, which has no float64).
_AVERAGE, _STEP_BAD, _STEP_VALUE, _STEP_AVERAGE, _FIRST_BAD, _FIRST_VALUE, _FIRST_AVERAGE = range(7)


def describe_bad_loss(value: float, average: float) -> str:
    if not math.isfinite(value):
        return f"the training loss is {value}"
    return f"the training loss {value:.3f} is {value / average:.1f}x its running average {average:.3f}"


class LossGuard(TrainerCallback):
    def __init__(self, mode: str, spike_factor: float):
        self.mode, self.spike_factor = mode, spike_factor
        self.skipped_steps = 0
        self._state: torch.Tensor | None = None

    def observe(self, loss: torch.Tensor, step: int) -> None:
        """Check one micro-step's loss on the device; `step` is the optimizer step it belongs to (1-based)."""
        dtype = torch.float32 if loss.device.type == "mps" else torch.float64  # MPS has no float64
        value = loss.detach().to(dtype)
        if self._state is None:
            self._state = torch.tensor(
                [math.nan, 0, math.nan, math.nan, 0, math.nan, math.nan], dtype=dtype, device=value.device
            )
        state = self._state
        average = state[_AVERAGE]
        has_average = ~torch.isnan(average)
        bad = ~torch.isfinite(value)
        if self.spike_factor:
            bad = bad | (has_average & (value > torch.maximum(self.spike_factor * average, average + 1)))
        new_in_step = bad & (state[_STEP_BAD] == 0)
        first_of_run = bad & (state[_FIRST_BAD] == 0)
        self._state = torch.stack(
            [
                torch.where(bad, average, torch.where(has_average, 0.95 * average + 0.05 * value, value)),
                torch.where(bad, 1.0, state[_STEP_BAD]),
                torch.where(new_in_step, value, state[_STEP_VALUE]),
                torch.where(new_in_step, average, state[_STEP_AVERAGE]),
                torch.where(first_of_run, float(step), state[_FIRST_BAD]),
                torch.where(first_of_run, value, state[_FIRST_VALUE]),
                torch.where(first_of_run, average, state[_FIRST_AVERAGE]),
            ]
        )

    def skip_this_step(self, step: int) -> bool:
        """With `bad_loss: skip`: whether the optimizer step about to be taken had a bad loss (a host sync)."""
        if self.mode != "skip" or self._state is None:
            return False
        bad, value, average = self._across_processes(self._state[[_STEP_BAD, _STEP_VALUE, _STEP_AVERAGE]])
        self._state[_STEP_BAD] = 0.0
        if not bad:
            return False
        self.skipped_steps += 1
        logger.warning(
            "step %d: %s; skipping this optimizer step (bad_loss: skip; %d skipped so far)",
            step,
            describe_bad_loss(value, average),
            self.skipped_steps,
        )
        return True

    def raise_if_bad(self, output_dir: str) -> None:
        """With `bad_loss: stop`: end the run, naming the first bad step, if there was one (a host sync)."""
        if self.mode != "stop" or self._state is None:
            return
        step, value, average = self._across_processes(self._state[[_FIRST_BAD, _FIRST_VALUE, _FIRST_AVERAGE]])
        if not step:
            return
        out = Path(output_dir)
        saved = checkpoints_newest_first(out) if out.is_dir() else []
        last_good = f"the last good checkpoint is {saved[0]}" if saved else "no checkpoint was saved yet"
        raise ScratchError(
            f"step {int(step)}: {describe_bad_loss(value, average)}, so training stopped (bad_loss: "
            f"stop) and {last_good}; lower --learning_rate or lengthen --warmup_steps and resume with "
            "--resume_from_checkpoint true, or pass --bad_loss skip to skip such steps"
        )

    def _across_processes(self, verdict: torch.Tensor) -> list[float]:
        """(marker, loss, average) of the process whose marker (a flag or a step, 0: none) is the smallest
        non-zero one, the same on every process, which must all take the same decision."""
        if PartialState().num_processes == 1:
            return verdict.tolist()
        rows = gather(verdict.unsqueeze(0)).tolist()
        return min((row for row in rows if row[0]), key=lambda row: row[0], default=rows[0])

    def on_step_end(self, args, state, control, **kwargs):
        # Before Trainer logs, saves or ends: the bad step's weights must never reach a log line or a checkpoint.
        if (
            control.should_log
            or control.should_save
            or control.should_training_stop
            or state.global_step >= state.max_steps
        ):
            self.raise_if_bad(args.output_dir)

    def on_train_end(self, args, state, control, **kwargs):
        self.raise_if_bad(args.output_dir)
