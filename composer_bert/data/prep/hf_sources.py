"""The boundary with Hugging Face `datasets` and pyarrow: every call into them that reads documents is in this
module, and every failure of theirs leaves it as one UserError line. Where a file is to blame the line names it,
and for a JSON file the line in it (as `jsonl:` does: "FILE:LINE is not valid JSON (...)"), found by reading
that file again with Python's json after datasets failed on it; meanwhile the error records `datasets` logs
(which name the file, but would print beside our line) are kept off the console (`_datasets_log`).

- `hf:DATASET[:CONFIG][:SPLIT]` streams through `datasets.load_dataset(DATASET, CONFIG, split=SPLIT,
  streaming=True)` (SPLIT defaults to train). DATASET is a Hub name, which needs the network, or a local
  folder of data files (jsonl, json, csv, parquet, arrow), which works offline. A folder written by
  `save_to_disk` is read as `disk:` would read it.
- `disk:DIR[:SPLIT]` reads a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`
  (`datasets.load_from_disk`); for a DatasetDict SPLIT defaults to train.
- `c4`, `openwebtext`, `pile` and `wikipedia` are shortcuts for the `hf:` specs in `SHORTCUTS`.
- `parquet:GLOB` and `arrow:GLOB` files are read with pyarrow (`parquet_values`, `arrow_values`); sources.py
  globs them and decides which values are text.

Opening checks what can be checked before any document is read: the dataset is reachable, the split
exists, and the text field is one of its columns when the columns are known up front.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer_bert.errors import UserError

SHORTCUTS = {
    "c4": "hf:allenai/c4:en",
    "openwebtext": "hf:Skylion007/openwebtext",
    "pile": "hf:monology/pile-uncopyrighted",
    "wikipedia": "hf:wikimedia/wikipedia:20231101.en",
}
DEFAULT_SPLIT = "train"
_SAVED_MARKERS = ("state.json", "dataset_dict.json")  # what save_to_disk writes at the top of its folder
_BATCH_ROWS = 1000
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_OFFLINE_REMEDY = (
    "where there is network, save it with datasets.load_dataset(...).save_to_disk(DIR) and pass disk:DIR, "
    "or pass a local folder of its data files as hf:DIR"
)


@dataclass
class OpenedDataset:
    """A dataset ready to iterate, and the spec it resolved to (recorded in the manifest)."""

    dataset: Any  # datasets.Dataset or datasets.IterableDataset
    resolved: str
    folder: Path | None = None  # the local folder of data files behind an hf: spec, if it is one


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _is_saved(path: Path) -> bool:
    return any((path / marker).is_file() for marker in _SAVED_MARKERS)


def _check_field(spec: str, columns: list[str] | None, text_field: str) -> None:
    if columns is not None and text_field not in columns:
        raise UserError(
            f"source '{spec}' has no '{text_field}' field (fields: {', '.join(columns) or 'none'}); "
            "pass --text-field with one of them"
        )


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """Hide huggingface_hub's per-retry warnings: a failure ends in one error line, not a page of retries."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


class _DatasetsLog(logging.Handler):
    """Stands in for the handlers of the `datasets` logger: its error records (each names the file datasets
    failed on, e.g. "Failed to load JSON from file '...' with error ...") are kept, not printed, and the files
    they name noted; records below ERROR go on to the handlers it replaced."""

    def __init__(self, replaced: list[logging.Handler]) -> None:
        super().__init__()
        self.replaced = replaced
        self.files: list[Path] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            for handler in self.replaced:
                if record.levelno >= handler.level:
                    handler.handle(record)
            return
        self.files += [Path(name) for name in re.findall(r"'([^']+)'", record.getMessage()) if _is_file(name)]


def _is_file(name: str) -> bool:
    """Whether a quoted part of a log message names a file (False for what cannot be a path: too long, a NUL)."""
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


@contextmanager
def _datasets_log() -> Iterator[_DatasetsLog]:
    """While calling into datasets: its error log is held back (`_DatasetsLog`), the rest printed as usual."""
    root = logging.getLogger("datasets")
    replaced = root.handlers[:]
    log = _DatasetsLog(replaced)
    root.handlers = [log]
    try:
        yield log
    finally:
        root.handlers = replaced


def bad_json_line(path: Path) -> str | None:
    """The error line for the first line of JSON file `path` that is not a JSON object, or not UTF-8; None when
    every line is (or the file is one JSON document that parses). The words are those of our `jsonl:` reader."""
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.decode("utf-8").rstrip("\r\n"))
                except UnicodeDecodeError as err:
                    return (
                        f"{path}:{number} is not UTF-8 (byte {line[err.start]:#04x} at column {err.start + 1}); fix "
                        "that line, or read the file with jsonl:, which replaces such bytes and counts them"
                    )
                except json.JSONDecodeError as err:
                    if number == 1 and line.lstrip().startswith(b"["):  # one JSON document (an array), not lines
                        return _bad_json_document(path)
                    return not_json(path, number, err)
                if not isinstance(record, dict):
                    return f"{path}:{number} is not a JSON object (one per line); fix or remove that line"
    except OSError:
        return None
    return None


def not_json(path: Path, number: int, err: json.JSONDecodeError) -> str:
    """The error line for line `number` of a JSON-lines file that json could not parse (jsonl: and hf: alike)."""
    return f"{path}:{number} is not valid JSON ({err.msg.removesuffix(' at')} at column {err.colno}); fix or remove that line"


def _bad_json_document(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return f"{path}:{err.lineno} is not valid JSON ({err.msg.removesuffix(' at')} at column {err.colno}); fix the file"
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _failure_line(err: BaseException, logged: list[Path], folder: Path | None, fallback: str) -> str:
    """What to tell the user when datasets failed with `err`: the bad line of a JSON file it read (a file its log
    named, else any JSON file in the local `folder`), else the file its log named, else `fallback` (a sentence
    start to which the reason and a remedy are added)."""
    reason = _first_line(err)
    suspects = logged
    if not suspects and folder is not None:
        suspects = sorted(path for path in folder.rglob("*") if path.suffix in _JSON_SUFFIXES)
    for path in dict.fromkeys(suspects):
        if path.suffix in _JSON_SUFFIXES and (line := bad_json_line(path)):
            return line
    if logged:
        return f"{fallback}: '{logged[0]}' is unreadable ({reason}); fix or remove that file"
    return f"{fallback} ({reason}); check its files"


def open_hf(spec: str, argument: str, text_field: str) -> OpenedDataset:
    """Open `hf:DATASET[:CONFIG][:SPLIT]` for streaming; every failure to open is one UserError line."""
    parts = argument.split(":")
    if not parts[0] or len(parts) > 3:
        raise UserError(f"source '{spec}' should read hf:DATASET[:CONFIG][:SPLIT], e.g. hf:allenai/c4:en:train")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else None
    path = Path(name).expanduser()
    if path.is_dir() and _is_saved(path):
        if config:
            raise UserError(f"source '{spec}': '{name}' was saved with save_to_disk and has no configs; use disk:{name}")
        return open_disk(spec, f"{path}:{split}" if split else str(path), text_field)
    if path.is_file():
        raise UserError(
            f"source '{spec}': '{name}' is a file; hf: takes a Hub name or a folder (for files use jsonl:, "
            "parquet: or arrow:GLOB)"
        )
    if name.startswith(("/", ".", "~")) and not path.exists():
        raise UserError(f"source '{spec}': no folder '{name}'; check the path")
    split = split or DEFAULT_SPLIT
    import datasets  # heavy, and only needed for these sources

    folder = path if path.is_dir() else None
    try:
        with _quiet_hub(), _datasets_log() as log:
            dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    except ConnectionError:  # offline mode, or no route to the Hub
        if datasets.config.HF_HUB_OFFLINE:
            raise UserError(
                f"source '{spec}': '{name}' is not a local folder, and as a Hub dataset it is not available offline "
                f"(HF_DATASETS_OFFLINE or HF_HUB_OFFLINE is set, and streaming from the Hub needs the network); "
                f"{_OFFLINE_REMEDY}"
            ) from None
        raise UserError(
            f"source '{spec}': '{name}' is not a local folder, and the Hugging Face Hub could not be reached for it "
            f"(no network?), so it is not available offline; check the network, or {_OFFLINE_REMEDY}"
        ) from None
    except datasets.exceptions.DatasetNotFoundError as err:
        raise UserError(f"source '{spec}': {_first_line(err)}; check the name (and log in for a gated dataset)") from None
    except Exception as err:  # a bad config or split, a script-based dataset, unreadable files: many types
        opening = f"could not open '{spec}' through Hugging Face datasets"
        raise UserError(_failure_line(err, log.files, folder, opening)) from None
    _check_field(spec, dataset.column_names, text_field)
    resolved = ":".join(["hf", name, config or "", split])
    return OpenedDataset(dataset, resolved, folder)


def open_disk(spec: str, argument: str, text_field: str) -> OpenedDataset:
    """Open `disk:DIR[:SPLIT]`, a folder written by `save_to_disk`."""
    if not argument:
        raise UserError(f"source '{spec}' needs a folder written by save_to_disk, e.g. disk:data/wiki")
    path, split = Path(argument).expanduser(), None
    if not path.is_dir() and ":" in argument:
        head, _, split = argument.rpartition(":")
        path = Path(head).expanduser()
    if not path.is_dir():
        raise UserError(f"source '{spec}': no folder '{path}'; pass a folder written by datasets' save_to_disk")
    if not _is_saved(path):
        raise UserError(
            f"source '{spec}': '{path}' was not written by save_to_disk (it has no state.json or dataset_dict.json); "
            f"for a folder of data files use hf:{path}"
        )
    import datasets  # heavy, and only needed for these sources

    try:
        with _datasets_log():
            loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # a damaged folder: missing or unreadable arrow files, bad JSON
        raise UserError(f"source '{spec}': cannot load '{path}' ({_first_line(err)}); save the dataset again") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        chosen = split or DEFAULT_SPLIT
        if chosen not in loaded:
            raise UserError(
                f"source '{spec}': '{path}' has no split '{chosen}' (splits: {', '.join(splits)}); "
                f"name one, e.g. disk:{path}:{splits[0]}"
            )
        dataset = loaded[chosen]
    elif split:
        raise UserError(f"source '{spec}': '{path}' holds a single dataset, not splits; drop ':{split}'")
    else:
        dataset, chosen = loaded, ""
    _check_field(spec, dataset.column_names, text_field)
    return OpenedDataset(dataset, f"disk:{path.resolve()}" + (f":{chosen}" if chosen else ""))


def dataset_values(opened: OpenedDataset, text_field: str, spec: str) -> Iterator[list[Any]]:
    """The values of `text_field` (text or not: sources.py decides), a batch at a time in the dataset's order; a
    read failure is one UserError line."""
    dataset = opened.dataset
    rows = dataset.select_columns([text_field]) if dataset.column_names else dataset
    batches = iter(rows.iter(batch_size=_BATCH_ROWS))
    while True:
        with _datasets_log() as log:
            try:
                batch = next(batches, None)
            except OSError as err:  # a file gone or unreadable since opening, a dropped connection
                raise UserError(
                    f"reading '{spec}' failed ({_first_line(err)}); check the files or the network and run again"
                ) from None
            except Exception as err:  # a line of JSON, a CSV row, a parquet page datasets cannot parse: many types
                reading = f"reading '{spec}' through Hugging Face datasets failed"
                raise UserError(_failure_line(err, log.files, opened.folder, reading)) from None
        if batch is None:
            return
        if text_field not in batch:
            _check_field(spec, sorted(batch), text_field)
        yield batch[text_field]


def parquet_values(path: Path, text_field: str) -> Iterator[list[Any]]:
    """The `text_field` column of a parquet file, a batch of values at a time; a damaged file is one UserError line."""
    import pyarrow.parquet as pq  # only needed for this scheme

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise UserError(f"'{path}' is not a readable parquet file ({_first_line(err)}); check the file or the glob") from None
    _check_columns(path, parquet.schema_arrow.names, text_field)
    with _pyarrow_errors(path, "parquet"):
        for batch in parquet.iter_batches(columns=[text_field]):
            yield batch.column(0).to_pylist()


def arrow_values(path: Path, text_field: str) -> Iterator[list[Any]]:
    """The `text_field` column of an Arrow IPC file (file or stream format, as datasets writes it), a batch at a time."""
    import pyarrow as pa  # only needed for this scheme

    with pa.memory_map(str(path)) as data, _pyarrow_errors(path, "Arrow"):
        try:  # the IPC file format (Feather v2) first, then the stream format that datasets writes
            reader = pa.ipc.open_file(data)
            batches: Iterable[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            data.seek(0)
            reader = pa.ipc.open_stream(data)
            batches = reader
        _check_columns(path, reader.schema.names, text_field)
        for batch in batches:
            yield batch.column(text_field).to_pylist()


def _check_columns(path: Path, names: list[str], text_field: str) -> None:
    if text_field not in names:
        raise UserError(f"'{path}' has no column '{text_field}' (columns: {', '.join(names)}); pass --text-field")


@contextmanager
def _pyarrow_errors(path: Path, kind: str) -> Iterator[None]:
    """pyarrow's own exceptions (not its OSErrors, which the caller reports as unreadable files) as one line."""
    import pyarrow as pa

    try:
        yield
    except pa.ArrowException as err:
        if isinstance(err, OSError):
            raise
        raise UserError(f"'{path}' is not a readable {kind} file ({_first_line(err)}); check the file or the glob") from None
