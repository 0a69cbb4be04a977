"""recipes/compare_runs.py on the session's two finished tiny runs (masked and causal): one PNG, one table."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from composer_bert.errors import UserError
from composer_bert.pretrain.report import read_rows
from tests.helpers import assert_one_error_line, run_cli


@pytest.mark.slow
def test_compare_a_masked_and_a_causal_run(tiny_run, tiny_causal_run, tmp_path):
    """The session's two finished runs (MLM `tiny` and causal `gpt-tiny`) side by side."""
    runs = {"tiny-mlm": tiny_run[0], "tiny-causal": tiny_causal_run[0]}
    out = tmp_path / "compare"
    result = run_cli("recipes/compare_runs.py", *map(str, runs.values()), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]

    with Image.open(out / "compare_runs.png") as image:
        image.verify()
    with Image.open(out / "compare_runs.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 300  # two panels side by side

    table = (out / "compare_runs.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| tiny-")}
    assert set(rows) == set(runs)
    for name, cells in rows.items():
        summary = json.loads((runs[name] / "summary.json").read_text())
        assert cells[1] == f"{summary['tokens']:,}"
        accuracy = summary["eval_masked_accuracy"]
        assert cells[3] == f"{summary['eval_loss']:.4f}" and cells[4] == ("n/a" if accuracy is None else f"{accuracy:.4f}")
        assert cells[6:8] == ["n/a", "n/a"]  # no MFU on the CPU, no budget set
        assert cells[8].endswith("GiB (CPU, peak RSS)")
    assert rows["tiny-mlm"][4] != "n/a" and rows["tiny-causal"][4] == "n/a"  # a causal run has no masked accuracy
    assert all(f"| {name} |" in result.stdout for name in runs)


@pytest.mark.slow
def test_a_folder_without_metrics_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("recipes/compare_runs.py", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), timeout=120)
    assert_one_error_line(result, "has no metrics.jsonl", str(tmp_path / "empty"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_still_writing_its_last_line_is_read_up_to_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"batch": 0, "loss/train/total": 7.0}\n{"batch": 1, "loss/tr')
    assert read_rows(path) == [{"batch": 0, "loss/train/total": 7.0}]
    path.write_text('{"batch": 0, "loss/tr\n{"batch": 1}\n')
    result = run_cli("recipes/compare_runs.py", str(tmp_path), "--out", str(tmp_path / "out"), timeout=120)
    assert_one_error_line(result, "metrics.jsonl line 1 is not JSON")


def test_metrics_that_are_not_utf8_name_file_and_line_and_a_damaged_summary_only_costs_its_columns(tmp_path, capsys):
    from composer_bert.pretrain.report import load_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_bytes(b'{"batch": 0, "loss/train/total": 7.0}\n{"batch": 1, "x": "\xff"}\n')
    with pytest.raises(UserError, match=r"metrics.jsonl:2 is not UTF-8 \(byte 0xff at column 20\)"):
        load_run(run)
    (run / "metrics.jsonl").write_text('{"batch": 0, "loss/train/total": 7.0}\n')
    (run / "summary.json").write_bytes(b"\xff\xfe not json")
    assert load_run(run).summary == {} and len(load_run(run).rows) == 1
    assert f"note: {run / 'summary.json'} is damaged" in capsys.readouterr().err
