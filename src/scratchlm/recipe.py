"""The pretraining recipe body, written once: `pretrain` reads top to bottom; `build_trainer` gives the Trainer
every callback of the run at once (`RunCallbacks`, which lists them).

Both pretraining scripts call `main`; `find-lr`, `overfit`, the benchmarks and the tests call `build_run` for
the same tokenizer, data, model and trainer without training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, set_seed

from .arguments import DataArguments, TokenizerArguments
from .data import Corpus, LMData, corpus_name, load_corpus, load_lm_data, source_of, training_windows
from .errors import Preempted, ScratchError, raised_by_a_stop
from .evaluation import MinimalPairsMetric
from .flops import model_flops_per_token, peak_tflops
from .generation import document_start_prompts, prompts_foreign_to
from .models import config_to_train
from .objectives import RunSettings, parse_run_settings
from .provenance import run_manifest
from .runlock import hold_output_dir
from .tokenizer import (
    load_tokenizer,
    settings_it_was_not_trained_with,
    tokenizer_fingerprint,
    train_tokenizer_on_corpus,
)
from .training import (
    PretrainingTrainer,
    RunCallbacks,
    finish_run,
    log_run_summary,
    resolve_decay_length,
    resolve_resume,
    resolved_config,
    run_length,
    setup_run,
    stopped_after_the_last_step,
    train,
)

logger = logging.getLogger("scratchlm")


@dataclass
class Run:
    settings: RunSettings
    tokenizer: PreTrainedTokenizerBase
    data: LMData
    model: torch.nn.Module
    trainer: PretrainingTrainer

    @property
    def callbacks(self) -> RunCallbacks:
        return self.trainer.run_callbacks


def pretrain(settings: RunSettings) -> dict:
    """A whole pretraining run; returns the final train and held-out metrics."""
    args = settings.training
    setup_run(args)
    with hold_output_dir(Path(args.output_dir), enabled=args.process_index == 0):
        resume_from = resolve_resume(args)
        set_seed(args.seed)
        run = build_run(settings)
        summary = log_run_summary(run.trainer, run.data)
        if args.should_log:
            logger.info("to stop this run with a checkpoint: scratchlm stop %s", args.output_dir)
        result = train(run.trainer, resume_from, summary["steps"])
        preemption = run.callbacks.preemption
        if preemption.stopped_at is not None:  # the grace period is short: no final evaluation, model or card
            checkpoint = Path(args.output_dir) / f"checkpoint-{preemption.stopped_at}"
            raise Preempted(
                f"{preemption.received} at step {preemption.stopped_at}; saved {checkpoint}. Resume with "
                "the same command plus --resume_from_checkpoint true"
            )
        try:
            return finish_run(run.trainer, result, summary, run.data.unigram_counts)
        except (KeyboardInterrupt, Exception) as err:
            stop = stopped_after_the_last_step(run.trainer) if raised_by_a_stop(err) else None
            if stop is None:
                raise
            raise stop from None


def build_run(
    settings: RunSettings, tokenizer: PreTrainedTokenizerBase | None = None, data: LMData | None = None
) -> Run:
    """Tokenizer (trained on the corpus when missing), packed data, a fresh model and its trainer.
    A caller that has its own tokenizer or data (the benchmarks) passes them in."""
    objective, args = settings.objective, settings.training
    refuse_window_conflicts(settings)
    corpus: Corpus | None = None
    if tokenizer is None:
        with args.main_process_first(desc="tokenizer"):
            if settings.model.init_from:
                tokenizer = tokenizer_of_the_model(settings.model.init_from, settings.tokenizer, objective)
            else:
                tokenizer, corpus = ensure_tokenizer(
                    settings.tokenizer, settings.data, objective.required_special_tokens, announce=args.should_log
                )
    if data is None:
        spec = objective.packing(tokenizer, settings.data.block_size, settings.data.packing == "aligned")
        with args.main_process_first(desc="tokenizing and packing"):
            data = load_lm_data(settings.data, tokenizer, spec, corpus, seed=args.seed)
    resolve_decay_length(args, *run_length(args, data))
    model = objective.build_model(settings.model, tokenizer, data.block_size)
    if settings.model.init_from:
        objective.check(settings)  # against the settings of the model it loaded
        logger.info(
            "starting from the weights of %s: %s, %d layers x %d wide x %d heads, %s parameters; a new optimizer "
            "and schedule from step 0",
            settings.model.init_from,
            settings.model.model_type,
            settings.model.n_layer,
            settings.model.n_embd,
            settings.model.n_head,
            f"{sum(p.numel() for p in model.parameters()):,}",
        )
    tokenizer.model_max_length = settings.model.n_positions or data.block_size
    return Run(settings, tokenizer, data, model, build_trainer(settings, model, tokenizer, data))


def refuse_window_conflicts(settings: RunSettings) -> None:
    """Settings that shifted windows cannot train with, refused before the data is tokenized."""
    data, args = settings.data, settings.training
    if data.window_order != "shifted" or data.streaming:  # a stream has no epochs to shift
        return
    if args.dataloader_persistent_workers:
        raise ScratchError(
            "--dataloader_persistent_workers keeps each worker's copy of the data, so --window_order shifted "
            "could not move the windows each epoch: drop --dataloader_persistent_workers or set --window_order fixed"
        )
    if data.packing == "aligned":
        raise ScratchError(
            "--packing aligned starts every block at a document, which --window_order shifted would undo by "
            "moving the windows: add --window_order fixed"
        )


def build_trainer(settings: RunSettings, model, tokenizer: PreTrainedTokenizerBase, data: LMData) -> PretrainingTrainer:
    """The Trainer of `settings`' objective, with its collator, metrics and every callback of the run."""
    objective, args = settings.objective, settings.training
    if data.streaming and args.max_steps <= 0:
        raise ScratchError("--streaming needs --max_steps: a stream has no length to count epochs in")
    train = training_windows(
        data.train, objective.packing(tokenizer, data.block_size), settings.data.window_order, args.seed
    )
    short = args.curriculum_block_size
    if short and (short >= data.block_size or data.block_size % short):
        raise ScratchError(f"--curriculum_block_size {short} must divide --block_size {data.block_size} and be smaller")
    peak = peak_tflops(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    tokens_per_step = args.tokens_per_step(data.block_size)
    if objective.causal:
        args.sample_prompts = sample_prompts_of_the_run(settings, tokenizer, data)  # the manifest names those used
    manifest = run_manifest(
        resolved_config(*settings.parsed),
        data.corpus_description,
        data.corpus_fingerprint,
        data.tokenizer_fingerprint,
        args.world_size,
    )
    callbacks = RunCallbacks.for_run(
        args,
        tokens_per_step=tokens_per_step,
        flops_per_token=model_flops_per_token(model, data.block_size),
        peak_flops=peak * 1e12 * args.world_size if peak else None,
        manifest=manifest,
        samples=objective.causal,
        train_dataset=train,
        prepared_data=bool(settings.data.prepared_data),
    )
    return PretrainingTrainer(
        model=model,
        args=args,
        data_collator=objective.collator(tokenizer, settings),
        train_dataset=train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        objective=objective,
        run_callbacks=callbacks,
        eval_unigram_loss=objective.unigram_loss(data, tokenizer),
        chars_per_token=objective.chars_per_token(data),
        bytes_per_token=objective.bytes_per_token(data),
        minimal_pairs=minimal_pairs_metric(settings, tokenizer, data),
        **objective.trainer_options(),
    )


SAMPLED_DOCUMENTS = 4


def sample_prompts_of_the_run(settings: RunSettings, tokenizer: PreTrainedTokenizerBase, data: LMData) -> list[str]:
    """The prompts sampled from at each evaluation: --sample_prompts, but where none are given, or where the
    config file's were written for its own corpus and the run's corpus (named by flags) has never seen them,
    the first words of held-out documents, so the samples show what the model learned of this corpus."""
    args = settings.training
    if args.sample_max_new_tokens <= 0:
        return []
    prompts = list(args.sample_prompts or [])
    checked = prompts and settings.prompts_written_for is not None
    foreign = prompts_foreign_to(prompts, data.validation, tokenizer) if checked else []
    if prompts and not foreign:
        return prompts
    starts = iter(
        p
        for p in document_start_prompts(data.validation, tokenizer, tokenizer.eos_token_id, SAMPLED_DOCUMENTS)
        if p not in prompts
    )
    # each foreign prompt gives way in its place, while there are document starts
    chosen = [next(starts, None) if p in foreign else p for p in prompts] if prompts else list(starts)
    chosen = [p for p in chosen if p is not None]
    if args.should_log:
        why = (
            f"the config file's {', '.join(map(repr, foreign))} were written for "
            f"{settings.prompts_written_for}: most of their characters never occur in this corpus's held-out text"
            if foreign
            else "no --sample_prompts given"
        )
        logger.info(
            "samples start from %s (%s; --sample_prompts to choose them, --sample_max_new_tokens 0 for no samples)",
            ", ".join(map(repr, chosen)) or "no prompt: the held-out text starts no document",
            why,
        )
    return chosen


def minimal_pairs_metric(settings: RunSettings, tokenizer, data: LMData) -> MinimalPairsMetric | None:
    """--eval_minimal_pairs: the pairs scored at every evaluation, read (and refused if malformed) before training."""
    args = settings.training
    if args.eval_minimal_pairs is None:
        return None
    metric = MinimalPairsMetric(
        args.eval_minimal_pairs,
        tokenizer,
        settings.objective.causal,
        data.unigram_counts,
        eval_tokens=len(data.validation) * data.block_size,
        seed=args.seed,
        per_paradigm=args.eval_minimal_pairs_per_paradigm,
    )
    logger.info(
        "minimal pairs from %s: %d per paradigm, %d pairs at every evaluation",
        args.eval_minimal_pairs,
        metric.per_paradigm,
        metric.pairs,
    )
    return metric


def tokenizer_of_the_model(init_from: str, tok_args: TokenizerArguments, objective) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the model `--init_from` names: its embeddings were learned for those ids. A
    configured tokenizer that exists must be the same one; the run records the model's."""
    config_to_train(init_from, objective.name)  # a model of the wrong objective is named as such first
    tokenizer = load_tokenizer(init_from, required=objective.required_special_tokens, argument="--init_from")
    configured = Path(tok_args.tokenizer_name_or_path)
    if configured.exists() and configured.resolve() != Path(init_from).resolve():
        other = load_tokenizer(str(configured), required=objective.required_special_tokens)
        if tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer):
            raise ScratchError(
                f"--tokenizer_name_or_path {configured} is not the tokenizer the model in --init_from {init_from} "
                f"was trained with (the one saved beside it): pass --tokenizer_name_or_path {init_from}"
            )
    tok_args.tokenizer_name_or_path = init_from
    return tokenizer


def ensure_tokenizer(
    tok_args: TokenizerArguments, data_args: DataArguments, required: tuple[str, ...], announce: bool = True
) -> tuple[PreTrainedTokenizerBase, Corpus | None]:
    """Load the configured tokenizer (checking it has the `required` special tokens), or train it on the
    corpus's training split when it is missing.

    Returns the corpus too when it had to be loaded, so the data step need not load it again.
    """
    path = Path(tok_args.tokenizer_name_or_path)
    if path.exists() or not tok_args.train_tokenizer_if_missing or data_args.prepared_data:
        tokenizer = load_tokenizer(tok_args.tokenizer_name_or_path, required=required)
        differences = settings_it_was_not_trained_with(path, tok_args)
        if differences and announce:  # once, not by every process of a multi-process run
            logger.warning(
                "tokenizer %s is used as it was trained (%s): to train one to this run's settings, give a "
                "--tokenizer_name_or_path that does not exist yet",
                path,
                "; ".join(differences),
            )
        return tokenizer, None
    source = source_of(data_args)  # a corpus that is not named is refused before the tokenizer is announced
    logger.info(
        "tokenizer %s does not exist yet: training a %s tokenizer (vocab %d) on the training split of %s",
        path,
        tok_args.tokenizer_type,
        tok_args.vocab_size,
        corpus_name(source.describe()),
    )
    if data_args.streaming and tok_args.max_tokenizer_train_bytes is None:
        logger.warning(
            "training the tokenizer on the whole stream: cap it with --max_tokenizer_train_bytes (about 1e9 is plenty)"
        )
    corpus = load_corpus(data_args, num_proc=data_args.preprocessing_num_workers)
    train_tokenizer_on_corpus(corpus, tok_args, path)
    return load_tokenizer(str(path), required=required), corpus


def main(argv: list[str], objective: str, default_config: Path, script: str) -> dict:
    """What a pretraining script runs: its settings (flags over YAML over the script's demo config), then the run."""
    return pretrain(parse_run_settings(argv, objective=objective, default_config=default_config, script=script))
