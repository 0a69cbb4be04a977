"""Compare runs: pretraining runs by their loss curves, GLUE and SuperGLUE results by their scores, each in one
picture and one markdown table.

    python recipes/compare_runs.py runs/crammed-a runs/crammed-b --out runs/compare
    python recipes/compare_runs.py glue/crammed glue/bert-base-uncased --out runs/compare

Each argument is a save folder. A pretraining run's (recipes/pretrain.py; it holds metrics.jsonl, and
summary.json once finished) goes into compare_runs.png: every run's loss against tokens and against training
hours. A GLUE run's (recipes/finetune_glue.py, any checkpoint including hf:NAME; it holds glue_results.json)
goes into compare_glue.png: per-dev-set bars beside the published averages; a SuperGLUE run's
(superglue_results.json) into compare_superglue.png the same way. All kinds may be mixed, and a
folder may be a bucket's (s3://bucket/runs/a: its report files are read from there). The tables go to
{out}/compare_runs.md and the console. A run still training can be compared too: its table row
shows the figures so far.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from composer_bert.errors import ArgumentParser, UserError, cli_entry

PNG_NAME = "compare_runs.png"
TABLE_NAME = "compare_runs.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="save folders of recipes/pretrain.py or recipes/finetune_glue.py runs")
    parser.add_argument("--out", default=".", help=f"folder for {PNG_NAME} and {TABLE_NAME} (default: here)")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="compare_runs_") as downloads:
        compare(args.runs, args.out, Path(downloads))


def compare(given_folders: list[str], out_folder: str, downloads: Path) -> None:
    """Read every folder (a bucket's report files into `downloads` first), then write the pictures and tables."""
    from composer_bert.glue.benchmark import BENCHMARKS
    from composer_bert.glue.compare import comparison_markdown, load_glue_folders, plot_comparison
    from composer_bert.glue.results import results_json
    from composer_bert.pretrain.report import load_runs, markdown_table, plot_runs
    from composer_bert.run.files import atomic_file, ensure_writable_dir
    from composer_bert.run.remote import download_files, is_remote

    report_files = ("metrics.jsonl", "summary.json", *(results_json(bench) for bench in BENCHMARKS.values()))
    # (as given, where it is read): a bucket folder is read from a local copy of its report files
    folders = [
        (given, str(download_files(given, report_files, downloads)) if is_remote(given) else given)
        for given in given_folders
    ]
    # benchmark name -> its save folders (a folder that ran both benchmarks is in both); the rest are pretraining runs
    scored = {
        name: [(given, folder) for given, folder in folders if (Path(folder) / results_json(bench)).is_file()]
        for name, bench in BENCHMARKS.items()
    }
    finetuned = {pair for pairs in scored.values() for pair in pairs}
    pretraining = [pair for pair in folders if pair not in finetuned]
    try:  # every folder is read and checked before anything is written
        runs = load_runs([folder for _, folder in pretraining])
        benchmark_runs = {
            name: load_glue_folders([folder for _, folder in pairs], BENCHMARKS[name]) for name, pairs in scored.items()
        }
    except UserError as err:  # name the bucket folder, not its temporary copy
        message = str(err)
        for given, folder in folders:
            message = message.replace(folder, given)
        raise UserError(message) from None
    labelled = [*zip(runs, pretraining, strict=True)]
    labelled += [pair for name, pairs in scored.items() for pair in zip(benchmark_runs[name], pairs, strict=True)]
    for run, (given, folder) in labelled:
        if run.label == folder.rstrip("/"):  # a repeated name is shown as the path given, not the copy's
            run.label = given.rstrip("/")
    ensure_writable_dir(out_folder, "--out")
    out = Path(out_folder)
    sections, written = [], []
    if runs:
        table = markdown_table(runs)
        written.append(plot_runs(runs, out / PNG_NAME))
        sections.append(f"# Pretraining runs compared\n\n![loss curves]({PNG_NAME})\n\n{table}")
        print(table, flush=True)
    for name, bench_runs in benchmark_runs.items():
        if not bench_runs:
            continue
        bench = BENCHMARKS[name]
        png_name = f"compare_{bench.name}.png"  # compare_glue.png, compare_superglue.png
        table = comparison_markdown(bench_runs, bench)
        written.append(plot_comparison(bench_runs, out / png_name, bench))
        sections.append(f"# {bench.title} results compared\n\n![{bench.title} dev scores]({png_name})\n\n{table}")
        print(table, flush=True)
    with atomic_file(out / TABLE_NAME) as temporary:
        temporary.write_text("\n".join(sections))
    print(f"wrote {', '.join(map(str, written))} and {out / TABLE_NAME}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
