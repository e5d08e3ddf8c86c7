"""--fused_loss: the causal loss from the final hidden states, chunk by chunk, equals the model's own."""

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from scratchlm.errors import ScratchError
from scratchlm.models.scratch import ScratchDecoderConfig, ScratchDecoderForCausalLM
from scratchlm.training.losses import HeadInput, causal_lm_loss

import pretrain_bert_mlm
import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv

IMPLEMENTATIONS = ["torch", "chunked"] if hasattr(F, "linear_cross_entropy") else ["chunked"]


def tiny_models():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=300, n_positions=32))
    ours = ScratchDecoderForCausalLM(
        ScratchDecoderConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    )
    return {"gpt2": gpt2.eval(), "scratch_decoder": ours.eval()}


def parameter_grads(model):
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("family", ["gpt2", "scratch_decoder"])
@pytest.mark.parametrize("num_items", [None, 500])
def test_loss_and_gradients_equal_the_models_own(family, implementation, num_items, monkeypatch):
    model = tiny_models()[family]
    ids = torch.randint(0, 300, (3, 32))
    labels = ids.clone()
    labels[0, :7] = -100  # padding, left out of both losses
    kwargs = {} if num_items is None else {"num_items_in_batch": num_items}
    reference = model(input_ids=ids, labels=labels, **kwargs).loss
    reference.backward()
    expected = parameter_grads(model)

    if implementation == "chunked":
        monkeypatch.delattr(F, "linear_cross_entropy", raising=False)
    head_input = HeadInput(model)
    with head_input.captured():
        outputs = model(input_ids=ids)
    assert outputs.logits.shape[1] == 0  # the model computed no logits
    loss = causal_lm_loss(head_input.take(), head_input.head, labels, num_items, chunk_rows=10)
    loss.backward()
    got = parameter_grads(model)

    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    with head_input.captured():  # a no-grad pass (evaluation) gives the loss alone
        with torch.no_grad():
            model(input_ids=ids)
            torch.testing.assert_close(causal_lm_loss(head_input.take(), head_input.head, labels, num_items), loss)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bf16_autocast_multiplies_as_the_head_would(implementation, monkeypatch):
    model = tiny_models()["gpt2"]
    ids = torch.randint(0, 300, (2, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model(input_ids=ids, labels=ids).loss
        if implementation == "chunked":
            monkeypatch.delattr(F, "linear_cross_entropy", raising=False)
        head_input = HeadInput(model)
        with head_input.captured():
            model(input_ids=ids)
        loss = causal_lm_loss(head_input.take(), head_input.head, ids, chunk_rows=16)
    loss.backward()
    assert model.transformer.wte.weight.grad is not None  # tied: the head's gradient reaches the embedding
    torch.testing.assert_close(loss.float(), reference.float(), rtol=2e-2, atol=2e-2)


def recipe_losses(out):
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [e["loss"] for e in history if "loss" in e], [e["eval_loss"] for e in history if "eval_loss" in e]


def test_recipe_with_fused_loss_trains_the_same_curve(tmp_path, zh_file, gpt_tokenizer_dir):
    config = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
    extra = ["--logging_steps", 1, "--gradient_accumulation_steps", 2]
    pretrain_gpt2_zh.cli(recipe_argv(config, zh_file, gpt_tokenizer_dir, tmp_path / "plain", *extra))
    argv = recipe_argv(config, zh_file, gpt_tokenizer_dir, tmp_path / "fused", *extra, "--fused_loss", "true")
    pretrain_gpt2_zh.cli(argv)
    plain, fused = recipe_losses(tmp_path / "plain"), recipe_losses(tmp_path / "fused")
    assert len(plain[0]) == 8 and len(plain[1]) >= 1
    for a, b in zip(plain, fused, strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert (tmp_path / "fused" / "samples.json").exists()  # generation still has its logits


def test_fused_loss_is_refused_where_it_cannot_apply(tmp_path):
    config = str(ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml")
    with pytest.raises(ScratchError, match="--fused_loss is for causal models only"):
        pretrain_bert_mlm.cli(["--config", config, "--output_dir", str(tmp_path / "o"), "--fused_loss", "true"])
    config = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
    flags = ["--fused_loss", "true", "--use_liger_kernel", "true"]
    with pytest.raises(ScratchError, match="Liger's kernels fuse it already|needs the liger-kernel package"):
        pretrain_gpt2_zh.cli(["--config", config, "--output_dir", str(tmp_path / "p"), *flags])
    if importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(ScratchError, match="--use_liger_kernel needs the liger-kernel package"):
            argv = ["--config", config, "--output_dir", str(tmp_path / "q"), "--use_liger_kernel", "true"]
            pretrain_gpt2_zh.cli(argv)


def test_compiled_model_hands_over_its_hidden_states():
    model = tiny_models()["gpt2"]
    ids = torch.randint(0, 300, (2, 32))
    reference = model(input_ids=ids, labels=ids).loss
    head_input = HeadInput(model)  # before compiling, as Trainer does
    compiled = torch.compile(model, backend="aot_eager")
    for _ in range(2):
        with head_input.captured():
            compiled(input_ids=ids)
        torch.testing.assert_close(causal_lm_loss(head_input.take(), head_input.head, ids), reference)
    assert compiled(input_ids=ids).logits.shape == (2, 32, 300)  # outside the context: the full logits again
