import json
import unicodedata

import pytest
from transformers import AutoTokenizer

from scratchlm.arguments import TokenizerArguments
from scratchlm.errors import ScratchError
from scratchlm.tokenizer import REPORT_FILE, load_tokenizer, tokenizer_fingerprint, train_tokenizer

ROUND_TRIP = [
    "中国经济发展，人民生活改善。",
    "Hello, world!",
    "0123 4567.89",
    "emoji 😀🎉 ok",
    "tabs\tand   runs  of\n\n spaces ",
    "混合 mixed 文本 123 ！",
]


def test_bytelevel_gpt_tokenizer_loads_with_autotokenizer(gpt_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    assert tok.is_fast
    assert tok.eos_token == tok.bos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert len(tok) == 600
    # a GPT tokenizer adds nothing around the text
    assert tok("中国")["input_ids"] == tok("中国", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_bytelevel_round_trip(gpt_tokenizer_dir, text):
    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    assert tok.decode(tok(text)["input_ids"]) == text


def test_nfkc_folds_full_width_and_round_trips_normalised_text(tmp_path, zh_docs):
    train_tokenizer(zh_docs[:200], TokenizerArguments(vocab_size=500, normalization="nfkc"), tmp_path / "t")
    tok = AutoTokenizer.from_pretrained(tmp_path / "t")
    assert tok.decode(tok("１９９８年")["input_ids"]) == "1998年"
    for text in ROUND_TRIP:
        assert tok.decode(tok(text)["input_ids"]) == unicodedata.normalize("NFKC", text)


def test_bert_style_tokenizer_has_specials_and_template(tmp_path, zh_docs):
    train_tokenizer(zh_docs[:200], TokenizerArguments(vocab_size=500, special_tokens_style="bert"), tmp_path / "b")
    tok = AutoTokenizer.from_pretrained(tmp_path / "b")
    for name in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"):
        assert getattr(tok, name) is not None, name
    ids = tok("中国")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    pair = tok("中国", "经济")["input_ids"]
    assert pair.count(tok.sep_token_id) == 2 and pair[0] == tok.cls_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "中国"


def test_char_level_tokenizer_one_token_per_character(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
    train_tokenizer([text], TokenizerArguments(tokenizer_type="char"), tmp_path / "c")
    tok = AutoTokenizer.from_pretrained(tmp_path / "c")
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert len(tok) == len(set(text)) + 3  # + <|endoftext|> <|pad|> <|unk|>
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    assert tok("Z")["input_ids"] == [tok.unk_token_id]


def test_report_written_next_to_tokenizer(gpt_tokenizer_dir):
    report = json.loads((gpt_tokenizer_dir / REPORT_FILE).read_text())
    assert report["vocab_size"] == 600 and report["training_bytes"] > 10_000
    assert 0 < report["chars_per_token"] < report["bytes_per_token"]
    assert report["top_cjk_characters_considered"] > 100
    assert 0 < report["top_cjk_single_token_share"] <= 1


def test_refuses_to_overwrite_existing_tokenizer(gpt_tokenizer_dir):
    before = (gpt_tokenizer_dir / "tokenizer.json").read_bytes()
    with pytest.raises(ScratchError, match="already exists"):
        train_tokenizer(["abc"], TokenizerArguments(vocab_size=300), gpt_tokenizer_dir)
    assert (gpt_tokenizer_dir / "tokenizer.json").read_bytes() == before


def test_load_tokenizer_requires_special_tokens(tmp_path, gpt_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    tok.pad_token = None
    tok.save_pretrained(tmp_path / "nopad")
    with pytest.raises(ScratchError, match="no pad_token"):
        load_tokenizer(str(tmp_path / "nopad"))


def test_load_tokenizer_rejects_directory_without_tokenizer(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScratchError, match="holds no tokenizer"):
        load_tokenizer(str(tmp_path / "empty"))


def test_fingerprint_follows_content(tmp_path, gpt_tokenizer_dir, zh_docs):
    a = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(AutoTokenizer.from_pretrained(gpt_tokenizer_dir))
    train_tokenizer(zh_docs[:300], TokenizerArguments(vocab_size=601), tmp_path / "other")
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path / "other"))


def test_train_tokenizer_script_on_local_files(tmp_path, zh_file):
    import train_tokenizer as script

    out = tmp_path / "tok"
    script.cli(
        [
            "--train_files",
            str(zh_file),
            "--vocab_size",
            "500",
            "--output_dir",
            str(out),
            "--normalization",
            "nfkc",
            "--model_max_length",
            "256",
        ]
    )
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 500 and tok.model_max_length == 256
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["normalization"] == "nfkc" and report["heldout_characters"] > 0
