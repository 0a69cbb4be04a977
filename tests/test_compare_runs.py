"""recipes/compare_runs.py on two real tiny pretraining runs (different learning rates): one PNG, one table."""

from __future__ import annotations

import json

from PIL import Image

from composer_bert.pretrain.report import read_rows
from tests.helpers import assert_one_error_line, run_cli, tiny_args


def test_compare_two_tiny_runs(tiny_shards, tmp_path):
    for name, lr in (("fast", "3e-3"), ("slow", "5e-4")):
        result = run_cli(
            "recipes/pretrain.py",
            *tiny_args(tiny_shards, tmp_path / name, "max_duration=20ba", "eval_interval=10ba", f"optimizer.lr={lr}"),
        )
        assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "compare"
    result = run_cli("recipes/compare_runs.py", str(tmp_path / "fast"), str(tmp_path / "slow"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]

    with Image.open(out / "compare_runs.png") as image:
        image.verify()
    with Image.open(out / "compare_runs.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 300  # two panels side by side

    table = (out / "compare_runs.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| fast") or line.startswith("| slow")}
    assert set(rows) == {"fast", "slow"}
    for name, cells in rows.items():
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert cells[1] == f"{summary['tokens']:,}"
        assert cells[3] == f"{summary['eval_loss']:.4f}" and cells[4] == f"{summary['eval_masked_accuracy']:.4f}"
        assert cells[6:8] == ["n/a", "n/a"]  # no MFU on the CPU, no budget set
        assert cells[8].endswith("GiB (CPU, peak RSS)")
    assert rows["fast"][3] != rows["slow"][3]
    assert "| fast |" in result.stdout and "| slow |" in result.stdout


def test_a_folder_without_metrics_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("recipes/compare_runs.py", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), timeout=120)
    assert_one_error_line(result, "has no metrics.jsonl", str(tmp_path / "empty"))
    assert not (tmp_path / "out").exists()


def test_a_run_still_writing_its_last_line_is_read_up_to_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"batch": 0, "loss/train/total": 7.0}\n{"batch": 1, "loss/tr')
    assert read_rows(path) == [{"batch": 0, "loss/train/total": 7.0}]
    path.write_text('{"batch": 0, "loss/tr\n{"batch": 1}\n')
    result = run_cli("recipes/compare_runs.py", str(tmp_path), "--out", str(tmp_path / "out"), timeout=120)
    assert_one_error_line(result, "metrics.jsonl line 1 is not JSON")
