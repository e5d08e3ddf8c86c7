"""Document-aligned packing (--packing aligned): every training block starts at a document."""

import json

import numpy as np
import pytest

from scratchlm.arguments import DataArguments
from scratchlm.data import load_lm_data
from scratchlm.data.packing import BEST_FIT_DOCUMENTS, AlignedPacker, PackingSpec, document_stream, tokenize
from scratchlm.objectives import OBJECTIVES

import pretrain_gpt2_zh
from conftest import ROOT, recipe_argv

DEBUG = str(ROOT / "recipes/pretrain_gpt2_zh/config_debug.yaml")
SEP = 0


def documents(count: int, longest: int, seed: int = 0) -> list[list[int]]:
    """Documents of distinct tokens (document i holds i*1000 + position), so each token says where it came from."""
    rng = np.random.default_rng(seed)
    return [[i * 1000 + 1 + p for p in range(rng.integers(1, longest))] for i in range(count)]


def starts(docs: list[list[int]], content: int) -> set[int]:
    """The tokens a block may start with: a document's first, or a long document's first after each full block."""
    return {doc[at] for doc in docs for at in range(0, len(doc), content)}


@pytest.mark.parametrize("prefix,suffix", [((), ()), ((-1,), (SEP,))], ids=["causal", "masked"])
def test_every_block_starts_at_a_document_and_drops_only_what_it_counts(prefix, suffix):
    spec = PackingSpec(24, SEP, prefix, suffix, document_aligned=True)
    content = spec.content_size
    docs = documents(3 * BEST_FIT_DOCUMENTS, longest=60)  # some longer than a block
    packer = AlignedPacker(spec)
    stream = document_stream(docs, SEP)
    blocks = np.concatenate([packer.add(part) for part in np.array_split(stream, 7)] + [packer.finish()])
    assert blocks.shape[1] == spec.block_size
    assert (blocks[:, : len(prefix)] == prefix).all() and (blocks[:, blocks.shape[1] - len(suffix) :] == suffix).all()
    body = blocks[:, len(prefix) : spec.block_size - len(suffix)]
    allowed = starts(docs, content)
    assert set(body[:, 0].tolist()) <= allowed
    # inside a block: whole documents (or pieces) one after another, each after its predecessor's separator
    for row in body:
        for a, b in zip(row[:-1], row[1:]):
            assert (b in allowed) if a == SEP else (b == SEP or b == a + 1)
    tokens = body[body != SEP]
    assert len(np.unique(tokens)) == len(tokens)  # nothing twice
    assert packer.dropped == len(stream) - body.size
    assert 0 < packer.dropped < 0.1 * len(stream)  # best fit over many documents crops little
    # every document longer than a block is kept whole up to its last full block
    long_doc = next(doc for doc in docs if len(doc) > 2 * content)
    assert set(long_doc[: 2 * content]) <= set(tokens.tolist())


def test_held_out_blocks_are_joined_whatever_the_training_packing(zh_file, gpt_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    args = DataArguments(train_files=[str(zh_file)], block_size=32, data_cache_dir=str(tmp_path / "cache"))
    joined = load_lm_data(args, tok, OBJECTIVES["causal"].packing(tok, 32))
    aligned = load_lm_data(args, tok, OBJECTIVES["causal"].packing(tok, 32, document_aligned=True))
    assert aligned.validation[:]["input_ids"].tolist() == joined.validation[:]["input_ids"].tolist()
    assert aligned.stats.validation_tokens == joined.stats.validation_tokens
    # each aligned training block starts at a document, or a block's length into one longer than a block
    lines = [line for line in zh_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    allowed = {tuple(ids[at : at + 3]) for ids in tokenize(lines, tok) for at in range(0, len(ids), 32)}
    aligned_starts = [tuple(row[:3]) for row in aligned.train[:]["input_ids"].tolist()]
    joined_starts = [tuple(row[:3]) for row in joined.train[:]["input_ids"].tolist()]
    assert all(start in allowed for start in aligned_starts)
    assert sum(start in allowed for start in joined_starts) < 0.5 * len(joined_starts)
    assert 0 < aligned.stats.train_dropped_tokens < 0.2 * len(aligned.train) * 32
    assert joined.stats.train_dropped_tokens < 32  # one batch of documents: at most the tail of one block
    # a stream packs its documents the same way as it reads them
    streamed = load_lm_data(
        DataArguments(train_files=[str(zh_file)], block_size=32, streaming=True, streaming_shuffle_buffer=1),
        tok,
        OBJECTIVES["causal"].packing(tok, 32, document_aligned=True),
    )
    stream_starts = [tuple(block["input_ids"][:3].tolist()) for block in streamed.train]
    assert len(stream_starts) > 50 and all(start in allowed for start in stream_starts)


def test_a_run_trains_on_aligned_blocks_and_refuses_shifted_windows(
    tmp_path, zh_file, gpt_tokenizer_dir, capsys, caplog
):
    from scratchlm.errors import run_cli

    out = tmp_path / "aligned"
    argv = recipe_argv(DEBUG, zh_file, gpt_tokenizer_dir, out, "--packing", "aligned")
    with pytest.raises(SystemExit):
        run_cli(pretrain_gpt2_zh.cli, argv)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --packing aligned starts every block at a document") and "--window_order fixed" in err
    assert not out.exists()
    with caplog.at_level("INFO", logger="scratchlm"):
        pretrain_gpt2_zh.cli([*argv, "--window_order", "fixed"])
    (left_out,) = [r.getMessage() for r in caplog.records if "are in no block" in r.getMessage()]
    assert left_out.endswith("are in no block: cropped from documents by --packing aligned")
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["config"]["packing"] == "aligned"
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 8
