#!/usr/bin/env python
"""Fine-tune any AutoModelForSequenceClassification checkpoint on CoLA; report Matthews correlation.

    python recipes/finetune_cola.py --model_name_or_path outputs/bert-mlm-demo \
        --train_file cola/train.tsv --validation_file cola/dev.tsv --num_seeds 5
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import (
    AutoConfig,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

from scratchlm.arguments import FinetuneArguments
from scratchlm.config import parse_config
from scratchlm.errors import ScratchError, run_cli
from scratchlm.finetune import (
    LABEL,
    SENTENCE,
    append_to_model_card,
    classification_metrics,
    keep_median_seed,
    load_classification_file,
    load_classifier,
    one_class_warning,
    summarise_seeds,
)
from scratchlm.hub import require_hub, upload_folder
from scratchlm.models import check_tokenizer_fits
from scratchlm.runlock import hold_output_dir
from scratchlm.trackers import trackers_that_fail_to_start
from scratchlm.training import guard_output_dir, setup_run

DEFAULT_CONFIG = Path(__file__).parent / "finetune_cola" / "config_demo.yaml"
logger = logging.getLogger("scratchlm")


@dataclass
class ColaArguments:
    model_name_or_path: str = field(default="outputs/bert-mlm-demo", metadata={"help": "Checkpoint dir or Hub id."})
    train_file: str | None = field(
        default=None, metadata={"help": "CoLA training rows (.tsv, .csv, .jsonl); default: GLUE's CoLA from the Hub."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "CoLA validation rows."})
    dataset_name: str = field(default="nyu-mll/glue", metadata={"help": "Hub dataset used without local files."})
    dataset_config_name: str = field(default="cola", metadata={"help": "Its config."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate sentences to this many tokens."})
    num_seeds: int = field(
        default=1,
        metadata={"help": "Fine-tune this many times (seed, seed+1, ...); CoLA is noisy, so the median is reported."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Load checkpoints that carry their own code."})

    def __post_init__(self):
        if self.num_seeds < 1:
            raise ScratchError(f"--num_seeds must be at least 1, got {self.num_seeds}")
        if self.max_seq_length < 3:
            raise ScratchError(
                f"--max_seq_length must be at least 3 ([CLS], a token, [SEP]), got {self.max_seq_length}"
            )
        if (self.train_file is None) != (self.validation_file is None):
            raise ScratchError("give both --train_file and --validation_file, or neither (GLUE from the Hub)")


def load_cola(args: ColaArguments) -> datasets.DatasetDict:
    if args.train_file:
        return datasets.DatasetDict(
            train=load_classification_file(args.train_file, "--train_file"),
            validation=load_classification_file(args.validation_file, "--validation_file"),
        )
    require_hub(
        f"CoLA from {args.dataset_name} ({args.dataset_config_name})",
        fix="pass --train_file and --validation_file with local copies",
    )
    return datasets.load_dataset(args.dataset_name, args.dataset_config_name).select_columns([SENTENCE, LABEL])


def main(cola_args: ColaArguments, training_args: FinetuneArguments) -> dict:
    setup_run(training_args)
    out = Path(training_args.output_dir)
    with hold_output_dir(out, enabled=training_args.process_index == 0):
        guard_output_dir(out, training_args.overwrite_output_dir)
        return finetune_on_cola(cola_args, training_args, out)


def finetune_on_cola(cola_args: ColaArguments, training_args: FinetuneArguments, out: Path) -> dict:
    # ----- Data and tokenizer ------------------------------------------------------------------
    raw = load_cola(cola_args)
    if cola_args.max_train_samples:
        raw["train"] = raw["train"].select(range(min(cola_args.max_train_samples, len(raw["train"]))))
    model_path = Path(cola_args.model_name_or_path)
    if not model_path.exists():
        require_hub(f"model {cola_args.model_name_or_path} (not a local directory)", fix="check the path")
    elif not (model_path / "config.json").is_file():
        raise ScratchError(
            f"--model_name_or_path {model_path} is not a model folder (no config.json): pass a pretraining run's "
            "output_dir or one of its checkpoint-N folders"
        )
    tokenizer = AutoTokenizer.from_pretrained(
        cola_args.model_name_or_path, trust_remote_code=cola_args.trust_remote_code
    )
    config = AutoConfig.from_pretrained(cola_args.model_name_or_path, trust_remote_code=cola_args.trust_remote_code)
    check_tokenizer_fits(tokenizer, config, cola_args.model_name_or_path)
    positions = getattr(config, "max_position_embeddings", None)
    if positions and cola_args.max_seq_length > positions:
        raise ScratchError(
            f"--max_seq_length {cola_args.max_seq_length} is longer than the {positions} positions of "
            f"{cola_args.model_name_or_path}: pass --max_seq_length {positions} or less"
        )
    encoded = raw.map(
        lambda b: tokenizer(b[SENTENCE], truncation=True, max_length=cola_args.max_seq_length),
        batched=True,
        remove_columns=[SENTENCE],
    )

    # ----- Fine-tune once per seed -------------------------------------------------------------
    per_seed = []
    for seed in range(training_args.seed, training_args.seed + cola_args.num_seeds):
        set_seed(seed)
        model = load_classifier(
            cola_args.model_name_or_path, cola_args.trust_remote_code, report=seed == training_args.seed
        )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        args = dataclasses.replace(training_args, seed=seed, output_dir=str(out / f"seed-{seed}"), push_to_hub=False)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=encoded["train"],
            eval_dataset=encoded["validation"],
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=classification_metrics(),
        )
        with trackers_that_fail_to_start(args.report_to):
            trainer.train()
        metrics = trainer.evaluate()
        trainer.save_model()
        per_seed.append({"seed": seed, **{k: metrics[k] for k in ("eval_matthews_correlation", "eval_accuracy")}})
        logger.info("seed %d: MCC %.4f, accuracy %.4f", seed, *list(per_seed[-1].values())[1:])
        if warning := one_class_warning(seed, metrics):
            logger.warning(warning)

    # ----- Keep the median seed's model; write results and the model card ----------------------
    summary = summarise_seeds(per_seed)
    if not training_args.should_save:  # other processes of a distributed run leave the files to the main one
        return summary
    median_seed = keep_median_seed(out, summary)
    summary.update(model=cola_args.model_name_or_path, saved_seed=median_seed)
    (out / "eval_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    append_to_model_card(out, cola_args.model_name_or_path, summary)
    logger.info(
        "CoLA: median MCC %.4f over %d seed(s) (each: %s); model of seed %d saved in %s",
        summary["median_matthews_correlation"],
        len(per_seed),
        ", ".join(f"{r['eval_matthews_correlation']:.3f}" for r in per_seed),
        median_seed,
        out,
    )
    if training_args.push_to_hub:
        upload_folder(out, training_args)
    return summary


def cli(argv: list[str]) -> None:
    main(*parse_config((ColaArguments, FinetuneArguments), argv, default_config=DEFAULT_CONFIG))


if __name__ == "__main__":
    run_cli(cli)
