"""`PretrainingTrainer`: what a pretraining run needs inside Trainer's loop, and nothing else.

Decay on weight matrices only, Muon and the one-cycle schedule, the bad-loss guard (`guard.py`: stop, or skip
the optimizer step), the sequence-length curriculum, full training batches under torch.compile, evaluations
that leave the training RNG alone, and the metrics a pretraining run logs (bits per char, the unigram bar,
tokens/s). Its callbacks come in as one `RunCallbacks`; the private Trainer names it needs are fenced in
`scratchlm.internals`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from transformers.pytorch_utils import Conv1D

from ..card import CARD_FILE
from ..internals import TrainerInternals, skip_steps_when
from .callbacks import RunCallbacks
from .losses import HeadInput, causal_lm_loss
from .muon import build_muon
from .preemption import leave_stops_to_the_main_process
from .schedules import build_scheduler

logger = logging.getLogger("scratchlm")


class PretrainingTrainer(TrainerInternals):
    def __init__(
        self,
        *args,
        objective,
        run_callbacks: RunCallbacks,
        eval_unigram_loss: float,
        chars_per_token: float | None,
        bytes_per_token: float | None = None,
        minimal_pairs=None,
        **kwargs,
    ):
        super().__init__(*args, callbacks=run_callbacks.as_list(), **kwargs)
        self.objective = objective
        self.run_callbacks = run_callbacks
        self.eval_unigram_loss = eval_unigram_loss
        self.chars_per_token = chars_per_token
        self.bytes_per_token = bytes_per_token
        self.minimal_pairs = minimal_pairs  # evaluation.MinimalPairsMetric, with --eval_minimal_pairs
        self.head_input = HeadInput(self.model) if self.args.fused_loss else None
        if run_callbacks.samples is not None:
            run_callbacks.samples.trackers = self.callback_handler.callbacks

    @property
    def skipped_steps(self) -> int:
        return self.run_callbacks.guard.skipped_steps

    def on_gradient_norm(self, grad_norm, max_norm: float) -> None:
        self.run_callbacks.health.count_clipping(grad_norm, max_norm, self.state.global_step + 1)

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
            self.lr_scheduler = build_scheduler(self.args, optimizer or self.optimizer, num_training_steps)
            self.mark_scheduler_built()
        return self.lr_scheduler

    def create_optimizer(self, model=None):
        if self.args.optim == "muon" and self.optimizer is None:
            model = self.model if model is None else model
            self.optimizer = build_muon(model, self.args, self.get_decay_parameter_names(model))
        optimizer = super().create_optimizer(model)
        guard = self.run_callbacks.guard
        self.run_callbacks.health.optimizer = optimizer
        # A bad loss in the step about to be taken leaves the weights and the moments as they were.
        return skip_steps_when(optimizer, lambda: guard.skip_this_step(self.state.global_step + 1))

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

    def get_train_dataloader(self):
        # Under torch.compile an epoch's last, shorter batch compiles the model again, for any batch size,
        # and the kernels it then runs for every batch are slower (30% on a CPU). Its blocks are seen in
        # other epochs: the sampler shuffles, and shifted windows cut the text anew.
        dataset, args = self.train_dataset, self.args
        full_batches_only = (
            args.torch_compile
            and not args.dataloader_drop_last
            and not isinstance(dataset, torch.utils.data.IterableDataset)
            and len(dataset) >= args.train_batch_size * args.world_size
        )
        if not full_batches_only:
            return leave_stops_to_the_main_process(super().get_train_dataloader())
        args.dataloader_drop_last = True  # Trainer reads it when it builds the loader; evaluation keeps every block
        try:
            return leave_stops_to_the_main_process(super().get_train_dataloader())
        finally:
            args.dataloader_drop_last = False

    def get_eval_dataloader(self, *args, **kwargs):
        return leave_stops_to_the_main_process(super().get_eval_dataloader(*args, **kwargs))

    def get_batch_samples(self, *args, **kwargs):
        with self.run_callbacks.health.fetching(self.state.global_step):
            return super().get_batch_samples(*args, **kwargs)

    def curriculum_steps(self) -> int:
        """Steps trained at curriculum_block_size: the first curriculum_fraction of the run."""
        return int(self.args.curriculum_fraction * self.state.max_steps)

    def training_step(self, model, inputs, num_items_in_batch=None):
        short = getattr(self.args, "curriculum_block_size", None)
        if short and self.state.global_step < self.curriculum_steps():
            inputs, num_items_in_batch = split_blocks(inputs, short, num_items_in_batch, self.objective.causal)
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.run_callbacks.guard.observe(loss, self.state.global_step + 1)
        return loss

    def evaluate(self, *args, **kwargs):
        # The same random masks (MLM) at every evaluation, without moving the training RNG:
        # evaluations stay comparable and training continues exactly as it would have.
        if self.run_callbacks.samples is not None:
            self.run_callbacks.samples.wrapped_model = self.model_wrapped
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.args.seed)
            return super().evaluate(*args, **kwargs)

    def create_model_card(self, *args, **kwargs):
        if not (Path(self.args.output_dir) / CARD_FILE).exists():  # finish_run writes a fuller one
            super().create_model_card(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:  # the dict is also evaluate()'s return value, so this reaches both
            logs.update(
                lm_eval_metrics(logs["eval_loss"], self.chars_per_token, self.eval_unigram_loss, self.bytes_per_token)
            )
            if self.minimal_pairs is not None:
                logs.update(self.minimal_pairs(self.model))
        elif "loss" in logs:
            logs.update(self.run_callbacks.throughput.measure(self.state.global_step))
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


def lm_eval_metrics(
    eval_loss: float, chars_per_token: float | None, unigram_loss: float, bytes_per_token: float | None = None
) -> dict[str, float]:
    metrics = {"eval_perplexity": math.exp(min(eval_loss, 50.0)), "eval_unigram_loss": unigram_loss}
    if chars_per_token:  # causal LMs score every token, so nats/token converts to bits/char
        metrics["eval_bits_per_char"] = eval_loss / math.log(2) / chars_per_token
    if bytes_per_token:  # and to bits per UTF-8 byte, which no tokenizer or script changes
        metrics["eval_bits_per_byte"] = eval_loss / math.log(2) / bytes_per_token
    return metrics
