"""atomic_file and atomic_output_dir give outputs the modes a plain open() would (not tempfile's owner-only 0600);
removed_if_refused leaves no empty save_folder behind a refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from composer_bert.data.prep.packing import ConvertOptions, convert_dataset
from composer_bert.data.prep.sources import open_source
from composer_bert.run.files import atomic_file


@pytest.fixture()
def set_umask():
    """Set the process umask for one test, and restore it after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, set_umask, umask):
    set_umask(umask)
    path = tmp_path / "results" / "out.json"
    with atomic_file(path) as temporary:
        temporary.write_text("{}\n")
    assert path.read_text() == "{}\n"
    assert mode(path) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


@pytest.mark.parametrize("existing_mode", [0o600, 0o640, 0o755])
def test_a_replaced_file_keeps_its_mode(tmp_path, set_umask, existing_mode):
    set_umask(0o022)
    path = tmp_path / "metrics.jsonl"
    path.write_text("old\n")
    path.chmod(existing_mode)
    with atomic_file(path) as temporary:
        temporary.write_text("new\n")
    assert path.read_text() == "new\n" and mode(path) == existing_mode


def test_the_mode_holds_when_the_body_renames_its_own_file_over_the_temporary(tmp_path, set_umask):
    """Some writers (e.g. a library's own temp file + rename) put a 0600 file where the temporary was."""
    set_umask(0o022)
    path = tmp_path / "model.pt"
    private = tmp_path / "private"
    private.write_text("weights")
    private.chmod(0o600)
    with atomic_file(path) as temporary:
        os.replace(private, temporary)
    assert path.read_text() == "weights" and mode(path) == 0o644


def test_a_failed_body_leaves_neither_file_nor_temporary(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_file(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_converted_shards_are_readable_by_others(tiny_shards, tmp_path, set_umask):
    """manifest.json (atomic_file), index.json and shards (streaming) and the directories all follow the umask."""
    set_umask(0o022)
    out = tmp_path / "shards"
    options = ConvertOptions(seq_len=64, workers=1, progress=False, max_token_ratio=None)
    convert_dataset(open_source("synthetic:300"), tiny_shards.parent / "tokenizer", out, options)
    paths = [out, *out.rglob("*")]
    assert {p.relative_to(out).as_posix() for p in paths} >= {".", "manifest.json", "train/index.json", "val"}
    for path in paths:
        assert mode(path) == (0o755 if path.is_dir() else 0o644), path


def test_a_refusal_removes_only_the_empty_folders_it_created(tmp_path):
    from composer_bert.errors import UserError
    from composer_bert.run.files import ensure_writable_dir, removed_if_refused

    def refuse(folder: Path, then_write: bool = False) -> None:
        with pytest.raises(UserError), removed_if_refused(folder):
            ensure_writable_dir(folder, "save_folder")
            if then_write:
                (folder / "metrics.jsonl").write_text("{}\n")
            raise UserError("refused after the folder was proved writable")

    refuse(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # the folder and the parent made for it are gone
    (tmp_path / "kept").mkdir()
    refuse(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()  # it existed before: not ours to remove
    refuse(tmp_path / "written", then_write=True)
    assert (tmp_path / "written" / "metrics.jsonl").is_file()  # something was written: kept

    def refuse_beside_another_run(folder: Path) -> None:
        with pytest.raises(UserError), removed_if_refused(folder):
            ensure_writable_dir(folder, "save_folder")
            ensure_writable_dir(tmp_path / "shared" / "b", "save_folder")  # another run starting in the same parent
            raise UserError("refused")

    refuse_beside_another_run(tmp_path / "shared" / "a")
    assert not (tmp_path / "shared" / "a").exists() and (tmp_path / "shared" / "b").is_dir()  # b's folder stays


def test_ctrl_c_before_anything_is_written_leaves_no_empty_folder(tmp_path):
    """Ctrl-C during a GLUE sweep's first run (the probe's SI05) left an empty save_folder; it goes like a refusal."""
    from composer_bert.run.files import ensure_writable_dir, removed_if_refused

    with pytest.raises(KeyboardInterrupt), removed_if_refused(tmp_path / "glue"):
        ensure_writable_dir(tmp_path / "glue", "save_folder")
        raise KeyboardInterrupt
    assert not (tmp_path / "glue").exists()
