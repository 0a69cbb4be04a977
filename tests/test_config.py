"""The config schema: YAML + overrides merge, and every kind of bad config is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer_bert.config import PretrainConfig, load_config, parse_budget_seconds
from composer_bert.errors import UserError
from tests.conftest import REPO, run_cli

RECIPES = sorted((REPO / "yamls" / "pretrain").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_pretrain_recipe_validates(recipe: Path):
    cfg = load_config(PretrainConfig, recipe)
    assert cfg.run_name and cfg.global_train_batch_size > 0
    assert cfg.save_folder.endswith(cfg.run_name)


def test_crammed_recipe_matches_cramming():
    cfg = load_config(PretrainConfig, REPO / "yamls/pretrain/crammed-bert.yaml")
    m = cfg.model
    assert (m.num_layers, m.hidden_size, m.num_heads, m.intermediate_size) == (16, 768, 12, 1536)
    assert (m.norm_placement, m.ffn_type, m.position_embedding) == ("pre", "geglu", "sinusoidal")
    assert not m.qkv_bias and not m.linear_bias and m.sparse_prediction and m.tie_embeddings
    assert cfg.budget == "24h" and cfg.batch_ramp.final_global_batch_size == 8192
    assert cfg.data.mlm_probability == 0.25 and cfg.optimizer.grad_clip_norm == 0.5


def test_overrides_win_over_yaml():
    cfg = load_config(PretrainConfig, REPO / "yamls/pretrain/tiny.yaml", ["model.num_layers=3", "run_name=other"])
    assert cfg.model.num_layers == 3 and cfg.save_folder.endswith("other")


@pytest.mark.parametrize(
    "override, expected",
    [
        (["model.hiden_size=8"], "unknown config key 'model.hiden_size'; did you mean 'hidden_size'?"),
        (["optimzer.lr=1"], "did you mean 'optimizer'?"),
        (["global_train_batch_size=many"], "'global_train_batch_size' has the wrong type"),
        (["model.ffn_type=relu"], "choose one of: gelu, geglu, swiglu"),
        (["max_duration=10 minutes"], "Composer duration"),
        (["budget=soon"], "wall-clock duration"),
        (["device_train_microbatch_size=big"], "positive integer or 'auto'"),
        (["seed"], "not of the form key=value"),
    ],
)
def test_bad_config_is_one_clear_error(override, expected):
    with pytest.raises(UserError, match=None) as err:
        load_config(PretrainConfig, REPO / "yamls/pretrain/tiny.yaml", override)
    assert expected in str(err.value)


def test_missing_required_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("run_name: x\nglobal_train_batch_size: 8\n")
    with pytest.raises(UserError, match="'max_duration' is required"):
        load_config(PretrainConfig, recipe)


def test_budget_units():
    assert parse_budget_seconds("24h") == 86400
    assert parse_budget_seconds("1.5m") == 90
    assert parse_budget_seconds("2d") == 172800


def test_cli_reports_config_error_without_traceback():
    result = run_cli("recipes/pretrain.py", "yamls/pretrain/tiny.yaml", "model.num_layerz=2")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: unknown config key 'model.num_layerz'; did you mean 'num_layers'?"
