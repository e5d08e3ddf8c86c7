"""Callbacks of a pretraining run, and `RunCallbacks`: every callback a run has, by name.

Defined here: throughput and MFU, profiling, samples at each evaluation (to the log and the trackers) and
stopping at a quality target. The bad-loss guard, preemption and the health monitor have modules of their
own; the manifest sealed into checkpoints is `provenance.ManifestCallback`. `recipe.build_trainer` is the
one place that builds them all.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback, WandbCallback

from ..data.windows import ShiftedWindows
from ..generation import Samples, generate_samples
from ..provenance import ManifestCallback
from .guard import LossGuard
from .health import HealthMonitor, data_wait_fix
from .preemption import PreemptionCallback

logger = logging.getLogger("scratchlm")


class WindowOrder(TrainerCallback):
    """Moves the training windows before each epoch (`data.windows`).

    Trainer's own `set_epoch` does not reach the dataset: accelerate forwards it to a seedable sampler
    instead. Epoch begins before the dataloader's workers start, so they take the new windows with them.
    """

    def __init__(self, windows: ShiftedWindows):
        self.windows = windows

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is a whole number at an epoch's start, plus the fraction already trained on a resume.
        self.windows.set_epoch(int(state.epoch or 0))


class ThroughputMeter(TrainerCallback):
    """Tokens seen, tokens/s between logs, MFU and training seconds so far, for the training log.

    Tokens seen are steps x tokens per step: Trainer's `include_num_input_tokens_seen` counts them by
    reading every batch on the host (and gathering across processes), a sync per step we do not need
    when every block is full. Time spent evaluating is left out of tokens/s and of `train_seconds`, so runs
    that evaluate at different intervals compare on the minutes they trained.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: float, peak_flops: float | None):
        self.tokens_per_step, self.flops_per_token, self.peak_flops = tokens_per_step, flops_per_token, peak_flops
        self._clock: tuple[float, int] | None = None
        self.train_seconds = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if self._clock is None:
            self._clock = (time.perf_counter(), state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        self._clock = None

    def measure(self, step: int) -> dict[str, float]:
        out = {"tokens_seen": step * self.tokens_per_step}
        now = time.perf_counter()
        if self._clock is not None:
            self.train_seconds += now - self._clock[0]
            out["train_seconds"] = round(self.train_seconds, 2)
        if self._clock is not None and step > self._clock[1] and now > self._clock[0]:
            tokens_per_second = (step - self._clock[1]) * self.tokens_per_step / (now - self._clock[0])
            out["tokens_per_second"] = round(tokens_per_second, 1)
            if self.peak_flops:
                out["mfu"] = round(tokens_per_second * self.flops_per_token / self.peak_flops, 4)
        self._clock = (now, step)
        return out


class ProfileSteps(TrainerCallback):
    """Records optimizer steps `first`..`last` with torch.profiler: a trace that Perfetto (ui.perfetto.dev) and
    chrome://tracing open, and a table of the operators that took the most time."""

    def __init__(self, first: int, last: int, out_dir: Path):
        self.first, self.last, self.out_dir = first, last, out_dir
        self.profiler: torch.profiler.profile | None = None
        self.trace: Path | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.first and self.profiler is None and state.is_world_process_zero:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities, record_shapes=True)
            self.profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None and state.global_step >= self.last:
            self.finish()

    def on_train_end(self, args, state, control, **kwargs):
        if self.profiler is not None:  # the run ended inside the window
            self.finish()

    def finish_if_recording(self) -> None:
        """After an error inside the window: the steps recorded so far are the ones that explain it."""
        if self.profiler is None:
            return
        logger.info(
            "the run stopped inside --profile_steps %d-%d: writing the steps it recorded", self.first, self.last
        )
        try:
            self.finish()
        except Exception as err:  # the run's own error is the one to report
            logger.warning("could not write the profile of the steps before the error: %s", err)

    def finish(self) -> None:
        profiler, self.profiler = self.profiler, None
        profiler.__exit__(None, None, None)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.trace = self.out_dir / f"trace_steps_{self.first}-{self.last}.json"
        profiler.export_chrome_trace(str(self.trace))
        sort_by = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort_by, row_limit=15)
        (self.out_dir / f"top_operators_steps_{self.first}-{self.last}.txt").write_text(table, encoding="utf-8")
        logger.info(
            "profile of steps %d-%d: %s (open in ui.perfetto.dev); top operators:\n%s",
            self.first,
            self.last,
            self.trace,
            table,
        )


class StopAtEvalLoss(TrainerCallback):
    """Ends training at the first evaluation that reaches `target` (the final model is then saved as usual)."""

    def __init__(self, target: float):
        self.target = target

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is not None and loss <= self.target and not control.should_training_stop:
            logger.info(
                "eval_loss %.4f reached --stop_at_eval_loss %g at step %d: stopping",
                loss,
                self.target,
                state.global_step,
            )
            control.should_training_stop = True


def shards_its_weights(model) -> bool:
    """Whether each process holds a shard of the weights (FSDP 1 or 2, tensor parallelism, DeepSpeed ZeRO-3)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    parameter = next(model.parameters(), None)
    return (
        isinstance(parameter, DTensor)
        or hasattr(parameter, "ds_id")  # ZeRO-3's partitioned parameters
        or any(type(module).__name__ == "FullyShardedDataParallel" for module in model.modules())
    )


@contextlib.contextmanager
def forward_through_the_wrapper(model, wrapped_model):
    """FSDP 1 wraps the model: the weights outside its wrapped blocks (embeddings, final norm, output layer)
    are gathered, and cast to its mixed precision, only in the wrapper's forward, and `generate` calls the
    model inside it. While sampling, the model's forward goes through the wrapper's. (FSDP 2 hooks the model
    itself, and Trainer registers `generate` with it.)"""
    if type(wrapped_model).__name__ != "FullyShardedDataParallel" or wrapped_model.module is not model:
        yield
        return
    own = vars(model).get("forward")  # accelerate's autocast sets one on the instance
    inner_forward = model.forward

    # `generate` reads the forward's signature to choose its inputs (positions, cache), so it keeps it.
    @functools.wraps(inner_forward)
    def through_the_wrapper(*args, **kwargs):
        model.forward = inner_forward  # the wrapper calls the model, which must then run its own forward
        try:
            return wrapped_model(*args, **kwargs)
        finally:
            model.forward = through_the_wrapper

    model.forward = through_the_wrapper
    try:
        yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own


class SampleCallback(TrainerCallback):
    """Generates from fixed prompts after each evaluation, so degeneration shows while it happens;
    the samples and their repetition metrics go to the log and, as a table, to wandb / tensorboard."""

    def __init__(self, prompts: list[str], max_new_tokens: int, seed: int):
        self.prompts, self.max_new_tokens, self.seed = prompts, max_new_tokens, seed
        # The Trainer's callbacks, where the reporting integrations live: Trainer creates those from --report_to,
        # so PretrainingTrainer hands them over once it has them.
        self.trackers: list = []
        # The model as Trainer wraps it (callbacks are handed the model inside): PretrainingTrainer sets it.
        self.wrapped_model = None
        self.samples: Samples | None = None

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not self.prompts or model is None:
            return
        if not (state.is_world_process_zero or shards_its_weights(model)):
            return
        # Every process samples where each holds a shard of the weights: a forward pass gathers them from
        # all, and one process alone would wait for the others until the collective times out.
        with forward_through_the_wrapper(model, self.wrapped_model):
            samples = generate_samples(model, processing_class, self.prompts, self.max_new_tokens, seed=self.seed)
        if not state.is_world_process_zero:
            return
        self.samples = samples
        shown = "\n".join(f"  [{i}] {s!r}" for i, s in enumerate(self.samples.texts))
        logger.info(
            "samples at step %d (distinct-2 %.2f):\n%s",
            state.global_step,
            self.samples.metrics.get("distinct_2", float("nan")),
            shown,
        )
        log_samples_to_trackers(self.trackers, state.global_step, self.samples)


def log_samples_to_trackers(callbacks: list, step: int, samples: Samples) -> None:
    rows = samples.rows()
    for callback in callbacks:
        if isinstance(callback, WandbCallback):
            import wandb

            if wandb.run is not None:
                columns = ["step", *rows[0]]
                wandb.log(
                    {
                        "eval/samples": wandb.Table(columns=columns, data=[[step, *r.values()] for r in rows]),
                        **{f"eval/samples_{k}": v for k, v in samples.metrics.items()},
                        "train/global_step": step,
                    }
                )
        elif isinstance(callback, TensorBoardCallback) and getattr(callback, "tb_writer", None) is not None:
            header = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
            body = "".join(
                "| "
                + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|") for v in r.values())
                + " |\n"
                for r in rows
            )
            callback.tb_writer.add_text("eval/samples", header + body, step)
            for key, value in samples.metrics.items():
                callback.tb_writer.add_scalar(f"eval/samples_{key}", value, step)


@dataclass
class RunCallbacks:
    """Every callback of a pretraining run, in the order Trainer calls them (after its own and the trackers'),
    built by `for_run`. PretrainingTrainer and the end of the run reach the ones they talk to by name; none is
    added anywhere else."""

    windows: WindowOrder | None
    throughput: ThroughputMeter
    manifest: ManifestCallback
    stop_at_eval_loss: StopAtEvalLoss | None
    profile: ProfileSteps | None
    guard: LossGuard  # on_step_end: before anything is logged or saved from a bad step
    preemption: PreemptionCallback
    health: HealthMonitor
    samples: SampleCallback | None  # last: after the health line, like the evaluation it follows

    @classmethod
    def for_run(
        cls,
        args,
        *,
        tokens_per_step: int,
        flops_per_token: float = 0.0,
        peak_flops: float | None = None,
        manifest: dict | None = None,
        samples: bool = True,
        train_dataset=None,
        prepared_data: bool = False,
    ) -> RunCallbacks:
        """The callbacks that `args` ask for; `samples` for objectives that generate (causal ones)."""
        return cls(
            windows=WindowOrder(train_dataset) if isinstance(train_dataset, ShiftedWindows) else None,
            throughput=ThroughputMeter(tokens_per_step, flops_per_token, peak_flops),
            manifest=ManifestCallback(manifest or {}),
            stop_at_eval_loss=StopAtEvalLoss(args.stop_at_eval_loss) if args.stop_at_eval_loss is not None else None,
            profile=ProfileSteps(*args.profile_window(), Path(args.output_dir) / "profile")
            if args.profile_steps is not None
            else None,
            guard=LossGuard(args.bad_loss, args.bad_loss_spike_factor),
            preemption=PreemptionCallback(args.save_every_minutes),
            health=HealthMonitor(
                tokens_per_step,
                args.health_unigram_tokens,
                data_wait_fix(args.dataloader_num_workers, prepared_data),
            ),
            samples=SampleCallback(args.sample_prompts or [], args.sample_max_new_tokens, args.seed)
            if samples
            else None,
        )

    def after_training(self) -> None:
        """What on_train_end does for the process, done also when training raises (Trainer then skips
        on_train_end): the signal handlers go back, and a profiler still recording stops and writes its steps."""
        self.preemption.restore_signal_handlers()
        if self.profile is not None:
            self.profile.finish_if_recording()

    def as_list(self) -> list[TrainerCallback]:
        return [cb for f in fields(self) if (cb := getattr(self, f.name)) is not None]
