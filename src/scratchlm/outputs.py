"""The files a finished pretraining run writes beside its model and tokenizer, in one place.

Trainer writes the weights, `all_results.json` and `trainer_state.json`; this module writes the rest: the
manifest, the resolved config (`--config` reads it back), the training tokens' counts (the unigram bar of
`scratchlm eval`), the samples, the health verdicts and the model card.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from .card import CARD_FILE, pretraining_card
from .evaluation import UNIGRAM_COUNTS_FILE
from .generation import Samples
from .provenance import write_manifest
from .tokenizer import REPORT_FILE

RESOLVED_CONFIG_FILE = "run_config.yaml"
SAMPLES_FILE = "samples.json"
HEALTH_FILE = "health.json"


def write_run_outputs(
    out: Path,
    *,
    objective,
    model,
    manifest: dict,
    global_step: int,
    eval_metrics: dict,
    summary: dict,
    samples: Samples | None,
    health: list[dict],
    unigram_counts: np.ndarray | None = None,
) -> list[str]:
    """Writes the run's own files into `out`; returns their names, the model card first."""
    write_manifest(out, {**manifest, "global_step": global_step}, list_files=False)
    if unigram_counts is not None:  # `scratchlm eval` scores minimal pairs by word frequency with them
        np.save(out / UNIGRAM_COUNTS_FILE, unigram_counts)
    config = manifest["config"]
    (out / RESOLVED_CONFIG_FILE).write_text(
        yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    written = [CARD_FILE]
    if samples is not None:
        (out / SAMPLES_FILE).write_text(
            json.dumps({"samples": samples.texts, **samples.metrics}, ensure_ascii=False, indent=2) + "\n",
            encoding="utf-8",
        )
        written.append(SAMPLES_FILE)
    if health:
        (out / HEALTH_FILE).write_text(json.dumps(health, indent=2) + "\n", encoding="utf-8")
        written.append(HEALTH_FILE)
    report_file = Path(config.get("tokenizer_name_or_path", "")) / REPORT_FILE
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else None
    if report is not None and report_file.parent.resolve() != out.resolve():
        # Beside the tokenizer saved with the model: a run that starts from this one (--init_from) describes it.
        (out / REPORT_FILE).write_text(report_file.read_text(encoding="utf-8"), encoding="utf-8")
    card = pretraining_card(
        objective,
        manifest,
        model,
        eval_metrics,
        summary,
        samples.texts if samples is not None else [],
        report,
        health,
    )
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    return written
