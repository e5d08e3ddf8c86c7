#!/usr/bin/env python
"""Memory and time of the causal LM loss at GPT-2 124M's output-layer shapes: full logits against `--fused_loss`.

    python benchmarks/fused_loss.py                   # GPU: micro-batch 32 x 1024 tokens, width 768, vocab 50,304
    python benchmarks/fused_loss.py --batch 4         # CPU: the same shapes at a smaller micro-batch

Arms, each in a fresh process so that its peak memory is its own:
- "full": the model's way, `lm_head` then `cross_entropy` over (tokens x vocab) fp32 logits;
- "chunked": scratchlm's `ChunkedLinearCrossEntropy` (what `--fused_loss` uses on a torch without
  `linear_cross_entropy`);
- "torch": torch's `linear_cross_entropy` with its chunked options (what `--fused_loss` uses where it exists).

Each arm runs forward and backward from the final hidden states (bf16 under autocast on a GPU, fp32 on a
CPU) and reports the peak memory above what the inputs and weights take (the CUDA allocator's peak on a GPU,
the process's peak resident memory on a CPU), the median time of --repeats passes, the loss and the
gradient norms, which must agree between the arms. It prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scratchlm.training.losses import ChunkedLinearCrossEntropy, causal_lm_loss, default_chunk_rows

ARMS = ("full", "chunked", "torch")


def resident_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_arm(arm: str, batch: int, block: int, width: int, vocab: int, repeats: int) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    head = torch.nn.Linear(width, vocab, bias=False, device=device)
    hidden = torch.randn(batch, block, width, device=device, requires_grad=True)
    labels = torch.randint(0, vocab, (batch, block), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def loss_fn():
        with autocast:
            if arm == "full":
                logits = head(hidden[:, :-1]).float()
                return F.cross_entropy(logits.reshape(-1, vocab), labels[:, 1:].reshape(-1))
            if arm == "chunked":
                h = hidden[:, :-1].reshape(-1, width)
                y = labels[:, 1:].reshape(-1)
                rows = default_chunk_rows(vocab)
                return ChunkedLinearCrossEntropy.apply(h, head.weight, None, y, torch.tensor(float(y.numel())), rows)
            return causal_lm_loss(hidden, head, labels)

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = resident_bytes("VmRSS")
    times = []
    for _ in range(repeats):
        hidden.grad = head.weight.grad = None
        start = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else resident_bytes("VmHWM")
    return {
        "arm": arm,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "peak_extra_gb": (peak - base) / 1e9,
        "seconds": statistics.median(times),
        "loss": loss.item(),
        "grad_norm_hidden": hidden.grad.float().norm().item(),
        "grad_norm_weight": head.weight.grad.float().norm().item(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in this process
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fused_loss.json"))
    args = parser.parse_args(argv)
    shape = (args.batch, args.block, args.width, args.vocab, args.repeats)
    if args.arm:
        print(json.dumps(run_arm(args.arm, *shape)))
        return {}
    arms = [a for a in ARMS if a != "torch" or hasattr(F, "linear_cross_entropy")]
    rows = []
    for arm in arms:
        command = [sys.executable, __file__, "--arm", arm]
        command += ["--batch", str(args.batch), "--block", str(args.block), "--width", str(args.width)]
        command += ["--vocab", str(args.vocab), "--repeats", str(args.repeats)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {"shape": dict(zip(("batch", "block", "width", "vocab"), shape[:4])), "torch": torch.__version__}
    result["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    full = rows[0]
    print(f"loss at {args.batch} x {args.block} tokens, width {args.width}, vocab {args.vocab:,} on {full['device']}")
    print(f"{'arm':<8} {'peak GB':>8} {'x full':>7} {'seconds':>8} {'x full':>7} {'loss':>10} {'|grad h|':>10}")
    for r in rows:
        print(
            f"{r['arm']:<8} {r['peak_extra_gb']:>8.2f} {r['peak_extra_gb'] / full['peak_extra_gb']:>7.2f} "
            f"{r['seconds']:>8.3f} {r['seconds'] / full['seconds']:>7.2f} {r['loss']:>10.5f} "
            f"{r['grad_norm_hidden']:>10.3e}"
        )
    return result


if __name__ == "__main__":
    main()
