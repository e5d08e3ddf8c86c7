#!/usr/bin/env python
"""Sampling speed of the scratch decoder with and without its KV cache, in one run.

    python benchmarks/generation.py                      # a small decoder (4 x 256, vocab 8,000), 256 new tokens
    python benchmarks/generation.py --n_layer 12 --n_embd 768 --vocab 32000

A freshly initialised `scratch_decoder` with rotary positions (so that 256 new tokens fit any context),
greedy decoding from an 8-token prompt with no early stop, timed for `--repeats` runs each way after one
warm-up. The two outputs must be identical. It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from scratchlm.models.scratch import ScratchDecoderConfig, ScratchDecoderForCausalLM


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_layer", type=int, default=4)
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--n_head", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generation.json"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = ScratchDecoderConfig(
        vocab_size=args.vocab,
        hidden_size=args.n_embd,
        num_hidden_layers=args.n_layer,
        num_attention_heads=args.n_head,
        position_embedding="rotary",
        max_position_embeddings=8 + args.new_tokens,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = ScratchDecoderForCausalLM(config).eval()
    prompt = torch.randint(1, args.vocab, (1, 8))
    options = dict(max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)
    rows, outputs = [], {}
    for use_cache in (False, True):
        model.generate(prompt, use_cache=use_cache, **{**options, "max_new_tokens": 8})  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            outputs[use_cache] = model.generate(prompt, use_cache=use_cache, **options)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append({"kv_cache": use_cache, "seconds": seconds, "tokens_per_second": args.new_tokens / seconds})
    identical = torch.equal(outputs[False], outputs[True])
    result = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "shape": {"n_layer": args.n_layer, "n_embd": args.n_embd, "vocab": args.vocab},
        "new_tokens": args.new_tokens,
        "rows": rows,
        "speedup": rows[1]["tokens_per_second"] / rows[0]["tokens_per_second"],
        "identical": identical,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"greedy, {args.new_tokens} new tokens, {args.n_layer} x {args.n_embd}, vocab {args.vocab:,}, CPU")
    print(f"{'kv cache':<10} {'seconds':>8} {'tokens/s':>10}")
    for r in rows:
        print(f"{str(r['kv_cache']):<10} {r['seconds']:>8.2f} {r['tokens_per_second']:>10.1f}")
    print(f"with / without: {result['speedup']:.2f}x; outputs identical: {identical}")
    return result


if __name__ == "__main__":
    main()
