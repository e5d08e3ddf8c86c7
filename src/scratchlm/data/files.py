"""Local corpus files: expanded from globs, checked (exists, not empty, UTF-8, unchanged while read) and hashed
in one streaming pass, then read with the `datasets` builder of their kind. Text, JSON and CSV files may be
compressed (`.gz`, `.bz2`, `.xz`): they are hashed as stored and checked as decompressed."""

from __future__ import annotations

import bz2
import codecs
import glob
import gzip
import json
import lzma
import os
from pathlib import Path

import datasets
from datasets import Dataset

from ..arguments import DataArguments
from ..errors import ScratchError

TEXT = "text"
_READ_CHUNK = 1 << 22
_LOADERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# The compressions the standard library reads and `datasets` decompresses by the name's ending.
_DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def kind_suffix(path: Path) -> str:
    """The ending that says what the file holds: `.jsonl` for `a.jsonl.gz` as for `a.jsonl`."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix in _DECOMPRESSORS else suffix


def open_decompressed(path: Path):
    """The file's bytes as its text was written: decompressed when its name ends in a compression."""
    return _DECOMPRESSORS.get(path.suffix.lower(), open)(path, "rb")


# A sample of a .txt file's start decides whether its lines look like parts of documents: a play, verse, a novel
# wrapped at a fixed width, one sentence per line. Short lines alone are also tweets or titles; the blank lines
# that group them are what says a document goes on past its line.
LAYOUT_SAMPLE_BYTES = 1 << 20
SHORT_LINE_CHARACTERS = 80
PARAGRAPH_BREAK_SHARE = 0.05


def median_line_if_lines_are_parts_of_documents(path: Path) -> int | None:
    """The median length of a text file's lines when they are short and blank lines group them, else None."""
    if kind_suffix(path) not in (".txt", ".text"):
        return None
    try:
        with open_decompressed(path) as f:
            sample = f.read(LAYOUT_SAMPLE_BYTES)
    except (OSError, EOFError, lzma.LZMAError):  # a damaged file is reported where it is read
        return None
    lines = sample.decode("utf-8", errors="replace").split("\n")[:-1]  # the last may be cut
    lengths = sorted(len(line.strip()) for line in lines if line.strip())
    if len(lengths) < 100:
        return None
    median = lengths[len(lengths) // 2]
    blank_share = 1 - len(lengths) / len(lines)
    return median if median <= SHORT_LINE_CHARACTERS and blank_share >= PARAGRAPH_BREAK_SHARE else None


def _supported_endings() -> str:
    compressed = [kind + compression for kind in (".txt", ".jsonl") for compression in _DECOMPRESSORS]
    return f"{', '.join(sorted(_LOADERS))} (or compressed, e.g. {', '.join(compressed)})"


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
            kind = kind_suffix(path)
            if kind not in _LOADERS or (kind == ".parquet" and kind != path.suffix.lower()):
                raise ScratchError(f"{flag}: {path} has an unsupported extension; use one of {_supported_endings()}")
            files.append(path)
    kinds = {_LOADERS[kind_suffix(p)] for p in files}
    if len(kinds) > 1:
        raise ScratchError(f"{flag}: mixes file kinds ({', '.join(sorted(kinds))}); give files of one kind")
    return files


def file_stats(path: Path) -> tuple[int, int]:
    """(size, modification time): what moves when something writes the file."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class FileChecker:
    """Checks and hashes corpus files, and remembers each file's stats when it was hashed: a file that changes
    after that, or while it is read, would put other text under the cache key of the text that was hashed."""

    def __init__(self, encoding_errors: str):
        self.encoding_errors = encoding_errors
        self.stats_when_hashed: dict[Path, tuple[int, int]] = {}

    def hash(self, path: Path, hasher) -> None:
        """Feed the file as stored to `hasher`; raise at the first byte of its text that is not UTF-8 when errors
        are strict. A compressed file's text is read in one more pass, and checked whatever the errors setting:
        `datasets` substitutes bad bytes in plain files only."""
        stats = file_stats(path)
        if stats[0] == 0:
            raise ScratchError(f"corpus file {path} is empty; remove it from the file list or add text to it")
        compressed = path.suffix.lower() in _DECOMPRESSORS
        check_utf8 = (self.encoding_errors == "strict" or compressed) and kind_suffix(path) != ".parquet"
        with open(path, "rb") as f:
            if check_utf8 and not compressed:
                _check_utf8(path, f, hasher.update)
            else:
                while chunk := f.read(_READ_CHUNK):
                    hasher.update(chunk)
        if check_utf8 and compressed:
            fix = (
                "convert it to UTF-8, or decompress it and pass the result with --encoding_errors "
                f"{self.encoding_errors} (which does not reach inside compressed files)"
                if self.encoding_errors != "strict"
                else None
            )
            try:
                with open_decompressed(path) as f:
                    _check_utf8(path, f, lambda chunk: None, " of its decompressed text", fix)
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise ScratchError(
                    f"corpus file {path} cannot be decompressed ({err}): check that it is a whole "
                    f"{path.suffix.lower()[1:]} file, or decompress it and pass the result"
                ) from None
        if file_stats(path) != stats:
            raise _changed_while_read(path)
        self.stats_when_hashed[path.resolve()] = stats

    def require_unchanged(self, files: list[Path], before: dict[Path, tuple[int, int]]) -> None:
        """Each file still has the stats it had when it was hashed (or, if it was not, those in `before`)."""
        for path in files:
            seen = self.stats_when_hashed.get(path.resolve(), before.get(path))
            if seen is not None and file_stats(path) != seen:
                raise _changed_while_read(path)


def _check_utf8(path: Path, f, consume, where: str = "", fix: str | None = None) -> None:
    """Read `f` to its end, passing each chunk to `consume`; raise at the first byte that is not UTF-8."""
    fix = fix or "convert it to UTF-8, or pass --encoding_errors replace to substitute bad bytes"
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    while chunk := f.read(_READ_CHUNK):
        consume(chunk)
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as err:
            fix = conversion_advice(path, chunk, with_command=not where) or fix
            raise ScratchError(
                f"corpus file {path} is not valid UTF-8 at byte offset "
                f"{offset - len(decoder.getstate()[0]) + err.start}{where}: {fix}"
            ) from None
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ScratchError(
            f"corpus file {path} ends in the middle of a UTF-8 character (byte offset {offset}{where}): {fix}"
        ) from None


# Characters common in any Chinese text, simplified or traditional: the legacy encoding that decodes a sample
# into more of them is the one it was written in (GB18030 and Big5 both decode most of each other's bytes).
_COMMON_CHINESE = "的一是不了在人有我他这中大来上个们到说国和"


def conversion_advice(path: Path, sample: bytes, with_command: bool = True) -> str | None:
    """How to convert a file that is not UTF-8, when `sample` of its bytes shows which encoding it is in."""
    encoding = likely_encoding(sample)
    if encoding is None:
        return None
    converted = path.with_name(f"{path.stem}.utf8{path.suffix}")
    command = f", e.g. `iconv -f {encoding} -t UTF-8 {path} > {converted}`" if with_command else ""
    return f"it reads as {encoding}: convert it to UTF-8{command}"


def not_utf8_advice(path: Path) -> str:
    """What to do about a file that is not UTF-8 (a table, a text to score), from the first bytes of it."""
    with open(path, "rb") as f:
        head = f.read(_READ_CHUNK)
    return conversion_advice(path, head) or "convert it to UTF-8"


def likely_encoding(sample: bytes) -> str | None:
    """The encoding a file that is not UTF-8 was most likely written in, where that is clear: UTF-16 (with its
    byte-order mark, as Windows Notepad's "Unicode"), or GB18030 or Big5 for Chinese text."""
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    hits = {}
    for encoding in ("GB18030", "BIG5"):
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(sample)  # a character cut at the end waits
        except UnicodeDecodeError:
            continue
        hits[encoding] = sum(text.count(c) for c in _COMMON_CHINESE)
    best = max(hits, key=hits.get, default=None)
    return best if best is not None and hits[best] > 0 else None


def _changed_while_read(path: Path) -> ScratchError:
    return ScratchError(
        f"corpus file {path} changed while it was being read (its size or modification time moved): "
        "wait until whatever writes it has finished, or train on a copy that nothing writes to"
    )


def _first_bad_json_line(path: Path) -> int | None:
    with open_decompressed(path) as f:
        for number, raw in enumerate(f, 1):
            line = raw.decode("utf-8", errors="replace")
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    return number
    return None


def local_loader(files: list[Path], args: DataArguments) -> tuple[str, dict]:
    """The `datasets` builder for these files and its options, for `load_dataset` (in memory or streamed)."""
    loader = _LOADERS[kind_suffix(files[0])]
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
                if (line := _first_bad_json_line(path)) is not None and kind_suffix(path) == ".jsonl":
                    raise ScratchError(f"{path} line {line} is not valid JSON: fix or remove that line") from None
        raise ScratchError(f"{flag}: could not read {', '.join(map(str, files))}: {err}".replace("\n", " ")) from None
    if args.text_column not in ds.column_names:
        raise ScratchError(
            f"{flag}: {files[0]} has no '{args.text_column}' field (it has: {', '.join(ds.column_names)}); "
            "pass --text_column with the field that holds the text"
        )
    return as_text_column(ds, args.text_column)


def as_text_column(ds, column: str):
    ds = ds.select_columns([column])
    return ds.rename_column(column, TEXT) if column != TEXT else ds
