"""End to end: the pretraining recipe trains, logs, plots, resumes bit-exactly after SIGKILL, and scales to 2 ranks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from composer_bert.callbacks.metrics_file import LOSS_KEY, read_metrics
from tests.conftest import REPO, run_cli

KILLING_RECIPE = """
import os, runpy, signal, sys
from composer.core import Callback
import composer_bert.pretrain as pretrain

class KillAt(Callback):
    def batch_end(self, state, logger):
        if int(state.timestamp.batch) == int(os.environ["KILL_AT_BATCH"]):
            os.kill(os.getpid(), signal.SIGKILL)

build = pretrain.build_training_controls
def with_killer(cfg):
    controls = build(cfg)
    controls.callbacks.append(KillAt())
    return controls
pretrain.build_training_controls = with_killer
sys.argv = ["recipes/pretrain.py", *sys.argv[1:]]
runpy.run_path("recipes/pretrain.py", run_name="__main__")
"""


def tiny_args(shards: Path, save_folder: Path, *extra: str) -> list[str]:
    return [
        "yamls/pretrain/tiny.yaml",
        f"data.local={shards}",
        f"save_folder={save_folder}",
        "model.hidden_size=64",
        "model.intermediate_size=128",
        "model.max_position_embeddings=64",
        "global_train_batch_size=16",
        "device_train_microbatch_size=16",
        "eval_subset_num_batches=2",
        "loggers.progress_bar=false",
        *extra,
    ]


def train_losses(save_folder: Path) -> dict[int, float]:
    return {row["batch"]: row[LOSS_KEY] for row in read_metrics(save_folder / "metrics.jsonl") if LOSS_KEY in row}


def test_tiny_pretrain_learns_and_reports(tiny_shards, tmp_path):
    out = tmp_path / "run"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, out, "max_duration=120ba", "eval_interval=60ba"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval masked accuracy" in result.stdout and "tokens/s" in result.stdout
    rows = read_metrics(out / "metrics.jsonl")
    keys = set().union(*rows)
    for key in (LOSS_KEY, "throughput/tokens_per_sec", "l2_norm/grad/global", "metrics/eval/MaskedAccuracy"):
        assert key in keys, f"{key} missing from metrics.jsonl (has {sorted(keys)})"
    assert all("batch" in row for row in rows)
    losses = list(train_losses(out).values())
    early, late = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert late < early - 0.5, f"MLM loss did not fall on the synthetic corpus ({early:.2f} -> {late:.2f})"
    assert (out / "loss_curve.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batches"] == 120 and len(rows) == len({row["batch"] for row in rows}) and summary["eval_masked_accuracy"] > 0.0


def test_sigkill_then_rerun_resumes_bit_exactly(tiny_shards, tmp_path):
    common = ("max_duration=40ba", "save_interval=10ba", "eval_interval=40ba", "run_name=resume")
    straight = tmp_path / "straight"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, straight, *common))
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    args = tiny_args(tiny_shards, killed, *common)
    first = run_cli("-c", KILLING_RECIPE, *args, env={"KILL_AT_BATCH": "25"})
    assert first.returncode == -9, first.stderr[-3000:]
    assert max(train_losses(killed)) < 40
    second = run_cli("recipes/pretrain.py", *args)  # the same command again
    assert second.returncode == 0, second.stderr[-3000:]

    expected, resumed = train_losses(straight), train_losses(killed)
    assert sorted(resumed) == sorted(expected) == list(range(40))
    assert [resumed[b] for b in range(20, 40)] == [expected[b] for b in range(20, 40)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_train_and_resume_on_one(tiny_shards, tmp_path):
    composer = str(Path(sys.executable).parent / "composer")
    common = ("save_interval=10ba", "eval_interval=20ba", "run_name=elastic")

    one_rank = tmp_path / "one"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, one_rank, "max_duration=20ba", *common))
    assert result.returncode == 0, result.stderr[-3000:]

    two_then_one = tmp_path / "two"
    launch = [composer, "-n", "2", "--master_port", str(_free_port()), "recipes/pretrain.py"]
    args = tiny_args(tiny_shards, two_then_one, "max_duration=10ba", *common)
    ran = subprocess.run([*launch, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    resumed = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, two_then_one, "max_duration=20ba", *common))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = train_losses(one_rank), train_losses(two_then_one)
    assert sorted(got) == list(range(20))
    # Same global batches in the same order: the losses agree up to DDP's float reduction order.
    for batch in range(20):
        assert got[batch] == pytest.approx(expected[batch], rel=1e-4, abs=1e-5), batch
