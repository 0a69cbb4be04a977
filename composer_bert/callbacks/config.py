"""The `callbacks:` and `loggers:` sections of a recipe."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from composer_bert.errors import UserError
from composer_bert.schema import bounded, choice, positive


@dataclass
class CallbacksConfig:
    """Monitoring and safety callbacks; `composer_bert.training_controls` builds them."""

    # batches averaged for throughput and MFU
    speed_monitor_window: int = positive(20, ">= 1 batches")
    # dense peak FLOP/s per device for MFU; None: our table in composer_bert/peak_flops.py (no MFU on CPU)
    peak_flops: float | None = positive(None, "the device's dense peak FLOP/s, e.g. 312e12")
    # log l2_norm/grad/global (pre-clip) every N batches; 0: don't log
    grad_norm_interval: int = bounded(10, "a number of batches >= 1, or 0 for no logging", ge=0)
    grad_norm_per_layer: bool = False  # also l2_norm/grad/layer_{i}
    nan_guard: bool = True  # stop at a non-finite loss before the optimizer step
    lr_monitor: bool = True


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
    """Composer's `MLFlowLogger`: a tracking server, or a local `file:///abs/path` store."""

    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else MLflow's default ./mlruns
    experiment_name: str | None = None  # None: MLFLOW_EXPERIMENT_NAME, else Composer's default
    log_system_metrics: bool = False  # MLflow's CPU/GPU/memory sampling thread


@dataclass
class TensorBoardConfig:
    """Composer's `TensorboardLogger`: event files in `{log_dir}/{run name}/`."""

    log_dir: str | None = None  # None: {save_folder}/tensorboard
    flush_interval: int = positive(100, "a positive number of batches")


@dataclass
class TrackersConfig:
    """Experiment trackers: a section present (even empty, `loggers.mlflow={}`) turns its tracker on; null turns it off.

    Shared by pretraining and GLUE finetuning (`composer_bert/loggers.py` builds them).
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
