"""Faults a long run meets on disk: a cache or prepared shard whose bytes changed, two processes building
the same cache at once."""

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from transformers import AutoTokenizer

from scratchlm import hashing
from scratchlm.arguments import DataArguments
from scratchlm.cli import main as scratchlm
from scratchlm.data import integrity, load_lm_data
from scratchlm.errors import ScratchError
from scratchlm.objectives import OBJECTIVES

from conftest import ROOT


def _load(args, tok_dir):
    tok = AutoTokenizer.from_pretrained(tok_dir)
    return load_lm_data(args, tok, OBJECTIVES["causal"].packing(tok, 16))


def _flip_a_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_cache_is_found_and_built_again(zh_file, gpt_tokenizer_dir, caplog):
    args = DataArguments(train_files=[str(zh_file)])
    first = _load(args, gpt_tokenizer_dir)
    blocks = first.train[:]["input_ids"].tolist()
    shard = next(first.cache_dir.glob("train/*.arrow"))
    _flip_a_byte(shard, offset=shard.stat().st_size - 100)  # inside the last block's token ids
    with caplog.at_level("INFO"):
        again = _load(args, gpt_tokenizer_dir)
    assert "is damaged (train/" in caplog.text and "building it again" in caplog.text
    assert not again.cache_hit and again.train[:]["input_ids"].tolist() == blocks
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _load(args, gpt_tokenizer_dir).cache_hit and "damaged" not in caplog.text


def test_a_full_check_finds_what_sampling_misses(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    big = folder / "shard.bin"
    big.write_bytes(os.urandom(hashing.PAGE * 1000))
    recorded = integrity.record(folder)
    _flip_a_byte(big, offset=hashing.PAGE * 7 + 5)  # page 7: between two sampled pages
    assert integrity.problem(folder, recorded) is None
    assert "shard.bin has changed" in integrity.problem(folder, recorded, full=True)
    big.write_bytes(big.read_bytes()[:-1])
    assert "shard.bin is 4095999 bytes, not the 4096000" in integrity.problem(folder, recorded)
    big.unlink()
    assert integrity.problem(folder, recorded) == "shard.bin is missing"


def test_damaged_prepared_data_is_refused_naming_the_shard(tmp_path, zh_file, gpt_tokenizer_dir):
    out = tmp_path / "prepared"
    scratchlm(
        [
            "prepare",
            str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"),
            "--out",
            str(out),
            "--num_proc",
            "1",
            "--train_files",
            str(zh_file),
            "--tokenizer_name_or_path",
            str(gpt_tokenizer_dir),
            "--block_size",
            "16",
        ]
    )
    args = DataArguments(prepared_data=str(out), block_size=16)
    assert len(_load(args, gpt_tokenizer_dir).train) > 0
    _flip_a_byte(out / "train-00000.arrow", offset=(out / "train-00000.arrow").stat().st_size - 64)
    with pytest.raises(ScratchError, match=r"--prepared_data .*: train-00000.arrow has changed since it was written"):
        _load(args, gpt_tokenizer_dir)
    with pytest.raises(ScratchError, match="prepare it again"):
        _load(DataArguments(prepared_data=str(out), block_size=16, verify_data="full"), gpt_tokenizer_dir)


BUILDER = textwrap.dedent("""
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from transformers import AutoTokenizer
    from scratchlm.arguments import DataArguments
    from scratchlm.data import load_lm_data
    from scratchlm.objectives import OBJECTIVES
    tok = AutoTokenizer.from_pretrained(sys.argv[2])
    data = load_lm_data(DataArguments(train_files=[sys.argv[1]]), tok, OBJECTIVES["causal"].packing(tok, 16))
    print("RESULT", json.dumps({"hit": data.cache_hit, "blocks": data.train[:]["input_ids"].tolist()}), flush=True)
""")


def _start_builder(zh_file, tok_dir, cache):
    env = {**os.environ, "SCRATCHLM_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(zh_file), str(tok_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _result(process):
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    line = next(row for row in out.splitlines() if row.startswith("RESULT "))
    import json

    return out, json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_two_processes_started_together_build_the_cache_once(tmp_path, zh_file, gpt_tokenizer_dir):
    cache = tmp_path / "cache"
    first, second = (_start_builder(zh_file, gpt_tokenizer_dir, cache) for _ in range(2))
    (log_a, a), (log_b, b) = _result(first), _result(second)
    assert a["blocks"] == b["blocks"] and len(a["blocks"]) > 50
    assert (log_a + log_b).count("cache miss: tokenizing") == 1 and sorted([a["hit"], b["hit"]]) == [False, True]


@pytest.mark.slow
def test_a_process_waits_for_the_builder_then_reads_its_work(tmp_path, zh_file, gpt_tokenizer_dir):
    """Hold the build lock as another builder would, finish that build by hand, and let the waiter read it."""
    built = _load(
        DataArguments(train_files=[str(zh_file)], data_cache_dir=str(tmp_path / "elsewhere")), gpt_tokenizer_dir
    )
    target = tmp_path / "cache" / "packed" / built.cache_dir.name
    with integrity.exclusive(target.with_name(target.name + ".lock"), "test"):
        waiter = _start_builder(zh_file, gpt_tokenizer_dir, tmp_path / "cache")
        deadline = time.time() + 120
        seen = ""
        while "waiting for it" not in seen:  # the waiter has found the lock taken
            assert time.time() < deadline and waiter.poll() is None, seen
            seen += waiter.stdout.readline()
        shutil.copytree(built.cache_dir, target)
    out, result = _result(waiter)
    assert result["hit"] and "cache miss" not in seen + out
    assert result["blocks"] == built.train[:]["input_ids"].tolist()
