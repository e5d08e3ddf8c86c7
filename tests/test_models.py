"""Our model families: GPT-2 parity, norm placements, Auto-class loading with and without scratchlm."""

import json

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)
from transformers.activations import ACT2FN

import scratchlm  # noqa: F401  registers the families
from scratchlm.models import (
    ScratchDecoderConfig,
    ScratchDecoderForCausalLM,
    ScratchEncoderConfig,
    ScratchEncoderForMaskedLM,
)
from scratchlm.models.scratch import remote_code_map
from scratchlm.models.scratch.modeling_scratch_decoder import load_gpt2_weights

from conftest import run_without_scratchlm

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32)


def decoder(**overrides):
    torch.manual_seed(0)
    return ScratchDecoderForCausalLM(ScratchDecoderConfig(**{**TINY, **overrides}))


def test_prenorm_learned_gelu_decoder_is_gpt2():
    torch.manual_seed(1)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=97,
            n_positions=32,
            n_embd=32,
            n_layer=2,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    ).eval()
    ours = decoder().eval()
    ids = torch.randint(0, 97, (3, 20))
    assert not torch.allclose(ours(ids).logits, gpt2(ids).logits, atol=1e-3)  # before: different weights
    load_gpt2_weights(ours, gpt2.state_dict())
    torch.testing.assert_close(ours(ids).logits, gpt2(ids).logits, atol=1e-5, rtol=1e-5)
    labels = ids.clone()
    torch.testing.assert_close(ours(ids, labels=labels).loss, gpt2(ids, labels=labels).loss, atol=1e-5, rtol=1e-5)
    assert ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()  # tied


def test_the_recipes_gpt2_computes_gpt2s_gelu_with_the_fused_kernel():
    from types import SimpleNamespace

    from scratchlm.models.gpt2 import make_config

    args = SimpleNamespace(n_embd=32, n_layer=2, n_head=2, dropout=0.0)
    config = make_config(args, vocab_size=97, n_positions=32, special_token_ids={})
    assert config.activation_function == "gelu_pytorch_tanh"
    torch.manual_seed(1)
    ours = GPT2LMHeadModel(config).eval()
    stock = GPT2LMHeadModel(GPT2Config.from_dict({**config.to_dict(), "activation_function": "gelu_new"})).eval()
    stock.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 97, (3, 20))
    torch.testing.assert_close(ours(ids).logits, stock(ids).logits, atol=1e-5, rtol=1e-5)


def test_layers_are_initialised_independently():
    model = decoder()
    first, second = model.model.layers[0].attn.qkv.weight, model.model.layers[1].attn.qkv.weight
    assert not torch.equal(first, second)
    assert abs(first.std().item() - 0.02) < 0.004
    # residual projections are scaled down by sqrt(2 * layers), as GPT-2 does
    assert model.model.layers[0].mlp.proj.weight.std().item() < 0.015


LEVERS = [
    {"hidden_act": "relu2"},
    {"qk_norm": True},
    {"zero_init_projections": True},
    {"tie_word_embeddings": False},
    {"logit_softcap": 15.0},
    {"position_embedding": "rotary", "qk_norm": True, "hidden_act": "relu2", "logit_softcap": 15.0},
]


@pytest.mark.parametrize("overrides", [{}, {"norm_placement": "post"}, {"position_embedding": "rotary"}, *LEVERS])
def test_each_variant_trains(overrides):
    model = decoder(**overrides)
    torch.manual_seed(2)
    ids = torch.randint(0, 97, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = model(ids, labels=ids).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first - 1.0, (overrides, first, loss.item())


def test_each_lever_does_what_it_says():
    ids = torch.randint(0, 97, (2, 12))
    zero = decoder(zero_init_projections=True)
    for layer in zero.model.layers:
        assert not layer.attn.out.weight.any() and not layer.mlp.proj.weight.any()
    # every block starts as the identity: the logits are those of the embeddings alone
    x = zero.model.embed_tokens(ids) + zero.model.embed_positions(torch.arange(12))
    assert torch.allclose(zero(ids).logits, zero.lm_head(zero.model.final_norm(x)), atol=1e-5)
    capped = decoder(logit_softcap=0.5)
    assert capped(ids).logits.abs().max() < 0.5
    assert torch.allclose(capped(ids).logits, 0.5 * torch.tanh(decoder()(ids).logits / 0.5), atol=1e-6)
    untied = decoder(tie_word_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    tied = decoder()
    assert tied.lm_head.weight.data_ptr() == tied.model.embed_tokens.weight.data_ptr()
    normed = decoder(qk_norm=True)
    assert normed.model.layers[0].attn.q_norm.weight.shape == (16,)
    assert isinstance(decoder(hidden_act="relu2").model.layers[0].mlp.act, type(ACT2FN["relu2"]))


@pytest.mark.slow
def test_every_lever_loads_remotely_without_scratchlm_with_the_same_logits(tmp_path):
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    expected = {}
    for i, overrides in enumerate(LEVERS):
        config = ScratchDecoderConfig(**{**TINY, **overrides})
        config.auto_map = remote_code_map(ScratchDecoderConfig)
        torch.manual_seed(i)
        model = ScratchDecoderForCausalLM(config)
        with torch.no_grad():  # moves the zero-initialised projections too, so a load that skips them shows
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        model.save_pretrained(tmp_path / str(i))
        expected[i] = model(ids).logits[0, -1, :5].tolist()
    result = run_without_scratchlm(
        f"""
import json, torch
from transformers import AutoModelForCausalLM
out = {{}}
for i in range({len(LEVERS)}):
    model = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r} + f"/{{i}}", trust_remote_code=True)
    out[i] = model(torch.tensor([[1, 2, 3, 4, 5, 6]])).logits[0, -1, :5].tolist()
print(json.dumps(out))
""",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for i in expected:
        assert loaded[str(i)] == pytest.approx(expected[i], abs=1e-5), LEVERS[i]


def test_pre_and_post_norm_differ():
    ids = torch.randint(0, 97, (2, 12))
    pre, post = decoder(), decoder(norm_placement="post")
    post.load_state_dict(pre.state_dict(), strict=False)  # same weights; post has no final norm
    assert not torch.allclose(pre(ids).logits, post(ids).logits, atol=1e-3)
    assert isinstance(post.model.final_norm, torch.nn.Identity)


def test_decoder_is_causal_and_encoder_is_not():
    ids = torch.randint(0, 97, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 97
    model = decoder().eval()
    torch.testing.assert_close(model(ids).logits[:, :-1], model(changed).logits[:, :-1])
    torch.manual_seed(0)
    encoder = ScratchEncoderForMaskedLM(ScratchEncoderConfig(**TINY)).eval()
    assert not torch.allclose(encoder(ids).logits[:, 0], encoder(changed).logits[:, 0])


def test_padding_mask_hides_padded_keys():
    torch.manual_seed(0)
    encoder = ScratchEncoderForMaskedLM(ScratchEncoderConfig(**TINY)).eval()
    ids = torch.randint(1, 97, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    torch.testing.assert_close(
        encoder(padded, attention_mask=mask).logits[:, :6], encoder(ids).logits, atol=1e-5, rtol=1e-5
    )


def test_generate_with_and_without_cache_matches_gpt2():
    torch.manual_seed(1)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    ).eval()
    ours = decoder(bos_token_id=0, eos_token_id=0).eval()
    load_gpt2_weights(ours, gpt2.state_dict())
    prompt = torch.randint(1, 97, (1, 5))
    kwargs = dict(max_new_tokens=20, do_sample=False, pad_token_id=0)
    expected = gpt2.generate(prompt, **kwargs).tolist()
    assert ours.generate(prompt, use_cache=False, **kwargs).tolist() == expected
    assert ours.generate(prompt, use_cache=True, **kwargs).tolist() == expected


@pytest.mark.parametrize(
    "overrides", [{}, {"norm_placement": "post"}, {"position_embedding": "rotary", "max_position_embeddings": 16}]
)
def test_the_kv_cache_reads_each_token_once_and_changes_nothing(overrides):
    torch.manual_seed(2)
    model = decoder(bos_token_id=0, eos_token_id=0, **overrides).eval()
    seen = []
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    prompts = torch.randint(1, 97, (2, 6))
    mask = torch.ones_like(prompts)
    mask[1, :2] = 0  # left padding in a batch
    kwargs = dict(attention_mask=mask, max_new_tokens=24, do_sample=False, pad_token_id=0, eos_token_id=None)
    cached = model.generate(prompts, use_cache=True, **kwargs)
    assert seen == [6] + [1] * 23  # the prompt once, then one new token per step
    seen.clear()
    uncached = model.generate(prompts, use_cache=False, **kwargs)
    assert seen == list(range(6, 30))
    assert torch.equal(cached, uncached)


def test_auto_classes_load_our_checkpoints(tmp_path):
    model = decoder()
    model.save_pretrained(tmp_path / "dec")
    assert type(AutoConfig.from_pretrained(tmp_path / "dec")) is ScratchDecoderConfig
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "dec")
    assert type(loaded) is ScratchDecoderForCausalLM
    torch.testing.assert_close(
        loaded.state_dict()["model.layers.1.mlp.fc.weight"], model.state_dict()["model.layers.1.mlp.fc.weight"]
    )
    assert type(AutoModel.from_pretrained(tmp_path / "dec")).__name__ == "ScratchDecoderModel"
    config = ScratchEncoderConfig(**TINY)
    config.auto_map = remote_code_map(ScratchEncoderConfig)
    ScratchEncoderForMaskedLM(config).save_pretrained(tmp_path / "enc")
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "enc")).__name__ == "ScratchEncoderForMaskedLM"
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "enc", num_labels=2)
    assert classifier(torch.tensor([[1, 2, 3]])).logits.shape == (1, 2)


@pytest.mark.slow
def test_checkpoints_load_remotely_without_scratchlm(tmp_path):
    config = ScratchDecoderConfig(**TINY)
    config.auto_map = remote_code_map(ScratchDecoderConfig)
    ScratchDecoderForCausalLM(config).save_pretrained(tmp_path / "dec")
    config = ScratchEncoderConfig(**TINY)
    config.auto_map = remote_code_map(ScratchEncoderConfig)
    ScratchEncoderForMaskedLM(config).save_pretrained(tmp_path / "enc")
    saved = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert saved["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_scratch_encoder.")
    assert (tmp_path / "enc" / "modeling_scratch_decoder.py").exists()  # the shared blocks travel too
    result = run_without_scratchlm(
        f"""
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification
dec = AutoModelForCausalLM.from_pretrained({str(tmp_path / "dec")!r}, trust_remote_code=True)
enc = AutoModelForMaskedLM.from_pretrained({str(tmp_path / "enc")!r}, trust_remote_code=True)
cls = AutoModelForSequenceClassification.from_pretrained(
    {str(tmp_path / "enc")!r}, trust_remote_code=True, num_labels=2
)
ids = torch.tensor([[1, 2, 3, 4]])
assert dec(ids).logits.shape == (1, 4, 97) and enc(ids).logits.shape == (1, 4, 97)
assert cls(ids).logits.shape == (1, 2)
print("OK", type(dec).__module__.split(".")[0], type(dec).__name__, type(cls).__name__)
""",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        result.stdout.strip()
        == "OK transformers_modules ScratchDecoderForCausalLM ScratchEncoderForSequenceClassification"
    )


def test_encoder_without_biases_has_none_and_trains():
    torch.manual_seed(0)
    model = ScratchEncoderForMaskedLM(ScratchEncoderConfig(**TINY, bias=False, dropout=0.0))
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]
    ids = torch.randint(0, 97, (4, 12))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model(ids, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] - 1.0


@pytest.mark.parametrize("family", ["scratch_encoder_mlm", "scratch_encoder_classifier", "scratch_decoder"])
def test_accumulation_takes_the_same_step_as_one_big_batch(tmp_path, family):
    """Trainer leaves the normalisation to models that take num_items_in_batch: 2 x 2 must equal 4 x 1."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    from scratchlm.models import ScratchEncoderForSequenceClassification

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 64, (4, 16), generator=generator)
    if family == "scratch_encoder_classifier":
        labels = torch.tensor([0, 1, 1, 0])

        def make():
            return ScratchEncoderForSequenceClassification(ScratchEncoderConfig(**TINY, dropout=0.0, num_labels=2))
    elif family == "scratch_encoder_mlm":
        labels = torch.full_like(ids, -100)
        labels[0, :2], labels[1, :6], labels[2, 3], labels[3, 5:9] = 7, 8, 9, 10  # uneven counts per example

        def make():
            return ScratchEncoderForMaskedLM(ScratchEncoderConfig(**TINY, dropout=0.0))
    else:
        labels = ids.clone()
        labels[1, 4:] = -100

        def make():
            return decoder(dropout=0.0)

    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})
    weights = []
    for batch, accumulation in ((4, 1), (2, 2)):
        torch.manual_seed(0)
        model = make()
        args = TrainingArguments(
            output_dir=str(tmp_path / f"{batch}"),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=1e-2,
            optim="sgd",
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            logging_steps=1,
        )
        Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator).train()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
