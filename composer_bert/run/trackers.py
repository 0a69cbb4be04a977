"""The boundaries with the tracker libraries: the one place where W&B's, MLflow's and TensorBoard's failures
become one `UserError` line (a missing package is `loggers_config.require_tracker_package`'s).

- W&B: `check_wandb` asks W&B's own `login` (no network: the key's format only) whether an online run has a
  key, from WANDB_API_KEY or `wandb login`'s netrc; without one `wandb.init` raised a traceback once the run had
  started. `wandb_errors` turns what W&B raises later, when Composer's logger starts the W&B run, into one line.

- MLflow: `check_mlflow` refuses, before anything is written, a tracking URI of a scheme MLflow has no store
  for, a file store under a file, and a server that does not answer (probed once, with a short timeout, instead
  of MLflow's minutes of retries); `mlflow_errors` turns what MLflow raises later, while Composer's logger opens
  the experiment, into one line.
  During the run, `apply_mlflow_limits` bounds every request (the config's timeout and attempts) and
  `MLflowWriteFailures` counts the background writes that failed, so a server that stops answering mid-run is
  one warning line instead of a flood of tracebacks and a run that hangs at its end.
- TensorBoard: `check_tensorboard` refuses a `log_dir` that cannot become a writable folder.

`check_trackers` runs both; the recipes call it right after the config loads, before torch, Composer or any
process group starts, so a bad tracker setting costs seconds and leaves no save folder behind.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from composer_bert.errors import UserError
from composer_bert.run.files import folder_problem
from composer_bert.run.loggers_config import MLflowConfig, TensorBoardConfig, TrackersConfig, WandBConfig

PROBE_SECONDS = 5.0  # how long the up-front probe waits for an MLflow server to answer
_KEY = "loggers.mlflow.tracking_uri"
_OFF = "or turn MLflow off with loggers.mlflow=null"


def check_trackers(cfg: TrackersConfig, save_folder: str) -> None:
    """Every selected tracker's setting, checked up front (each tracker's package is `cfg.check()`'s)."""
    if cfg.wandb is not None:
        check_wandb(cfg.wandb)
    if cfg.mlflow is not None:
        check_mlflow(cfg.mlflow)
    if cfg.tensorboard is not None:
        check_tensorboard(cfg.tensorboard, save_folder)


_WANDB_WAYS = "log in with `wandb login` (or set WANDB_API_KEY), or set loggers.wandb.mode=offline (then `wandb sync`)"


WANDB_ENV_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")  # what W&B takes from WANDB_MODE
_WANDB_ONLINE = ("online", "shared", "run")  # the modes that talk to a server, so need a key


def check_wandb(cfg: WandBConfig) -> None:
    """An online W&B run has a key of a valid format (W&B's `login` without verify: nothing leaves the machine);
    WANDB_MODE, when it decides the mode, is one W&B knows (else W&B's settings raise a pydantic traceback)."""
    mode = cfg.mode or os.environ.get("WANDB_MODE", "online")
    if cfg.mode is None and mode not in WANDB_ENV_MODES:
        raise UserError(
            f"environment variable WANDB_MODE is {mode!r}; W&B takes {', '.join(WANDB_ENV_MODES)}: set one, unset "
            "it, or set loggers.wandb.mode"
        )
    if mode not in _WANDB_ONLINE:
        return
    import wandb

    with wandb_errors():
        wandb.login(verify=False)


@contextmanager
def wandb_errors() -> Iterator[None]:
    """What W&B raises (no key, a malformed key, a server that refuses the run) as one line."""
    import wandb

    try:
        yield
    except wandb.errors.Error as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"W&B cannot start an online run ({first.rstrip('.')}); {_WANDB_WAYS}, or loggers.wandb=null") from None


def mlflow_uri(cfg: MLflowConfig) -> str:
    """The tracking URI Composer's `MLFlowLogger` will use: the config's, else Databricks when DATABRICKS_TOKEN is
    set, else MLflow's own (MLFLOW_TRACKING_URI, or the local ./mlruns)."""
    if cfg.tracking_uri is not None:
        return cfg.tracking_uri
    if os.environ.get("DATABRICKS_TOKEN") is not None:
        return "databricks"
    import mlflow

    return mlflow.get_tracking_uri()


def check_mlflow(cfg: MLflowConfig) -> None:
    """The tracking URI's scheme has an MLflow store, a file store can be written, and a server answers."""
    uri = mlflow_uri(cfg)
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry as registry
    except ImportError:  # another MLflow layout: the store is then checked when the logger opens it
        registry = None
    if registry is not None:
        try:
            registry.get_store_builder(uri)  # looks the scheme up; opens and writes nothing
        except Exception:
            schemes = ", ".join(f"{scheme}:" for scheme in registry._registry if scheme)
            raise UserError(
                f"config key '{_KEY}' is '{uri}', a scheme MLflow has no store for; use an http(s):// server, a "
                f"local file:///ABS/PATH, or one of: {schemes}"
            ) from None
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = url2pathname(parsed.path) if parsed.scheme else uri
        problem = folder_problem(path)
        if problem is not None:
            raise UserError(f"config key '{_KEY}' is '{uri}', but {problem}; choose another folder, {_OFF}")
    elif parsed.scheme in ("http", "https"):
        _probe_server(uri)


def _probe_server(uri: str) -> None:
    """One request to the server's /health page: any answer will do (even 401 or 404); no answer within
    PROBE_SECONDS is one line, instead of MLflow's retries, which take minutes before failing."""
    import requests  # MLflow's own HTTP client, so proxies (HTTPS_PROXY, NO_PROXY) apply as they will for MLflow
    from urllib3.exceptions import InsecureRequestWarning

    try:
        with warnings.catch_warnings():  # reachability only: a certificate MLflow will reject is its own message
            warnings.simplefilter("ignore", InsecureRequestWarning)
            requests.get(uri.rstrip("/") + "/health", timeout=PROBE_SECONDS, verify=False, allow_redirects=False)
    except requests.Timeout:
        raise UserError(f"the MLflow server at {uri} did not answer within {PROBE_SECONDS:g} s; check that it "
                        f"is up and that {_KEY} is right, {_OFF}") from None  # fmt: skip
    except requests.RequestException as err:
        raise UserError(f"cannot reach the MLflow server at {uri} ({_reason(err)}); start it or fix {_KEY}, {_OFF}") from None


def _reason(err: Exception) -> str:
    """The operating system's words for a failed connection (requests buries them in a long message)."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    return found.group(1).strip() if found else type(err).__name__


@contextmanager
def mlflow_errors(uri: str) -> Iterator[None]:
    """What MLflow raises while Composer's `MLFlowLogger` opens the store and experiment, as one line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"MLflow at {uri} failed: {first}; check {_KEY}, {_OFF}") from None


def apply_mlflow_limits(cfg: MLflowConfig) -> None:
    """MLflow reads its request limits from the environment at each request: the config's go there for the run."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(cfg.request_timeout)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(cfg.request_attempts - 1)


# MLflow's background writer logs each write that failed after its retries here, with the whole exception.
_ASYNC_LOGGER = "mlflow.utils.async_logging.async_logging_queue"
_FAILED_WRITE = "Failed to log run data"


class MLflowWriteFailures(logging.Filter):
    """The background writes MLflow could not make: their count and the first one's reason. Installed on
    MLflow's writer logger while a run logs to MLflow, it also drops those records (one per write, each with
    a long exception: a flood on the console once a server stops answering); the logger reports them instead."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.first_reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _FAILED_WRITE not in message:
            return True
        self.count += 1
        if self.first_reason is None:
            self.first_reason = reason_of_failed_request(message)
        return False

    def watch(self) -> MLflowWriteFailures:
        logging.getLogger(_ASYNC_LOGGER).addFilter(self)
        return self

    def unwatch(self) -> None:
        logging.getLogger(_ASYNC_LOGGER).removeFilter(self)


def reason_of_failed_request(message: str) -> str:
    """A short reason from MLflow's message about a failed request (urllib3's words, else the message's end)."""
    for known in ("Read timed out", "Connection refused", "Connection reset", "timed out", "Name or service not known"):
        if known in message:
            return known
    return (message.strip().splitlines() or ["no reason given"])[0].rsplit("Exception: ", 1)[-1][:160]


def mlflow_failure_line(
    uri: str, failures: MLflowWriteFailures, closing_error: str | None, cfg: MLflowConfig, kept_locally: str
) -> str:
    """What the user reads once MLflow missed writes: how many, why, where every metric still is, the knobs."""
    said = []
    if failures.count:
        said.append(f"{failures.count} background write(s) of metrics failed ({failures.first_reason})")
    if closing_error is not None:
        said.append(f"the run could not be closed there ({closing_error}), so MLflow may show it as still running")
    return (
        f"MLflow at {uri}: {'; '.join(said)}; training was not affected and {kept_locally}. Each request waited "
        f"{cfg.request_timeout} s, {cfg.request_attempts} time(s): loggers.mlflow.request_timeout and request_attempts set that"
    )


def check_tensorboard(cfg: TensorBoardConfig, save_folder: str) -> None:
    """TensorBoard's event folder (`log_dir`, else {save_folder}/tensorboard) is, or can become, a writable folder."""
    log_dir = cfg.log_dir or str(Path(save_folder) / "tensorboard")
    if "://" in log_dir:  # a bucket save_folder runs in a local temporary folder; a bucket log_dir is TensorBoard's
        return
    problem = folder_problem(log_dir)
    if problem is None:
        return
    if cfg.log_dir:
        raise UserError(f"config key 'loggers.tensorboard.log_dir' is '{log_dir}', but {problem}; choose another log_dir")
    raise UserError(
        f"TensorBoard's folder '{log_dir}' (under save_folder, as loggers.tensorboard.log_dir is unset) cannot be "
        f"made: {problem}; set loggers.tensorboard.log_dir to a folder"
    )
