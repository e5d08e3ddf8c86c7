#!/usr/bin/env python
"""What does the demo learn about grammar, and when? Minimal-pair accuracy against training tokens, beside the
unigram bar (what word frequencies alone get), for a config trained on a corpus whose language fits the pairs.

    python benchmarks/minimal_pairs.py --arm gpt2_wikitext --arm llama_wikitext --arm gpt2_zh_demo --arm llama_zh_demo
    python benchmarks/minimal_pairs.py --arm gpt2_wikitext --tiny        # checks the code path in a minute

Each arm is `recipes/pretrain_gpt2_zh.py` with a demo config, launched as a user launches it, with
`--eval_minimal_pairs` so that every held-out evaluation scores a fixed sample of each paradigm (the
curve); at the end `scratchlm eval` scores the finished model on every pair (the final row). English arms
train on WikiText-2 (`../shared/data/wikitext-2`, both files, 5% held out) and score BLiMP
(`../shared/data/blimp`); the Chinese arms train on the built-in `zh_demo` and score the hand-checked
Chinese pairs in `benchmarks/data/zh_minimal_pairs/` (3 paradigms of 10). Prints a table, writes JSON and
a PNG of accuracy against training tokens. An arm already trained (and scored) in the same `--work_dir` is
read back instead of being run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from scratchlm.evaluation import EVAL_FILE, format_table, run_eval
from scratchlm.plotting import load_history, pyplot

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPE = ROOT / "recipes/pretrain_gpt2_zh.py"
ZH_PAIRS = ROOT / "benchmarks/data/zh_minimal_pairs"

# name: (config, corpus flags, pairs)
ARMS = {
    "gpt2_wikitext": (
        "config_demo.yaml",
        ["--train_files", str(SHARED / "wikitext-2/valid.txt"), str(SHARED / "wikitext-2/test.txt")],
        SHARED / "blimp",
    ),
    "llama_wikitext": (
        "config_demo_llama.yaml",
        ["--train_files", str(SHARED / "wikitext-2/valid.txt"), str(SHARED / "wikitext-2/test.txt")],
        SHARED / "blimp",
    ),
    "gpt2_zh_demo": ("config_demo.yaml", ["--corpus", "zh_demo"], ZH_PAIRS),
    "llama_zh_demo": ("config_demo_llama.yaml", ["--corpus", "zh_demo"], ZH_PAIRS),
}
TINY = ["--n_layer", "1", "--n_embd", "64", "--n_head", "2", "--vocab_size", "1000", "--max_steps", "40"]
TINY += ["--eval_steps", "20", "--save_steps", "40", "--max_eval_samples", "16"]


def run_arm(name: str, work: Path, per_paradigm: int, final_per_paradigm: int | None, tiny: bool) -> dict:
    config, corpus, pairs = ARMS[name]
    out = work / name
    language = "zh" if "zh" in name else "en"
    flags = [
        "--config",
        str(ROOT / "recipes/pretrain_gpt2_zh" / config),
        *corpus,
        "--tokenizer_name_or_path",
        str(work / f"tokenizer-{language}{'-tiny' if tiny else ''}"),
        "--output_dir",
        str(out),
        "--eval_minimal_pairs",
        str(pairs),
        "--eval_minimal_pairs_per_paradigm",
        str(per_paradigm),
        *(TINY if tiny else []),
    ]
    done = out / EVAL_FILE
    if not (out / "model.safetensors").is_file():  # an arm trained in this --work_dir before is not trained again
        with open(work / f"{name}.log", "w") as log:
            subprocess.run([sys.executable, str(RECIPE), *flags], check=True, stdout=log, stderr=subprocess.STDOUT)
    history = load_history(out)
    run_config = json.loads((out / "run_manifest.json").read_text())["config"]
    tokens_per_step = run_config["per_device_train_batch_size"] * run_config["block_size"]
    curve = [
        {
            "step": e["step"],
            "tokens": e["step"] * tokens_per_step,
            "accuracy": e["eval_minimal_pairs_accuracy"],
            "unigram_accuracy": e.get("eval_minimal_pairs_unigram_accuracy"),
            "eval_loss": e["eval_loss"],
        }
        for e in history
        if "eval_minimal_pairs_accuracy" in e
    ]
    if done.is_file():
        final = json.loads(done.read_text())["minimal_pairs"]
    else:
        final = run_eval(out, minimal_pairs=str(pairs), per_paradigm=final_per_paradigm)["minimal_pairs"]
    return {"pairs": str(pairs), "curve": curve, "final": final, "table": format_table({"minimal_pairs": final})}


def draw(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (name, result) in enumerate(results.items()):
        color = f"C{index}"
        tokens = [p["tokens"] / 1e6 for p in result["curve"]]
        ax.plot(tokens, [p["accuracy"] for p in result["curve"]], "o-", color=color, label=f"{name}: model")
        bar = result["final"]["overall"].get("unigram_accuracy")
        if bar is not None:
            ax.axhline(bar, color=color, linestyle=":", label=f"{name}: unigram bar")
    ax.axhline(0.5, color="grey", linewidth=0.8, label="chance")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("minimal-pair accuracy (mean over paradigms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", action="append", choices=list(ARMS), help="Arms to run (default: all).")
    parser.add_argument("--work_dir", type=Path, default=ROOT / "benchmarks/results/minimal_pairs")
    parser.add_argument("--per_paradigm", type=int, default=30, help="Pairs per paradigm at each evaluation.")
    parser.add_argument(
        "--final_per_paradigm", type=int, default=None, help="Pairs per paradigm at the end (default: all)."
    )
    parser.add_argument("--tiny", action="store_true", help="A tiny model for a few steps: checks the code path.")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.arm or list(ARMS):
        results[name] = run_arm(name, args.work_dir, args.per_paradigm, args.final_per_paradigm, args.tiny)
        print(f"{name}:\n{results[name]['table']}\n", flush=True)
    final_pairs = "all pairs" if args.final_per_paradigm is None else f"{args.final_per_paradigm} pairs per paradigm"
    lines = ["| arm | tokens | accuracy | unigram bar | eval loss |", "|---|---|---|---|---|"]
    for name, result in results.items():
        for point in result["curve"]:
            bar = point["unigram_accuracy"]
            lines.append(
                f"| {name} | {point['tokens']:,} | {point['accuracy']:.3f} | "
                f"{'' if bar is None else f'{bar:.3f}'} | {point['eval_loss']:.3f} |"
            )
        overall = result["final"]["overall"]
        lines.append(
            f"| {name}, {final_pairs} at the end | | **{overall['accuracy']:.3f}** | "
            f"{overall.get('unigram_accuracy', float('nan')):.3f} | |"
        )
    print("\n".join(lines))
    (args.work_dir / "minimal_pairs.json").write_text(json.dumps(results, indent=2) + "\n")
    draw(results, args.work_dir / "minimal_pairs.png")
    print(f"written: {args.work_dir / 'minimal_pairs.json'}, {args.work_dir / 'minimal_pairs.png'}")
    return results


if __name__ == "__main__":
    main()
