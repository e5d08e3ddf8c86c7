"""A run killed with SIGKILL and relaunched with --resume_from_checkpoint true continues exactly."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scratchlm.checkpoints import QUARANTINE_DIR
from scratchlm.errors import run_cli
from scratchlm.objectives import OBJECTIVES
from scratchlm.provenance import MANIFEST_FILE

import pretrain_gpt2_zh
from conftest import ROOT, two_processes

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
# 12 steps, a checkpoint every 3, a logged loss every step, one evaluation at the end.
SHORT_RUN = ["--max_steps", 12, "--save_steps", 3, "--logging_steps", 1, "--eval_steps", 12, "--save_total_limit", 2]

KILLER = """
import os, signal, sys
sys.path.insert(0, {recipes!r})
import pretrain_gpt2_zh
from transformers import TrainerCallback
from scratchlm.errors import run_cli

class KillAtStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {step} and args.process_index == 0:
            os.kill(os.getpid(), signal.{signal})

import scratchlm.recipe
build = scratchlm.recipe.build_trainer
def build_with_killer(*args, **kwargs):
    trainer = build(*args, **kwargs)
    trainer.add_callback(KillAtStep())
    return trainer

scratchlm.recipe.build_trainer = build_with_killer
run_cli(pretrain_gpt2_zh.cli, sys.argv[1:])
"""


def flags(zh_file, tok, out, *extra):
    return [
        "--config",
        DEBUG,
        "--train_files",
        str(zh_file),
        "--tokenizer_name_or_path",
        str(tok),
        "--output_dir",
        str(out),
        *map(str, SHORT_RUN),
        *map(str, extra),
    ]


def run_recipe(argv):
    return pretrain_gpt2_zh.cli(argv)


def kill_at(step, argv, cwd, sig="SIGKILL"):
    result = subprocess.run(
        [sys.executable, "-c", KILLER.format(recipes=str(ROOT / "recipes"), step=step, signal=sig), *argv],
        capture_output=True,
        text=True,
        cwd=str(cwd),
        env={**os.environ},
    )
    if sig == "SIGKILL":
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result


def per_step(out, key):
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry[key] for entry in history if key in entry}


@pytest.fixture
def reference(tmp_path, zh_file, gpt_tokenizer_dir):
    """The uninterrupted run (it also fills the packed-data cache the killed runs reuse)."""
    out = tmp_path / "uninterrupted"
    metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out))
    return out, metrics


@pytest.mark.parametrize("kill_step", [5, 7, 11])
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_losses(tmp_path, zh_file, gpt_tokenizer_dir, reference, kill_step):
    ref_out, ref_metrics = reference
    out = tmp_path / "killed"
    kill_at(kill_step, flags(zh_file, gpt_tokenizer_dir, out), tmp_path)
    saved = sorted(p.name for p in out.glob("checkpoint-*"))
    assert f"checkpoint-{kill_step // 3 * 3}" in saved and not (out / "model.safetensors").exists()

    metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true"))
    expected, resumed = per_step(ref_out, "loss"), per_step(out, "loss")
    assert sorted(resumed) == list(range(1, 13))
    for step in range(kill_step // 3 * 3 + 1, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    assert per_step(out, "grad_norm")[12] == pytest.approx(per_step(ref_out, "grad_norm")[12], rel=1e-5)
    assert metrics["eval_loss"] == pytest.approx(ref_metrics["eval_loss"], abs=1e-6)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])
@pytest.mark.slow
def test_a_preempted_run_saves_stops_and_resumes_to_the_same_losses(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, sig
):
    ref_out, ref_metrics = reference
    out = tmp_path / "preempted"
    # `auto`, as in a job script that is requeued: the first launch finds no checkpoint and starts afresh.
    result = kill_at(4, flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "auto"), tmp_path, sig=sig)
    # The signal comes at the end of step 4, after the guard looked: step 5 is finished, saved, and the run stops.
    assert result.returncode == 75, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"stopped: {sig} at step 5; saved {out / 'checkpoint-5'}. Resume with the same command plus "
        "--resume_from_checkpoint true"
    )
    assert (out / "checkpoint-5" / MANIFEST_FILE).is_file() and not (out / "model.safetensors").exists()
    metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "auto"))
    expected, resumed = per_step(ref_out, "loss"), per_step(out, "loss")
    for step in range(6, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    assert metrics["eval_loss"] == pytest.approx(ref_metrics["eval_loss"], abs=1e-6)


def test_resume_skips_a_truncated_checkpoint_and_one_cut_off_mid_save(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, caplog
):
    ref_out, ref_metrics = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoint-9", out / "checkpoint-9")
    shutil.copytree(ref_out / "checkpoint-12", out / "checkpoint-12")
    weights = out / "checkpoint-12" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated by a full disk
    interrupted = out / "checkpoint-15"  # killed after the weights, before the manifest
    interrupted.mkdir()
    shutil.copy(ref_out / "checkpoint-12" / "model.safetensors", interrupted)
    (out / "checkpoint-9" / "model.safetensors").touch()  # an mtime change alone is fine

    with caplog.at_level("WARNING"):
        metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true"))
    assert "model.safetensors has" in caplog.text and "no complete run_manifest.json" in caplog.text
    quarantined = sorted(p.name.rsplit("-", 1)[0] for p in (out / QUARANTINE_DIR).iterdir())
    assert quarantined == ["checkpoint-12", "checkpoint-15"]  # moved aside, never deleted
    assert metrics["eval_loss"] == pytest.approx(ref_metrics["eval_loss"], abs=1e-6)
    assert per_step(out, "loss")[12] == pytest.approx(per_step(ref_out, "loss")[12], abs=1e-6)


def test_explicit_broken_checkpoint_is_refused(tmp_path, zh_file, gpt_tokenizer_dir, reference, capsys):
    ref_out, _ = reference
    broken = tmp_path / "checkpoint-6"
    shutil.copytree(ref_out / "checkpoint-12", broken)
    (broken / "optimizer.pt").write_bytes(b"\0" * (broken / "optimizer.pt").stat().st_size)
    with pytest.raises(SystemExit):
        run_cli(
            pretrain_gpt2_zh.cli,
            flags(zh_file, gpt_tokenizer_dir, tmp_path / "out", "--resume_from_checkpoint", broken),
        )
    err = capsys.readouterr().err.strip()
    assert "optimizer.pt does not match the hash" in err and "--resume_from_checkpoint true" in err


def test_every_checkpoint_and_the_model_carry_the_manifest(reference):
    out, _ = reference
    final = json.loads((out / MANIFEST_FILE).read_text())
    for key in ("git", "versions", "device", "seed", "corpus_fingerprint", "tokenizer_fingerprint", "config"):
        assert key in final, key
    assert final["seed"] == 42 and final["config"]["max_steps"] == 12 and len(final["corpus_fingerprint"]) == 64
    assert final["versions"]["transformers"] and final["git"]["commit"]  # the tests run from a checkout
    for checkpoint in out.glob("checkpoint-*"):
        sealed = json.loads((checkpoint / MANIFEST_FILE).read_text())
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(sealed["files"])
        assert sealed["global_step"] == int(checkpoint.name.split("-")[1])


def test_rotation_keeps_the_best_and_the_newest(tmp_path, zh_file, gpt_tokenizer_dir):
    # "Best" is the highest eval loss here, so it is the oldest checkpoint: rotation must still keep it.
    out = tmp_path / "run"
    run_recipe(
        flags(
            zh_file,
            gpt_tokenizer_dir,
            out,
            "--save_total_limit",
            1,
            "--eval_steps",
            3,
            "--metric_for_best_model",
            "eval_loss",
            "--greater_is_better",
            "true",
        )
    )
    state = json.loads((out / "trainer_state.json").read_text())
    best = os.path.basename(state["best_model_checkpoint"])
    assert best == "checkpoint-3"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-3"]


def test_resume_from_another_model_family_is_refused(tmp_path, zh_file, gpt_tokenizer_dir, reference, capsys):
    ref_out, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoint-12", out / "checkpoint-12")
    with pytest.raises(SystemExit):
        run_cli(
            pretrain_gpt2_zh.cli,
            flags(
                zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true", "--model_type", "scratch_decoder"
            ),
        )
    err = capsys.readouterr().err.strip()
    assert "holds a different model (model_type: checkpoint 'gpt2' vs run 'scratch_decoder'" in err


@pytest.mark.parametrize(
    "change, said",
    [
        (["--learning_rate", "5e-2"], "was trained with learning_rate 0.001 (this command: 0.05): a resume restores"),
        (["--per_device_train_batch_size", "2"], "was trained with a global batch of 4 (this command: 2)"),
        (["--train_files", "OTHER"], "was trained on another corpus (local files "),
    ],
)
def test_a_resume_with_other_training_settings_or_corpus_is_refused(
    tmp_path, zh_file, zh_docs, gpt_tokenizer_dir, reference, capsys, change, said
):
    ref_out, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoint-9", out / "checkpoint-9")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(zh_docs[::-1]) + "\n", encoding="utf-8")
    change = [str(other) if c == "OTHER" else c for c in change]
    with pytest.raises(SystemExit) as refused:
        run_cli(
            pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true", *change)
        )
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --resume_from_checkpoint {out / 'checkpoint-9'} {said}") and "\n" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-9"]  # nothing written


def test_a_checkpoint_at_the_last_step_finishes_the_run_without_training_more(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, caplog
):
    """The final save failed (a full disk, say) after checkpoint-12 was sealed: the resume writes the final model,
    evaluation and card from it, where Trainer itself would train a 13th step of a 12-step run."""
    ref_out, ref_metrics = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoint-12", out / "checkpoint-12")
    with caplog.at_level("INFO", logger="scratchlm"):
        metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true"))
    assert "is at step 12 of max_steps 12: nothing is left to train" in caplog.text
    assert max(per_step(out, "loss")) == 12
    assert metrics["eval_loss"] == pytest.approx(ref_metrics["eval_loss"], abs=1e-6)
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


def test_a_checkpoint_of_another_folder_does_not_write_over_a_full_output_dir(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, capsys
):
    ref_out, _ = reference
    out = tmp_path / "another-run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"another run's model")
    checkpoint = ref_out / "checkpoint-9"
    with pytest.raises(SystemExit) as refused:
        run_cli(pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", checkpoint))
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --output_dir {out} already exists and is not empty: pass --output_dir {ref_out} to continue there, "
        "--overwrite_output_dir true to write over it, or choose another --output_dir"
    )
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"another run's model"


def test_a_longer_resume_of_a_cosine_run_warns_how_far_the_rate_jumps(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, caplog
):
    ref_out, _ = reference
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoint-9", out / "checkpoint-9")
    with caplog.at_level("INFO", logger="scratchlm"):
        run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true", "--max_steps", 16))
    (warning,) = [r.getMessage() for r in caplog.records if "the schedule is laid out over" in r.getMessage()]
    assert warning.startswith("resuming at step 9 for 16 steps in all (the checkpoint's run had 12)")
    before, after = (float(x) for x in re.search(r"jumps from ([\d.]+)% to ([\d.]+)% of its peak", warning).groups())
    rates = per_step(out, "learning_rate")
    # Step 10 runs at the rate the checkpoint saved; the longer schedule sets the rate from step 11 on.
    assert max(rates) == 16 and rates[10] == per_step(ref_out, "learning_rate")[10]
    assert rates[11] > per_step(ref_out, "learning_rate")[11]
    peak = 1e-3  # the debug config's
    assert rates[10] == pytest.approx(peak * before / 100, rel=5e-3)  # the warning's figures are the rates applied
    assert rates[11] == pytest.approx(peak * after / 100, rel=5e-3) and before < after


WSD = ["--lr_scheduler_type", "warmup_stable_decay", "--save_total_limit", 5]


def test_a_warmup_stable_decay_run_extends_from_before_its_decay(tmp_path, zh_file, gpt_tokenizer_dir, caplog, capsys):
    """With num_decay_steps a fraction, 12 steps decay over the last 3 (from step 9) and 16 over the last 4 (from
    step 12): the checkpoint where the first decay starts resumes at the peak rate, and the decay moves to the
    end of the longer run."""
    out = tmp_path / "run"
    decay = ["--lr_scheduler_kwargs", '{"num_decay_steps": 0.25}']
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, *WSD, *decay))
    shutil.rmtree(out / "checkpoint-12")
    with pytest.raises(SystemExit):  # another fraction is another schedule
        run_cli(
            pretrain_gpt2_zh.cli,
            flags(zh_file, gpt_tokenizer_dir, out, *WSD, "--lr_scheduler_kwargs", '{"num_decay_steps": 0.5}')
            + ["--resume_from_checkpoint", "true", "--max_steps", "16", "--overwrite_output_dir", "true"],
        )
    assert "was trained with lr_scheduler_kwargs {'num_decay_steps': 3} (this command: {'num_decay_steps': 8})" in (
        capsys.readouterr().err
    )
    with caplog.at_level("INFO", logger="scratchlm"):
        run_recipe(
            flags(zh_file, gpt_tokenizer_dir, out, *WSD, *decay)
            + ["--resume_from_checkpoint", "true", "--max_steps", "16", "--overwrite_output_dir", "true"]
        )
    assert "resuming at step 9 for 16 steps in all (the checkpoint's run had 12): the schedule is laid out over " in (
        caplog.text
    )
    assert "the learning rate at the resume stays at 100% of its peak" in caplog.text
    rates = per_step(out, "learning_rate")
    peak = rates[9]
    assert [rates[step] for step in range(3, 14)] == [peak] * 11  # flat until the new decay, over steps 14-16
    assert rates[14] < peak and rates[16] < rates[14]


def test_an_auto_decay_resumed_past_6_epochs_is_refused_with_both_lengths(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    """Auto decays over 60% of a run that sees its corpus once and 20% of one that sees it more than 6 times: the
    longer run would be another schedule, which the resume refuses with both lengths."""
    out = tmp_path / "run"
    auto = ["--lr_scheduler_kwargs", '{"num_decay_steps": "auto"}']
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, *WSD, *auto))
    assert "num_decay_steps: 7" in (out / "run_config.yaml").read_text()  # 60% of 12 steps
    longer = ["--resume_from_checkpoint", "true", "--max_steps", "4000", "--overwrite_output_dir", "true"]
    with pytest.raises(SystemExit):
        run_cli(pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out, *WSD, *auto) + longer)
    assert "was trained with lr_scheduler_kwargs {'num_decay_steps': 7} (this command: {'num_decay_steps': 800})" in (
        capsys.readouterr().err
    )


def test_a_one_cycle_run_cannot_be_resumed_for_another_length(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    out = tmp_path / "run"
    one_cycle = ["--lr_scheduler_type", "one_cycle"]
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, *one_cycle))
    shutil.rmtree(out / "checkpoint-12")
    with pytest.raises(SystemExit) as refused:
        run_cli(
            pretrain_gpt2_zh.cli,
            flags(zh_file, gpt_tokenizer_dir, out, *one_cycle, "--resume_from_checkpoint", "true", "--max_steps", 16),
        )
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --resume_from_checkpoint {out / 'checkpoint-9'} holds a one_cycle schedule laid out for 12 steps, "
        "and one_cycle keeps that length (this command asks for 16): resume with --max_steps 12, or use "
        "--lr_scheduler_type warmup_stable_decay in a new --output_dir for a run that can be extended"
    )


def test_skipping_to_the_resume_point_reads_no_data(tmp_path):
    """Trainer skips to the resume position by drawing sampler indices, not by loading blocks
    (the dataloader reads the batch it returns and prefetches one more)."""
    import torch
    from accelerate import skip_first_batches
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratchlm.arguments import PretrainingArguments
    from scratchlm.training import PretrainingTrainer, RunCallbacks

    class CountingBlocks(torch.utils.data.Dataset):
        reads = 0

        def __len__(self):
            return 100_000

        def __getitem__(self, index):
            CountingBlocks.reads += 1
            return {"input_ids": torch.full((8,), index % 50)}

    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=8, n_embd=32, n_layer=1, n_head=2))
    args = PretrainingArguments(output_dir=str(tmp_path), eval_strategy="no", per_device_train_batch_size=4)
    trainer = PretrainingTrainer(
        model=model,
        args=args,
        train_dataset=CountingBlocks(),
        objective=OBJECTIVES["causal"],
        run_callbacks=RunCallbacks.for_run(args, tokens_per_step=1),
        chars_per_token=None,
        eval_unigram_loss=1.0,
    )
    batch = next(iter(skip_first_batches(trainer.get_train_dataloader(), 20_000)))
    assert CountingBlocks.reads == 8 and batch["input_ids"].shape == (4, 8)


@pytest.mark.slow
def test_two_processes_stop_together_on_a_signal_to_one_and_resume(tmp_path, zh_file, gpt_tokenizer_dir, reference):
    """SIGTERM to the main process only: both stop after the same step, and the resumed pair matches the
    single-process run (batch 2 x 2 processes = batch 4)."""
    ref_out, _ = reference
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(recipes=str(ROOT / "recipes"), step=4, signal="SIGTERM"))
    out = tmp_path / "two"
    two = [*flags(zh_file, gpt_tokenizer_dir, out), "--per_device_train_batch_size", "2"]
    stopped = subprocess.run(
        [*two_processes(script), *two], capture_output=True, text=True, cwd=str(tmp_path), timeout=300
    )
    assert stopped.returncode != 0 and "stopped: SIGTERM at step 5" in stopped.stderr, stopped.stderr[-3000:]
    assert "stopped: a signal to another process at step 5" in stopped.stderr  # the other process, same step
    assert (out / "checkpoint-5" / MANIFEST_FILE).is_file()
    resumed = subprocess.run(
        [*two_processes(ROOT / "recipes/pretrain_gpt2_zh.py"), *two, "--resume_from_checkpoint", "true"],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = per_step(ref_out, "loss"), per_step(out, "loss")
    for step in range(6, 13):
        assert got[step] == pytest.approx(expected[step], abs=1e-4), step


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, monkeypatch, capsys
):
    """ENOSPC half-way through checkpoint-6: one line with the space needed; checkpoint-3 still resumes."""
    import errno

    import torch

    ref_out, _ = reference
    out = tmp_path / "full"
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt") and "checkpoint-6" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(
            f"error: no space left on the device of {out / 'checkpoint-6' / 'optimizer.pt'} while "
            "saving: a checkpoint takes about "
        )
        and "MB are free there" in err
        and "\n" not in err
    )
    assert (out / "checkpoint-3" / MANIFEST_FILE).is_file() and (out / "checkpoint-6" / "model.safetensors").is_file()
    assert not (out / "checkpoint-6" / MANIFEST_FILE).exists()  # not sealed, so never taken for complete
    monkeypatch.undo()
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true"))
    assert any((out / QUARANTINE_DIR).glob("checkpoint-6-*"))
    expected, resumed = per_step(ref_out, "loss"), per_step(out, "loss")
    for step in range(4, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


def test_a_full_disk_at_the_final_save_is_one_line_and_the_resume_finishes_the_run(
    tmp_path, zh_file, gpt_tokenizer_dir, reference, monkeypatch, capsys
):
    """safetensors reports a full disk as its own error, with the OS error only in its text."""
    import transformers.modeling_utils
    from safetensors import SafetensorError

    ref_out, ref_metrics = reference
    out = tmp_path / "full"
    real_save = transformers.modeling_utils.safe_save_file

    def save(tensors, filename, *args, **kwargs):
        if Path(filename).parent == out:  # the final model, after checkpoint-12 was sealed
            raise SafetensorError(
                "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                'message: "No space left on device" })'
            )
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", save)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no space left on the device of {out} while saving: a checkpoint takes about ")
    assert "\n" not in err
    monkeypatch.undo()
    metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true"))
    assert max(per_step(out, "loss")) == 12
    assert metrics["eval_loss"] == pytest.approx(ref_metrics["eval_loss"], abs=1e-6)


def test_resuming_with_another_tokenizer_is_refused(tmp_path, zh_file, zh_docs, gpt_tokenizer_dir, reference, capsys):
    from scratchlm.arguments import TokenizerArguments
    from scratchlm.tokenizer import train_tokenizer

    ref_out, _ = reference
    other = tmp_path / "other-tok"
    train_tokenizer(zh_docs[:200], TokenizerArguments(vocab_size=600, min_frequency=3), other)  # same size
    out = tmp_path / "run"
    shutil.copytree(ref_out / "checkpoint-9", out / "checkpoint-9")
    with pytest.raises(SystemExit):
        run_cli(pretrain_gpt2_zh.cli, flags(zh_file, other, out, "--resume_from_checkpoint", "true"))
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(
            f"error: --resume_from_checkpoint {out / 'checkpoint-9'} was trained with another "
            f"tokenizer ({gpt_tokenizer_dir}, hash "
        )
        and "\n" not in err
    )
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-9"]  # nothing written


SECOND_SIGNAL = """
import os, signal, sys
sys.path.insert(0, {recipes!r})
import pretrain_gpt2_zh
import torch
from transformers import TrainerCallback
from scratchlm.errors import run_cli

class TermAtStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

real_save = torch.save
def save(obj, f, *args, **kwargs):  # the second SIGTERM comes while the preemption checkpoint is being written
    if str(f).endswith("optimizer.pt") and "checkpoint-5" in str(f):
        os.kill(os.getpid(), signal.SIGTERM)
    return real_save(obj, f, *args, **kwargs)
torch.save = save

import scratchlm.recipe
build = scratchlm.recipe.build_trainer
def build_with_signal(*args, **kwargs):
    trainer = build(*args, **kwargs)
    trainer.add_callback(TermAtStep())
    return trainer
scratchlm.recipe.build_trainer = build_with_signal
run_cli(pretrain_gpt2_zh.cli, sys.argv[1:])
"""


@pytest.mark.slow
def test_a_second_signal_while_saving_leaves_no_checkpoint_that_counts(tmp_path, zh_file, gpt_tokenizer_dir, reference):
    ref_out, _ = reference
    out = tmp_path / "twice"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SECOND_SIGNAL.format(recipes=str(ROOT / "recipes")),
            *flags(zh_file, gpt_tokenizer_dir, out),
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
    )
    assert result.returncode == -signal.SIGTERM, result.stderr[-3000:]  # the second signal's default action
    assert (out / "checkpoint-5" / "model.safetensors").is_file() and not (
        out / "checkpoint-5" / MANIFEST_FILE
    ).exists()
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, "--resume_from_checkpoint", "true"))
    assert any((out / QUARANTINE_DIR).glob("checkpoint-5-*"))  # set aside; the run went on from checkpoint-3
    expected, resumed = per_step(ref_out, "loss"), per_step(out, "loss")
    for step in range(4, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


@pytest.mark.slow
def test_a_run_of_several_epochs_resumes_to_the_same_shifted_windows(tmp_path, zh_file, gpt_tokenizer_dir):
    # 16 blocks at 4 a step: 4 steps an epoch. Killed at step 7, the run resumes from checkpoint-6, half-way
    # through the second epoch, whose windows start at another offset than the first's.
    epochs = ["--max_train_samples", 16, "--window_order", "shifted"]
    ref_out = tmp_path / "uninterrupted"
    ref_metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, ref_out, *epochs))
    out = tmp_path / "killed"
    kill_at(7, flags(zh_file, gpt_tokenizer_dir, out, *epochs), tmp_path)
    metrics = run_recipe(flags(zh_file, gpt_tokenizer_dir, out, *epochs, "--resume_from_checkpoint", "true"))
    expected, resumed = per_step(ref_out, "loss"), per_step(out, "loss")
    for step in range(7, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    assert metrics["eval_loss"] == pytest.approx(ref_metrics["eval_loss"], abs=1e-6)
    fixed = run_recipe(
        flags(zh_file, gpt_tokenizer_dir, tmp_path / "fixed", "--max_train_samples", 16, "--window_order", "fixed")
    )
    assert fixed["eval_loss"] != pytest.approx(ref_metrics["eval_loss"], abs=1e-6)  # the windows did move


def test_running_out_of_gpu_memory_is_one_line_with_the_same_global_batch_in_smaller_pieces(
    tmp_path, zh_file, gpt_tokenizer_dir, monkeypatch, capsys
):
    """torch.cuda.OutOfMemoryError at step 5 of a training run, then at an evaluation: each is one line with the
    batch that fits the same global batch, and checkpoint-3 resumes with it to the end."""
    import torch

    from scratchlm.training import PretrainingTrainer

    out = tmp_path / "oom"
    real_step, real_predict = PretrainingTrainer.training_step, PretrainingTrainer.prediction_step

    def step(self, *args, **kwargs):
        if self.state.global_step == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(PretrainingTrainer, "training_step", step)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "error: the accelerator ran out of memory in a training step at --per_device_train_batch_size 4: pass "
        "--per_device_train_batch_size 2 --gradient_accumulation_steps 2 (the same global batch); or add "
        "--fused_loss true"
    )
    assert err.endswith(f"{out / 'checkpoint-3'} is kept: resume from it with --resume_from_checkpoint true")
    assert "\n" not in err
    monkeypatch.setattr(PretrainingTrainer, "training_step", real_step)

    def predict(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(PretrainingTrainer, "prediction_step", predict)
    smaller = ["--per_device_train_batch_size", 2, "--gradient_accumulation_steps", 2]
    with pytest.raises(SystemExit):
        run_cli(
            pretrain_gpt2_zh.cli, flags(zh_file, gpt_tokenizer_dir, out, *smaller, "--resume_from_checkpoint", "true")
        )
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith(
            "error: the accelerator ran out of memory in an evaluation at --per_device_eval_batch_size 4: pass "
            "--per_device_eval_batch_size 2"
        )
    )
    monkeypatch.setattr(PretrainingTrainer, "prediction_step", real_predict)
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, *smaller, "--resume_from_checkpoint", "true"))
    assert max(per_step(out, "loss")) == 12
