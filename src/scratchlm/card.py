"""The model card (README.md with Hub metadata) of a pretrained model."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .data.builtin import BUILTIN_CORPORA
from .models import FAMILIES

CARD_FILE = "README.md"


def _language(config: dict) -> str | None:
    corpus = BUILTIN_CORPORA.get(config.get("corpus") or "")
    if corpus is not None and not config.get("train_files") and not config.get("dataset_name"):
        return corpus.language
    return None


def pretraining_card(
    objective,
    manifest: dict,
    model,
    metrics: dict,
    summary: dict,
    samples: list[str],
    tokenizer_report: dict | None,
    health: list[dict] | None = None,
) -> str:
    """README.md with Hub metadata for a pretrained model: what it is, how it was made, how good, how to load."""
    config, model_type = manifest["config"], model.config.model_type
    causal = objective.causal
    ours = FAMILIES[model_type].ours
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": objective.pipeline_tag,
        "tags": ["scratchlm", "pretrained-from-scratch", model_type],
    }
    if _language(config):
        metadata["language"] = [_language(config)]
    if config.get("dataset_name"):
        metadata["datasets"] = [config["dataset_name"]]
    auto = objective.auto_class
    remote = ", trust_remote_code=True" if ours else ""
    eval_loss, unigram = metrics.get("eval_loss"), metrics.get("eval_unigram_loss")
    name = Path(config.get("output_dir", "model")).name

    lines = [
        f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---",
        "",
        f"# {name}",
        "",
        f"A {'causal' if causal else 'masked'} language model pretrained from scratch with "
        f"[scratchlm](https://github.com/scratchlm/scratchlm).",
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{model_type}` ({type(model).__name__}) |",
        f"| parameters | {summary['parameters']:,} |",
        f"| layers x width x heads | {config.get('n_layer')} x {config.get('n_embd')} x {config.get('n_head')} |",
        f"| context | {config.get('block_size')} tokens |",
        f"| vocabulary | {model.config.vocab_size:,} "
        f"(padded to a multiple of {config.get('pad_vocab_to_multiple_of')}) |",
    ]
    if ours:
        lines.append(
            f"| blocks | {config.get('norm_placement')}-norm"
            + (f", {config.get('position_embedding')} positions |" if causal else " |")
        )
    lines += ["", "## Tokenizer", ""]
    report = tokenizer_report or {}
    lines.append(
        f"`{report.get('tokenizer_type', config.get('tokenizer_type'))}` with "
        f"`{report.get('special_tokens_style', config.get('special_tokens_style'))}` special tokens, "
        f"{report.get('vocab_size', '?')} tokens, "
        f"normalization `{report.get('normalization', config.get('normalization'))}`"
        + (
            f", {report['chars_per_token']:.3f} characters per token on held-out text."
            if "chars_per_token" in report
            else "."
        )
    )
    lines += [
        "",
        "## Training data",
        "",
        manifest.get("corpus", ""),
        "",
        f"Corpus content hash `{manifest['corpus_fingerprint'][:16]}`, tokenizer hash "
        f"`{manifest['tokenizer_fingerprint'][:16]}` (full values in `run_manifest.json`).",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key in (
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "adam_beta2",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_steps",
        "num_train_epochs",
        "mlm_probability",
        "dropout",
        "seed",
    ):
        if key in config and not (key == "num_train_epochs" and config.get("max_steps", -1) > 0):
            lines.append(f"| {key} | {config[key]} |")
    lines += [
        f"| tokens trained | {summary['total_tokens']:,} |",
        f"| device | {manifest['device']} |",
        "",
        "The full resolved settings are in `run_config.yaml`; `--config run_config.yaml` repeats the run.",
        "",
        "## Results (held-out)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in ("eval_loss", "eval_unigram_loss", "eval_perplexity", "eval_bits_per_char", "eval_accuracy"):
        if key in metrics:
            lines.append(f"| {key} | {metrics[key]:.4f} |")
    if eval_loss is not None and unigram is not None:
        lines += [
            "",
            f"The held-out loss is {unigram - eval_loss:.3f} nats/token below a unigram model fitted on the "
            f"training tokens ({unigram:.3f}), the bar any language model must clear.",
        ]
    if health:
        lines += ["", "## Health (at the last evaluation)", "", "| check | verdict | detail |", "|---|---|---|"]
        lines += [f"| {v['check']} | {v['verdict']} | {v['message'].replace('|', '/')} |" for v in health]
    if samples:
        lines += ["", "## Samples", "", "From fixed prompts at the end of training (temperature 0.8, top-k 50):", ""]
        lines += [f"- {json.dumps(s, ensure_ascii=False)}" for s in samples]
    # The Hub id when the run pushes, else the local folder it was saved in.
    where = config.get("hub_model_id") or config.get("output_dir") or "."
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from transformers import AutoTokenizer, " + auto,
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        f'model = {auto}.from_pretrained("{where}"{remote})',
        "```",
        "",
    ]
    if ours:
        lines += [
            f"`{model_type}` is scratchlm's own model family: its code travels with the checkpoint, hence "
            "`trust_remote_code=True` (or `import scratchlm` first, which registers it).",
            "",
        ]
    lines += [
        "## Limitations",
        "",
        f"A small model trained on {summary['total_tokens']:,} tokens of one corpus: it imitates that corpus's "
        "style and topics, makes up facts, and is not instruction-tuned or filtered for safety. Use it for "
        "research and teaching, and as a starting point for fine-tuning.",
        "",
    ]
    return "\n".join(lines)
