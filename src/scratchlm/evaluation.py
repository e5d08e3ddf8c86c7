"""What did the model learn? Linguistic minimal pairs and bits per byte, for a finished model or a checkpoint.

A minimal pair is two sentences that differ in one grammatical point ("The cats sleep" / "The cats sleeps").
The model gets a pair right when it gives the grammatical sentence the higher probability: the sum of its
token log-probabilities for a causal LM, the pseudo-log-likelihood (each token masked in turn) for a masked
LM. The files are BLiMP's jsonl format (`sentence_good`, `sentence_bad`, and optional grouping fields).
Beside the model's accuracy stands the bar that word frequencies alone reach: the same pairs scored by a
unigram model of the training tokens, a tie counting half.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.utils.logging import tqdm  # quiet off a terminal, as the CLI sets it

from .data.files import not_utf8_advice
from .errors import ScratchError

logger = logging.getLogger("scratchlm")

EVAL_FILE = "scratchlm_eval.json"
UNIGRAM_COUNTS_FILE = "unigram_counts.npy"
CARD_SECTION = "## Evaluation"
PAIR_KEYS = ("sentence_good", "sentence_bad")
# Grouping fields, most specific first: BLiMP names its paradigms UID and its phenomena linguistics_term.
PARADIGM_KEYS = ("UID", "paradigm")
PHENOMENON_KEYS = ("linguistics_term", "phenomenon", "field")
# `scratchlm eval --text`: tokens per forward pass; at the demo's shape a text is scored 1.11 (vocab 8k) to
# 1.78 (vocab 4k) times as fast as one window at a time, and 2,048 was no faster (`benchmarks/eval_speed.py`).
TEXT_TOKENS_PER_BATCH = 1024


@dataclass
class Paradigm:
    name: str
    phenomenon: str
    pairs: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading minimal pairs
# ---------------------------------------------------------------------------------------------
def _jsonl_files(spec: Path) -> list[Path]:
    if spec.is_dir():
        files = sorted(spec.glob("*.jsonl"))
        if not files:
            raise ScratchError(f"--minimal_pairs {spec}: the folder holds no .jsonl files of minimal pairs")
        return files
    return [spec]


def _read_records(path: Path) -> list[dict]:
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ScratchError(f"minimal pairs file {path} is not UTF-8 text: give a jsonl file") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ScratchError(
                f"minimal pairs file {path} line {number} is not JSON: each line must be an object with "
                "sentence_good and sentence_bad (BLiMP's jsonl format)"
            ) from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in PAIR_KEYS):
            raise ScratchError(
                f"minimal pairs file {path} line {number} has no sentence_good and sentence_bad strings: "
                "each line must be an object with both (BLiMP's jsonl format)"
            )
        records.append(record)
    if not records:
        raise ScratchError(f"minimal pairs file {path} is empty: give a jsonl file with one pair per line")
    return records


def _group(records: list[dict], default_paradigm: str) -> list[Paradigm]:
    by_name: dict[str, Paradigm] = {}
    for record in records:
        name = next((str(record[k]) for k in PARADIGM_KEYS if record.get(k)), default_paradigm)
        phenomenon = next((str(record[k]) for k in PHENOMENON_KEYS if record.get(k)), name)
        paradigm = by_name.setdefault(name, Paradigm(name, phenomenon))
        paradigm.pairs.append((record["sentence_good"], record["sentence_bad"]))
    return list(by_name.values())


def load_minimal_pairs(spec: str) -> list[Paradigm]:
    """Paradigms from a folder of jsonl files, one jsonl file, or (online) a Hub dataset with the same fields."""
    path = Path(spec)
    if path.exists():
        paradigms = []
        for file in _jsonl_files(path):
            paradigms += _group(_read_records(file), file.stem)
        return paradigms
    from .hub import require_hub

    require_hub(f"--minimal_pairs {spec} (not a local file or folder)", fix="check the path, or give local jsonl files")
    import datasets

    try:
        rows = datasets.load_dataset(spec, split="train")
    except Exception as err:
        raise ScratchError(
            f"--minimal_pairs {spec}: could not load it from the Hub: {err}".replace("\n", " ")
        ) from None
    missing = [k for k in PAIR_KEYS if k not in rows.column_names]
    if missing:
        raise ScratchError(f"--minimal_pairs {spec} has no {', '.join(missing)} column: it is not minimal pairs")
    return _group(list(rows), spec.split("/")[-1])


def sample_pairs(paradigms: list[Paradigm], per_paradigm: int, seed: int) -> list[Paradigm]:
    """At most `per_paradigm` pairs of each paradigm, the same ones for a given seed."""
    rng = random.Random(seed)
    return [
        Paradigm(p.name, p.phenomenon, rng.sample(p.pairs, per_paradigm) if len(p.pairs) > per_paradigm else p.pairs)
        for p in paradigms
    ]


# ---------------------------------------------------------------------------------------------
# Scoring sentences
# ---------------------------------------------------------------------------------------------
def _start_id(tokenizer) -> int:
    for name in ("bos_token_id", "eos_token_id", "cls_token_id"):
        if getattr(tokenizer, name, None) is not None:
            return getattr(tokenizer, name)
    raise ScratchError("the tokenizer has no bos, eos or cls token to start a sentence with")


def _encode(tokenizer, sentences: Sequence[str]) -> list[list[int]]:
    ids = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in sentences]
    empty = [s for s, i in zip(sentences, ids) if not i]
    if empty:
        raise ScratchError(f"the tokenizer turns the sentence {empty[0]!r} into no tokens: it cannot score it")
    return ids


def _max_positions(model) -> int | None:
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@torch.no_grad()
def causal_log_probs(model, tokenizer, sentences: Sequence[str], batch_size: int = 32) -> list[tuple[float, int]]:
    """(sum of token log-probabilities, tokens scored) of each sentence, after the start token."""
    device = next(model.parameters()).device
    start = _start_id(tokenizer)
    limit = _max_positions(model)
    rows = [[start, *ids] for ids in _encode(tokenizer, sentences)]
    if limit is not None:
        rows = [row[-limit:] for row in rows]  # a sentence longer than the context: its end is scored
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    by_length = sorted(range(len(rows)), key=lambda r: len(rows[r]))  # batches of like lengths: little padding
    for first in range(0, len(rows), batch_size):
        batch = by_length[first : first + batch_size]
        width = max(len(rows[r]) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, : len(rows[r])] = torch.tensor(rows[r])
            mask[i, : len(rows[r])] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (batch, width, vocab)
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts positions 1..width-1
        picked = log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]  # (batch, width-1)
        for i, r in enumerate(batch):
            results[r] = (float(picked[i].sum()), len(rows[r]) - 1)
    return results


@torch.no_grad()
def masked_log_probs(model, tokenizer, sentences: Sequence[str], batch_size: int = 128) -> list[tuple[float, int]]:
    """Pseudo-log-likelihood of each sentence: every token masked in turn, the copies of all sentences batched."""
    device = next(model.parameters()).device
    cls, sep, mask_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    if None in (cls, sep, mask_id):
        raise ScratchError("a masked LM's tokenizer needs [CLS], [SEP] and [MASK] to score sentences")
    limit = _max_positions(model)
    rows = []
    for ids in _encode(tokenizer, sentences):
        if limit is not None:
            ids = ids[: limit - 2]
        rows.append([cls, *ids, sep])
    # One masked copy per scored token: (sentence, position) pairs, run in batches of copies of like lengths.
    copies = [(s, pos) for s, row in enumerate(rows) for pos in range(1, len(row) - 1)]
    copies.sort(key=lambda copy: len(rows[copy[0]]))
    totals = [0.0] * len(rows)
    for first in range(0, len(copies), batch_size):
        chunk = copies[first : first + batch_size]
        width = max(len(rows[s]) for s, _ in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        attention = torch.zeros(len(chunk), width, dtype=torch.long)
        targets = []
        for i, (s, pos) in enumerate(chunk):
            row = rows[s]
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            targets.append(row[pos])
            ids[i, pos] = mask_id
        ids, attention = ids.to(device), attention.to(device)
        logits = model(input_ids=ids, attention_mask=attention).logits.float()  # (copies, width, vocab)
        positions = torch.tensor([pos for _, pos in chunk], device=device)
        rows_logits = logits[torch.arange(len(chunk), device=device), positions]  # (copies, vocab)
        picked = torch.log_softmax(rows_logits, dim=-1).gather(-1, torch.tensor(targets, device=device)[:, None])
        for (s, _), value in zip(chunk, picked.squeeze(-1).tolist()):
            totals[s] += value
    return [(totals[s], len(row) - 2) for s, row in enumerate(rows)]


def unigram_token_log_probs(counts: np.ndarray) -> np.ndarray:
    """Each token's log-probability under a unigram model of the training tokens (add-one smoothed, as the
    unigram bar of the held-out loss)."""
    counts = counts.astype(np.float64)
    return np.log(counts + 1.0) - math.log(counts.sum() + len(counts))


def unigram_log_probs(counts: np.ndarray, tokenizer, sentences: Sequence[str]) -> list[tuple[float, int]]:
    """The same sentences under the unigram model of the training tokens."""
    log_probs = unigram_token_log_probs(counts)
    return [(float(log_probs[ids].sum()), len(ids)) for ids in _encode(tokenizer, sentences)]


# ---------------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------------
def _right(good: float, bad: float) -> float:
    return 1.0 if good > bad else 0.5 if good == bad else 0.0


def pair_accuracy(scores: list[tuple[float, int]], normalised: bool = False) -> float:
    """Share of pairs (good, bad scores interleaved) whose good sentence scores higher; a tie counts half."""
    right = []
    for (good, n_good), (bad, n_bad) in zip(scores[0::2], scores[1::2]):
        right.append(_right(good / n_good, bad / n_bad) if normalised else _right(good, bad))
    return sum(right) / max(len(right), 1)


def score_minimal_pairs(
    model,
    tokenizer,
    paradigms: list[Paradigm],
    causal: bool,
    unigram_counts: np.ndarray | None = None,
    progress: bool = False,
) -> dict:
    """Accuracy per paradigm, per phenomenon and overall (mean over paradigms), for the model and the unigram bar;
    `progress`: a bar over the paradigms on a terminal."""
    was_training = model.training
    model.eval()
    score = causal_log_probs if causal else masked_log_probs
    per_paradigm = []
    for paradigm in tqdm(paradigms, desc="minimal pairs", unit="paradigm", disable=not progress):
        sentences = [s for pair in paradigm.pairs for s in pair]
        scores = score(model, tokenizer, sentences)
        row = {
            "paradigm": paradigm.name,
            "phenomenon": paradigm.phenomenon,
            "pairs": len(paradigm.pairs),
            "accuracy": pair_accuracy(scores),
            "accuracy_per_token": pair_accuracy(scores, normalised=True),
        }
        if unigram_counts is not None:
            row["unigram_accuracy"] = pair_accuracy(unigram_log_probs(unigram_counts, tokenizer, sentences))
        per_paradigm.append(row)
    model.train(was_training)
    metrics = [k for k in ("accuracy", "accuracy_per_token", "unigram_accuracy") if k in per_paradigm[0]]
    phenomena = {}
    for name in dict.fromkeys(r["phenomenon"] for r in per_paradigm):
        rows = [r for r in per_paradigm if r["phenomenon"] == name]
        phenomena[name] = {"paradigms": len(rows), **{k: statistics.mean(r[k] for r in rows) for k in metrics}}
    overall = {k: statistics.mean(r[k] for r in per_paradigm) for k in metrics}
    return {"overall": overall, "phenomena": phenomena, "paradigms": per_paradigm}


class MinimalPairsMetric:
    """Minimal-pair accuracy at every held-out evaluation of a run, on a fixed sample of pairs per paradigm sized
    to add about a tenth to the evaluation's tokens; logged as eval_minimal_pairs_accuracy (and its unigram bar)."""

    SHARE_OF_EVALUATION = 0.1

    def __init__(
        self,
        spec: str,
        tokenizer,
        causal: bool,
        unigram_counts,
        eval_tokens: int,
        seed: int,
        per_paradigm: int | None = None,
    ):
        paradigms = load_minimal_pairs(spec)
        if per_paradigm is None:
            sentences = [s for p in paradigms for pair in p.pairs[:5] for s in pair]
            tokens_per_pair = 2 * statistics.mean(len(ids) + 1 for ids in _encode(tokenizer, sentences))
            if not causal:
                tokens_per_pair *= tokens_per_pair / 2  # each masked copy is a whole sentence
            per_paradigm = max(1, int(self.SHARE_OF_EVALUATION * eval_tokens / (len(paradigms) * tokens_per_pair)))
        self.per_paradigm = per_paradigm
        self.paradigms = sample_pairs(paradigms, self.per_paradigm, seed)
        self.tokenizer, self.causal, self.unigram_counts = tokenizer, causal, unigram_counts
        self.pairs = sum(len(p.pairs) for p in self.paradigms)
        self.unigram: float | None = None  # the bar does not move during a run: computed once

    def __call__(self, model) -> dict[str, float]:
        result = score_minimal_pairs(model, self.tokenizer, self.paradigms, self.causal, None)
        metrics = {"eval_minimal_pairs_accuracy": result["overall"]["accuracy"]}
        if self.unigram_counts is not None:
            if self.unigram is None:
                self.unigram = statistics.mean(
                    pair_accuracy(
                        unigram_log_probs(self.unigram_counts, self.tokenizer, [s for q in p.pairs for s in q])
                    )
                    for p in self.paradigms
                )
            metrics["eval_minimal_pairs_unigram_accuracy"] = self.unigram
        return metrics


# ---------------------------------------------------------------------------------------------
# Bits per byte of a text
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def text_bits(model, tokenizer, text: str, unigram_counts: np.ndarray | None = None, progress: bool = False) -> dict:
    """The causal model's bits per byte and per character on `text`, cut into context-long windows. Special
    tokens in it (documents joined by end-of-text) are predicted like any token, but their letters are
    markup, not text: they are left out of the characters and bytes. With the training run's token counts,
    the same figures for a unigram model of them (the bar of the run's held-out loss) on the same tokens."""
    counted = text
    for special in tokenizer.all_special_tokens:
        counted = counted.replace(special, "")
    if not counted.strip():
        raise ScratchError("--text: the file has no text")
    model.eval()
    device = next(model.parameters()).device
    # verbose=False: the text is longer than the model's context on purpose, and is cut into windows below.
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    window = _max_positions(model) or 1024
    windows = [ids[i : i + window] for i in range(0, len(ids), window)]
    windows = [w for w in windows if len(w) > 1]
    # Full windows go TEXT_TOKENS_PER_BATCH tokens at a time (their loss, a mean over equal rows, times their
    # predicted tokens); a shorter last window on its own.
    full, per_batch = [w for w in windows if len(w) == window], max(1, TEXT_TOKENS_PER_BATCH // window)
    batches = [full[i : i + per_batch] for i in range(0, len(full), per_batch)]
    batches += [[w] for w in windows if len(w) < window]
    nats, predicted = 0.0, 0
    for batch in tqdm(batches, desc="text", unit="batch", disable=not progress):
        tensor = torch.tensor(batch, device=device)
        tokens = tensor.shape[0] * (tensor.shape[1] - 1)
        nats += model(input_ids=tensor, labels=tensor).loss.float().item() * tokens
        predicted += tokens
    characters, size = len(counted), len(counted.encode("utf-8"))

    def per_text(nats_per_token: float, prefix: str = "") -> dict:
        # Each window's first token is not predicted: the figure is per predicted token, scaled to the whole text.
        total_bits = nats_per_token * len(ids) / math.log(2)
        return {
            f"{prefix}nats_per_token": nats_per_token,
            f"{prefix}bits_per_char": total_bits / characters,
            f"{prefix}bits_per_byte": total_bits / size,
        }

    result = {"tokens": len(ids), "characters": characters, "bytes": size, **per_text(nats / max(predicted, 1))}
    if unigram_counts is not None:
        log_probs = unigram_token_log_probs(unigram_counts)
        predicted_ids = np.concatenate([np.asarray(row[1:]) for row in windows]) if windows else np.zeros(0, int)
        result |= per_text(float(-log_probs[predicted_ids].mean()) if len(predicted_ids) else 0.0, "unigram_")
    return result


# ---------------------------------------------------------------------------------------------
# `scratchlm eval OUTPUT_DIR`
# ---------------------------------------------------------------------------------------------
def _find_unigram_counts(model_dir: Path) -> np.ndarray | None:
    """The training run's token counts: in the run's folder, or beside a checkpoint-N in its parent."""
    for folder in (model_dir, model_dir.parent):
        path = folder / UNIGRAM_COUNTS_FILE
        if path.is_file():
            return np.load(path)
    return None


def load_for_eval(model_dir: Path, trust_remote_code: bool):
    """(model, tokenizer, causal) from a run's folder or a checkpoint, with one clear error when it is not one."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    from .models import name_the_causal_loss

    if not (model_dir / "config.json").is_file():
        raise ScratchError(
            f"{model_dir} is not a model folder (no config.json): give a run's output_dir or one of its checkpoint-N"
        )
    tokenizer_dir = model_dir if (model_dir / "tokenizer_config.json").is_file() else model_dir.parent
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        raise ScratchError(f"{model_dir} has no tokenizer (tokenizer_config.json), nor has its parent folder")
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ScratchError(f"could not load {model_dir}: {err}".replace("\n", " ")) from None
    causal = any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in config.architectures or [])
    auto = AutoModelForCausalLM if causal else AutoModelForMaskedLM
    model = auto.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if causal:
        name_the_causal_loss(model)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer, causal


def run_eval(
    model_dir: Path,
    minimal_pairs: str | None = None,
    text: Path | None = None,
    trust_remote_code: bool = False,
    per_paradigm: int | None = None,
    seed: int = 0,
) -> dict:
    """Evaluate, print nothing, write `scratchlm_eval.json` and the card's Evaluation section; return the results."""
    if minimal_pairs is None and text is None:
        raise ScratchError("nothing to evaluate: give --minimal_pairs DIR|FILE|HUB_NAME and/or --text FILE")
    if text is not None and not text.is_file():
        raise ScratchError(f"--text {text}: no such file")
    paradigms = load_minimal_pairs(minimal_pairs) if minimal_pairs else None  # bad files fail before the model loads
    if paradigms is not None and per_paradigm:
        paradigms = sample_pairs(paradigms, per_paradigm, seed)
    model, tokenizer, causal = load_for_eval(model_dir, trust_remote_code)
    results: dict = {}
    if paradigms is not None:
        counts = _find_unigram_counts(model_dir)
        pairs = sum(len(p.pairs) for p in paradigms)
        logger.info("minimal pairs: scoring %s pairs of %d paradigms", f"{pairs:,}", len(paradigms))
        results["minimal_pairs"] = {
            "source": minimal_pairs,
            **score_minimal_pairs(model, tokenizer, paradigms, causal, counts, progress=True),
        }
        if counts is None:
            results["minimal_pairs"]["unigram_bar"] = f"no {UNIGRAM_COUNTS_FILE} in {model_dir} or its parent"
    if text is not None:
        if not causal:
            raise ScratchError("--text scores a causal LM; this is a masked LM (give --minimal_pairs instead)")
        try:
            content = text.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ScratchError(f"--text {text} is not UTF-8 text: {not_utf8_advice(text)}") from None
        logger.info("text: scoring %s (%s characters)", text, f"{len(content):,}")
        results["text"] = {
            "file": str(text),
            **text_bits(model, tokenizer, content, _find_unigram_counts(model_dir), progress=True),
        }
    out = model_dir / EVAL_FILE
    previous = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    merged = {**previous, **results}
    out.write_text(json.dumps(merged, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    card = model_dir / "README.md"
    if card.is_file():
        card.write_text(with_evaluation_section(card.read_text(encoding="utf-8"), merged), encoding="utf-8")
    return merged


def format_table(results: dict) -> str:
    lines = []
    pairs = results.get("minimal_pairs")
    if pairs:
        has_bar = "unigram_accuracy" in pairs["overall"]
        lines.append(f"minimal pairs ({pairs['source']}): accuracy, mean over paradigms")
        header = "| | model | per token |" + (" unigram bar |" if has_bar else "")
        lines += [header, "|---|---|---|" + ("---|" if has_bar else "")]

        def row(name, values):
            bar = f" {values['unigram_accuracy']:.3f} |" if has_bar else ""
            return f"| {name} | {values['accuracy']:.3f} | {values['accuracy_per_token']:.3f} |{bar}"

        lines.append(row("**overall**", pairs["overall"]))
        lines += [row(name, values) for name, values in pairs["phenomena"].items()]
    text = results.get("text")
    if text:
        lines.append(
            f"{text['file']}: {text['bits_per_byte']:.4f} bits/byte, {text['bits_per_char']:.4f} bits/char "
            f"({text['tokens']:,} tokens, {text['nats_per_token']:.4f} nats/token)"
        )
        if "unigram_bits_per_byte" in text:
            gap = text["unigram_bits_per_byte"] - text["bits_per_byte"]
            lines.append(
                f"unigram bar (the training tokens' frequencies): {text['unigram_bits_per_byte']:.4f} bits/byte; "
                f"the model is {abs(gap):.4f} bits/byte {'below' if gap >= 0 else 'above'} it"
                + ("" if gap >= 0 else ": it predicts this text worse than token frequencies alone")
            )
    return "\n".join(lines)


def with_evaluation_section(card: str, results: dict) -> str:
    """The card with its Evaluation section replaced (or added before *How to load*); the rest untouched."""
    section = f"{CARD_SECTION}\n\nFrom `scratchlm eval` (all figures in `{EVAL_FILE}`):\n\n{format_table(results)}\n"
    lines = card.split("\n")
    if CARD_SECTION in lines:
        start = lines.index(CARD_SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        return "\n".join(lines[:start] + section.split("\n") + lines[end:])
    anchor = "## How to load"
    if anchor in lines:
        at = lines.index(anchor)
        return "\n".join(lines[:at] + section.split("\n") + lines[at:])
    return card.rstrip("\n") + "\n\n" + section
