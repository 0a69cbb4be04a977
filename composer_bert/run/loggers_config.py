"""The `loggers:` section: the console progress bar and the experiment trackers, for pretraining and GLUE.

`run/loggers.py` builds Composer's logger destinations from it; this module stays free of heavy imports so
that loading a config does not import the trackers.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from composer_bert.errors import UserError
from composer_bert.schema import bounded, choice, positive

# The package each tracker needs; `pip install -e .[loggers]` brings all of them.
TRACKER_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow", "tensorboard": "tensorboard"}
INSTALL_HINT = "pip install -e .[loggers]"


@dataclass
class WandBConfig:
    """Composer's `WandBLogger`; unset keys take W&B's own defaults (WANDB_PROJECT, WANDB_ENTITY, ...)."""

    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    # offline: write the run under WANDB_DIR (or ./wandb) for a later `wandb sync`; None: WANDB_MODE or online
    mode: str | None = choice(None, [None, "online", "offline", "disabled"])


@dataclass
class MLflowConfig:
    """Composer's `MLFlowLogger`: a tracking server, or a local `file:///abs/path` store.

    Each request to a server waits at most `request_timeout` seconds and is made at most `request_attempts`
    times (MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT and _MAX_RETRIES, set from here for the run). Metrics are
    written in the background, so a server that stops answering mid-run does not stop training: a write that
    fails after its attempts is one warning line, and the run ends within about attempts x timeout of its last
    batch. MLflow's own defaults (120 s, 8 attempts, backoff) made such a run hang for tens of minutes at its end.
    """

    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else MLflow's default ./mlruns
    experiment_name: str | None = None  # None: MLFLOW_EXPERIMENT_NAME, else Composer's default
    log_system_metrics: bool = False  # MLflow's CPU/GPU/memory sampling thread
    request_timeout: int = bounded(15, "a whole number of seconds >= 1 (MLflow takes whole seconds)", ge=1)
    request_attempts: int = bounded(3, "a number of attempts >= 1", ge=1)


@dataclass
class TensorBoardConfig:
    """Composer's `TensorboardLogger`: event files in `{log_dir}/{run name}/`."""

    log_dir: str | None = None  # None: {save_folder}/tensorboard
    flush_interval: int = positive(100, "a positive number of batches")


@dataclass
class TrackersConfig:
    """Experiment trackers: a section present (even empty, `loggers.mlflow={}`) turns its tracker on; null turns it off.

    Shared by pretraining and GLUE finetuning (`composer_bert/run/loggers.py` builds them).
    """

    wandb: WandBConfig | None = None
    mlflow: MLflowConfig | None = None
    tensorboard: TensorBoardConfig | None = None

    def enabled(self) -> list[str]:
        return [name for name in TRACKER_PACKAGES if getattr(self, name) is not None]

    def check(self) -> None:
        """Each selected tracker's package is importable (found without importing it, so validation stays light)."""
        for name in self.enabled():
            require_tracker_package(name)


def require_tracker_package(name: str) -> None:
    """One line naming the extra to install when tracker `name`'s package is missing."""
    package = TRACKER_PACKAGES[name]
    try:
        found = importlib.util.find_spec(package) is not None
    except ImportError:  # a parent package or an import hook refused it
        found = False
    if not found:
        raise UserError(f"loggers.{name} needs the '{package}' package, which is not installed; install the trackers with: {INSTALL_HINT}")


@dataclass
class LoggersConfig(TrackersConfig):
    """Pretraining's `loggers:` section: the console progress bar, and the trackers."""

    progress_bar: bool = True
