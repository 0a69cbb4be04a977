"""Experiment trackers for pretraining and GLUE finetuning alike: Composer's W&B, MLflow and TensorBoard
logger destinations built from a `loggers:` section, and the run's config logged to them once. What the tracker
libraries raise becomes one line in `run/trackers.py`, which also checks their settings before a run starts.

Every tracker sees what `metrics.jsonl` sees (Composer's metric names) under the Trainer's run name:
the pretraining `run_name`, or `glue-{TASK}-seed{n}` for each GLUE run. A resumed pretraining run opens
a new tracker run that continues the step count.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from composer.loggers import LoggerDestination

from composer_bert.errors import UserError
from composer_bert.run.loggers_config import INSTALL_HINT, MLflowConfig, TrackersConfig, require_tracker_package
from composer_bert.run.trackers import (
    MLflowWriteFailures,
    apply_mlflow_limits,
    mlflow_errors,
    mlflow_failure_line,
    mlflow_uri,
    reason_of_failed_request,
    wandb_errors,
)


def tracker_loggers(cfg: TrackersConfig, save_folder: str | Path, kept_locally: str) -> list[LoggerDestination]:
    """The Composer logger destinations of the trackers `cfg` selects (none when it selects none). `kept_locally`
    says where the run keeps what the trackers get, for the line that reports a tracker's missed writes."""
    loggers: list[LoggerDestination] = []
    for name in cfg.enabled():
        require_tracker_package(name)
        try:
            loggers.append(_build(name, cfg, save_folder, kept_locally))
        except ImportError as err:  # installed but broken (e.g. a clashing dependency): still one line
            raise UserError(f"loggers.{name}: importing its package failed ({err}); reinstall with: {INSTALL_HINT}") from None
    return loggers


def _build(name: str, cfg: TrackersConfig, save_folder: str | Path, kept_locally: str) -> LoggerDestination:
    if name == "wandb":
        wandb = cfg.wandb
        assert wandb is not None
        return _wandb_logger_class()(
            project=wandb.project,
            entity=wandb.entity,
            group=wandb.group,
            tags=list(wandb.tags) or None,
            init_kwargs={"mode": wandb.mode} if wandb.mode else None,
        )
    if name == "mlflow":
        mlflow = cfg.mlflow
        assert mlflow is not None
        apply_mlflow_limits(mlflow)
        uri = mlflow_uri(mlflow)
        with mlflow_errors(uri):  # it opens the store and the experiment here
            return _mlflow_logger_class()(mlflow, uri, kept_locally)
    from composer.loggers import TensorboardLogger

    tensorboard = cfg.tensorboard
    assert tensorboard is not None
    log_dir = tensorboard.log_dir or str(Path(save_folder) / "tensorboard")
    return TensorboardLogger(log_dir=log_dir, flush_interval=tensorboard.flush_interval)


def _wandb_logger_class() -> type[LoggerDestination]:
    from composer.loggers import WandBLogger

    class MetricsOnlyWandBLogger(WandBLogger):
        """Composer's `WandBLogger` minus its checkpoint-store role: we log no artifacts, so autoresume must
        not ask W&B's API for a checkpoint (that needs an API key and the network, and fails offline)."""

        def init(self, state: Any, logger: Any) -> None:
            with wandb_errors():  # wandb.init runs here
                super().init(state, logger)

        def can_upload_files(self) -> bool:
            return False

        def download_file(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("checkpoints are not kept in W&B")

    return MetricsOnlyWandBLogger


def _mlflow_logger_class() -> type[LoggerDestination]:
    from composer.loggers import MLFlowLogger
    from mlflow.exceptions import MlflowException
    from tqdm.auto import tqdm

    class ReportingMLFlowLogger(MLFlowLogger):
        """Composer's `MLFlowLogger`, whose failures after the run has started are reported, not raised: its
        metrics go out in the background (MLflow's writer), so a server that stops answering mid-run costs the
        tracker those writes, never the training. The first failed write is one warning line at the batch that
        notices it; closing the run reports the total (and a close the server did not answer) in one line."""

        def __init__(self, cfg: MLflowConfig, uri: str, kept_locally: str) -> None:
            super().__init__(
                experiment_name=cfg.experiment_name,
                tracking_uri=cfg.tracking_uri,
                log_system_metrics=cfg.log_system_metrics,
            )
            self.cfg, self.uri, self.kept_locally = cfg, uri, kept_locally
            self.failures = MLflowWriteFailures().watch()
            self.warned = self.closed = False

        def init(self, state: Any, logger: Any) -> None:
            with mlflow_errors(self.uri):  # the run is created here
                super().init(state, logger)

        def batch_end(self, state: Any, logger: Any) -> None:
            super().batch_end(state, logger)
            if self.failures.count and not self.warned:
                self.warned = True
                tqdm.write(
                    f"warning: MLflow at {self.uri} stopped taking metrics by batch {int(state.timestamp.batch)} "
                    f"({self.failures.first_reason}); training goes on, {self.kept_locally}",
                    file=sys.stderr,
                )

        def post_close(self) -> None:
            if self.closed:  # Composer closes its loggers again at exit: one wait for the server is enough
                return
            self.closed, closing_error = True, None
            try:
                super().post_close()  # waits for the writes still queued, then marks the run finished
            except (MlflowException, OSError) as err:
                closing_error = reason_of_failed_request(str(err))
            finally:
                self.failures.unwatch()
            if self.failures.count or closing_error is not None:
                line = mlflow_failure_line(self.uri, self.failures, closing_error, self.cfg, self.kept_locally)
                print(f"warning: {line}", file=sys.stderr, flush=True)

    return ReportingMLFlowLogger


def flat_hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as `section.key` -> value, the names `key=value` overrides use (trackers show flat params)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_hyperparameters(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
    return flat
