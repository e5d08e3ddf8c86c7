"""`scratchlm eval`: minimal pairs and bits per byte on a finished run, checked against a plain scoring loop."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from scratchlm.cli import main as scratchlm
from scratchlm.errors import ScratchError
from scratchlm.evaluation import (
    EVAL_FILE,
    UNIGRAM_COUNTS_FILE,
    causal_log_probs,
    format_table,
    load_minimal_pairs,
    masked_log_probs,
    run_eval,
)

import pretrain_bert_mlm
import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv

GPT_DEBUG = ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"
BERT_DEBUG = ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml"

PAIRS = {
    "agreement.jsonl": [
        {"sentence_good": "The cats sleep.", "sentence_bad": "The cats sleeps.", "UID": "agreement", "field": "syntax"},
        {"sentence_good": "A dog barks.", "sentence_bad": "A dog bark.", "UID": "agreement", "field": "syntax"},
        {"sentence_good": "These books are old.", "sentence_bad": "These books is old.", "UID": "agreement"},
    ],
    "zh_classifier.jsonl": [  # no grouping fields: the file names the paradigm
        {"sentence_good": "我买了一本书。", "sentence_bad": "我买了一匹书。"},
        {"sentence_good": "他喝了一杯茶。", "sentence_bad": "他喝了一头茶。"},
        {"sentence_good": "中国经济发展很快。", "sentence_bad": "中国经济很快发展了了。"},
    ],
}


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    for name, rows in PAIRS.items():
        (folder / name).write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, zh_docs):
    """A debug GPT-2 and a debug BERT, each trained on the same Chinese documents plus a little English."""
    tmp = tmp_path_factory.mktemp("eval-runs")
    corpus = tmp / "corpus.txt"
    english = ["The cats sleep on the mat.", "A dog barks at night.", "These books are old and good."] * 20
    corpus.write_text("\n".join(zh_docs + english) + "\n", encoding="utf-8")
    pretrain_gpt2_zh.cli(recipe_argv(GPT_DEBUG, corpus, tmp / "tok-gpt", tmp / "gpt"))
    pretrain_bert_mlm.cli(recipe_argv(BERT_DEBUG, corpus, tmp / "tok-bert", tmp / "bert"))
    return {"causal": tmp / "gpt", "masked": tmp / "bert"}


def straightforward_score(model, tokenizer, sentence: str, causal: bool) -> float:
    """One sentence, one token at a time, no batching: the reference the batched scorers must equal."""
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    total = 0.0
    with torch.no_grad():
        if causal:
            row = [tokenizer.eos_token_id, *ids]
            log_probs = torch.log_softmax(model(torch.tensor([row])).logits[0].float(), dim=-1)
            return sum(float(log_probs[i - 1, row[i]]) for i in range(1, len(row)))
        row = [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
        for i in range(1, len(row) - 1):
            masked = list(row)
            masked[i] = tokenizer.mask_token_id
            logits = model(torch.tensor([masked])).logits[0, i].float()
            total += float(torch.log_softmax(logits, dim=-1)[row[i]])
    return total


@pytest.mark.parametrize("kind", ["causal", "masked"])
def test_eval_equals_a_straightforward_scoring_loop(runs, pairs_dir, kind, capsys):
    out = runs[kind]
    scratchlm(["eval", str(out), "--minimal_pairs", str(pairs_dir)])
    printed = capsys.readouterr().out
    assert "minimal pairs" in printed and "unigram bar" in printed and "**overall**" in printed
    results = json.loads((out / EVAL_FILE).read_text())["minimal_pairs"]

    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForMaskedLM
    model, tokenizer = auto.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    expected = {}
    for paradigm in load_minimal_pairs(str(pairs_dir)):
        right = []
        for good, bad in paradigm.pairs:
            g, b = (straightforward_score(model, tokenizer, s, kind == "causal") for s in (good, bad))
            right.append(1.0 if g > b else 0.5 if g == b else 0.0)
        expected[paradigm.name] = sum(right) / len(right)
    got = {row["paradigm"]: row["accuracy"] for row in results["paradigms"]}
    assert got == expected
    assert set(got) == {"agreement", "zh_classifier"}  # BLiMP's UID, else the file's name
    assert results["phenomena"]["syntax"]["paradigms"] == 1
    assert results["overall"]["accuracy"] == pytest.approx(sum(expected.values()) / 2)
    assert 0 <= results["overall"]["unigram_accuracy"] <= 1  # the run's own token counts were found

    # the batched scorer's log-probabilities themselves, not just the verdicts
    sentences = [s for rows in PAIRS.values() for r in rows for s in (r["sentence_good"], r["sentence_bad"])]
    scorer = causal_log_probs if kind == "causal" else masked_log_probs
    batched = [value for value, _ in scorer(model, tokenizer, sentences, batch_size=5)]
    plain = [straightforward_score(model, tokenizer, s, kind == "causal") for s in sentences]
    assert batched == pytest.approx(plain, abs=1e-4)


def without_evaluation(card: str) -> str:
    if "## Evaluation" not in card:
        return card
    return card.split("## Evaluation")[0] + "## How to load" + card.split("## How to load")[1]


def test_a_rerun_replaces_the_cards_evaluation_section_and_nothing_else(runs, pairs_dir, tmp_path):
    out = runs["causal"]
    before = (out / "README.md").read_text()
    text = tmp_path / "text.txt"
    text.write_text("中国经济发展很快。今天天气很好。\n" * 20, encoding="utf-8")
    first = run_eval(out, minimal_pairs=str(pairs_dir))
    second = run_eval(out, text=text)
    card = (out / "README.md").read_text()
    assert card.count("## Evaluation") == 1 and "bits/byte" in card and "minimal pairs" in card
    assert without_evaluation(card) == without_evaluation(before)  # `before` has one when an earlier test ran
    assert second["minimal_pairs"] == first["minimal_pairs"]  # kept from the first run
    bits = second["text"]
    assert bits["bytes"] == len(text.read_text(encoding="utf-8").encode())
    assert bits["bits_per_byte"] == pytest.approx(bits["nats_per_token"] * bits["tokens"] / math.log(2) / bits["bytes"])


def test_text_bits_count_the_documents_characters_not_the_end_of_text_markers(runs, tmp_path):
    out = shutil.copytree(runs["causal"], tmp_path / "run")  # the shared run's card stays as it is
    documents = ["中国经济发展很快。", "今天天气很好。", "这本书很有意思。"] * 10
    eos = AutoTokenizer.from_pretrained(out).eos_token
    plain, joined = tmp_path / "plain.txt", tmp_path / "joined.txt"
    plain.write_text("".join(documents), encoding="utf-8")
    joined.write_text(eos.join(documents), encoding="utf-8")
    bits = run_eval(out, text=joined)["text"]
    assert bits["characters"] == len(plain.read_text(encoding="utf-8"))
    assert bits["bytes"] == len(plain.read_text(encoding="utf-8").encode())
    assert bits["tokens"] > run_eval(out, text=plain)["text"]["tokens"]  # the markers are scored as tokens
    assert bits["bits_per_char"] == pytest.approx(
        bits["nats_per_token"] * bits["tokens"] / math.log(2) / bits["characters"]
    )


def test_text_bits_stand_beside_the_unigram_bar_of_the_training_tokens(runs, tmp_path):
    out = shutil.copytree(runs["causal"], tmp_path / "run")
    text = tmp_path / "short.txt"
    text.write_text("中国经济发展很快。", encoding="utf-8")  # shorter than the debug context: one window
    bits = run_eval(out, text=text)["text"]
    counts = np.load(out / UNIGRAM_COUNTS_FILE).astype(np.float64)
    ids = AutoTokenizer.from_pretrained(out)(text.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    expected = -np.mean(np.log(counts[ids[1:]] + 1) - np.log(counts.sum() + len(counts)))
    assert bits["unigram_nats_per_token"] == pytest.approx(expected)
    assert bits["unigram_bits_per_byte"] == pytest.approx(expected * len(ids) / math.log(2) / bits["bytes"])
    line = format_table({"text": bits}).splitlines()[1]
    gap = abs(bits["unigram_bits_per_byte"] - bits["bits_per_byte"])
    assert line.startswith(f"unigram bar (the training tokens' frequencies): {bits['unigram_bits_per_byte']:.4f}")
    assert f"the model is {gap:.4f} bits/byte" in line
    (out / UNIGRAM_COUNTS_FILE).unlink()
    assert "unigram_bits_per_byte" not in run_eval(out, text=text)["text"]


def test_a_text_in_gbk_is_named_with_the_command_that_converts_it(runs, tmp_path):
    text = tmp_path / "gbk.txt"
    text.write_bytes("中国经济发展很快。今天天气很好。这本书很有意思。\n".encode("gb18030") * 20)
    with pytest.raises(
        ScratchError, match=r"--text .*gbk.txt is not UTF-8 text: it reads as GB18030: .*iconv -f GB18030"
    ):
        run_eval(runs["causal"], text=text)


QUIET_PROBE = """
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import pretrain_gpt2_zh
from scratchlm.evaluation import run_eval

out = Path(sys.argv[-2])
pretrain_gpt2_zh.cli(sys.argv[2:-1])
print("bits/char", run_eval(out, text=Path(sys.argv[-1]))["text"]["bits_per_char"])
"""


def test_a_gpt2_run_and_its_eval_print_no_false_transformers_warnings(tmp_path, zh_file, gpt_tokenizer_dir):
    """transformers warns that GPT-2's `loss_type=None` is unrecognised (its loss is the causal one all the
    same), that a text longer than the context "will result in indexing errors" (`--text` cuts it into
    windows), and that the filesystem's mtime "may not be reliable" (two checkpoints saved within a second):
    none is true of a run or of `scratchlm eval --text`, so none reaches the user. A fresh
    process, because transformers gives each warning once per process."""
    out = tmp_path / "run"
    text = tmp_path / "long.txt"
    text.write_text("中国经济发展很快。今天天气很好。" * 100, encoding="utf-8")  # far past the debug context
    argv = recipe_argv(GPT_DEBUG, zh_file, gpt_tokenizer_dir, out)
    probe = subprocess.run(
        [sys.executable, "-c", QUIET_PROBE, str(ROOT / "recipes"), *argv, str(text)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert "bits/char" in probe.stdout
    printed = probe.stdout + probe.stderr
    assert "loss_type" not in printed
    assert "Token indices sequence length" not in printed
    assert (out / "checkpoint-4").is_dir() and (out / "checkpoint-8").is_dir()  # saved within a second
    assert "mtime may not be reliable" not in printed


def test_the_run_logs_bits_per_byte_and_keeps_its_token_counts(runs):
    out = runs["causal"]
    results = json.loads((out / "all_results.json").read_text())
    assert results["eval_bits_per_byte"] < results["eval_bits_per_char"]  # Chinese: 3 bytes a character
    assert (out / UNIGRAM_COUNTS_FILE).is_file()


def test_minimal_pairs_during_training(tmp_path, zh_file, gpt_tokenizer_dir, pairs_dir):
    out = tmp_path / "run"
    pretrain_gpt2_zh.cli(recipe_argv(GPT_DEBUG, zh_file, gpt_tokenizer_dir, out, "--eval_minimal_pairs", pairs_dir))
    evaluations = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "eval_loss" in e]
    assert len(evaluations) == 2
    for entry in evaluations:
        assert 0 <= entry["eval_minimal_pairs_accuracy"] <= 1 and 0 <= entry["eval_minimal_pairs_unigram_accuracy"] <= 1
    assert "eval_minimal_pairs_accuracy" in (out / "README.md").read_text()
    health = {v["check"]: v for v in json.loads((out / "health.json").read_text())}
    assert "minimal-pair accuracy" in health["minimal_pairs"]["message"]
    pytest.importorskip("matplotlib")
    scratchlm(["plot", str(out)])
    assert (out / "plots" / "minimal_pairs.png").is_file()


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("not json\n", "line 1 is not JSON"),
        ('{"sentence_good": "a"}\n', "line 1 has no sentence_good and sentence_bad"),
    ],
)
def test_a_file_that_is_not_minimal_pairs_is_one_error_and_the_card_is_untouched(
    runs, tmp_path, capsys, content, message
):
    out = runs["causal"]
    card = (out / "README.md").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        scratchlm(["eval", str(out), "--minimal_pairs", str(bad)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and str(bad) in err and "Traceback" not in err
    assert (out / "README.md").read_text() == card


def test_eval_refuses_a_folder_that_is_not_a_model_and_a_hub_name_offline(tmp_path, pairs_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        scratchlm(["eval", str(tmp_path), "--minimal_pairs", str(pairs_dir)])
    assert exit_info.value.code == 2 and "is not a model folder (no config.json)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        scratchlm(["eval", str(tmp_path), "--minimal_pairs", "someone/blimp"])
    assert exit_info.value.code == 2 and "needs the Hugging Face Hub" in capsys.readouterr().err


def test_blimp_paradigms_read_with_their_phenomena(shared_data):
    paradigms = load_minimal_pairs(str(shared_data / "blimp" / "anaphor_gender_agreement.jsonl"))
    (paradigm,) = paradigms
    assert paradigm.name == "anaphor_gender_agreement" and paradigm.phenomenon == "anaphor_agreement"
    assert len(paradigm.pairs) == 1000


def doc_task_yamls() -> dict[str, str]:
    """The task YAMLs of docs/evaluation.md, as the doc prints them."""
    doc = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in doc.split("```yaml\n")[1:]]
    return {b.splitlines()[0].removeprefix("# tasks/"): b for b in blocks}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen3", "scratch_decoder"])
def test_lm_eval_runs_the_documented_tasks_and_agrees_with_scratchlm_eval(tmp_path, zh_docs, pairs_dir, family):
    import subprocess
    import sys

    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed (pip install -e '.[lmeval]')")
    corpus = tmp_path / "corpus.txt"
    english = ["The cats sleep on the mat.", "A dog barks at night.", "These books are old and good."] * 20
    corpus.write_text("\n".join(zh_docs + english) + "\n", encoding="utf-8")
    out = tmp_path / family
    pretrain_gpt2_zh.cli(
        recipe_argv(GPT_DEBUG, corpus, tmp_path / "tok", out, "--model_type", family, "--block_size", 64)
    )
    text = tmp_path / "held_out.txt"
    text.write_text("\n".join(zh_docs[:20]) + "\n", encoding="utf-8")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, body in doc_task_yamls().items():
        body = body.replace("/path/to/pairs/*.jsonl", f"{pairs_dir}/*.jsonl").replace(
            "/path/to/held_out.txt", str(text)
        )
        (tasks / name).write_text(body, encoding="utf-8")
    model_args = f"pretrained={out}" + (",trust_remote_code=True" if family == "scratch_decoder" else "")
    result = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args, "--include_path", str(tasks)]
        + ["--tasks", "local_minimal_pairs,local_text", "--device", "cpu", "--batch_size", "8"]
        + ["--output_path", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (saved,) = (tmp_path / "results").rglob("results_*.json")
    scores = json.loads(saved.read_text())["results"]
    ours = run_eval(out, minimal_pairs=str(pairs_dir), text=text)
    pairs = [row for row in ours["minimal_pairs"]["paradigms"]]
    pooled = sum(row["accuracy"] * row["pairs"] for row in pairs) / sum(row["pairs"] for row in pairs)
    assert scores["local_minimal_pairs"]["acc,none"] == pytest.approx(pooled)
    assert 0 < scores["local_text"]["bits_per_byte,none"] < 20
