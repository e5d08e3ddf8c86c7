"""A run's final folder, tokenizer included, loads where users take it: transformers 5.x and 4.x (what vLLM,
optimum and llama.cpp's converter pin), with the same logits. The 4.x side is a virtualenv this module builds
once (torch from the same wheel, transformers 4.57); it is slow, so these tests are in the slow tier. And the
code runs on the oldest Python that setup.cfg admits."""

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pretrain_bert_mlm
import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv

TRANSFORMERS_4 = "transformers==4.57.*"
FAMILIES = {
    "gpt2": (pretrain_gpt2_zh, "pretrain_gpt2_zh", "AutoModelForCausalLM"),
    "llama": (pretrain_gpt2_zh, "pretrain_gpt2_zh", "AutoModelForCausalLM"),
    "qwen3": (pretrain_gpt2_zh, "pretrain_gpt2_zh", "AutoModelForCausalLM"),
    "scratch_decoder": (pretrain_gpt2_zh, "pretrain_gpt2_zh", "AutoModelForCausalLM"),
    "bert": (pretrain_bert_mlm, "pretrain_bert_mlm", "AutoModelForMaskedLM"),
    "scratch_encoder": (pretrain_bert_mlm, "pretrain_bert_mlm", "AutoModelForMaskedLM"),
}

LOAD = """
import json, sys, torch, transformers
from transformers import AutoTokenizer, {auto}
folder = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # as the card says, for our families
model = {auto}.from_pretrained(folder, trust_remote_code=True).eval()
pair = tokenizer("中国经济", "发展很快")
with torch.no_grad():
    logits = model(**tokenizer("中国经济发展", return_tensors="pt")).logits[0, -1, :8]  # as users call it
print("RESULT", json.dumps({{"version": transformers.__version__, "tokenizer": type(tokenizer).__name__,
                  "ids": tokenizer("中国经济发展")["input_ids"], "token_type_ids": pair.get("token_type_ids"),
                  "inputs": sorted(tokenizer("中国经济发展")),
                  "logits": logits.tolist()}}))
"""


@pytest.fixture(scope="session")
def transformers_4(tmp_path_factory) -> Path:
    """The python of a virtualenv with transformers 4.x; a test run that cannot build it fails, naming why."""
    venv = tmp_path_factory.mktemp("transformers4") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}", TRANSFORMERS_4],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, f"could not build the transformers 4.x virtualenv: {install.stderr[-2000:]}"
    return python


def load_in(python: Path | str, folder: Path, auto: str, cwd: Path) -> dict:
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HOME": str(cwd / ".hf")}
    result = subprocess.run(
        [str(python), "-c", LOAD.format(auto=auto), str(folder)], capture_output=True, text=True, env=env, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, result.stdout[-2000:] + result.stderr[-2000:]  # and no prompt before it
    return json.loads(lines[0].removeprefix("RESULT "))


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_final_folder_loads_in_transformers_4_and_5_alike(tmp_path, zh_file, transformers_4, family):
    recipe, folder, auto = FAMILIES[family]
    out = tmp_path / "run"
    recipe.cli(
        recipe_argv(
            ROOT / f"recipes/{folder}/config_debug.yaml", zh_file, tmp_path / "tok", out, "--model_type", family
        )
    )
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and "local_files_only" not in config
    new = load_in(sys.executable, out, auto, tmp_path)
    old = load_in(transformers_4, out, auto, tmp_path)
    assert old["version"].startswith("4.") and new["version"].startswith("5.")
    assert old["ids"] == new["ids"] and old["tokenizer"] == "PreTrainedTokenizerFast"  # 5.x: its TokenizersBackend
    assert old["logits"] == pytest.approx(new["logits"], abs=1e-5)
    assert old["inputs"] == new["inputs"]  # 4.x added token_type_ids, and GPT-2 an embedding for them
    if recipe is pretrain_bert_mlm:  # sentence pairs get BERT's segment ids, in both
        assert new["token_type_ids"] == old["token_type_ids"] and 1 in new["token_type_ids"]
    if family == "gpt2":
        assert json.loads((out / "config.json").read_text())["n_ctx"] == 32  # llama.cpp's converter reads it


def test_the_code_needs_no_python_newer_than_setup_cfg_admits():
    """The tests run on one Python; vermin knows which release each stdlib call came in (hashlib.file_digest,
    new in 3.11, would stop every checkpoint save on 3.10)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lowest = cfg["options"]["python_requires"].removeprefix(">=").strip()
    folders = [str(ROOT / f) for f in ("src", "recipes", "tokenizer_training", "benchmarks", "tests")]
    vermin = "import sys; from vermin import main; sys.exit(main())"
    flags = [f"-t={lowest}-", "--no-tips", "--violations", "--eval-annotations"]
    result = subprocess.run([sys.executable, "-c", vermin, *flags, *folders], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


AS_ON_WINDOWS = """
import runpy, signal, sys
import filelock  # Hub downloads lock with it; it reads the platform itself (msvcrt on Windows)
sys.modules["fcntl"] = None  # what Windows lacks: flock and SIGUSR1
del signal.SIGUSR1
script, *sys.argv[1:] = sys.argv[1:]
sys.argv[0] = script
if script == "scratchlm":
    from scratchlm.cli import main
else:
    runpy.run_path(script, run_name="imported")  # everything it imports, on the real platform (torch reads it)
sys.platform = "win32"
main() if script == "scratchlm" else runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize(
    "command",
    [
        [str(ROOT / "recipes/pretrain_gpt2_zh.py")],
        [str(ROOT / "recipes/finetune_cola.py"), "--model_name_or_path", "x"],
        ["scratchlm", "stop", "outputs/x"],
    ],
)
def test_windows_gets_one_line_that_names_wsl_before_any_work(tmp_path, command):
    """The recipes lock output folders and caches with flock and stop runs with POSIX signals; on Windows that
    was a ModuleNotFoundError for fcntl. Imports must still work there, so the refusal is said, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-c", AS_ON_WINDOWS, *command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: scratchlm's runs and tools need Linux or macOS"), lines
    assert "WSL2" in lines[0]
    assert not any(tmp_path.iterdir())  # no output folder, tokenizer or lock: the recipes' defaults are relative


def lowest_admitted_versions() -> list[str]:
    """Every `name>=X` of setup.cfg's install_requires as `name==X`, except torch, which stays at the version
    running the tests: its floor on PyPI is a CUDA build of several GB (torch 2.9 was checked by hand)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = []
    for requirement in cfg["options"]["install_requires"].split():
        name, bound, rest = requirement.partition(">=")
        if bound:
            version = torch.__version__.split("+")[0] if name == "torch" else rest.split(",")[0]
            pins.append(f"{name}=={version}")
    return pins


@pytest.mark.slow
def test_the_fast_tier_passes_with_the_lowest_versions_setup_cfg_admits(tmp_path):
    """A lower bound nobody installs drifts: code that uses a newer transformers, accelerate or datasets API
    passes here and breaks for whoever has the older release (a lent GPU machine, a cluster's module)."""
    pins = lowest_admitted_versions()
    assert {p.split("==")[0] for p in pins} >= {"transformers", "accelerate", "datasets", "tokenizers"}, pins
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", *pins, "-e", f"{ROOT}[dev]"], capture_output=True, text=True, timeout=900
    )
    said = "\n".join(line for line in install.stderr.splitlines() if not line.startswith("WARNING:"))
    assert install.returncode == 0, f"could not install {pins}: {said[-2000:]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert tests.returncode == 0, f"with {' '.join(pins)}:\n{tests.stdout[-4000:]}"


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_tokenizing_workers_leave_ctrl_c_to_the_main_process_however_their_pool_starts_them(start_method):
    """datasets' workers fork on Linux up to Python 3.13; macOS spawns them, and Linux 3.14 uses a forkserver. A
    worker that kept Ctrl-C printed its own traceback beside the main process's one `stopped:` line."""
    import signal

    import multiprocess

    from scratchlm.errors import leave_interrupts_to_the_main_process

    def worker_ignores_ctrl_c(_):
        import signal

        from scratchlm.errors import leave_interrupts_to_the_main_process

        leave_interrupts_to_the_main_process()
        return signal.getsignal(signal.SIGINT) == signal.SIG_IGN

    with multiprocess.get_context(start_method).Pool(1) as pool:
        assert pool.map(worker_ignores_ctrl_c, [0]) == [True]
    handler = signal.getsignal(signal.SIGINT)
    try:
        leave_interrupts_to_the_main_process()
        assert signal.getsignal(signal.SIGINT) == handler  # the main process keeps its own
    finally:
        signal.signal(signal.SIGINT, handler)
