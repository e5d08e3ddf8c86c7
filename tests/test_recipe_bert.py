"""The BERT MLM recipe on its debug config, for both model families, then CoLA on top of it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, EvalPrediction

from scratchlm.config import parse_config
from scratchlm.errors import ScratchError, run_cli
from scratchlm.finetune import (
    classification_metrics,
    load_classification_file,
    matthews_correlation,
    one_class_warning,
)
from scratchlm.objectives import OBJECTIVES

import finetune_cola
import pretrain_bert_mlm
from conftest import ROOT, logged_lines

DEBUG = str(ROOT / "recipes/pretrain_bert_mlm/config_debug.yaml")
COLA_DEBUG = str(ROOT / "recipes/finetune_cola/config_debug.yaml")


def run_mlm(*flags):
    return pretrain_bert_mlm.cli(["--config", DEBUG, *map(str, flags)])


@pytest.fixture(scope="module")
def mlm_checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlm")
    corpus = tmp / "en.txt"
    from scratchlm.data.builtin import BUILTIN_CORPORA

    docs = [d for _, d in zip(range(300), BUILTIN_CORPORA["python_docs"].documents())]
    corpus.write_text("\n".join(" ".join(d.split()) for d in docs), encoding="utf-8")
    metrics = run_mlm(
        "--train_files",
        corpus,
        "--output_dir",
        tmp / "run",
        "--tokenizer_name_or_path",
        tmp / "tok",
        "--vocab_size",
        500,
    )
    return tmp / "run", metrics


@pytest.mark.parametrize("family", ["scratch_encoder", "bert"])
def test_mlm_recipe_writes_metrics_and_loads_with_auto_classes(mlm_checkpoint, tmp_path, family):
    if family == "scratch_encoder":
        out, metrics = mlm_checkpoint
    else:
        corpus = tmp_path / "c.txt"
        corpus.write_text("\n".join(f"line {i} of a small english corpus about sorting lists" for i in range(300)))
        out = tmp_path / "run"
        metrics = run_mlm(
            "--train_files",
            corpus,
            "--output_dir",
            out,
            "--tokenizer_name_or_path",
            tmp_path / "tok",
            "--model_type",
            "bert",
            *("--optim", "muon", "--lr_scheduler_type", "warmup_stable_decay"),  # the causal demo's levers
        )
        assert "optim: muon" in (out / "run_config.yaml").read_text()
    results = json.loads((out / "all_results.json").read_text())
    for key in ("eval_loss", "eval_accuracy", "eval_unigram_loss"):
        assert key in results and math.isfinite(results[key]), key
    assert 0 <= results["eval_accuracy"] <= 1 and results["eval_loss"] == metrics["eval_loss"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForMaskedLM.from_pretrained(out)
    ids = tok("sorting lists", return_tensors="pt")
    assert ids["input_ids"][0, 0] == tok.cls_token_id and ids["input_ids"][0, -1] == tok.sep_token_id
    assert model(**{k: v for k, v in ids.items() if k != "token_type_ids"}).logits.shape[-1] == config["vocab_size"]


def test_mlm_blocks_are_cls_sep_wrapped_and_masking_spares_specials(mlm_checkpoint):
    out, _ = mlm_checkpoint
    from transformers import DataCollatorForLanguageModeling

    from scratchlm.data.packing import pack

    tok = AutoTokenizer.from_pretrained(out)
    spec = OBJECTIVES["masked"].packing(tok, 16)
    blocks = pack([[5] * 20, [6] * 5], 16, spec.separator_id, spec.block_prefix, spec.block_suffix)
    assert all(b[0] == tok.cls_token_id and b[-1] == tok.sep_token_id and len(b) == 16 for b in blocks)
    torch.manual_seed(0)
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
    batch = collator([{"input_ids": torch.tensor(b)} for b in blocks * 1000])
    masked = batch["labels"] != -100
    share = masked[:, 1:-1].float().mean().item()
    assert 0.12 < share < 0.18
    assert not masked[:, 0].any() and not masked[:, -1].any()  # [CLS]/[SEP] never masked
    became_mask = (batch["input_ids"] == tok.mask_token_id) & masked
    assert 0.76 < became_mask.sum().item() / masked.sum().item() < 0.84  # the 80 of 80/10/10


def test_mlm_recipe_refuses_gpt_style_tokenizer(tmp_path):
    with pytest.raises(ScratchError, match="special_tokens_style: bert"):
        run_mlm("--special_tokens_style", "gpt", "--output_dir", tmp_path / "o", "--corpus", "python_docs")


def run_cola(*flags):
    return finetune_cola.main(
        *parse_config(
            (finetune_cola.ColaArguments, finetune_cola.FinetuneArguments), ["--config", COLA_DEBUG, *map(str, flags)]
        )
    )


def test_cola_end_to_end_on_shared_tsv(shared_data, mlm_checkpoint, tmp_path):
    out_mlm, _ = mlm_checkpoint
    out = tmp_path / "cola"
    with logged_lines("transformers") as said:
        summary = run_cola(
            "--model_name_or_path",
            out_mlm,
            "--train_file",
            shared_data / "cola/train.tsv",
            "--validation_file",
            shared_data / "cola/dev.tsv",
            "--output_dir",
            out,
        )
    # The new classifier head is reported once, not once per seed.
    assert sum("LOAD REPORT" in line for line in said) == 1, said
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved["seeds"] == [42, 43] and len(saved["per_seed"]) == 2
    assert -1 <= saved["median_matthews_correlation"] <= 1 and 0 < saved["median_accuracy"] <= 1
    assert summary["median_matthews_correlation"] == saved["median_matthews_correlation"]
    card = (out / "README.md").read_text()
    assert "## CoLA fine-tuning" in card and "**median**" in card
    assert (out / "model.safetensors").exists() and not list(out.glob("seed-*"))


def test_mcc_matches_hand_computed_confusion_matrix():
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 0])
    preds = np.array([1, 1, 1, 0, 1, 0, 1, 0, 1, 1])
    tp, tn, fp, fn = 5, 2, 2, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert math.isclose(matthews_correlation(labels, preds), expected, rel_tol=1e-12)


def test_a_classifier_that_gives_every_sentence_one_label_is_named():
    labels = np.array([1, 1, 0, 1, 0])
    one_label = EvalPrediction(predictions=np.tile([[0.2, 0.9]], (5, 1)), label_ids=labels)
    metrics = {f"eval_{k}": v for k, v in classification_metrics()(one_label).items()}
    assert metrics["eval_matthews_correlation"] == 0 and metrics["eval_predicted_acceptable_share"] == 1
    assert one_class_warning(7, metrics).startswith("seed 7 labels every dev sentence acceptable: a constant label")
    mixed = EvalPrediction(predictions=np.array([[0, 1], [0, 1], [1, 0], [0, 1], [0, 1]]), label_ids=labels)
    assert one_class_warning(7, {f"eval_{k}": v for k, v in classification_metrics()(mixed).items()}) is None


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ("a fine sentence\t1\nanother one\t2\n", ".tsv", "row 2 has label '2'"),
        ("", ".tsv", "is empty"),
        ('{"text": "a", "label": 1}\n', ".jsonl", "no sentence column"),
        ("sentence,label\n", ".csv", "has a header but no rows"),
    ],
)
def test_bad_cola_files(tmp_path, content, suffix, message):
    path = tmp_path / f"cola{suffix}"
    path.write_text(content)
    with pytest.raises(ScratchError, match=message):
        load_classification_file(path, "--train_file")


def test_a_cola_file_in_gbk_is_named_with_the_command_that_converts_it(tmp_path):
    path = tmp_path / "cola.tsv"
    path.write_bytes("这句话很好\t1\n这句话不好\t0\n".encode("gb18030") * 30)
    with pytest.raises(ScratchError, match=r"cola.tsv is not UTF-8 text: it reads as GB18030: .*cola.utf8.tsv"):
        load_classification_file(path, "--train_file")


def test_cola_formats(tmp_path):
    (tmp_path / "glue.tsv").write_text(
        "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
        "gj04\t0\t*\tThe more we study verbs, the crazier they get get.\n"
    )
    (tmp_path / "c.jsonl").write_text(
        '{"sentence": "It rained.", "label": 1}\n{"sentence": "Rained it.", "label": 0}\n'
    )
    for name in ("glue.tsv", "c.jsonl"):
        ds = load_classification_file(tmp_path / name, "--train_file")
        assert ds["label"][:] == [1, 0] and ds["sentence"][0].endswith(".")


def test_cola_from_hub_fails_fast_offline(tmp_path, capsys, mlm_checkpoint):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            finetune_cola.cli,
            [
                "--config",
                COLA_DEBUG,
                "--model_name_or_path",
                str(mlm_checkpoint[0]),
                "--output_dir",
                str(tmp_path / "o"),
            ],
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "cannot be reached" in err and "--train_file and --validation_file" in err


def test_cola_refuses_a_tokenizer_larger_than_the_model(
    shared_data, tmp_path, capsys, mlm_checkpoint, gpt_tokenizer_dir
):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(mlm_checkpoint[0], mixed)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(gpt_tokenizer_dir / name, mixed / name)
    cola = shared_data / "cola"
    with pytest.raises(SystemExit):
        run_cli(
            finetune_cola.cli,
            [
                "--config",
                COLA_DEBUG,
                "--model_name_or_path",
                str(mixed),
                "--output_dir",
                str(tmp_path / "o"),
                "--train_file",
                str(cola / "train.tsv"),
                "--validation_file",
                str(cola / "dev.tsv"),
            ],
        )
    err = capsys.readouterr().err.strip()
    assert f"the tokenizer in {mixed} has" in err and "model's vocabulary has" in err and "\n" not in err


def test_mlm_evaluation_is_repeatable(mlm_checkpoint):
    out, metrics = mlm_checkpoint
    results = json.loads((out / "all_results.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    at_last_step = [
        e["eval_loss"] for e in state["log_history"] if "eval_loss" in e and e["step"] == state["global_step"]
    ]
    # the in-training evaluation at the last step and the final one see the same masks
    assert len(at_last_step) >= 1 and all(abs(v - results["eval_loss"]) < 1e-6 for v in at_last_step)


def test_cola_with_a_hub_model_fails_fast_offline(tmp_path, capsys):
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / name).write_text("a fine sentence\t1\nsentence fine a\t0\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            finetune_cola.cli,
            [
                "--config",
                COLA_DEBUG,
                "--model_name_or_path",
                "google-bert/bert-base-uncased",
                "--train_file",
                str(tmp_path / "train.tsv"),
                "--validation_file",
                str(tmp_path / "dev.tsv"),
                "--output_dir",
                str(tmp_path / "o"),
            ],
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "model google-bert/bert-base-uncased (not a local directory) needs the Hugging Face Hub" in err
    assert not (tmp_path / "o").exists()


def test_fill_mask_on_a_text_longer_than_the_context_as_the_card_says(mlm_checkpoint):
    from transformers import pipeline

    out, _ = mlm_checkpoint
    card = (out / "README.md").read_text()
    assert 'pipeline("fill-mask", model=FOLDER' in card and 'tokenizer_kwargs={"truncation": True})' in card
    fill = pipeline("fill-mask", model=str(out))
    text = "The function returns [MASK] value. " + "The list holds each item in order. " * 200
    assert len(fill.tokenizer(text)["input_ids"]) > fill.model.config.max_position_embeddings
    predictions = fill(text, tokenizer_kwargs={"truncation": True}, top_k=3)
    assert len(predictions) == 3 and all(p["token_str"] for p in predictions)


def test_a_cola_run_that_fails_at_its_first_step_leaves_no_folder_to_refuse_the_rerun(
    mlm_checkpoint, tmp_path, monkeypatch
):
    """Trainer makes seed-42/ when it is built; a tracker that cannot start (the fault here) fails after that."""
    out_mlm, _ = mlm_checkpoint
    rows = tmp_path / "cola.tsv"
    rows.write_text("the cat sat\t1\ncat the sat\t0\n" * 8)
    out = tmp_path / "cola"

    class TrackerThatCannotStart(finetune_cola.Trainer):
        def train(self, *args, **kwargs):
            assert Path(self.args.output_dir).is_dir() and Path(self.args.output_dir).parent == out
            raise ScratchError("--report_to: the tracker could not start")

    monkeypatch.setattr(finetune_cola, "Trainer", TrackerThatCannotStart)
    with pytest.raises(ScratchError, match="could not start"):
        run_cola("--model_name_or_path", out_mlm, "--train_file", rows, "--validation_file", rows, "--output_dir", out)
    assert not out.exists()
