"""benchmarks/scaling_arithmetic.py (the tables of docs/scaling.md) runs, and counts the parameters our model has."""

from __future__ import annotations

import runpy

from tests.helpers import REPO


def test_scaling_tables_print_and_count_the_built_models_parameters(capsys):
    script = runpy.run_path(str(REPO / "benchmarks/scaling_arithmetic.py"))  # a script, not a package module
    script["main"]()
    printed = capsys.readouterr().out
    assert "| crammed-bert | H100 | 64 |" in printed and "| mosaic-bert-base | A100 | 8 |" in printed

    from composer_bert.models import ComposerMLM
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.run.config import load_config

    recipe = script["load_recipe"]("crammed-bert", script["RECIPES"]["crammed-bert"])
    cfg = load_config(PretrainConfig, REPO / script["RECIPES"]["crammed-bert"], ["data.local=unused"])
    assert recipe.params == sum(p.numel() for p in ComposerMLM(cfg.model).parameters())  # built for real, on CPU
    assert f"| crammed-bert | {recipe.params / 1e6:.1f} M |" in printed
