"""`PretrainingTrainer`: what a pretraining run needs inside Trainer's loop, and nothing else.

Decay on weight matrices only, the bad-loss guard (`guard.py`: stop, or skip the optimizer step), the
sequence-length curriculum, evaluations that leave the training RNG alone, and the metrics a
pretraining run logs (bits per char, the unigram bar, tokens/s).
"""

from __future__ import annotations

import logging
import math
import types
from pathlib import Path

import torch
from transformers import Trainer
from transformers.pytorch_utils import Conv1D

from ..card import CARD_FILE
from .callbacks import ThroughputMeter
from .guard import LossGuard
from .health import ONE_CYCLE_DIV, ONE_CYCLE_FINAL_DIV, HealthMonitor
from .losses import HeadInput, causal_lm_loss
from .muon import build_muon
from .preemption import PreemptionCallback

logger = logging.getLogger("scratchlm")


class PretrainingTrainer(Trainer):
    def __init__(
        self,
        *args,
        objective,
        eval_unigram_loss: float,
        chars_per_token: float | None,
        throughput: ThroughputMeter | None = None,
        run_manifest: dict | None = None,
        tokens_per_step: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.eval_unigram_loss = eval_unigram_loss
        self.chars_per_token = chars_per_token
        self.throughput = throughput
        self.run_manifest = run_manifest
        self.loss_guard = LossGuard(self.args.bad_loss, self.args.bad_loss_spike_factor, self.accelerator)
        self.add_callback(self.loss_guard)
        self.preemption = PreemptionCallback(self.accelerator)
        self.add_callback(self.preemption)
        self.head_input = HeadInput(self.model) if self.args.fused_loss else None
        self.health = None
        if tokens_per_step:
            self.health = HealthMonitor(self, tokens_per_step, self.args.health_unigram_tokens)
            self.add_callback(self.health)
            clip = self.accelerator.clip_grad_norm_

            def clip_and_count(parameters, max_norm, *args, **kwargs):
                norm = clip(parameters, max_norm, *args, **kwargs)
                self.health.count_clipping(norm, max_norm)
                return norm

            # Trainer clips through the accelerator and has no hook that sees the norm of every step.
            self.accelerator.clip_grad_norm_ = clip_and_count

    @property
    def skipped_steps(self) -> int:
        return self.loss_guard.skipped_steps

    def get_decay_parameter_names(self, model) -> list[str]:
        if self.args.weight_decay_on == "linear":  # BERT-era: the weights of linear layers, embeddings undecayed
            linear = {
                f"{module_name}.weight" if module_name else "weight"
                for module_name, module in model.named_modules()
                if isinstance(module, (torch.nn.Linear, Conv1D))
            }
            return [name for name, _ in model.named_parameters() if name in linear]
        # Matrices (and embeddings) decay; biases and norm gains, which are 1-D, do not.
        return [name for name, param in model.named_parameters() if param.ndim >= 2]

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.args.lr_scheduler_type != "one_cycle":
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            rise = max(1, self.args.get_warmup_steps(num_training_steps))
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in optimizer.param_groups],
                total_steps=num_training_steps,
                pct_start=min(rise / num_training_steps, 0.99),
                anneal_strategy="cos",
                cycle_momentum=False,
                div_factor=ONE_CYCLE_DIV,
                final_div_factor=ONE_CYCLE_FINAL_DIV,
            )
            self._created_lr_scheduler = True  # Trainer's own flag: it rebuilds what it created on a new train()
        return self.lr_scheduler

    def create_optimizer(self, model=None):
        if self.args.optim == "muon" and self.optimizer is None:
            model = self.model if model is None else model
            self.optimizer = build_muon(model, self.args, self.get_decay_parameter_names(model))
        optimizer = super().create_optimizer(model)
        if getattr(optimizer, "_skips_bad_steps", False):  # Trainer calls this again on an existing optimizer
            return optimizer
        step = optimizer.step

        def step_unless_skipped(_optimizer, *args, **kwargs):
            if self.loss_guard.skip_this_step(self.state.global_step + 1):
                return None  # a bad loss in this step: leave the weights and the moments as they were
            return step(*args, **kwargs)

        # Trainer has no hook that can cancel an optimizer step, so the step itself is wrapped; a bound
        # method, as torch's LR schedulers expect of optimizer.step when they wrap it.
        optimizer.step = types.MethodType(step_unless_skipped, optimizer)
        optimizer._skips_bad_steps = True
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.head_input is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        with self.head_input.captured():
            outputs = model(**inputs)
        # Normalised as Trainer expects of the model's own loss: over the accumulated batch where the model
        # takes num_items_in_batch, else per micro-batch (Trainer then divides by the accumulation steps).
        num_items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss = causal_lm_loss(self.head_input.take(), self.head_input.head, labels, num_items)
        if self.args.average_tokens_across_devices and num_items is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def get_batch_samples(self, *args, **kwargs):
        if self.health is None:
            return super().get_batch_samples(*args, **kwargs)
        with self.health.fetching():
            return super().get_batch_samples(*args, **kwargs)

    def curriculum_steps(self) -> int:
        """Steps trained at curriculum_block_size: the first curriculum_fraction of the run."""
        return int(self.args.curriculum_fraction * self.state.max_steps)

    def _finalize_training(self, *args, **kwargs):
        # Private, but the only place where Trainer, with save_total_limit 1, deletes every checkpoint but
        # the best when training ends, the newest included: keep the newest, the only one a longer run can
        # resume from.
        limit = self.args.save_total_limit
        if limit == 1:
            self.args.save_total_limit = 2
        try:
            return super()._finalize_training(*args, **kwargs)
        finally:
            self.args.save_total_limit = limit

    def training_step(self, model, inputs, num_items_in_batch=None):
        short = getattr(self.args, "curriculum_block_size", None)
        if short and self.state.global_step < self.curriculum_steps():
            inputs, num_items_in_batch = split_blocks(inputs, short, num_items_in_batch, self.objective.causal)
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.loss_guard.observe(loss, self.state.global_step + 1)
        return loss

    def evaluate(self, *args, **kwargs):
        # The same random masks (MLM) at every evaluation, without moving the training RNG:
        # evaluations stay comparable and training continues exactly as it would have.
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.args.seed)
            return super().evaluate(*args, **kwargs)

    def create_model_card(self, *args, **kwargs):
        if not (Path(self.args.output_dir) / CARD_FILE).exists():  # finish_run writes a fuller one
            super().create_model_card(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:  # the dict is also evaluate()'s return value, so this reaches both
            logs.update(lm_eval_metrics(logs["eval_loss"], self.chars_per_token, self.eval_unigram_loss))
        elif "loss" in logs:
            if self.throughput is not None:
                logs.update(self.throughput.measure(self.state.global_step))
            if self.skipped_steps:
                logs["skipped_steps"] = self.skipped_steps
        super().log(logs, start_time)


def split_blocks(inputs: dict, length: int, num_items_in_batch, causal: bool):
    """(batch, block) tensors cut into (batch x block/length, length): the same token stream packed shorter.

    A causal LM predicts one token fewer per piece, so the count that normalises the loss shrinks to match.
    """
    block = inputs["input_ids"].shape[1]
    pieces = block // length
    split = {
        k: v.reshape(-1, length) if torch.is_tensor(v) and v.dim() == 2 and v.shape[1] == block else v
        for k, v in inputs.items()
    }
    if causal and num_items_in_batch is not None:
        num_items_in_batch = num_items_in_batch // (block - 1) * pieces * (length - 1)
    return split, num_items_in_batch


def lm_eval_metrics(eval_loss: float, chars_per_token: float | None, unigram_loss: float) -> dict[str, float]:
    metrics = {"eval_perplexity": math.exp(min(eval_loss, 50.0)), "eval_unigram_loss": unigram_loss}
    if chars_per_token:  # causal LMs score every token, so nats/token converts to bits/char
        metrics["eval_bits_per_char"] = eval_loss / math.log(2) / chars_per_token
    return metrics
