"""Can it overfit? Train a config's model on one small text until it has memorised it, then sample from it.

A model that cannot memorise 20 KB of text in a few hundred full-batch steps has a bug: in its blocks,
its initialisation, its loss or its labels. Every block of the text is in every step (no held-out split,
no dropout, no weight decay), the optimizer and its peak rates are the config's (AdamW, or Muon with AdamW
beside it) held constant, and training stops when the loss is below the target. Then the model continues
the text's opening words greedily (temperature 0), which should reproduce the text, and at temperature 1.0.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path

import torch
from transformers import set_seed

from .errors import ScratchError
from .objectives import parse_run_settings
from .recipe import build_run
from .training import setup_run

logger = logging.getLogger("scratchlm")
PROGRESS_SECONDS = 15


class _TextIsItsOwnHeldOutSet(logging.Filter):
    """A run warns when its held-out files are training files; here that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "--validation_files" not in record.getMessage()


def overfit(
    config: Path,
    text: Path,
    overrides: list[str],
    max_steps: int = 500,
    target: float = 0.1,
    prompt_tokens: int = 8,
    new_tokens: int = 48,
) -> dict:
    if not text.is_file():
        raise ScratchError(f"--text {text}: no such file; give a small text file (about 20 KB)")
    with tempfile.TemporaryDirectory(prefix="scratchlm-overfit-") as tmp:
        argv = ["--config", str(config), "--train_files", str(text), "--validation_files", str(text)]
        argv += ["--output_dir", f"{tmp}/out", "--dropout", "0.0", "--weight_decay", "0.0"]
        # The loop below holds the peak rates: a constant schedule keeps the config's one, laid out over text
        # repeated hundreds of times, from choosing a decay or warning about it.
        argv += ["--lr_scheduler_type", "constant", *overrides, "--sample_max_new_tokens", "0"]  # it samples itself
        settings = parse_run_settings(argv)
        if not settings.objective.causal:
            raise ScratchError(f"{config}: overfit checks causal models; this config is {settings.objective.name}")
        if not Path(settings.tokenizer.tokenizer_name_or_path).exists():
            settings.tokenizer.tokenizer_name_or_path = f"{tmp}/tokenizer"  # the user's path stays untouched
        setup_run(settings.training)
        set_seed(settings.training.seed)
        sources, quiet = logging.getLogger("scratchlm.data.sources"), _TextIsItsOwnHeldOutSet()
        sources.addFilter(quiet)
        try:
            run = build_run(settings)  # the run's own tokenizer, blocks and fresh model; its trainer is not used
        finally:
            sources.removeFilter(quiet)
        tokenizer, data, model = run.tokenizer, run.data, run.model
        optimizer = run.trainer.create_optimizer()  # the run's own: AdamW alone would not memorise a Muon config
    blocks = data.train.with_format("torch")[:]["input_ids"]  # (n_blocks, block): the whole text, every step
    model.train()
    logger.info(
        "training on all %s tokens of %s (%d blocks) in every step, until the loss is below %s or %d steps",
        f"{blocks.numel():,}",
        text.name,
        len(blocks),
        target,
        max_steps,
    )
    losses, start = [], time.perf_counter()
    last_report = start
    for step in range(1, max_steps + 1):
        loss = model(input_ids=blocks, labels=blocks).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]) or losses[-1] < target:
            break
        if time.perf_counter() - last_report >= PROGRESS_SECONDS:  # a CPU full-batch step can take seconds
            last_report = time.perf_counter()
            logger.info("step %d: loss %.3f (%.0f s)", step, losses[-1], last_report - start)
    model.eval()
    new_tokens = min(new_tokens, data.block_size - prompt_tokens)  # a learned-position model ends at its block
    opening = blocks[0, :prompt_tokens].unsqueeze(0)
    expected = blocks[0, prompt_tokens : prompt_tokens + new_tokens]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        greedy = model.generate(opening, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        sampled = model.generate(
            opening, max_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0, pad_token_id=pad
        )
    continuation = greedy[0, prompt_tokens:]
    overlap = min(len(continuation), len(expected))  # generation may end early, at an end-of-text token
    recalled = (continuation[:overlap] == expected[:overlap]).sum().item() / len(expected) if len(expected) else 0.0
    memorised = bool(losses) and losses[-1] < target
    result = {
        "config": str(config),
        "text": str(text),
        "model_type": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "optimizer": type(optimizer).__name__,
        "weight_decay": max(group.get("weight_decay", 0.0) for group in optimizer.param_groups),
        "tokens": int(blocks.numel()),
        "steps": len(losses),
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "target": target,
        "memorised": memorised,
        "seconds": time.perf_counter() - start,
        "greedy_recall": recalled,
        "prompt": tokenizer.decode(opening[0]),
        "greedy": tokenizer.decode(continuation),
        "sampled_t1": tokenizer.decode(sampled[0, prompt_tokens:]),
    }
    verdict = (
        f"memorised: loss {losses[-1]:.3f} < {target} after {len(losses)} steps"
        if memorised
        else f"NOT memorised: loss {losses[-1]:.3f} after {len(losses)} steps (target {target}): a model that "
        "cannot memorise a small text has a bug in its blocks, initialisation, loss or labels "
        "(or needs more steps: --steps)"
    )
    logger.info(
        "%s; %s parameters, %s tokens of %s; greedy continuation matches the text on %.0f%% of %d tokens\n"
        "  prompt: %r\n  greedy (t=0): %r\n  sampled (t=1): %r",
        verdict,
        f"{result['parameters']:,}",
        f"{result['tokens']:,}",
        text.name,
        100 * recalled,
        len(expected),
        result["prompt"],
        result["greedy"],
        result["sampled_t1"],
    )
    return result


def write_result(result: dict, out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
