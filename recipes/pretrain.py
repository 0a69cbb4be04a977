"""Pretrain a BERT from a YAML recipe.

    python recipes/pretrain.py yamls/pretrain/tiny.yaml key=value ...
    composer -n 8 recipes/pretrain.py yamls/pretrain/crammed-bert.yaml data.local=shards/c4

Re-running the same command with the same `run_name` resumes from the latest checkpoint.
"""

from __future__ import annotations

import sys

from composer_bert.errors import cli_entry
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.run.config import load_config, split_recipe_argv
from composer_bert.run.trackers import check_trackers


@cli_entry
def main(argv: list[str]) -> None:
    recipe = split_recipe_argv(argv, "recipes/pretrain.py RECIPE.yaml key=value ...")
    if recipe is None:
        print(__doc__)
        return
    cfg = load_config(PretrainConfig, *recipe)
    check_trackers(cfg.loggers, cfg.save_folder)  # a bad tracker setting stops here, before anything is written
    from composer_bert.pretrain.run import run_pretraining  # torch and Composer load after validation
    from composer_bert.pretrain.summary import format_result

    result = run_pretraining(cfg)
    if result is not None:
        print(format_result(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
