"""The model card (README.md with Hub metadata) of a pretrained model: one template, filled from the run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .data.builtin import BUILTIN_CORPORA
from .export import exports_to_gguf
from .models import FAMILIES

CARD_FILE = "README.md"
FENCE = "`" * 3

CARD = """---
{metadata}---

# {name}

A {kind} language model {origin} with scratchlm.

## Model

| | |
|---|---|
| architecture | `{model_type}` ({model_class}) |
| parameters | {parameters:,} |
| layers x width x heads | {n_layer} x {n_embd} x {n_head} |
| context | {block_size} tokens |
| vocabulary | {vocab_size:,} (padded to a multiple of {pad_vocab_to_multiple_of}) |
{blocks_row}
## Tokenizer

{tokenizer}

## Training data

{corpus}

Corpus content hash `{corpus_hash}`, tokenizer hash `{tokenizer_hash}` (full values in the run's
`run_manifest.json`).

## Training

| setting | value |
|---|---|
{training_rows}
| tokens trained | {total_tokens:,} |
| device | {device} |

The full resolved settings are in the run's `run_config.yaml`; `--config run_config.yaml` repeats the run.
Both name local paths, so they stay in the local output folder unless it was pushed with
`--hub_private_files true`.

## Results (held-out)

| metric | value |
|---|---|
{result_rows}
{unigram_line}{health}{samples}
## How to load

{fence}python
from transformers import AutoTokenizer, {auto}
tokenizer = AutoTokenizer.from_pretrained("{where}"{remote})
model = {auto}.from_pretrained("{where}"{remote})
{fence}
{remote_note}
## Use it elsewhere

- transformers 4.57 and 5.x load this folder, tokenizer included (both tested); the context is {context} tokens.
{elsewhere}
## Limitations

A small model trained on {total_tokens:,} tokens of one corpus: it imitates that corpus's style and topics, \
makes up facts, and is not instruction-tuned or filtered for safety. Use it for research and teaching, and as \
a starting point for fine-tuning.
"""

TRAINING_KEYS = (
    "optim",
    "learning_rate",
    "muon_learning_rate",
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
    "packing",
    "window_order",
    "seed",
)
RESULT_KEYS = (
    "eval_loss",
    "eval_unigram_loss",
    "eval_perplexity",
    "eval_bits_per_char",
    "eval_bits_per_byte",
    "eval_accuracy",
    "eval_minimal_pairs_accuracy",
    "eval_minimal_pairs_unigram_accuracy",
)


def _corpus_line(manifest: dict) -> str:
    """The corpus, with local files by name only: a card is published, and their folders are the user's."""
    return re.sub(r"(?<!\S)(?:~|\.{1,2})?/\S*/([^/\s]+)", r"\1", manifest.get("corpus", ""))


def _model_name(init_from: str) -> str:
    """A Hub id as it is; a local folder by its name (and its run's, for a checkpoint-N): its path is the user's."""
    path = Path(init_from)
    if not path.exists():
        return init_from
    return f"{path.parent.name}/{path.name}" if path.name.startswith("checkpoint-") else path.name


def _language(config: dict) -> str | None:
    corpus = BUILTIN_CORPORA.get(config.get("corpus") or "")
    if corpus is not None and not config.get("train_files") and not config.get("dataset_name"):
        return corpus.language
    return None


def _training_rows(config: dict) -> str:
    shown = []
    for key in TRAINING_KEYS:
        if key not in config:
            continue
        if key == "num_train_epochs" and config.get("max_steps", -1) > 0:
            continue  # the steps decide
        if key == "muon_learning_rate" and config.get("optim") != "muon":
            continue
        label = (
            "learning_rate (AdamW: embeddings, output layer, norms, biases)"
            if (key == "learning_rate" and config.get("optim") == "muon")
            else key
        )
        shown.append(f"| {label} | {config[key]} |")
    return "\n".join(shown)


def _tokenizer_line(config: dict, report: dict) -> str:
    line = (
        f"`{report.get('tokenizer_type', config.get('tokenizer_type'))}` with "
        f"`{report.get('special_tokens_style', config.get('special_tokens_style'))}` special tokens, "
        f"{report.get('vocab_size', '?')} tokens, "
        f"normalization `{report.get('normalization', config.get('normalization'))}`"
    )
    if "chars_per_token" in report:
        return line + f", {report['chars_per_token']:.3f} characters per token on held-out text."
    return line + "."


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
    ours = FAMILIES[model_type].ours
    init_from = config.get("init_from")
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": objective.pipeline_tag,
        "tags": ["scratchlm", "continued-pretraining" if init_from else "pretrained-from-scratch", model_type],
    }
    if init_from and not Path(init_from).exists():  # a Hub id: the Hub links the model to its base
        metadata["base_model"] = init_from
    if _language(config):
        metadata["language"] = [_language(config)]
    if config.get("dataset_name"):
        metadata["datasets"] = [config["dataset_name"]]
    eval_loss, unigram = metrics.get("eval_loss"), metrics.get("eval_unigram_loss")
    blocks = ""
    if ours:
        positions = f", {config.get('position_embedding')} positions" if objective.causal else ""
        levers = [
            label
            for label, on in (
                ("ReLU² MLP", config.get("hidden_act") == "relu2"),
                ("QK-norm", config.get("qk_norm")),
                ("zero-initialised output projections", config.get("zero_init_projections")),
                ("untied output layer", config.get("tie_word_embeddings") is False),
                (f"logits soft-capped at {config.get('logit_softcap')}", config.get("logit_softcap")),
            )
            if on
        ]
        blocks = f"| blocks | {config.get('norm_placement')}-norm{positions}{''.join(', ' + x for x in levers)} |\n"
    side = "below" if eval_loss is not None and unigram is not None and eval_loss <= unigram else "above"
    unigram_line = (
        f"\nThe held-out loss is {abs(unigram - eval_loss):.3f} nats/token {side} "
        f"a unigram model fitted on the training tokens ({unigram:.3f}), the bar any language model must clear.\n"
        if eval_loss is not None and unigram is not None
        else ""
    )
    health_section = ""
    if health:
        rows = "\n".join(f"| {v['check']} | {v['verdict']} | {v['message'].replace('|', '/')} |" for v in health)
        health_section = (
            f"\n## Health (at the last evaluation)\n\n| check | verdict | detail |\n|---|---|---|\n{rows}\n"
        )
    samples_section = ""
    if samples:
        listed = "\n".join(f"- {json.dumps(s, ensure_ascii=False)}" for s in samples)
        samples_section = (
            f"\n## Samples\n\nFrom fixed prompts at the end of training (temperature 0.8, top-k 50):\n\n{listed}\n"
        )
    remote_note = (
        f"\n`{model_type}` is scratchlm's own model family: its code travels with the checkpoint, hence "
        "`trust_remote_code=True` (or `import scratchlm` first, which registers it).\n"
        if ours
        else ""
    )
    context = config.get("n_positions") or config.get("block_size")
    gguf = objective.causal and exports_to_gguf(model_type, model.config.to_dict())
    learned_positions = model_type in ("gpt2", "scratch_decoder")  # the scratch_decoder that exports has them
    elsewhere = [
        "- lm-evaluation-harness: `lm_eval --model hf --model_args pretrained=FOLDER"
        + (",trust_remote_code=True" if ours else "")
        + " --tasks ...` (local tasks over your own files: scratchlm's docs/evaluation.md)."
        if objective.causal
        else "",
        ""
        if objective.causal
        else '- fill-mask: `pipeline("fill-mask", model=FOLDER'
        + (", trust_remote_code=True" if ours else "")
        + ', tokenizer_kwargs={"truncation": True})` cuts a text longer than the context to its first '
        + f"{context} tokens (a mask past them is then not found).",
        "- llama.cpp, Ollama, LM Studio: `scratchlm export FOLDER --to gguf` writes one GGUF file"
        + (
            f"; its positions are learned, so keep llama.cpp's context at most {context} tokens (`-c {context}`): "
            "past them llama.cpp stops with an assertion."
            if learned_positions
            else "."
        )
        if gguf
        else "",
        "- ONNX: `optimum-cli export onnx --model FOLDER --task "
        + ("text-generation-with-past" if objective.causal else "fill-mask")
        + ' OUT` exports the model and its tokenizer (`pip install "optimum-onnx[onnxruntime]"`, which pins '
        "transformers below 4.58: use its own virtualenv)."
        if not ours  # optimum has ONNX configurations for stock classes only
        else "",
    ]
    return CARD.format(
        metadata=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        name=Path(config.get("output_dir", "model")).name,
        kind="causal" if objective.causal else "masked",
        origin=f"pretrained further from the weights of `{_model_name(init_from)}`"
        if init_from
        else "pretrained from scratch",
        model_type=model_type,
        model_class=type(model).__name__,
        parameters=summary["parameters"],
        n_layer=config.get("n_layer"),
        n_embd=config.get("n_embd"),
        n_head=config.get("n_head"),
        block_size=config.get("block_size"),
        vocab_size=model.config.vocab_size,
        pad_vocab_to_multiple_of=config.get("pad_vocab_to_multiple_of"),
        blocks_row=blocks,
        tokenizer=_tokenizer_line(config, tokenizer_report or {}),
        corpus=_corpus_line(manifest),
        corpus_hash=manifest["corpus_fingerprint"][:16],
        tokenizer_hash=manifest["tokenizer_fingerprint"][:16],
        training_rows=_training_rows(config),
        total_tokens=summary["total_tokens"],
        device=manifest["device"],
        result_rows="\n".join(f"| {k} | {metrics[k]:.4f} |" for k in RESULT_KEYS if k in metrics),
        unigram_line=unigram_line,
        health=health_section,
        samples=samples_section,
        fence=FENCE,
        auto=objective.auto_class,
        # The Hub id when the run pushes, else the local folder it was saved in.
        where=config.get("hub_model_id") or config.get("output_dir") or ".",
        remote=", trust_remote_code=True" if ours else "",
        remote_note=remote_note,
        context=context,
        elsewhere="".join(line + "\n" for line in elsewhere if line),
    )
