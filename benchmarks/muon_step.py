#!/usr/bin/env python
"""What a Muon step costs on this machine: torch's own orthogonalisation (bfloat16) against scratchlm's
float32 one on the CPU, beside the forward and backward pass it follows, for the demo configs' models.

    python benchmarks/muon_step.py                      # both demo configs
    python benchmarks/muon_step.py --repeats 3 --tiny   # checks the code path

Each config's model is built at its shape and vocabulary (random weights, random token blocks of its batch
and context). "forward+backward" times the loss and its gradients; "optimizer step, torch's bf16" times
torch's `Muon.step` as torch ships it, then the AdamW half (embeddings, output layer, norms, biases);
"optimizer step, scratchlm" times `MuonWithAdamW.step`, the recipe's, which hands CPU updates to
`newton_schulz_float32`. Medians over --repeats after 2 untimed steps. `tokens/s` is batch x context
over forward+backward plus the optimizer step, which is what the recipe's training loop pays per step on
top of data loading and logging; glibc keeps freed memory as in a recipe's CPU run. The last column is the
largest difference between the two orthogonalised updates of the first Muon matrix, against its largest
entry: how far apart bf16 and float32 put the same update.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from scratchlm.internals import muon_orthogonalises_updates_with
from scratchlm.models.registry import FAMILIES
from scratchlm.objectives import parse_run_settings
from scratchlm.training.muon import (
    MuonWithAdamW,
    muon_parameter_groups,
    newton_schulz_float32,
    on_a_device_that_emulates_bf16,
)
from scratchlm.training.run import keep_freed_memory_in_the_heap

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    ROOT / "recipes/pretrain_gpt2_zh/config_demo.yaml",
    ROOT / "recipes/pretrain_gpt2_zh/config_demo_llama.yaml",
]
TINY = ["--n_layer", "1", "--n_embd", "32", "--n_head", "2", "--vocab_size", "512", "--block_size", "32"]


def median_seconds(work, repeats: int) -> float:
    for _ in range(2):
        work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def orthogonalised(grad: torch.Tensor, in_float32: bool) -> torch.Tensor:
    """The update torch's Muon makes of `grad` on a zero weight (no momentum, no weight decay): minus its
    orthogonalisation, scaled by Muon's shape factor, which the comparison divides out."""
    weight = torch.nn.Parameter(torch.zeros_like(grad))
    weight.grad = grad.clone()
    muon = torch.optim.Muon([weight], lr=1.0, weight_decay=0.0, momentum=0.0)
    if in_float32:
        with muon_orthogonalises_updates_with(newton_schulz_float32, wanted=on_a_device_that_emulates_bf16):
            muon.step()
    else:
        muon.step()
    return weight.detach().float()


def measure(config: Path, repeats: int, tiny: bool) -> dict:
    settings = parse_run_settings(["--config", str(config), *(TINY if tiny else [])])
    model_args, training = settings.model, settings.training
    vocab, block, batch = settings.tokenizer.vocab_size, settings.data.block_size, training.per_device_train_batch_size
    family = FAMILIES[model_args.model_type]
    torch.manual_seed(0)
    model = family.model_class(family.make_config(model_args, vocab, block, {"bos_token_id": 0, "eos_token_id": 0}))
    tokens = torch.randint(0, vocab, (batch, block))
    decay = [n for n, p in model.named_parameters() if p.ndim == 2]
    muon_groups, adamw_groups = muon_parameter_groups(model, decay, training.weight_decay)
    optimizer = MuonWithAdamW(
        muon_groups, adamw_groups, {"lr": 1e-4, "weight_decay": 0.0}, {"lr": 1e-6, "weight_decay": 0.0}
    )

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(input_ids=tokens, labels=tokens).loss.backward()

    forward_backward()  # every step below reuses these gradients
    first = muon_groups[0]["params"][0].grad
    bf16, float32 = orthogonalised(first, in_float32=False), orthogonalised(first, in_float32=True)

    def step_with_torchs_bf16():  # the step as it was before scratchlm's float32 iteration
        optimizer.muon.step()
        optimizer.adamw.step()

    seconds = {
        "forward_backward": median_seconds(forward_backward, repeats),
        "step_bf16": median_seconds(step_with_torchs_bf16, repeats),
        "step_scratchlm": median_seconds(optimizer.step, repeats),
    }
    step_tokens = batch * block
    return {
        "config": str(config.relative_to(ROOT)),
        "model_type": model_args.model_type,
        "shape": f"{model_args.n_layer} x {model_args.n_embd}, vocab {vocab}, batch {batch} x {block}",
        "muon_matrices": len(muon_groups[0]["params"]),
        "seconds": seconds,
        "tokens_per_second_bf16": step_tokens / (seconds["forward_backward"] + seconds["step_bf16"]),
        "tokens_per_second_float32": step_tokens / (seconds["forward_backward"] + seconds["step_scratchlm"]),
        "update_difference": ((bf16 - float32).abs().max() / float32.abs().max()).item(),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| config | shape | Muon matrices | forward+backward ms | optimizer step, torch's bf16 ms "
        "| optimizer step, scratchlm ms | tokens/s bf16 | tokens/s scratchlm | x | update difference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = {k: v * 1e3 for k, v in r["seconds"].items()}
        ratio = r["tokens_per_second_float32"] / r["tokens_per_second_bf16"]
        lines.append(
            f"| {Path(r['config']).name} | {r['shape']} | {r['muon_matrices']} | {s['forward_backward']:.0f} | "
            f"{s['step_bf16']:.0f} | {s['step_scratchlm']:.0f} | {r['tokens_per_second_bf16']:,.0f} | "
            f"{r['tokens_per_second_float32']:,.0f} | {ratio:.2f} | {r['update_difference']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="Timed steps per measurement (median).")
    parser.add_argument("--tiny", action="store_true", help="A 1-layer, 32-wide model: checks the code path.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/muon_step.json")
    args = parser.parse_args(argv)
    keep_freed_memory_in_the_heap()
    results = [measure(config, args.repeats, args.tiny) for config in CONFIGS]
    report = {
        "device": f"cpu ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "tiny": args.tiny,
        "results": results,
    }
    print(f"{report['device']}, torch {report['torch']}\n")
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
