"""Settings shared by every recipe, as HfArgumentParser dataclasses (one YAML key per field)."""

from __future__ import annotations

import enum
import importlib.util
import logging
import math
import os
from dataclasses import dataclass, field, fields

import torch
from transformers import TrainingArguments

from .errors import ScratchError
from .models.registry import FAMILIES, family_help, family_names
from .precision import default_mixed_precision
from .trackers import check_trackers

logger = logging.getLogger("scratchlm")


@dataclass
class DataArguments:
    corpus: str | None = field(
        default=None,
        metadata={
            "help": "Name of a built-in corpus (see `scratchlm.data.builtin.BUILTIN_CORPORA`), used when no "
            "train_files or dataset_name is given."
        },
    )
    train_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Local training files: paths or globs of .txt, .jsonl/.json, .parquet or .csv (all but parquet "
            "may be compressed: .gz, .bz2, .xz)."
        },
    )
    validation_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Local held-out files; when absent, validation_split_percentage of the documents are held out."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A Hub dataset id (needs the internet), or a local folder: of data files, or written by "
            "save_to_disk."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's config."})
    dataset_split: str = field(default="train", metadata={"help": "The Hub dataset's split to train on."})
    dataset_revision: str | None = field(default=None, metadata={"help": "The Hub dataset's revision (commit)."})
    text_column: str = field(default="text", metadata={"help": "Column (or JSON field) holding the text."})
    text_sample_by: str = field(
        default="line",
        metadata={"help": "How .txt files split into documents.", "choices": ["line", "paragraph", "document"]},
    )
    encoding_errors: str = field(
        default="strict",
        metadata={
            "help": "What to do with bytes that are not UTF-8: 'strict' stops with the file and offset, "
            "'replace' substitutes U+FFFD.",
            "choices": ["strict", "replace"],
        },
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Percent of documents held out when no validation_files are given."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per packed training example."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep at most this many packed training blocks (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many packed held-out blocks."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (default: the CPU count, at most 8)."}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where packed datasets are cached (default: $SCRATCHLM_CACHE or ~/.cache/scratchlm)."},
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Rebuild the packed dataset even on a cache hit."})
    prepared_data: str | None = field(
        default=None,
        metadata={
            "help": "A folder written by `scratchlm prepare`: train on its blocks without "
            "tokenizing (the corpus settings are then not used)."
        },
    )

    verify_data: str = field(
        default="sampled",
        metadata={
            "help": "How a packed-data cache or prepared shards are checked, each time they are read, against the "
            "sizes and hashes taken when they were written: sampled (sizes and 64 pages per file) or full (every "
            "byte). A damaged cache is built again; damaged prepared data is refused.",
            "choices": ["sampled", "full"],
        },
    )
    packing: str = field(
        default="joined",
        metadata={
            "help": "How documents become training blocks: joined (end to end, cut wherever a block is full: "
            "nothing is lost) or aligned (every block starts at a document, filled best-fit from 1000 "
            "documents; what does not fit is cropped and dropped, and the run logs its share; needs "
            "--window_order fixed). Held-out blocks are joined either way, so held-out losses compare.",
            "choices": ["joined", "aligned"],
        },
    )
    window_order: str = field(
        default="shifted",
        metadata={
            "help": "Which windows of the token stream each epoch trains on: shifted (each epoch after the first "
            "cuts the stream at a new seeded offset, so a small corpus repeated for many epochs is not shown the "
            "same windows again) or fixed (the packed blocks every epoch). A stream has no epochs to shift.",
            "choices": ["shifted", "fixed"],
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Tokenize and pack on the fly while training, for corpora too big to "
            "prepare up front (needs --max_steps; set --dataloader_num_workers to tokenize in "
            "parallel)."
        },
    )
    streaming_validation_documents: int = field(
        default=1000,
        metadata={
            "help": "With --streaming: held-out documents, taken from the start of the stream "
            "(or of the validation files / split)."
        },
    )
    streaming_shuffle_buffer: int = field(
        default=2000,
        metadata={"help": "With --streaming: blocks each dataloader worker shuffles among (1: no shuffling)."},
    )

    def __post_init__(self):
        if self.block_size < 2:
            raise ScratchError(f"--block_size must be at least 2, got {self.block_size}")
        if not 0 < self.validation_split_percentage < 100:
            raise ScratchError("--validation_split_percentage must be between 0 and 100 (exclusive)")
        for name in ("max_train_samples", "max_eval_samples", "preprocessing_num_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ScratchError(f"--{name} must be a positive integer, got {value}")
        sources = [self.train_files, self.dataset_name]
        if sum(s is not None for s in sources) > 1:
            raise ScratchError("give either --train_files or --dataset_name, not both")
        if self.validation_files and not self.train_files:
            raise ScratchError("--validation_files needs --train_files")
        if self.streaming and self.prepared_data:
            raise ScratchError("give either --streaming or --prepared_data: prepared blocks are already tokenized")
        if self.streaming and self.max_train_samples is not None:
            raise ScratchError("--max_train_samples does not apply to a stream: limit the run with --max_steps")
        for name in ("streaming_validation_documents", "streaming_shuffle_buffer"):
            if getattr(self, name) < 1:
                raise ScratchError(f"--{name} must be a positive integer, got {getattr(self, name)}")


@dataclass
class TokenizerArguments:
    tokenizer_name_or_path: str = field(
        default="outputs/tokenizer",
        metadata={
            "help": "Tokenizer directory (or Hub id). A missing directory is trained from the corpus "
            "when train_tokenizer_if_missing is true."
        },
    )
    train_tokenizer_if_missing: bool = field(
        default=True, metadata={"help": "Train the tokenizer from the training split when its directory is missing."}
    )
    tokenizer_type: str = field(
        default="bytelevel_bpe",
        metadata={"help": "Tokenizer model to train.", "choices": ["bytelevel_bpe", "char"]},
    )
    special_tokens_style: str = field(
        default="gpt",
        metadata={
            "help": "gpt: <|endoftext|> as bos/eos plus <|pad|>; bert: [PAD] [UNK] [CLS] [SEP] [MASK] "
            "with the [CLS] A [SEP] template.",
            "choices": ["gpt", "bert"],
        },
    )
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of a trained BPE tokenizer."})
    min_frequency: int = field(default=2, metadata={"help": "Minimum pair count for a BPE merge."})
    normalization: str = field(
        default="none",
        metadata={
            "help": "Unicode normalisation applied before tokenization; nfkc folds full-width digits and "
            "letters (common in Chinese text) into ASCII.",
            "choices": ["none", "nfkc"],
        },
    )
    max_tokenizer_train_bytes: int | None = field(
        default=None, metadata={"help": "Train the tokenizer on at most this many bytes of text (about 1e9 is plenty)."}
    )

    def __post_init__(self):
        if self.vocab_size < 300:
            raise ScratchError(f"--vocab_size must be at least 300 (256 bytes plus merges), got {self.vocab_size}")


@dataclass
class _TransformerShape:
    n_layer: int = field(default=4, metadata={"help": "Transformer blocks."})
    n_head: int = field(default=4, metadata={"help": "Attention heads per block."})
    n_embd: int = field(default=256, metadata={"help": "Hidden width."})
    n_positions: int | None = field(default=None, metadata={"help": "Maximum positions (default: block_size)."})
    norm_placement: str = field(
        default="pre",
        metadata={
            "help": "Our model families only: LayerNorm before (pre) or after (post) each sublayer.",
            "choices": ["pre", "post"],
        },
    )
    pad_vocab_to_multiple_of: int = field(
        default=64, metadata={"help": "Round the model's vocabulary up to a multiple of this (faster matmuls)."}
    )
    dropout: float = field(default=0.0, metadata={"help": "Dropout on embeddings, attention and residuals."})
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "Start from the weights of a trained model instead of random ones: a run's output_dir (or a "
            "checkpoint-N in it, or a Hub id online) of this objective. Its tokenizer, family, shape and "
            "dropout are used, and the settings above are not; the optimizer, schedule and step count start "
            "afresh, on this run's corpus (continued pretraining, or adapting a model to new text). To carry "
            "on the same run, use --resume_from_checkpoint instead."
        },
    )

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "pad_vocab_to_multiple_of"):
            if getattr(self, name) < 1:
                raise ScratchError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ScratchError(f"--n_embd ({self.n_embd}) must be divisible by --n_head ({self.n_head})")
        if not 0 <= self.dropout < 1:
            raise ScratchError(f"--dropout must be in [0, 1), got {self.dropout}")


SCRATCH_DECODER_ONLY = (
    "position_embedding",
    "hidden_act",
    "qk_norm",
    "zero_init_projections",
    "tie_word_embeddings",
    "logit_softcap",
)


@dataclass
class CausalLMArguments(_TransformerShape):
    model_type: str = field(
        default="gpt2", metadata={"help": f"Model family: {family_help('causal')}.", "choices": family_names("causal")}
    )
    position_embedding: str = field(
        default="learned",
        metadata={"help": "scratch_decoder only: learned or rotary positions.", "choices": ["learned", "rotary"]},
    )
    # The speedrun records' levers that stock GPT-2/Llama classes lack: options of our own decoder.
    hidden_act: str = field(
        default="gelu_new",
        metadata={"help": "scratch_decoder only: the MLP's activation.", "choices": ["gelu_new", "relu2"]},
    )
    qk_norm: bool = field(default=False, metadata={"help": "scratch_decoder only: RMSNorm on queries and keys."})
    zero_init_projections: bool = field(
        default=False,
        metadata={"help": "scratch_decoder only: attention and MLP output projections start at zero."},
    )
    tie_word_embeddings: bool = field(
        default=True, metadata={"help": "scratch_decoder only: false gives the output layer weights of its own."}
    )
    logit_softcap: float | None = field(
        default=None, metadata={"help": "scratch_decoder only: logits become cap * tanh(logits / cap)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.model_type != "scratch_decoder":
            chosen = [
                f"--{f.name} {getattr(self, f.name)}"
                for f in fields(self)
                if f.name in SCRATCH_DECODER_ONLY and getattr(self, f.name) != f.default
            ]
            if chosen:
                raise ScratchError(
                    f"{', '.join(chosen)}: an option of scratch_decoder's, which --model_type {self.model_type} "
                    "does not have: add --model_type scratch_decoder or drop it"
                )
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ScratchError(f"--logit_softcap must be a positive number (e.g. 15), got {self.logit_softcap}")
        family = FAMILIES.get(self.model_type)
        rotary = (family is not None and family.rotary) or self.position_embedding == "rotary"
        head_dim = self.n_embd // self.n_head
        if rotary and head_dim % 2:
            raise ScratchError(
                f"--n_embd {self.n_embd} / --n_head {self.n_head} gives heads of {head_dim} dimensions; rotary "
                f"positions ({self.model_type}) need an even number: e.g. --n_embd {self.n_head * (head_dim + 1)}"
            )


@dataclass
class EncoderModelArguments(_TransformerShape):
    model_type: str = field(
        default="bert", metadata={"help": f"Model family: {family_help('masked')}.", "choices": family_names("masked")}
    )
    bias: bool = field(default=True, metadata={"help": "scratch_encoder only: biases in linear layers and norms."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on embeddings, attention and residuals."})


@dataclass
class MaskingArguments:
    mlm_probability: float = field(
        default=0.15,
        metadata={"help": "Share of tokens masked (split 80/10/10 into [MASK] / random token / unchanged, as BERT)."},
    )

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ScratchError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")


MAX_STEPS = 10**9
# Choices that PretrainingTrainer builds itself and transformers does not know. TrainingArguments checks these
# settings against its own lists, so it is shown a stock choice in their place; afterwards every value of
# these settings is a plain name (transformers' own become enums there).
STAND_INS = {"optim": {"muon": "adamw_torch"}, "lr_scheduler_type": {"one_cycle": "constant"}}
WSD_DECAY_FRACTION = 0.2  # the decay phase of warmup-stable-decay, as in MiniCPM's and the WSD papers' runs


def _plain_name(value) -> str:
    return value.value if isinstance(value, enum.Enum) else value


@dataclass
class _ScratchTrainingArguments(TrainingArguments):
    """What every scratchlm run adds to TrainingArguments: an output guard, bf16 where it exists, input checks."""

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an existing, non-empty output_dir."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 mixed precision; default: on where the CUDA GPU has bf16 tensor cores (Ampere or newer)."
        },
    )
    fp16: bool | None = field(
        default=None,
        metadata={
            "help": "fp16 mixed precision with loss scaling; default: on where the CUDA GPU has fp16 tensor cores "
            "but no bf16 ones (Volta and Turing: V100, T4, RTX 20 series)."
        },
    )
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Trackers: none, wandb, tensorboard."})
    require_clean_git: bool = field(
        default=False, metadata={"help": "Refuse to start when the code's git checkout has uncommitted changes."}
    )
    hub_strategy: str = field(
        default="end",
        metadata={
            "help": "With --push_to_hub: end (one upload of the finished folder) or Trainer's every_save, "
            "checkpoint, all_checkpoints, which upload while training, training_args.bin and checkpoints "
            "included, and so need --hub_private_files true.",
            "choices": ["end", "every_save", "checkpoint", "all_checkpoints"],
        },
    )
    hub_private_files: bool = field(
        default=False,
        metadata={
            "help": "With --push_to_hub: also upload training_args.bin (a pickle of every setting, a --hub_token "
            "included), run_manifest.json and run_config.yaml (they name local paths: the corpus, the home "
            "folder). They stay in --output_dir either way."
        },
    )

    def __post_init__(self):
        if self.push_to_hub and self.hub_strategy != "end" and not self.hub_private_files:
            raise ScratchError(
                f"--hub_strategy {self.hub_strategy} uploads while training, and Trainer then uploads "
                "training_args.bin (a pickle of every setting) and checkpoints too: use --hub_strategy end, or add "
                "--hub_private_files true to publish them"
            )
        if not torch.cuda.is_available() and not torch.backends.mps.is_available():
            # Accelerate only starts a CPU process group (gloo) under a multi-process launch when told it runs on CPU.
            self.use_cpu = True
        if self.bf16 and not torch.cuda.is_available():
            raise ScratchError(
                "--bf16 true needs a CUDA device and none was found: "
                "drop the flag (bf16 is then used automatically where a GPU computes it) or pass --bf16 false"
            )
        if self.fp16 and not torch.cuda.is_available():  # Trainer would ignore it and the records would say fp16
            raise ScratchError("--fp16 true needs a CUDA device and none was found: drop the flag (CPU runs in fp32)")
        self.bf16, self.fp16 = default_mixed_precision(self.bf16, self.fp16, self.use_cpu)
        if self.seed < 0:
            raise ScratchError(f"--seed must be 0 or a positive integer, got {self.seed}")
        if self.eval_strategy in ("steps", "STEPS") and self.eval_steps is not None and self.eval_steps <= 0:
            raise ScratchError(
                f"--eval_steps must be positive (or pass --eval_strategy no to skip evaluations), got {self.eval_steps}"
            )
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns
        elif self.dataloader_pin_memory and self.accelerator_config is None:
            # A blocking copy to the GPU waits for every kernel queued before it: each batch would stall the
            # host until the last step finished, and the health check would count that wait as data loading.
            self.accelerator_config = {"non_blocking": True}
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ScratchError(f"--learning_rate must be a positive number, got {self.learning_rate}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ScratchError(
                f"--max_steps must be a positive number of optimizer steps (or -1: train for --num_train_epochs), "
                f"got {self.max_steps}"
            )
        if self.max_steps > MAX_STEPS:
            raise ScratchError(
                f"--max_steps {self.max_steps:,} is more than {MAX_STEPS:,} optimizer steps, years of training at "
                "any speed: check for extra digits"
            )
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ScratchError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        super().__post_init__()
        check_trackers(self.report_to)


@dataclass
class PretrainingArguments(_ScratchTrainingArguments):
    """TrainingArguments with defaults for pretraining from scratch rather than fine-tuning."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints and the final model go."})
    objective: str | None = field(
        default=None,
        metadata={
            "help": "What is pretrained: causal (next token) or masked (BERT's masked tokens). "
            "Each recipe script sets its own; tools such as find-lr and prepare read it from "
            "the config.",
            "choices": ["causal", "masked"],
        },
    )
    learning_rate: float = field(default=6e-4, metadata={"help": "Peak learning rate after warmup."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (see weight_decay_on)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warmup length: steps, or a fraction of all steps when below 1."}
    )
    lr_scheduler_type: str = field(
        default="cosine_with_min_lr",
        metadata={
            "help": "Schedule after warmup: any of transformers' (linear: down to zero; cosine; cosine_with_min_lr; "
            "constant; warmup_stable_decay: flat at the peak, then down over the last 20%% of the steps unless "
            "lr_scheduler_kwargs gives num_decay_steps (steps, a fraction of all steps when below 1, or auto: "
            "60%% on a corpus the run sees up to 6 times, 20%% on one it sees more) or decay_type (cosine, "
            "linear, 1-sqrt); ...) or one_cycle (fast.ai's: from peak/25 up to the "
            "peak over warmup_steps, then a cosine down to peak/250,000; allows a higher peak: take find-lr's "
            "min-loss rate)."
        },
    )
    optim: str = field(
        default="adamw_torch_fused",
        metadata={
            "help": "Optimizer: any of Trainer's (adamw_torch_fused, adamw_torch, ...) or muon: torch's Muon on "
            "the blocks' weight matrices at muon_learning_rate, AdamW on embeddings, the output layer, norms "
            "and biases at learning_rate."
        },
    )
    muon_learning_rate: float = field(
        default=0.02, metadata={"help": "--optim muon: Muon's peak learning rate (the schedule scales it too)."}
    )
    weight_decay_on: str = field(
        default="matrices",
        metadata={
            "help": "What weight decay applies to: matrices (every parameter of 2 or more dimensions, embeddings "
            "included) or linear (only the weights of linear layers, as BERT-era recipes do).",
            "choices": ["matrices", "linear"],
        },
    )
    lr_scheduler_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": 'Schedule options as JSON; default: {"min_lr_rate": 0.1} for cosine_with_min_lr (down to 10%% '
            "of the peak), none for the others."
        },
    )
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: no, steps or epoch."})
    eval_steps: float | None = field(default=200, metadata={"help": "Evaluate every this many steps."})
    logging_steps: float = field(default=10, metadata={"help": "Log every this many steps."})
    save_steps: float = field(default=500, metadata={"help": "Checkpoint every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints to keep."})
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "DDP: search every step for parameters without gradients. Every pretraining "
            "model here uses all its parameters, so the search (Trainer turns it on by default) "
            "would only cost time; DDP names the parameter if one is ever unused."
        },
    )
    prediction_loss_only: bool | None = field(
        default=None,
        metadata={
            "help": "Evaluate the loss only, never gathering the full logits (they are huge); default: on for a "
            "causal LM, off for a masked LM, whose masked-token accuracy needs its arg-maxed predictions."
        },
    )
    sample_prompts: list[str] | None = field(
        default=None,
        metadata={
            "help": "Prompts sampled from at each evaluation and at the end; default: the first words of 4 "
            "held-out documents. A config file's prompts are set aside for those when flags name another corpus "
            "whose held-out text lacks most of their characters."
        },
    )
    sample_max_new_tokens: int = field(default=48, metadata={"help": "Tokens generated per sample; 0: no samples."})
    curriculum_block_size: int | None = field(
        default=None,
        metadata={
            "help": "Sequence-length curriculum: train the first curriculum_fraction of the steps on blocks "
            "of this many tokens (each block_size block cut into equal pieces), the rest at block_size."
        },
    )
    curriculum_fraction: float = field(
        default=0.9,
        metadata={"help": "Share of the steps trained at curriculum_block_size (BERT: 0.9 at 128, then 512)."},
    )
    bad_loss: str = field(
        default="stop",
        metadata={
            "help": "On a non-finite or exploding training loss: stop with an error (the last checkpoint "
            "stays good), or skip that optimizer step.",
            "choices": ["stop", "skip"],
        },
    )
    bad_loss_spike_factor: float = field(
        default=3.0,
        metadata={
            "help": "A loss above this multiple of its running average counts as exploding "
            "(0: only non-finite losses count)."
        },
    )
    logging_nan_inf_filter: bool | None = field(
        default=None,
        metadata={
            "help": "Log the average of finite losses only (a host sync every step on a GPU); default: on with "
            "bad_loss skip, off with bad_loss stop, which ends the run on a non-finite loss anyway."
        },
    )
    profile_steps: str | None = field(
        default=None,
        metadata={
            "help": "Profile these optimizer steps, e.g. 20-25, with torch.profiler: a trace under "
            "output_dir/profile (Perfetto, chrome://tracing) and the top operators in the log."
        },
    )
    health_unigram_tokens: int = field(
        default=10_000_000,
        metadata={
            "help": "Warn at an evaluation when the run has seen this many tokens (or all of a shorter run's) "
            "and its held-out loss is still not below the unigram bar."
        },
    )
    fused_loss: bool = field(
        default=False,
        metadata={
            "help": "Causal models: compute the loss from the final hidden states a chunk of tokens at a time, "
            "never holding the full (tokens x vocabulary) logits: the same loss in a fraction of the memory."
        },
    )
    eval_minimal_pairs: str | None = field(
        default=None,
        metadata={
            "help": "Minimal pairs (a folder or file of BLiMP-style jsonl, or a Hub dataset online) scored at every "
            "held-out evaluation: eval_minimal_pairs_accuracy beside the accuracy word frequencies alone get."
        },
    )
    eval_minimal_pairs_per_paradigm: int | None = field(
        default=None,
        metadata={
            "help": "With --eval_minimal_pairs: pairs scored per paradigm (a fixed, seeded sample); default: as "
            "many as add about a tenth to an evaluation's tokens."
        },
    )
    stop_at_eval_loss: float | None = field(
        default=None,
        metadata={
            "help": "Stop (and save) at the first evaluation whose held-out loss is at or "
            "below this, e.g. a quality target."
        },
    )
    save_every_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Also save a checkpoint whenever this many minutes have passed since the last one, so that a "
            "kill without warning (a launcher's, the OOM killer's, a lost node) costs at most that much training."
        },
    )

    def __post_init__(self):
        if self.curriculum_block_size is not None and self.curriculum_block_size < 2:
            raise ScratchError(f"--curriculum_block_size must be at least 2, got {self.curriculum_block_size}")
        if not 0 < self.curriculum_fraction < 1:
            raise ScratchError(f"--curriculum_fraction must be in (0, 1), got {self.curriculum_fraction}")
        if self.bad_loss_spike_factor < 0 or 0 < self.bad_loss_spike_factor <= 1:
            raise ScratchError(f"--bad_loss_spike_factor must be 0 (off) or above 1, got {self.bad_loss_spike_factor}")
        per_paradigm = self.eval_minimal_pairs_per_paradigm
        if per_paradigm is not None and per_paradigm < 1:
            raise ScratchError(f"--eval_minimal_pairs_per_paradigm must be a positive integer, got {per_paradigm}")
        if self.save_every_minutes is not None and self.save_every_minutes <= 0:
            raise ScratchError(f"--save_every_minutes must be positive, got {self.save_every_minutes}")
        if self.profile_steps is not None:
            self.profile_window()  # refuses a malformed range now rather than at step 20
        if self.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
            raise ScratchError(
                "--use_liger_kernel needs the liger-kernel package (pip install liger-kernel; CUDA GPUs only): "
                "install it, or drop the flag (--fused_loss true saves the same logits memory without it)"
            )
        if self.optim == "muon" and (
            self.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
        ):
            raise ScratchError(
                "--optim muon cannot run under DeepSpeed: its ZeRO optimizer hands the optimizer flat 1-D shards of "
                "the weights, and Muon orthogonalises whole matrices; launch with "
                "recipes/accelerate_configs/multi_gpu_ddp.yaml, or pass --optim adamw_torch_fused"
            )
        if self.fused_loss and self.use_liger_kernel:
            raise ScratchError(
                "--fused_loss and --use_liger_kernel both replace the loss: Liger's kernels fuse it already, "
                "so pass only one of them"
            )
        if self.logging_nan_inf_filter is None:
            self.logging_nan_inf_filter = self.bad_loss == "skip"
        if self.lr_scheduler_kwargs is None:  # the default floor belongs to the default schedule only
            self.lr_scheduler_kwargs = {"min_lr_rate": 0.1} if self.lr_scheduler_type == "cosine_with_min_lr" else {}
        chosen = {name: _plain_name(getattr(self, name)) for name in STAND_INS}
        with_stand_ins = {name: STAND_INS[name].get(value, value) for name, value in chosen.items()}
        for name, value in with_stand_ins.items():
            setattr(self, name, value)
        super().__post_init__()
        for name, value in chosen.items():  # plain names, ours and transformers' alike
            setattr(self, name, value)
        if self.save_total_limit == 1 and self.metric_for_best_model is not None:
            # Trainer, with a limit of 1, deletes every checkpoint but the best at the end of training, the
            # newest included: keep two, so that the newest, the only one a longer run can resume from, stays.
            logger.info("--save_total_limit 1 with a best model: keeping 2 checkpoints, the best and the newest")
            self.save_total_limit = 2
        if self.lr_scheduler_type == "warmup_stable_decay":
            self.lr_scheduler_kwargs = self.decay_steps_by_default(dict(self.lr_scheduler_kwargs or {}))

    def tokens_per_step(self, block_size: int) -> int:
        """Tokens in one optimizer step: per-device batch x accumulation x processes x block."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size * block_size

    def decay_steps_by_default(self, options: dict) -> dict:
        """Warmup-stable-decay decays over the last WSD_DECAY_FRACTION of the steps unless told otherwise; a
        num_decay_steps below 1 is a fraction of the steps, as warmup_steps below 1 is. "auto", and a fraction
        of a run counted in epochs, wait for the data (`training.schedules.resolve_decay_length`)."""
        fraction = options.get("num_decay_steps", WSD_DECAY_FRACTION)
        if fraction == "auto":
            return {**options, "num_decay_steps": fraction}
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or fraction <= 0:
            raise ScratchError(
                f'--lr_scheduler_kwargs: num_decay_steps must be a number above 0 or "auto", got {fraction!r}'
            )
        if fraction >= 1 or self.max_steps <= 0:
            return {**options, "num_decay_steps": fraction}
        return {**options, "num_decay_steps": max(1, round(fraction * self.max_steps))}

    def profile_window(self) -> tuple[int, int] | None:
        if self.profile_steps is None:
            return None
        first, _, last = str(self.profile_steps).partition("-")
        try:
            window = int(first), int(last or first)
        except ValueError:
            window = (0, 0)
        if not 1 <= window[0] <= window[1]:
            raise ScratchError(
                f"--profile_steps {self.profile_steps!r}: give a range of optimizer steps FIRST-LAST, e.g. 20-25"
            )
        return window


@dataclass
class FinetuneArguments(_ScratchTrainingArguments):
    """TrainingArguments with GLUE-style fine-tuning defaults."""

    output_dir: str = field(default="outputs/cola", metadata={"help": "Where the fine-tuned model and results go."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the training set."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warmup: steps, or a fraction of all steps below 1."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(
        default="no", metadata={"help": "Checkpoints during fine-tuning (the final model is always saved)."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log every this many steps."})
