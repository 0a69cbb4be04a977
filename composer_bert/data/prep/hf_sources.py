"""Hugging Face `datasets` sources: `hf:DATASET[:CONFIG][:SPLIT]`, `disk:DIR[:SPLIT]` and the named shortcuts.

- `hf:` streams through `datasets.load_dataset(DATASET, CONFIG, split=SPLIT, streaming=True)` (SPLIT
  defaults to train). DATASET is a Hub name, which needs the network, or a local folder of data files
  (jsonl, json, csv, parquet, arrow), which works offline. A folder written by `save_to_disk` is
  read as `disk:` would read it.
- `disk:DIR[:SPLIT]` reads a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`
  (`datasets.load_from_disk`); for a DatasetDict SPLIT defaults to train.
- `c4`, `openwebtext`, `pile` and `wikipedia` are shortcuts for the `hf:` specs in `SHORTCUTS`.

Opening checks what can be checked before any document is read: the dataset is reachable, the split
exists, and the text field is one of its columns when the columns are known up front.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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
_OFFLINE_REMEDY = (
    "where there is network, save it with datasets.load_dataset(...).save_to_disk(DIR) and pass disk:DIR, "
    "or pass a local folder of its data files as hf:DIR"
)


@dataclass
class OpenedDataset:
    """A dataset ready to iterate, and the spec it resolved to (recorded in the manifest)."""

    dataset: Any  # datasets.Dataset or datasets.IterableDataset
    resolved: str


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

    try:
        with _quiet_hub():
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
        raise UserError(f"could not open '{spec}' through Hugging Face datasets: {_first_line(err)}") from None
    _check_field(spec, dataset.column_names, text_field)
    resolved = ":".join(["hf", name, config or "", split])
    return OpenedDataset(dataset, resolved)


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


def dataset_documents(opened: OpenedDataset, text_field: str, spec: str) -> Iterator[str]:
    """The non-empty strings of `text_field`, in the dataset's order; a read failure is one UserError line."""
    dataset = opened.dataset
    rows = dataset.select_columns([text_field]) if dataset.column_names else dataset
    try:
        for batch in rows.iter(batch_size=_BATCH_ROWS):
            if text_field not in batch:
                _check_field(spec, sorted(batch), text_field)
            for text in batch[text_field]:
                if isinstance(text, str) and text.strip():
                    yield text
    except OSError as err:  # a file gone or unreadable since opening, a dropped connection
        raise UserError(
            f"reading '{spec}' failed ({_first_line(err)}); check the files or the network and run again"
        ) from None
