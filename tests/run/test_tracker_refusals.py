"""The tracker boundaries (composer_bert/run/trackers.py): a bad MLflow or TensorBoard setting is one line through
the real CLIs, within seconds, before anything is written (the shards are not even looked at: data.local names a
folder that does not exist, so a check that came later would say so instead)."""

from __future__ import annotations

import socket
import types

import pytest

from composer_bert.errors import UserError
from tests.helpers import REPO, assert_one_error_line, free_port, run_cli
from tests.trackers import require_trackers

RECIPES = {  # run in the test's folder, so that a relative path lands there
    "pretrain": (REPO / "recipes/pretrain.py", REPO / "yamls/pretrain/tiny.yaml"),
    "glue": (REPO / "recipes/finetune_glue.py", REPO / "yamls/finetune/glue.yaml", "checkpoint=missing.pt"),
}


def refused(tmp_path, *overrides: str, recipe: str = "pretrain", env: dict[str, str] | None = None):
    """`recipe` run in `tmp_path` with `overrides`, on shards (or a checkpoint) that do not exist; asserts that it
    wrote nothing there, not even its save folder (the files the test put there stay as they were)."""
    before = sorted(path.name for path in tmp_path.iterdir())
    result = run_cli(
        *RECIPES[recipe], f"data.local={tmp_path / 'no-shards'}" if recipe == "pretrain" else "tasks=[RTE]",
        f"save_folder={tmp_path / 'out'}", *overrides, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == before, "nothing written, not even the save folder"
    return result


@pytest.mark.slow  # ~4 s: importing MLflow in the CLI
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_mlflow_uri_of_an_unknown_scheme_is_refused_before_anything_is_written(recipe, tmp_path):
    require_trackers()
    result = refused(tmp_path, "loggers.mlflow.tracking_uri=garbage://x", recipe=recipe)
    assert_one_error_line(result, "'loggers.mlflow.tracking_uri' is 'garbage://x'", "no store for", "http", "file:///")


@pytest.mark.slow  # ~4 s: importing MLflow in the CLI
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_mlflow_server_nobody_listens_on_is_one_line_not_minutes_of_retries(recipe, tmp_path):
    require_trackers()
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there: refused at once (MLflow retried for 257 s)
    result = refused(tmp_path, f"loggers.mlflow.tracking_uri={uri}", recipe=recipe)
    assert_one_error_line(result, f"cannot reach the MLflow server at {uri}", "Connection refused", "loggers.mlflow=null")


def test_mlflow_server_that_never_answers_times_out_the_probe(monkeypatch):
    require_trackers()
    from composer_bert.run import trackers
    from composer_bert.run.loggers_config import MLflowConfig

    monkeypatch.setattr(trackers, "PROBE_SECONDS", 0.5)
    with socket.socket() as silent:  # accepts connections (the backlog) but never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(UserError) as caught:
            trackers.check_mlflow(MLflowConfig(tracking_uri=uri))
    assert str(caught.value).startswith(f"the MLflow server at {uri} did not answer within 0.5 s;")


@pytest.mark.slow  # ~4 s: importing MLflow in the CLI
def test_mlflow_file_store_under_a_file_is_refused(tmp_path):
    require_trackers()
    (tmp_path / "notes").write_text("a file")
    uri = f"file://{tmp_path / 'notes' / 'mlruns'}"
    result = refused(tmp_path, f"loggers.mlflow.tracking_uri={uri}")
    assert_one_error_line(result, f"'loggers.mlflow.tracking_uri' is '{uri}'", f"'{tmp_path / 'notes'}' is a file")


def test_what_mlflow_raises_while_the_logger_opens_is_one_line(monkeypatch):
    """The second line of defence (the up-front check skipped): MLflow's own exception, mapped where the logger opens."""
    require_trackers()
    from composer_bert.run import loggers
    from composer_bert.run.loggers_config import MLflowConfig, TrackersConfig

    with pytest.raises(UserError) as caught:
        loggers.tracker_loggers(TrackersConfig(mlflow=MLflowConfig(tracking_uri="garbage://x")), "unused", "unused")
    assert str(caught.value).startswith("MLflow at garbage://x failed: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_tensorboard_log_dir_that_is_a_file_is_one_line_up_front(recipe, tmp_path):
    require_trackers()
    (tmp_path / "events").write_text("a file")
    result = refused(tmp_path, "loggers.tensorboard.log_dir=events", recipe=recipe)
    assert_one_error_line(result, "'loggers.tensorboard.log_dir' is 'events', but 'events' is a file")


def test_default_tensorboard_folder_blocked_by_a_file_names_the_unset_key(tmp_path):
    require_trackers()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tensorboard").write_text("a file")
    result = refused(tmp_path, "loggers.tensorboard={}")
    blocker = tmp_path / "out" / "tensorboard"
    assert_one_error_line(result, f"TensorBoard's folder '{blocker}'", f"'{blocker}' is a file", "loggers.tensorboard.log_dir")
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["tensorboard"]


def test_a_value_where_a_section_belongs_names_the_key_through_the_cli(tmp_path):
    result = refused(tmp_path, "loggers.mlflow=yes", "parallelism.fsdp=true")
    assert_one_error_line(
        result, "config key 'loggers.mlflow' is True, but it is a section", "loggers.mlflow={}", "loggers.mlflow=null"
    )


NO_WANDB_LOGIN = {"WANDB_API_KEY": "", "WANDB_MODE": "online", "WANDB_SILENT": "true", "NETRC": "/nonexistent"}


@pytest.mark.slow  # ~5 s: importing W&B in the CLI
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_wandb_online_without_a_key_is_one_line_before_anything_is_written(recipe, tmp_path):
    """W&B online with no key (none in the environment, no netrc in HOME): wandb.init raised a traceback once the
    run had started; now W&B's own login check refuses it up front."""
    require_trackers()
    env = {**NO_WANDB_LOGIN, "HOME": str(tmp_path / "home"), "WANDB_CONFIG_DIR": str(tmp_path / "home")}
    result = refused(tmp_path, "loggers.wandb={project: x}", recipe=recipe, env=env)
    assert_one_error_line(result, "W&B cannot start an online run (No API key configured", "wandb login", "mode=offline")


def test_what_wandb_raises_when_the_logger_starts_its_run_is_one_line(tmp_path, monkeypatch):
    """The second line of defence (the up-front check skipped): a malformed key fails in wandb.init, mapped where
    Composer's logger starts the W&B run."""
    require_trackers()
    from composer_bert.run import loggers
    from composer_bert.run.loggers_config import TrackersConfig, WandBConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_API_KEY", "short")
    (logger,) = loggers.tracker_loggers(TrackersConfig(wandb=WandBConfig(project="x", mode="online")), "unused", "unused")
    try:
        with pytest.raises(UserError) as caught:
            logger.init(state=types.SimpleNamespace(run_name="x"), logger=None)  # the one field init reads
    finally:
        import wandb

        wandb.teardown()  # W&B keeps the settings it read (this bad key) for the process: a later run would fail
    message = str(caught.value)
    assert message.startswith("W&B cannot start an online run (") and "API key must have 40+ characters" in message
    assert "\n" not in message


@pytest.mark.slow  # ~4 s: the CLI's imports
def test_a_wandb_mode_from_the_environment_that_wandb_does_not_know_is_one_line(tmp_path):
    require_trackers()
    result = refused(tmp_path, "loggers.wandb={project: x}", env={"WANDB_MODE": ""})  # W&B: a pydantic traceback
    assert_one_error_line(result, "environment variable WANDB_MODE is ''; W&B takes online, offline", "loggers.wandb.mode")
