"""One run per output folder; `scratchlm stop`, which signals the training process itself; timed checkpoints;
and a stop through `accelerate launch` where finishing the step and saving takes longer than the launcher's
5 s grace."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import accelerate
import pytest
from packaging.version import Version

from scratchlm.cli import main as scratchlm_main
from scratchlm.data.files import TEXT
from scratchlm.errors import Preempted, run_cli
from scratchlm.objectives import parse_run_settings
from scratchlm.provenance import MANIFEST_FILE
from scratchlm.recipe import build_run
from scratchlm.runlock import LOCK_NAME

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv, two_processes

DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
HOLDER = """
import sys, time
from pathlib import Path
from scratchlm.runlock import hold_output_dir
with hold_output_dir(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def hold(out):
    """Another process that holds `out` as a run does, until it is signalled."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_into_a_folder_in_use_is_refused_and_stop_signals_the_first(
    tmp_path, zh_file, gpt_tokenizer_dir, capsys
):
    out = tmp_path / "run"
    holder = hold(out)
    try:
        with pytest.raises(SystemExit) as refused:
            run_cli(pretrain_gpt2_zh.cli, recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out))
        assert refused.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"error: --output_dir {out} is in use by the run with pid {holder.pid} on ")
        assert error.endswith(f"stop it with `scratchlm stop {out}`, or choose another --output_dir")
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing of the second run's was written

        scratchlm_main(["stop", str(out), "--wait"])
        printed = capsys.readouterr().out
        assert f"sent SIGTERM to pid {holder.pid}, the run training into {out}" in printed
        assert "stopped; newest complete checkpoint: none" in printed
        assert holder.wait(timeout=30) == -signal.SIGTERM
    finally:
        holder.kill()
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # killed: its file stays, and holds nobody back

    with pytest.raises(SystemExit) as nothing:  # the holder is gone, and the kernel released its lock with it
        scratchlm_main(["stop", str(out)])
    assert nothing.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {out}: no run is training here now; nothing to stop"


def test_stop_names_a_folder_where_no_run_is_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        scratchlm_main(["stop", str(tmp_path)])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no run is training here now; nothing to stop"


def test_an_output_dir_that_is_a_file_is_refused_and_left_alone(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    with pytest.raises(SystemExit) as refused:
        run_cli(pretrain_gpt2_zh.cli, recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out))
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --output_dir {out} is a file, not a folder: choose another --output_dir"
    )
    assert out.read_text() == "mine"


def test_a_run_that_fails_before_writing_anything_leaves_no_folder(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    out = tmp_path / "never"
    bad_pairs = tmp_path / "pairs.jsonl"
    bad_pairs.write_text("not json\n")  # read and refused after the run has taken its folder
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--eval_minimal_pairs", bad_pairs)
    with pytest.raises(SystemExit) as refused:
        run_cli(pretrain_gpt2_zh.cli, argv)
    assert refused.value.code == 2 and str(bad_pairs) in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("save_strategy", ["steps", "no"])
def test_a_stop_while_the_final_model_is_written_says_how_to_finish_it(
    tmp_path, zh_file, gpt_tokenizer_dir, capsys, monkeypatch, save_strategy
):
    from scratchlm.internals import TrainerInternals

    save = TrainerInternals.save_model_without_push

    def save_after_a_sigterm(trainer):
        os.kill(os.getpid(), signal.SIGTERM)  # taken by run_cli's handler, as a scheduler's would be
        save(trainer)

    monkeypatch.setattr(TrainerInternals, "save_model_without_push", save_after_a_sigterm)
    out = tmp_path / "run"
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--save_strategy", save_strategy)
    with pytest.raises(SystemExit) as stopped:
        run_cli(pretrain_gpt2_zh.cli, argv)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert not (out / "config.json").exists() and not (out / MANIFEST_FILE).exists()
    if save_strategy == "no":  # nothing to finish from: the stop is a stop
        assert stopped.value.code == 128 + signal.SIGTERM
        assert line.startswith("stopped: SIGTERM received; nothing finished was overwritten")
        return
    assert stopped.value.code == Preempted.exit_code
    assert line == (
        f"stopped: SIGTERM received after the last step, while the final model, evaluation and card were written; "
        f"{out / 'checkpoint-8'} holds everything trained: finish with the same command plus "
        "--resume_from_checkpoint true (nothing is trained again)"
    )
    monkeypatch.setattr(TrainerInternals, "save_model_without_push", save)
    pretrain_gpt2_zh.cli([*argv, "--resume_from_checkpoint", "true"])
    assert (out / MANIFEST_FILE).is_file() and (out / "README.md").is_file()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 8


class SecondPerReading:
    """A monotonic clock that moves one second each time it is read: a debug step can be shorter than the
    save interval, and the test must not depend on how fast the host is."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_save_every_minutes_saves_sealed_checkpoints_without_save_steps(
    tmp_path, zh_file, gpt_tokenizer_dir, caplog, capsys, monkeypatch
):
    import scratchlm.training.preemption

    monkeypatch.setattr(scratchlm.training.preemption, "time", SecondPerReading())
    out = tmp_path / "timed"
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--save_strategy", "no", "--save_every_minutes", "0.01")
    with caplog.at_level("INFO", logger="scratchlm"):
        pretrain_gpt2_zh.cli([*argv, "--max_steps", "3", "--save_total_limit", "5"])
    saved = sorted(p.name for p in out.glob("checkpoint-*"))
    assert saved == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert all((out / name / MANIFEST_FILE).is_file() for name in saved)
    assert "saving one (--save_every_minutes)" in caplog.text
    assert not (out / LOCK_NAME).exists()  # a finished run lets go of its folder

    with pytest.raises(SystemExit) as refused:
        run_cli(pretrain_gpt2_zh.cli, [*argv[:-1], "0", "--output_dir", str(tmp_path / "zero")])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --save_every_minutes must be positive, got 0.0"


# A model whose step plus checkpoint takes longer than accelerate's 5 s: 12 layers of width 1024 (150M
# parameters; the checkpoint with AdamW's state is about 1.8 GB, sealed with a sha256 of every file).
# accelerate 1.16 (Python 3.11 and newer) passes SIGTERM on to the run and SIGKILLs it 5 s later; 1.15 and
# older, what Python 3.10 gets, exit at once and leave the run training.
LAUNCHER_FORWARDS_SIGTERM = Version(accelerate.__version__) >= Version("1.16")
BIG = ["--n_layer", "12", "--n_head", "16", "--n_embd", "1024", "--per_device_train_batch_size", "2"]
BIG += ["--max_steps", "200", "--save_steps", "1000", "--eval_steps", "1000", "--logging_steps", "1"]


def launch(command, log):
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def wait_for_steps(process, log_path, steps):
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        if text.count("'loss'") >= steps:
            return
        assert process.poll() is None, text[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"no {steps} logged steps in 10 minutes: {log_path}")


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_stop_under_accelerate_launch_keeps_a_checkpoint_that_takes_longer_than_its_grace(
    tmp_path, zh_file, gpt_tokenizer_dir, processes
):
    recipe = ROOT / "recipes/pretrain_gpt2_zh.py"
    if processes == 1:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", str(recipe)]
    else:
        launcher = two_processes(recipe)
    flags = [str(f) for f in recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "x")[:-2]] + BIG

    if processes == 1:  # what the launcher's own handling does with this model
        killed_out = tmp_path / "signalled-launcher"
        with open(tmp_path / "launcher.log", "w") as log:
            run = launch([*launcher, *flags, "--output_dir", str(killed_out)], log)
        wait_for_steps(run, tmp_path / "launcher.log", 2)
        os.kill(run.pid, signal.SIGTERM)
        run.wait(timeout=120)
        if LAUNCHER_FORWARDS_SIGTERM:  # and kills the run unsaved 5 s later
            assert "SIGTERM received: finishing this step" in (tmp_path / "launcher.log").read_text()
            assert not any((c / MANIFEST_FILE).is_file() for c in killed_out.glob("checkpoint-*"))
        else:  # the launcher is gone at once and the run goes on training without it: `scratchlm stop` ends it
            orphan = subprocess.run(
                [sys.executable, "-m", "scratchlm.cli", "stop", str(killed_out), "--wait"],
                capture_output=True,
                text=True,
            )
            assert orphan.returncode == 0 and "newest complete checkpoint" in orphan.stdout, orphan.stderr

    # `scratchlm stop`: the training process is signalled, the launcher waits, the checkpoint is written.
    out = tmp_path / "stopped"
    with open(tmp_path / "stop.log", "w") as log:
        run = launch([*launcher, *flags, "--output_dir", str(out)], log)
    wait_for_steps(run, tmp_path / "stop.log", 2)
    holder = json.loads((out / LOCK_NAME).read_text())
    assert holder["pid"] != run.pid  # the training process, not the launcher
    started = time.monotonic()
    stop = subprocess.run(
        [sys.executable, "-m", "scratchlm.cli", "stop", str(out), "--wait"], capture_output=True, text=True
    )
    took = time.monotonic() - started
    run.wait(timeout=120)
    log = (tmp_path / "stop.log").read_text()
    assert stop.returncode == 0, stop.stderr
    stopped = [line for line in log.splitlines() if line.startswith("stopped: SIGTERM at step ")]
    assert stopped, log[-3000:]
    step = int(stopped[0].split()[4].rstrip(";"))
    assert (out / f"checkpoint-{step}" / MANIFEST_FILE).is_file()
    assert f"newest complete checkpoint: {out / f'checkpoint-{step}'}" in stop.stdout
    assert took > 5, f"step + save took {took:.1f} s: too small a model to show the launcher's 5 s grace biting"


ECHOED_CTRL_C = """
import os, signal, time
from scratchlm.training.preemption import PreemptionCallback
preemption = PreemptionCallback()
preemption.on_train_begin(None, None, None)
os.kill(os.getpid(), signal.SIGINT)
os.kill(os.getpid(), signal.SIGTERM)  # the launcher's, a moment later
print("still running after", preemption.received, flush=True)
try:
    os.kill(os.getpid(), signal.SIGINT)  # a person's second Ctrl-C
    time.sleep(5)
except KeyboardInterrupt:
    print("second Ctrl-C: KeyboardInterrupt", flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # the run's handlers are gone: the default action
time.sleep(5)
"""


def test_sigterm_right_after_ctrl_c_is_the_same_stop_and_a_second_ctrl_c_stops_at_once():
    """Ctrl-C reaches the launcher too, which passes it on as SIGTERM: taken as a second request, it would end
    the run at once and lose the checkpoint the first asked for."""
    result = subprocess.run([sys.executable, "-c", ECHOED_CTRL_C], capture_output=True, text=True, timeout=60)
    said = [line for line in result.stdout.splitlines() if line.startswith(("still", "second"))]
    assert said == ["still running after SIGINT", "second Ctrl-C: KeyboardInterrupt"], result.stdout
    assert result.returncode == -signal.SIGTERM, result.stderr


def test_the_loader_workers_leave_ctrl_c_to_the_training_process(tmp_path, zh_file, gpt_tokenizer_dir):
    """A terminal's Ctrl-C (and a scheduler's SIGUSR1 to every process) reaches the loader's workers too: one
    that took it would end, and torch would raise in the middle of the step the training process finishes."""
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, tmp_path / "out", "--dataloader_num_workers", "2")
    trainer = build_run(parse_run_settings(argv, objective="causal")).trainer
    collate = trainer.data_collator

    def collate_then_signalled(features):  # runs in a worker
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGUSR1)
        return collate(features)

    trainer.data_collator = collate_then_signalled
    for loader in (trainer.get_train_dataloader(), trainer.get_eval_dataloader()):
        batches = list(loader)
        assert batches and all(batch["input_ids"].shape[1] == 32 for batch in batches)


@pytest.mark.slow
@pytest.mark.parametrize("processes, workers", [(1, 0), (1, 2), (2, 0)])
def test_ctrl_c_under_accelerate_launch_saves_a_checkpoint(tmp_path, zh_file, gpt_tokenizer_dir, processes, workers):
    """The README's command is `accelerate launch`: a Ctrl-C reaches the launcher and the run (and its loader
    workers), and the one-process launcher passes it on to all of them as SIGTERM before it kills them 5 s
    later; torch elastic (several processes) passes it on as SIGINT and waits 30 s."""
    recipe = ROOT / "recipes/pretrain_gpt2_zh.py"
    if processes == 1:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu", str(recipe)]
    else:
        launcher = two_processes(recipe)
    out = tmp_path / "out"
    flags = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--max_steps", "100000", "--logging_steps", "1")
    flags += ["--eval_steps", "100000", "--save_steps", "100000", "--dataloader_num_workers", str(workers)]
    with open(tmp_path / "run.log", "w") as log:
        run = launch([*launcher, *map(str, flags)], log)
    wait_for_steps(run, tmp_path / "run.log", 20)
    os.killpg(run.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    run.wait(timeout=120)
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    stopped = [line for line in log.splitlines() if line.startswith("stopped: SIGINT at step ")]
    assert stopped, log[-3000:]
    step = int(stopped[0].split()[4].rstrip(";"))
    assert (out / f"checkpoint-{step}" / MANIFEST_FILE).is_file()
    if processes == 1 and LAUNCHER_FORWARDS_SIGTERM:  # torch elastic passes SIGINT on to its own process groups
        assert "the same stop, passed on by a launcher" in log


LAUNCHED = ["-m", "accelerate.commands.launch", "-q", "--num_processes", "1", "--cpu"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, workers, stop, said, status",
    [
        ([], [], "ctrl_c", "stopped: interrupted (Ctrl-C)", 130),
        # The launcher also SIGTERMs the tokenizing workers, which must let go of their pool's queue locks
        (LAUNCHED, ["--preprocessing_num_workers", "2"], "ctrl_c", "stopped: interrupted (Ctrl-C)", 130),
        ([], [], "scratchlm_stop", "stopped: SIGTERM received", 128 + signal.SIGTERM),
    ],
)
def test_a_stop_while_tokenizing_is_one_line(
    tmp_path, zh_docs, gpt_tokenizer_dir, launcher, workers, stop, said, status
):
    """A terminal's Ctrl-C reaches the whole process group: the workers ignore it, the main process stops them
    and says so once, and no cache that looks complete is left. Under `accelerate launch` the SIGTERM that the
    launcher passes on at once is the same stop; it, and the SIGTERM of `scratchlm stop` before there is a step
    to finish, used to end the run without a word."""
    corpus = tmp_path / "big.txt"
    with corpus.open("w", encoding="utf-8") as f:
        while f.tell() < 20_000_000:  # enough documents for worker processes and seconds of tokenizing
            f.write("\n".join(zh_docs) + "\n")
    cache = tmp_path / "cache"
    command = [sys.executable, *launcher, str(ROOT / "recipes/pretrain_gpt2_zh.py")]
    command += recipe_argv(DEBUG, corpus, gpt_tokenizer_dir, tmp_path / "run", "--data_cache_dir", cache)
    with open(tmp_path / "run.log", "w") as log:
        run = launch([*command, "--text_sample_by", "line", *workers], log)
    deadline = time.monotonic() + 300
    while "tokenizing into" not in (tmp_path / "run.log").read_text() and time.monotonic() < deadline:
        assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(1.5)
    if stop == "ctrl_c":
        os.killpg(run.pid, signal.SIGINT)
    else:
        scratchlm_main(["stop", str(tmp_path / "run")])
    assert run.wait(timeout=120) == status
    output = (tmp_path / "run.log").read_text()
    assert "Traceback" not in output, output[-3000:]
    assert output.strip().splitlines()[-1].startswith(said)
    assert not (tmp_path / "run").exists()
    assert [p.suffix for p in (cache / "packed").iterdir()] == [".lock"]  # no cache, not even a half-built one


SLOW_TOKENIZER_TRAINING = """
import os, signal, sys, threading, time
from scratchlm.arguments import TokenizerArguments
from scratchlm.tokenizer import train_tokenizer

def texts():  # 1 GB: minutes of work in Rust, which reads it in batches and only then counts words in them
    page = " ".join(f"word{i} of a page" for i in range(1000))
    for _ in range(100_000):
        yield page

threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    train_tokenizer(texts(), TokenizerArguments(vocab_size=300), sys.argv[1])
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - start:.0f} s", flush=True)
"""


def test_ctrl_c_stops_tokenizer_training_at_once(tmp_path):
    """tokenizers trains in Rust threads and returns to the interpreter when it is done: a Ctrl-C waited for the
    whole training (minutes here). The tests turn its parallelism off; a user's run has it on."""
    result = subprocess.run(
        [sys.executable, "-c", SLOW_TOKENIZER_TRAINING, str(tmp_path / "tok")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "true"},
    )
    assert result.returncode == 0 and result.stdout.startswith("KeyboardInterrupt after "), result.stderr[-2000:]
    assert not (tmp_path / "tok").exists()


def _sleep_a_moment() -> None:
    time.sleep(1.0)


@pytest.mark.parametrize("deaf", [True, False])
def test_spawned_workers_started_deaf_ignore_a_ctrl_c_while_they_import(deaf):
    """`scratchlm prepare`'s workers are spawned: each imports scratchlm for seconds before its initializer runs,
    and a Ctrl-C in those seconds printed a traceback from every one of them."""
    import multiprocessing

    from scratchlm.errors import workers_start_deaf_to_ctrl_c

    with workers_start_deaf_to_ctrl_c() if deaf else contextlib.nullcontext():
        worker = multiprocessing.get_context("spawn").Process(target=_sleep_a_moment)
        worker.start()
    os.kill(worker.pid, signal.SIGINT)  # it is still importing this module
    worker.join(timeout=60)
    assert (worker.exitcode == 0) is deaf  # without: killed by the SIGINT, or a KeyboardInterrupt's status 1


def _predicate_then_ctrl_c(step) -> None:
    step({TEXT: ["text", " "]})
    os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C does to every worker of the group
    time.sleep(0.2)


@pytest.mark.parametrize("step", ["not_blank", "tokenize_and_pack"])
def test_every_multi_process_data_step_leaves_ctrl_c_to_the_main_process(step, gpt_tokenizer_dir):
    """A worker of a multi-process `datasets` step that took the Ctrl-C would die with a traceback, and the
    main process would wait for it forever; each step's function makes its worker ignore it."""
    import multiprocessing
    from functools import partial

    from transformers import AutoTokenizer

    from scratchlm.data.cached import _tokenize_and_pack
    from scratchlm.data.packing import PackingSpec
    from scratchlm.data.sources import not_blank

    functions = {
        "not_blank": not_blank,
        "tokenize_and_pack": partial(
            _tokenize_and_pack, tokenizer=AutoTokenizer.from_pretrained(gpt_tokenizer_dir), spec=PackingSpec(8, 0)
        ),
    }
    worker = multiprocessing.get_context("fork").Process(target=_predicate_then_ctrl_c, args=(functions[step],))
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0  # a KeyboardInterrupt would have ended it with 1


SIGTERM_TO_AN_IDLE_WORKER = """
import os, signal, threading, time
import multiprocess  # what datasets starts its workers with
from scratchlm.data.sources import not_blank

def step_then_pid(batch):
    not_blank(batch)
    return os.getpid()

pool = multiprocess.get_context("fork").Pool(1)
worker = pool.apply(step_then_pid, ({"text": ["text"]},))
time.sleep(0.5)  # the worker now waits for its next task, holding the task queue's read lock
os.kill(worker, signal.SIGTERM)  # as `accelerate launch` passes a Ctrl-C on to every process of the run
time.sleep(0.5)
terminated = threading.Event()
threading.Thread(target=lambda: (pool.terminate(), terminated.set()), daemon=True).start()
print("terminated" if terminated.wait(20) else "the pool's clean-up waits for a lock its dead worker held", flush=True)
os._exit(0)  # past a pool that hangs, interpreter exit would wait on it too
"""


def test_a_sigterm_to_an_idle_tokenizing_worker_leaves_its_pool_free_to_clean_up(tmp_path):
    """A worker that died of the signal where it waits for tasks kept its pool's queue lock, and the main
    process's clean-up after a Ctrl-C under the launcher waited for it until the launcher's SIGKILL, so the run
    ended without its stopped line."""
    log = tmp_path / "probe.log"
    with open(log, "w") as out:  # a file, not a pipe: a pool that hangs leaves workers that would hold a pipe open
        probe = launch([sys.executable, "-c", SIGTERM_TO_AN_IDLE_WORKER], out)
    try:
        probe.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(probe.pid, signal.SIGKILL)  # whatever workers a pool that hangs left
    assert log.read_text().strip().splitlines()[-1] == "terminated", log.read_text()[-2000:]


SIGTERM_RIGHT_AFTER_A_FORK = """
import os, signal, time
from scratchlm.errors import stops_as_an_interrupt

outcomes = []
with stops_as_an_interrupt():  # the handler a command runs under, which forked children inherit
    for _ in range(50):
        child = os.fork()
        if child == 0:
            time.sleep(0.2)
            os._exit(0)
        os.kill(child, signal.SIGTERM)  # as a pool's terminate() does to the worker it has just started
        outcomes.append(os.waitpid(child, 0)[1])
print(sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGTERM for s in outcomes), "of", len(outcomes))
"""


def test_a_child_sigtermed_right_after_its_fork_dies_of_it():
    """Before the child had its default handlers, the signal met the inherited one, whose KeyboardInterrupt the
    fork's clean-up swallowed: most such children lived on, and a pool that had just replaced a worker the
    launcher killed waited forever for the new one after its terminate()."""
    command = [sys.executable, "-c", SIGTERM_RIGHT_AFTER_A_FORK]
    probe = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "50 of 50", probe.stdout + probe.stderr[-2000:]


def test_the_stopped_line_is_one_write_so_ranks_sharing_stderr_do_not_merge_lines(monkeypatch):
    writes = []

    class Recorder:
        def write(self, text):
            writes.append(text)

        def flush(self):
            pass

    def stopped(argv):
        raise Preempted("SIGTERM at step 5; saved out/checkpoint-5")

    monkeypatch.setattr(sys, "stderr", Recorder())
    with pytest.raises(SystemExit) as exit_info:
        run_cli(stopped, [])
    assert exit_info.value.code == Preempted.exit_code
    assert writes == ["stopped: SIGTERM at step 5; saved out/checkpoint-5\n"]
