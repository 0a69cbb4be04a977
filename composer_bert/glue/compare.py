"""Several GLUE (or SuperGLUE) save folders side by side: one table per benchmark (a row per folder, then the
published rows) and one grouped bar chart, so a crammed checkpoint and a Hugging Face one scored under the same
protocol are read together. `recipes/compare_runs.py` calls this for folders that hold a `glue_results.json` or
`superglue_results.json`; each benchmark's own rules give the scores (`benchmark.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from composer_bert.glue.benchmark import GLUE, Benchmark
from composer_bert.glue.results import GlueSummary, published_label, read_summary
from composer_bert.run.files import atomic_file


@dataclass
class NamedSummary:
    """A save folder's summary and the label its row and bars carry."""

    label: str
    summary: GlueSummary


def load_glue_folders(folders: list[str], bench: Benchmark = GLUE) -> list[NamedSummary]:
    """Every folder's summary of `bench`, labelled by folder name (by the path as given where names repeat)."""
    names = [Path(folder).name or folder for folder in folders]
    return [
        NamedSummary(folder.rstrip("/") if names.count(name) > 1 else name, read_summary(folder, bench))
        for folder, name in zip(folders, names, strict=True)
    ]


def shared_columns(runs: list[NamedSummary], bench: Benchmark = GLUE) -> list[str]:
    """Every averaged dev set any run has (and any other of one metric, as WNLI or AX-b), in the benchmark's order."""
    return [
        name for name in bench.eval_set_order if any(name in run.summary.medians for run in runs)
        and (name in bench.average_eval_sets or len(bench.eval_set_metrics(name)) == 1)
    ]  # fmt: skip


def _score(summary: GlueSummary, eval_set: str, bench: Benchmark) -> float | None:
    metrics = summary.medians.get(eval_set)
    return None if metrics is None else bench.eval_set_score(eval_set, metrics)


def _average(summary: GlueSummary) -> str:
    if summary.glue_average is None:
        return "–"
    return f"{summary.glue_average:.1f}{'*' if summary.partial else ''}"


def comparison_markdown(runs: list[NamedSummary], bench: Benchmark = GLUE) -> str:
    """Measured rows (one per folder, its checkpoint named) above the published rows, which are labelled so."""
    columns = shared_columns(runs, bench)
    lines = [
        "| Model | " + " | ".join([*columns, f"{bench.title} avg"]) + " | Checkpoint |",
        "|---|" + "---:|" * (len(columns) + 1) + "---|",
    ]
    for run in runs:
        cells = [f"{score:.1f}" if (score := _score(run.summary, name, bench)) is not None else "–" for name in columns]
        lines.append(
            f"| {run.label} (measured) | "
            + " | ".join([*cells, _average(run.summary)])
            + f" | `{run.summary.checkpoint}` |"
        )
    label = published_label(bench)
    for row in bench.published:
        cells = [f"{row.per_task[name]:.1f}" if name in row.per_task else "–" for name in columns]
        lines.append(
            f"| {row.name} ({label}) | " + " | ".join([*cells, f"{row.glue_average:.1f}"]) + f" | {row.source} |"
        )
    lines += [
        "",
        f"Measured: dev-set medians over seeds, x100. {bench.scores_line}",
        "– : not run (measured rows) or not reproduced here (published rows, whose averages alone are cited).",
    ]
    if bench.published_split != "dev":
        lines.append(f"The published rows are {bench.published_split}-set scores: orientation, not like for like.")
    if any(run.summary.partial for run in runs):
        lines.append("* partial: averaged over the dev sets present only; not comparable with the published averages.")
    return "\n".join(lines) + "\n"


def plot_comparison(runs: list[NamedSummary], png_path: str | Path, bench: Benchmark = GLUE) -> Path:
    """Grouped bars: per dev set (and the average), one bar per folder; published averages as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [*shared_columns(runs, bench), f"{bench.title} avg"]
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 3) + 2, 4.5))
    for index, run in enumerate(runs):
        values = [_score(run.summary, name, bench) for name in groups[:-1]] + [run.summary.glue_average]
        xs = [group + (index - (len(runs) - 1) / 2) * width for group, value in enumerate(values) if value is not None]
        bars = ax.bar(
            xs, [value for value in values if value is not None], width, color=f"C{index % 10}", label=run.label
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    for row, style in zip(bench.published, ("--", ":"), strict=False):
        ax.axhline(
            row.glue_average,
            color="grey",
            linestyle=style,
            linewidth=1,
            label=f"{row.name}: {row.glue_average:.1f} ({published_label(bench)})",
        )
    ax.set_xticks(range(len(groups)), groups, rotation=30)
    ax.set_ylabel("dev score x100 (median over seeds)")
    ax.set_title(
        f"{bench.title} dev, measured here"
        + (" (* partial averages: not comparable)" if any(r.summary.partial for r in runs) else ""),
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a bar
    fig.tight_layout()
    with atomic_file(png_path) as temporary:
        fig.savefig(temporary, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    return Path(png_path)
