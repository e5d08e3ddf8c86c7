"""Around the training loop: set a run up (logging, threads, guards, resume), report what it is about to do,
and finish it (model, results, the run's own files from `scratchlm.outputs`, Hub push)."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import enum
import errno
import json
import logging
import math
import os
import sys
import traceback
from pathlib import Path

import datasets
import torch
import transformers
from safetensors import SafetensorError
from transformers import TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import TrainOutput

from ..arguments import WSD_DECAY_FRACTION, PretrainingArguments
from ..checkpoints import (
    check_checkpoint_matches,
    checkpoint_problem,
    checkpoints_newest_first,
    latest_complete_checkpoint,
    out_of_space,
)
from ..data import LMData, corpus_name
from ..data.cached import PACKING_BATCH_DOCUMENTS
from ..errors import Preempted, ScratchError, quiet_progress_bars_off_a_terminal, what_stopped
from ..hub import check_push_possible, upload_folder
from ..outputs import write_run_outputs
from ..precision import precision_advice, precision_name
from ..provenance import MANIFEST_FILE, require_clean_git
from ..runlock import LOCK_NAME
from ..tokenizer import make_portable
from ..trackers import trackers_that_fail_to_start
from .schedules import EPOCHS_FOR_A_SHORT_DECAY, ShadowSchedule
from .trainer import PretrainingTrainer

logger = logging.getLogger("scratchlm")


# ---------------------------------------------------------------------------------------------
# Before training
# ---------------------------------------------------------------------------------------------
def setup_run(args: PretrainingArguments) -> None:
    """Logging for the main process; all cores and freed memory kept for reuse on CPU runs; the clean-checkout guard."""
    level = logging.INFO if args.should_log else args.get_process_log_level()  # replicas: --log_level_replica
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=level,
    )
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity_warning()
    transformers.utils.logging.set_verbosity_warning()
    silence_the_checkpoint_mtime_alarm()
    if quiet_progress_bars_off_a_terminal():
        args.disable_tqdm = True  # Trainer then prints plain log lines
    if not torch.cuda.is_available():
        # `accelerate launch` sets OMP_NUM_THREADS=1, which halves a 2-core CPU run: share the cores out.
        share = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if torch.get_num_threads() < share:
            torch.set_num_threads(share)
            logger.info("CPU run: using %d threads per process", share)
        if keep_freed_memory_in_the_heap():
            logger.info(
                "CPU run: glibc malloc keeps freed memory for the next step (any MALLOC_* variable turns this off)"
            )
    if advice := precision_advice(args.bf16, args.fp16):
        logger.warning(advice)
    if args.require_clean_git:
        require_clean_git()
    check_push_possible(args)


class _CheckpointsSavedWithinASecond(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "mtime may not be reliable" not in record.getMessage()


def silence_the_checkpoint_mtime_alarm() -> None:
    """Trainer orders checkpoints by modification time to delete the oldest, and where all of them were saved
    within a second (a short run) it warns "mtime may not be reliable on this filesystem" and orders them by
    step instead: an alarm about the user's disk that is false, over the order that is right anyway."""
    trainer_utils = logging.getLogger("transformers.trainer_utils")
    if not any(isinstance(f, _CheckpointsSavedWithinASecond) for f in trainer_utils.filters):
        trainer_utils.addFilter(_CheckpointsSavedWithinASecond())


def keep_freed_memory_in_the_heap() -> bool:
    """Have glibc's malloc reuse freed memory instead of handing it back to the kernel at every free.

    A CPU step frees and allocates the same large tensors again (logits, their gradients, the softmax: tens
    of MB each). By default glibc hands such blocks back to the kernel when they are freed (its own mmap
    for each block over a threshold, and the heap's top once enough of it is free), so the kernel faulted
    in and zeroed their pages anew every step: 8 million page faults in 320 steps of the GPT-2 demo, whose
    training ran 1.24x faster without them (`benchmarks/cpu_allocator.py`).
    Returns False, changing nothing, where the C library is not glibc or the user set glibc's own
    MALLOC_* variables or GLIBC_TUNABLES (which is how the benchmark measures glibc's defaults).
    """
    if not sys.platform.startswith("linux"):
        return False
    if any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- musl has no such symbol
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    # No mmap for large blocks, and no giving the heap's top back below 2 GB free.
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def resolve_resume(args: PretrainingArguments) -> str | None:
    """The checkpoint to resume from (the newest complete one for `true`; for `auto`, that one if there is
    one, else none), refusing to write into a non-empty output_dir by accident."""
    out = Path(args.output_dir)
    resume = args.resume_from_checkpoint
    auto = resume is not None and str(resume).lower() == "auto"  # for job scripts that are requeued
    if resume is not None and (auto or str(resume).lower() in ("true", "1", "yes", "last")):
        with args.main_process_first(desc="finding the newest complete checkpoint"):
            last = latest_complete_checkpoint(out, is_main_process=args.process_index == 0)
        if last is None and auto:
            logger.info("--resume_from_checkpoint auto: no complete checkpoint in %s, starting afresh", out)
            guard_output_dir(out, args.overwrite_output_dir)
            return None
        if last is None:
            raise ScratchError(
                f"--resume_from_checkpoint true: no complete checkpoint-* directory in {out} to "
                "resume from; drop the flag to start afresh in a new --output_dir"
            )
        logger.info("resuming from %s, the newest complete checkpoint", last)
        return str(last)
    if resume is not None:
        if not Path(resume).is_dir():
            raise ScratchError(f"--resume_from_checkpoint {resume} is not a checkpoint directory")
        if checkpoints_newest_first(Path(resume)):
            raise ScratchError(
                f"--resume_from_checkpoint {resume} is a run's output folder, not a checkpoint: pass one of its "
                f"checkpoint-N folders, or --output_dir {resume} --resume_from_checkpoint true for the newest one"
            )
        problem = checkpoint_problem(Path(resume))
        if problem:
            raise ScratchError(
                f"--resume_from_checkpoint {resume} cannot be resumed from: {problem}; pass "
                "--resume_from_checkpoint true to take the newest complete checkpoint instead"
            )
        if Path(resume).resolve().parent != out.resolve():  # a checkpoint of another folder's run
            guard_output_dir(out, args.overwrite_output_dir, f"--output_dir {Path(resume).parent} to continue there, ")
        logger.info("resuming from %s", resume)
        return str(resume)
    guard_output_dir(out, args.overwrite_output_dir, "--resume_from_checkpoint true to continue that run, ")
    return None


def guard_output_dir(
    out: Path,
    overwrite: bool,
    alternatives: str = "",
    flag: str = "--output_dir",
    overwrite_flag: str = "--overwrite_output_dir true",
) -> None:
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not overwrite:
        raise ScratchError(
            f"{flag} {out} already exists and is not empty: pass {alternatives}"
            f"{overwrite_flag} to write over it, or choose another {flag}"
        )


def train(trainer: PretrainingTrainer, resume_from: str | None, steps: int):
    """Train for `steps` optimizer steps in all, from `resume_from`'s step when given."""
    if resume_from is not None:
        saved = check_checkpoint_matches(Path(resume_from), trainer.model, trainer.run_callbacks.manifest.manifest)
        state = TrainerState.load_from_json(str(Path(resume_from) / TRAINER_STATE_NAME))
        if 0 < trainer.args.max_steps <= state.global_step:
            return nothing_left_to_train(trainer, Path(resume_from), state)
        check_schedule_length(trainer.args, Path(resume_from), state, saved["config"], steps)
    try:
        with (
            stops_with_the_fix_when_disk_or_memory_runs_out(trainer),
            trackers_that_fail_to_start(trainer.args.report_to),
        ):
            return trainer.train(resume_from_checkpoint=resume_from)
    finally:
        trainer.run_callbacks.after_training()


def check_schedule_length(
    args: PretrainingArguments, checkpoint: Path, state: TrainerState, config: dict, steps: int
) -> None:
    """A resume for another number of steps lays the schedule out over the new length, which moves the learning
    rate at the resume unless it is on a flat stretch (a warmup-stable-decay run before its decay): said with the
    rates. one_cycle keeps the length its checkpoint saved, and would fail at the step after it: refused.
    `config` is the checkpoint's resolved settings."""
    saved = state.max_steps
    # By epochs, `steps` estimates Trainer's count: trust it only where the length was changed.
    by_the_same_epochs = config.get("max_steps", -1) <= 0 and config.get("num_train_epochs") == args.num_train_epochs
    if args.max_steps <= 0 and by_the_same_epochs:
        return
    if saved == steps:
        return
    if args.lr_scheduler_type == "one_cycle":
        raise ScratchError(
            f"--resume_from_checkpoint {checkpoint} holds a one_cycle schedule laid out for {saved:,} steps, and "
            f"one_cycle keeps that length (this command asks for {steps:,}): resume with --max_steps {saved}, or use "
            "--lr_scheduler_type warmup_stable_decay in a new --output_dir for a run that can be extended"
        )
    saved_args = copy.copy(args)  # a num_decay_steps given as a fraction was resolved against the saved length
    saved_args.lr_scheduler_kwargs = config.get("lr_scheduler_kwargs", args.lr_scheduler_kwargs)
    # The first step after the resume runs at the rate the checkpoint saved; the new schedule sets the next one.
    before = ShadowSchedule(saved_args, saved).factor(state.global_step)
    after = ShadowSchedule(args, steps).factor(state.global_step + 1)
    if before is None or after is None:
        return
    if abs(after - before) <= 0.01 * max(before, after):
        logger.info(
            "resuming at step %d for %s steps in all (the checkpoint's run had %s): the schedule is laid out over "
            "the new length, and the learning rate at the resume stays at %s of its peak",
            state.global_step,
            f"{steps:,}",
            f"{saved:,}",
            f"{100 * after:.3g}%",
        )
        return
    logger.warning(
        "resuming at step %d for %s steps in all (the checkpoint's run had %s): the schedule is laid out over the "
        "new length, so the learning rate jumps from %s to %s of its peak at the resume. To train longer "
        "without a jump, resume a warmup_stable_decay run from a checkpoint saved before its decay started",
        state.global_step,
        f"{steps:,}",
        f"{saved:,}",
        f"{100 * before:.3g}%",
        f"{100 * after:.3g}%",
    )


def nothing_left_to_train(trainer: PretrainingTrainer, checkpoint: Path, state: TrainerState) -> TrainOutput:
    """A checkpoint at the run's last step (its final save failed, say): Trainer would train one step more, so the
    run is finished from the checkpoint's weights and state instead. One past the last step is refused."""
    steps = trainer.args.max_steps
    if state.global_step > steps:
        raise ScratchError(
            f"--resume_from_checkpoint {checkpoint} is at step {state.global_step}, past --max_steps {steps}: "
            f"pass --max_steps {state.global_step} or more to finish or continue it"
        )
    logger.info(
        "%s is at step %d of max_steps %d: nothing is left to train; writing the final model, evaluation and card "
        "from it",
        checkpoint,
        state.global_step,
        steps,
    )
    trained = type(trainer.model).from_pretrained(checkpoint)
    trainer.model.load_state_dict(trained.state_dict())
    trainer.state = state
    return TrainOutput(state.global_step, float("nan"), {})


@contextlib.contextmanager
def stops_with_the_fix_when_disk_or_memory_runs_out(trainer: PretrainingTrainer):
    """A full disk while saving, or a step or evaluation that does not fit in the accelerator's memory, becomes
    one line with the fix; the checkpoints saved before stay as they were."""
    out = Path(trainer.args.output_dir)
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise out_of_space(out, err, trainer.model) from None
    except SafetensorError as err:  # safetensors writes in Rust: the OS error is only in its text
        if "code: 28," not in str(err):
            raise
        raise out_of_space(out, OSError(errno.ENOSPC, "No space left on device"), trainer.model) from None
    except torch.cuda.OutOfMemoryError as err:
        raise out_of_memory(trainer.args, err) from None


def out_of_memory(args: PretrainingArguments, err: torch.cuda.OutOfMemoryError) -> ScratchError:
    """What to change when a batch does not fit: the same global batch in smaller pieces, then what holds less."""
    evaluating = any(frame.name == "evaluation_loop" for frame in traceback.extract_tb(err.__traceback__))
    if torch.cuda.is_available():
        memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        device = f"{torch.cuda.get_device_name()} ({memory / 2**30:.0f} GB)"
    else:
        device = "the accelerator"
    if evaluating:
        batch = args.per_device_eval_batch_size
        where = f"an evaluation at --per_device_eval_batch_size {batch}"
        fixes = [f"pass --per_device_eval_batch_size {batch // 2}"] if batch > 1 else []
    else:
        batch, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
        where = f"a training step at --per_device_train_batch_size {batch}"
        fixes = []
        if batch > 1:
            same = " (the same global batch)" if batch % 2 == 0 else ""
            halves = f"--per_device_train_batch_size {batch // 2} --gradient_accumulation_steps {accumulation * 2}"
            fixes.append(f"pass {halves}{same}")
        if not args.fused_loss and not args.use_liger_kernel:
            fixes.append("add --fused_loss true (the full logits are never held)")
        if not args.gradient_checkpointing:
            fixes.append("add --gradient_checkpointing true (activations recomputed in the backward pass)")
    fixes.append("train a smaller model or a shorter --block_size (`scratchlm plan` sizes one for a GPU)")
    out = Path(args.output_dir)
    saved = checkpoints_newest_first(out) if out.is_dir() else []
    kept = f"; {saved[0]} is kept: resume from it with --resume_from_checkpoint true" if saved else ""
    return ScratchError(f"{device} ran out of memory in {where}: {'; or '.join(fixes)}{kept}")


def warn_of_a_long_decay_over_repeats(args: PretrainingArguments, steps: int, epochs: float) -> None:
    if args.lr_scheduler_type != "warmup_stable_decay" or epochs <= EPOCHS_FOR_A_SHORT_DECAY:
        return
    decay = args.lr_scheduler_kwargs["num_decay_steps"] / steps
    # A quarter, not the default's fifth: the default's fraction, rounded to whole steps, can land just above it.
    if decay > 1.25 * WSD_DECAY_FRACTION:
        logger.warning(
            "--lr_scheduler_kwargs: this run sees its corpus %.1f times and decays over its last %.0f%% of steps; "
            "on a corpus repeated this often the long low-rate tail memorises it and held-out loss ends higher: "
            "set --lr_scheduler_kwargs '{\"num_decay_steps\": %s}', train fewer steps or add data",
            epochs,
            100 * decay,
            WSD_DECAY_FRACTION,
        )


# Adapting a trained model to a small text of 25,600 tokens (benchmarks/init_from.py): 12 epochs at the rates the
# model was trained with memorised it and ended 1.0 bits/char above a model from scratch; a third of the rates
# over 3 epochs, or a tenth over 12, ended 0.85 and 2.4 below it.
EPOCHS_FOR_ADAPTING = 3.0
ADAPTING_RATE_SHARE = 0.5


def warn_of_adapting_at_the_trained_rates(args: PretrainingArguments, init_from: str | None, epochs: float) -> None:
    if not init_from or epochs <= EPOCHS_FOR_ADAPTING:
        return
    manifest = Path(init_from) / MANIFEST_FILE
    if not manifest.is_file():  # a Hub model, or one not trained here: the rates it was trained at are unknown
        return
    trained = json.loads(manifest.read_text(encoding="utf-8")).get("config", {})
    rates = [("learning_rate", args.learning_rate, trained.get("learning_rate"))]
    if args.optim == "muon" and trained.get("optim") == "muon":
        rates.append(("muon_learning_rate", args.muon_learning_rate, trained.get("muon_learning_rate")))
    high = [
        f"--{name} {now:g} (trained at {then:g})"
        for name, now, then in rates
        if then and now > ADAPTING_RATE_SHARE * then
    ]
    if high:
        logger.warning(
            "--init_from: this run sees its corpus %.1f times at %s; adapting a model on a text this small at "
            "the rates it was trained at memorises the text and loses what the model knew (benchmarks/init_from.py: "
            "it ended worse than a model from scratch): use a third of the rates for about 3 epochs, or a tenth",
            epochs,
            " and ".join(high),
        )


def run_length(args: PretrainingArguments, data: LMData) -> tuple[int, float | None]:
    """(optimizer steps, epochs of the training blocks; None for a stream). By epochs, the steps estimate
    Trainer's count."""
    per_step = args.tokens_per_step(data.block_size) // data.block_size
    if data.streaming:
        return args.max_steps, None
    train_blocks = len(data.train)
    steps = (
        args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * math.ceil(train_blocks / per_step))
    )
    return steps, steps * per_step / max(train_blocks, 1)


def log_run_summary(trainer: PretrainingTrainer, data: LMData) -> dict[str, float]:
    """Sizes, token budget and the bars to clear; warns when the first loss, the warmup or the decay is off."""
    args, model = trainer.args, trainer.model
    config = trainer.run_callbacks.manifest.manifest.get("config", {})
    init_from = config.get("init_from")
    params = sum(p.numel() for p in model.parameters())
    block = data.block_size
    per_step = args.tokens_per_step(block) // block  # blocks per optimizer step
    train_blocks = None if data.streaming else len(data.train)
    steps, epochs = run_length(args, data)
    vocab = model.config.vocab_size
    initial = initial_loss(model, data.validation)
    summary = {
        "parameters": params,
        "tokens_per_step": per_step * block,
        "steps": steps,
        "total_tokens": steps * per_step * block,
        "train_tokens_available": None if data.streaming else train_blocks * block,
        "train_tokens_dropped": data.stats.train_dropped_tokens,
        "eval_unigram_loss": trainer.eval_unigram_loss,
        "ln_vocab": math.log(vocab),
        "initial_loss": initial,
    }
    share = "streamed: length unknown" if epochs is None else f"{epochs:.2f} epochs"
    logger.info(
        "run: %s parameters; global batch %d = %d per device x %d accumulation x %d processes; "
        "%s tokens/step x %s steps = %s tokens (%s of %s); %s",
        f"{params:,}",
        per_step,
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        args.world_size,
        f"{per_step * block:,}",
        f"{steps:,}",
        f"{steps * per_step * block:,}",
        share,
        corpus_name(data.corpus_description),
        precision_name(args.bf16, args.fp16),
    )
    dropped = data.stats.train_dropped_tokens
    if dropped and not data.streaming:
        logger.info(
            "%s training tokens (%.2f%%) are in no block: %s",
            f"{dropped:,}",
            100 * dropped / (dropped + train_blocks * block),
            "cropped from documents by --packing aligned"
            if config.get("packing") == "aligned"
            else f"the last tokens of every {PACKING_BATCH_DOCUMENTS:,} documents packed together (of the whole "
            "corpus, for prepared data), too few to fill a block",
        )
    if data.streaming and args.dataloader_num_workers == 0:
        logger.warning(
            "streaming with --dataloader_num_workers 0 tokenizes in the training process; "
            "give it workers (e.g. 4) so the accelerator does not wait for text"
        )
    logger.info(
        "initial loss %.3f vs ln(vocab) %.3f%s; unigram baseline on held-out %.3f nats/token "
        "(the model must go well below it)",
        initial,
        math.log(vocab),
        f" (the weights of {init_from})" if init_from else "",
        trainer.eval_unigram_loss,
    )
    short = getattr(args, "curriculum_block_size", None)
    if short:
        logger.info(
            "sequence-length curriculum: steps 1-%d on blocks of %d tokens, then %d",
            int(args.curriculum_fraction * steps),
            short,
            block,
        )
    warmup = args.get_warmup_steps(steps)
    if warmup > steps:
        logger.warning(
            "--warmup_steps %d is longer than the run's %d steps: the learning rate never reaches its peak; "
            "shorten the warmup (a fraction below 1 scales with the run, e.g. 0.05)",
            warmup,
            steps,
        )
    if epochs is not None:
        warn_of_a_long_decay_over_repeats(args, steps, epochs)
        warn_of_adapting_at_the_trained_rates(args, init_from, epochs)
    if abs(initial - math.log(vocab)) > 1.0 and not init_from:  # a trained model starts well below it
        logger.warning(
            "initial loss %.3f is far from ln(vocab)=%.3f: the initialisation or the labels are off",
            initial,
            math.log(vocab),
        )
    return summary


@torch.no_grad()
def initial_loss(model, validation, n_blocks: int = 8) -> float:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = validation.with_format("torch")[:n_blocks]["input_ids"].to(device)
    loss = model(input_ids=ids, labels=ids).loss.item()
    model.train(was_training)
    return loss


# ---------------------------------------------------------------------------------------------
# After training
# ---------------------------------------------------------------------------------------------
def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def resolved_config(*settings) -> dict:
    """Every setting of the run, flat, in a form `--config` reads back."""
    out: dict = {}
    for obj in settings:
        for f in dataclasses.fields(obj):
            if f.init and not f.name.startswith("_"):
                out[f.name] = _plain(getattr(obj, f.name))
    return out


def last_evaluation(trainer: PretrainingTrainer) -> dict | None:
    """The metrics of an evaluation at the final step, when the schedule already ran one (no second pass)."""
    for entry in reversed(trainer.state.log_history):
        if "eval_loss" in entry:
            if entry.get("step") == trainer.state.global_step:
                return {k: v for k, v in entry.items() if k.startswith("eval_") or k == "epoch"}
            return None
    return None


def log_final_summary(trainer: PretrainingTrainer, eval_metrics: dict, health: list[dict], written: list[str]) -> None:
    """The end of the log: held-out metrics, the health verdicts and where the outputs are, once."""
    margin = eval_metrics["eval_unigram_loss"] - eval_metrics["eval_loss"]
    side = "below" if margin >= 0 else "above"
    named = (
        "eval_bits_per_char",
        "eval_bits_per_byte",
        "eval_perplexity",
        "eval_accuracy",
        "eval_minimal_pairs_accuracy",
        "eval_minimal_pairs_unigram_accuracy",
    )
    lines = [
        f"held-out loss {eval_metrics['eval_loss']:.3f} nats/token vs unigram {eval_metrics['eval_unigram_loss']:.3f} "
        f"({abs(margin):.2f} {side}); " + ", ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items() if k in named)
    ]
    lines += [f"health {v['check']}: {v['verdict']}: {v['message']}" for v in health]
    files = [f"{written[0]} (model card)", "all_results.json", *written[1:]]
    lines.append(f"outputs in {trainer.args.output_dir}: model and tokenizer, {', '.join(files)}")
    logger.info("run finished at step %d\n  %s", trainer.state.global_step, "\n  ".join(lines))


def gather_the_weights_for_the_final_save(trainer) -> None:
    """Under FSDP with sharded checkpoints (fsdp.yaml: fast to save and resume), Trainer saves no weights
    at all as the final model (transformers#30491): the last save gathers the whole model into one file
    that `from_pretrained` loads."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None) if trainer.is_fsdp_enabled else None
    if plugin is not None and "FULL_STATE_DICT" not in str(plugin.state_dict_type):
        plugin.set_state_dict_type("FULL_STATE_DICT")


def stopped_after_the_last_step(trainer: PretrainingTrainer) -> Preempted | None:
    """A stop while the final model, evaluation and card are written: the sealed checkpoint of the last step holds
    everything trained, and a resume from it writes them without training again (`nothing_left_to_train`). None
    where no checkpoint was saved at the end (--save_strategy no)."""
    checkpoint = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
    if not (checkpoint / MANIFEST_FILE).is_file():
        return None
    return Preempted(
        f"{what_stopped()} after the last step, while the final model, evaluation and card were written; {checkpoint} "
        "holds everything trained: finish with the same command plus --resume_from_checkpoint true (nothing is "
        "trained again)"
    )


def finish_run(trainer: PretrainingTrainer, train_result, summary: dict, unigram_counts=None) -> dict:
    """Save model + tokenizer, evaluate, write results, the resolved config, samples, manifest and model card;
    push to the Hub when asked."""
    gather_the_weights_for_the_final_save(trainer)
    with stops_with_the_fix_when_disk_or_memory_runs_out(trainer):
        trainer.save_model_without_push()  # the card and results must be written before a push
    if trainer.is_world_process_zero():
        make_portable(trainer.args.output_dir)
    metrics = dict(train_result.metrics)
    metrics.update({k: summary[k] for k in ("parameters", "total_tokens", "initial_loss")})
    trainer.save_metrics("train", metrics)
    with stops_with_the_fix_when_disk_or_memory_runs_out(trainer):
        eval_metrics = last_evaluation(trainer) or trainer.evaluate()
    trainer.save_metrics("eval", eval_metrics)
    trainer.save_state()
    callbacks = trainer.run_callbacks
    health = callbacks.health.as_dicts()
    out = Path(trainer.args.output_dir)
    if trainer.is_world_process_zero():
        written = write_run_outputs(
            out,
            objective=trainer.objective,
            model=trainer.model,
            manifest=callbacks.manifest.manifest,
            global_step=trainer.state.global_step,
            eval_metrics=eval_metrics,
            summary=summary,
            samples=callbacks.samples.samples if callbacks.samples is not None else None,
            health=health,
            unigram_counts=unigram_counts,
        )
        log_final_summary(trainer, eval_metrics, health, written)
    if trainer.args.push_to_hub and trainer.is_world_process_zero():
        # Our own upload rather than Trainer.push_to_hub, whose exclusions cannot be changed: it would
        # publish training_args.bin and the records that name local paths.
        upload_folder(out, trainer.args, repo=trainer.hub_model_id, commit_message="scratchlm: end of pretraining")
        logger.info("pushed %s to the Hub", out)
    return {**metrics, **eval_metrics}
