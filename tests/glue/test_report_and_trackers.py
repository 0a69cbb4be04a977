"""GLUE's report picture and published comparison, and its tracker runs: one per task x seed, named
glue-TASK-seedN, read back from an MLflow file store, TensorBoard event files and offline W&B."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from composer_bert.glue.published import LABEL, PUBLISHED
from composer_bert.glue.results import RunResult, format_markdown, plot_summary, summarize
from composer_bert.glue.tasks import TASKS
from tests.glue.glue_helpers import tiny_run
from tests.trackers import mlflow_history, mlflow_runs, require_trackers, tensorboard_scalars, wandb_offline_run


def full_glue_runs(seeds: int = 3) -> list[RunResult]:
    rng = random.Random(0)
    return [
        RunResult(task.name, seed, "f", {s.name: {m: rng.uniform(40, 90) for m in task.metrics} for s in task.eval_sets}, 1.0)
        for task in TASKS.values()
        for seed in range(seeds)
    ]


def test_markdown_puts_our_row_beside_the_published_rows():
    summary = summarize(full_glue_runs(), "runs/crammed/latest-rank0.pt")
    markdown = format_markdown(summary)
    ours = next(line for line in markdown.splitlines() if line.startswith("| this checkpoint (measured) |"))
    assert ours.split(" | ")[-2] == f"{summary.glue_average:.1f}"  # our GLUE average beside theirs
    for row in PUBLISHED:
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {row.name} ({LABEL}) |"))
        assert f"| {row.glue_average:.1f} |" in line and "arXiv:2212.14034" in line
    assert [row.glue_average for row in PUBLISHED] == [78.6, 80.9]
    assert "not comparable" not in markdown

    partial = summarize([run for run in full_glue_runs() if run.task in ("RTE", "SST-2")], "ckpt.pt")
    assert "Our average is partial (*)" in format_markdown(partial)


def test_bar_chart_is_a_png_with_every_dev_set(tmp_path):
    summary = summarize(full_glue_runs(), "ckpt.pt")
    path = plot_summary(summary, tmp_path / "glue_results.png")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 600
    assert plot_summary(summarize([], "ckpt.pt"), tmp_path / "empty.png") is None


def test_each_glue_run_is_its_own_tracker_run(checkpoint, glue_dir, tmp_path, monkeypatch):
    require_trackers()
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    save = tmp_path / "glue"
    uri = f"file://{tmp_path / 'mlruns'}"
    tiny_run(
        checkpoint, glue_dir, save, "tasks=[SST-2]", "seeds=[0,1]", "save_models=false",
        f"loggers.mlflow.tracking_uri={uri}", "loggers.tensorboard={}", "loggers.wandb={mode: offline, project: glue}",
    )
    results = json.loads((save / "glue_results.json").read_text())
    runs = mlflow_runs(uri)
    assert set(runs) == {"glue-SST-2-seed0", "glue-SST-2-seed1"}
    for seed in (0, 1):
        name = f"glue-SST-2-seed{seed}"
        accuracy = results["per_seed"]["SST-2"][str(seed)]["accuracy"]
        run = runs[name]
        assert run.data.params["run.task"] == "SST-2" and run.data.params["run.seed"] == str(seed)
        assert run.data.params["optimizer.lr"] == "4e-05"
        assert run.data.metrics["glue/SST-2/accuracy"] == pytest.approx(accuracy)
        assert mlflow_history(uri, run.info.run_id, "loss/train/total")

        scalars = tensorboard_scalars(save / "tensorboard" / name)
        assert scalars["loss/train/total"] and list(scalars["glue/SST-2/accuracy"].values()) == pytest.approx([accuracy])

        history, config = wandb_offline_run(tmp_path, name)
        assert [row["glue/SST-2/accuracy"] for row in history if "glue/SST-2/accuracy" in row] == pytest.approx([accuracy])
        assert config["run.seed"] == seed

    with Image.open(save / "glue_results.png") as image:
        image.verify()
    assert LABEL in (save / "glue_results.md").read_text()
