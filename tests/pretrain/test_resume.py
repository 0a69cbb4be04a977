"""Autoresume safety, through the real CLI: damaged checkpoints are set aside (never deleted) and the run
resumes from the newest intact one bit-exactly; another model shape, a save_folder under a file and
'auto' microbatching on a CPU each end in one line; a failed rerun leaves the run's config.yaml alone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from composer_bert.errors import UserError
from composer_bert.pretrain.resume import is_intact, model_config_changes, prepare_autoresume, set_aside
from tests.helpers import REPO, run_cli, tiny_args, train_losses

RUN = ("max_duration=20ba", "save_interval=10ba", "eval_interval=20ba", "run_name=robust")

# The recipe, with Composer's checkpoint writer failing as a full disk would: half the file, then ENOSPC.
DISK_FULL_RECIPE = """
import errno, io, os, runpy, sys
import torch
import composer.utils.checkpoint as checkpoint

write = checkpoint._write_checkpoint_file
def disk_fills_up(state_dict, filename):
    if f"-ba{os.environ['FAIL_SAVE_AT_BATCH']}-" not in os.path.basename(filename):
        return write(state_dict, filename)
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    with open(filename, "wb") as out:
        out.write(buffer.getvalue()[: buffer.tell() // 2])
    raise OSError(errno.ENOSPC, "No space left on device", filename)
checkpoint._write_checkpoint_file = disk_fills_up
runpy.run_path(os.path.join(os.environ["REPO"], "recipes/pretrain.py"), run_name="__main__")
"""


@pytest.fixture(scope="module")
def straight_run(tiny_shards, tmp_path_factory) -> Path:
    """An uninterrupted 20-batch run with checkpoints at batches 10 and 20; tests copy it, never change it."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, out, *RUN), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.readlink(out / "latest-rank0.pt") == "ep0-ba20-rank0.pt"
    return out


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def truncate(path: Path) -> None:
    """Cut a file to half its size, as a save killed midway leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def keep_metrics_before(folder: Path, batch: int) -> None:
    """Drop metrics rows from `batch` on, so any such row after a rerun was written by that rerun."""
    path = folder / "metrics.jsonl"
    rows = [line for line in path.read_text().splitlines() if json.loads(line)["batch"] < batch]
    path.write_text("".join(row + "\n" for row in rows))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_save_folder_that_is_or_sits_under_a_file_fails_in_one_line(tiny_shards, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    for folder in (blocker, blocker / "run"):
        result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, folder, *RUN), timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        assert error_lines(result.stderr) == [
            f"error: config key 'save_folder' is '{folder}', but '{blocker}' is a file; choose another save_folder"
        ]
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_rerun_with_another_model_is_refused_and_keeps_the_runs_config(tiny_shards, straight_run, tmp_path):
    run = copy_run(straight_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if not p.is_symlink()}
    changed = tiny_args(tiny_shards, run, *RUN, "model.hidden_size=96", "model.num_layers=3")
    result = run_cli("recipes/pretrain.py", *changed, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "size mismatch" not in result.stderr and "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "(model.hidden_size 64 -> 96, model.num_layers 2 -> 3)" in line
    assert "use a new run_name / save_folder" in line
    after = {p.name: p.read_bytes() for p in run.iterdir() if not p.is_symlink()}
    assert after == before  # config.yaml, checkpoints and metrics exactly as the run left them
    assert os.readlink(run / "latest-rank0.pt") == "ep0-ba20-rank0.pt"



@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_the_older_one_bit_exactly(tiny_shards, straight_run, tmp_path):
    run = copy_run(straight_run, tmp_path / "run")
    truncate(run / "ep0-ba20-rank0.pt")  # latest-rank0.pt still points at it
    half = (run / "ep0-ba20-rank0.pt").read_bytes()
    keep_metrics_before(run, 10)
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, run, *RUN), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kept as 'ep0-ba20-rank0.pt.damaged'; resuming from 'ep0-ba10-rank0.pt' (batch 10)" in result.stderr
    assert (run / "ep0-ba20-rank0.pt.damaged").read_bytes() == half  # moved aside, never deleted
    assert is_intact(run / "ep0-ba20-rank0.pt") and os.readlink(run / "latest-rank0.pt") == "ep0-ba20-rank0.pt"
    expected, resumed = train_losses(straight_run), train_losses(run)
    assert sorted(resumed) == sorted(expected) == list(range(20))
    assert [resumed[b] for b in range(10, 20)] == [expected[b] for b in range(10, 20)]


@pytest.mark.slow
def test_rerun_after_a_save_failed_on_a_full_disk_succeeds(tiny_shards, straight_run, tmp_path):
    """Composer writes a checkpoint under its final name and links it only afterwards: the half file of the
    failed save sits beside a link to the checkpoint before it, and used to stop every rerun with FileExistsError."""
    run = tmp_path / "run"
    args = tiny_args(tiny_shards, run, *RUN)
    failed = run_cli("-c", DISK_FULL_RECIPE, *args, env={"REPO": str(REPO), "FAIL_SAVE_AT_BATCH": "20"}, timeout=300)
    assert failed.returncode != 0 and "No space left on device" in failed.stderr, failed.stderr[-3000:]
    assert not is_intact(run / "ep0-ba20-rank0.pt") and os.readlink(run / "latest-rank0.pt") == "ep0-ba10-rank0.pt"

    result = run_cli("recipes/pretrain.py", *args, timeout=300)  # the same command again
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from 'ep0-ba10-rank0.pt' (batch 10)" in result.stderr
    assert (run / "ep0-ba20-rank0.pt.damaged").is_file() and is_intact(run / "ep0-ba20-rank0.pt")
    expected, resumed = train_losses(straight_run), train_losses(run)
    assert [resumed[b] for b in range(20)] == [expected[b] for b in range(20)]


@pytest.mark.slow
def test_no_intact_checkpoint_says_so_then_the_same_command_starts_over(tiny_shards, straight_run, tmp_path):
    run = copy_run(straight_run, tmp_path / "run")
    for name in ("ep0-ba10-rank0.pt", "ep0-ba20-rank0.pt"):
        truncate(run / name)
    args = tiny_args(tiny_shards, run, *RUN)
    result = run_cli("recipes/pretrain.py", *args, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: no intact checkpoint to resume in '{run}'")
    assert "'ep0-ba20-rank0.pt.damaged', 'ep0-ba10-rank0.pt.damaged'" in line and "start this run over" in line
    assert not (run / "latest-rank0.pt").is_symlink() and not list(run.glob("*.pt"))

    again = run_cli("recipes/pretrain.py", *args, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert train_losses(run) == train_losses(straight_run)
    assert sorted(p.name for p in run.glob("*.damaged")) == ["ep0-ba10-rank0.pt.damaged", "ep0-ba20-rank0.pt.damaged"]


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without a GPU")
def test_auto_microbatching_on_cpu_uses_the_whole_device_batch(tiny_shards, straight_run, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "recipes/pretrain.py", *tiny_args(tiny_shards, run, *RUN), "device_train_microbatch_size=auto", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "auto microbatching needs a GPU; using 16" in result.stderr
    assert train_losses(run) == train_losses(straight_run)  # the straight run's microbatch is its batch, 16


def _checkpoint(path: Path, **model_config: object) -> Path:
    """A small file shaped like a Composer checkpoint carrying RunMetadata."""
    torch.save({"state": {"callbacks": {"RunMetadata": {"model_config": model_config}}}}, path)
    return path


def test_prepare_autoresume_takes_the_newest_intact_checkpoint_even_if_not_yet_linked(tmp_path):
    """A run stopped after writing a checkpoint but before linking it resumes from that checkpoint."""
    model = {"hidden_size": 64, "num_layers": 2, "hidden_dropout": 0.0}
    _checkpoint(tmp_path / "ep0-ba10-rank0.pt", **model)
    newest = _checkpoint(tmp_path / "ep0-ba20-rank0.pt", **model)
    os.symlink("ep0-ba10-rank0.pt", tmp_path / "latest-rank0.pt")
    assert prepare_autoresume(str(tmp_path), {**model, "hidden_dropout": 0.1}) == newest  # dropout may change
    assert os.readlink(tmp_path / "latest-rank0.pt") == "ep0-ba20-rank0.pt"
    assert prepare_autoresume(str(tmp_path / "new"), model) is None


def test_prepare_autoresume_refuses_another_model_before_touching_the_link(tmp_path):
    _checkpoint(tmp_path / "ep0-ba10-rank0.pt", hidden_size=64, norm_placement="pre")
    os.symlink("ep0-ba10-rank0.pt", tmp_path / "latest-rank0.pt")
    with pytest.raises(UserError, match=r"model.norm_placement 'pre' -> 'post'"):
        prepare_autoresume(str(tmp_path), {"hidden_size": 64, "norm_placement": "post"})
    assert model_config_changes({"a": 1, "init_std": 0.02}, {"a": 1, "init_std": 0.1, "new_key": 3}) == []


def test_set_aside_never_overwrites_an_earlier_damaged_file(tmp_path):
    for content in (b"first", b"second", b"third"):
        (tmp_path / "ep0-ba20-rank0.pt").write_bytes(content)
        set_aside(tmp_path / "ep0-ba20-rank0.pt")
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert kept == {
        "ep0-ba20-rank0.pt.damaged": b"first",
        "ep0-ba20-rank0.pt.damaged.1": b"second",
        "ep0-ba20-rank0.pt.damaged.2": b"third",
    }
