"""Score a causal checkpoint zero- or few-shot on SuperGLUE tasks by the likelihood of each answer.

    python recipes/zero_shot.py yamls/zeroshot/superglue.yaml checkpoint=runs/gpt-tiny/latest-rank0.pt data.path=superglue_data
    python recipes/zero_shot.py yamls/zeroshot/superglue.yaml checkpoint=PATH num_fewshot=5 'tasks=[COPA,BoolQ]'

`checkpoint` is a Composer .pt of a causal run or a folder written by recipes/export_hf.py. Prompts and scoring
follow lm-evaluation-harness (composer_bert/zeroshot/prompts.py); scores are on the val split (dev). The table
goes to the console and to {save_folder}/zero_shot_results.json and .md.
"""

from __future__ import annotations

import sys

from composer_bert.errors import cli_entry
from composer_bert.run.config import load_config, split_recipe_argv
from composer_bert.zeroshot.config import ZeroShotConfig


@cli_entry
def main(argv: list[str]) -> None:
    recipe = split_recipe_argv(argv, "recipes/zero_shot.py RECIPE.yaml checkpoint=PATH key=value ...")
    if recipe is None:
        print(__doc__)
        return
    cfg = load_config(ZeroShotConfig, *recipe)
    from composer_bert.zeroshot.scoring import run_zero_shot  # torch loads after the config is valid

    run_zero_shot(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
