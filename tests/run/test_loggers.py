"""Experiment trackers (W&B offline, MLflow file store, TensorBoard event files): a real tiny pretraining run
logs to all three and each is read back; bad `loggers:` input is one line. Also peak memory and NVML energy
in the end-of-run summary."""

from __future__ import annotations

import json
import sys
import time
import types

import pytest

from composer_bert.errors import UserError
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.run.config import load_config
from tests.helpers import PROBED_RECIPE, REPO, assert_one_error_line, run_cli, tiny_args, train_losses
from tests.trackers import (
    MLflowServer,
    mlflow_history,
    mlflow_runs,
    require_trackers,
    tensorboard_scalars,
    wandb_offline_run,
)


@pytest.mark.slow
def test_pretraining_logs_to_wandb_mlflow_and_tensorboard(tiny_shards, tmp_path):
    require_trackers()
    out = tmp_path / "run"
    uri = f"file://{tmp_path / 'mlruns'}"
    result = run_cli(
        "recipes/pretrain.py",
        *tiny_args(tiny_shards, out, "max_duration=24ba", "eval_interval=12ba", "run_name=tracked"),
        "loggers.wandb={project: tiny}",
        f"loggers.mlflow.tracking_uri={uri}",
        "loggers.mlflow.experiment_name=tests",
        "loggers.tensorboard={}",
        env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jsonl_losses = train_losses(out)

    run = mlflow_runs(uri)["tracked"]
    assert run.data.params["optimizer.lr"] == "0.002" and run.data.params["loggers.mlflow.experiment_name"] == "tests"
    assert run.data.params["model.hidden_size"] == "64"  # the resolved config, overrides included
    losses = mlflow_history(uri, run.info.run_id, "loss/train/total")
    assert len(losses) >= 20 and losses[23] == pytest.approx(jsonl_losses[23])
    assert "metrics/eval/LanguageCrossEntropy" in run.data.metrics

    scalars = tensorboard_scalars(out / "tensorboard" / "tracked")
    assert set(scalars["loss/train/total"]) == set(jsonl_losses)
    assert scalars["loss/train/total"][23] == pytest.approx(jsonl_losses[23])
    assert "metrics/eval/MaskedAccuracy" in scalars

    history, config = wandb_offline_run(tmp_path, "tracked")
    logged = {row["_step"]: row["loss/train/total"] for row in history if "loss/train/total" in row}
    assert logged == pytest.approx(jsonl_losses)
    assert config["optimizer.lr"] == 0.002 and config["run_name"] == "tracked"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["peak_memory_gib"] > 0.1 and summary["peak_memory_of"] == "CPU, peak RSS"
    assert summary["energy_kwh"] is None  # no NVML on a CPU machine
    assert "peak memory (CPU, peak RSS)" in result.stdout
    assert [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("GPU energy")] == ["n/a"]


@pytest.mark.slow
def test_an_mlflow_server_that_stops_answering_mid_run_costs_warnings_not_the_run(tiny_shards, tmp_path):
    """A real MLflow server, paused at batch 4 of 20: training goes on; the first failed background write is one
    warning line at the batch that notices it, the close one more with the total; no MLflow traceback or
    per-write log; the run finishes with every metric in metrics.jsonl, within the request limits (1 s, 2
    attempts) of its last batch. With MLflow's own limits (120 s, 8 attempts) it hung for tens of minutes."""
    require_trackers()
    server = MLflowServer(tmp_path)
    out, paused_file = tmp_path / "run", tmp_path / "paused_at"
    args = tiny_args(
        tiny_shards, out, "max_duration=20ba", "eval_interval=20ba", "run_name=paused-tracker",
        f"loggers.mlflow.tracking_uri={server.uri}", "loggers.mlflow.request_timeout=1", "loggers.mlflow.request_attempts=2",
    )  # fmt: skip
    pause = {"PAUSE_SERVER_AT_BATCH": "4", "SLOW_BATCH_S": "1.5", "SERVER_PID": str(server.process.pid), "PAUSED_FILE": str(paused_file)}
    try:
        result = run_cli("-c", PROBED_RECIPE, *args, env={"REPO": str(REPO), **pause}, timeout=400)
        ended = time.time()
        server.resume()
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and "Failed to log run data" not in result.stderr, result.stderr[-3000:]
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: MLflow")]
        assert len(warnings) == 2, result.stderr[-3000:]
        noticed = warnings[0].split(f"warning: MLflow at {server.uri} stopped taking metrics by batch ")[1]
        assert 4 < int(noticed.split()[0]) <= 20 and "metrics.jsonl keeps every metric" in noticed, warnings[0]
        assert "background write(s) of metrics failed" in warnings[1] and "request_timeout" in warnings[1], warnings[1]
        assert sorted(train_losses(out)) == list(range(20)) and (out / "summary.json").is_file()
        # Quiet here: about 40 s after the pause (16 slowed batches, then the writes and the close, each 2 x 1 s).
        print(f"ended {ended - float(paused_file.read_text()):.1f} s after the pause")
        run = mlflow_runs(server.uri)["paused-tracker"]  # what was written before the pause is there
        assert min(mlflow_history(server.uri, run.info.run_id, "loss/train/total")) <= 4
    finally:
        server.stop()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("loggers.tensorbord={}", "unknown config key 'loggers.tensorbord'; did you mean 'tensorboard'?"),
        ("loggers.wandb.projct=x", "unknown config key 'loggers.wandb.projct'; did you mean 'project'?"),
        ("loggers.mlflow.tracking_url=x", "unknown config key 'loggers.mlflow.tracking_url'; did you mean 'tracking_uri'?"),
        ("loggers.wandb.mode=offlne", "config key 'loggers.wandb.mode' is 'offlne'; choose one of: None, online, offline, disabled"),
    ],
)
def test_bad_logger_keys_are_one_line(override, expected):
    with pytest.raises(UserError) as caught:
        load_config(PretrainConfig, REPO / "yamls/pretrain/tiny.yaml", [override])
    assert str(caught.value) == expected


def test_unknown_logger_key_from_the_glue_cli_is_one_line():
    result = run_cli("recipes/finetune_glue.py", "yamls/finetune/glue.yaml", "checkpoint=x.pt", "loggers.wandb.entiti=me", timeout=120)
    assert_one_error_line(result, "loggers.wandb.entiti", "did you mean 'entity'?")


BLOCKED = """
import runpy, sys

class Uninstalled:
    '''Acts as if mlflow were not installed: its import and find_spec both fail.'''
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize(
    "recipe",
    [
        ("recipes/pretrain.py", "yamls/pretrain/tiny.yaml"),
        ("recipes/finetune_glue.py", "yamls/finetune/glue.yaml", "checkpoint=x.pt"),
    ],
    ids=["pretrain", "glue"],
)
def test_missing_tracker_package_names_the_extra(recipe, tmp_path):
    result = run_cli("-c", BLOCKED, *recipe, "loggers.mlflow={}", f"save_folder={tmp_path / 'out'}", timeout=120)
    assert_one_error_line(result, "loggers.mlflow needs the 'mlflow' package", "pip install -e .[loggers]")
    assert not (tmp_path / "out").exists()


def test_old_flat_wandb_keys_are_read_with_a_warning(tmp_path):
    require_trackers()
    old = tmp_path / "old.yaml"
    old.write_text((REPO / "yamls/pretrain/tiny.yaml").read_text() + "  wandb_project: bert\n  wandb_entity: me\n")
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(PretrainConfig, old)
    assert sorted(str(warning.message).split(";")[0] for warning in caught) == [
        "config key 'loggers.wandb_entity' is now 'loggers.wandb.entity'",
        "config key 'loggers.wandb_project' is now 'loggers.wandb.project'",
    ]
    assert (cfg.loggers.wandb.project, cfg.loggers.wandb.entity) == ("bert", "me")
    with pytest.warns(FutureWarning, match="'loggers.wandb_entity' is now 'loggers.wandb.entity'"):
        cfg = load_config(PretrainConfig, REPO / "yamls/pretrain/tiny.yaml", ["loggers.wandb_entity=team"])
    assert cfg.loggers.wandb.entity == "team" and cfg.loggers.wandb.project is None
    with pytest.warns(FutureWarning):
        assert load_config(PretrainConfig, old, ["loggers.wandb=null"]).loggers.wandb is None


def test_energy_is_the_nvml_counter_difference_summed_over_this_nodes_gpus(monkeypatch):
    """EnergyMeter against a stand-in NVML (this machine has no GPU): two GPUs, counters in millijoules."""
    from composer_bert.run.resources import EnergyMeter

    counters = {0: 5_000_000, 1: 7_000_000}
    nvml = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(counters),
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: counters[handle],
    )
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = EnergyMeter()
    counters[0] += 3_600_000_000  # 3.6 MJ = 1 kWh
    counters[1] += 1_800_000_000
    assert meter.kwh() == pytest.approx(1.5)
    meter.close()


def test_energy_is_none_without_nvml(monkeypatch):
    from composer_bert.run.resources import EnergyMeter

    def no_driver() -> None:
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_driver))
    assert EnergyMeter().kwh() is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed at all
    assert EnergyMeter().kwh() is None
