import pytest

from scratchlm.data.packing import pack, tokenize
from scratchlm.objectives import OBJECTIVES


def test_pack_joins_documents_with_separator_and_cuts_full_blocks():
    blocks = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4, separator_id=0)
    # stream: 1 2 3 0 4 5 0 6 7 8 9 0 -> three full blocks, nothing left over
    assert blocks == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]


def test_pack_drops_the_incomplete_tail_only():
    blocks = pack([[1, 2, 3, 4, 5]], block_size=4, separator_id=0)
    assert blocks == [[1, 2, 3, 4]]
    assert pack([[1]], block_size=4, separator_id=0) == []


def test_pack_wraps_each_block_in_prefix_and_suffix():
    blocks = pack([[1, 2, 3], [4, 5, 6]], block_size=5, separator_id=9, block_prefix=[7], block_suffix=[8])
    # content per block is 3: stream 1 2 3 9 4 5 6 9 -> [1 2 3] [9 4 5], tail [6 9] dropped
    assert blocks == [[7, 1, 2, 3, 8], [7, 9, 4, 5, 8]]
    assert all(len(b) == 5 and b[0] == 7 and b[-1] == 8 for b in blocks)


def test_pack_keeps_every_token_in_order():
    docs = [list(range(i * 10, i * 10 + n)) for i, n in enumerate([3, 7, 1, 12, 5])]
    blocks = pack(docs, block_size=6, separator_id=-1)
    flat = [t for b in blocks for t in b]
    stream = [t for d in docs for t in d + [-1]]
    assert flat == stream[: len(flat)]
    assert len(stream) - len(flat) < 6


def test_pack_rejects_block_without_room_for_content():
    with pytest.raises(ValueError):
        pack([[1]], block_size=2, separator_id=0, block_prefix=[1], block_suffix=[2])


def test_tokenize_adds_no_special_tokens(gpt_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    ids = tokenize(["中国经济", "hello"], tok)
    assert len(ids) == 2 and tok.eos_token_id not in ids[0] + ids[1]
    assert tok.decode(ids[0]) == "中国经济"


def test_causal_spec_separates_documents_with_eos(gpt_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    spec = OBJECTIVES["causal"].packing(tok, 8)
    assert spec.separator_id == tok.eos_token_id and spec.block_prefix == ()


def test_long_documents_are_tokenized_in_pieces_with_the_ids_of_the_whole(gpt_tokenizer_dir, zh_docs):
    """A tokenizer's memory grows with the longest text it is given (a 50 MB one-line file took 10 GB): long
    documents go in as pieces, cut where byte-level BPE splits anyway, so the ids do not change."""
    from transformers import AutoTokenizer

    from scratchlm.data.packing import PIECE_CHARS, pieces

    tok = AutoTokenizer.from_pretrained(gpt_tokenizer_dir)
    words = [f"w{i % 97}" + " " * (1 + i % 4) for i in range(60_000)]  # runs of 1-4 spaces between words
    english = "".join(words) + " ".join(zh_docs[:50])
    cjk = ("".join(zh_docs).replace(" ", "") * 10)[:250_000]  # no space to cut at: cut at the limit
    for text in (english, cjk):
        parts = pieces(text)
        assert len(parts) > 2 and "".join(parts) == text and max(map(len, parts)) <= PIECE_CHARS
    assert tokenize([english, "短的", english], tok) == [
        tok.backend_tokenizer.encode(t, add_special_tokens=False).ids for t in (english, "短的", english)
    ]
    whole = tok.backend_tokenizer.encode(cjk, add_special_tokens=False).ids
    assert abs(len(tokenize([cjk], tok)[0]) - len(whole)) <= 2 * len(pieces(cjk))  # only the cuts differ
