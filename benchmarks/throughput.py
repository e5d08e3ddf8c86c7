#!/usr/bin/env python
"""Training throughput: the recipe's own Trainer set-up against a stock Trainer baseline, in one run.

    python benchmarks/throughput.py --model gpt2      # GPT-2 124M, context 1024 (a GPU run)
    python benchmarks/throughput.py --model bert      # BERT-base, context 128
    python benchmarks/throughput.py --model baby      # nanoGPT's baby GPT (10.8M), context 256: overhead-bound
    python benchmarks/throughput.py --model gpt2 --tiny --steps 6 --warmup 2   # the same code, tiny, on CPU
    python benchmarks/throughput.py --model gpt2 --gradient_accumulation_steps 16 --steps 96 --warmup 32

"recipe": the model, collator, PretrainingTrainer and settings of `config_gpt2_124m.yaml` /
`config_bert_base.yaml` / `config_baby_shakespeare.yaml` (micro-batch 32 / 256 / 64, torch_compile,
bf16 where supported), one micro-batch per optimizer step unless --gradient_accumulation_steps says
otherwise (`config_gpt2_124m.yaml` accumulates 16, which spreads Muon's step over 16 micro-batches).
"recipe+sync": the same with `bad_loss:
skip`, whose guard reads the loss on the host every step and keeps Trainer's NaN filter (another sync
per step), as every recipe run did before the guard moved onto the device. "stock": `GPT2LMHeadModel` /
`BertForMaskedLM` of the same shape (transformers' default config for GPT-2 and BERT), a plain
`Trainer` with run_clm-style defaults (batch 8 / 32 / 64, bf16, no compile). All read the same random
token blocks and log every 10 micro-batches (every optimizer step when it accumulates more), as a real
run does (a log line is a host sync); the recipe arms load
data in the config's dataloader workers, the stock one in the training process (run_clm's default). Tokens/s is timed
over the micro-batches after --warmup (compilation excluded);
MFU divides 6N + 12·L·d·T FLOPs per token (nanoGPT's count) by the device's dense bf16 peak
(`scratchlm.flops.PEAK_BF16_TFLOPS`), GPU only. The loss columns show both runs start at ln(vocab)
and fall alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from scratchlm.data import DataStats, LMData
from scratchlm.flops import model_flops_per_token, peak_tflops
from scratchlm.objectives import parse_run_settings
from scratchlm.precision import cuda_computes_bf16
from scratchlm.recipe import build_run
from scratchlm.training import PretrainingTrainer
from scratchlm.training.run import train

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # model -> (vocab of the stand-in tokenizer, context, stock batch, recipe config)
    "gpt2": (50257, 1024, 8, ROOT / "recipes/pretrain_gpt2_zh/config_gpt2_124m.yaml"),
    "bert": (30522, 128, 32, ROOT / "recipes/pretrain_bert_mlm/config_bert_base.yaml"),
    "baby": (68, 256, 64, ROOT / "recipes/pretrain_gpt2_zh/config_baby_shakespeare.yaml"),
}
LOGGING_STEPS = 10
# Recipe variants, each the recipe's settings plus these flags. "recipe+sync" always runs; the levers on request.
ARMS = {
    "recipe+sync": ["--bad_loss", "skip", "--logging_nan_inf_filter", "true"],
    "fused_loss": ["--fused_loss", "true"],
    "adamw_foreach": ["--optim", "adamw_torch"],  # the recipe's AdamW is the fused one
    "adamw_not_muon": ["--optim", "adamw_torch_fused"],  # what Muon's step costs, for a config that takes Muon
    "blocking_copies": ["--accelerator_config", "blocking.json"],  # batches copied to the GPU with a sync each
    "vocab_unpadded": ["--pad_vocab_to_multiple_of", "1"],
    "vocab_pad_128": ["--pad_vocab_to_multiple_of", "128"],
    "compile_max_autotune": ["--torch_compile_mode", "max-autotune-no-cudagraphs"],
    "cuda_graphs": ["--torch_compile_mode", "reduce-overhead"],
    "no_workers": ["--dataloader_num_workers", "0"],
    "no_pinning": ["--dataloader_pin_memory", "false"],
    "half_batch": ["--per_device_train_batch_size", "half"],
    "double_batch": ["--per_device_train_batch_size", "double"],
}
LEVERS = [name for name in ARMS if name != "recipe+sync"]
TINY = [  # the recipe's dataloader workers stay (2 or 4): loading in the training process costs GPU time
    "--dataloader_num_workers",
    "0",
    "--n_layer",
    "2",
    "--n_head",
    "2",
    "--n_embd",
    "64",
    "--per_device_train_batch_size",
    "4",
    "--torch_compile",
    "false",
]


def stand_in_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with `vocab` entries and the special tokens both recipes need."""
    specials = ["<|endoftext|>", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
    words = specials + [f"t{i}" for i in range(vocab - len(specials))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[PAD]"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=specials[0],
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


class Clock(TrainerCallback):
    """Wall time from the end of step `warmup` to the end of training, with the device synchronised."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def _now(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = self._now()

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = self._now() - self.start


def measure(name: str, trainer: Trainer, block: int, warmup: int) -> dict:
    clock = Clock(warmup)
    trainer.add_callback(clock)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if isinstance(trainer, PretrainingTrainer):  # as a recipe trains: its signal handlers go back after each arm
        train(trainer, None, trainer.args.max_steps)
    else:
        trainer.train()
    args = trainer.args
    tokens = (args.max_steps - warmup) * args.per_device_train_batch_size * args.gradient_accumulation_steps * block
    model = trainer.model
    row = {
        "run": name,
        "micro_batch": args.per_device_train_batch_size,
        "accumulation": args.gradient_accumulation_steps,
        "torch_compile": args.torch_compile,
        "bf16": args.bf16,
        "tokens_per_second": tokens / clock.seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "flops_per_token": model_flops_per_token(model, block),
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }
    if torch.cuda.is_available():
        peak = peak_tflops(torch.cuda.get_device_name(0))
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        row["mfu"] = row["tokens_per_second"] * row["flops_per_token"] / (peak * 1e12) if peak else None
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(SHAPES), default="gpt2")
    parser.add_argument(
        "--steps",
        type=int,
        default=60,
        help="Micro-batches per run (without accumulation a multiple of 10, so that the last step is logged).",
    )
    parser.add_argument("--warmup", type=int, default=20, help="Micro-batches left out of the timing.")
    parser.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=1,
        help="Micro-batches per optimizer step in the recipe arms (the stock Trainer takes 1, run_clm's "
        "default); --steps and --warmup must be multiples of it.",
    )
    parser.add_argument("--tiny", action="store_true", help="2 layers, width 64: checks the code path on a CPU.")
    parser.add_argument(
        "--levers",
        default="",
        help=f"Comma-separated recipe variants to time beside the recipe, or 'all': {', '.join(LEVERS)}.",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args(argv)
    accumulation = args.gradient_accumulation_steps
    if accumulation < 1 or args.steps % accumulation or args.warmup % accumulation or args.warmup >= args.steps:
        parser.error(
            f"--steps {args.steps} and --warmup {args.warmup} must be multiples of --gradient_accumulation_steps "
            f"{accumulation}, with fewer warm-up micro-batches than micro-batches"
        )
    levers = LEVERS if args.levers == "all" else [name for name in args.levers.split(",") if name]
    if unknown := [name for name in levers if name not in LEVERS]:
        parser.error(f"--levers: unknown {', '.join(unknown)}; choose from {', '.join(LEVERS)} or 'all'")
    if args.model == "bert":
        levers = [name for name in levers if name != "fused_loss"]  # a causal-model lever
    if not args.tiny and not torch.cuda.is_available():
        parser.error("this benchmark measures a GPU; on a CPU pass --tiny to check the code path only")
    vocab, block, stock_batch, config = SHAPES[args.model]
    tokenizer = stand_in_tokenizer(vocab)
    rng = np.random.default_rng(0)
    n_blocks = 4096 if not args.tiny else 256
    train = Dataset.from_dict({"input_ids": rng.integers(5, vocab, (n_blocks, block)).tolist()}).with_format("torch")
    validation = train.select(range(8))
    data = LMData(
        train=train,
        validation=validation,
        stats=DataStats(n_blocks, 8, 1, 1),
        unigram_counts=np.ones(vocab, dtype=np.int64),
        corpus_description="random tokens",
        corpus_fingerprint="",
        tokenizer_fingerprint="",
    )
    rows = []
    optimizer_steps, warmup_steps = args.steps // accumulation, args.warmup // accumulation
    with tempfile.TemporaryDirectory() as tmp:
        base = [
            "--config",
            str(config),
            "--max_steps",
            str(optimizer_steps),
            "--gradient_accumulation_steps",
            str(accumulation),
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--logging_steps",
            str(max(1, LOGGING_STEPS // accumulation)),
            "--report_to",
            "none",
            *(TINY if args.tiny else []),
        ]
        settings = parse_run_settings([*base, "--output_dir", f"{tmp}/recipe"])
        set_seed(settings.training.seed)
        run = build_run(settings, tokenizer=tokenizer, data=data)
        rows.append(measure("recipe", run.trainer, block, warmup_steps))
        batch = settings.training.per_device_train_batch_size
        blocking = Path(tmp) / "blocking.json"
        blocking.write_text(json.dumps({"non_blocking": False}))
        placeholders = {"half": str(max(1, batch // 2)), "double": str(2 * batch), "blocking.json": str(blocking)}
        if settings.training.optim != "muon":
            levers = [name for name in levers if name != "adamw_not_muon"]
        for name in ["recipe+sync", *levers]:
            flags = [placeholders.get(flag, flag) for flag in ARMS[name]]
            varied = parse_run_settings([*base, "--output_dir", f"{tmp}/{name}", *flags])
            set_seed(varied.training.seed)
            trainer = build_run(varied, tokenizer=tokenizer, data=data).trainer
            rows.append(measure(name, trainer, block, warmup_steps))

        torch.manual_seed(0)
        if not settings.objective.causal:
            stock_model = BertForMaskedLM(
                BertConfig(
                    **(
                        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=256)
                        if args.tiny
                        else {}
                    )
                )
            )
        else:
            shape = (
                {}
                if args.model == "gpt2"
                else dict(vocab_size=vocab, n_positions=block, n_layer=6, n_head=6, n_embd=384)
            )
            tiny = dict(n_layer=2, n_embd=64, n_head=2) if args.tiny else {}
            stock_model = GPT2LMHeadModel(GPT2Config(**{**shape, **tiny}))
        stock_args = TrainingArguments(
            output_dir=f"{tmp}/stock",
            per_device_train_batch_size=4 if args.tiny else stock_batch,
            max_steps=args.steps,
            logging_steps=LOGGING_STEPS,
            report_to="none",
            save_strategy="no",
            bf16=cuda_computes_bf16(),
            use_cpu=not torch.cuda.is_available(),
        )
        stock = Trainer(
            model=stock_model,
            args=stock_args,
            train_dataset=train,
            data_collator=settings.objective.collator(tokenizer, settings),
        )
        rows.append(measure("stock", stock, block, args.warmup))

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    result = {
        "device": device,
        "torch": torch.__version__,
        "model": args.model,
        "tiny": args.tiny,
        "block_size": block,
        "steps": args.steps,
        "warmup": args.warmup,
        "gradient_accumulation_steps": accumulation,
        "rows": rows,
        "speedup": rows[0]["tokens_per_second"] / rows[-1]["tokens_per_second"],
        "speedup_over_sync": rows[0]["tokens_per_second"] / rows[1]["tokens_per_second"],
        "levers": {r["run"]: r["tokens_per_second"] / rows[0]["tokens_per_second"] for r in rows if r["run"] in levers},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model} on {device}{' (tiny shapes)' if args.tiny else ''}")
    print(
        f"{'run':<20} {'params':>12} {'batch':>6} {'compile':>8} {'tokens/s':>12} {'x recipe':>8} {'MFU':>6} "
        f"{'peak GB':>8} {'first loss':>10} {'last loss':>10}"
    )
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "-"
        memory = f"{r['peak_memory_gb']:.1f}" if "peak_memory_gb" in r else "-"
        ratio = r["tokens_per_second"] / rows[0]["tokens_per_second"]
        print(
            f"{r['run']:<20} {r['parameters']:>12,} {r['micro_batch']:>6} {str(r['torch_compile']):>8} "
            f"{r['tokens_per_second']:>12,.0f} {ratio:>8.3f} {mfu:>6} {memory:>8} {r['losses'][0]:>10.3f} "
            f"{r['losses'][-1]:>10.3f}"
        )
    print(
        f"recipe / stock tokens/s: {result['speedup']:.2f}x; recipe / recipe+sync: {result['speedup_over_sync']:.3f}x"
    )
    return result


if __name__ == "__main__":
    main()
