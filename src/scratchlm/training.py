"""What every pretraining recipe does around `Trainer`: guard the output, get a tokenizer, check the
start, report metrics a pretraining run needs (bits per char, the unigram bar, samples), and save."""
from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import sys
import time
import types
from pathlib import Path

import datasets
import torch
import transformers
import yaml
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback

from .arguments import DataArguments, PretrainingArguments, TokenizerArguments
from .checkpoints import (ManifestCallback, check_checkpoint_matches, checkpoint_problem,
                          checkpoints_newest_first, latest_complete_checkpoint, require_clean_git, run_manifest,
                          write_manifest)
from .corpus import Corpus, load_corpus
from .data import LMData, unigram_cross_entropy
from .errors import ScratchError
from .flops import model_flops_per_token, peak_tflops
from .generation import Samples, generate_samples
from .hub import CARD_FILE, check_push_possible, pretraining_card, push_failed
from .tokenizer import REPORT_FILE, load_tokenizer, train_tokenizer_on_corpus

logger = logging.getLogger("scratchlm")

RESOLVED_CONFIG_FILE = "run_config.yaml"
SAMPLES_FILE = "samples.json"


# ---------------------------------------------------------------------------------------------
# Before training
# ---------------------------------------------------------------------------------------------
def setup_run(args: PretrainingArguments) -> None:
    """Logging for the main process, all CPU cores for CPU runs, and the clean-checkout guard."""
    level = logging.INFO if args.should_log else args.get_process_log_level()  # replicas: --log_level_replica
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)], level=level)
    logger.setLevel(level)
    datasets.utils.logging.set_verbosity_warning()
    transformers.utils.logging.set_verbosity_warning()
    if not sys.stderr.isatty():  # progress bars flood logs that are files; Trainer then prints plain log lines
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()  # e.g. "Writing model shards" on every save
        args.disable_tqdm = True
    if not torch.cuda.is_available():
        # `accelerate launch` sets OMP_NUM_THREADS=1, which halves a 2-core CPU run: share the cores out.
        share = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if torch.get_num_threads() < share:
            torch.set_num_threads(share)
            logger.info("CPU run: using %d threads per process", share)
    if args.require_clean_git:
        require_clean_git()
    check_push_possible(args)


def resolve_resume(args: PretrainingArguments) -> str | None:
    """The checkpoint to resume from (the newest complete one for `true`), refusing to write into a
    non-empty output_dir by accident."""
    out = Path(args.output_dir)
    resume = args.resume_from_checkpoint
    if resume is not None and str(resume).lower() in ("true", "1", "yes", "last"):
        with args.main_process_first(desc="finding the newest complete checkpoint"):
            last = latest_complete_checkpoint(out, is_main_process=args.process_index == 0)
        if last is None:
            raise ScratchError(f"--resume_from_checkpoint true: no complete checkpoint-* directory in {out} to "
                               "resume from; drop the flag to start afresh in a new --output_dir")
        logger.info("resuming from %s, the newest complete checkpoint", last)
        return str(last)
    if resume is not None:
        if not Path(resume).is_dir():
            raise ScratchError(f"--resume_from_checkpoint {resume} is not a checkpoint directory")
        problem = checkpoint_problem(Path(resume))
        if problem:
            raise ScratchError(f"--resume_from_checkpoint {resume} cannot be resumed from: {problem}; pass "
                               "--resume_from_checkpoint true to take the newest complete checkpoint instead")
        return str(resume)
    guard_output_dir(out, args.overwrite_output_dir, "--resume_from_checkpoint true to continue that run, ")
    return None


def guard_output_dir(out: Path, overwrite: bool, alternatives: str = "") -> None:
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ScratchError(f"output_dir {out} already exists and is not empty: pass {alternatives}"
                           "--overwrite_output_dir true to write over it, or choose another --output_dir")


def ensure_tokenizer(tok_args: TokenizerArguments, data_args: DataArguments) -> tuple[PreTrainedTokenizerBase, Corpus | None]:
    """Load the configured tokenizer, or train it on the corpus's training split when it is missing.

    Returns the corpus too when it had to be loaded, so the data step need not load it again.
    """
    path = Path(tok_args.tokenizer_name_or_path)
    if path.exists() or not tok_args.train_tokenizer_if_missing or data_args.prepared_data:
        return load_tokenizer(tok_args.tokenizer_name_or_path, required=_required_specials(tok_args)), None
    logger.info("tokenizer %s does not exist yet: training a %s tokenizer (vocab %d) on the training split",
                path, tok_args.tokenizer_type, tok_args.vocab_size)
    if data_args.streaming:
        from .streaming import load_streaming_corpus

        corpus = load_streaming_corpus(data_args)
        if tok_args.max_tokenizer_train_bytes is None:
            logger.warning("training the tokenizer on the whole stream: cap it with --max_tokenizer_train_bytes "
                           "(about 1e9 is plenty)")
    else:
        corpus = load_corpus(data_args, num_proc=data_args.preprocessing_num_workers)
    train_tokenizer_on_corpus(corpus, tok_args, path)
    return load_tokenizer(str(path), required=_required_specials(tok_args)), corpus


def _required_specials(tok_args: TokenizerArguments) -> tuple[str, ...]:
    if tok_args.special_tokens_style == "bert":
        return ("cls_token", "sep_token", "mask_token", "pad_token")
    return ("eos_token", "pad_token")


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------
class PretrainingTrainer(Trainer):
    """Trainer with decay on weight matrices only and evaluation metrics of a pretraining run."""

    def __init__(self, *args, chars_per_token: float | None, eval_unigram_loss: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.chars_per_token = chars_per_token
        self.eval_unigram_loss = eval_unigram_loss
        self.skipped_steps = 0
        self._skip_update = False
        self._loss_average: float | None = None
        # Set by build_trainer; they turn steps into tokens seen, tokens/s and MFU in the logs.
        self.tokens_per_step = 0
        self.flops_per_token = 0.0
        self.peak_flops: float | None = None
        self._clock: tuple[float, int] | None = None
        self.causal = chars_per_token is not None

    def get_decay_parameter_names(self, model) -> list[str]:
        # Matrices (and embeddings) decay; biases and norm gains, which are 1-D, do not.
        return [name for name, param in model.named_parameters() if param.ndim >= 2]

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if getattr(optimizer, "_skips_bad_steps", False):  # Trainer calls this again on an existing optimizer
            return optimizer
        step = optimizer.step

        def step_unless_skipped(_optimizer, *args, **kwargs):
            if self._skip_update:  # a bad loss in this step: leave the weights and the moments as they were
                self._skip_update = False
                return None
            return step(*args, **kwargs)

        # A bound method, as torch's LR schedulers expect of optimizer.step when they wrap it.
        optimizer.step = types.MethodType(step_unless_skipped, optimizer)
        optimizer._skips_bad_steps = True
        return optimizer

    def curriculum_steps(self) -> int:
        """Steps trained at curriculum_block_size: the first curriculum_fraction of the run."""
        return int(self.args.curriculum_fraction * self.state.max_steps)

    def _finalize_training(self, *args, **kwargs):
        # With save_total_limit 1, Trainer deletes every checkpoint but the best when training ends,
        # the newest included: keep the newest, the only one a longer run can resume from.
        limit = self.args.save_total_limit
        if limit == 1:
            self.args.save_total_limit = 2
        try:
            return super()._finalize_training(*args, **kwargs)
        finally:
            self.args.save_total_limit = limit

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._clock is None:
            self._clock = (time.perf_counter(), self.state.global_step)
        short = getattr(self.args, "curriculum_block_size", None)
        if short and self.state.global_step < self.curriculum_steps():
            inputs, num_items_in_batch = split_blocks(inputs, short, num_items_in_batch, self.causal)
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._check_loss(loss)
        return loss

    def _check_loss(self, loss: torch.Tensor) -> None:
        """Stop (or skip the step) on a non-finite or exploding loss, naming the step."""
        value = loss.detach().float()
        if self.args.world_size > 1:  # every process must take the same decision
            value = self.accelerator.reduce(value, reduction="mean")
        value = value.item()  # no extra cost: Trainer's NaN filter already syncs on every step
        average, factor = self._loss_average, getattr(self.args, "bad_loss_spike_factor", 0.0)
        if not math.isfinite(value):
            problem = f"the training loss is {value}"
        elif factor and average is not None and value > max(factor * average, average + 1):
            problem = f"the training loss {value:.3f} is {value / average:.1f}x its running average {average:.3f}"
        else:
            self._loss_average = value if average is None else 0.95 * average + 0.05 * value
            return
        step = self.state.global_step + 1
        if getattr(self.args, "bad_loss", "stop") == "skip":
            self._skip_update = True
            self.skipped_steps += 1
            logger.warning("step %d: %s; skipping this optimizer step (bad_loss: skip; %d skipped so far)",
                           step, problem, self.skipped_steps)
            return
        saved = checkpoints_newest_first(Path(self.args.output_dir)) if Path(self.args.output_dir).is_dir() else []
        last_good = f"the last good checkpoint is {saved[0]}" if saved else "no checkpoint was saved yet"
        raise ScratchError(f"step {step}: {problem}, so training stopped (bad_loss: stop) and {last_good}; lower "
                           "--learning_rate or lengthen --warmup_steps and resume with --resume_from_checkpoint "
                           "true, or pass --bad_loss skip to skip such steps")

    def evaluate(self, *args, **kwargs):
        # The same random masks (MLM) at every evaluation, without moving the training RNG:
        # evaluations stay comparable and training continues exactly as it would have.
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.args.seed)
            metrics = super().evaluate(*args, **kwargs)
        self._clock = None  # throughput counts training time only
        return metrics

    def create_model_card(self, *args, **kwargs):
        if not (Path(self.args.output_dir) / CARD_FILE).exists():  # finish_run writes a fuller one
            super().create_model_card(*args, **kwargs)

    def _throughput(self) -> dict[str, float]:
        """Tokens seen, tokens/s since the previous log, and MFU on a GPU whose peak is known."""
        step = self.state.global_step
        out = {"tokens_seen": step * self.tokens_per_step}
        now = time.perf_counter()
        if self._clock is not None and step > self._clock[1] and now > self._clock[0]:
            tokens_per_second = (step - self._clock[1]) * self.tokens_per_step / (now - self._clock[0])
            out["tokens_per_second"] = round(tokens_per_second, 1)
            if self.peak_flops:
                out["mfu"] = round(tokens_per_second * self.flops_per_token / self.peak_flops, 4)
        self._clock = (now, step)
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:  # the dict is also evaluate()'s return value, so this reaches both
            logs.update(lm_eval_metrics(logs["eval_loss"], self.chars_per_token, self.eval_unigram_loss))
        elif "loss" in logs:
            logs.update(self._throughput())
            if self.skipped_steps:
                logs["skipped_steps"] = self.skipped_steps
        super().log(logs, start_time)


def split_blocks(inputs: dict, length: int, num_items_in_batch, causal: bool):
    """(batch, block) tensors cut into (batch x block/length, length): the same token stream packed shorter.

    A causal LM predicts one token fewer per piece, so the count that normalises the loss shrinks to match.
    """
    block = inputs["input_ids"].shape[1]
    pieces = block // length
    split = {k: v.reshape(-1, length) if torch.is_tensor(v) and v.dim() == 2 and v.shape[1] == block else v
             for k, v in inputs.items()}
    if causal and num_items_in_batch is not None:
        num_items_in_batch = num_items_in_batch // (block - 1) * pieces * (length - 1)
    return split, num_items_in_batch


def lm_eval_metrics(eval_loss: float, chars_per_token: float | None, unigram_loss: float) -> dict[str, float]:
    metrics = {"eval_perplexity": math.exp(min(eval_loss, 50.0)), "eval_unigram_loss": unigram_loss}
    if chars_per_token:  # causal LMs score every token, so nats/token converts to bits/char
        metrics["eval_bits_per_char"] = eval_loss / math.log(2) / chars_per_token
    return metrics


def masked_token_accuracy(eval_pred) -> dict[str, float]:
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    scored = labels != -100
    return {"accuracy": float((predictions[scored] == labels[scored]).mean()) if scored.any() else 0.0}


def _argmax_logits(logits, labels):
    return logits.argmax(dim=-1)  # keeps evaluation from gathering (blocks x positions x vocab) floats


class StopAtEvalLoss(TrainerCallback):
    """Ends training at the first evaluation that reaches `target` (the final model is then saved as usual)."""

    def __init__(self, target: float):
        self.target = target

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is not None and loss <= self.target and not control.should_training_stop:
            logger.info("eval_loss %.4f reached --stop_at_eval_loss %g at step %d: stopping", loss, self.target,
                        state.global_step)
            control.should_training_stop = True


class SampleCallback(TrainerCallback):
    """Generates from fixed prompts after each evaluation, so degeneration shows while it happens;
    the samples and their repetition metrics go to the log and, as a table, to wandb / tensorboard."""

    def __init__(self, prompts: list[str], max_new_tokens: int, seed: int, trackers: list):
        self.prompts, self.max_new_tokens, self.seed = prompts, max_new_tokens, seed
        self.trackers = trackers  # the Trainer's callbacks, where the reporting integrations live
        self.samples: Samples | None = None

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not self.prompts or not state.is_world_process_zero or model is None:
            return
        self.samples = generate_samples(model, processing_class, self.prompts, self.max_new_tokens, seed=self.seed)
        shown = "\n".join(f"  [{i}] {s!r}" for i, s in enumerate(self.samples.texts))
        logger.info("samples at step %d (distinct-2 %.2f):\n%s", state.global_step,
                    self.samples.metrics.get("distinct_2", float("nan")), shown)
        log_samples_to_trackers(self.trackers, state.global_step, self.samples)


def log_samples_to_trackers(callbacks: list, step: int, samples: Samples) -> None:
    rows = samples.rows()
    for callback in callbacks:
        name = type(callback).__name__
        if name == "WandbCallback":
            import wandb

            if wandb.run is not None:
                columns = ["step", *rows[0]]
                wandb.log({"eval/samples": wandb.Table(columns=columns, data=[[step, *r.values()] for r in rows]),
                           **{f"eval/samples_{k}": v for k, v in samples.metrics.items()},
                           "train/global_step": step})
        elif name == "TensorBoardCallback" and getattr(callback, "tb_writer", None) is not None:
            header = "| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
            body = "".join("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|")
                                              for v in r.values()) + " |\n" for r in rows)
            callback.tb_writer.add_text("eval/samples", header + body, step)
            for key, value in samples.metrics.items():
                callback.tb_writer.add_scalar(f"eval/samples_{key}", value, step)


def build_trainer(model, tokenizer, data: LMData, settings: tuple, collator, masked: bool = False) -> PretrainingTrainer:
    """The Trainer for a causal LM, or with `masked=True` for a masked LM (accuracy on masked tokens).

    `settings` are the run's argument dataclasses, training arguments last; they go into the
    manifest sealed into every checkpoint and the final model.
    """
    args = settings[-1]
    if data.streaming:
        if args.max_steps <= 0:
            raise ScratchError("--streaming needs --max_steps: a stream has no length to count epochs in")
        data.train.seed = args.seed  # the stream's shuffle follows the run's seed
    if masked:
        unigram = unigram_cross_entropy(data.unigram_counts, data.validation, skip_first=0,
                                        exclude_ids=tokenizer.all_special_ids)
        args.prediction_loss_only = False  # masked-token accuracy needs the (arg-maxed) predictions
        extra = {"compute_metrics": masked_token_accuracy, "preprocess_logits_for_metrics": _argmax_logits}
    else:
        unigram = unigram_cross_entropy(data.unigram_counts, data.validation)
        extra = {}
    trainer = PretrainingTrainer(
        model=model, args=args, data_collator=collator, train_dataset=data.train, eval_dataset=data.validation,
        processing_class=tokenizer, chars_per_token=None if masked else data.stats.chars_per_token,
        eval_unigram_loss=unigram, **extra,
    )
    if not masked:
        trainer.add_callback(SampleCallback(args.sample_prompts or [], args.sample_max_new_tokens, args.seed,
                                            trainer.callback_handler.callbacks))
    block = data.block_size
    short = getattr(args, "curriculum_block_size", None)
    if short and (short >= block or block % short):
        raise ScratchError(f"--curriculum_block_size {short} must divide --block_size {block} and be smaller")
    trainer.tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size * block
    trainer.flops_per_token = model_flops_per_token(model, block)
    if torch.cuda.is_available():
        peak = peak_tflops(torch.cuda.get_device_name(0))
        trainer.peak_flops = peak * 1e12 * args.world_size if peak else None
    trainer.run_manifest = run_manifest(resolved_config(*settings), data.corpus_description, data.corpus_fingerprint,
                                        data.tokenizer_fingerprint, args.world_size)
    trainer.add_callback(ManifestCallback(trainer.run_manifest))
    if getattr(args, "stop_at_eval_loss", None) is not None:
        trainer.add_callback(StopAtEvalLoss(args.stop_at_eval_loss))
    return trainer


def train(trainer: PretrainingTrainer, resume_from: str | None):
    if resume_from is not None:
        check_checkpoint_matches(Path(resume_from), trainer.model)
    return trainer.train(resume_from_checkpoint=resume_from)


def sample_callback(trainer: Trainer) -> SampleCallback | None:
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SampleCallback)), None)


def log_run_summary(trainer: PretrainingTrainer, data: LMData) -> dict[str, float]:
    """Sizes, token budget and the bars the run must clear; warns when the first loss is off."""
    args, model = trainer.args, trainer.model
    params = sum(p.numel() for p in model.parameters())
    block = data.block_size
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    train_blocks = None if data.streaming else len(data.train)
    steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * math.ceil(train_blocks / per_step))
    vocab = model.config.vocab_size
    initial = initial_loss(model, data.validation)
    summary = {
        "parameters": params, "tokens_per_step": per_step * block, "steps": steps,
        "total_tokens": steps * per_step * block,
        "train_tokens_available": None if data.streaming else train_blocks * block,
        "eval_unigram_loss": trainer.eval_unigram_loss, "ln_vocab": math.log(vocab), "initial_loss": initial,
    }
    share = ("streamed: length unknown" if data.streaming else
             f"{steps * per_step / max(train_blocks, 1):.2f} epochs")
    logger.info("run: %s parameters; global batch %d = %d per device x %d accumulation x %d processes; "
                "%s tokens/step x %s steps = %s tokens (%s of %s); bf16=%s", f"{params:,}", per_step,
                args.per_device_train_batch_size, args.gradient_accumulation_steps, args.world_size,
                f"{per_step * block:,}", f"{steps:,}", f"{steps * per_step * block:,}", share,
                data.corpus_description.split(":")[0], args.bf16)
    if data.streaming and args.dataloader_num_workers == 0:
        logger.warning("streaming with --dataloader_num_workers 0 tokenizes in the training process; "
                       "give it workers (e.g. 4) so the accelerator does not wait for text")
    logger.info("initial loss %.3f vs ln(vocab) %.3f; unigram baseline on held-out %.3f nats/token "
                "(the model must go well below it)", initial, math.log(vocab), trainer.eval_unigram_loss)
    short = getattr(args, "curriculum_block_size", None)
    if short:
        logger.info("sequence-length curriculum: steps 1-%d on blocks of %d tokens, then %d",
                    int(args.curriculum_fraction * steps), short, block)
    if abs(initial - math.log(vocab)) > 1.0:
        logger.warning("initial loss %.3f is far from ln(vocab)=%.3f: the initialisation or the labels are off",
                       initial, math.log(vocab))
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


def finish_run(trainer: PretrainingTrainer, train_result, summary: dict) -> dict:
    """Save model + tokenizer, evaluate, write results, the resolved config, samples, manifest and model card;
    push to the Hub when asked."""
    trainer.save_model(_internal_call=True)  # not pushed yet: the card and results come first
    metrics = dict(train_result.metrics)
    metrics.update({k: summary[k] for k in ("parameters", "total_tokens", "initial_loss")})
    trainer.save_metrics("train", metrics)
    eval_metrics = trainer.evaluate()
    trainer.save_metrics("eval", eval_metrics)
    trainer.save_state()
    callback = sample_callback(trainer)
    samples = callback.samples if callback is not None and callback.samples is not None else None
    out = Path(trainer.args.output_dir)
    if trainer.is_world_process_zero():
        write_manifest(out, {**trainer.run_manifest, "global_step": trainer.state.global_step}, list_files=False)
        config = trainer.run_manifest["config"]
        (out / RESOLVED_CONFIG_FILE).write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                                                encoding="utf-8")
        margin = eval_metrics["eval_unigram_loss"] - eval_metrics["eval_loss"]
        logger.info("held-out loss %.3f nats/token vs unigram %.3f (%.2f below); %s",
                    eval_metrics["eval_loss"], eval_metrics["eval_unigram_loss"], margin,
                    ", ".join(f"{k} {v:.4g}" for k, v in eval_metrics.items()
                              if k in ("eval_bits_per_char", "eval_perplexity", "eval_accuracy")))
        if samples is not None:
            (out / SAMPLES_FILE).write_text(json.dumps({"samples": samples.texts, **samples.metrics},
                                                       ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            for i, text in enumerate(samples.texts):
                print(f"sample {i}: {text}")
        report_file = Path(config.get("tokenizer_name_or_path", "")) / REPORT_FILE
        report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else None
        card = pretraining_card(trainer.run_manifest, trainer.model, eval_metrics, summary,
                                samples.texts if samples is not None else [], report)
        (out / CARD_FILE).write_text(card, encoding="utf-8")
    if trainer.args.push_to_hub:
        try:
            trainer.push_to_hub(commit_message="scratchlm: end of pretraining")
        except Exception as err:  # network, auth, quota: the local output is complete either way
            raise push_failed(out, trainer.args.hub_model_id, err) from err
        logger.info("pushed %s to the Hub", out)
    return {**metrics, **eval_metrics}
