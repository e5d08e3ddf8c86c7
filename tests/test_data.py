import json
import math

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from scratchlm.arguments import DataArguments, TokenizerArguments
from scratchlm.data import PackingSpec, load_lm_data
from scratchlm.data import sources as corpus_module
from scratchlm.data.builtin import strip_pos_tags
from scratchlm.data.cached import META_FILE, cache_key, cache_root
from scratchlm.data.packing import unigram_cross_entropy
from scratchlm.data.sources import load_corpus
from scratchlm.errors import ScratchError
from scratchlm.objectives import OBJECTIVES
from scratchlm.tokenizer import train_tokenizer


def _prepare(args, tok_dir, block=16):
    tok = AutoTokenizer.from_pretrained(tok_dir)
    return load_lm_data(args, tok, OBJECTIVES["causal"].packing(tok, block))


def test_packed_blocks_are_full_and_split_by_document(zh_file, gpt_tokenizer_dir):
    data = _prepare(DataArguments(train_files=[str(zh_file)], validation_split_percentage=10), gpt_tokenizer_dir)
    assert not data.cache_hit
    assert len(data.train) > 50 and len(data.validation) > 3
    assert all(len(b) == 16 for b in data.train["input_ids"][:20])
    assert data.stats.validation_characters > 0 and data.stats.chars_per_token > 0.3
    # the split is by document: no held-out document appears in training
    corpus = load_corpus(DataArguments(train_files=[str(zh_file)], validation_split_percentage=10))
    assert not set(corpus.validation["text"]) & set(corpus.train["text"])


def test_compressed_corpus_files_read_as_their_text(tmp_path, zh_file, zh_docs, gpt_tokenizer_dir):
    import bz2
    import gzip
    import lzma

    plain = load_corpus(DataArguments(train_files=[str(zh_file)]))
    (tmp_path / "zh.txt.gz").write_bytes(gzip.compress(zh_file.read_bytes()))
    (tmp_path / "zh.txt.bz2").write_bytes(bz2.compress(zh_file.read_bytes()))
    for name in ("zh.txt.gz", "zh.txt.bz2"):
        corpus = load_corpus(DataArguments(train_files=[str(tmp_path / name)]))
        assert list(corpus.train["text"]) == list(plain.train["text"]), name
        assert list(corpus.validation["text"]) == list(plain.validation["text"]), name
    records = "".join(json.dumps({"text": doc}, ensure_ascii=False) + "\n" for doc in zh_docs)
    (tmp_path / "zh.jsonl.xz").write_bytes(lzma.compress(records.encode("utf-8")))
    data = _prepare(DataArguments(train_files=[str(tmp_path / "zh.jsonl.xz")]), gpt_tokenizer_dir)
    assert (
        data.train["input_ids"][:5].tolist()
        == _prepare(DataArguments(train_files=[str(zh_file)]), gpt_tokenizer_dir).train["input_ids"][:5].tolist()
    )


def test_a_corpus_of_one_or_a_few_documents_holds_out_their_last_lines(tmp_path, zh_docs):
    novel = tmp_path / "novel.txt"
    text = "\n".join(zh_docs) + "\n"
    novel.write_text(text, encoding="utf-8")
    corpus = load_corpus(DataArguments(train_files=[str(novel)], text_sample_by="document"))
    (train,), (held_out,) = corpus.train["text"], corpus.validation["text"]
    assert train + held_out == text and train.endswith("\n")  # the held-out text starts at a line
    assert 0.04 < len(held_out) / len(text) < 0.06
    (tmp_path / "one-line.txt").write_text(" ".join(zh_docs) + "\n", encoding="utf-8")  # its only newline ends it
    corpus = load_corpus(DataArguments(train_files=[str(tmp_path / "one-line.txt")], text_sample_by="document"))
    assert 0.04 < len(corpus.validation["text"][0]) / len(corpus.train["text"][0]) < 0.06
    books = [tmp_path / f"book{i}.txt" for i in range(3)]  # three long documents, of 400, 200 and 100 lines
    for book, lines in zip(books, (zh_docs, zh_docs[:200], zh_docs[:100])):
        book.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(DataArguments(train_files=[str(b) for b in books], text_sample_by="document"))
    assert len(corpus.train) == len(corpus.validation) == 3  # not one whole book of three held out
    assert all(
        len(tail) / (len(head) + len(tail)) < 0.06
        for head, tail in zip(corpus.train["text"], corpus.validation["text"])
    )
    (tmp_path / "short.txt").write_text("一", encoding="utf-8")
    with pytest.raises(ScratchError, match="one document too short to hold some of it out"):
        load_corpus(DataArguments(train_files=[str(tmp_path / "short.txt")]))


def test_a_play_read_one_document_per_line_is_named_with_the_settings_that_read_it_whole(tmp_path, caplog):
    speeches = [
        f"SPEAKER {i % 7}:\nBut soft, what light through yonder window {i} breaks?\nIt is the east, and the sun.\n"
        for i in range(200)
    ]
    play = tmp_path / "play.txt"
    play.write_text("\n".join(speeches), encoding="utf-8")
    paragraphs = tmp_path / "articles.txt"  # a paragraph a line, blank lines between: WikiText's layout
    paragraphs.write_text("\n\n".join(f"Paragraph {i} " + "of an article, " * 25 for i in range(200)), encoding="utf-8")
    tweets = tmp_path / "tweets.txt"  # short lines, no paragraphs: each is a document
    tweets.write_text("\n".join(f"a short post, number {i}" for i in range(300)), encoding="utf-8")

    def warned(path, sample_by="line"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="scratchlm"):
            load_corpus(DataArguments(train_files=[str(path)], text_sample_by=sample_by))
        return [r.getMessage() for r in caplog.records if "--text_sample_by line" in r.getMessage()]

    (warning,) = warned(play)
    assert warning.startswith(f"{play} is read as one document per line (--text_sample_by line), but its lines")
    assert "--text_sample_by paragraph (a blank line ends a document) or document (one per file)" in warning
    assert warned(play, "paragraph") == warned(paragraphs) == warned(tweets) == []


def test_a_local_dataset_folder_needs_no_hub(tmp_path, zh_docs):
    from datasets import DatasetDict

    saved = tmp_path / "saved"
    splits = {"train": zh_docs[:300], "validation": zh_docs[300:]}
    DatasetDict({name: Dataset.from_dict({"body": docs}) for name, docs in splits.items()}).save_to_disk(saved)
    corpus = load_corpus(DataArguments(dataset_name=str(saved), text_column="body"))
    assert list(corpus.train["text"]) == zh_docs[:300] and list(corpus.validation["text"]) == zh_docs[300:]
    assert corpus.description == f"dataset folder {saved}"
    one = tmp_path / "one"
    Dataset.from_dict({"text": zh_docs}).save_to_disk(one)  # a Dataset, not a DatasetDict: its split is "train"
    corpus = load_corpus(DataArguments(dataset_name=str(one)))
    assert sorted([*corpus.train["text"], *corpus.validation["text"]]) == sorted(zh_docs)
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in zh_docs), encoding="utf-8")
    corpus = load_corpus(DataArguments(dataset_name=str(files)))
    assert len(corpus.train) + len(corpus.validation) == len(zh_docs)
    assert corpus.description == f"dataset folder {files}"


def test_cache_hit_skips_loading_and_tokenizing(zh_file, gpt_tokenizer_dir, monkeypatch):
    args = DataArguments(train_files=[str(zh_file)])
    first = _prepare(args, gpt_tokenizer_dir)

    def no_loading(*a, **k):
        raise AssertionError("a cache hit must not load or tokenize the corpus")

    monkeypatch.setattr("scratchlm.data.cached.load_corpus", no_loading)
    second = _prepare(args, gpt_tokenizer_dir)
    assert second.cache_hit and second.cache_dir == first.cache_dir
    assert second.train["input_ids"][:5].tolist() == first.train["input_ids"][:5].tolist()


def test_a_cache_hit_from_the_same_text_elsewhere_names_the_files_given(tmp_path, zh_file, gpt_tokenizer_dir):
    first = _prepare(DataArguments(train_files=[str(zh_file)]), gpt_tokenizer_dir)
    moved = tmp_path / "moved" / "corpus.txt"
    moved.parent.mkdir()
    moved.write_bytes(zh_file.read_bytes())
    second = _prepare(DataArguments(train_files=[str(moved)]), gpt_tokenizer_dir)
    assert second.cache_hit and second.cache_dir == first.cache_dir
    assert str(moved) in second.corpus_description and str(zh_file) not in second.corpus_description


def test_changed_tokenizer_or_text_or_block_size_misses(tmp_path, zh_file, zh_docs, gpt_tokenizer_dir):
    args = DataArguments(train_files=[str(zh_file)])
    base = _prepare(args, gpt_tokenizer_dir)
    train_tokenizer(zh_docs[:300], TokenizerArguments(vocab_size=650), tmp_path / "tok2")
    other_tok = _prepare(args, tmp_path / "tok2")
    assert not other_tok.cache_hit and other_tok.cache_dir != base.cache_dir
    assert not _prepare(args, gpt_tokenizer_dir, block=24).cache_hit
    zh_file.write_text(zh_file.read_text(encoding="utf-8") + "新的一行文字。\n", encoding="utf-8")
    changed = _prepare(args, gpt_tokenizer_dir)
    assert not changed.cache_hit and changed.cache_dir != base.cache_dir


def test_cache_key_depends_on_every_part():
    spec = PackingSpec(16, 0)
    key = cache_key("corpus", "tok", spec)
    assert key == cache_key("corpus", "tok", PackingSpec(16, 0))
    assert (
        len(
            {
                key,
                cache_key("corpus2", "tok", spec),
                cache_key("corpus", "tok2", spec),
                cache_key("corpus", "tok", PackingSpec(16, 1)),
                cache_key("corpus", "tok", PackingSpec(16, 0, (5,))),
            }
        )
        == 5
    )


def test_interrupted_build_is_not_a_hit(zh_file, gpt_tokenizer_dir, monkeypatch):
    args = DataArguments(train_files=[str(zh_file)])

    def killed(*a, **k):
        raise RuntimeError("killed while writing the cache")

    with monkeypatch.context() as patch:
        patch.setattr("scratchlm.data.cached.count_tokens", killed)
        with pytest.raises(RuntimeError):
            _prepare(args, gpt_tokenizer_dir)
    assert not list(cache_root(args).glob(f"*/{META_FILE}"))
    assert not _prepare(args, gpt_tokenizer_dir).cache_hit


@pytest.mark.parametrize("record", ["", "{not json", '{"files": {}}', "[1, 2]"])
def test_a_damaged_cache_record_is_built_again(zh_file, gpt_tokenizer_dir, caplog, record):
    args = DataArguments(train_files=[str(zh_file)])
    first = _prepare(args, gpt_tokenizer_dir)
    (first.cache_dir / META_FILE).write_text(record)
    with caplog.at_level("WARNING"):
        again = _prepare(args, gpt_tokenizer_dir)
    assert not again.cache_hit and f"{META_FILE}" in caplog.text and "building it again" in caplog.text
    assert again.stats == first.stats and _prepare(args, gpt_tokenizer_dir).cache_hit


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
@pytest.mark.parametrize("values", [[1, 2, 3], [None, None, None]])
def test_a_text_column_of_numbers_or_nulls_is_one_line(tmp_path, kind, values):
    frame = pd.DataFrame({"text": values * 10})
    path = tmp_path / f"corpus.{kind}"
    frame.to_json(path, orient="records", lines=True) if kind == "jsonl" else frame.to_parquet(path)
    with pytest.raises(ScratchError) as refused:
        load_corpus(DataArguments(train_files=[str(path)]))
    dtype = "null" if values[0] is None else "int64"
    assert str(refused.value) == (
        f"the text column ('text') of local files {path} holds {dtype} values, not text: point --text_column at the "
        "column that holds the documents, or write them as strings"
    )


def test_validation_files_that_are_training_files_are_named(tmp_path, zh_file, caplog):
    copy = tmp_path / "copy.txt"
    copy.write_bytes(zh_file.read_bytes())
    with caplog.at_level("WARNING"):
        load_corpus(DataArguments(train_files=[str(zh_file)], validation_files=[str(copy)]))
    assert f"--validation_files {copy} is also in --train_files: the held-out loss then measures memorisation" in (
        caplog.text
    )


def test_unigram_cross_entropy_matches_hand_computation():
    counts = np.array([3, 1, 0, 0])
    blocks = Dataset.from_dict({"input_ids": [[0, 0, 1], [2, 0, 1]]})
    p = (counts + 1) / (counts.sum() + 4)  # add-one smoothing: [.5, .25, .125, .125]
    scored = [0, 1, 0, 1]  # positions 1: of each block
    expected = -np.mean(np.log(p[scored]))
    assert math.isclose(unigram_cross_entropy(counts, blocks), expected, rel_tol=1e-9)


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "txt-paragraph"])
def test_file_kinds_load_as_text_documents(tmp_path, zh_docs, kind):
    docs = zh_docs[:30]
    if kind == "jsonl":
        path = tmp_path / "c.jsonl"
        path.write_text(
            "".join(json.dumps({"content": d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs))
        )
    elif kind == "json":
        path = tmp_path / "c.json"
        path.write_text(json.dumps([{"content": d} for d in docs], ensure_ascii=False))
    elif kind == "csv":
        path = tmp_path / "c.csv"
        pd.DataFrame({"content": docs, "n": range(len(docs))}).to_csv(path, index=False)
    elif kind == "parquet":
        path = tmp_path / "c.parquet"
        pd.DataFrame({"content": docs}).to_parquet(path)
    else:
        path = tmp_path / "c.txt"
        path.write_text("\n\n".join(d[:20] + "\n" + d[20:] for d in docs), encoding="utf-8")
    column = "text" if kind.startswith("txt") else "content"
    args = DataArguments(train_files=[str(path)], text_column=column, text_sample_by="paragraph")
    corpus = load_corpus(args)
    texts = list(corpus.train["text"]) + list(corpus.validation["text"])
    assert len(texts) == 30 and corpus.train.column_names == ["text"]
    assert {t.replace("\n", "").strip() for t in texts} == {d.strip() for d in docs}


def test_glob_and_separate_validation_files(tmp_path, zh_docs):
    for i in range(3):
        (tmp_path / f"part{i}.txt").write_text("\n".join(zh_docs[i * 50 : (i + 1) * 50]), encoding="utf-8")
    (tmp_path / "val.txt").write_text("\n".join(zh_docs[200:220]), encoding="utf-8")
    corpus = load_corpus(
        DataArguments(train_files=[str(tmp_path / "part*.txt")], validation_files=[str(tmp_path / "val.txt")])
    )
    assert len(corpus.train) == 150 and len(corpus.validation) == 20


def test_builtin_corpus_strips_tags():
    assert strip_pos_tags("迈向/v  充满/v  [中央/n  电台/n]nt  。/w\n") == "迈向充满中央电台。"
    docs = corpus_module.BUILTIN_CORPORA["people_daily_1998"].documents()
    first = next(docs)
    assert first.startswith("迈向充满希望的新世纪") and "/" not in first


def test_validation_carve_is_deterministic(zh_file):
    a = load_corpus(DataArguments(train_files=[str(zh_file)]))
    b = load_corpus(DataArguments(train_files=[str(zh_file)]))
    assert list(a.validation["text"]) == list(b.validation["text"])


@pytest.mark.parametrize("name", list(corpus_module.BUILTIN_CORPORA))
def test_builtin_corpora_fingerprint_and_yield_text(name):
    args = DataArguments(corpus=name)
    first = corpus_module.source_of(args).fingerprint()
    assert first == corpus_module.source_of(args).fingerprint() and len(first) == 64
    assert first != corpus_module.source_of(DataArguments(corpus=name, validation_split_percentage=7)).fingerprint()
    docs = [d for _, d in zip(range(50), corpus_module.BUILTIN_CORPORA[name].documents())]
    assert len(docs) == 50 and all(d.strip() for d in docs) and sum(map(len, docs)) > 1000
