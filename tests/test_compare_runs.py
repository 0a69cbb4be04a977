"""recipes/compare_runs.py: what it refuses, and how it reads a run still writing. Its run over the session's two
finished tiny runs is in tests/pretrain/test_pretrain.py, in the worker that builds them."""

from __future__ import annotations

import pytest

from composer_bert.errors import UserError
from composer_bert.pretrain.report import read_rows
from tests.helpers import cli_error


def test_a_folder_without_metrics_a_run_still_writing_and_a_damaged_glue_result_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    error = cli_error(capsys, "recipes/compare_runs.py", tmp_path / "empty", "--out", tmp_path / "out")
    assert "has no metrics.jsonl" in error and str(tmp_path / "empty") in error
    path = tmp_path / "writing" / "metrics.jsonl"
    path.parent.mkdir()
    path.write_text('{"batch": 0, "loss/train/total": 7.0}\n{"batch": 1, "loss/tr')
    assert read_rows(path) == [{"batch": 0, "loss/train/total": 7.0}]  # a last line still being written is skipped
    path.write_text('{"batch": 0, "loss/tr\n{"batch": 1}\n')  # ... but a damaged line before it is not
    assert "metrics.jsonl line 1 is not JSON" in cli_error(capsys, "recipes/compare_runs.py", path.parent, "--out", tmp_path / "out")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "glue_results.json").write_text('{"checkpoint": "x"')
    error = cli_error(capsys, "recipes/compare_runs.py", tmp_path / "g", "--out", tmp_path / "out")
    assert "glue_results.json is unreadable or not a GLUE result" in error
    assert not (tmp_path / "out").exists()


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
