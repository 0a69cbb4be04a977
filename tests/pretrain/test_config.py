"""The config schema: YAML + overrides merge, and every kind of bad config is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer_bert.errors import UserError
from composer_bert.glue.config import FinetuneConfig
from composer_bert.optim.config import OptimizerConfig
from composer_bert.pretrain.config import PretrainConfig, parse_budget_seconds
from composer_bert.run.config import load_config
from tests.helpers import REPO, assert_one_error_line, run_cli

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
        (["run_name={a} {b}"], "override 'run_name' has a value YAML cannot read"),  # a flow mapping, broken
        (["upload.timeout=[1"], "override 'upload.timeout' has a value YAML cannot read"),
        (["upload.attempts=0"], "'upload.attempts' is 0"),
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


@pytest.mark.parametrize(
    "override, expected",
    [
        (["model.num_heads=5"], "config key 'model.num_heads' is 5, but model.hidden_size 128 is not divisible by it"),
        (["model.num_heads=0"], "config key 'model.num_heads' is 0; use a positive number"),
        (["model.hidden_size=0"], "config key 'model.hidden_size' is 0; use a positive number"),
        (["model.position_embedding=rotary", "model.hidden_size=66", "model.num_heads=2"], "rotary an even head dimension"),
        (["model.init_std=-1"], "config key 'model.init_std' is -1.0; use a positive standard deviation"),
        (["model.hidden_dropout=1.5"], "config key 'model.hidden_dropout' is 1.5; use a probability in [0, 1)"),
        (["optimizer.lr=nan"], "config key 'optimizer.lr' is nan; use a finite number"),
        (["optimizer.lr=-1"], "config key 'optimizer.lr' is -1.0; use a positive learning rate"),
        (["optimizer.eps=-1"], "config key 'optimizer.eps' is -1.0; use a small positive epsilon"),
        (["optimizer.betas=[0.9]"], "config key 'optimizer.betas' is [0.9]; use two numbers in [0, 1)"),
        (["max_duration=0ba"], "config key 'max_duration' is '0ba'; use a positive Composer duration"),
        (["eval_interval=0ba"], "config key 'eval_interval' is '0ba'"),
        (["data.mlm_probability=0"], "config key 'data.mlm_probability' is 0.0; use a probability in (0, 1]"),
        (["data.mask_token_prob=0.8", "data.random_token_prob=0.3"], "sums with data.random_token_prob (0.3) to at most 1"),
        (["callbacks.peak_flops=-1"], "config key 'callbacks.peak_flops' is -1.0"),
        (["global_train_batch_size=0"], "config key 'global_train_batch_size' is 0; use a positive batch size"),
    ],
)
def test_values_out_of_range_are_one_line_before_anything_runs(override, expected):
    with pytest.raises(UserError) as err:
        load_config(PretrainConfig, REPO / "yamls/pretrain/tiny.yaml", override)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_a_yaml_whose_top_level_is_not_a_mapping(tmp_path):
    recipe = tmp_path / "list.yaml"
    recipe.write_text("- run_name: x\n- max_duration: 1ba\n")
    with pytest.raises(UserError, match="holds a list at its top level; a recipe is a mapping"):
        load_config(PretrainConfig, recipe)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.num_heads=5", "error: config key 'model.num_heads' is 5, but model.hidden_size 128 is not divisible"),
        ("max_duration=0ba", "error: config key 'max_duration' is '0ba'"),
        ("optimizer.betas=[0.9]", "error: config key 'optimizer.betas' is [0.9]"),
    ],
)
def test_cli_reports_bad_values_in_one_line_and_writes_nothing(tmp_path, override, expected):
    save = tmp_path / "run"
    result = run_cli("recipes/pretrain.py", "yamls/pretrain/tiny.yaml", f"save_folder={save}", override, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(expected) and len(result.stderr.strip().splitlines()) == 1
    assert not save.exists()


def test_glue_config_validates_ranges_and_reads_the_old_flat_keys_with_a_warning():
    with pytest.raises(UserError, match="config key 'optimizer.eps' is -1.0"):
        load_config(FinetuneConfig, REPO / "yamls/finetune/glue.yaml", ["checkpoint=x.pt", "optimizer.eps=-1"])
    with pytest.warns(FutureWarning, match="'lr' is now 'optimizer.lr'"):
        cfg = load_config(
            FinetuneConfig, None, ["checkpoint=x.pt", "lr=1e-5", "optimizer=decoupled_adamw", "batch_size=32", "eps=1e-7"]
        )
    assert (cfg.optimizer.lr, cfg.optimizer.name, cfg.optimizer.eps) == (1e-5, "decoupled_adamw", 1e-7)
    assert cfg.global_train_batch_size == 32 and cfg.optimizer.weight_decay == 0.0
    with pytest.raises(UserError, match="'save_folder' is 's3://b/glue', but GLUE writes to a local folder"):
        load_config(FinetuneConfig, REPO / "yamls/finetune/glue.yaml", ["checkpoint=s3://b/c.pt", "save_folder=s3://b/glue"])


def test_shipped_glue_recipe_has_the_pretraining_optimizer_section():
    cfg = load_config(FinetuneConfig, REPO / "yamls/finetune/glue.yaml", ["checkpoint=x.pt"])
    assert cfg.optimizer == OptimizerConfig(name="adamw", lr=4e-5, betas=[0.9, 0.98], eps=1e-6, weight_decay=0.0, grad_clip_norm=None)
    assert cfg.global_train_batch_size == 16 and cfg.device_eval_batch_size == 128


def test_loading_a_config_imports_nothing_heavy():
    code = (
        "import sys; from composer_bert.pretrain.config import PretrainConfig; from composer_bert.run.config import load_config; "
        "from composer_bert.glue.config import FinetuneConfig; "
        "load_config(PretrainConfig, 'yamls/pretrain/tiny.yaml'); "
        "load_config(FinetuneConfig, 'yamls/finetune/glue.yaml', ['checkpoint=x']); "
        "import composer_bert.glue as glue; assert glue.FinetuneConfig is FinetuneConfig; "
        "heavy = sorted(m for m in ('torch', 'composer', 'transformers', 'streaming') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    result = run_cli("-c", code, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    "schema, overrides, expected",
    [
        (PretrainConfig, ["loggers.mlflow=yes", "parallelism.fsdp=true"],  # OmegaConf said "config key '' ..."
         "config key 'loggers.mlflow' is True, but it is a section, not a value; write loggers.mlflow={} (or set its "
         "keys, e.g. loggers.mlflow.tracking_uri=VALUE) to turn it on, or loggers.mlflow=null to turn it off"),
        (PretrainConfig, ["parallelism.fsdp=1"], "config key 'parallelism.fsdp' is 1, but it is a section"),
        (PretrainConfig, ["model=[1]"], "config key 'model' is [1], but it is a section, not a value; set its keys, "
                                        "e.g. model.objective=VALUE"),
        (PretrainConfig, ["loggers=wandb"], "config key 'loggers' is 'wandb', but it is a section, not a value; set its "
                                          "keys, e.g. loggers.progress_bar=VALUE"),
        (FinetuneConfig, ["checkpoint=x", "task_overrides.RTE=3"], "config key 'task_overrides.RTE' is 3, but it is a section"),
        (FinetuneConfig, ["checkpoint=x", "loggers.tensorboard=[a]"], "config key 'loggers.tensorboard' is ['a'], but it is a section"),
    ],
)  # fmt: skip
def test_a_value_where_a_section_belongs_names_the_key(schema, overrides, expected):
    recipe = "yamls/pretrain/tiny.yaml" if schema is PretrainConfig else "yamls/finetune/glue.yaml"
    with pytest.raises(UserError) as caught:
        load_config(schema, REPO / recipe, overrides)
    assert str(caught.value).startswith(expected)


def test_a_value_where_a_section_belongs_in_the_yaml_names_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((REPO / "yamls/pretrain/tiny.yaml").read_text() + "  mlflow: yes\n")  # under loggers:
    with pytest.raises(UserError, match=r"^config key 'loggers.mlflow' is True, but it is a section"):
        load_config(PretrainConfig, recipe)


@pytest.mark.parametrize(
    "script, usage",
    [
        ("recipes/pretrain.py", "usage: recipes/pretrain.py RECIPE.yaml key=value"),
        ("recipes/finetune_glue.py", "usage: recipes/finetune_glue.py RECIPE.yaml checkpoint=PATH"),
        ("recipes/generate.py", "usage: recipes/generate.py checkpoint=PATH prompt=TEXT"),
    ],
)
def test_a_recipe_without_arguments_is_the_usage_line_and_exit_2(script, usage):
    result = run_cli(script, timeout=120)
    assert_one_error_line(result, usage, "--help")
    assert result.stdout == ""
    helped = run_cli(script, "--help", timeout=120)
    assert helped.returncode == 0 and f"python {script} " in helped.stdout


def test_an_override_that_is_not_utf8_is_one_line(tmp_path):
    save = tmp_path / "run"
    result = run_cli("recipes/pretrain.py", "yamls/pretrain/tiny.yaml", f"save_folder={save}", b"run_name=r\xe9sum\xe9", timeout=120)
    assert_one_error_line(result, "override 'run_name' is not UTF-8 text (byte 0xe9 at character 11)", "UTF-8")
    assert not save.exists()


def test_seeds_are_checked_against_the_range_numpy_and_composer_accept(monkeypatch):
    """Every seed key takes exactly what its consumers take: numpy (and Composer's seed_all over it) accept
    [0, 2**32 - 1]; Composer seeds rank r with seed + r, so on 8 ranks the top 7 seeds are refused too."""
    import numpy as np
    from composer.utils import reproducibility

    from composer_bert.generation.config import GenerateConfig
    from composer_bert.schema import MAX_SEED

    reproducibility.seed_all(MAX_SEED)  # the top seed is one the consumer takes ...
    for beyond in (MAX_SEED + 1, -1):  # ... and one past either end it refuses
        with pytest.raises(ValueError):
            np.random.seed(beyond)
    tiny = REPO / "yamls/pretrain/tiny.yaml"
    assert load_config(PretrainConfig, tiny, [f"seed={MAX_SEED}"]).seed == MAX_SEED
    for key in ("seed", "data.shuffle_seed"):
        for bad in (-1, MAX_SEED + 1):
            with pytest.raises(UserError, match=rf"config key '{key}' is {bad}; use a seed in \[0, {MAX_SEED}\]"):
                load_config(PretrainConfig, tiny, [f"{key}={bad}"])
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert load_config(PretrainConfig, tiny, [f"seed={MAX_SEED - 7}"]).seed == MAX_SEED - 7
    with pytest.raises(UserError, match=rf"at most {MAX_SEED - 7} on 8 ranks \(rank r seeds with seed \+ r\)"):
        load_config(PretrainConfig, tiny, [f"seed={MAX_SEED - 6}"])
    glue = REPO / "yamls/finetune/glue.yaml"
    with pytest.raises(UserError, match=r"config key 'seeds' is \[0, -5\]; use a seed in \[0, "):
        load_config(FinetuneConfig, glue, ["checkpoint=x.pt", "seeds=[0,-5]"])
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(UserError, match=rf"config key 'seed' is {MAX_SEED + 1}; use a seed in"):
        load_config(GenerateConfig, None, ["checkpoint=x.pt", f"seed={MAX_SEED + 1}"])
