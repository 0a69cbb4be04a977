"""Writing outputs so an interrupted run never leaves something that looks complete: temp path + rename."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from composer_bert.errors import UserError

_ADVICE = {
    errno.ENOSPC: "free some space there",
    errno.EDQUOT: "free some space there (a disk quota is full)",
    errno.EFBIG: "raise the file size limit (ulimit -f)",
}


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` that replaces `path` only if the body succeeds.

    The result gets the mode of the file it replaces, or for a new file the mode a plain `open` would
    give (0666 less the umask, e.g. 0644), not tempfile's owner-only 0600: shards, manifests and results
    are meant to be read by others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_file_beside(path)
    try:
        mode = _mode_for(path, temporary)
        yield temporary
        os.chmod(temporary, mode)  # the body may have put another file there (e.g. a library's own rename)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _mode_for(path: Path, temporary: Path) -> int:
    """The mode of the file being replaced, else that of the fresh temporary (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return stat.S_IMODE(os.stat(temporary).st_mode)


def _new_file_beside(path: Path) -> Path:
    """Create an empty file with a fresh hidden name in `path`'s directory, mode 0666 less the umask."""
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # 48 random bits: practically never
            continue
        return candidate


def check_output_dir(out: str | Path, overwrite: bool, marker: str) -> Path:
    """`out` (absolute) if `atomic_output_dir` may write it: a file is refused as such, an existing output needs
    `overwrite`, and a folder that is not an earlier output (no `marker`) is never replaced. Cheap: callers run it
    before heavy work too."""
    out = Path(os.path.abspath(out))  # lexically normalized, so '.' or 'a/..' get a real name
    if out.exists():
        if not out.is_dir():  # said first: --overwrite would not help, and a file is never replaced
            what = "a file" if out.is_file() else "not a directory"
            raise UserError(f"output '{out}' is {what}; --out takes a directory, choose another --out")
        if not overwrite:
            raise UserError(f"output '{out}' already exists; pass --overwrite to replace it or choose another --out")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise UserError(
                f"'{out}' is not a previous output (it has no {marker}); refusing to replace it, choose another --out"
            )
    return out


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool, marker: str) -> Iterator[Path]:
    """Yield a temporary directory beside `out` that becomes `out` only if the body succeeds.

    An interrupted or failed run leaves nothing at `out` (and removes its temporary directory);
    with `overwrite`, an existing `out` is replaced only after success, and only if it is empty or
    holds `marker` (a file every output of this kind has), so a mistyped --out never deletes
    unrelated data. An `out` that is a file is refused as such, with or without `overwrite`.
    """
    out = check_output_dir(out, overwrite, marker)
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


@contextmanager
def write_errors(what: str) -> Iterator[None]:
    """Turn an OSError while writing `what` (a full disk, a quota, a read-only or failing device) into one line."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
        advice = _ADVICE.get(err.errno, "check that it is writable")
        raise UserError(f"cannot write {what} ({reason}); {advice} or choose another --out") from None


@contextmanager
def removed_if_refused(folder: str | Path) -> Iterator[None]:
    """Remove the local `folder` again if the body stops with a `UserError` (or Ctrl-C) while the folder is still empty.

    Runs prove their `save_folder` writable (creating it) before every input is checked; a refusal found later
    (a checkpoint of the wrong kind, a model too short for the shards) then leaves nothing behind. Only folders
    that did not exist before are removed, deepest first and only while empty (`os.rmdir`), so a parent that
    another run has meanwhile put its own folder in stays.
    """
    from composer_bert.run.remote import is_remote

    path = None if is_remote(folder) else Path(folder).absolute()
    created = [] if path is None else [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        yield
    except (UserError, KeyboardInterrupt):
        for new_folder in created:
            try:
                new_folder.rmdir()
            except OSError:  # not empty (something was written, or another run's folder), or already gone
                break
        raise


def ensure_writable_dir(folder: str | Path, key: str) -> None:
    """Create `folder` and prove it writable; for a bucket URI (s3://...), prove it reachable and listable.

    Runs before any training, so a `save_folder` that is, or sits under, a regular file, or that this user
    cannot write, or a bucket these credentials cannot use, fails in one line instead of after hours of work.
    """
    from composer_bert.run.remote import check_remote_folder, is_remote

    if is_remote(folder):
        check_remote_folder(str(folder), key)
        return
    path = Path(folder)
    blocker = blocking_file(path)
    if blocker is not None:
        raise UserError(f"config key '{key}' is '{folder}', but '{blocker}' is a file; choose another {key}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(f"config key '{key}' is '{folder}', which cannot be written ({err.strerror}); choose another {key}") from None


def blocking_file(folder: str | Path) -> Path | None:
    """The regular file (or other non-folder) that `folder` is, or sits under; None when there is none."""
    path = Path(folder)
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def folder_problem(folder: str | Path) -> str | None:
    """Why `folder` could not be made and written, found without creating anything; None when it can.

    For checks that run before a run writes anything (a tracker's log folder): it is a file or under one, or
    the nearest folder that exists is not writable.
    """
    blocker = blocking_file(folder)
    if blocker is not None:
        return f"'{blocker}' is a file"
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"'{existing}' is not writable"
    return None


def not_utf8(path: Path) -> UserError:
    """The first line of `path` that is not UTF-8 (the decoder's own error names neither file nor line)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                byte = f"byte 0x{line[err.start]:02x} at column {err.start + 1}"
                return UserError(f"{path}:{number} is not UTF-8 ({byte}); save the file as UTF-8 text")
    return UserError(f"{path} is not UTF-8; save the file as UTF-8 text")
