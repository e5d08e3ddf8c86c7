"""Train tokenizers that stock `AutoTokenizer` loads, report on them, and load them with checks."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .arguments import TokenizerArguments
from .errors import ScratchError, say_interrupted, writable_folder
from .hub import hub_reachable

logger = logging.getLogger(__name__)

REPORT_FILE = "tokenizer_report.json"
GPT_EOS, GPT_PAD = "<|endoftext|>", "<|pad|>"
BERT_SPECIALS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}
CHAR_UNK = "<|unk|>"


def special_tokens(style: str, with_unk: bool) -> dict[str, str]:
    """The special tokens of a model family, as `PreTrainedTokenizerFast` keyword arguments."""
    if style == "bert":
        return dict(BERT_SPECIALS)
    tokens = {"bos_token": GPT_EOS, "eos_token": GPT_EOS, "pad_token": GPT_PAD}
    if with_unk:
        tokens["unk_token"] = CHAR_UNK
    return tokens


def _ordered_unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
class _Tally:
    """Passes texts through while counting bytes and characters (for the report)."""

    def __init__(self, texts: Iterable[str]):
        self.texts, self.bytes, self.chars = texts, 0, collections.Counter()

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            self.bytes += len(text.encode("utf-8"))
            self.chars.update(text)
            yield text


def _bytelevel_bpe(texts: Iterable[str], args: TokenizerArguments, specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if args.normalization == "nfkc":
        tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),
    )
    _train_answering_ctrl_c(tok, texts, trainer)
    return tok


class _TrainingStopped(Exception):
    pass


def _train_answering_ctrl_c(tok: Tokenizer, texts: Iterable[str], trainer) -> None:
    """`tok.train_from_iterator`, in a thread of its own.

    tokenizers trains in Rust threads and returns to the interpreter when it is done, so a Ctrl-C in the thread that
    calls it would wait for the whole training: 11 s on zh_demo (12 MB at 1 MB/s on 2 cores), a quarter of an hour
    on 1 GB. The main thread only waits, and takes a Ctrl-C at once; the texts then stop flowing, which ends the
    training within seconds (2 s on zh_demo), and the interrupt goes on up.

    The interpreter must not shut down while the Rust threads still read texts: they would call into a finalized
    interpreter and abort the process ("FATAL: exception not rethrown"). So the wait goes on until the training has
    returned, on an Event: Python 3.11's `Thread.join`, interrupted, marks a running thread as finished.
    """
    stop, done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def until_stopped() -> Iterator[str]:
        for text in texts:
            if stop.is_set():
                raise _TrainingStopped
            yield text

    def train() -> None:
        try:
            tok.train_from_iterator(until_stopped(), trainer)
        except BaseException as err:  # re-raised in the calling thread
            failures.append(err)
        finally:
            done.set()

    threading.Thread(target=train, name="tokenizer training", daemon=True).start()
    try:
        done.wait()  # a signal interrupts the wait (POSIX)
    except BaseException:
        stop.set()
        try:
            done.wait()  # what was read is still counted and merged: seconds
        except BaseException:  # asked again: leave at once, without shutting the interpreter down under Rust
            os._exit(say_interrupted())
        raise
    if failures:
        raise failures[0]


def _char_level(tally: _Tally, args: TokenizerArguments, specials: list[str]) -> Tokenizer:
    for _ in tally:  # one streaming pass collects the alphabet
        pass
    seen = "".join(tally.chars)
    alphabet = sorted(set(unicodedata.normalize("NFKC", seen) if args.normalization == "nfkc" else seen))
    vocab = {token: i for i, token in enumerate(specials + [c for c in alphabet if c not in specials])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=CHAR_UNK if CHAR_UNK in vocab else specials[1]))
    if args.normalization == "nfkc":
        tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok


def train_tokenizer(
    texts: Iterable[str],
    args: TokenizerArguments,
    output_dir: str | Path,
    heldout_texts: list[str] | None = None,
    model_max_length: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train on streamed `texts`, save to `output_dir` with `save_pretrained`, and write the report."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ScratchError(f"tokenizer directory {output_dir} is a file: choose a new path for the tokenizer")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ScratchError(
            f"tokenizer directory {output_dir} already exists and is not empty: choose a new path or delete it yourself"
        )
    writable_folder(output_dir.parent, "the folder of tokenizer directory", fix="choose a path you can write to")
    named = special_tokens(args.special_tokens_style, with_unk=args.tokenizer_type == "char")
    specials = _ordered_unique(named.values())
    tally = _Tally(texts)
    start = time.perf_counter()
    if args.tokenizer_type == "char":
        tok = _char_level(tally, args, specials)
    else:
        tok = _bytelevel_bpe(tally, args, specials)
    seconds = time.perf_counter() - start
    if tally.bytes == 0:
        raise ScratchError("the tokenizer's training text is empty: check the corpus")
    if args.special_tokens_style == "bert":
        cls, sep = tok.token_to_id(BERT_SPECIALS["cls_token"]), tok.token_to_id(BERT_SPECIALS["sep_token"])
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
    # BERT's template gives the second sentence of a pair segment 1; the ids reach the model only when listed here.
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if args.special_tokens_style == "bert" else None
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        clean_up_tokenization_spaces=False,
        **named,
        **({"model_input_names": inputs} if inputs else {}),
    )
    if model_max_length:
        fast.model_max_length = model_max_length
    report = tokenizer_report(fast, tally, seconds, heldout_texts or [], args)
    # Written beside, then renamed: an interrupted save never leaves a half tokenizer where one is expected.
    tmp = output_dir.with_name(f"{output_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    fast.save_pretrained(tmp)
    make_portable(tmp)
    (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if output_dir.exists():  # empty, as checked above
        output_dir.rmdir()
    os.replace(tmp, output_dir)
    log_report(report)
    return fast


def iter_texts(ds, max_bytes: int | None = None, batch_size: int = 1000) -> Iterator[str]:
    """Stream the documents of `ds`, stopping once `max_bytes` of UTF-8 have been yielded."""
    seen = 0
    for batch in ds.iter(batch_size=batch_size):
        for text in batch["text"]:
            if max_bytes is not None and seen >= max_bytes:
                return
            seen += len(text.encode("utf-8"))
            yield text


HELDOUT_TEXTS_FOR_REPORT = 2000


def train_tokenizer_on_corpus(
    corpus, args: TokenizerArguments, output_dir: str | Path, model_max_length: int | None = None
) -> PreTrainedTokenizerFast:
    """Train on the corpus's training split (streamed) and report on up to 2000 held-out documents."""
    validation = corpus.validation
    heldout = list(validation.select(range(min(HELDOUT_TEXTS_FOR_REPORT, len(validation))))["text"])
    texts = iter_texts(corpus.train, args.max_tokenizer_train_bytes)
    return train_tokenizer(texts, args, output_dir, heldout_texts=heldout, model_max_length=model_max_length)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


# The settings a trained tokenizer's report records, which a run's settings can disagree with.
REPORTED_SETTINGS = {
    "tokenizer_type": "tokenizer_type",
    "special_tokens_style": "special_tokens_style",
    "normalization": "normalization",
    "requested_vocab_size": "vocab_size",
}


def settings_it_was_not_trained_with(path: str | Path, args: TokenizerArguments) -> list[str]:
    """Where a saved tokenizer's report disagrees with `args` ("vocab_size 400, not 1000"); empty for a
    tokenizer without a report (a stock one)."""
    report_file = Path(path) / REPORT_FILE
    if not report_file.is_file():
        return []
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return []
    return [
        f"{setting} {report[key]}, not {getattr(args, setting)}"
        for key, setting in REPORTED_SETTINGS.items()
        if key in report and report[key] != getattr(args, setting)
    ]


def tokenizer_report(
    tok: PreTrainedTokenizerBase, tally: _Tally, seconds: float, heldout: list[str], args: TokenizerArguments
) -> dict:
    report = {
        "tokenizer_type": args.tokenizer_type,
        "special_tokens_style": args.special_tokens_style,
        "normalization": args.normalization,
        "vocab_size": len(tok),
        "training_bytes": tally.bytes,
        "training_seconds": round(seconds, 2),
        "training_mb_per_second": round(tally.bytes / 1e6 / max(seconds, 1e-9), 2),
    }
    if args.tokenizer_type != "char":  # BPE stops below the size asked for when a corpus runs out of merges
        report["requested_vocab_size"] = args.vocab_size
    if heldout:
        n_tokens = sum(len(ids) for ids in tok(heldout, add_special_tokens=False)["input_ids"])
        n_chars = sum(len(t) for t in heldout)
        n_bytes = sum(len(t.encode("utf-8")) for t in heldout)
        report.update(
            heldout_characters=n_chars,
            heldout_tokens=n_tokens,
            chars_per_token=round(n_chars / max(n_tokens, 1), 4),
            bytes_per_token=round(n_bytes / max(n_tokens, 1), 4),
        )
    common_cjk = [c for c, _ in tally.chars.most_common() if is_cjk(c)][:3500]
    if common_cjk:
        single = sum(len(tok(c, add_special_tokens=False)["input_ids"]) == 1 for c in common_cjk)
        report["top_cjk_characters_considered"] = len(common_cjk)
        report["top_cjk_single_token_share"] = round(single / len(common_cjk), 4)
    return report


def log_report(report: dict) -> None:
    logger.info("tokenizer report:\n%s", "\n".join(f"  {k:32s} {v}" for k, v in report.items()))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load_tokenizer(
    name_or_path: str,
    required: tuple[str, ...] = ("eos_token", "pad_token"),
    argument: str = "--tokenizer_name_or_path",
) -> PreTrainedTokenizerBase:
    """Load with stock AutoTokenizer and check the special tokens a recipe relies on. `argument` is what the user
    typed the path as, for the messages: a recipe's flag, or a command's positional argument."""
    path = Path(name_or_path)
    recipe = argument == "--tokenizer_name_or_path"
    if path.is_file():
        raise ScratchError(
            f"{argument} {path} is a file: pass the folder that holds it ({path.parent}); a tokenizer is a folder "
            "(tokenizer.json and tokenizer_config.json)"
        )
    if path.exists() and not ((path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()):
        raise ScratchError(
            f"{argument} {path} holds no tokenizer (no tokenizer.json): point it at a saved tokenizer"
            + (" or at a directory that does not exist yet" if recipe else " or at a run's output_dir")
        )
    if not path.exists() and not hub_reachable():
        raise ScratchError(
            f"{argument} {name_or_path} does not exist locally and the Hub cannot be reached: check the path"
            + (
                f", train one with tokenizer_training/train_tokenizer.py --output_dir {name_or_path}, or pass "
                "--train_tokenizer_if_missing true to train it from the corpus"
                if recipe
                else ", or go online for a Hub name"
            )
        )
    if (path / "tokenizer.json").is_file():
        try:
            json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ScratchError(
                f"tokenizer file {path / 'tokenizer.json'} is not valid JSON (cut short, or not a tokenizer): restore "
                "it, or train the tokenizer again into a new directory with tokenizer_training/train_tokenizer.py"
            ) from None
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise ScratchError(f"could not load tokenizer {name_or_path}: {err}".replace("\n", " ")) from None
    missing = [name for name in required if getattr(tok, name, None) is None]
    if missing:
        # The default style gives a GPT-style tokenizer, which has no [CLS]/[SEP]/[MASK]: name the flag that adds them.
        bert_tokens = {"cls_token", "sep_token", "mask_token"} & set(missing)
        raise ScratchError(
            f"tokenizer {name_or_path} has no {', '.join(missing)}, which this recipe needs: train one with "
            "tokenizer_training/train_tokenizer.py"
            + (" --special_tokens_style bert" if bert_tokens else "")
            + " (it adds them) or add them with tokenizer.add_special_tokens"
        )
    return tok


TOKENIZER_CONFIG = "tokenizer_config.json"
# transformers 5 records the class as TokenizersBackend, which transformers 4.x (what vLLM, optimum and
# llama.cpp's converter pin) does not know; PreTrainedTokenizerFast loads the same tokenizer in both.
PORTABLE_CLASS = "PreTrainedTokenizerFast"
# Arguments of the load that wrote the file, not properties of the tokenizer: a copy on the Hub would carry
# them to every user (local_files_only would even keep it from fetching its own files).
LOAD_ARGUMENTS = ("is_local", "local_files_only")


def make_portable(directory: str | Path) -> None:
    """Rewrites a saved tokenizer's config so that any transformers from 4.40 on loads it as it is."""
    path = Path(directory) / TOKENIZER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = PORTABLE_CLASS
    if config.get("tokenizer_class") == PORTABLE_CLASS:
        # 4.x's PreTrainedTokenizerFast would return token_type_ids by default, and GPT-2 adds an embedding
        # for them to every position: keep the inputs 5.x gives (those of TokenizersBackend)
        config.setdefault("model_input_names", ["input_ids", "attention_mask"])
    for key in LOAD_ARGUMENTS:
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the token ids: the tokenizer pipeline and its special tokens."""
    hasher = hashlib.sha256()
    backend = getattr(tok, "backend_tokenizer", None)
    hasher.update(backend.to_str().encode() if backend is not None else repr(sorted(tok.get_vocab().items())).encode())
    hasher.update(json.dumps(tok.special_tokens_map, sort_keys=True, default=str).encode())
    return hasher.hexdigest()
