"""A stream of documents, for `--streaming`: the training documents of a source in order, the held-out ones
left out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import datasets

from ..errors import ScratchError
from .files import TEXT

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
