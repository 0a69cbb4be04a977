"""Autoresume safety: resume only from an intact checkpoint of the same model, or say in one line why not.

Composer's autoresume loads whatever `latest-rank0.pt` points at, and writes each checkpoint straight
under its final name. A run killed mid-save (or one whose disk filled up) therefore leaves a half file
that looks complete: the next run either fails to load it, or, when the symlink still points at the
checkpoint before it, refuses to start because a "future" checkpoint of that name already exists. And a
rerun with another model shape under the same run name fails with a page of "size mismatch" lines.

`prepare_autoresume` runs on rank 0 before the Trainer is built: it moves damaged checkpoints aside (renamed
to `*.pt.damaged`, never deleted), points `latest-rank0.pt` at the newest intact one, and refuses a
checkpoint whose model config differs from the current run's. torch.save files are zip archives with a
CRC per record, so reading one back through `zipfile` is a complete integrity check.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from composer_bert.errors import UserError
from composer_bert.run.checkpoint import RunMetadata

log = logging.getLogger(__name__)

SAVE_FILENAME = "ep{epoch}-ba{batch}-rank{rank}.pt"
LATEST_FILENAME = "latest-rank{rank}.pt"
DAMAGED_SUFFIX = ".damaged"
# Only rank 0 writes a (monolithic) checkpoint; its name is SAVE_FILENAME with rank 0.
_RANK0_CHECKPOINT = re.compile(r"^ep(\d+)-ba(\d+)-rank0\.pt$")
_RANK0_LATEST = LATEST_FILENAME.format(rank=0)
# Model settings that do not change what the saved weights mean: a resumed run may change them.
RESUMABLE_MODEL_CHANGES = frozenset(
    {"init_std", "embedding_dropout", "hidden_dropout", "attention_dropout", "classifier_dropout",
     "activation_checkpointing"}
)


def is_intact(path: str | Path) -> bool:
    """Whether `path` is a complete zip archive (what torch.save writes) whose every record matches its CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error):
        return False


def rank0_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(batch, path) of the checkpoints rank 0 saved in `folder`, newest first."""
    found = []
    for path in folder.iterdir():
        match = _RANK0_CHECKPOINT.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(2)), path))
    return sorted(found, reverse=True)


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to a name Composer will neither load nor collide with (never overwriting)."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    n = 1
    while target.exists() or target.is_symlink():
        target, n = path.with_name(f"{path.name}{DAMAGED_SUFFIX}.{n}"), n + 1
    os.rename(path, target)
    return target


def saved_model_config(path: Path) -> dict[str, Any] | None:
    """The model config `RunMetadata` stored in checkpoint `path` (None for a checkpoint without one).

    mmap keeps the tensors on disk: only the pickled structure is read.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:
        raise UserError(
            f"checkpoint '{path}' cannot be read to resume ({str(err).splitlines()[0]}); "
            "use a new run_name / save_folder, or move that checkpoint away to resume from an older one"
        ) from None
    state = checkpoint.get("state", {}) if isinstance(checkpoint, dict) else {}
    metadata = state.get("callbacks", {}).get(RunMetadata.__qualname__) or {}
    return metadata.get("model_config")


def model_config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'model.KEY OLD -> NEW' for each setting (present in both) that makes old weights mean something else."""
    return [
        f"model.{key} {old[key]!r} -> {new[key]!r}"
        for key in new
        if key in old and key not in RESUMABLE_MODEL_CHANGES and old[key] != new[key]
    ]


def _point_latest(folder: Path, checkpoint: Path) -> None:
    """Make `latest-rank0.pt` a relative symlink to `checkpoint`, as Composer writes it, replacing it atomically."""
    latest = folder / _RANK0_LATEST
    if latest.is_symlink() and os.readlink(latest) == checkpoint.name:
        return
    if latest.exists() and not latest.is_symlink():
        raise UserError(
            f"'{latest}' is a regular file, not the link to the latest checkpoint; move it away to resume"
        )
    temporary = folder / f".{_RANK0_LATEST}.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    os.symlink(checkpoint.name, temporary)
    os.replace(temporary, latest)


def prepare_autoresume(save_folder: str, model_config: dict[str, Any]) -> Path | None:
    """Get `save_folder` ready for Composer's autoresume and return the checkpoint it will load (None: a new run).

    Damaged checkpoints, newest first, are renamed `*.pt.damaged` until an intact one is found; that one must
    hold the same model config as this run (else one UserError naming the differing keys), and
    `latest-rank0.pt` is pointed at it. With checkpoints but none intact, a UserError says what to do.
    """
    folder = Path(save_folder)
    if "://" in save_folder or not folder.is_dir():
        return None
    damaged: list[Path] = []  # where the damaged ones now are
    chosen: tuple[int, Path] | None = None
    for batch, path in rank0_checkpoints(folder):
        if is_intact(path):
            chosen = (batch, path)
            break
        damaged.append(set_aside(path))
    kept = ", ".join(f"'{moved.name}'" for moved in damaged)
    if chosen is None:
        if not damaged:
            return None
        if (folder / _RANK0_LATEST).is_symlink():  # it pointed at a file just set aside
            (folder / _RANK0_LATEST).unlink()
        raise UserError(
            f"no intact checkpoint to resume in '{folder}': the only ones were incomplete (an interrupted save?) "
            f"and are kept as {kept}; run the same command again to start this run over from batch 0, "
            "or use a new run_name / save_folder"
        )
    batch, path = chosen
    saved = saved_model_config(path)
    changes = model_config_changes(saved, model_config) if saved is not None else []
    if changes:
        raise UserError(
            f"run folder '{folder}' holds checkpoints of another model ({', '.join(changes)}), so this run cannot "
            "resume them; use a new run_name / save_folder for the new model, or restore those settings to resume"
        )
    _point_latest(folder, path)
    if damaged:
        log.warning(
            "incomplete checkpoint(s) in '%s' (an interrupted save?) kept as %s; resuming from '%s' (batch %d)",
            folder, kept, path.name, batch,
        )
    return path


def restore_remote_run(save_folder: str, local_dir: str) -> None:
    """Fill `local_dir` from the bucket folder `save_folder` so that autoresume works there as on a local folder:
    the newest intact rank-0 checkpoint (newest first; damaged ones are skipped with a warning and left in the
    bucket), the run's metrics.jsonl and, if it finished, its summary.json. Then `prepare_autoresume(local_dir, ...)` checks and links it as usual.
    """
    from composer_bert.run.remote import RANK0_CHECKPOINT, RemoteFolder

    folder = RemoteFolder(save_folder)
    names = folder.names()
    checkpoints = sorted(
        ((int(match.group(2)), name) for name in names if (match := RANK0_CHECKPOINT.match(name))), reverse=True
    )
    for batch, name in checkpoints:
        path = folder.download(name, Path(local_dir) / name)
        if is_intact(path):
            log.warning("resuming from %s (batch %d)", folder.uri_of(name), batch)
            break
        path.unlink()
        log.warning("checkpoint %s is incomplete or damaged; trying an older one", folder.uri_of(name))
    for name in ("metrics.jsonl", "summary.json"):  # a finished run's summary: rerun, it is reported, not redone
        if checkpoints and name in names:
            folder.download(name, Path(local_dir) / name)
