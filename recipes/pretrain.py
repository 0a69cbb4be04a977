"""Pretrain a BERT from a YAML recipe.

    python recipes/pretrain.py yamls/pretrain/tiny.yaml key=value ...
    composer -n 8 recipes/pretrain.py yamls/pretrain/crammed-bert.yaml data.local=shards/c4

Re-running the same command with the same `run_name` resumes from the latest checkpoint.
"""

from __future__ import annotations

import sys

from composer_bert.config import PretrainConfig, load_config
from composer_bert.errors import UserError, cli_entry
from composer_bert.pretrain import format_result, run_pretraining


@cli_entry
def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if not argv[0].endswith((".yaml", ".yml")):
        raise UserError(f"first argument '{argv[0]}' is not a YAML recipe; usage: recipes/pretrain.py RECIPE.yaml key=value ...")
    cfg = load_config(PretrainConfig, argv[0], argv[1:])
    result = run_pretraining(cfg)
    if result is not None:
        print(format_result(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
