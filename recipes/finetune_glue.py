"""Finetune a pretrained checkpoint on GLUE (or SuperGLUE) and report dev-set medians over seeds and the average.

    python recipes/finetune_glue.py yamls/finetune/glue.yaml checkpoint=runs/my-bert/latest-rank0.pt
    python recipes/finetune_glue.py yamls/finetune/glue.yaml checkpoint=PATH tasks=[RTE,MRPC] seeds=[0,1,2]
    python recipes/finetune_glue.py yamls/finetune/glue.yaml checkpoint=PATH data.source=glue_dir data.path=glue_data
    composer -n 8 recipes/finetune_glue.py yamls/finetune/glue.yaml checkpoint=s3://bucket/run/ep1-ba5000-rank0.pt
    python recipes/finetune_glue.py yamls/finetune/superglue.yaml checkpoint=PATH data.path=SUPERGLUE_DOWNLOAD

`checkpoint` is a Composer .pt from recipes/pretrain.py (local or remote) or an exported Hugging Face folder;
`checkpoint=hf:NAME_OR_PATH` scores any transformers sequence classifier with its own tokenizer (offline only).
Results land in {save_folder}/glue_results.json and glue_results.md (superglue_results.* for SuperGLUE);
rerunning with the same save_folder skips finished task x seed runs.
"""

from __future__ import annotations

import logging
import sys

from composer_bert.errors import cli_entry
from composer_bert.glue.config import FinetuneConfig
from composer_bert.run.config import load_config, split_recipe_argv
from composer_bert.run.trackers import check_trackers


def _show_progress_lines() -> None:
    """Our per-run INFO lines on stdout, without turning on Composer's own INFO logging."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[glue] %(message)s"))
    logger = logging.getLogger("composer_bert.glue")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)


@cli_entry
def main(argv: list[str]) -> None:
    recipe = split_recipe_argv(argv, "recipes/finetune_glue.py RECIPE.yaml checkpoint=PATH key=value ...")
    if recipe is None:
        print(__doc__)
        return
    cfg = load_config(FinetuneConfig, *recipe)
    check_trackers(cfg.loggers, cfg.save_folder)  # a bad tracker setting stops here, before anything is written
    from composer_bert.glue.runner import run_glue  # torch and Composer load after the config is valid

    _show_progress_lines()
    run_glue(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
