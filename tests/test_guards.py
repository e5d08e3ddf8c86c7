"""Run guards: bad losses, a dirty checkout, reproducibility, and two processes on CPU."""

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback

from scratchlm import provenance
from scratchlm.arguments import PretrainingArguments
from scratchlm.errors import STOP_SIGNALS, ScratchError, run_cli
from scratchlm.objectives import OBJECTIVES
from scratchlm.training import PretrainingTrainer, RunCallbacks

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv, two_processes

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")


def flags(tmp_path, zh_file, tok, *extra):
    return recipe_argv(DEBUG, zh_file, tok, tmp_path / "out", *extra)


def losses(out):
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def test_exploding_loss_stops_naming_the_step(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            pretrain_gpt2_zh.cli,
            flags(tmp_path, zh_file, gpt_tokenizer_dir, "--learning_rate", 1e4, "--warmup_steps", 0, "--max_steps", 20),
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: step 2: the training loss") and "running average" in err and "\n" not in err
    assert "--bad_loss skip" in err and not (tmp_path / "out" / "model.safetensors").exists()
    # the run's stop-on-signal handlers go with it: a pool forked later must still die of SIGTERM
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == handlers


class LossBecomesNan(TrainerCallback):
    """Poisons the third optimizer step's loss and records the weights after every step."""

    def __init__(self, model):
        self.model, self.weights = model, {}
        self.handle = model.register_forward_hook(self.poison)
        self.step = 0

    def poison(self, module, inputs, output):
        if module.training and self.step == 2:
            output.loss = output.loss * float("nan")
        return output

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        self.weights[state.global_step] = self.model.transformer.wte.weight.detach().clone()


def test_non_finite_loss_can_skip_the_step(tmp_path):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
    blocks = [{"input_ids": torch.randint(0, 64, (16,))} for _ in range(40)]
    blocks = [dict(b, labels=b["input_ids"]) for b in blocks]
    args = PretrainingArguments(
        output_dir=str(tmp_path),
        eval_strategy="no",
        max_steps=5,
        logging_steps=1,
        per_device_train_batch_size=4,
        bad_loss="skip",
        save_strategy="no",
    )
    trainer = PretrainingTrainer(
        model=model,
        args=args,
        train_dataset=blocks,
        objective=OBJECTIVES["causal"],
        run_callbacks=RunCallbacks.for_run(args, tokens_per_step=1),
        chars_per_token=None,
        eval_unigram_loss=1.0,
    )
    recorder = LossBecomesNan(model)
    trainer.add_callback(recorder)
    trainer.train()
    assert trainer.skipped_steps == 1
    assert torch.equal(recorder.weights[3], recorder.weights[2])  # the poisoned step moved nothing
    assert not torch.equal(recorder.weights[4], recorder.weights[3])  # and training went on
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(entry.get("skipped_steps") == 1 for entry in trainer.state.log_history)


def test_same_config_and_seed_give_the_same_curve(tmp_path, zh_file, gpt_tokenizer_dir):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        argv = flags(tmp_path, zh_file, gpt_tokenizer_dir, "--logging_steps", 1)
        argv[argv.index("--output_dir") + 1] = str(out)
        pretrain_gpt2_zh.cli(argv)
    assert len(losses(first)) == 8 and losses(first) == losses(second)
    assert (first / "samples.json").read_text() == (second / "samples.json").read_text()


def make_repo(path, dirty):
    path.mkdir()
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "code"], check=True)
    if dirty:
        (path / "code.py").write_text("x = 2\n")
    return path


def test_require_clean_git_refuses_a_dirty_checkout(tmp_path, zh_file, gpt_tokenizer_dir, capsys, monkeypatch):
    dirty = make_repo(tmp_path / "dirty", dirty=True)
    monkeypatch.setattr(provenance, "code_dirs", lambda: [dirty])
    with pytest.raises(SystemExit):
        run_cli(pretrain_gpt2_zh.cli, flags(tmp_path, zh_file, gpt_tokenizer_dir, "--require_clean_git", "true"))
    err = capsys.readouterr().err.strip()
    assert f"the checkout at {dirty} has uncommitted changes" in err and not (tmp_path / "out").exists()

    clean = make_repo(tmp_path / "clean", dirty=False)
    monkeypatch.setattr(provenance, "code_dirs", lambda: [clean])
    provenance.require_clean_git()
    assert provenance.code_git_state()["dirty"] is False
    monkeypatch.setattr(provenance, "code_dirs", lambda: [tmp_path])
    with pytest.raises(ScratchError, match="not run from a git checkout"):
        provenance.require_clean_git()


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "muon"])
@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path, zh_file, gpt_tokenizer_dir, optim):
    """gloo DDP with 2 x batch 2 follows the 1-process batch-4 run; files and tokenization come from one process."""
    one = tmp_path / "one"
    argv = flags(tmp_path, zh_file, gpt_tokenizer_dir, "--logging_steps", 1, "--optim", optim)
    argv[argv.index("--output_dir") + 1] = str(one)
    pretrain_gpt2_zh.cli(argv)

    two = tmp_path / "two"
    env = {**os.environ, "SCRATCHLM_CACHE": str(tmp_path / "fresh-cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            *two_processes(ROOT / "recipes/pretrain_gpt2_zh.py"),
            *flags(
                tmp_path,
                zh_file,
                gpt_tokenizer_dir,
                "--logging_steps",
                1,
                "--per_device_train_batch_size",
                2,
                "--output_dir",
                two,
                "--log_level_replica",
                "info",
                "--optim",
                optim,
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert log.count("packed dataset cache miss") == 1 and log.count("packed dataset cache hit") == 1
    assert "global batch 4 = 2 per device x 1 accumulation x 2 processes" in log
    assert json.loads((two / "run_manifest.json").read_text())["world_size"] == 2
    assert len(losses(two)) == 8
    for a, b in zip(losses(one), losses(two)):
        assert math.isclose(a, b, abs_tol=1e-4), (losses(one), losses(two))
    assert sorted(p.name for p in two.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4", "checkpoint-8"]


GLOO_PROBE = """
import os, sys
import torch, torch.distributed as dist
from scratchlm.errors import _close_process_group

def gloo_threads():
    names = set()
    for task in os.listdir("/proc/self/task"):
        try:
            names.add(open(f"/proc/self/task/{task}/comm").read().strip())
        except OSError:
            pass
    return sorted(n for n in names if "gloo" in n)

dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[1], rank=0, world_size=1)
class Holder:  # a reference cycle that holds the group's user, as Trainer and its callbacks do
    pass
holder = Holder()
holder.me, holder.model = holder, torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
del holder
print("before", gloo_threads())
_close_process_group()
print("after", gloo_threads())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names come from /proc")
@pytest.mark.slow
def test_closing_the_process_group_joins_the_gloo_threads():
    """Left to interpreter teardown, these threads made about one two-process run in 20 to 50 abort at exit."""
    result = subprocess.run(
        [sys.executable, "-c", GLOO_PROBE, str(29800 + os.getpid() % 150)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["before ['gloo_tcp_loop', 'pt_gloo_runloop']", "after []"]
