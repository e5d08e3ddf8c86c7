"""LR range test: raise the learning rate exponentially over a few hundred steps on a recipe's real
model and data, smooth the loss, and suggest a peak learning rate."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch
from transformers import TrainerCallback, set_seed

from .errors import ScratchError
from .objectives import parse_run_settings
from .recipe import build_run
from .training import guard_output_dir, setup_run, train

logger = logging.getLogger("scratchlm")


def smooth(values: list[float], beta: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (the first values are not pulled to zero)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**i))
    return out


def suggest(lrs: list[float], losses: list[float]) -> dict[str, float]:
    """The LR at the lowest smoothed loss, a tenth of it (the suggestion) and the steepest descent."""
    smoothed = smooth(losses)
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    slopes = (
        [(smoothed[i + 1] - smoothed[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(1, best)]
        if best > 1
        else []
    )
    steepest = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)] if slopes else lrs[best]
    return {
        "min_loss_lr": lrs[best],
        "steepest_lr": steepest,
        "suggested_lr": lrs[best] / 10,  # for warmup then cosine (or linear) decay
        "one_cycle_lr": lrs[best],  # one-cycle spends most steps well below its peak, so it takes the min-loss rate
        "min_smoothed_loss": smoothed[best],
    }


class StopWhenDiverged(TrainerCallback):
    def __init__(self, factor: float = 4.0):
        self.factor, self.best, self.smoothed = factor, math.inf, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            loss = logs["loss"]
            self.smoothed.append(loss)
            current = smooth(self.smoothed)[-1]
            self.best = min(self.best, current)
            if not math.isfinite(loss) or current > self.factor * self.best:
                control.should_training_stop = True


def find_lr(
    config_file: Path,
    overrides: list[str],
    out: Path,
    min_lr: float,
    max_lr: float,
    steps: int,
    overwrite: bool = False,
) -> dict:
    if not 0 < min_lr < max_lr:
        raise ScratchError(f"--min_lr ({min_lr}) must be positive and below --max_lr ({max_lr})")
    if steps < 10:
        raise ScratchError(f"--steps must be at least 10, got {steps}")
    settings = parse_run_settings(["--config", str(config_file), *overrides])
    run_args = settings.training
    guard_output_dir(out, overwrite, flag="--out", overwrite_flag="--overwrite")
    if out.resolve() == Path(run_args.output_dir).resolve():
        raise ScratchError(f"--out {out} is the run's output_dir: the LR finder never writes there; choose another")
    optim = run_args.optim
    if run_args.optim == "muon":
        # One rate is swept; Muon has two, whose ratio a joint sweep would change with --max_lr.
        logger.warning(
            "find-lr sweeps AdamW's learning rate: the config's --optim muon is replaced by AdamW for the test "
            "(Muon's own rate, --muon_learning_rate, is not swept)"
        )
        optim = "adamw_torch_fused"
    # A throwaway copy of the run's settings: no checkpoints, evaluation, samples, warmup or bad-loss stop.
    args = dataclasses.replace(
        run_args,
        optim=optim,
        output_dir=str(out / "trainer"),
        max_steps=steps,
        learning_rate=max_lr,
        warmup_steps=0,
        lr_scheduler_type="constant",
        lr_scheduler_kwargs={},
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        bad_loss="skip",
        bad_loss_spike_factor=0.0,
        overwrite_output_dir=True,
        push_to_hub=False,
        resume_from_checkpoint=None,
        curriculum_block_size=None,
        stop_at_eval_loss=None,
        sample_max_new_tokens=0,
    )
    settings = dataclasses.replace(settings, parsed=(*settings.parsed[:-1], args))
    setup_run(args)
    set_seed(args.seed)
    trainer = build_run(settings).trainer
    trainer.create_optimizer()
    growth = (max_lr / min_lr) ** (1 / max(steps - 1, 1))
    trainer.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda step: (min_lr / max_lr) * growth**step
    )
    trainer.add_callback(StopWhenDiverged())
    train(trainer, None, steps)

    history = [e for e in trainer.state.log_history if "loss" in e and "learning_rate" in e]
    lrs, losses = [e["learning_rate"] for e in history], [e["loss"] for e in history]
    finite = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(finite) < 5:
        raise ScratchError(f"the loss diverged within {len(finite)} steps from --min_lr {min_lr}: lower --min_lr")
    lrs, losses = [lr for lr, _ in finite], [loss for _, loss in finite]
    result = {
        "objective": settings.objective.name,
        "config": str(config_file),
        "steps_run": len(lrs),
        "min_lr": min_lr,
        "max_lr": max_lr,
        **suggest(lrs, losses),
        "configured_lr": run_args.learning_rate,
        "curve": [{"lr": lr, "loss": loss, "smoothed": s} for lr, loss, s in zip(lrs, losses, smooth(losses))],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out / "lr_find.png")
    logger.info(
        "LR range test over %d steps: lowest smoothed loss %.3f at lr %.2e; suggested peak lr %.2e with "
        "warmup + cosine, %.2e with lr_scheduler_type one_cycle (steepest descent at %.2e; the config has %.2e). "
        "Plot: %s",
        len(lrs),
        result["min_smoothed_loss"],
        result["min_loss_lr"],
        result["suggested_lr"],
        result["one_cycle_lr"],
        result["steepest_lr"],
        run_args.learning_rate,
        out / "lr_find.png",
    )
    return result


def _plot(result: dict, path: Path) -> None:
    from .plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lrs = [p["lr"] for p in result["curve"]]
    ax.plot(lrs, [p["loss"] for p in result["curve"]], alpha=0.3, label="loss")
    ax.plot(lrs, [p["smoothed"] for p in result["curve"]], label="smoothed")
    ax.axvline(
        result["suggested_lr"], color="tab:green", linestyle="--", label=f"suggested {result['suggested_lr']:.1e}"
    )
    ax.axvline(result["configured_lr"], color="tab:gray", linestyle=":", label=f"config {result['configured_lr']:.1e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (nats/token)", title="LR range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
