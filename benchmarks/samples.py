#!/usr/bin/env python
"""The samples a run draws at each evaluation: its prompts one at a time against all together, in one run.

    python benchmarks/samples.py                  # the demo config's and the baby GPT's shapes and prompts
    python benchmarks/samples.py --shape gpt2_124m
    python benchmarks/samples.py --device cuda --shape baby --shape gpt2_124m   # on a GPU, under bf16 autocast

Freshly initialised GPT-2 models of the configs' shapes, their sample prompts and lengths
(`sample_prompts`, `sample_max_new_tokens`), and scratchlm's sampling settings, through
`generate_samples`: each prompt alone (a batch of one, as the samples were drawn before) against one
left-padded batch. Timed for `--repeats` runs each way after one warm-up. With greedy decoding the two
ways must give the same tokens; that check is each shape's first `generate` (the first shape's is the
process's first), and its time is reported as the cold call (what a run's first samples pay on top). On a
GPU the model samples under bf16 autocast, as in a bf16 run. It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from scratchlm.generation import generate_samples

# shape: (n_layer, n_embd, n_head, vocab, positions, number of prompts, new tokens), as in the configs
SHAPES = {
    "demo": (4, 128, 2, 8000, 128, 4, 48),  # config_demo.yaml
    "baby": (6, 384, 6, 128, 256, 2, 200),  # config_baby_shakespeare.yaml
    "gpt2_124m": (12, 768, 12, 32000, 1024, 3, 48),  # config_gpt2_124m.yaml
    "tiny": (1, 32, 2, 97, 64, 3, 16),  # for the tests
}
PROMPTS = ["ROMEO:", "First Citizen:", "中国经济", "今天天气"]


class CharTokenizer:
    """Token ids from characters; the timing is the model's and `generate`'s, not the tokenizer's."""

    pad_token_id = eos_token_id = 0
    bos_token_id = None

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + ord(c) % (self.vocab - 1) for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def time_both_ways(model, tokenizer, prompts: list[str], new_tokens: int, repeats: int) -> dict:
    start = time.perf_counter()

    def alone(**sampling):
        return [generate_samples(model, tokenizer, [p], new_tokens, **sampling).tokens[0] for p in prompts]

    def together(**sampling):
        return generate_samples(model, tokenizer, prompts, new_tokens, **sampling).tokens

    greedy = dict(do_sample=False, temperature=None, top_k=None, top_p=None, eos_token_id=None)
    first = alone(**greedy)
    cold = time.perf_counter() - start
    identical = first == together(**greedy)
    seconds = {}
    for name, way in (("one at a time", alone), ("together", together)):
        way(eos_token_id=None)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            way(eos_token_id=None)  # sampled as at an evaluation, every sample at full length
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    speedup = seconds["one at a time"] / seconds["together"]
    return {"seconds": seconds, "speedup": speedup, "identical": identical, "cold_seconds": cold}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", choices=list(SHAPES), help="Shapes (default: demo, baby).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/samples.json"))
    args = parser.parse_args(argv)
    rows = []
    for shape in args.shape or ["demo", "baby"]:
        n_layer, n_embd, n_head, vocab, positions, n_prompts, new_tokens = SHAPES[shape]
        torch.manual_seed(0)
        shape_args = dict(vocab_size=vocab, n_positions=positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
        config = GPT2Config(
            **shape_args, bos_token_id=0, eos_token_id=0
        )  # GPT-2's own 50256 is past these vocabularies
        model = GPT2LMHeadModel(config).eval().to(args.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device.startswith("cuda")):
            timing = time_both_ways(model, CharTokenizer(vocab), PROMPTS[:n_prompts], new_tokens, args.repeats)
        rows.append({"shape": shape, "prompts": n_prompts, "new_tokens": new_tokens, **timing})
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {"device": device, "threads": torch.get_num_threads(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"samples at an evaluation, sampled, every sample at full length, {device} ({result['threads']} threads)")
    header = f"{'shape':<10} {'prompts':>7} {'new':>5} {'one at a time s':>16} {'together s':>11} {'x':>6}"
    print(f"{header} {'greedy same':>12} {'cold call s':>12}")
    for r in rows:
        s = r["seconds"]
        print(
            f"{r['shape']:<10} {r['prompts']:>7} {r['new_tokens']:>5} {s['one at a time']:>16.2f} "
            f"{s['together']:>11.2f} {r['speedup']:>6.2f} {str(r['identical']):>12} {r['cold_seconds']:>12.2f}"
        )
    return result


if __name__ == "__main__":
    main()
