"""Publishing to the Hub: what gets uploaded, the model card, and failing fast when the Hub is away."""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import yaml

from .corpus import BUILTIN_CORPORA, require_hub
from .errors import ScratchError

# The patterns Trainer.push_to_hub leaves out; our quarantined checkpoints start with "_" for this reason.
UPLOAD_IGNORE = ["_*", "checkpoint-*"]
CARD_FILE = "README.md"
OUR_FAMILIES = ("scratch_decoder", "scratch_encoder")


def files_to_upload(out: Path) -> list[str]:
    """The files a push uploads from `out`: everything but checkpoints and `_*`."""
    files = [str(p.relative_to(out)) for p in sorted(out.rglob("*")) if p.is_file()]
    return [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in UPLOAD_IGNORE)]


def check_push_possible(args) -> None:
    """Fail at the start, not after hours of training, when --push_to_hub cannot work."""
    if args.push_to_hub:
        require_hub("--push_to_hub", fix="drop --push_to_hub (everything is saved in --output_dir; upload it later "
                    "with `hf upload REPO_ID OUTPUT_DIR`)")


def push_failed(out: Path, repo: str | None, err: Exception) -> ScratchError:
    first_line = (str(err).strip().splitlines() or [""])[0]
    return ScratchError(f"pushing {out} to the Hub ({repo or 'repo named after output_dir'}) failed "
                        f"({type(err).__name__}: {first_line}); the model is saved locally in {out}: upload it "
                        f"later with `hf upload {repo or 'REPO_ID'} {out}`")


def upload_folder(out: Path, args) -> None:
    """Push a finished output folder (recipes whose Trainer does not own the folder, as CoLA)."""
    from huggingface_hub import HfApi

    repo = args.hub_model_id or out.name
    try:
        api = HfApi(token=args.hub_token)
        repo_id = api.create_repo(repo, private=args.hub_private_repo, exist_ok=True).repo_id
        api.upload_folder(repo_id=repo_id, folder_path=str(out), ignore_patterns=UPLOAD_IGNORE,
                          commit_message="scratchlm: fine-tuned model")
    except Exception as err:  # network, auth, quota: the local folder is complete either way
        raise push_failed(out, repo, err) from err


# ---------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------
def _language(config: dict) -> str | None:
    corpus = BUILTIN_CORPORA.get(config.get("corpus") or "")
    if corpus is not None and not config.get("train_files") and not config.get("dataset_name"):
        return corpus.language
    return None


def pretraining_card(manifest: dict, model, metrics: dict, summary: dict, samples: list[str],
                     tokenizer_report: dict | None) -> str:
    """README.md with Hub metadata for a pretrained model: what it is, how it was made, how good, how to load."""
    config, model_type = manifest["config"], model.config.model_type
    causal = "mlm_probability" not in config
    ours = model_type in OUR_FAMILIES
    metadata = {"library_name": "transformers", "pipeline_tag": "text-generation" if causal else "fill-mask",
                "tags": ["scratchlm", "pretrained-from-scratch", model_type]}
    if _language(config):
        metadata["language"] = [_language(config)]
    if config.get("dataset_name"):
        metadata["datasets"] = [config["dataset_name"]]
    auto = "AutoModelForCausalLM" if causal else "AutoModelForMaskedLM"
    remote = ", trust_remote_code=True" if ours else ""
    eval_loss, unigram = metrics.get("eval_loss"), metrics.get("eval_unigram_loss")
    name = Path(config.get("output_dir", "model")).name

    lines = [f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---", "", f"# {name}", "",
             f"A {'causal' if causal else 'masked'} language model pretrained from scratch with "
             f"[scratchlm](https://github.com/scratchlm/scratchlm).", "", "## Model", "",
             "| | |", "|---|---|",
             f"| architecture | `{model_type}` ({type(model).__name__}) |",
             f"| parameters | {summary['parameters']:,} |",
             f"| layers x width x heads | {config.get('n_layer')} x {config.get('n_embd')} x {config.get('n_head')} |",
             f"| context | {config.get('block_size')} tokens |",
             f"| vocabulary | {model.config.vocab_size:,} (padded to a multiple of {config.get('pad_vocab_to_multiple_of')}) |"]
    if ours:
        lines.append(f"| blocks | {config.get('norm_placement')}-norm"
                     + (f", {config.get('position_embedding')} positions |" if causal else " |"))
    lines += ["", "## Tokenizer", ""]
    report = tokenizer_report or {}
    lines.append(f"`{report.get('tokenizer_type', config.get('tokenizer_type'))}` with "
                 f"`{report.get('special_tokens_style', config.get('special_tokens_style'))}` special tokens, "
                 f"{report.get('vocab_size', '?')} tokens, normalization `{report.get('normalization', config.get('normalization'))}`"
                 + (f", {report['chars_per_token']:.3f} characters per token on held-out text." if "chars_per_token" in report
                    else "."))
    lines += ["", "## Training data", "", manifest.get("corpus", ""), "",
              f"Corpus content hash `{manifest['corpus_fingerprint'][:16]}`, tokenizer hash "
              f"`{manifest['tokenizer_fingerprint'][:16]}` (full values in `run_manifest.json`).", "",
              "## Training", "", "| setting | value |", "|---|---|"]
    for key in ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta2",
                "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "num_train_epochs",
                "mlm_probability", "dropout", "seed"):
        if key in config and not (key == "num_train_epochs" and config.get("max_steps", -1) > 0):
            lines.append(f"| {key} | {config[key]} |")
    lines += [f"| tokens trained | {summary['total_tokens']:,} |", f"| device | {manifest['device']} |", "",
              "The full resolved settings are in `run_config.yaml`; `--config run_config.yaml` repeats the run.", "",
              "## Results (held-out)", "", "| metric | value |", "|---|---|"]
    for key in ("eval_loss", "eval_unigram_loss", "eval_perplexity", "eval_bits_per_char", "eval_accuracy"):
        if key in metrics:
            lines.append(f"| {key} | {metrics[key]:.4f} |")
    if eval_loss is not None and unigram is not None:
        lines += ["", f"The held-out loss is {unigram - eval_loss:.3f} nats/token below a unigram model fitted on the "
                  f"training tokens ({unigram:.3f}), the bar any language model must clear."]
    if samples:
        lines += ["", "## Samples", "", "From fixed prompts at the end of training (temperature 0.8, top-k 50):", ""]
        lines += [f"- {json.dumps(s, ensure_ascii=False)}" for s in samples]
    # The Hub id when the run pushes, else the local folder it was saved in.
    where = config.get("hub_model_id") or config.get("output_dir") or "."
    lines += ["", "## How to load", "", "```python", "from transformers import AutoTokenizer, " + auto,
              f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
              f'model = {auto}.from_pretrained("{where}"{remote})', "```", ""]
    if ours:
        lines += [f"`{model_type}` is scratchlm's own model family: its code travels with the checkpoint, hence "
                  "`trust_remote_code=True` (or `import scratchlm` first, which registers it).", ""]
    lines += ["## Limitations", "",
              f"A small model trained on {summary['total_tokens']:,} tokens of one corpus: it imitates that corpus's "
              "style and topics, makes up facts, and is not instruction-tuned or filtered for safety. Use it for "
              "research and teaching, and as a starting point for fine-tuning.", ""]
    return "\n".join(lines)
