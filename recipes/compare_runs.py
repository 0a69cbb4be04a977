"""Compare pretraining runs: one PNG of every run's loss against tokens and against training hours, and a
markdown table of where each ended.

    python recipes/compare_runs.py runs/crammed-a runs/crammed-b --out runs/compare

Each argument is a run's save_folder (it holds metrics.jsonl, and summary.json once the run finished).
Writes {out}/compare_runs.png and {out}/compare_runs.md, and prints the table. A run still training can be
compared too: its table row shows the figures so far.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer_bert.errors import cli_entry

PNG_NAME = "compare_runs.png"
TABLE_NAME = "compare_runs.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (save_folder of recipes/pretrain.py)")
    parser.add_argument("--out", default=".", help=f"folder for {PNG_NAME} and {TABLE_NAME} (default: here)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from composer_bert.files import atomic_file, ensure_writable_dir
    from composer_bert.run_report import load_runs, markdown_table, plot_runs

    runs = load_runs(args.runs)  # every folder is checked before anything is written
    ensure_writable_dir(args.out, "--out")
    out = Path(args.out)
    table = markdown_table(runs)
    png = plot_runs(runs, out / PNG_NAME)
    with atomic_file(out / TABLE_NAME) as temporary:
        temporary.write_text(f"# Pretraining runs compared\n\n![loss curves]({PNG_NAME})\n\n{table}")
    print(table, flush=True)
    print(f"wrote {png} and {out / TABLE_NAME}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
