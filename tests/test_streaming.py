"""`--streaming`: blocks made on the fly equal the packed pipeline's, every document once per pass across
dataloader workers and processes, and a resumed run continues at the same block."""

import json
import os
import re
import subprocess
from collections import Counter

import pytest

from scratchlm.arguments import DataArguments, TokenizerArguments
from scratchlm.data import PackingSpec, load_corpus, load_lm_data
from scratchlm.data.packing import Packer, pack, tokenize
from scratchlm.data.streamed import StreamingBlocks
from scratchlm.objectives import OBJECTIVES
from scratchlm.tokenizer import load_tokenizer, train_tokenizer

from conftest import ROOT, two_processes
from test_resume import flags, kill_at, per_step, run_recipe


def test_packer_in_pieces_equals_pack_over_the_whole_stream():
    spec = PackingSpec(8, 0, (1,), (2,))
    docs = [[5] * n for n in (3, 11, 1, 7, 20, 2, 9)]
    packer, blocks = Packer(spec), []
    for i in range(0, len(docs), 2):
        blocks += packer.add_documents(docs[i : i + 2]).tolist()
    assert blocks == pack(docs, 8, 0, (1,), (2,)) and len(packer.carry) < 6
    assert all(len(b) == 8 and b[0] == 1 and b[-1] == 2 for b in blocks)


def test_stream_holds_out_every_kth_document_and_packs_the_rest_in_order(zh_file, gpt_tokenizer_dir):
    args = DataArguments(
        train_files=[str(zh_file)],
        streaming=True,
        validation_split_percentage=10,
        streaming_validation_documents=5,
        block_size=32,
    )
    corpus = load_corpus(args)
    documents = [line for line in zh_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    heldout = list(corpus.validation["text"])
    assert heldout == [documents[i] for i in (0, 10, 20, 30, 40)]
    train = list(corpus.train.texts())
    assert train == [d for i, d in enumerate(documents) if i not in (0, 10, 20, 30, 40)]

    tokenizer = load_tokenizer(str(gpt_tokenizer_dir), required=())
    spec = OBJECTIVES["causal"].packing(tokenizer, 32)
    stream = StreamingBlocks(corpus.train, tokenizer, spec, shuffle_buffer=1, seed=0)
    blocks = [b["input_ids"].tolist() for b in stream]
    assert blocks == pack(tokenize(train, tokenizer), 32, tokenizer.eos_token_id)

    shuffled = StreamingBlocks(corpus.train, tokenizer, spec, shuffle_buffer=50, seed=0)
    first = [b["input_ids"].tolist() for b in shuffled]
    shuffled.set_epoch(1)
    second = [b["input_ids"].tolist() for b in shuffled]
    assert sorted(first) == sorted(second) == sorted(blocks) and first != blocks and first != second


def test_streamed_validation_and_unigram_baseline_come_from_the_stream(zh_file, gpt_tokenizer_dir):
    tokenizer = load_tokenizer(str(gpt_tokenizer_dir), required=())
    args = DataArguments(train_files=[str(zh_file)], streaming=True, streaming_validation_documents=10, block_size=32)
    data = load_lm_data(args, tokenizer, OBJECTIVES["causal"].packing(tokenizer, 32))
    assert data.streaming and data.block_size == 32 and data.stats.train_blocks is None
    assert len(data.validation) == data.stats.validation_blocks > 0
    assert data.unigram_counts.sum() > 0 and data.unigram_counts[tokenizer.eos_token_id] > 0


@pytest.fixture
def numbered_corpus(tmp_path):
    """Documents of exactly 15 characters: with a character tokenizer and blocks of 16, one block per document."""
    path = tmp_path / "numbered.txt"
    path.write_text("".join(f"d{i:05d}{'x' * 9}\n" for i in range(100)), encoding="utf-8")
    tok_dir = tmp_path / "char-tok"
    train_tokenizer(path.read_text().splitlines(), TokenizerArguments(tokenizer_type="char"), tok_dir)
    return path, tok_dir


@pytest.mark.slow
def test_every_document_once_per_pass_with_2_workers_x_2_processes(tmp_path, numbered_corpus):
    corpus, tok_dir = numbered_corpus
    out = tmp_path / "probe"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "recipes"), str(ROOT / "src")]),
    }
    result = subprocess.run(
        [
            *two_processes(ROOT / "tests/stream_probe.py"),
            "--config",
            str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml"),
            "--train_files",
            str(corpus),
            "--tokenizer_name_or_path",
            str(tok_dir),
            "--output_dir",
            str(out),
            "--streaming",
            "true",
            "--streaming_validation_documents",
            "4",
            "--block_size",
            "16",
            "--dataloader_num_workers",
            "2",
            "--per_device_train_batch_size",
            "4",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    heldout = {f"d{i:05d}" for i in (0, 20, 40, 60)}
    expected = {f"d{i:05d}" for i in range(100)} - heldout
    rank0, rank1 = (json.loads((out / f"seen-{rank}.json").read_text()) for rank in (0, 1))
    for epoch in range(2):
        assert len(rank0[epoch]) == len(rank1[epoch]) == 48  # each process its half of every global batch
        seen = Counter(re.fullmatch(r"(d\d{5})x{9}", text).group(1) for text in rank0[epoch] + rank1[epoch])
        assert set(seen) == expected and set(seen.values()) == {1}, seen.most_common(3)
    assert rank0[0] != rank0[1]  # reshuffled between passes


@pytest.mark.slow
def test_streaming_run_killed_mid_way_resumes_at_the_same_block(tmp_path, zh_file, gpt_tokenizer_dir):
    stream = ("--streaming", "true", "--dataloader_num_workers", 2, "--streaming_validation_documents", 20)
    reference = tmp_path / "uninterrupted"
    run_recipe(flags(zh_file, gpt_tokenizer_dir, reference, *stream))
    out = tmp_path / "killed"
    kill_at(7, flags(zh_file, gpt_tokenizer_dir, out, *stream), tmp_path)
    run_recipe(flags(zh_file, gpt_tokenizer_dir, out, *stream, "--resume_from_checkpoint", "true"))
    expected, resumed = per_step(reference, "loss"), per_step(out, "loss")
    assert sorted(resumed) == list(range(1, 13))
    for step in range(7, 13):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step


def test_streaming_refuses_what_a_stream_cannot_do(tmp_path, zh_file, gpt_tokenizer_dir, capsys):
    from scratchlm.errors import ScratchError

    with pytest.raises(ScratchError, match="--max_train_samples does not apply to a stream"):
        DataArguments(train_files=[str(zh_file)], streaming=True, max_train_samples=10)
    with pytest.raises(ScratchError, match="either --streaming or --prepared_data"):
        DataArguments(prepared_data=str(tmp_path), streaming=True)
    with pytest.raises(ScratchError, match="--streaming needs --max_steps"):
        run_recipe(
            flags(
                zh_file,
                gpt_tokenizer_dir,
                tmp_path / "run",
                "--streaming",
                "true",
                "--max_steps",
                -1,
                "--num_train_epochs",
                1,
            )
        )
