import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_MODE", "offline")
# Session-wide too: fixtures wider than a test run before the per-test cache below is set.
os.environ["SCRATCHLM_CACHE"] = tempfile.mkdtemp(prefix="scratchlm-test-cache-")
atexit.register(shutil.rmtree, os.environ["SCRATCHLM_CACHE"], ignore_errors=True)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT / "tokenizer_training"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: over ~10 s on 2 CPU cores; the fast tier is -m 'not slow'")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (CoLA, WikiText-2, tiny Shakespeare, The Verdict, BLiMP); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA} (the shared test data)")
    return SHARED_DATA


def two_processes(script: Path | str) -> list[str]:
    """The command that runs `script` under `accelerate launch` as two CPU processes (gloo), on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes/accelerate_configs/cpu_2proc.yaml"),
        "--main_process_port",
        str(port),
        str(script),
    ]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own packed-data cache, so hits and misses are the test's own."""
    monkeypatch.setenv("SCRATCHLM_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _signal_handlers_left_as_found():
    """A run's stop-on-signal handler left behind outlives the run: a worker forked later inherits it, ignores
    the SIGTERM that ends it, and the pool's join hangs the whole test session."""
    from scratchlm.errors import STOP_SIGNALS

    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    after = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in before.items():
        signal.signal(signum, handler)
    left = [signal.Signals(signum).name for signum in STOP_SIGNALS if after[signum] != before[signum]]
    assert not left, f"the test left its own handler for {', '.join(left)}"


@pytest.fixture(scope="session")
def zh_docs():
    """A few hundred real Chinese documents from the built-in corpus."""
    from scratchlm.data.builtin import BUILTIN_CORPORA

    docs = []
    for doc in BUILTIN_CORPORA["zh_demo"].documents():
        docs.append(doc)
        if len(docs) >= 400:
            break
    return docs


@pytest.fixture
def zh_file(tmp_path, zh_docs):
    path = tmp_path / "zh.txt"
    path.write_text("\n".join(zh_docs) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def gpt_tokenizer_dir(tmp_path_factory, zh_docs):
    from scratchlm.arguments import TokenizerArguments
    from scratchlm.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "gpt"
    train_tokenizer(zh_docs[:300], TokenizerArguments(vocab_size=600), out, heldout_texts=zh_docs[300:])
    return out


@contextlib.contextmanager
def logged_lines(logger_name: str):
    """The messages a logger and its children emit within the block, as a list; transformers' loggers do not
    reach the root logger that caplog listens to."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger(logger_name).addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger(logger_name).removeHandler(handler)


def recipe_argv(config, train_files, tokenizer, output_dir, *extra) -> list[str]:
    """A recipe's command line on a test corpus and tokenizer, plus `extra` flags."""
    return [
        "--config",
        str(config),
        "--train_files",
        str(train_files),
        "--tokenizer_name_or_path",
        str(tokenizer),
        "--output_dir",
        str(output_dir),
        *map(str, extra),
    ]


_BLOCK_SCRATCHLM = """
import importlib.abc, sys

class NoScratchlm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "scratchlm":
            raise ImportError("scratchlm is blocked in this process")

sys.meta_path.insert(0, NoScratchlm())
"""


def run_without_scratchlm(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `script` in a fresh offline interpreter in which `import scratchlm` fails."""
    code = (
        _BLOCK_SCRATCHLM
        + textwrap.dedent(script)
        + '\nassert not any(m.split(".")[0] == "scratchlm" for m in sys.modules)\n'
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(cwd),
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(cwd / ".hf")},
    )
