"""PNG plots of a run from its trainer_state.json: losses against the unigram bar, learning rate, throughput.

The loss plot is drawn against tokens seen, so that runs of different batch sizes compare, with other runs
(`--compare`) and, for a run of a shipped config, that config's measured reference curve behind it
(`reference_curves/`: a run whose curve leaves the reference's is off track).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .checkpoints import checkpoints_newest_first
from .errors import ScratchError, writable_folder


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


REFERENCE_DIR = Path(__file__).parent / "reference_curves"
# The settings that shape a loss curve: a reference is drawn behind a run whose settings all equal its own.
CURVE_SETTINGS = (
    "objective",
    "corpus",
    "train_files",
    "dataset_name",
    "model_type",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "vocab_size",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "optim",
    "muon_learning_rate",
    "warmup_steps",
    "max_steps",
    "seed",
    "init_from",
)


def run_curve(run_dir: Path) -> dict:
    """A run's losses against tokens seen, with the settings that shaped them."""
    history = load_history(run_dir)
    per_step = next((e["tokens_seen"] / e["step"] for e in history if e.get("tokens_seen") and e.get("step")), None)
    scale = per_step or 1.0
    config_file = run_dir / "run_config.yaml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    steps, train = series(history, "loss")
    eval_steps, held_out = series(history, "eval_loss")
    _, unigram = series(history, "eval_unigram_loss")
    # A finished run's loss before its first step starts its curve: where the model began, beside ln(vocab).
    results_file = run_dir / "all_results.json"
    initial = (
        json.loads(results_file.read_text(encoding="utf-8")).get("initial_loss") if results_file.is_file() else None
    )
    start = [[0, initial]] if initial is not None else []
    return {
        "name": run_dir.name,
        "x": "tokens" if per_step else "steps",
        "settings": {k: config[k] for k in CURVE_SETTINGS if k in config},
        "train": start + [[s * scale, v] for s, v in zip(steps, train)],
        "eval": [[s * scale, v] for s, v in zip(eval_steps, held_out)],
        "unigram": unigram[-1] if unigram else None,
    }


def load_curve(source: Path) -> dict:
    """A run folder, or a curve JSON written by `--write_reference`."""
    if source.is_file() and source.suffix == ".json":
        return json.loads(source.read_text(encoding="utf-8"))
    return run_curve(source)


def matching_reference(settings: dict, reference_dir: Path | None = None) -> dict | None:
    for path in sorted((reference_dir or REFERENCE_DIR).glob("*.json")):
        reference = json.loads(path.read_text(encoding="utf-8"))
        saved = reference["settings"]
        # A reference recorded before init_from existed started from random weights.
        if saved and all(settings.get(k) == v for k, v in {"init_from": None, **saved}.items()):
            return reference
    return None


def check_reference_path(path: Path) -> None:
    """A curve is written only where nothing but a curve would be replaced."""
    if path.suffix != ".json":
        raise ScratchError(f"--write_reference {path}: a curve is written as JSON; give a path ending in .json")
    if path.exists() and not _is_curve(path):
        raise ScratchError(
            f"--write_reference {path} exists and is not a curve JSON: it is left as it is; give a new path"
        )


def write_reference(run_dir: Path, path: Path, name: str) -> Path:
    check_reference_path(path)
    curve = {**run_curve(run_dir), "name": name}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve, indent=1) + "\n", encoding="utf-8")
    return path


def _is_curve(path: Path) -> bool:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and {"x", "eval", "train"} <= set(content)


def loss_curves(run_dir: Path, compare: list[Path] = (), reference: bool = True) -> list[tuple[str, dict]]:
    """What the loss plot draws, back to front: ("reference" | "compare" | "run", curve)."""
    run = run_curve(run_dir)
    drawn = []
    found = matching_reference(run["settings"]) if reference else None
    if found is not None:
        drawn.append(("reference", found))
    drawn += [("compare", load_curve(Path(c))) for c in compare]
    drawn.append(("run", run))
    if len({curve["x"] for _, curve in drawn}) > 1:
        raise ScratchError("some of these runs log no tokens_seen: compare runs made by scratchlm's recipes")
    return drawn


def line_style(points) -> str:
    """A line with markers where it has too few points to show as a line (a short run's one logged loss)."""
    return "o-" if len(points) < 3 else "-"


def plot_run(
    run_dir: Path, out_dir: Path | None = None, compare: list[Path] = (), reference: bool = True
) -> tuple[list[Path], list[tuple[str, dict]]]:
    """The PNGs written, and the loss curves drawn (`loss_curves`)."""
    history = load_history(run_dir)
    out_dir = writable_folder(out_dir, "--out") if out_dir else writable_folder(run_dir / "plots", "plots folder")
    plt = pyplot()
    written = []

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = iter(["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    drawn = loss_curves(run_dir, compare, reference)
    for role, curve in drawn:
        color = {"reference": "0.6", "run": "tab:blue"}.get(role) or next(colors, "black")
        label = f"reference ({curve['name']})" if role == "reference" else curve["name"]
        width = 3.0 if role == "reference" else 1.2
        if curve["train"]:
            ax.plot(
                *zip(*curve["train"]),
                line_style(curve["train"]),
                color=color,
                alpha=0.6,
                linewidth=width,
                label=f"{label}: train",
            )
        if curve["eval"]:
            ax.plot(*zip(*curve["eval"]), "o-", color=color, linewidth=width, label=f"{label}: held-out")
    unigram = drawn[-1][1]["unigram"]
    if unigram is not None:
        ax.axhline(unigram, color="tab:red", linestyle="--", label=f"unigram baseline {unigram:.2f}")
    ax.set(xlabel=f"{drawn[-1][1]['x']} seen", ylabel="loss (nats/token)", title=f"{run_dir.name}: loss")
    ax.legend(fontsize="small")
    written.append(_save(fig, plt, out_dir / "loss.png"))

    for key, label, name in (
        ("learning_rate", "learning rate", "learning_rate.png"),
        ("tokens_per_second", "tokens/s", "throughput.png"),
    ):
        steps, values = series(history, key)
        if not steps:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(steps, values, line_style(steps))
        ax.set(xlabel="step", ylabel=label, title=f"{run_dir.name}: {label}")
        written.append(_save(fig, plt, out_dir / name))
    steps, accuracy = series(history, "eval_minimal_pairs_accuracy")
    if steps:  # --eval_minimal_pairs: what the model learned of grammar, against word frequencies alone
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(steps, accuracy, "o-", label="model")
        bar_steps, bar = series(history, "eval_minimal_pairs_unigram_accuracy")
        if bar_steps:
            ax.plot(bar_steps, bar, "--", color="tab:red", label="unigram bar")
        ax.axhline(0.5, color="0.6", linewidth=0.8, label="chance")
        ax.set(xlabel="step", ylabel="accuracy", title=f"{run_dir.name}: minimal pairs")
        ax.legend(fontsize="small")
        written.append(_save(fig, plt, out_dir / "minimal_pairs.png"))
    return written, drawn


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
