"""Readers of what the experiment trackers wrote (an MLflow file store, TensorBoard event files, offline W&B
runs), for the pretraining and GLUE tests that check their runs; the skip when the trackers are missing; and a
real MLflow tracking server on 127.0.0.1 that a test can pause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ServerProcess, free_port

TRACKERS = ("wandb", "mlflow", "tensorboard")


def require_trackers() -> None:
    """Skip without `.[loggers]`; fail instead where the stack promises it (`make test-pinned` sets
    COMPOSER_BERT_REQUIRE_TRACKERS=1 after installing `.[test,loggers]`; the current stack does not install it)."""
    for module in TRACKERS:
        if os.environ.get("COMPOSER_BERT_REQUIRE_TRACKERS") == "1":
            __import__(module)
        else:
            pytest.importorskip(module, reason="needs the trackers: pip install -e .[loggers]")


def mlflow_runs(tracking_uri: str) -> dict[str, Any]:
    """run name -> MLflow run, over every experiment of a store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return {run.info.run_name: run for run in client.search_runs(experiments)}


def mlflow_history(tracking_uri: str, run_id: str, key: str) -> dict[int, float]:
    from mlflow import MlflowClient

    return {metric.step: metric.value for metric in MlflowClient(tracking_uri).get_metric_history(run_id, key)}


def tensorboard_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value, from every event file of a TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: {event.step: event.value for event in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}


def wandb_offline_run(wandb_dir: Path, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(history rows, config) of the offline W&B run called `name`, read from its run-*.wandb record file
    (W&B's own reader of its transaction log; no network)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    for path in sorted(wandb_dir.glob("wandb/offline-run-*/run-*.wandb")):
        store = datastore.DataStore()
        store.open_for_scan(str(path))
        history, config, run_name = [], {}, None
        while (data := store.scan_data()) is not None:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run_name = record.run.display_name
            elif kind == "history":
                history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
            elif kind == "config":
                config.update({_key(item): json.loads(item.value_json) for item in record.config.update})
        if run_name == name:
            return history, config
    raise AssertionError(f"no offline W&B run named {name} under {wandb_dir}")


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)  # W&B stores a history key in `nested_key`


# MLflow's own tracking app (mlflow.server.app, what `mlflow server` serves) under werkzeug's server: the
# `mlflow server` command needs gunicorn, which the package does not install (the `loggers` extra has
# mlflow-skinny; Flask and werkzeug come with moto[server], of the `test` extra). A file store under argv[2].
_MLFLOW_SERVER = """
import os, sys
os.environ["_MLFLOW_SERVER_FILE_STORE"] = "file://" + sys.argv[2] + "/mlruns"
os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "file://" + sys.argv[2] + "/artifacts"
from mlflow.server import app
from werkzeug.serving import make_server
make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
"""


class MLflowServer(ServerProcess):
    """An MLflow tracking server in a subprocess on a free port, which a test can pause (SIGSTOP: it keeps its
    port and store but answers nothing, as a hung server) and resume."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "mlflow_server.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MLFLOW_SERVER, str(self.port), str(folder)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the MLflow server did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)
