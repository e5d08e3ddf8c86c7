"""What is pretrained, decided in one place: next-token prediction (causal) or BERT's masked tokens (masked).

An objective fixes the settings a recipe parses, how documents are packed, which special tokens the
tokenizer must have, the collator, which model families it builds, how the unigram bar is computed,
the evaluation metrics, whether samples are drawn, and the model card's pipeline tag. Recipes, tools,
benchmarks and the card ask it; a config names it (`objective: causal|masked`) rather than being guessed at.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from .arguments import (
    CausalLMArguments,
    DataArguments,
    EncoderModelArguments,
    MaskingArguments,
    PretrainingArguments,
    TokenizerArguments,
)
from .config import flag_names, load_yaml_config, parse_config, read_config_file, split_config_flag
from .data import LMData, PackingSpec
from .data.packing import unigram_cross_entropy
from .errors import ScratchError
from .models import build_model, load_model_to_train, name_the_causal_loss


@dataclass(frozen=True)
class Objective(ABC):
    name: str
    settings: tuple[type, ...]  # the recipe's setting dataclasses, in parsing order, training arguments last
    required_special_tokens: tuple[str, ...]
    pipeline_tag: str  # for the model card
    auto_class: str  # the stock Auto class that loads the pretrained model

    @property
    def causal(self) -> bool:
        return self.name == "causal"

    @abstractmethod
    def packing(
        self, tokenizer: PreTrainedTokenizerBase, block_size: int, document_aligned: bool = False
    ) -> PackingSpec:
        """How documents become blocks (`document_aligned`: each training block starts at a document)."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase, settings: RunSettings):
        """Turns blocks into model inputs and labels."""

    def check(self, settings: RunSettings) -> None:  # noqa: B027 (most objectives accept every setting)
        """Settings this objective cannot train with, refused before anything runs."""

    def build_model(self, model_args, tokenizer: PreTrainedTokenizerBase, block_size: int):
        """A fresh model of the configured family, or the trained one `--init_from` names."""
        if model_args.init_from:
            return load_model_to_train(model_args, self.name, tokenizer, block_size)
        return build_model(model_args, tokenizer, block_size)

    @abstractmethod
    def unigram_loss(self, data: LMData, tokenizer: PreTrainedTokenizerBase) -> float:
        """The held-out loss of a unigram model fitted on the training tokens: the bar to clear."""

    def chars_per_token(self, data: LMData) -> float | None:
        """For bits per character, when every token is scored (causal LMs only)."""
        return None

    def bytes_per_token(self, data: LMData) -> float | None:
        """For bits per byte, likewise."""
        return None

    # Whether evaluation needs only the loss (the default of --prediction_loss_only); metrics that need the
    # predictions turn it off.
    loss_only_evaluation: ClassVar[bool] = True

    def trainer_options(self) -> dict:
        """Extra Trainer arguments: evaluation metrics and what evaluation keeps of the logits."""
        return {}


class CausalObjective(Objective):
    def packing(self, tokenizer, block_size, document_aligned=False):
        return PackingSpec(block_size, tokenizer.eos_token_id, document_aligned=document_aligned)

    def check(self, settings):
        if settings.training.fused_loss and settings.model.logit_softcap is not None:
            raise ScratchError(
                "--fused_loss computes the loss without the model's logits, so it would skip --logit_softcap: "
                "drop one of them"
            )

    def collator(self, tokenizer, settings):
        return DataCollatorForLanguageModeling(tokenizer, mlm=False)

    def build_model(self, model_args, tokenizer, block_size):
        model = super().build_model(model_args, tokenizer, block_size)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        return name_the_causal_loss(model)

    def unigram_loss(self, data, tokenizer):
        return unigram_cross_entropy(data.unigram_counts, data.validation)

    def chars_per_token(self, data):
        return data.stats.chars_per_token

    def bytes_per_token(self, data):
        return data.stats.bytes_per_token


class MaskedObjective(Objective):
    def packing(self, tokenizer, block_size, document_aligned=False):
        """BERT's layout: `[CLS] ... [SEP]` around every block, `[SEP]` between documents."""
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        return PackingSpec(block_size, sep, (cls,), (sep,), document_aligned=document_aligned)

    def collator(self, tokenizer, settings):
        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=settings.masking.mlm_probability)

    def check(self, settings):
        if settings.tokenizer.special_tokens_style != "bert":
            raise ScratchError("a masked LM needs [CLS]/[SEP]/[MASK]: set special_tokens_style: bert")
        if settings.training.fused_loss:
            raise ScratchError("--fused_loss is for causal models only: drop it from a masked-LM run")

    def unigram_loss(self, data, tokenizer):
        return unigram_cross_entropy(
            data.unigram_counts, data.validation, skip_first=0, exclude_ids=tokenizer.all_special_ids
        )

    loss_only_evaluation = False  # masked-token accuracy needs the (arg-maxed) predictions

    def trainer_options(self):
        return {"compute_metrics": masked_token_accuracy, "preprocess_logits_for_metrics": _argmax_logits}


def masked_token_accuracy(eval_pred) -> dict[str, float]:
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    scored = labels != -100
    return {"accuracy": float((predictions[scored] == labels[scored]).mean()) if scored.any() else 0.0}


def _argmax_logits(logits, labels):
    return logits.argmax(dim=-1)  # keeps evaluation from gathering (blocks x positions x vocab) floats


OBJECTIVES: dict[str, Objective] = {
    "causal": CausalObjective(
        "causal",
        (CausalLMArguments, TokenizerArguments, DataArguments, PretrainingArguments),
        ("eos_token", "pad_token"),
        "text-generation",
        "AutoModelForCausalLM",
    ),
    "masked": MaskedObjective(
        "masked",
        (EncoderModelArguments, TokenizerArguments, DataArguments, MaskingArguments, PretrainingArguments),
        ("cls_token", "sep_token", "mask_token", "pad_token"),
        "fill-mask",
        "AutoModelForMaskedLM",
    ),
}


# ---------------------------------------------------------------------------------------------
# A run's settings, parsed for its objective
# ---------------------------------------------------------------------------------------------
@dataclass
class RunSettings:
    objective: Objective
    parsed: tuple  # one instance of each of `objective.settings`, in that order
    model: CausalLMArguments | EncoderModelArguments = field(init=False)
    tokenizer: TokenizerArguments = field(init=False)
    data: DataArguments = field(init=False)
    training: PretrainingArguments = field(init=False)
    masking: MaskingArguments | None = field(init=False)
    # "its corpus, X": the config file's, when the run keeps that file's sample_prompts but trains on a corpus its flags
    # name: the prompts were written for the other corpus (`recipe.sample_prompts_of_the_run` checks them).
    prompts_written_for: str | None = None

    def __post_init__(self):
        by_type = {type(s): s for s in self.parsed}
        self.model, self.tokenizer, self.data, self.training = (
            self.parsed[0],
            self.parsed[1],
            self.parsed[2],
            self.parsed[-1],
        )
        self.masking = by_type.get(MaskingArguments)


def _named_objective(argv: list[str], default_config) -> tuple[str | None, str]:
    """The objective named by `--objective` or by the config's `objective` key, and where it was named."""
    config_path, flags = split_config_flag(argv)
    for i, flag in enumerate(flags):
        if flag == "--objective" and i + 1 < len(flags):
            return flags[i + 1], "--objective"
        if flag.startswith("--objective="):
            return flag.split("=", 1)[1], "--objective"
    path = config_path or default_config
    if path:
        named = load_yaml_config(path).get("objective")
        if named is not None:
            return str(named), f"config file {path}"
    return None, ""


CORPUS_SETTINGS = ("corpus", "train_files", "dataset_name", "dataset_config_name", "prepared_data")


def corpus_of_the_config_prompts(argv: list[str], default_config, data: DataArguments) -> str | None:
    """The config file's corpus, where the file gives the sample_prompts and flags give another corpus."""
    _, config, cli_flags = read_config_file(argv, default_config)
    flagged = flag_names(cli_flags)
    if "sample_prompts" not in config or "sample_prompts" in flagged:
        return None

    def moved(key: str) -> bool:
        given = config.get(key)
        given = [given] if isinstance(given, str) and isinstance(getattr(data, key), list) else given
        return key in flagged and getattr(data, key) != given

    if not any(moved(key) for key in CORPUS_SETTINGS):
        return None
    named = [f"{key} {config[key]}" if key != "corpus" else config[key] for key in CORPUS_SETTINGS if config.get(key)]
    return f"its corpus, {', '.join(named)}" if named else "its default corpus"


def parse_run_settings(
    argv: list[str], objective: str | None = None, default_config=None, script: str | None = None
) -> RunSettings:
    """Parse a pretraining run's settings. A recipe script passes its own `objective`; a tool reads it
    from the config (or `--objective`), so the settings are always those of the named objective."""
    named, where = _named_objective(argv, default_config)
    if named is not None and named not in OBJECTIVES:
        raise ScratchError(f"{where}: objective {named!r} is not one of {', '.join(OBJECTIVES)}")
    if objective is not None and named is not None and named != objective:
        raise ScratchError(
            f"{where} names objective {named}, but {script or 'this recipe'} pretrains a {objective} "
            f"LM: run it with the {named} recipe, or fix the config"
        )
    name = objective or named
    if name is None:
        raise ScratchError(
            f"config {default_config or split_config_flag(argv)[0]} does not name its objective: add "
            "`objective: causal` (GPT-style) or `objective: masked` (BERT-style) to it, or pass "
            "--objective"
        )
    chosen = OBJECTIVES[name]
    settings = RunSettings(chosen, parse_config(chosen.settings, argv, default_config=default_config))
    settings.prompts_written_for = corpus_of_the_config_prompts(argv, default_config, settings.data)
    settings.training.objective = name
    if settings.training.prediction_loss_only is None:
        settings.training.prediction_loss_only = chosen.loss_only_evaluation
    chosen.check(settings)
    init_from, output_dir = settings.model.init_from, Path(settings.training.output_dir)
    if (
        init_from
        and Path(init_from).exists()
        and output_dir.resolve() in (Path(init_from).resolve(), *Path(init_from).resolve().parents)
    ):
        raise ScratchError(
            f"--init_from {init_from} is in --output_dir {output_dir}: the run would write over the model it starts "
            "from; choose another --output_dir"
        )
    return settings
