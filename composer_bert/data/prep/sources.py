"""SOURCE strings -> a deterministic stream of document strings.

Schemes:

- ``hf:DATASET[:CONFIG][:SPLIT]``: streamed through Hugging Face ``datasets`` (a Hub name, or a local
  folder of data files); ``disk:DIR[:SPLIT]``: a folder written by ``save_to_disk``. ``c4``,
  ``openwebtext``, ``pile`` and ``wikipedia`` are shortcuts for ``hf:`` specs. See `hf_sources`.
- ``text:GLOB``: plain UTF-8 text files in sorted path order. Documents are separated by one or
  more blank lines (a blank line is empty or holds only spaces, tabs or a carriage return); the
  line breaks inside a document are kept.
- ``jsonl:GLOB``: one JSON object per line; the document is the object's text field.
- ``parquet:GLOB`` and ``arrow:GLOB``: the text field column of each file (Arrow IPC file or stream
  format, as ``datasets`` writes it).
- ``synthetic`` or ``synthetic:N``: N documents from `composer_bert.data.prep.synthetic` (default 20000),
  seeded with the caller's seed.

Nothing is dropped silently: a row (a JSON line, a table row) whose text field holds no usable text is skipped
and counted in `DocumentSource.skipped` by reason (`SKIP_REASONS`: null, not a string, empty or whitespace only),
which the manifest and both scripts' summaries report; a source in which no row holds text is refused
(`checked_documents`). Invalid UTF-8 in local files is replaced with U+FFFD and counted in
`DocumentSource.invalid_utf8_replaced` rather than being fatal. Both counts start again with each pass.
"""

from __future__ import annotations

import glob
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer_bert.data.prep.hf_sources import (
    SHORTCUTS,
    OpenedDataset,
    arrow_values,
    dataset_values,
    not_json,
    open_disk,
    open_hf,
    parquet_values,
)
from composer_bert.data.prep.synthetic import DEFAULT_SYNTHETIC_DOCUMENTS, synthetic_documents
from composer_bert.errors import UserError

SOURCE_HELP = (
    "hf:DATASET[:CONFIG][:SPLIT] | disk:DIR[:SPLIT] | c4 | openwebtext | pile | wikipedia | text:GLOB | "
    f"jsonl:GLOB | parquet:GLOB | arrow:GLOB | synthetic[:N]; hf: streams a Hub dataset or a local folder of "
    f"data files through Hugging Face datasets (SPLIT defaults to train), disk: reads a folder written by "
    f"save_to_disk, synthetic's N defaults to {DEFAULT_SYNTHETIC_DOCUMENTS}, and in text files documents are "
    "separated by one or more blank lines"
)
FILE_SCHEMES = {"text": "txt", "jsonl": "jsonl", "parquet": "parquet", "arrow": "arrow"}  # scheme -> usual extension

SKIP_REASONS = ("null_text", "not_text", "empty_text")  # why a row was not used: null, not a string, blank

_READ_BLOCK_BYTES = 8 << 20
_BLANK_LINES_BYTES = re.compile(rb"\n(?:[ \t\r]*\n)+")
_BLANK_LINES = re.compile(r"\n(?:[ \t\r]*\n)+")
_REPLACEMENT_UTF8 = "\ufffd".encode()


@dataclass
class DocumentSource:
    """A parsed SOURCE; iterating it yields documents in a fixed order (it can be iterated again)."""

    spec: str
    scheme: str
    files: list[Path] = field(default_factory=list)
    num_synthetic: int = DEFAULT_SYNTHETIC_DOCUMENTS
    text_field: str = "text"
    seed: int = 0
    invalid_utf8_replaced: int = 0  # invalid byte sequences replaced with U+FFFD so far
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))  # rows not used, by reason
    not_text_example: str = ""  # the type of the first value counted as not_text, e.g. "int"
    opened: OpenedDataset | None = field(default=None, repr=False)  # hf: and disk: sources, opened by open_source

    @property
    def resolved(self) -> str:
        """The spec with shortcuts and defaults spelled out (e.g. c4 -> hf:allenai/c4:en:train)."""
        return self.opened.resolved if self.opened is not None else self.spec

    def __iter__(self) -> Iterator[str]:
        self.invalid_utf8_replaced, self.skipped, self.not_text_example = 0, dict.fromkeys(SKIP_REASONS, 0), ""
        if self.scheme == "synthetic":
            return synthetic_documents(self.num_synthetic, self.seed)
        if self.opened is not None:
            return self._usable(itertools.chain.from_iterable(dataset_values(self.opened, self.text_field, self.spec)))
        if self.scheme == "text":  # paragraphs: never blank, nothing to skip
            return (doc for path in self.files for doc in _reading(path, self._text_documents(path)))
        readers = {"jsonl": self._jsonl_values, "parquet": self._parquet_values, "arrow": self._arrow_values}
        return (doc for path in self.files for doc in _reading(path, self._usable(readers[self.scheme](path))))

    def read_counts(self) -> dict[str, Any]:
        """What this pass has counted so far (a snapshot): SourceTally's fields of the same names."""
        return {"invalid_utf8_replaced": self.invalid_utf8_replaced, "skipped_rows": dict(self.skipped)}

    def skipped_summary(self) -> str:
        """`skipped` as the scripts print it, e.g. '50 null text, 2 not text (e.g. int), 0 empty text'."""
        return describe_skipped(self.skipped, self.not_text_example)

    def _usable(self, values: Iterable[Any]) -> Iterator[str]:
        """The values that hold text (binary ones decoded as UTF-8); each other one is counted in `skipped`."""
        skipped = self.skipped
        for value in values:
            if isinstance(value, bytes):
                value = self._decode(value)
            if isinstance(value, str):
                if value and not value.isspace():
                    yield value
                else:
                    skipped["empty_text"] += 1
            elif value is None:
                skipped["null_text"] += 1
            else:
                skipped["not_text"] += 1
                self.not_text_example = self.not_text_example or type(value).__name__

    def _decode(self, data: bytes) -> str:
        """UTF-8 decode; each invalid byte sequence becomes one U+FFFD and is counted."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            self.invalid_utf8_replaced += text.count("\ufffd") - data.count(_REPLACEMENT_UTF8)
            return text

    def _text_documents(self, path: Path) -> Iterator[str]:
        # Read in blocks and cut only at blank lines: a cut at b"\n" never splits a UTF-8 sequence.
        pending = b""
        with open(path, "rb") as f:
            while block := f.read(_READ_BLOCK_BYTES):
                searched = len(pending)  # earlier bytes held no separator worth cutting at
                pending += block
                cut = _end_of_last_blank_line(pending, searched)
                if cut:
                    yield from _paragraphs(self._decode(pending[:cut]))
                    pending = pending[cut:]
        yield from _paragraphs(self._decode(pending))

    def _jsonl_values(self, path: Path) -> Iterator[Any]:
        with open(path, "rb") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(self._decode(line).rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    raise UserError(not_json(path, line_number, err)) from None
                if not isinstance(record, dict) or self.text_field not in record:
                    raise UserError(
                        f"{path}:{line_number} has no '{self.text_field}' field; pass --text-field with the right name"
                    )
                yield record[self.text_field]

    def _parquet_values(self, path: Path) -> Iterator[Any]:
        return itertools.chain.from_iterable(parquet_values(path, self.text_field))

    def _arrow_values(self, path: Path) -> Iterator[Any]:
        return itertools.chain.from_iterable(arrow_values(path, self.text_field))

def _reading(path: Path, documents: Iterator[str]) -> Iterator[str]:
    """`documents`, with an OS error reading `path` (permissions, a file gone since the glob, I/O) as one line."""
    try:
        yield from documents
    except OSError as err:
        reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(
            f"cannot read '{path}' ({reason}); fix the file or its permissions, or leave it out of the glob"
        ) from None


def _end_of_last_blank_line(data: bytes, start: int) -> int:
    """Offset just past the last run of blank lines starting at or after `start`, or 0 if there is none.

    Cutting at any separator gives the same documents as splitting the whole file at once, so a
    separator that straddles a block boundary may be left for `_paragraphs` to split later.
    """
    end = 0
    for match in _BLANK_LINES_BYTES.finditer(data, start):
        end = match.end()
    return end


def _paragraphs(text: str) -> Iterator[str]:
    for paragraph in _BLANK_LINES.split(text):
        paragraph = paragraph.strip()
        if paragraph:
            yield paragraph


def open_source(spec: str, text_field: str = "text", seed: int = 0) -> DocumentSource:
    """Parse and check SOURCE (scheme known, glob matches files, dataset opens) without reading documents."""
    scheme, _, argument = SHORTCUTS.get(spec, spec).partition(":")  # a shortcut opens as its hf: spec
    if scheme == "synthetic":
        num = DEFAULT_SYNTHETIC_DOCUMENTS
        if argument:
            if not argument.isdigit() or int(argument) == 0:
                raise UserError(f"source '{spec}' needs a positive document count, e.g. synthetic:20000")
            num = int(argument)
        return DocumentSource(spec, scheme, num_synthetic=num, seed=seed)
    if scheme in ("hf", "disk"):
        opened = (open_hf if scheme == "hf" else open_disk)(spec, argument, text_field)
        return DocumentSource(spec, scheme, text_field=text_field, opened=opened)
    if scheme in FILE_SCHEMES:
        if not argument:
            raise UserError(f"source '{spec}' needs a file glob, e.g. {scheme}:data/*.{FILE_SCHEMES[scheme]}")
        files = sorted(Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"source '{spec}': no files match '{argument}'; check the path or quote the glob")
        return DocumentSource(spec, scheme, files=files, text_field=text_field)
    raise UserError(f"unknown source '{spec}'; use one of: {SOURCE_HELP.split(';')[0]}")


def describe_skipped(skipped: dict[str, int], not_text_example: str = "") -> str:
    """Counts of rows skipped by reason (a manifest's `skipped_rows`) in words: '50 null text, 0 not text, ...'."""
    example = f" (e.g. {not_text_example})" if not_text_example else ""
    return ", ".join(
        f"{count} {reason.replace('_', ' ')}{example if reason == 'not_text' and count else ''}"
        for reason, count in skipped.items()
    )


def checked_documents(source: DocumentSource, documents: Iterable[str]) -> Iterator[str]:
    """`documents` (the source's, perhaps capped); a source in which no row holds text is refused here, when its
    first document is asked for: before any output exists."""
    documents = iter(documents)
    first = next(documents, None)
    if first is not None:
        return itertools.chain([first], documents)
    if rows := sum(source.skipped.values()):
        raise UserError(
            f"source '{source.spec}' has no usable text: none of its {rows} rows holds text in the field "
            f"'{source.text_field}' ({source.skipped_summary()}); check the data, or pass --text-field with the "
            "field that holds the text"
        )
    raise UserError(f"source '{source.spec}' has no documents; check the files or the --text-field")


def limit_documents(
    documents: Iterable[str], max_documents: int | None = None, max_bytes: int | None = None
) -> Iterator[str]:
    """Stop after `max_documents` documents or once `max_bytes` UTF-8 bytes have been yielded (None: no cap)."""
    capped = documents if max_documents is None else itertools.islice(documents, max_documents)
    taken_bytes = 0
    for doc in capped:
        if max_bytes is not None:
            if taken_bytes >= max_bytes:
                return
            taken_bytes += len(doc.encode("utf-8", errors="replace"))
        yield doc


class CountingIterator(Iterator[str]):
    """Wraps a document iterator and counts what was taken from it (`count`), e.g. by a trainer."""

    def __init__(self, documents: Iterable[str]) -> None:
        self._documents = iter(documents)
        self.count = 0

    def __next__(self) -> str:
        doc = next(self._documents)
        self.count += 1
        return doc
