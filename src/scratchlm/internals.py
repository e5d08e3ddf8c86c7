"""Every private name of transformers, datasets and torch that scratchlm relies on, fenced here.

Each has no public equivalent in the releases we support. `PRIVATE_NAMES` lists them with the parameters we
call them with; `tests/test_internals.py` checks every entry against the installed packages, so a release
that moves one fails a test that names it instead of a training run. Nothing outside this module touches
a private name of another package.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator

import multiprocess.pool
import multiprocess.queues
import torch
from datasets import Dataset
from torch.optim import _muon as torch_muon
from transformers import Trainer

# (owner, name, parameters we pass it or rely on; None for an attribute rather than a function)
PRIVATE_NAMES: list[tuple[object, str, tuple[str, ...] | None]] = [
    # The gradient norm of every optimizer step before clipping: Trainer passes it to no callback.
    (Trainer, "_clip_grad_norm", ("model",)),
    # Trainer's flag that it built the scheduler itself and must rebuild it on a new train() call.
    (Trainer, "_created_lr_scheduler", None),
    # Trainer's report of the keys a resumed checkpoint lacked, which counts weights tied to one it had.
    (Trainer, "_issue_warnings_after_load", ("load_result",)),
    # Saving the final model without pushing it: the card and results must be written before the push.
    (Trainer, "save_model", ("output_dir", "_internal_call")),
    # A loaded Hub dataset's content hash, which datasets computes from its files and offers no getter for.
    (Dataset, "_fingerprint", None),
    # torch's Muon orthogonalises every update with this function, in bfloat16, and takes no other.
    (torch_muon, "_zeropower_via_newtonschulz", ("grad", "ns_coefficients", "ns_steps", "eps")),
    # A pool worker waits for tasks in its task queue's get(), holding the queue's read lock:
    # `waiting_for_a_pool_task` (multiprocess, which datasets starts its workers with, copies multiprocessing).
    (multiprocess.pool, "worker", ("inqueue", "outqueue")),
    (multiprocess.queues.SimpleQueue, "_rlock", None),
]


class TrainerInternals(Trainer):
    """The Trainer overrides that need private names. `on_gradient_norm` is what a subclass implements."""

    def on_gradient_norm(self, grad_norm, max_norm: float) -> None:
        """Called with every optimizer step's gradient norm before clipping (a tensor, still on the device)."""

    def _clip_grad_norm(self, model):
        norm = super()._clip_grad_norm(model)
        self.on_gradient_norm(norm, self.args.max_grad_norm)
        return norm

    def _issue_warnings_after_load(self, load_result):
        # A checkpoint stores a tied weight once (GPT-2's lm_head is its token embedding), so a resume that
        # restored everything would warn "missing keys ['lm_head.weight']". Keep the keys that are really gone.
        tensors = self.model.state_dict(keep_vars=True)
        restored = {id(tensor) for name, tensor in tensors.items() if name not in load_result.missing_keys}
        gone = [key for key in load_result.missing_keys if key not in tensors or id(tensors[key]) not in restored]
        super()._issue_warnings_after_load(load_result._replace(missing_keys=gone))

    def mark_scheduler_built(self) -> None:
        """For a scheduler built outside `Trainer.create_scheduler`: Trainer rebuilds it on the next train()."""
        self._created_lr_scheduler = True

    def save_model_without_push(self) -> None:
        self.save_model(_internal_call=True)


def skip_steps_when(optimizer, should_skip: Callable[[], bool]):
    """Wraps `optimizer.step` so that it does nothing when `should_skip()` says so; idempotent.

    Trainer has no hook that can cancel an optimizer step, so the step itself is wrapped: a bound method,
    as torch's LR schedulers expect of optimizer.step when they wrap it.
    """
    if getattr(optimizer, "_scratchlm_skips_steps", False):  # Trainer calls create_optimizer again on an existing one
        return optimizer
    step = optimizer.step

    def step_unless_skipped(_optimizer, *args, **kwargs):
        if should_skip():
            return None  # leave the weights and the moments as they were
        return step(*args, **kwargs)

    optimizer.step = types.MethodType(step_unless_skipped, optimizer)
    optimizer._scratchlm_skips_steps = True
    return optimizer


def dataset_fingerprint(dataset: Dataset) -> str:
    return dataset._fingerprint


@contextlib.contextmanager
def muon_orthogonalises_updates_with(orthogonalise: Callable, wanted: Callable[[torch.Tensor], bool]) -> Iterator[None]:
    """Within the block, torch's Muon hands the updates for which `wanted(update)` is true to `orthogonalise`
    (same arguments as its own Newton-Schulz function); the others keep torch's bfloat16 iteration.
    torch.optim.Muon has no parameter for this, so its module-level function is swapped for the block and
    restored after it."""
    own = torch_muon._zeropower_via_newtonschulz

    def dispatch(grad, ns_coefficients, ns_steps, eps):
        if wanted(grad):
            return orthogonalise(grad, ns_coefficients, ns_steps, eps)
        return own(grad, ns_coefficients, ns_steps, eps)

    torch_muon._zeropower_via_newtonschulz = dispatch
    try:
        yield
    finally:
        torch_muon._zeropower_via_newtonschulz = own


def waiting_for_a_pool_task(frame: types.FrameType | None) -> bool:
    """Whether the process whose innermost frame is `frame` is a pool worker waiting for its next task, inside
    its task queue's get() and so holding the queue's read lock, which nothing can release if it dies there."""
    while frame is not None and frame.f_back is not None:
        if (
            frame.f_code.co_name == "get"
            and frame.f_back.f_code.co_name == "worker"
            and hasattr(frame.f_locals.get("self"), "_rlock")
        ):
            return True
        frame = frame.f_back
    return False
