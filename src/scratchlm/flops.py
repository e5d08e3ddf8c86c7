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


def peak_tflops(device_name: str) -> float | None:
    """The table's peak for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None if unknown."""
    name = device_name.upper()
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # 'H100 PCIe' before 'H100'
        if all(part.upper() in name for part in key.split()):
            return PEAK_BF16_TFLOPS[key]
    return None


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
