"""SuperGLUE end to end under the GLUE protocol: every task finetuned from a tiny checkpoint, the diagnostics
scored with RTE's model, the average recomputed from the per-run files, the reports written, a rerun resumed,
and the Hugging Face shape scoring exactly as the official download does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.glue.superglue_helpers import save_as_hf, superglue_run, write_superglue_dir
from tests.helpers import REPO, load_script_main

AVERAGED = ("BoolQ", "CB", "COPA", "MultiRC", "ReCoRD", "RTE", "WiC", "WSC")


@pytest.fixture(scope="module")
def superglue_data(tmp_path_factory) -> Path:
    return write_superglue_dir(tmp_path_factory.mktemp("superglue"))


def test_every_task_runs_and_the_average_is_each_tasks_metrics_then_the_tasks(checkpoint, superglue_data, tmp_path):
    save = tmp_path / "sg"
    summary = superglue_run(checkpoint, superglue_data, save)
    results = json.loads((save / "superglue_results.json").read_text())
    assert results["benchmark"] == "superglue" and results["superglue_average_over"] == list(AVERAGED)
    runs = {task: json.loads((save / "runs" / task / "seed0.json").read_text())["metrics"] for task in AVERAGED}
    assert set(runs["RTE"]) == {"RTE", "AX-b", "AX-g"}  # the diagnostics come from RTE's model
    assert set(runs["RTE"]["AX-g"]) == {"gender_parity", "accuracy"} and set(runs["RTE"]["AX-b"]) == {"mcc"}
    task_scores = [sum(runs[task][task].values()) / len(runs[task][task]) for task in AVERAGED]
    assert results["superglue_average"] == pytest.approx(sum(task_scores) / 8) == summary.glue_average
    assert set(runs["CB"]["CB"]) == {"accuracy", "macro_f1"} and set(runs["ReCoRD"]["ReCoRD"]) == {"token_f1", "em"}
    for task in AVERAGED:
        assert all(0 <= value <= 100 for value in runs[task][task].values()), runs[task]
    markdown = (save / "superglue_results.md").read_text()
    assert "# SuperGLUE dev results" in markdown and "SuperGLUE avg" in markdown and "BERT-large baseline" in markdown
    assert (save / "superglue_results.png").stat().st_size > 1000
    stamps = {task: (save / "runs" / task / "seed0.json").stat().st_mtime_ns for task in AVERAGED}
    again = superglue_run(checkpoint, superglue_data, save)  # the same sweep again: every run is already finished
    assert again.glue_average == summary.glue_average
    assert {task: (save / "runs" / task / "seed0.json").stat().st_mtime_ns for task in AVERAGED} == stamps

    # compare_runs.py reads the folder by SuperGLUE's rules: CB's cell is its two metrics' mean, the average its own.
    out = tmp_path / "compare"
    load_script_main(REPO / "recipes" / "compare_runs.py")([str(save), "--out", str(out)])
    assert (out / "compare_superglue.png").stat().st_size > 1000 and not (out / "compare_glue.png").exists()
    table = (out / "compare_runs.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Model |"))
    row = next(line for line in table.splitlines() if line.startswith("| sg (measured)"))
    cells = dict(zip(header.strip("|").split("|"), row.strip("|").split("|"), strict=True))
    cells = {key.strip(): value.strip() for key, value in cells.items()}
    assert cells["CB"] == f"{sum(results['tasks']['CB'].values()) / 2:.1f}" and "AX-g" not in cells
    assert cells["SuperGLUE avg"] == f"{results['superglue_average']:.1f}" and "AX-b" in cells
    assert "# SuperGLUE results compared" in table and "test-set scores" in table


def test_the_hugging_face_shape_scores_exactly_as_the_official_download(checkpoint, superglue_data, tmp_path):
    hf = save_as_hf(superglue_data, tmp_path / "hf")
    official = superglue_run(checkpoint, superglue_data, tmp_path / "official", "tasks=[CB,MultiRC]")
    theirs = superglue_run(checkpoint, hf, tmp_path / "hf_run", "tasks=[CB,MultiRC]", "data.source=hf")
    assert official.medians == theirs.medians and official.glue_average == theirs.glue_average
