"""Compute planning: from a budget to a compute-optimal model size, token count, shape, batch and wall time.

The fit is the Chinchilla rule of thumb (Hoffmann et al. 2022): about 20 training tokens per
parameter, with training compute C = tokens x FLOPs per token (6N + 12·L·d·T, as nanoGPT counts).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass

import torch

from .errors import ScratchError
from .flops import FP16_ONLY, PEAK_BF16_TFLOPS, flops_per_token, gpu_in_table
from .precision import cuda_computes_bf16

TOKENS_PER_PARAMETER = 20.0
GPU_MEMORY_GB = {
    "H200": 141,
    "H100": 80,
    "A100": 80,
    "L40S": 48,
    "A10G": 24,
    "L4": 24,
    "RTX 4090": 24,
    "RTX 3090": 24,
    "V100": 32,
    "T4": 16,
}
# Bytes per parameter held during training: fp32 weights, fp32 gradients, two fp32 Adam moments.
STATE_BYTES_PER_PARAM = 16
# Activation bytes per token per layer per unit width in bf16 with fused (flash/SDPA) attention
# (Korthikanti et al. 2022: 34·d per token per layer without the attention-score term).
ACTIVATION_BYTES = 34


@dataclass
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    parameters: int  # without position embeddings, embeddings tied with the output layer


def shape_parameters(n_layer: int, n_embd: int, vocab: int) -> int:
    return 12 * n_layer * n_embd * n_embd + 13 * n_layer * n_embd + vocab * n_embd + 2 * n_embd


def nearest_shape(target_params: float, vocab: int) -> Shape:
    """The GPT-2-like shape (width a multiple of 64, heads of 64, width/depth near GPT-2's 32-128)
    whose parameter count is nearest to the target."""
    best = None
    for n_layer in range(2, 97):
        for n_embd in range(128, 8193, 64):
            if not 24 <= n_embd / n_layer <= 128:
                continue
            params = shape_parameters(n_layer, n_embd, vocab)
            key = (abs(math.log(params / target_params)), abs(math.log(n_embd / n_layer / 64)))
            if best is None or key < best[0]:
                best = (key, Shape(n_layer, n_embd, n_embd // 64, params))
    return best[1]


def micro_batch_that_fits(
    shape: Shape,
    context: int,
    vocab: int,
    memory_gb: float,
    global_sequences: int,
    processes: int,
    fused_loss: bool = False,
) -> int:
    """The largest power of two micro-batch whose weights, optimizer state, activations and logits fit in 90%.

    With --fused_loss the logits of a whole micro-batch never exist, only a chunk's.
    """
    budget = 0.9 * memory_gb * 1e9 - STATE_BYTES_PER_PARAM * shape.parameters
    logit_bytes = 0 if fused_loss else 6 * vocab  # bf16 logits and their fp32 copy for the loss
    per_sequence = context * (ACTIVATION_BYTES * shape.n_layer * shape.n_embd + logit_bytes)
    micro = 1
    while micro * 2 * per_sequence <= budget and micro * 2 * processes <= global_sequences:
        micro *= 2
    if per_sequence > budget:
        raise ScratchError(
            f"a {shape.parameters / 1e6:.0f}M-parameter model with context {context} does not fit "
            f"in {memory_gb} GB even at micro-batch 1: plan for a larger GPU or shard it (FSDP)"
        )
    return micro


@dataclass
class Plan:
    budget_flops: float
    target_parameters: float
    shape: Shape
    context: int
    tokens: float
    flops_per_token: float
    global_batch_sequences: int
    micro_batch: int
    gradient_accumulation_steps: int
    processes: int
    steps: int
    tokens_per_second: float
    throughput_source: str
    hours: float
    epochs: float | None
    warnings: list[str]
    fused_loss: bool = False
    fp16: bool = False  # the GPU has no bf16 tensor cores: plan the run in fp16 mixed precision

    def as_dict(self) -> dict:
        return asdict(self)


def make_plan(
    *,
    gpu: str | None,
    hours: float | None,
    flops: float | None,
    num_gpus: int = 1,
    mfu: float = 0.35,
    context: int = 1024,
    vocab: int = 50304,
    global_batch_tokens: int = 524288,
    corpus_tokens: float | None = None,
    measured_tokens_per_second: float | None = None,
    fused_loss: bool = False,
) -> Plan:
    if (flops is None) == (gpu is None or hours is None):
        raise ScratchError("give a budget as --gpu and --hours, or as --flops (not both)")
    if not 0 < mfu <= 1:
        raise ScratchError(f"--mfu must be in (0, 1], got {mfu}")
    peak, key = None, None
    if gpu is not None:
        key = gpu_in_table(gpu)
        if key is None:
            raise ScratchError(f"--gpu {gpu}: unknown GPU; known: {', '.join(PEAK_BF16_TFLOPS)} (or give --flops)")
        peak = PEAK_BF16_TFLOPS[key]
        flops = hours * 3600 * num_gpus * peak * 1e12 * mfu
    if flops <= 0:
        raise ScratchError("the compute budget must be positive")
    # C = 6·N·D with D = 20·N gives N = sqrt(C / 120); the shape then fixes the exact FLOPs per token.
    target = math.sqrt(flops / (6 * TOKENS_PER_PARAMETER))
    shape = nearest_shape(target, vocab)
    per_token = flops_per_token(shape.parameters, shape.n_layer, shape.n_embd, context)
    tokens = flops / per_token
    global_sequences = max(1, round(global_batch_tokens / context))
    stated = re.search(r"\b(\d+)\s*GB\b", gpu or "", re.IGNORECASE)  # "A100 40GB": that variant's memory
    table = (gb for name, gb in GPU_MEMORY_GB.items() if key and all(p in key.upper() for p in name.split()))
    memory = int(stated.group(1)) if stated else next(table, 80)
    micro = micro_batch_that_fits(shape, context, vocab, memory, global_sequences, num_gpus, fused_loss)
    accumulation = max(1, global_sequences // (micro * num_gpus))
    steps = max(1, math.ceil(tokens / (micro * accumulation * num_gpus * context)))
    if measured_tokens_per_second:
        tokens_per_second, source = measured_tokens_per_second * num_gpus, "measured on this machine"
    elif peak is not None:
        precision = "fp16" if key in FP16_ONLY else "bf16"
        tokens_per_second = num_gpus * peak * 1e12 * mfu / per_token
        source = f"{key}: {peak:.0f} TFLOP/s {precision} peak x MFU {mfu}"
    else:
        tokens_per_second, source = float("nan"), "unknown (give --gpu or --measure)"
    warnings = []
    epochs = tokens / corpus_tokens if corpus_tokens else None
    if epochs is not None and epochs > 1:
        warnings.append(
            f"the corpus has {corpus_tokens:.3g} tokens, so the plan repeats it {epochs:.1f} times; "
            "beyond about 4 epochs repeated tokens are worth little (Muennighoff et al. 2023): "
            "add data or plan a smaller model"
        )
    return Plan(
        flops,
        target,
        shape,
        context,
        tokens,
        per_token,
        micro * accumulation * num_gpus,
        micro,
        accumulation,
        num_gpus,
        steps,
        tokens_per_second,
        source,
        tokens / tokens_per_second / 3600,
        epochs,
        warnings,
        fused_loss,
        fp16=key in FP16_ONLY,
    )


def measure_tokens_per_second(shape: Shape, context: int, vocab: int, micro_batch: int, steps: int = 5) -> float:
    """Train steps of the planned GPT-2 shape on random tokens on this machine's device (on CUDA, bf16 or fp16
    where the GPU has no bf16 tensor cores)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab, n_positions=context, n_embd=shape.n_embd, n_layer=shape.n_layer, n_head=shape.n_head
        )
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    ids = torch.randint(0, vocab, (micro_batch, context), device=device)

    def step():
        with torch.autocast(
            device, dtype=torch.bfloat16 if cuda_computes_bf16() else torch.float16, enabled=device == "cuda"
        ):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocations, kernels
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * micro_batch * context / (time.perf_counter() - start)


def format_plan(plan: Plan) -> str:
    s = plan.shape
    rows = [
        ("compute budget", f"{plan.budget_flops:.3g} FLOPs"),
        (
            "compute-optimal size",
            f"{plan.target_parameters / 1e6:,.1f}M parameters (~{TOKENS_PER_PARAMETER:.0f} tokens each)",
        ),
        ("shape", f"n_layer {s.n_layer}, n_embd {s.n_embd}, n_head {s.n_head}: {s.parameters / 1e6:,.1f}M parameters"),
        ("tokens", f"{plan.tokens:.3g} at context {plan.context} ({plan.flops_per_token:.3g} FLOPs/token)"),
        (
            "global batch",
            f"{plan.global_batch_sequences} sequences = {plan.micro_batch} per device x "
            f"{plan.gradient_accumulation_steps} accumulation x {plan.processes} GPUs",
        ),
        ("steps", f"{plan.steps:,}"),
        ("throughput", f"{plan.tokens_per_second:,.0f} tokens/s ({plan.throughput_source})"),
        ("wall time", f"{plan.hours:,.1f} hours"),
    ]
    if plan.epochs is not None:
        rows.append(("epochs of the corpus", f"{plan.epochs:.2f}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"warning: {w}" for w in plan.warnings]
    lines.append(
        f"as flags: --n_layer {s.n_layer} --n_embd {s.n_embd} --n_head {s.n_head} --block_size {plan.context} "
        f"--per_device_train_batch_size {plan.micro_batch} --gradient_accumulation_steps "
        f"{plan.gradient_accumulation_steps} --max_steps {plan.steps}"
        + (" --fused_loss true" if plan.fused_loss else "")
        + (" --fp16 true" if plan.fp16 else "")
    )
    return "\n".join(lines)
