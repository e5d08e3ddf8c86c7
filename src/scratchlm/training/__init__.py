"""Training: `PretrainingTrainer` (what needs the loop), its callbacks, and run set-up and finish."""

from .callbacks import ProfileSteps, RunCallbacks, SampleCallback, StopAtEvalLoss, ThroughputMeter
from .guard import LossGuard
from .health import HealthMonitor
from .preemption import PreemptionCallback
from .run import (
    finish_run,
    guard_output_dir,
    log_run_summary,
    resolve_resume,
    resolved_config,
    run_length,
    setup_run,
    stopped_after_the_last_step,
    train,
)
from .schedules import resolve_decay_length
from .trainer import PretrainingTrainer, lm_eval_metrics, split_blocks

__all__ = [
    "HealthMonitor",
    "LossGuard",
    "PreemptionCallback",
    "PretrainingTrainer",
    "ProfileSteps",
    "RunCallbacks",
    "SampleCallback",
    "StopAtEvalLoss",
    "ThroughputMeter",
    "finish_run",
    "guard_output_dir",
    "log_run_summary",
    "resolve_decay_length",
    "resolve_resume",
    "resolved_config",
    "run_length",
    "setup_run",
    "split_blocks",
    "stopped_after_the_last_step",
    "lm_eval_metrics",
    "train",
]
