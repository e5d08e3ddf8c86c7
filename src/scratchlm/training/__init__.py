"""Training: `PretrainingTrainer` (what needs the loop), its callbacks, and run set-up and finish."""

from .callbacks import ProfileSteps, SampleCallback, StopAtEvalLoss, ThroughputMeter
from .run import (
    ensure_tokenizer,
    finish_run,
    guard_output_dir,
    log_run_summary,
    resolve_resume,
    resolved_config,
    setup_run,
    train,
)
from .trainer import PretrainingTrainer, lm_eval_metrics, split_blocks

__all__ = [
    "PretrainingTrainer",
    "ProfileSteps",
    "SampleCallback",
    "StopAtEvalLoss",
    "ThroughputMeter",
    "ensure_tokenizer",
    "finish_run",
    "guard_output_dir",
    "lm_eval_metrics",
    "log_run_summary",
    "resolve_resume",
    "resolved_config",
    "setup_run",
    "split_blocks",
    "train",
]
