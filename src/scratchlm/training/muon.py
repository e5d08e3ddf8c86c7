"""`--optim muon`: torch's Muon on the hidden weight matrices, AdamW on everything else, as one optimizer.

Muon (Jordan et al. 2024, the optimizer of the GPT-2 speedrun records) orthogonalises each update of a
2-D hidden matrix; it is not meant for embeddings, the output layer, norms or biases, which keep AdamW.
Trainer expects one optimizer whose `param_groups` the LR scheduler scales and whose `state_dict` a
checkpoint saves, so `MuonWithAdamW` holds the two and shares their parameter groups.

torch's Muon orthogonalises each update in bfloat16, right for a GPU with bf16 tensor cores. A CPU without
bf16 matrix units (AVX2, the common laptop and cloud core) emulates those matmuls 20 to 40 times slower than
float32 at a small model's shapes, which made the demo's whole step about 5 times slower; updates on the
CPU, and on GPUs that emulate bf16 too (V100, T4: `scratchlm.precision`), are orthogonalised in float32
instead (`benchmarks/muon_step.py` measures both on a CPU).
"""

from __future__ import annotations

import torch

from ..internals import muon_orthogonalises_updates_with
from ..precision import emulates_bf16


def muon_parameter_groups(model, decay_names: list[str], weight_decay: float) -> tuple[list[dict], list[dict]]:
    """(Muon groups, AdamW groups). Muon takes the 2-D weights of the blocks; embeddings and the output
    layer (often one tied tensor), norms and biases go to AdamW, decayed as `decay_names` says."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.get_output_embeddings()
    if head is not None:
        embeddings.add(id(head.weight))
    decay = set(decay_names)
    muon, adamw_decay, adamw_rest = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim == 2 and id(param) not in embeddings:
            muon.append(param)
        elif name in decay:
            adamw_decay.append(param)
        else:
            adamw_rest.append(param)
    adamw = [{"params": adamw_decay, "weight_decay": weight_decay}, {"params": adamw_rest, "weight_decay": 0.0}]
    return [{"params": muon, "weight_decay": weight_decay}], [g for g in adamw if g["params"]]


def newton_schulz_float32(grad: torch.Tensor, ns_coefficients: tuple, ns_steps: int, eps: float) -> torch.Tensor:
    """torch's quintic Newton-Schulz iteration (the nearest semi-orthogonal matrix, singular values pushed to
    about 1), run in float32: an update (out, in) -> an update of the same shape."""
    a, b, c = ns_coefficients
    wide = grad.float()
    tall = wide.size(0) > wide.size(1)
    if tall:  # iterate on the short side's Gram matrix: (short, short) instead of (long, long)
        wide = wide.T
    wide = wide / wide.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(ns_steps):
        gram = wide @ wide.T  # (short, short)
        wide = torch.addmm(wide, torch.addmm(gram, gram, gram, beta=b, alpha=c), wide, beta=a)
    return wide.T if tall else wide


def on_a_device_that_emulates_bf16(update: torch.Tensor) -> bool:
    return emulates_bf16(update.device)


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer over two: `param_groups` are the Muon groups then the AdamW groups (the very dicts the
    two update from, so the LR scheduler reaches both); `state_dict` holds both states."""

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], muon_options: dict, adamw_options: dict):
        self.muon = torch.optim.Muon(muon_groups, **muon_options)
        self.adamw = torch.optim.AdamW(adamw_groups, **adamw_options)
        super().__init__([p for group in self.muon.param_groups + self.adamw.param_groups for p in group["params"]], {})
        self._share_groups()

    def _share_groups(self) -> None:
        self.param_groups = self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with muon_orthogonalises_updates_with(newton_schulz_float32, wanted=on_a_device_that_emulates_bf16):
            self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self._share_groups()  # loading replaces the inner group dicts


def build_muon(model, args, decay_names: list[str]) -> MuonWithAdamW:
    muon_groups, adamw_groups = muon_parameter_groups(model, decay_names, args.weight_decay)
    return MuonWithAdamW(
        muon_groups,
        adamw_groups,
        muon_options={"lr": args.muon_learning_rate, "weight_decay": args.weight_decay},
        adamw_options={
            "lr": args.learning_rate,
            "betas": (args.adam_beta1, args.adam_beta2),
            "eps": args.adam_epsilon,
        },
    )
