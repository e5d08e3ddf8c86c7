"""Which GPUs compute in bf16, for every choice that depends on it: the runs' mixed precision, where Muon
orthogonalises its updates, the dtype of `scratchlm generate` and the planner's flags.

`torch.cuda.is_bf16_supported()` (and transformers' check, which calls it) also says yes on GPUs that only
emulate bf16: every GPU of compute capability below 8.0 (V100, T4, the RTX 20 series, P100). They store bf16
tensors but have no bf16 tensor cores, so a bf16 run there is slower than float32. Volta's and Turing's
tensor cores compute fp16, which needs loss scaling (Trainer's `--fp16`): runs there take it by default. Older
GPUs have no tensor cores, and some compute fp16 far slower than float32 (the GTX 10 series), so they train
in float32.
"""

from __future__ import annotations

import functools

import torch

BF16_COMPUTE_CAPABILITY = (8, 0)  # Ampere (A100, RTX 30) and newer
FP16_TENSOR_CORES = (7, 0)  # Volta and Turing: tensor cores for fp16 only


@functools.lru_cache(maxsize=16)
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def cuda_computes_bf16(index: int | None = None) -> bool:
    """Whether CUDA device `index` (default: the current one) has bf16 tensor cores; ROCm GPUs all compute bf16."""
    if not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return True
    return _capability(torch.cuda.current_device() if index is None else index) >= BF16_COMPUTE_CAPABILITY


def cuda_computes_fp16_only(index: int | None = None) -> bool:
    """Whether CUDA device `index` (default: the current one) has fp16 tensor cores but no bf16 ones (Volta, Turing)."""
    if not torch.cuda.is_available() or torch.version.hip:
        return False
    capability = _capability(torch.cuda.current_device() if index is None else index)
    return FP16_TENSOR_CORES <= capability < BF16_COMPUTE_CAPABILITY


def default_mixed_precision(bf16: bool | None, fp16: bool | None, use_cpu: bool) -> tuple[bool, bool]:
    """(bf16, fp16) for a run that left either unset (None): bf16 where the GPU has bf16 tensor cores, fp16 with
    loss scaling where it has fp16 ones only (as nanoGPT picks float16 where bf16 is missing), else float32."""
    if fp16 is None:
        fp16 = not use_cpu and not bf16 and cuda_computes_fp16_only()
    if bf16 is None:
        bf16 = not use_cpu and not fp16 and cuda_computes_bf16()
    return bool(bf16), bool(fp16)


def emulates_bf16(device: torch.device) -> bool:
    """A device whose bf16 matrix products are emulated or missing: CUDA GPUs older than Ampere, CPUs (most have
    no bf16 matrix units; AVX2 cores emulate them) and Apple GPUs (M1 and M2 emulate bf16; macOS before 14 has
    none)."""
    if device.type in ("cpu", "mps"):
        return True
    return device.type == "cuda" and not cuda_computes_bf16(device.index)


def precision_name(bf16: bool, fp16: bool) -> str:
    return "bf16 mixed" if bf16 else "fp16 mixed" if fp16 else "fp32"


def precision_advice(bf16: bool, fp16: bool) -> str | None:
    """A warning for a run given --bf16 true on a CUDA GPU that only emulates bf16, else None. (A run that sets
    neither flag gets fp16 there, or fp32 where there are no tensor cores; --fp16 false is taken as meant.)"""
    if not bf16 or not torch.cuda.is_available() or cuda_computes_bf16():
        return None
    capability = _capability(torch.cuda.current_device())
    gpu = f"{torch.cuda.get_device_name()} (compute capability {capability[0]}.{capability[1]})"
    if capability < FP16_TENSOR_CORES:
        return f"--bf16 true: {gpu} emulates bf16, slower than fp32: pass --bf16 false"
    return (
        f"--bf16 true: {gpu} emulates bf16, slower than fp32; without the flag the run trains in fp16 mixed "
        "precision with loss scaling, on its fp16 tensor cores"
    )
