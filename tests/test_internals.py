"""The private names of transformers, datasets and torch that scratchlm relies on (`scratchlm.internals`) still exist
with the parameters we use, and the pieces built on them still work. A release that moves one fails here,
by name."""

import inspect
import re
from collections import namedtuple

import multiprocess
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from scratchlm.arguments import PretrainingArguments
from scratchlm.internals import (
    PRIVATE_NAMES,
    dataset_fingerprint,
    muon_orthogonalises_updates_with,
    skip_steps_when,
    torch_muon,
)
from scratchlm.objectives import OBJECTIVES
from scratchlm.training import PretrainingTrainer, RunCallbacks

from conftest import logged_lines


def _trainer(tmp_path, **overrides):
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2))
    args = PretrainingArguments(output_dir=str(tmp_path), eval_strategy="no", report_to="none", **overrides)
    return PretrainingTrainer(
        model=model,
        args=args,
        objective=OBJECTIVES["causal"],
        run_callbacks=RunCallbacks.for_run(args, tokens_per_step=16),
        chars_per_token=None,
        eval_unigram_loss=1.0,
    )


@pytest.mark.parametrize("owner,name,parameters", PRIVATE_NAMES, ids=[f"{o.__name__}.{n}" for o, n, _ in PRIVATE_NAMES])
def test_each_private_name_still_exists(tmp_path, owner, name, parameters):
    if parameters is None:  # an attribute that instances get
        instance = {
            "Trainer": lambda: _trainer(tmp_path),
            "Dataset": lambda: Dataset.from_dict({"x": [1]}),
            "SimpleQueue": multiprocess.SimpleQueue,
        }[owner.__name__]()
        assert hasattr(instance, name), f"{owner.__name__} instances no longer have {name}"
        return
    assert hasattr(owner, name), f"{owner.__name__}.{name} is gone"
    signature = inspect.signature(getattr(owner, name))
    missing = [p for p in parameters if p not in signature.parameters]
    assert not missing, f"{owner.__name__}.{name} no longer takes {missing}"


def test_every_step_reports_its_gradient_norm_before_clipping(tmp_path):
    trainer = _trainer(tmp_path, max_steps=3, per_device_train_batch_size=2, max_grad_norm=1e-6, save_strategy="no")
    seen = []
    trainer.on_gradient_norm = lambda norm, max_norm: seen.append((float(norm), max_norm))
    trainer.train_dataset = [{"input_ids": torch.arange(16) % 64, "labels": torch.arange(16) % 64}] * 8
    trainer.train()
    assert len(seen) == 3 and all(norm > 1e-6 and max_norm == 1e-6 for norm, max_norm in seen)


def test_a_resume_warns_of_no_tied_weight_and_of_every_key_really_missing(tmp_path):
    data = [{"input_ids": torch.arange(16) % 64, "labels": torch.arange(16) % 64}] * 8
    first = _trainer(tmp_path, max_steps=2, per_device_train_batch_size=2, save_steps=2)
    first.train_dataset = data
    first.train()
    checkpoint = tmp_path / "checkpoint-2"
    assert "lm_head.weight" not in load_file(checkpoint / "model.safetensors")  # stored once, as the embedding
    with logged_lines("transformers.trainer") as said:
        resumed = _trainer(tmp_path, max_steps=3, per_device_train_batch_size=2, save_steps=3)
        resumed.train_dataset = data
        resumed.train(resume_from_checkpoint=str(checkpoint))
        assert resumed.state.global_step == 3
        assert not [line for line in said if "missing keys" in line], said
        load_result = namedtuple("LoadResult", "missing_keys unexpected_keys")
        resumed._issue_warnings_after_load(load_result(["lm_head.weight", "transformer.ln_f.bias"], []))
        assert said[-1] == "There were missing keys in the checkpoint model loaded: ['transformer.ln_f.bias']."


def test_a_wrapped_optimizer_step_is_skipped_when_asked_and_wrapped_once():
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    skip = [True]
    assert skip_steps_when(skip_steps_when(optimizer, lambda: skip[0]), lambda: True) is optimizer
    weight.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(weight.detach(), torch.ones(2))
    skip[0] = False
    optimizer.step()
    assert torch.equal(weight.detach(), torch.zeros(2))


def test_muon_hands_the_updates_we_want_to_ours_and_others_to_its_own_within_the_block_only():
    from scratchlm.training.muon import newton_schulz_float32

    own = torch_muon._zeropower_via_newtonschulz
    grad = torch.randn(96, 32, generator=torch.Generator().manual_seed(0))
    coefficients = (3.4445, -4.7750, 2.0315)
    weight = torch.nn.Parameter(torch.zeros_like(grad))
    weight.grad = grad.clone()
    on_the_cpu = lambda update: update.device.type == "cpu"  # noqa: E731
    with muon_orthogonalises_updates_with(newton_schulz_float32, wanted=on_the_cpu):
        torch.optim.Muon([weight], lr=1.0, weight_decay=0.0, momentum=0.0).step()
    ratio = (96 / 32) ** 0.5  # Muon's shape factor for a tall matrix
    ours, torchs = -weight.detach() / ratio, own(grad, coefficients, 5, 1e-7).float()
    assert torch.allclose(ours, newton_schulz_float32(grad, coefficients, 5, 1e-7))
    assert not torch.equal(ours, torchs)  # torch's own runs in bfloat16
    assert (ours - torchs).abs().max() < 0.05 * ours.abs().max()  # the same iteration, at two precisions
    assert torch_muon._zeropower_via_newtonschulz is own
    with muon_orthogonalises_updates_with(newton_schulz_float32, wanted=on_the_cpu):
        on_cpu = torch_muon._zeropower_via_newtonschulz(grad, coefficients, 5, 1e-7)
        elsewhere = torch_muon._zeropower_via_newtonschulz(grad.to("meta"), coefficients, 5, 1e-7)
    assert (
        on_cpu.dtype == torch.float32 and elsewhere.dtype == torch.bfloat16
    )  # an update not wanted keeps torch's bf16


def test_a_dataset_fingerprint_follows_its_content():
    a, b = Dataset.from_dict({"text": ["x"]}), Dataset.from_dict({"text": ["y"]})
    assert dataset_fingerprint(a) == dataset_fingerprint(Dataset.from_dict({"text": ["x"]}))
    assert dataset_fingerprint(a) != dataset_fingerprint(b)


def test_no_module_outside_internals_uses_these_private_names():
    from conftest import ROOT

    names = {name for _, name, _ in PRIVATE_NAMES if name.startswith("_")} | {"_internal_call"}
    for path in (ROOT / "src" / "scratchlm").rglob("*.py"):
        if path.name == "internals.py":
            continue
        text = path.read_text(encoding="utf-8")
        used = sorted(n for n in names if re.search(rf"(?<!\w){n}\b", text))
        assert not used, f"{path.relative_to(ROOT)} uses {used}: go through scratchlm.internals"
