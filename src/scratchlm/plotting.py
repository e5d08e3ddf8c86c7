"""PNG plots of a run from its trainer_state.json: losses against the unigram bar, learning rate, throughput."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoints import checkpoints_newest_first
from .errors import ScratchError


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ScratchError("plots need matplotlib: pip install 'scratchlm[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def load_history(run_dir: Path) -> list[dict]:
    """The log history of a finished run, or of the newest checkpoint of one still going."""
    candidates = [run_dir / "trainer_state.json"]
    if run_dir.is_dir():
        candidates += [c / "trainer_state.json" for c in checkpoints_newest_first(run_dir)]
    for state_file in candidates:
        if state_file.is_file():
            return json.loads(state_file.read_text(encoding="utf-8"))["log_history"]
    raise ScratchError(f"{run_dir} has no trainer_state.json (nor a checkpoint-* with one): pass a run's output_dir")


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(e["step"], e[key]) for e in history if key in e and "step" in e]
    return [s for s, _ in points], [v for _, v in points]


def plot_run(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    history = load_history(run_dir)
    out_dir = out_dir or run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(*series(history, "loss"), label="train loss", alpha=0.8)
    eval_steps, eval_loss = series(history, "eval_loss")
    if eval_steps:
        ax.plot(eval_steps, eval_loss, "o-", label="held-out loss")
    _, unigram = series(history, "eval_unigram_loss")
    if unigram:
        ax.axhline(unigram[-1], color="tab:red", linestyle="--", label=f"unigram baseline {unigram[-1]:.2f}")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=f"{run_dir.name}: loss")
    ax.legend()
    written.append(_save(fig, plt, out_dir / "loss.png"))

    for key, label, name in (
        ("learning_rate", "learning rate", "learning_rate.png"),
        ("tokens_per_second", "tokens/s", "throughput.png"),
    ):
        steps, values = series(history, key)
        if not steps:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(steps, values)
        ax.set(xlabel="step", ylabel=label, title=f"{run_dir.name}: {label}")
        written.append(_save(fig, plt, out_dir / name))
    return written


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
