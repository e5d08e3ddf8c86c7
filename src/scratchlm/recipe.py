"""The pretraining recipe body, written once: tokenizer -> data -> model -> trainer -> train -> finish.

Both pretraining scripts call `main`; `find-lr`, the benchmarks and the tests call `build_run` for the
same tokenizer, data, model and trainer without training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, set_seed

from .checkpoints import ManifestCallback, run_manifest
from .data import Corpus, LMData, load_lm_data
from .errors import Preempted, ScratchError
from .flops import model_flops_per_token, peak_tflops
from .objectives import RunSettings, parse_run_settings
from .training import (
    PretrainingTrainer,
    ProfileSteps,
    SampleCallback,
    StopAtEvalLoss,
    ThroughputMeter,
    ensure_tokenizer,
    finish_run,
    log_run_summary,
    resolve_resume,
    resolved_config,
    setup_run,
    train,
)


@dataclass
class Run:
    settings: RunSettings
    tokenizer: PreTrainedTokenizerBase
    data: LMData
    model: torch.nn.Module
    trainer: PretrainingTrainer


def build_trainer(settings: RunSettings, model, tokenizer: PreTrainedTokenizerBase, data: LMData) -> PretrainingTrainer:
    """The Trainer of `settings`' objective: its collator and metrics, throughput, manifest, samples."""
    objective, args = settings.objective, settings.training
    if data.streaming:
        if args.max_steps <= 0:
            raise ScratchError("--streaming needs --max_steps: a stream has no length to count epochs in")
        data.train.seed = args.seed  # the stream's shuffle follows the run's seed
    block = data.block_size
    short = args.curriculum_block_size
    if short and (short >= block or block % short):
        raise ScratchError(f"--curriculum_block_size {short} must divide --block_size {block} and be smaller")
    peak = peak_tflops(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size * block
    throughput = ThroughputMeter(
        tokens_per_step=tokens_per_step,
        flops_per_token=model_flops_per_token(model, block),
        peak_flops=peak * 1e12 * args.world_size if peak else None,
    )
    manifest = run_manifest(
        resolved_config(*settings.parsed),
        data.corpus_description,
        data.corpus_fingerprint,
        data.tokenizer_fingerprint,
        args.world_size,
    )
    callbacks = [throughput, ManifestCallback(manifest)]
    if args.stop_at_eval_loss is not None:
        callbacks.append(StopAtEvalLoss(args.stop_at_eval_loss))
    if args.profile_steps is not None:
        callbacks.append(ProfileSteps(*args.profile_window(), Path(args.output_dir) / "profile"))
    trainer = PretrainingTrainer(
        model=model,
        args=args,
        data_collator=objective.collator(tokenizer, settings),
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        callbacks=callbacks,
        objective=objective,
        eval_unigram_loss=objective.unigram_loss(data, tokenizer),
        chars_per_token=objective.chars_per_token(data),
        throughput=throughput,
        run_manifest=manifest,
        tokens_per_step=tokens_per_step,
        **objective.trainer_options(args),
    )
    if objective.causal:
        trainer.add_callback(
            SampleCallback(
                args.sample_prompts or [], args.sample_max_new_tokens, args.seed, trainer.callback_handler.callbacks
            )
        )
    return trainer


def build_run(
    settings: RunSettings, tokenizer: PreTrainedTokenizerBase | None = None, data: LMData | None = None
) -> Run:
    """Tokenizer (trained on the corpus when missing), packed data, a fresh model and its trainer.
    A caller that has its own tokenizer or data (the benchmarks) passes them in."""
    objective, args = settings.objective, settings.training
    corpus: Corpus | None = None
    if tokenizer is None:
        with args.main_process_first(desc="tokenizer"):
            tokenizer, corpus = ensure_tokenizer(settings.tokenizer, settings.data, objective.required_special_tokens)
    if data is None:
        spec = objective.packing(tokenizer, settings.data.block_size)
        with args.main_process_first(desc="tokenizing and packing"):
            data = load_lm_data(settings.data, tokenizer, spec, corpus)
    model = objective.build_model(settings.model, tokenizer, data.block_size)
    tokenizer.model_max_length = settings.model.n_positions or data.block_size
    return Run(settings, tokenizer, data, model, build_trainer(settings, model, tokenizer, data))


def pretrain(settings: RunSettings) -> dict:
    """A whole pretraining run; returns the final train and held-out metrics."""
    setup_run(settings.training)
    resume_from = resolve_resume(settings.training)
    set_seed(settings.training.seed)
    run = build_run(settings)
    summary = log_run_summary(run.trainer, run.data)
    result = train(run.trainer, resume_from)
    preemption = run.trainer.preemption
    if preemption.stopped_at is not None:  # the grace period is short: no final evaluation, model or card
        checkpoint = Path(settings.training.output_dir) / f"checkpoint-{preemption.stopped_at}"
        raise Preempted(
            f"{preemption.received} at step {preemption.stopped_at}; saved {checkpoint}. Resume with "
            "the same command plus --resume_from_checkpoint true"
        )
    return finish_run(run.trainer, result, summary)


def main(argv: list[str], objective: str, default_config: Path, script: str) -> dict:
    """What a pretraining script runs: its settings (flags over YAML over the script's demo config), then the run."""
    return pretrain(parse_run_settings(argv, objective=objective, default_config=default_config, script=script))
