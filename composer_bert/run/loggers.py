"""Experiment trackers for pretraining and GLUE finetuning alike: Composer's W&B, MLflow and TensorBoard
logger destinations built from a `loggers:` section, and the run's config logged to them once. What the tracker
libraries raise becomes one line in `run/trackers.py`, which also checks their settings before a run starts.

Every tracker sees what `metrics.jsonl` sees (Composer's metric names) under the Trainer's run name:
the pretraining `run_name`, or `glue-{TASK}-seed{n}` for each GLUE run. A resumed pretraining run opens
a new tracker run that continues the step count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from composer.loggers import LoggerDestination

from composer_bert.errors import UserError
from composer_bert.run.loggers_config import INSTALL_HINT, TrackersConfig, require_tracker_package
from composer_bert.run.trackers import mlflow_errors, mlflow_uri, wandb_errors


def tracker_loggers(cfg: TrackersConfig, save_folder: str | Path) -> list[LoggerDestination]:
    """The Composer logger destinations of the trackers `cfg` selects (none when it selects none)."""
    loggers: list[LoggerDestination] = []
    for name in cfg.enabled():
        require_tracker_package(name)
        try:
            loggers.append(_build(name, cfg, save_folder))
        except ImportError as err:  # installed but broken (e.g. a clashing dependency): still one line
            raise UserError(f"loggers.{name}: importing its package failed ({err}); reinstall with: {INSTALL_HINT}") from None
    return loggers


def _build(name: str, cfg: TrackersConfig, save_folder: str | Path) -> LoggerDestination:
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
        from composer.loggers import MLFlowLogger

        mlflow = cfg.mlflow
        assert mlflow is not None
        with mlflow_errors(mlflow_uri(mlflow)):  # it opens the store and the experiment here
            return MLFlowLogger(
                experiment_name=mlflow.experiment_name,
                tracking_uri=mlflow.tracking_uri,
                log_system_metrics=mlflow.log_system_metrics,
            )
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
