"""The Trainer set-up of a pretraining run: which parameters decay, what the metrics mean."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from char_tokenizer import CharTokenizer
from transformers import GPT2Config, GPT2LMHeadModel

from scratchlm.arguments import PretrainingArguments
from scratchlm.generation import distinct_n, longest_repeat_share, repeated_ngram_share, repetition_metrics
from scratchlm.objectives import OBJECTIVES
from scratchlm.training import PretrainingTrainer, RunCallbacks, lm_eval_metrics


def tiny_gpt2_trainer(tmp_path, **settings) -> PretrainingTrainer:
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
    args = PretrainingArguments(output_dir=str(tmp_path), report_to="none", **settings)
    blocks = [{"input_ids": list(range(i, i + 16)), "labels": list(range(i, i + 16))} for i in range(4)]
    return PretrainingTrainer(
        model=model,
        args=args,
        objective=OBJECTIVES["causal"],
        run_callbacks=RunCallbacks.for_run(args, tokens_per_step=1),
        chars_per_token=1.0,
        eval_unigram_loss=1.0,
        eval_dataset=blocks,
        processing_class=CharTokenizer(),
    )


def test_weight_decay_on_matrices_and_embeddings_only(tmp_path):
    trainer = tiny_gpt2_trainer(tmp_path, eval_strategy="no")
    model = trainer.model
    optimizer = trainer.create_optimizer()
    by_decay = {group["weight_decay"]: group["params"] for group in optimizer.param_groups}
    assert set(by_decay) == {0.1, 0.0}
    assert all(p.ndim >= 2 for p in by_decay[0.1]) and all(p.ndim == 1 for p in by_decay[0.0])
    names = dict((id(p), n) for n, p in model.named_parameters())
    decayed = {names[id(p)] for p in by_decay[0.1]}
    assert "transformer.wte.weight" in decayed and "transformer.h.0.attn.c_attn.weight" in decayed
    assert not {n for n in decayed if n.endswith("bias") or ".ln_" in n}
    assert len(by_decay[0.1]) + len(by_decay[0.0]) == len(list(model.parameters()))


def test_eval_metrics_convert_nats_per_token():
    metrics = lm_eval_metrics(eval_loss=2.0, chars_per_token=1.5, unigram_loss=5.0)
    assert math.isclose(metrics["eval_perplexity"], math.exp(2.0))
    assert math.isclose(metrics["eval_bits_per_char"], 2.0 / math.log(2) / 1.5)
    assert metrics["eval_unigram_loss"] == 5.0
    assert "eval_bits_per_char" not in lm_eval_metrics(2.0, None, 5.0)


def test_repetition_metrics_flag_loops():
    assert distinct_n([1, 2, 3, 4], 1) == 1.0 and distinct_n([7] * 8, 1) == 1 / 8
    assert repeated_ngram_share([1, 2, 3, 4, 5, 6, 7, 8], 4) == 0.0
    assert repeated_ngram_share([1, 2, 3, 4, 1, 2, 3, 4], 4) == 1.0
    loop, varied = repetition_metrics([[5, 6] * 10]), repetition_metrics([list(range(20))])
    assert loop["distinct_2"] < 0.2 and varied["distinct_2"] == 1.0
    assert loop["longest_repeat_share"] == 18 / 20 and varied["longest_repeat_share"] == 0.0
    assert longest_repeat_share([1, 2, 3, 9, 1, 2, 3, 8]) == 3 / 8


def test_samples_do_not_move_the_training_rng():
    from scratchlm.generation import generate_samples

    class Tok:
        pad_token_id = eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1, 2, 3]}

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    samples = generate_samples(model, Tok(), ["a", "b"], max_new_tokens=5, seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert len(samples.texts) == 2 and 0 < samples.metrics["distinct_1"] <= 1
    assert generate_samples(model, Tok(), ["a", "b"], max_new_tokens=5, seed=0).texts == samples.texts


def tiny_causal_model(family: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    from scratchlm.models.scratch import ScratchDecoderConfig, ScratchDecoderForCausalLM

    small = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=128, n_embd=32, n_layer=2, n_head=2))
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**small, intermediate_size=64, num_key_value_heads=2))
    return ScratchDecoderForCausalLM(ScratchDecoderConfig(**small, max_position_embeddings=128))


@pytest.mark.parametrize("family", ["gpt2", "llama", "scratch_decoder"])
def test_prompts_sampled_together_continue_as_they_do_alone(family):
    """Left padding changes no prompt's continuation (greedy, with the repetition penalty on), and a
    prompt that reaches its end token before the others stops there."""
    from scratchlm.generation import generate_samples

    torch.manual_seed(0)
    model = tiny_causal_model(family)
    for parameter in model.parameters():  # large weights: the greedy choices depend on every input
        parameter.data.normal_(0, 0.5)
    prompts = ["hello world!", "a", "abc", "the end"]
    greedy = dict(do_sample=False, temperature=None, top_k=None, top_p=None, repetition_penalty=1.3)
    running = generate_samples(model, CharTokenizer(), prompts, 30, eos_token_id=None, **greedy).tokens

    def first_step(row, token):
        return row.index(token) if token in row else len(row)

    # an end token the continuations reach at different steps, so that some texts end while others go on
    end = min(t for row in running for t in row if len({first_step(other, t) for other in running}) > 1)
    together = generate_samples(model, CharTokenizer(), prompts, 30, eos_token_id=end, **greedy).tokens
    alone = [generate_samples(model, CharTokenizer(), [p], 30, eos_token_id=end, **greedy).tokens[0] for p in prompts]
    assert together == alone
    assert len(set(map(len, together))) > 1  # the rows ended at different steps
    assert all(row[-1] == end for row in together if len(row) < 30)


class Characters:
    """One token per character, 0 the end of a text."""

    eos_token_id = 0

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)


def test_document_start_prompts_are_the_first_words_of_held_out_documents():
    """Each prompt is the start of a held-out document's first line: at most 3 words of its first 8 tokens, no
    word cut short; once each, in order, and none from a document whose first words the block cuts."""
    from scratchlm.generation import document_start_prompts, prompts_foreign_to

    def row(*parts):
        return {"input_ids": torch.tensor([t for part in parts for t in ([0] if part == 0 else map(ord, part))])}

    blocks = [
        row("ab\ncd", 0, "one two th"),  # the first block starts with a document
        row("ree four", 0, "ab\nxy", 0, "tail"),  # "tail" may go on in the next block
        row("x", 0, "Verylongword more", 0),
        row("zz", 0, "a b c d e", 0),
    ]
    chars = Characters()
    assert document_start_prompts(blocks, chars, 0, count=3) == ["ab", "one two", "Verylong"]
    assert document_start_prompts(blocks, chars, 0, count=10) == ["ab", "one two", "Verylong", "a b c"]
    # half of a prompt's characters or more never seen in the held-out text: foreign
    assert prompts_foreign_to(["ROMEO:", "ab", "中国 ab", "中国 X"], blocks, chars) == ["ROMEO:", "中国 X"]


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", ["1", "1-bf16", "2"])
def test_samples_from_weights_sharded_over_processes_are_drawn_by_every_process(tmp_path, fsdp):
    """Under FSDP a forward pass gathers the weights from every process: process zero sampling alone would
    wait for the others until the collective timed out. FSDP 1 gathers (and casts) the weights outside its
    blocks only in its root wrapper's forward, which `generate` does not pass through by itself."""
    probe = Path(__file__).parent / "sharded_samples_probe.py"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launch, str(probe), str(tmp_path), fsdp]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sharded"] and ranks[1]["sharded"]
    assert len(ranks[0]["samples"]) == 2 and all(0 < len(t) <= 12 for t in ranks[0]["samples"])
    if fsdp != "1-bf16":  # in float32, the same tokens as the model sampled whole
        assert ranks[0]["samples"] == ranks[0]["unsharded"]
    assert ranks[1]["samples"] is None  # process zero alone logs and keeps them


def test_an_evaluation_hands_the_samples_the_model_as_the_trainer_wraps_it(tmp_path):
    """The callbacks are handed the model inside FSDP 1's wrapper, whose root weights only the wrapper gathers."""
    trainer = tiny_gpt2_trainer(tmp_path, sample_prompts=["ab"], sample_max_new_tokens=3)
    trainer.model_wrapped = torch.nn.Sequential(trainer.model)  # a wrapper, as FSDP 1 would make
    trainer.evaluate()
    samples = trainer.run_callbacks.samples
    assert samples.wrapped_model is trainer.model_wrapped and len(samples.samples.tokens[0]) == 3


def test_padding_a_prompt_does_not_penalise_a_token_it_lacks():
    """transformers 5.17's repetition penalty reads every input id, padding included (newer releases skip
    padding): a short prompt padded with the tokenizer's pad token would make that token less likely. Here
    the pad token ties with the token the short prompt continues with, so any penalty on it changes the
    choice. The lowest-versions test runs this on 5.17."""
    from scratchlm.generation import generate_samples

    torch.manual_seed(0)
    model = tiny_causal_model("llama")  # an output layer of its own, whose rows can be set
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.5)
    greedy = dict(do_sample=False, temperature=None, top_k=None, top_p=None, repetition_penalty=1.3)
    pad = CharTokenizer.pad_token_id
    first = generate_samples(model, CharTokenizer(), ["a"], 1, eos_token_id=None, **greedy).tokens[0][0]
    model.lm_head.weight.data[pad] = model.lm_head.weight.data[first]  # a tie, which argmax gives to the pad
    prompts = ["hello world!", "a"]
    together = generate_samples(model, CharTokenizer(), prompts, 8, eos_token_id=None, **greedy).tokens
    alone = [generate_samples(model, CharTokenizer(), [p], 8, eos_token_id=None, **greedy).tokens[0] for p in prompts]
    assert alone[1][0] == pad and together == alone


def test_the_final_save_of_an_fsdp_run_with_sharded_checkpoints_gathers_the_whole_model():
    """Trainer saves no weights as the final model of such a run: the final save must ask for the full state dict
    (FSDP runs only on GPUs, so the trainer is stood in for)."""
    from types import SimpleNamespace

    from accelerate import FullyShardedDataParallelPlugin

    from scratchlm.training.run import gather_the_weights_for_the_final_save

    def trainer(fsdp_plugin=None):
        state = SimpleNamespace(fsdp_plugin=fsdp_plugin)
        return SimpleNamespace(is_fsdp_enabled=fsdp_plugin is not None, accelerator=SimpleNamespace(state=state))

    sharded = FullyShardedDataParallelPlugin(state_dict_type="SHARDED_STATE_DICT")
    gather_the_weights_for_the_final_save(trainer(sharded))
    assert str(sharded.state_dict_type).endswith(".FULL_STATE_DICT")
    gather_the_weights_for_the_final_save(trainer())  # DDP or one device: nothing to gather


@pytest.mark.parametrize("value", ["0", "-1e-4", "nan"])
def test_learning_rate_must_be_positive(tmp_path, value):
    from scratchlm.errors import ScratchError

    with pytest.raises(ScratchError):
        PretrainingArguments(output_dir=str(tmp_path), learning_rate=float(value))


def test_split_blocks_repacks_the_stream_and_keeps_the_loss_a_token_mean():
    from scratchlm.training import split_blocks

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2)).eval()
    ids = torch.randint(0, 64, (3, 16))
    inputs = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    counted = (inputs["labels"][:, 1:] != -100).sum()  # as Trainer counts for a causal LM
    split, num_items = split_blocks(inputs, 4, counted, causal=True)
    assert split["input_ids"].shape == (12, 4) and torch.equal(split["input_ids"].reshape(3, 16), ids)
    assert int(num_items) == 12 * 3
    with torch.no_grad():
        scaled = model(**split, num_items_in_batch=num_items).loss
        mean = model(**split).loss
    assert torch.allclose(scaled, mean, atol=1e-6)
    masked = {"input_ids": ids, "labels": torch.where(ids % 3 == 0, ids, -100)}
    assert split_blocks(masked, 8, 7, causal=False)[1] == 7  # masked-token counts do not change


def test_curriculum_trains_short_blocks_first(tmp_path, zh_file, gpt_tokenizer_dir):
    import scratchlm.objectives

    import pretrain_gpt2_zh
    from conftest import ROOT

    shapes = []
    build = scratchlm.objectives.build_model

    def build_and_watch(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, a, kw: shapes.append(tuple(kw["input_ids"].shape)) if module.training else None,
            with_kwargs=True,
        )
        return model

    scratchlm.objectives.build_model = build_and_watch
    try:
        pretrain_gpt2_zh.cli(
            [
                "--config",
                str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"),
                "--train_files",
                str(zh_file),
                "--tokenizer_name_or_path",
                str(gpt_tokenizer_dir),
                "--output_dir",
                str(tmp_path / "run"),
                "--curriculum_block_size",
                "8",
                "--curriculum_fraction",
                "0.75",
            ]
        )
    finally:
        scratchlm.objectives.build_model = build
    assert shapes == [(16, 8)] * 6 + [(4, 32)] * 2


MALLOC_PROBE = """
import resource, sys, torch
from scratchlm.arguments import PretrainingArguments
from scratchlm.training import setup_run

setup_run(PretrainingArguments(output_dir=sys.argv[1], report_to="none"))

def page_faults_of_a_64_mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 1024 * 1024)  # freed at once, as a step frees its logits
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

for _ in range(3):  # the heap grows to hold it on the first allocations
    page_faults_of_a_64_mb_tensor()
# The fewest of several rounds: once in a full test run a round faulted the whole tensor in with the setting
# on (cause not found); glibc's defaults fault it in on every round, so the fewest still tells them apart.
print(min(page_faults_of_a_64_mb_tensor() for _ in range(5)))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_cpu_run_reuses_freed_tensor_memory_unless_the_user_set_malloc_variables(tmp_path):
    """glibc gives each block over 32 MiB its own mmap and unmaps it on free, so every step had the kernel
    fault in and zero such a tensor's pages again; a run's setup keeps freed memory in the heap instead."""

    def faults(**env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
        probe = subprocess.run(
            [sys.executable, "-c", MALLOC_PROBE, str(tmp_path)],
            capture_output=True,
            text=True,
            env=clean | env,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stderr[-2000:]
        return int(probe.stdout.split()[-1]), "glibc malloc keeps freed memory" in probe.stdout

    kept, said = faults()
    assert said and kept < 500  # 64 MB is 16,384 pages: the tensor reuses a freed one's
    defaults, said = faults(MALLOC_PERTURB_="0")  # any MALLOC_* variable: the user's own malloc settings stand
    assert not said
    huge_pages = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    assert defaults > 8000 or (huge_pages.exists() and "[always]" in huge_pages.read_text())
