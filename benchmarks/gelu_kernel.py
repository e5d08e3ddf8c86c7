#!/usr/bin/env python
"""GPT-2's GELU as torch's fused kernel ("gelu_pytorch_tanh", what the recipes build) against transformers'
"gelu_new" (the same tanh approximation written as seven elementwise ops, GPT2Config's default), in one run.

    python benchmarks/gelu_kernel.py                          # the demo's GPT-2 (4 x 128, vocab 8,000), batch 8 x 128
    python benchmarks/gelu_kernel.py --shape gpt2_124m --batch 1 --steps 4   # GPT-2 124M on a CPU
    python benchmarks/gelu_kernel.py --shape gpt2_124m --batch 16            # the same on a GPU (bf16 autocast)

Both arms start from the same weights (scratchlm's GPT-2 builder, only the activation's name differs) and
train the same random token batches with AdamW, eagerly: under torch.compile inductor fuses either form, so
the lever is for runs without it, such as every CPU run. The arms alternate, --repeats times, so a host that
speeds up or slows down touches both; tokens/s is the median over repeats of --steps training steps
(forward, backward, optimizer step). The table also gives the largest logit difference between the arms
at the same weights, and each arm's loss after its last step. It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import GPT2LMHeadModel

from scratchlm.models import name_the_causal_loss
from scratchlm.models.gpt2 import make_config
from scratchlm.training.run import keep_freed_memory_in_the_heap

SHAPES = {  # name -> (layers, heads, width, vocabulary, context)
    "demo": (4, 2, 128, 8000, 128),
    "gpt2_124m": (12, 12, 768, 50304, 1024),
}
ARMS = {"gelu_new (transformers' default)": "gelu_new", "fused kernel (recipe)": "gelu_pytorch_tanh"}


def build(shape: str, activation: str, device: str) -> GPT2LMHeadModel:
    n_layer, n_head, n_embd, vocab, context = SHAPES[shape]
    args = SimpleNamespace(n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=0.0)
    config = make_config(args, vocab, context, {"bos_token_id": 0, "eos_token_id": 0})
    config.activation_function = activation
    torch.manual_seed(0)
    return name_the_causal_loss(GPT2LMHeadModel(config)).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="demo")
    parser.add_argument("--batch", type=int, default=8, help="Sequences per step.")
    parser.add_argument("--steps", type=int, default=40, help="Timed training steps per repeat.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats per arm, alternating.")
    parser.add_argument("--output", default="benchmarks/results/gelu_kernel.json")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        keep_freed_memory_in_the_heap()  # as a recipe's CPU run does
    *_, vocab, context = SHAPES[args.shape]
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, vocab, (args.batch, context), generator=generator).to(device) for _ in range(8)]
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    models = {arm: build(args.shape, activation, device) for arm, activation in ARMS.items()}
    with torch.no_grad(), autocast:
        first, second = (model(batches[0]).logits.float() for model in models.values())
    logit_difference = (first - second).abs().max().item()
    optimizers = {arm: torch.optim.AdamW(model.parameters(), lr=1e-3) for arm, model in models.items()}

    def train(arm: str, steps: int) -> float:
        model, optimizer = models[arm], optimizers[arm]
        for step in range(steps):
            batch = batches[step % len(batches)]
            with autocast:
                loss = model(batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss.item()  # a host sync, so the clock stops after the work

    for arm in ARMS:
        train(arm, 3)  # allocator and kernel warm-up
    seconds = {arm: [] for arm in ARMS}
    losses = {}
    for _ in range(args.repeats):
        for arm in ARMS:
            start = time.perf_counter()
            losses[arm] = train(arm, args.steps)
            seconds[arm].append(time.perf_counter() - start)

    tokens = args.steps * args.batch * context
    baseline = next(iter(ARMS))
    rows = []
    for arm in ARMS:
        rate = tokens / statistics.median(seconds[arm])
        rows.append({"arm": arm, "activation_function": ARMS[arm], "tokens_per_second": rate, "loss": losses[arm]})
    for row in rows:
        row["speed_vs_gelu_new"] = row["tokens_per_second"] / rows[0]["tokens_per_second"]

    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"GPT-2 {args.shape}, batch {args.batch} x {context}, {device} ({name}), torch {torch.__version__}, "
          f"{args.repeats} x {args.steps} steps per arm; largest logit difference {logit_difference:.2e}")  # fmt: skip
    print(f"| arm | tokens/s | x {baseline} | loss after the last step |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['arm']} | {row['tokens_per_second']:,.0f} | {row['speed_vs_gelu_new']:.3f} | {row['loss']:.4f} |"
        )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = {"device": name, "torch": torch.__version__, "logit_difference": logit_difference, "rows": rows}
    output.write_text(json.dumps({**vars(args), **result}, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
