"""The GPT-2 recipe end to end on its debug config, then loaded by stock transformers elsewhere."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scratchlm.errors import run_cli
from scratchlm.objectives import parse_run_settings
from scratchlm.recipe import build_run

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv, run_without_scratchlm

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")


def run_recipe(*flags):
    return pretrain_gpt2_zh.cli(["--config", DEBUG, *map(str, flags)])


@pytest.fixture
def debug_run(tmp_path, zh_file):
    out, tok = tmp_path / "run", tmp_path / "tok"
    metrics = run_recipe("--train_files", zh_file, "--output_dir", out, "--tokenizer_name_or_path", tok)
    return out, tok, metrics


def test_debug_run_trains_tokenizer_and_writes_everything(debug_run):
    out, tok, metrics = debug_run
    assert (tok / "tokenizer.json").exists() and (tok / "tokenizer_report.json").exists()
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "all_results.json",
        "run_config.yaml",
        "samples.json",
        "trainer_state.json",
    ):
        assert (out / name).exists(), name
    results = json.loads((out / "all_results.json").read_text())
    for key in ("eval_loss", "eval_perplexity", "eval_bits_per_char", "eval_unigram_loss"):
        assert key in results and results[key] > 0, key
    assert abs(results["eval_perplexity"] - 2.718281828 ** results["eval_loss"]) < 1e-3 * results["eval_perplexity"]
    assert results == {**results, **{k: metrics[k] for k in ("eval_loss", "eval_unigram_loss")}}
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples["samples"]) == 2 and samples["samples"][0].startswith("中国")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_layer"] == 2 and config["vocab_size"] % 64 == 0
    # the resolved config reproduces the run's settings when read back with --config
    settings = parse_run_settings(["--config", str(out / "run_config.yaml")])
    model_args, train_args = settings.model, settings.training
    assert settings.objective.name == "causal"
    assert model_args.n_embd == 32 and train_args.max_steps == 8 and train_args.output_dir == str(out)


def test_the_held_out_loss_is_the_mean_over_the_predicted_tokens(debug_run, zh_file, tmp_path):
    """A block of 32 tokens predicts 31 of them. Trainer divides the summed loss by a count it takes over
    `labels[..., 1:]` only for a model whose `loss_type` it recognises; GPT2LMHeadModel's class name gives
    none, and the count over every label made each GPT-2 loss 31/32 of the true mean."""
    out, tok, metrics = debug_run
    argv = ["--config", DEBUG, "--train_files", str(zh_file), "--tokenizer_name_or_path", str(tok)]
    blocks = build_run(parse_run_settings([*argv, "--output_dir", str(tmp_path / "unused")], "causal", DEBUG))
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    nats, predicted = 0.0, 0
    with torch.no_grad():
        for block in blocks.trainer.eval_dataset:  # the blocks the run evaluated on
            ids = torch.as_tensor(block["input_ids"]).unsqueeze(0)
            nats += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
            predicted += ids.shape[1] - 1
    assert metrics["eval_loss"] == pytest.approx(nats / predicted, rel=1e-4)


@pytest.mark.slow
def test_stock_transformers_loads_the_result_without_scratchlm(debug_run):
    out, _, _ = debug_run
    result = run_without_scratchlm(
        f"""
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
tok = AutoTokenizer.from_pretrained({str(out)!r})
model = AutoModelForCausalLM.from_pretrained({str(out)!r})
ids = tok("中国经济", return_tensors="pt")
loss = model(**ids, labels=ids["input_ids"]).loss.item()
gen = pipeline("text-generation", model=model, tokenizer=tok)
text = gen("中国", max_new_tokens=5, do_sample=False)[0]["generated_text"]
assert text.startswith("中国"), text
print("OK", type(model).__name__, tok.eos_token, round(loss, 2))
""",
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("OK GPT2LMHeadModel <|endoftext|>")


def test_second_run_hits_the_data_cache_and_reuses_the_tokenizer(debug_run, zh_file, caplog):
    out, tok, _ = debug_run
    tokenizer_before = (tok / "tokenizer.json").read_bytes()
    with caplog.at_level("INFO"):
        run_recipe("--train_files", zh_file, "--output_dir", out.parent / "run2", "--tokenizer_name_or_path", tok)
    assert "cache hit" in caplog.text and "does not exist yet" not in caplog.text
    # Joined packing leaves out only the last tokens of each batch of documents packed together.
    assert "are in no block: the last tokens of every 1,000 documents packed together" in caplog.text
    assert (tok / "tokenizer.json").read_bytes() == tokenizer_before


def test_existing_output_dir_is_never_overwritten(debug_run, zh_file, capsys):
    out, tok, _ = debug_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            pretrain_gpt2_zh.cli,
            [
                "--config",
                DEBUG,
                "--train_files",
                str(zh_file),
                "--output_dir",
                str(out),
                "--tokenizer_name_or_path",
                str(tok),
            ],
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --output_dir") and "--resume_from_checkpoint true" in err and "\n" not in err
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_model_learns_a_predictable_corpus(tmp_path):
    """Enough steps on very regular text must go far below the unigram baseline."""
    corpus = tmp_path / "counting.txt"
    lines = ["一二三四五六七八九十" * 3, "甲乙丙丁戊己庚辛壬癸" * 3, "春夏秋冬东南西北上下" * 3]
    corpus.write_text("\n".join(lines * 60), encoding="utf-8")
    metrics = run_recipe(
        "--train_files",
        corpus,
        "--output_dir",
        tmp_path / "run",
        "--tokenizer_name_or_path",
        tmp_path / "tok",
        "--max_steps",
        60,
        "--learning_rate",
        3e-3,
        "--eval_steps",
        60,
        "--save_steps",
        60,
        "--vocab_size",
        300,
    )
    assert metrics["eval_loss"] < metrics["eval_unigram_loss"] - 1.0, metrics


def test_our_decoder_with_rotary_positions_trains_and_loads(tmp_path, zh_file, gpt_tokenizer_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    metrics = run_recipe(
        "--train_files",
        zh_file,
        "--output_dir",
        out,
        "--tokenizer_name_or_path",
        gpt_tokenizer_dir,
        "--model_type",
        "scratch_decoder",
        "--position_embedding",
        "rotary",
    )
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "ScratchDecoderForCausalLM" and model.config.position_embedding == "rotary"
    assert tokenizer.model_max_length == 32 and metrics["eval_loss"] < metrics["initial_loss"]


def test_samples_longer_than_the_positions_slide_the_context(tmp_path, zh_file, gpt_tokenizer_dir):
    """A learned-position model of 32 positions samples 100 tokens at evaluation, and through `scratchlm generate`."""
    from scratchlm.cli import main as scratchlm
    from scratchlm.generation import generate_samples

    out = tmp_path / "out"
    pretrain_gpt2_zh.cli(recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--sample_max_new_tokens", 100))
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples["samples"]) == 2
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.n_positions == 32
    long = generate_samples(model, tokenizer, ["中国"], max_new_tokens=100, seed=0, eos_token_id=None)
    assert len(long.tokens[0]) == 100  # past the 32 positions, without an IndexError
    scratchlm(["generate", str(out), "--prompt", "中国", "--max_new_tokens", "80"])


def test_an_existing_tokenizer_trained_to_other_settings_is_named(tmp_path, zh_file, caplog):
    tok = tmp_path / "tok"

    def warnings(*flags):
        caplog.clear()
        with caplog.at_level("WARNING", logger="scratchlm"):
            build_run(
                parse_run_settings(recipe_argv(DEBUG, zh_file, tok, tmp_path / "out", *flags), objective="causal")
            )
        return [r.getMessage() for r in caplog.records if "is used as it was trained" in r.getMessage()]

    assert warnings() == []  # trains it to the debug settings
    assert warnings() == []  # the same settings find it as they would train it
    (warning,) = warnings("--vocab_size", 500, "--normalization", "nfkc")
    assert "(normalization none, not nfkc; vocab_size 400, not 500)" in warning
    assert "give a --tokenizer_name_or_path that does not exist yet" in warning


@pytest.fixture
def english_file(tmp_path):
    """A corpus in English, unlike the debug config's, whose prompts include Chinese."""
    import random

    rng = random.Random(0)
    who = ["The miller", "A sailor", "Old Tom", "The queen", "My sister", "Every child"]
    did = ["walked to", "sang about", "looked at", "forgot", "painted", "asked for"]
    what = ["the river", "a red boat", "the old mill", "their supper", "the long road", "a quiet song"]
    lines = [f"{rng.choice(who)} {rng.choice(did)} {rng.choice(what)} in the morning." for _ in range(600)]
    path = tmp_path / "en.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def test_config_prompts_foreign_to_the_flags_corpus_give_way_to_its_document_starts(
    tmp_path, english_file, zh_file, gpt_tokenizer_dir, caplog
):
    """The debug config's prompts "中国" and "the" were written for Chinese: on an English corpus named by a
    flag, "中国" becomes the first words of a held-out document and "the" stays; prompts given as flags, or on
    a corpus that has their characters, stay as they are; with none at all, held-out documents give them."""
    path, lines = english_file

    def prompts(train_file, tokenizer, *flags, config=DEBUG):
        argv = recipe_argv(config, train_file, tokenizer, tmp_path / "out", *flags)
        return build_run(parse_run_settings(argv, objective="causal")).settings.training.sample_prompts

    with caplog.at_level("INFO", logger="scratchlm"):
        start, kept = prompts(path, tmp_path / "tok")
    assert kept == "the" and any(line.startswith(start + " ") for line in lines), start
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("samples start from")]
    assert f"samples start from '{start}', 'the' (the config file's '中国' were written for its default corpus" in line
    assert prompts(path, tmp_path / "tok", "--sample_prompts", "中国", "the") == ["中国", "the"]
    assert prompts(zh_file, gpt_tokenizer_dir)[0] == "中国"
    assert prompts(path, tmp_path / "tok", "--sample_max_new_tokens", 0) == []
    no_prompts = tmp_path / "no_prompts.yaml"
    no_prompts.write_text("".join(line for line in open(DEBUG) if not line.startswith("sample_prompts")))
    chosen = prompts(path, tmp_path / "tok", config=no_prompts)
    assert len(chosen) == 4 and all(any(line.startswith(p + " ") for line in lines) for p in chosen), chosen
