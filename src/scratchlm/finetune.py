"""Sequence-classification fine-tuning pieces: CoLA files, the classifier, Matthews correlation, the card note."""

from __future__ import annotations

import csv
import logging
import shutil
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import transformers
from datasets import Dataset
from transformers import AutoModelForSequenceClassification

from .data.files import not_utf8_advice
from .errors import ScratchError

logger = logging.getLogger(__name__)

SENTENCE, LABEL = "sentence", "label"


# ---------------------------------------------------------------------------------------------
# CoLA files: the two-column tsv (sentence, label), GLUE's raw four-column tsv, csv or jsonl
# ---------------------------------------------------------------------------------------------
def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        frame = pd.read_csv(path, sep="\t", header=None, quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
        if {SENTENCE, LABEL} <= set(frame.iloc[0]):  # a header row
            frame = frame.iloc[1:].set_axis(list(frame.iloc[0]), axis=1)
        elif frame.shape[1] == 2:
            frame.columns = [SENTENCE, LABEL]
        elif frame.shape[1] == 4:  # GLUE's raw CoLA: source, label, original mark, sentence
            frame = frame.rename(columns={1: LABEL, 3: SENTENCE})
        return frame
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    raise ScratchError(f"{path}: unsupported extension; use .tsv, .csv or .jsonl")


def load_classification_file(path: str | Path, flag: str) -> Dataset:
    """Sentences with 0/1 labels, or one clear error naming the file, row and fix."""
    path = Path(path)
    if not path.is_file():
        raise ScratchError(f"{flag} {path} does not exist: check the path")
    if path.stat().st_size == 0:
        raise ScratchError(f"{flag} {path} is empty: it needs rows of sentence and label")
    try:
        frame = _read_table(path)
    except UnicodeDecodeError:
        raise ScratchError(f"{flag} {path} is not UTF-8 text: {not_utf8_advice(path)}") from None
    except (ValueError, pd.errors.ParserError) as err:
        raise ScratchError(f"{flag} {path} could not be parsed: {err}".replace("\n", " ")) from None
    missing = [c for c in (SENTENCE, LABEL) if c not in frame.columns]
    if missing:
        raise ScratchError(
            f"{flag} {path} has no {' or '.join(missing)} column (it has: "
            f"{', '.join(map(str, frame.columns))}); give a header with sentence and label, or a "
            "two-column tsv without header"
        )
    if len(frame) == 0:
        raise ScratchError(f"{flag} {path} has a header but no rows")
    labels = frame[LABEL].astype(str).str.strip()
    bad = labels[~labels.isin(["0", "1"])]
    if len(bad):
        row = int(bad.index[0]) + 1
        raise ScratchError(
            f"{flag} {path} row {row} has label {bad.iloc[0]!r}; CoLA labels must be 0 (unacceptable) or 1 (acceptable)"
        )
    return Dataset.from_dict({SENTENCE: frame[SENTENCE].astype(str).tolist(), LABEL: labels.astype(int).tolist()})


# ---------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------
def load_classifier(model_name_or_path: str, trust_remote_code: bool, report: bool):
    """A two-label sequence classifier on a pretrained model. transformers reports, on every load, the
    pretraining head it leaves out and the classifier it starts afresh: `report=False` keeps a later seed's
    identical load quiet."""
    verbosity = transformers.logging.get_verbosity()
    if not report:
        transformers.logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, num_labels=2, trust_remote_code=trust_remote_code
        )
    finally:
        transformers.logging.set_verbosity(verbosity)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def matthews_correlation(labels, predictions) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, predictions))


def classification_metrics():
    def compute(eval_pred) -> dict[str, float]:
        predictions = np.asarray(eval_pred.predictions).argmax(axis=-1)
        labels = np.asarray(eval_pred.label_ids)
        return {
            "matthews_correlation": matthews_correlation(labels, predictions),
            "accuracy": float((predictions == labels).mean()),
            # 0 or 1: one label for every sentence, which scores MCC 0 whatever the accuracy
            "predicted_acceptable_share": float((predictions == 1).mean()),
        }

    return compute


def one_class_warning(seed: int, metrics: dict) -> str | None:
    """Why a seed's MCC is 0 when its classifier gave every dev sentence the same label."""
    share = metrics["eval_predicted_acceptable_share"]
    if 0.0 < share < 1.0:
        return None
    label = "acceptable" if share == 1.0 else "unacceptable"
    return (
        f"seed {seed} labels every dev sentence {label}: a constant label scores MCC 0 whatever its accuracy, so "
        "this measures no syntax; the classifier found nothing to tell sentences apart by: fine-tune longer or "
        "at another --learning_rate, or pretrain the model longer"
    )


def summarise_seeds(per_seed: list[dict]) -> dict:
    mccs = [r["eval_matthews_correlation"] for r in per_seed]
    return {
        "seeds": [r["seed"] for r in per_seed],
        "per_seed": per_seed,
        "median_matthews_correlation": statistics.median(mccs),
        "median_accuracy": statistics.median(r["eval_accuracy"] for r in per_seed),
    }


def keep_median_seed(output_dir: Path, summary: dict) -> int:
    """Move the model of the seed closest to the median MCC from `seed-N/` up into `output_dir`; drop the rest."""
    median = summary["median_matthews_correlation"]
    keep = min(summary["per_seed"], key=lambda r: abs(r["eval_matthews_correlation"] - median))["seed"]
    for seed in summary["seeds"]:
        seed_dir = output_dir / f"seed-{seed}"
        if seed == keep:
            for item in seed_dir.iterdir():
                shutil.move(str(item), output_dir / item.name)
        shutil.rmtree(seed_dir)
    return keep


def append_to_model_card(output_dir: str | Path, model_name: str, summary: dict) -> Path:
    card = Path(output_dir) / "README.md"
    lines = [
        "",
        "## CoLA fine-tuning",
        "",
        f"Fine-tuned from `{model_name}` with {len(summary['seeds'])} seed(s).",
        "",
        "| seed | MCC | accuracy |",
        "|---|---|---|",
        *(
            f"| {r['seed']} | {r['eval_matthews_correlation']:.4f} | {r['eval_accuracy']:.4f} |"
            for r in summary["per_seed"]
        ),
        f"| **median** | **{summary['median_matthews_correlation']:.4f}** | {summary['median_accuracy']:.4f} |",
        "",
    ]
    existing = (
        card.read_text(encoding="utf-8")
        if card.exists()
        else f"---\nlibrary_name: transformers\n---\n# {Path(output_dir).name}\n"
    )
    card.write_text(existing.rstrip("\n") + "\n" + "\n".join(lines), encoding="utf-8")
    return card
