"""Mixed precision follows what the GPU computes, not what torch's bf16 check says: that check also says yes
on GPUs that only emulate bf16 (V100, T4), where bf16 runs slower than fp32. No GPU is needed: the device's
answers are stood in for."""

import logging
from types import SimpleNamespace

import pytest
import torch

from scratchlm import precision
from scratchlm.training.muon import on_a_device_that_emulates_bf16


@pytest.fixture
def gpu(monkeypatch):
    """A stand-in CUDA device: call it with a compute capability and a name."""

    def make(capability: tuple[int, int], name: str):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(precision, "_capability", lambda index: capability)

    return make


def test_a_gpu_older_than_ampere_is_not_given_bf16(gpu):
    gpu((7, 5), "Tesla T4")
    assert not precision.cuda_computes_bf16()
    assert precision.emulates_bf16(torch.device("cuda", 0))
    gpu((8, 0), "NVIDIA A100-SXM4-80GB")
    assert precision.cuda_computes_bf16()
    assert not precision.emulates_bf16(torch.device("cuda", 0))


def test_muon_orthogonalises_in_float32_on_the_cpu_and_on_gpus_that_emulate_bf16(gpu):
    assert on_a_device_that_emulates_bf16(torch.zeros(2, 2))
    assert on_a_device_that_emulates_bf16(SimpleNamespace(device=torch.device("mps")))
    update_on_the_gpu = SimpleNamespace(device=torch.device("cuda", 0))  # the predicate reads only its device
    gpu((7, 0), "Tesla V100-SXM2-32GB")
    assert on_a_device_that_emulates_bf16(update_on_the_gpu)
    gpu((9, 0), "NVIDIA H100 80GB HBM3")
    assert not on_a_device_that_emulates_bf16(update_on_the_gpu)


def test_a_gpu_with_fp16_tensor_cores_only_trains_in_fp16_unless_told_otherwise(gpu):
    default = precision.default_mixed_precision
    gpu((7, 5), "Tesla T4")
    assert default(None, None, use_cpu=False) == (False, True)
    assert default(None, None, use_cpu=True) == (False, False)
    assert default(None, False, use_cpu=False) == (False, False)  # --fp16 false is taken as meant
    assert default(True, None, use_cpu=False) == (True, False)
    assert precision.precision_advice(bf16=False, fp16=False) is None
    emulated = precision.precision_advice(bf16=True, fp16=False)
    assert emulated.startswith("--bf16 true: Tesla T4 (compute capability 7.5) emulates bf16, slower than fp32")
    assert "without the flag the run trains in fp16 mixed precision with loss scaling" in emulated
    gpu((6, 1), "NVIDIA GeForce GTX 1080")  # no tensor cores, and fp16 far slower than fp32: fp32 is right
    assert default(None, None, use_cpu=False) == (False, False)
    assert precision.precision_advice(bf16=True, fp16=False).endswith("slower than fp32: pass --bf16 false")
    gpu((9, 0), "NVIDIA H100 80GB HBM3")
    assert default(None, None, use_cpu=False) == (True, False)
    assert default(None, True, use_cpu=False) == (False, True)
    assert precision.precision_advice(bf16=True, fp16=False) is None


def test_a_run_on_a_t4_is_set_up_for_fp16_with_loss_scaling(gpu, monkeypatch):
    from transformers import TrainingArguments

    from scratchlm.arguments import FinetuneArguments, PretrainingArguments

    gpu((7, 5), "Tesla T4")
    monkeypatch.setattr(TrainingArguments, "_setup_devices", property(lambda self: torch.device("cpu")))
    for arguments in (PretrainingArguments, FinetuneArguments):
        run = arguments(output_dir="out")
        assert (run.bf16, run.fp16) == (False, True), arguments
        assert precision.precision_name(run.bf16, run.fp16) == "fp16 mixed"
        assert not arguments(output_dir="out", fp16=False).fp16


def test_no_precision_advice_on_a_cpu_and_the_run_says_it_trains_in_fp32(tmp_path, zh_file, gpt_tokenizer_dir, caplog):
    from scratchlm.objectives import parse_run_settings
    from scratchlm.recipe import build_run
    from scratchlm.training.run import log_run_summary

    from conftest import ROOT, recipe_argv

    argv = recipe_argv(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml", zh_file, gpt_tokenizer_dir, tmp_path / "o")
    settings = parse_run_settings(argv, objective="causal")
    assert precision.precision_advice(settings.training.bf16, settings.training.fp16) is None
    with caplog.at_level(logging.INFO, logger="scratchlm"):
        run = build_run(settings)
        log_run_summary(run.trainer, run.data)
    assert not settings.training.bf16
    assert any(r.getMessage().startswith("run: ") and r.getMessage().endswith("; fp32") for r in caplog.records)


def test_on_a_gpu_batches_reach_it_without_waiting_for_the_queued_steps(monkeypatch):
    from transformers import TrainingArguments

    from scratchlm.arguments import PretrainingArguments

    assert PretrainingArguments(output_dir="out").accelerator_config.non_blocking is False  # a CPU: nothing to pin
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(TrainingArguments, "_setup_devices", property(lambda self: torch.device("cpu")))
    gpu_run = PretrainingArguments(output_dir="out", bf16=False, fp16=False)
    assert gpu_run.dataloader_pin_memory and gpu_run.accelerator_config.non_blocking
    assert not PretrainingArguments(
        output_dir="out", bf16=False, fp16=False, dataloader_pin_memory=False
    ).accelerator_config.non_blocking
    given = PretrainingArguments(output_dir="out", bf16=False, fp16=False, accelerator_config={"even_batches": False})
    assert not given.accelerator_config.non_blocking and not given.accelerator_config.even_batches  # the user's, whole
