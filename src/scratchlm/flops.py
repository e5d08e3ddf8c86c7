"""Training FLOPs per token and GPU peaks, for MFU, the compute planner and the benchmarks."""

from __future__ import annotations

from torch import nn
from transformers.pytorch_utils import Conv1D

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # the SXM card, the common one in clouds
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,  # fp16: V100 has no bf16
    "T4": 65.0,  # fp16
}


# GPUs without bf16 tensor cores: their peak above is fp16's, which a run reaches with --fp16 true.
FP16_ONLY = ("V100", "T4")


def gpu_in_table(name: str) -> str | None:
    """The table's key for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or for a name a user types
    that fits one key only ('4090'); None if unknown."""
    upper = name.upper()
    keys = sorted(PEAK_BF16_TFLOPS, key=len, reverse=True)  # 'H100 PCIe' before 'H100'
    for key in keys:
        if all(part.upper() in upper for part in key.split()):
            return key
    partial = [key for key in keys if upper.split() and all(part in key.upper() for part in upper.split())]
    return partial[0] if len(partial) == 1 else None


def peak_tflops(device_name: str) -> float | None:
    """The table's peak for a GPU name (see `gpu_in_table`), or None if unknown."""
    key = gpu_in_table(device_name)
    return None if key is None else PEAK_BF16_TFLOPS[key]


def flops_per_token(n_params: int, n_layer: int, n_embd: int, context: int) -> float:
    """Training FLOPs per token as nanoGPT counts them: 6N for the weights plus 12·L·d·T for attention,
    N counting the weights that take part in matrix products."""
    return 6.0 * n_params + 12.0 * n_layer * n_embd * context


def matmul_parameters(model) -> int:
    """Weights that multiply activations: those of linear layers (GPT-2's `Conv1D` is one), each counted
    once, a tied output head included. Embedding lookups, positions, norms and biases do no matmul."""
    weights = {
        id(module.weight): module.weight.numel()
        for module in model.modules()
        if isinstance(module, (nn.Linear, Conv1D))
    }
    return sum(weights.values())


def model_flops_per_token(model, context: int) -> float:
    config = model.config
    return flops_per_token(matmul_parameters(model), config.num_hidden_layers, config.hidden_size, context)
