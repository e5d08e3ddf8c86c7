#!/usr/bin/env python
"""`scratchlm eval`'s two scorers, each beside the way it ran before, in one run.

    python benchmarks/eval_speed.py                        # the demo config's shape, 2 CPU threads
    python benchmarks/eval_speed.py --shape demo_vocab4k   # the same with a 4k vocabulary
    python benchmarks/eval_speed.py --shape gpt2_124m      # slow on a CPU
    python benchmarks/eval_speed.py --device cuda --shape gpt2_124m

- `--text`: the text in context-long windows, one window per forward pass (before) against
  `evaluation.TEXT_TOKENS_PER_BATCH` tokens of windows per pass (now);
- `--minimal_pairs`: sentences in their files' order, 32 per pass and padded to the longest (before), against
  the same sentences sorted by length first, so that a pass holds sentences of like lengths (now).

Freshly initialised GPT-2 models of the configs' shapes, and a tokenizer of characters: the timing is the
model's and the batching's, not the tokenizer's. Each way runs `--repeats` times after a warm-up, alternating,
and the median is reported; both ways must give the same figures. The texts are English sentences made up from
a seeded vocabulary. It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from scratchlm import evaluation
from scratchlm.evaluation import causal_log_probs, text_bits

# shape: (n_layer, n_embd, n_head, vocab, positions), as in the configs
SHAPES = {
    "demo": (4, 128, 2, 8000, 128),  # config_demo.yaml
    "demo_vocab4k": (4, 128, 2, 4000, 128),  # its shape with half the output layer
    "gpt2_124m": (12, 768, 12, 32000, 1024),  # config_gpt2_124m.yaml
    "tiny": (1, 32, 2, 97, 64),  # for the tests
}
WORDS = "the a cat dog sailor queen river mill walked sang looked at to of in and was were is are".split()
OLD_BATCH = 32


class CharTokenizer:
    """Token ids from characters, 0 the start and end of a text."""

    bos_token_id = eos_token_id = pad_token_id = 0
    all_special_tokens: list[str] = []

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=False, verbose=True):
        return {"input_ids": [1 + ord(c) % (self.vocab - 1) for c in text]}


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "." for _ in range(count)]


def in_file_order(model, tokenizer, texts: list[str]) -> list[tuple[float, int]]:
    """How the sentences were scored before: consecutive groups of 32, each padded to its longest."""
    return [
        score
        for i in range(0, len(texts), OLD_BATCH)
        for score in causal_log_probs(model, tokenizer, texts[i : i + OLD_BATCH])
    ]


def one_window_at_a_time(model, tokenizer, text: str) -> dict:
    saved = evaluation.TEXT_TOKENS_PER_BATCH
    evaluation.TEXT_TOKENS_PER_BATCH = 1
    try:
        return text_bits(model, tokenizer, text)
    finally:
        evaluation.TEXT_TOKENS_PER_BATCH = saved


def timed(ways: dict, repeats: int) -> tuple[dict, dict]:
    """Median seconds of each way, alternating, after one warm-up each; and each way's last result."""
    results = {name: way() for name, way in ways.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            results[name] = way()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def time_shape(shape: str, texts: list[str], text: str, repeats: int, device: str) -> dict:
    n_layer, n_embd, n_head, vocab, positions = SHAPES[shape]
    torch.manual_seed(0)
    shape_args = dict(vocab_size=vocab, n_positions=positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    config = GPT2Config(**shape_args, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval().to(device)
    tokenizer = CharTokenizer(vocab)
    with torch.no_grad():
        seconds, results = timed(
            {
                "text, one window a pass": lambda: one_window_at_a_time(model, tokenizer, text),
                "text, batched": lambda: text_bits(model, tokenizer, text),
                "pairs, file order": lambda: in_file_order(model, tokenizer, texts),
                "pairs, by length": lambda: causal_log_probs(model, tokenizer, texts),
            },
            repeats,
        )
    before, now = results["text, one window a pass"], results["text, batched"]
    return {
        "shape": shape,
        "seconds": seconds,
        "text_speedup": seconds["text, one window a pass"] / seconds["text, batched"],
        "pairs_speedup": seconds["pairs, file order"] / seconds["pairs, by length"],
        "text_bits_per_char_difference": abs(before["bits_per_char"] - now["bits_per_char"]),
        "pairs_log_prob_max_difference": max(
            abs(a[0] - b[0]) for a, b in zip(results["pairs, file order"], results["pairs, by length"])
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="Shapes (default: demo).")
    parser.add_argument("--sentences", type=int, default=4000, help="Minimal-pair sentences scored.")
    parser.add_argument("--text_characters", type=int, default=200_000, help="Characters of text scored.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_speed.json"))
    args = parser.parse_args(argv)
    texts = sentences(args.sentences)
    text = " ".join(sentences(args.text_characters // 40 + 1, seed=1))[: args.text_characters]
    rows = [time_shape(shape, texts, text, args.repeats, args.device) for shape in args.shape or ["demo"]]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {
        "device": device,
        "threads": torch.get_num_threads(),
        "sentences": args.sentences,
        "text_characters": args.text_characters,
        "text_tokens_per_batch": evaluation.TEXT_TOKENS_PER_BATCH,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"scratchlm eval's scorers, {device} ({result['threads']} threads), median of {args.repeats}")
    print(
        f"{'shape':<10} {'text 1/pass s':>13} {'batched s':>10} {'x':>5} {'bpc diff':>9} "
        f"{'pairs order s':>14} {'by length s':>12} {'x':>5} {'logp diff':>10}"
    )
    for r in rows:
        s = r["seconds"]
        print(
            f"{r['shape']:<10} {s['text, one window a pass']:>13.2f} {s['text, batched']:>10.2f} "
            f"{r['text_speedup']:>5.2f} {r['text_bits_per_char_difference']:>9.1e} {s['pairs, file order']:>14.2f} "
            f"{s['pairs, by length']:>12.2f} {r['pairs_speedup']:>5.2f} {r['pairs_log_prob_max_difference']:>10.1e}"
        )
    return result


if __name__ == "__main__":
    main()
