"""The causal LM loss without the full logits (`--fused_loss`).

The largest activation of a small LM is its (tokens x vocabulary) logits: GPT-2 124M at a micro-batch of
32 x 1024 tokens holds 6.6 GB of fp32 logits, and as much again for their gradient. Here the model runs
without its output layer (`HeadInput` hands the layer an empty slice and keeps what it was given: the
final hidden states), and the loss is computed from those states and the output layer's weight a chunk
of rows at a time, so that at most one chunk of logits exists at once. The result equals the model's own
loss within float tolerance.

Two implementations: torch's `linear_cross_entropy` with its chunked options where the installed torch
has it, else `ChunkedLinearCrossEntropy` below, which computes each chunk's gradients during the
forward pass (as Liger's fused kernel does) and hands them out in the backward pass.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_LOGITS_BYTES = 128 * 2**20


class HeadInput:
    """Captures the input of a model's output layer, which then computes logits for no position at all."""

    def __init__(self, model: torch.nn.Module):
        self.head = model.get_output_embeddings()
        if not isinstance(self.head, torch.nn.Linear):
            raise TypeError(f"--fused_loss needs a linear output layer, and this model's is {type(self.head).__name__}")
        self.active = False
        self.hidden: torch.Tensor | None = None
        # Registered once, before Trainer compiles the model, so that torch.compile traces the hook.
        self.head.register_forward_pre_hook(self._capture)

    def _capture(self, module, args):
        if not self.active:
            return None
        self.hidden = args[0]
        return (args[0][..., :0, :],)

    @contextmanager
    def captured(self):
        self.active, self.hidden = True, None
        try:
            yield self
        finally:
            self.active = False

    def take(self) -> torch.Tensor:
        hidden, self.hidden = self.hidden, None
        if hidden is None:
            raise RuntimeError(
                "--fused_loss: the model never called its output layer; pass --fused_loss false for this model"
            )
        return hidden


def causal_lm_loss(
    hidden: torch.Tensor,
    head: torch.nn.Linear,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """The next-token loss of (batch, T, d) hidden states under `head`, as the model's own loss computes it.

    Position t predicts label t+1; labels equal to -100 are left out. The sum is divided by
    `num_items_in_batch` when given (Trainer's count over the whole accumulated batch), else by the
    number of predicted labels.
    """
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # (N, d), N = batch x (T - 1)
    labels = labels[:, 1:].reshape(-1).to(hidden.device)  # (N,)
    if num_items_in_batch is None:
        denominator = (labels != IGNORE_INDEX).sum().clamp(min=1)
    else:
        denominator = torch.as_tensor(num_items_in_batch, device=hidden.device)
    denominator = denominator.to(torch.float32)
    if hasattr(F, "linear_cross_entropy"):
        options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk_rows)  # None: torch's measured pick
        total = F.linear_cross_entropy(
            hidden.to(compute_dtype(hidden)),
            head.weight.to(compute_dtype(hidden)),
            labels,
            linear_bias=head.bias,
            reduction="sum",
            ignore_index=IGNORE_INDEX,
            options=options,
        )
        return total.float() / denominator
    chunk_rows = chunk_rows or default_chunk_rows(head.out_features)
    return ChunkedLinearCrossEntropy.apply(hidden, head.weight, head.bias, labels, denominator, chunk_rows)


def default_chunk_rows(vocab: int) -> int:
    """A power of two of rows whose fp32 logits take at most CHUNK_LOGITS_BYTES.

    Measured on CPU at GPT-2's vocabulary (`benchmarks/fused_loss.py`): 64-row chunks were 1.17x slower than
    the full logits, 256 to 1024 rows 0.8x; smaller chunks save little, as the gradient buffers dominate.
    """
    return 2 ** max(0, int(math.log2(max(1, CHUNK_LOGITS_BYTES // (4 * vocab)))))


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the model's own output layer would multiply in: autocast's where it is on."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(hidden @ weight.T + bias, labels)) / denominator, one chunk of rows at a time.

    The forward pass computes each chunk's logits in fp32, its loss, and at once its gradients with
    respect to the hidden states, weight and bias; the backward pass only scales them.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, denominator, chunk_rows):
        dtype = compute_dtype(hidden)
        needs_grad = any(ctx.needs_input_grad[:3])
        with torch.autocast(hidden.device.type, enabled=False):
            h_all, w = hidden.to(dtype), weight.to(dtype)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(hidden) if needs_grad else None
            grad_weight = torch.zeros_like(weight, dtype=torch.float32) if needs_grad else None
            grad_bias = torch.zeros_like(bias, dtype=torch.float32) if needs_grad and bias is not None else None
            for start in range(0, h_all.shape[0], chunk_rows):
                h = h_all[start : start + chunk_rows]  # (n, d)
                y = labels[start : start + chunk_rows]  # (n,)
                logits = (h @ w.T).float()  # (n, V)
                if bias is not None:
                    logits += bias.float()
                valid = y != IGNORE_INDEX
                target = y.clamp(min=0).unsqueeze(1)
                log_norm = torch.logsumexp(logits, dim=-1)  # (n,)
                total += ((log_norm - logits.gather(1, target).squeeze(1)) * valid).sum()
                if not needs_grad:
                    continue
                grad = logits.sub_(log_norm.unsqueeze(1)).exp_()  # softmax, in place of the logits
                grad.scatter_add_(1, target, -valid.unsqueeze(1).to(grad.dtype))
                grad.mul_((valid.unsqueeze(1) / denominator).to(grad.dtype))
                grad_hidden[start : start + chunk_rows] = (grad.to(dtype) @ w).to(hidden.dtype)
                grad_weight += (grad.to(dtype).T @ h).float()
                if grad_bias is not None:
                    grad_bias += grad.sum(0)
        ctx.needs_grad = needs_grad
        if needs_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype), grad_bias)
        return total / denominator

    @staticmethod
    def backward(ctx, grad_output):
        if not ctx.needs_grad:
            return None, None, None, None, None, None
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        grad_bias = None if grad_bias is None else grad_bias * grad_output
        return grad_hidden * grad_output, grad_weight * grad_output, grad_bias, None, None, None
