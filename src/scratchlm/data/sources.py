"""Where text comes from: a built-in corpus, local files or the Hub. `source_of` is the one place that
decides which; every back-end (cached, prepared, streamed) reads the corpus through `load_corpus`.

Every source ends as documents with one string column, `text`, one document per row: a `Dataset`, or
for `--streaming` a `DocumentStream` read in order. File checks live in `files.py`, the stream in
`documents.py`.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Protocol

import datasets
from datasets import Dataset

from ..arguments import DataArguments
from ..errors import ScratchError, leave_interrupts_to_the_main_process
from ..hub import require_hub
from ..internals import dataset_fingerprint
from .builtin import BUILTIN_CORPORA
from .documents import DocumentStream
from .files import (
    TEXT,
    FileChecker,
    as_text_column,
    expand_files,
    file_stats,
    load_local,
    local_loader,
    median_line_if_lines_are_parts_of_documents,
)

logger = logging.getLogger(__name__)

SPLIT_SEED = 1234
# The settings that change which documents a corpus yields, hashed into every corpus fingerprint.
HASHED_OPTIONS = ("text_column", "text_sample_by", "encoding_errors", "validation_split_percentage")


def hashed_options(args: DataArguments) -> list[str]:
    return [str(getattr(args, name)) for name in HASHED_OPTIONS]


def _options_hasher(args: DataArguments):
    hasher = hashlib.sha256()
    hasher.update(json.dumps(hashed_options(args)).encode())
    return hasher


@dataclass
class Loaded:
    train: Dataset
    validation: Dataset | None  # None: carve the held-out split from `train`
    fingerprint: str


class Source(Protocol):
    """A kind of corpus source. `fingerprint` hashes the content before anything is parsed (None when that is
    known only once loaded); `load` reads it whole, `stream` in order for `--streaming`."""

    def describe(self) -> str: ...

    def fingerprint(self) -> str | None: ...

    def load(self, fingerprint: str | None = None) -> Loaded: ...

    def stream(self) -> datasets.IterableDataset: ...

    def stream_validation(self) -> list[str] | None: ...

    def stream_fingerprint_parts(self) -> list: ...


def _same_files(train: list[Path], validation: list[Path]) -> list[Path]:
    """The validation files that are training files too: the same path, or the same bytes under another name."""
    by_size: dict[int, list[Path]] = {}
    for path in train:
        by_size.setdefault(path.stat().st_size, []).append(path)
    return [
        path
        for path in validation
        if any(filecmp.cmp(path, other, shallow=False) for other in by_size.get(path.stat().st_size, []))
    ]


class LocalFiles:
    def __init__(self, args: DataArguments):
        self.args = args
        self.checker = FileChecker(args.encoding_errors)

    def describe(self) -> str:
        return f"local files {' '.join(self.args.train_files)}"

    def fingerprint(self) -> str:
        """The hash of every file and hashed option; asked on every run, so it also warns about held-out files
        that are training files."""
        args = self.args
        if args.validation_files:
            files = expand_files(args.train_files, "--train_files")
            validation_files = expand_files(args.validation_files, "--validation_files")
            if shared := _same_files(files, validation_files):
                logger.warning(
                    "--validation_files %s %s also in --train_files: the held-out loss then measures memorisation, not "
                    "what the model learned; give text the run does not train on, or drop --validation_files to hold "
                    "out %s%% of the corpus",
                    ", ".join(map(str, shared)),
                    "is" if len(shared) == 1 else "are",
                    args.validation_split_percentage,
                )
        hasher = _options_hasher(self.args)
        for flag, patterns in (
            ("--train_files", self.args.train_files),
            ("--validation_files", self.args.validation_files or []),
        ):
            hasher.update(flag.encode())
            for path in expand_files(patterns, flag):
                self.checker.hash(path, hasher)
        self._warn_if_documents_span_lines()  # after the checks, which name a file that cannot be read
        return hasher.hexdigest()

    def _warn_if_documents_span_lines(self) -> None:
        """Judged on the first training file only: a corpus's files share a layout, and this runs on every start,
        where a thousand shards would each be read again."""
        if self.args.text_sample_by != "line":
            return
        first = expand_files(self.args.train_files, "--train_files")[0]
        if (median := median_line_if_lines_are_parts_of_documents(first)) is not None:
            logger.warning(
                "%s is read as one document per line (--text_sample_by line), but its lines are short (median "
                "%d characters) and blank lines group them, as in a play, verse, a novel or one sentence per "
                "line: every line would end with an end-of-text token, and the model learns to end the text at "
                "every line. If a document spans lines, pass --text_sample_by paragraph (a blank line ends a "
                "document) or document (one per file)",
                first,
                median,
            )

    def load(self, fingerprint: str | None = None) -> Loaded:
        args = self.args
        fingerprint = fingerprint or self.fingerprint()  # also checks every file before any is parsed
        files = expand_files(args.train_files, "--train_files")
        validation_files = expand_files(args.validation_files, "--validation_files") if args.validation_files else []
        before = {path: file_stats(path) for path in files + validation_files}
        train = load_local(files, args, "--train_files")
        validation = load_local(validation_files, args, "--validation_files") if validation_files else None
        self.checker.require_unchanged(files + validation_files, before)
        return Loaded(train, validation, fingerprint)

    def stream(self) -> datasets.IterableDataset:
        files = expand_files(self.args.train_files, "--train_files")
        loader, kwargs = local_loader(files, self.args)
        return datasets.load_dataset(
            loader, data_files=[str(p) for p in files], split="train", streaming=True, **kwargs
        )

    def stream_validation(self) -> list[str] | None:
        if not self.args.validation_files:
            return None
        files = expand_files(self.args.validation_files, "--validation_files")
        return list(load_local(files, self.args, "--validation_files")[TEXT])

    def stream_fingerprint_parts(self) -> list:
        """Names, sizes and modification times: a content hash would read the whole corpus before training."""
        self._warn_if_documents_span_lines()
        return [
            [str(path.resolve()), *file_stats(path)] for path in expand_files(self.args.train_files, "--train_files")
        ]


def _saved_to_disk(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


class HubDataset:
    """A Hub dataset, or a local folder that `datasets` reads as one: a folder of data files (as `load_dataset`
    takes it) or one written by `save_to_disk`. A local folder needs no Hub."""

    def __init__(self, args: DataArguments):
        self.args = args
        self.folder = Path(args.dataset_name) if Path(args.dataset_name).is_dir() else None
        self.saved = self.folder is not None and _saved_to_disk(self.folder)

    def describe(self) -> str:
        args = self.args
        kind = "dataset folder" if self.folder else "Hub dataset"
        return f"{kind} {args.dataset_name}" + (f" ({args.dataset_config_name})" if args.dataset_config_name else "")

    def fingerprint(self) -> None:
        return None  # datasets hashes the files once it has them: known after `load`

    def _require(self) -> None:
        if self.folder is None:
            require_hub(
                f"--dataset_name {self.args.dataset_name} (no such local folder)",
                fix="check the path, use local files (--train_files) or a built-in corpus (--corpus)",
            )

    def _load_all(self) -> datasets.DatasetDict:
        args = self.args
        if self.saved:
            saved = datasets.load_from_disk(str(self.folder))
            return (
                saved if isinstance(saved, datasets.DatasetDict) else datasets.DatasetDict({args.dataset_split: saved})
            )
        return datasets.load_dataset(args.dataset_name, args.dataset_config_name, revision=args.dataset_revision)

    def load(self, fingerprint: str | None = None) -> Loaded:
        args = self.args
        self._require()
        try:
            full = self._load_all()
        except Exception as err:
            raise ScratchError(
                f"--dataset_name {args.dataset_name}: could not load it: {err}".replace("\n", " ")
            ) from None
        if args.dataset_split not in full:
            raise ScratchError(
                f"--dataset_split {args.dataset_split} not in {args.dataset_name} (has: {', '.join(full)})"
            )
        if args.text_column not in full[args.dataset_split].column_names:
            raise ScratchError(
                f"--text_column {args.text_column} not in {args.dataset_name} "
                f"(has: {', '.join(full[args.dataset_split].column_names)})"
            )
        full = as_text_column(full, args.text_column)
        train = full[args.dataset_split]
        validation = full["validation"] if "validation" in full and args.dataset_split != "validation" else None
        hasher = _options_hasher(args)
        hasher.update(dataset_fingerprint(train).encode())
        hasher.update((dataset_fingerprint(validation) if validation is not None else "").encode())
        return Loaded(train, validation, hasher.hexdigest())

    def _stream_split(self, split: str) -> datasets.IterableDataset:
        args = self.args
        if self.saved:
            return self._load_all()[split].to_iterable_dataset()
        return datasets.load_dataset(
            args.dataset_name, args.dataset_config_name, revision=args.dataset_revision, split=split, streaming=True
        )

    def stream(self) -> datasets.IterableDataset:
        self._require()
        try:
            return self._stream_split(self.args.dataset_split)
        except Exception as err:
            raise ScratchError(
                f"--dataset_name {self.args.dataset_name}: could not stream it: {err}".replace("\n", " ")
            ) from None

    def stream_validation(self) -> list[str] | None:
        args = self.args
        try:
            if self.saved:
                names = list(self._load_all())
            else:
                names = datasets.get_dataset_split_names(
                    args.dataset_name, args.dataset_config_name, revision=args.dataset_revision
                )
        except Exception:
            names = []
        if "validation" not in names or args.dataset_split == "validation":
            return None
        stream = DocumentStream(self._stream_split("validation"), args.text_column, 0, 0)
        return list(islice(stream.texts(), args.streaming_validation_documents))

    def stream_fingerprint_parts(self) -> list:
        args = self.args
        return [[args.dataset_name, args.dataset_config_name, args.dataset_revision, args.dataset_split]]


def _builtin_documents(name: str) -> Iterator[dict]:
    for text in BUILTIN_CORPORA[name].documents():
        yield {TEXT: text}


class BuiltinSource:
    def __init__(self, args: DataArguments):
        self.args = args
        self.name = resolve_builtin(args.corpus)

    def describe(self) -> str:
        return f"built-in corpus {self.name}: {BUILTIN_CORPORA[self.name].description}"

    def fingerprint(self) -> str:
        hasher = _options_hasher(self.args)
        hasher.update(self.name.encode())
        for path in BUILTIN_CORPORA[self.name].files():  # installed sources: hashed, not vetted like user files
            hasher.update(path.read_bytes())
        return hasher.hexdigest()

    def load(self, fingerprint: str | None = None) -> Loaded:
        documents = Dataset.from_dict({TEXT: list(BUILTIN_CORPORA[self.name].documents())})
        return Loaded(documents, None, fingerprint or self.fingerprint())

    def stream(self) -> datasets.IterableDataset:
        return datasets.IterableDataset.from_generator(_builtin_documents, gen_kwargs={"name": self.name})

    def stream_validation(self) -> list[str] | None:
        return None

    def stream_fingerprint_parts(self) -> list:
        return [[self.name]]


def corpus_name(description: str) -> str:
    """A source's description without its details, for one-line messages ("built-in corpus zh_demo")."""
    return description.split(":")[0]


def source_of(args: DataArguments) -> Source:
    """The one place that decides where the corpus comes from: local files, a Hub dataset or a built-in corpus."""
    if args.train_files:
        return LocalFiles(args)
    if args.dataset_name:
        return HubDataset(args)
    return BuiltinSource(args)


def resolve_builtin(name: str | None) -> str:
    if name is None:
        raise ScratchError("no corpus given: pass --corpus NAME (built-in), --train_files or --dataset_name")
    if name not in BUILTIN_CORPORA:
        raise ScratchError(f"--corpus {name} is not a built-in corpus; choose one of {', '.join(BUILTIN_CORPORA)}")
    return name


# ---------------------------------------------------------------------------------------------
# The entry point: a corpus, its held-out split, and a fingerprint of its content.
# ---------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    train: Dataset | DocumentStream  # one "text" column; a stream with --streaming
    validation: Dataset
    fingerprint: str  # changes whenever the text could have changed
    description: str


def _require_text(ds: Dataset, column: str, description: str) -> None:
    """A column of numbers, or of nulls only, is not documents: one line instead of an error deep in a map."""
    feature = ds.features.get(TEXT)
    dtype = getattr(feature, "dtype", type(feature).__name__)
    if dtype not in ("string", "large_string"):
        raise ScratchError(
            f"the text column ({column!r}) of {description} holds {dtype} values, not text: point --text_column at "
            "the column that holds the documents, or write them as strings"
        )


def not_blank(batch: dict) -> list[bool]:
    leave_interrupts_to_the_main_process()  # in worker processes: a Ctrl-C is the main process's to handle
    return [bool(t and t.strip()) for t in batch[TEXT]]


def _drop_blank(ds: Dataset, num_proc: int | None) -> Dataset:
    return ds.filter(
        not_blank,
        batched=True,
        num_proc=num_proc if num_proc and num_proc > 1 and len(ds) > 10_000 else None,  # datasets pools even one
        desc="dropping blank documents",
    )


# Below this many documents the held-out documents' share of the text is checked: a few long ones (books read
# with --text_sample_by document) could put far more than the percentage asked for into the held-out set.
FEW_DOCUMENTS = 100


def _carve_validation(ds: Dataset, percentage: float) -> tuple[Dataset, Dataset]:
    if len(ds) == 1:
        return _carve_the_ends(ds[TEXT], percentage, ds.features)
    n_val = min(len(ds) - 1, max(1, round(len(ds) * percentage / 100)))
    parts = ds.train_test_split(test_size=n_val, seed=SPLIT_SEED, shuffle=True)
    if len(ds) < FEW_DOCUMENTS:
        held_out = sum(map(len, parts["test"][TEXT])) / sum(map(len, ds[TEXT]))
        if held_out > 2 * percentage / 100:
            logger.info(
                "%d whole documents held out would be %.0f%% of the text, not %s%%: the end of each is held out",
                n_val,
                100 * held_out,
                percentage,
            )
            return _carve_the_ends(ds[TEXT], percentage, ds.features)
    return parts["train"], parts["test"]


def _carve_the_ends(texts: list[str], percentage: float, features) -> tuple[Dataset, Dataset]:
    """The last `percentage`% of each document is held out, from the line (or else the word) that starts there,
    as nanoGPT's character-level data does with its one text."""
    heads, tails = [], []
    for text in texts:
        cut = round(len(text) * (1 - percentage / 100))
        for separator in ("\n", " "):
            boundary = text.find(separator, cut)
            if boundary != -1 and text[:boundary].strip() and text[boundary + 1 :].strip():
                cut = boundary + 1
                break
        heads.append(text[:cut])
        tails.append(text[cut:])
    heads, tails = [t for t in heads if t.strip()], [t for t in tails if t.strip()]
    if not heads or not tails:
        raise ScratchError(
            "the corpus is one document too short to hold some of it out: add text or give --validation_files"
        )
    held_out = sum(map(len, tails))
    logger.info(
        "the last %s characters of %s (%.1f%% of the text) are held out",
        f"{held_out:,}",
        "the corpus's one document" if len(texts) == 1 else f"each of its {len(texts)} documents",
        100 * held_out / sum(map(len, texts)),
    )
    return Dataset.from_dict({TEXT: heads}, features=features), Dataset.from_dict({TEXT: tails}, features=features)


def load_corpus(
    args: DataArguments,
    fingerprint: str | None = None,
    num_proc: int | None = None,
    source: Source | None = None,
) -> Corpus:
    """The configured corpus as train/validation documents (blank documents dropped); with `--streaming`,
    the training documents as a stream and a materialised held-out set. A caller that already hashed the
    corpus passes the `source` it asked and its `fingerprint`, so the files are checked against that hash."""
    source = source or source_of(args)
    if args.streaming:
        return _load_stream(args, source)
    loaded = source.load(fingerprint)
    description = source.describe()
    for part in (loaded.train, loaded.validation):
        if part is not None:
            _require_text(part, args.text_column, description)
    train = _drop_blank(loaded.train, num_proc)
    if len(train) == 0:
        raise ScratchError(f"the training corpus ({description}) has no text: it is empty or only whitespace")
    if loaded.validation is None:
        train, validation = _carve_validation(train, args.validation_split_percentage)
    else:
        validation = _drop_blank(loaded.validation, num_proc)
        if len(validation) == 0:
            raise ScratchError("the validation files have no text: they are empty or only whitespace")
    return Corpus(train=train, validation=validation, fingerprint=loaded.fingerprint, description=description)


def _load_stream(args: DataArguments, source: Source) -> Corpus:
    stream = source.stream()
    description = f"{source.describe()} (streamed)"
    validation = source.stream_validation()
    stride = 0 if validation is not None else max(2, round(100 / args.validation_split_percentage))
    documents = DocumentStream(stream, args.text_column, stride, args.streaming_validation_documents)
    if validation is None:
        validation = documents.heldout_texts()
    validation = [t for t in validation if t and t.strip()]
    if not validation:
        raise ScratchError(
            f"the stream ({description}) gave no held-out documents: it is empty, or give --validation_files"
        )
    parts = [*hashed_options(args), args.streaming_validation_documents, *source.stream_fingerprint_parts()]
    return Corpus(
        train=documents,
        validation=Dataset.from_dict({TEXT: validation}),
        fingerprint=hashlib.sha256(json.dumps(parts).encode()).hexdigest(),
        description=description,
    )
