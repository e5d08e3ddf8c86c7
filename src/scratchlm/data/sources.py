"""Where text comes from: a built-in corpus, local files or the Hub. `source_of` is the one place that
decides which; every back-end (cached, prepared, streamed) reads the corpus through `load_corpus`.

Every source ends as documents with one string column, `text`, one document per row: a `Dataset`, or
for `--streaming` a `DocumentStream` read in order.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import datasets
from datasets import Dataset

from ..arguments import DataArguments
from ..errors import ScratchError
from ..hub import require_hub
from ..internals import dataset_fingerprint
from .builtin import BUILTIN_CORPORA

logger = logging.getLogger(__name__)

TEXT = "text"
SPLIT_SEED = 1234
_READ_CHUNK = 1 << 22


# ---------------------------------------------------------------------------------------------
# Local files: checked (exists, not empty, UTF-8) and hashed in one streaming pass.
# ---------------------------------------------------------------------------------------------
_LOADERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def expand_files(patterns: list[str], flag: str) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise ScratchError(f"{flag}: {pattern} matches no file; check the path (globs such as data/*.txt work)")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                raise ScratchError(f"{flag}: {path} is a directory; give the files in it, e.g. {path}/*.txt")
            if path.suffix.lower() not in _LOADERS:
                raise ScratchError(
                    f"{flag}: {path} has an unsupported extension; use one of {', '.join(sorted(_LOADERS))}"
                )
            files.append(path)
    kinds = {_LOADERS[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise ScratchError(f"{flag}: mixes file kinds ({', '.join(sorted(kinds))}); give files of one kind")
    return files


# (size, modification time) of each corpus file when it was hashed: a file that changes after that, or
# while it is read, would put other text under the cache key of the text that was hashed.
_STATS_WHEN_HASHED: dict[Path, tuple[int, int]] = {}


def _file_stats(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def require_unchanged(files: list[Path], before: dict[Path, tuple[int, int]]) -> None:
    for path in files:
        seen = _STATS_WHEN_HASHED.get(path.resolve(), before.get(path))
        if seen is not None and _file_stats(path) != seen:
            raise ScratchError(
                f"corpus file {path} changed while it was being read (its size or modification time moved): wait "
                "until whatever writes it has finished, or train on a copy that nothing writes to"
            )


def hash_and_check_file(path: Path, hasher, encoding_errors: str) -> None:
    """Feed the file to `hasher`; raise at the first byte that is not UTF-8 when errors are strict."""
    stats = _file_stats(path)
    size = stats[0]
    if size == 0:
        raise ScratchError(f"corpus file {path} is empty; remove it from the file list or add text to it")
    check_utf8 = encoding_errors == "strict" and path.suffix.lower() != ".parquet"
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            hasher.update(chunk)
            if check_utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as err:
                    raise ScratchError(
                        f"corpus file {path} is not valid UTF-8 at byte offset "
                        f"{offset - len(decoder.getstate()[0]) + err.start}: "
                        "convert it to UTF-8, or pass --encoding_errors replace to substitute bad bytes"
                    ) from None
            offset += len(chunk)
    if _file_stats(path) != stats:
        _STATS_WHEN_HASHED.pop(path.resolve(), None)
        require_unchanged([path], {path: stats})
    _STATS_WHEN_HASHED[path.resolve()] = stats
    if check_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ScratchError(
                f"corpus file {path} ends in the middle of a UTF-8 character (byte offset {size}): "
                "convert it to UTF-8, or pass --encoding_errors replace"
            ) from None


def _first_bad_json_line(path: Path) -> int | None:
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    return number
    return None


def local_loader(files: list[Path], args: DataArguments) -> tuple[str, dict]:
    """The `datasets` builder for these files and its options, for `load_dataset` (in memory or streamed)."""
    loader = _LOADERS[files[0].suffix.lower()]
    kwargs: dict = {} if loader == "parquet" else {"encoding_errors": args.encoding_errors}
    if loader == "text":
        kwargs["sample_by"] = args.text_sample_by
    return loader, kwargs


def load_local(files: list[Path], args: DataArguments, flag: str) -> Dataset:
    loader, kwargs = local_loader(files, args)
    try:
        ds = datasets.load_dataset(loader, data_files=[str(p) for p in files], split="train", **kwargs)
    except Exception as err:  # datasets wraps parser errors in several exception types
        if loader == "json":
            for path in files:
                if (line := _first_bad_json_line(path)) is not None and path.suffix.lower() == ".jsonl":
                    raise ScratchError(f"{path} line {line} is not valid JSON: fix or remove that line") from None
        raise ScratchError(f"{flag}: could not read {', '.join(map(str, files))}: {err}".replace("\n", " ")) from None
    if args.text_column not in ds.column_names:
        raise ScratchError(
            f"{flag}: {files[0]} has no '{args.text_column}' field (it has: {', '.join(ds.column_names)}); "
            "pass --text_column with the field that holds the text"
        )
    return _as_text_column(ds, args.text_column)


def _as_text_column(ds, column: str):
    ds = ds.select_columns([column])
    return ds.rename_column(column, TEXT) if column != TEXT else ds


# ---------------------------------------------------------------------------------------------
# A stream of documents, for --streaming
# ---------------------------------------------------------------------------------------------
READ_BATCH = 1000  # documents per read from a streamed source


@dataclass
class DocumentStream:
    """The training documents of a stream, in order, with the held-out ones left out.

    Document i (counting non-blank documents from the start) is held out when `stride` divides it
    and it is among the first `stride * heldout_documents`; `stride` is 0 when the held-out set
    comes from elsewhere (validation files or the dataset's own split).
    """

    source: datasets.IterableDataset
    text_column: str
    stride: int
    heldout_documents: int

    def _documents(self) -> Iterator[tuple[int, str]]:
        index = 0
        # .iter() reads the whole source even inside a dataloader worker; the worker split is the caller's.
        for batch in self.source.iter(batch_size=READ_BATCH):
            if self.text_column not in batch:
                raise ScratchError(
                    f"--text_column {self.text_column} is not in the stream (it has: {', '.join(batch)})"
                )
            for text in batch[self.text_column]:
                if text and text.strip():
                    yield index, text
                    index += 1

    def is_heldout(self, index: int) -> bool:
        return self.stride > 0 and index % self.stride == 0 and index < self.stride * self.heldout_documents

    def texts(self) -> Iterator[str]:
        return (text for index, text in self._documents() if not self.is_heldout(index))

    def heldout_texts(self) -> list[str]:
        texts = []
        for index, text in self._documents():
            if index >= self.stride * self.heldout_documents:
                break
            if self.is_heldout(index):
                texts.append(text)
        return texts

    def iter(self, batch_size: int) -> Iterator[dict]:
        """Batches of `{"text": [...]}`, as datasets' `iter` (the tokenizer trainer reads it so)."""
        batch: list[str] = []
        for text in self.texts():
            batch.append(text)
            if len(batch) == batch_size:
                yield {TEXT: batch}
                batch = []
        if batch:
            yield {TEXT: batch}


# ---------------------------------------------------------------------------------------------
# The three kinds of source
# ---------------------------------------------------------------------------------------------
def _options_hasher(args: DataArguments):
    hasher = hashlib.sha256()
    options = [args.text_column, args.text_sample_by, args.encoding_errors, str(args.validation_split_percentage)]
    hasher.update(json.dumps(options).encode())
    return hasher


def _named_source_parts(args: DataArguments) -> list:
    return [[args.dataset_name, args.dataset_config_name, args.dataset_revision, args.dataset_split, args.corpus]]


def _stream_fingerprint(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class LocalFiles:
    def __init__(self, args: DataArguments):
        self.args = args

    def describe(self) -> str:
        return f"local files {' '.join(self.args.train_files)}"

    def fingerprint(self) -> str:
        hasher = _options_hasher(self.args)
        for flag, patterns in (
            ("--train_files", self.args.train_files),
            ("--validation_files", self.args.validation_files or []),
        ):
            hasher.update(flag.encode())
            for path in expand_files(patterns, flag):
                hash_and_check_file(path, hasher, self.args.encoding_errors)
        return hasher.hexdigest()

    def load(self) -> tuple[Dataset, Dataset | None]:
        args = self.args
        files = expand_files(args.train_files, "--train_files")
        validation_files = expand_files(args.validation_files, "--validation_files") if args.validation_files else []
        before = {path: _file_stats(path) for path in files + validation_files}
        train = load_local(files, args, "--train_files")
        validation = load_local(validation_files, args, "--validation_files") if validation_files else None
        require_unchanged(files + validation_files, before)
        return train, validation

    def stream(self) -> datasets.IterableDataset:
        files = expand_files(self.args.train_files, "--train_files")
        loader, kwargs = local_loader(files, self.args)
        return datasets.load_dataset(
            loader, data_files=[str(p) for p in files], split="train", streaming=True, **kwargs
        )

    def stream_validation(self) -> list[str] | None:
        if not self.args.validation_files:
            return None
        return list(
            load_local(expand_files(self.args.validation_files, "--validation_files"), self.args, "--validation_files")[
                TEXT
            ]
        )

    def stream_fingerprint_parts(self) -> list:
        """Names, sizes and modification times: a content hash would read the whole corpus before training."""
        parts = []
        for path in expand_files(self.args.train_files, "--train_files"):
            stat = path.stat()
            parts.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        return parts


class HubDataset:
    def __init__(self, args: DataArguments):
        self.args = args

    def describe(self) -> str:
        args = self.args
        return f"Hub dataset {args.dataset_name}" + (
            f" ({args.dataset_config_name})" if args.dataset_config_name else ""
        )

    def fingerprint(self) -> str:
        return ""  # known only once loaded: see load_corpus

    def _require(self) -> None:
        require_hub(f"--dataset_name {self.args.dataset_name}")

    def load(self) -> tuple[Dataset, Dataset | None]:
        args = self.args
        self._require()
        try:
            full = datasets.load_dataset(args.dataset_name, args.dataset_config_name, revision=args.dataset_revision)
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
        full = _as_text_column(full, args.text_column)
        train = full[args.dataset_split]
        validation = full["validation"] if "validation" in full and args.dataset_split != "validation" else None
        return train, validation

    def loaded_fingerprint(self, train: Dataset, validation: Dataset | None) -> str:
        return hashlib.sha256(
            json.dumps(
                [
                    dataset_fingerprint(train),
                    dataset_fingerprint(validation) if validation is not None else None,
                    self.args.validation_split_percentage,
                ]
            ).encode()
        ).hexdigest()

    def _stream_split(self, split: str) -> datasets.IterableDataset:
        args = self.args
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
        return _named_source_parts(self.args)


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

    def load(self) -> tuple[Dataset, Dataset | None]:
        return Dataset.from_dict({TEXT: list(BUILTIN_CORPORA[self.name].documents())}), None

    def stream(self) -> datasets.IterableDataset:
        return datasets.IterableDataset.from_generator(_builtin_documents, gen_kwargs={"name": self.name})

    def stream_validation(self) -> list[str] | None:
        return None

    def stream_fingerprint_parts(self) -> list:
        return _named_source_parts(self.args)


Source = LocalFiles | HubDataset | BuiltinSource


def source_of(args: DataArguments) -> Source:
    """The one place that decides where the corpus comes from: local files, a Hub dataset or a built-in corpus."""
    if args.train_files:
        return LocalFiles(args)
    if args.dataset_name:
        return HubDataset(args)
    return BuiltinSource(args)


# ---------------------------------------------------------------------------------------------
# The entry point: a corpus, its held-out split, and a fingerprint of its content.
# ---------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    train: Dataset | DocumentStream  # one "text" column; a stream with --streaming
    validation: Dataset
    fingerprint: str  # changes whenever the text could have changed
    description: str


def corpus_fingerprint(args: DataArguments) -> str:
    """A content hash of the corpus, computable before any tokenization (for the cache key); empty for a
    Hub dataset, which is fingerprinted once loaded."""
    return source_of(args).fingerprint()


def resolve_builtin(name: str | None) -> str:
    if name is None:
        raise ScratchError("no corpus given: pass --corpus NAME (built-in), --train_files or --dataset_name")
    if name not in BUILTIN_CORPORA:
        raise ScratchError(f"--corpus {name} is not a built-in corpus; choose one of {', '.join(BUILTIN_CORPORA)}")
    return name


def _drop_blank(ds: Dataset, num_proc: int | None) -> Dataset:
    return ds.filter(
        lambda batch: [bool(t and t.strip()) for t in batch[TEXT]],
        batched=True,
        num_proc=num_proc if num_proc and len(ds) > 10_000 else None,
        desc="dropping blank documents",
    )


def _carve_validation(ds: Dataset, percentage: float) -> tuple[Dataset, Dataset]:
    if len(ds) < 2:
        raise ScratchError(
            "the corpus has fewer than 2 documents, too few to hold some out: add text or give --validation_files"
        )
    n_val = min(len(ds) - 1, max(1, round(len(ds) * percentage / 100)))
    parts = ds.train_test_split(test_size=n_val, seed=SPLIT_SEED, shuffle=True)
    return parts["train"], parts["test"]


def load_corpus(args: DataArguments, fingerprint: str | None = None, num_proc: int | None = None) -> Corpus:
    """The configured corpus as train/validation documents (blank documents dropped); with `--streaming`,
    the training documents as a stream and a materialised held-out set."""
    source = source_of(args)
    if args.streaming:
        return _load_stream(args, source)
    if not isinstance(source, HubDataset):
        fingerprint = fingerprint or source.fingerprint()  # also checks every file before any is parsed
    train, validation = source.load()
    if isinstance(source, HubDataset):
        fingerprint = source.loaded_fingerprint(train, validation)
    description = source.describe()
    train = _drop_blank(train, num_proc)
    if len(train) == 0:
        raise ScratchError(f"the training corpus ({description}) has no text: it is empty or only whitespace")
    if validation is None:
        train, validation = _carve_validation(train, args.validation_split_percentage)
    else:
        validation = _drop_blank(validation, num_proc)
        if len(validation) == 0:
            raise ScratchError("the validation files have no text: they are empty or only whitespace")
    return Corpus(train=train, validation=validation, fingerprint=fingerprint, description=description)


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
    parts: list = [
        args.text_column,
        args.text_sample_by,
        args.validation_split_percentage,
        args.streaming_validation_documents,
        *source.stream_fingerprint_parts(),
    ]
    return Corpus(
        train=documents,
        validation=Dataset.from_dict({TEXT: validation}),
        fingerprint=_stream_fingerprint(parts),
        description=description,
    )
