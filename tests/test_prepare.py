"""`scratchlm prepare`: tokenize and pack once into shards, then train on them without tokenizing."""

import json

import numpy as np
import pytest
import torch

from scratchlm.arguments import DataArguments
from scratchlm.cli import main as scratchlm
from scratchlm.data import load_lm_data
from scratchlm.objectives import OBJECTIVES
from scratchlm.tokenizer import load_tokenizer

import pretrain_gpt2_zh
from conftest import ROOT

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")


@pytest.fixture
def prepared(tmp_path, zh_file, gpt_tokenizer_dir):
    out = tmp_path / "prepared"
    scratchlm(
        [
            "prepare",
            DEBUG,
            "--out",
            str(out),
            "--num_proc",
            "2",
            "--shard_tokens",
            "2000",
            "--train_files",
            str(zh_file),
            "--tokenizer_name_or_path",
            str(gpt_tokenizer_dir),
        ]
    )
    return out


@pytest.mark.slow
def test_prepared_blocks_equal_the_cached_pipeline(prepared, zh_file, gpt_tokenizer_dir):
    manifest = json.loads((prepared / "prepared.json").read_text())
    train = manifest["splits"]["train"]
    assert len(train["shards"]) > 1 and all(s["blocks"] <= 2000 // 32 for s in train["shards"])
    assert train["tokens"] == train["blocks"] * 32 and manifest["dtype"] == "uint16"

    tokenizer = load_tokenizer(str(gpt_tokenizer_dir), required=())
    spec = OBJECTIVES["causal"].packing(tokenizer, 32)
    from_prepared = load_lm_data(DataArguments(prepared_data=str(prepared), block_size=32), tokenizer, spec)
    from_cache = load_lm_data(DataArguments(train_files=[str(zh_file)], block_size=32), tokenizer, spec)
    # Same documents, same split, same packing: the same blocks (the cache's last partial chunk may differ).
    a, b = (d.train.with_format("numpy")[:]["input_ids"] for d in (from_prepared, from_cache))
    n = min(len(a), len(b))
    assert abs(len(a) - len(b)) <= 1 and n > 50 and np.array_equal(a[:n], b[:n])
    assert from_prepared.train[0]["input_ids"].dtype == torch.int64  # stored as uint16, widened for the embedding
    assert from_prepared.stats == from_cache.stats
    assert np.array_equal(from_prepared.unigram_counts[:10], np.bincount(a.ravel(), minlength=10)[:10])


@pytest.mark.slow
def test_prepared_aligned_blocks_equal_the_cached_ones_and_joined_runs_refuse_them(
    tmp_path, prepared, zh_file, gpt_tokenizer_dir
):
    from scratchlm.errors import ScratchError

    out = tmp_path / "aligned"
    common = ["--train_files", str(zh_file), "--tokenizer_name_or_path", str(gpt_tokenizer_dir)]
    scratchlm(["prepare", DEBUG, "--out", str(out), "--num_proc", "2", "--packing", "aligned", *common])
    tokenizer = load_tokenizer(str(gpt_tokenizer_dir), required=())
    aligned, joined = (OBJECTIVES["causal"].packing(tokenizer, 32, document_aligned=a) for a in (True, False))
    from_prepared = load_lm_data(DataArguments(prepared_data=str(out), block_size=32), tokenizer, aligned)
    from_cache = load_lm_data(DataArguments(train_files=[str(zh_file)], block_size=32), tokenizer, aligned)
    # fewer documents than the packer's buffer: both pack them all at once, so the blocks are the same
    for split in ("train", "validation"):
        a, b = (getattr(d, split).with_format("numpy")[:]["input_ids"] for d in (from_prepared, from_cache))
        assert np.array_equal(a, b)
    assert from_prepared.stats == from_cache.stats and from_prepared.stats.train_dropped_tokens > 0
    with pytest.raises(ScratchError, match="laid out as"):
        load_lm_data(DataArguments(prepared_data=str(out), block_size=32), tokenizer, joined)
    # data prepared before the option existed records no document_aligned: it is joined, and loads as such
    manifest = json.loads((prepared / "prepared.json").read_text())
    del manifest["packing"]["document_aligned"]
    (prepared / "prepared.json").write_text(json.dumps(manifest))
    assert len(load_lm_data(DataArguments(prepared_data=str(prepared), block_size=32), tokenizer, joined).train) > 50


@pytest.mark.slow
def test_recipe_trains_on_prepared_data_without_tokenizing(prepared, tmp_path, gpt_tokenizer_dir, caplog):
    with caplog.at_level("INFO"):
        metrics = pretrain_gpt2_zh.cli(
            [
                "--config",
                DEBUG,
                "--prepared_data",
                str(prepared),
                "--tokenizer_name_or_path",
                str(gpt_tokenizer_dir),
                "--output_dir",
                str(tmp_path / "run"),
            ]
        )
    assert "reading prepared blocks" in caplog.text and "cache miss" not in caplog.text
    assert metrics["eval_loss"] > 0 and (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.slow
def test_prepared_data_refuses_another_tokenizer_or_block_size(prepared, tmp_path, zh_docs, capsys):
    from scratchlm.arguments import TokenizerArguments
    from scratchlm.errors import ScratchError
    from scratchlm.tokenizer import train_tokenizer

    other = tmp_path / "other-tok"
    train_tokenizer(zh_docs[:200], TokenizerArguments(vocab_size=500), other)
    tokenizer = load_tokenizer(str(other), required=())
    with pytest.raises(ScratchError, match="not with this run's tokenizer"):
        load_lm_data(
            DataArguments(prepared_data=str(prepared), block_size=32),
            tokenizer,
            OBJECTIVES["causal"].packing(tokenizer, 32),
        )
    manifest = json.loads((prepared / "prepared.json").read_text())
    tokenizer = load_tokenizer(manifest["tokenizer"], required=())
    with pytest.raises(ScratchError, match="match --block_size"):
        load_lm_data(
            DataArguments(prepared_data=str(prepared), block_size=64),
            tokenizer,
            OBJECTIVES["causal"].packing(tokenizer, 64),
        )


@pytest.mark.slow
def test_prepare_never_overwrites(prepared, zh_file, gpt_tokenizer_dir, capsys):
    before = (prepared / "prepared.json").read_bytes()
    with pytest.raises(SystemExit):
        scratchlm(
            [
                "prepare",
                DEBUG,
                "--out",
                str(prepared),
                "--train_files",
                str(zh_file),
                "--tokenizer_name_or_path",
                str(gpt_tokenizer_dir),
            ]
        )
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (prepared / "prepared.json").read_bytes() == before


def test_overwrite_replaces_prepared_data_only(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    run = tmp_path / "a-trained-run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "a-file").write_text("mine")
    for out, message in ((run, "holds no prepared data"), (tmp_path / "a-file", "is a file")):
        with pytest.raises(SystemExit) as exit_info:
            scratchlm(
                ["prepare", DEBUG, "--out", str(out), "--overwrite", "--train_files", str(zh_file)]
                + ["--tokenizer_name_or_path", str(gpt_tokenizer_dir)]
            )
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == b"weights" and (tmp_path / "a-file").read_text() == "mine"
