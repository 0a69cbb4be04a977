"""Writing outputs so an interrupted run never leaves something that looks complete: temp path + rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from composer_bert.errors import UserError


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` that replaces `path` only if the body succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool, marker: str) -> Iterator[Path]:
    """Yield a temporary directory beside `out` that becomes `out` only if the body succeeds.

    An interrupted or failed run leaves nothing at `out` (and removes its temporary directory);
    with `overwrite`, an existing `out` is replaced only after success, and only if it is empty or
    holds `marker` (a file every output of this kind has), so a mistyped --out never deletes
    unrelated data.
    """
    out = Path(os.path.abspath(out))  # lexically normalized, so '.' or 'a/..' get a real name
    if out.exists():
        if not overwrite:
            raise UserError(f"output '{out}' already exists; pass --overwrite to replace it or choose another --out")
        if not out.is_dir():
            raise UserError(f"output '{out}' exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise UserError(
                f"'{out}' is not a previous output (it has no {marker}); refusing to replace it, choose another --out"
            )
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as err:
        raise UserError(f"cannot create output directory '{out}' ({err.strerror}); choose a writable --out") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old)
    else:
        os.rename(tmp, out)


def ensure_writable_dir(folder: str | Path, key: str) -> None:
    """Create `folder` (a local path; URIs such as s3://... are left to their uploader) and prove it writable.

    Runs before any training, so a `save_folder` that is, or sits under, a regular file, or that this user
    cannot write, fails in one line instead of after hours of work.
    """
    if "://" in str(folder):
        return
    path = Path(folder)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"config key '{key}' is '{folder}', but '{blocker}' is a file; choose another {key}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(f"config key '{key}' is '{folder}', which cannot be written ({err.strerror}); choose another {key}") from None
