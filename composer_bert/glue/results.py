"""The save folder's layout (each run's result and model file), per-run result files, the median over seeds,
the benchmark's average, and the reports (JSON, markdown, console, chart). SuperGLUE's reports follow the same
rules with its own average (`glue/benchmark.py`) and files (`superglue_results.*`); its diagnostics are reported,
never averaged.

How the GLUE average is computed (Cramming's convention, also BERT's table):
  * Each run (task x seed) is scored on the task's dev set(s); metrics are x100.
  * Per dev set and metric, the reported value is the median over seeds (for an even number of seeds,
    the mean of the two middle values). Each metric's median is taken on its own, so MRPC's F1 and
    accuracy medians may come from different seeds.
  * The GLUE average is the unweighted mean of one score per dev set: MNLI-m and MNLI-mm count as two
    entries, MRPC and QQP by F1, STS-B by Pearson correlation, CoLA by Matthews correlation, SST-2,
    QNLI and RTE by accuracy. WNLI is reported when run but never averaged (as in BERT and Cramming).
  * When some of those nine dev sets were not run, the average is over the ones present and is
    marked partial (`glue_average_partial` in the JSON, a `*` in the tables); it is then not
    comparable with published GLUE averages.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from composer_bert.errors import UserError
from composer_bert.glue.benchmark import GLUE, Benchmark, get_benchmark
from composer_bert.glue.published import LABEL
from composer_bert.run.files import atomic_file


def results_json(bench: Benchmark) -> str:
    """The summary file a save folder of `bench` holds: glue_results.json, superglue_results.json."""
    return f"{bench.name}_results.json"


@dataclass
class RunResult:
    """One finetuning run (task x seed): dev metrics per eval set, and the config fingerprint it ran under."""

    task: str
    seed: int
    fingerprint: str
    metrics: dict[str, dict[str, float]]  # eval set -> metric -> value x100
    train_seconds: float
    hparams: dict[str, Any] = field(default_factory=dict)


def run_result_path(save_folder: str | Path, task: str, seed: int) -> Path:
    return Path(save_folder) / "runs" / task / f"seed{seed}.json"


def model_path(save_folder: str | Path, task_name: str, seed: int) -> Path:
    """A finished run's classifier file, next to its result: `runs/{task}/seed{n}.model.pt`."""
    return run_result_path(save_folder, task_name, seed).with_suffix(".model.pt")


def mnli_weights_path(save_folder: str | Path, seed: int) -> Path:
    return model_path(save_folder, "MNLI", seed)


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves a half-written result."""
    with atomic_file(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_run_result(save_folder: str | Path, result: RunResult) -> Path:
    path = run_result_path(save_folder, result.task, result.seed)
    write_json_atomically(path, asdict(result))
    return path


def read_run_result(path: Path) -> RunResult | None:
    """A finished run's result, or None when absent or unreadable (then the run is simply redone)."""
    try:
        return RunResult(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


@dataclass
class GlueSummary:
    """Medians over seeds per eval set and metric, every seed's values, and the GLUE average."""

    checkpoint: str
    medians: dict[str, dict[str, float]]
    per_seed: dict[str, dict[str, dict[str, float]]]  # eval set -> seed -> metric -> value
    glue_average: float | None  # the benchmark's average (GLUE's, or SuperGLUE's)
    averaged_over: list[str]
    missing_from_average: list[str]
    benchmark: str = "glue"

    @property
    def partial(self) -> bool:
        return bool(self.missing_from_average)

    @property
    def bench(self) -> Benchmark:
        return get_benchmark(self.benchmark)

    def to_json(self) -> dict[str, Any]:
        name = self.benchmark
        scored = {eval_set: list(self.bench.eval_set_metrics(eval_set)) for eval_set in self.medians}
        return {
            "benchmark": name,
            "checkpoint": self.checkpoint,
            f"{name}_average": self.glue_average,
            f"{name}_average_partial": self.partial,
            f"{name}_average_over": self.averaged_over,
            "missing_from_average": self.missing_from_average,
            # one metric per eval set (GLUE's file has always named it), or every metric an eval set averages
            **({"score_metrics": scored} if self.bench.averages_every_metric
               else {f"{name}_score_metric": {k: v[0] for k, v in scored.items()}}),  # fmt: skip
            "tasks": self.medians,
            "per_seed": self.per_seed,
        }


def benchmark_average(
    medians: dict[str, dict[str, float]], bench: Benchmark
) -> tuple[float | None, list[str], list[str]]:
    """(average, eval sets averaged, standard eval sets missing) following the module docstring's rules."""
    present = [name for name in bench.average_eval_sets if name in medians]
    missing = [name for name in bench.average_eval_sets if name not in medians]
    if not present:
        return None, [], missing
    scores = [bench.eval_set_score(name, medians[name]) for name in present]
    return sum(scores) / len(scores), present, missing


def glue_average(medians: dict[str, dict[str, float]]) -> tuple[float | None, list[str], list[str]]:
    return benchmark_average(medians, GLUE)


def summarize(runs: list[RunResult], checkpoint: str, bench: Benchmark = GLUE) -> GlueSummary:
    """Aggregate finished runs into medians over seeds and the benchmark's average."""
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    for run in sorted(runs, key=lambda run: run.seed):
        for eval_set, metrics in run.metrics.items():
            per_seed.setdefault(eval_set, {})[str(run.seed)] = metrics
    ordered = [name for name in bench.eval_set_order if name in per_seed]
    per_seed = {name: per_seed[name] for name in ordered}
    medians = {
        name: {
            metric: statistics.median(values[metric] for values in seeds.values())
            for metric in bench.eval_set_metrics(name)
        }
        for name, seeds in per_seed.items()
    }
    average, over, missing = benchmark_average(medians, bench)
    return GlueSummary(checkpoint, medians, per_seed, average, over, missing, bench.name)


def _average_cell(summary: GlueSummary) -> str:
    if summary.glue_average is None:
        return "-"
    return f"{summary.glue_average:.1f}{'*' if summary.partial else ''}"


def _partial_note(summary: GlueSummary) -> str:
    if not summary.partial:
        return ""
    present, expected = len(summary.averaged_over), len(summary.bench.average_eval_sets)
    return (
        f"* partial: average over {present} of {expected} dev sets (missing {', '.join(summary.missing_from_average)})"
    )


def _detail_rows(summary: GlueSummary) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, metrics in summary.medians.items():
        for metric, median in metrics.items():
            seeds = ", ".join(f"{seed}: {values[metric]:.1f}" for seed, values in summary.per_seed[name].items())
            rows.append((name, summary.bench.metric_label(metric), f"{median:.1f}", seeds))
    return rows


def _score_columns(summary: GlueSummary) -> tuple[list[str], list[float]]:
    """The eval sets with one score each (the averaged ones, and any other of a single metric, such as WNLI or
    AX-b) and those scores; a diagnostic of several metrics (AX-g) is in the detail table only."""
    bench = summary.bench
    columns = [
        name for name in bench.eval_set_order if name in summary.medians
        and (name in bench.average_eval_sets or len(bench.eval_set_metrics(name)) == 1)
    ]  # fmt: skip
    return columns, [bench.eval_set_score(name, summary.medians[name]) for name in columns]


def format_markdown(summary: GlueSummary) -> str:
    """A BERT-paper style row of scores, then every metric with its per-seed values."""
    title = summary.bench.title
    columns, scores = _score_columns(summary)
    score_cells = [f"{score:.1f}" for score in scores]
    lines = [
        f"# {title} dev results",
        "",
        f"Checkpoint: `{summary.checkpoint}`. Dev-set medians over seeds, x100.",
        summary.bench.scores_line,
        "",
        "| " + " | ".join([*columns, f"{title} avg"]) + " |",
        "|" + "---:|" * (len(columns) + 1),
        "| " + " | ".join([*score_cells, _average_cell(summary)]) + " |",
        "",
    ]
    if summary.partial:
        lines += [_partial_note(summary), ""]
    lines += ["| Task | Metric | Median | Per seed |", "|---|---|---:|---|"]
    lines += [f"| {name} | {metric} | {median} | {seeds} |" for name, metric, median, seeds in _detail_rows(summary)]
    lines += ["", *_published_comparison(summary, columns, score_cells)]
    return "\n".join(lines) + "\n"


def published_label(bench: Benchmark) -> str:
    """How published rows are labelled: not measured here, and on which split when it is not dev."""
    return LABEL if bench.published_split == "dev" else f"{LABEL}, {bench.published_split} set"


def _published_comparison(summary: GlueSummary, columns: list[str], score_cells: list[str]) -> list[str]:
    """Our row beside published rows; theirs are labelled as not measured here, with the split they were measured on."""
    bench = summary.bench
    label = published_label(bench)
    lines = [
        f"## Beside published results ({LABEL})",
        "",
        "| Model | " + " | ".join([*columns, f"{bench.title} avg"]) + " | Source |",
        "|---|" + "---:|" * (len(columns) + 1) + "---|",
        "| this checkpoint (measured) | " + " | ".join([*score_cells, _average_cell(summary)]) + " | this report |",
    ]
    for row in bench.published:
        cells = [f"{row.per_task[name]:.1f}" if name in row.per_task else "–" for name in columns]
        lines.append(f"| {row.name} ({label}) | " + " | ".join([*cells, f"{row.glue_average:.1f}"]) + f" | {row.source} |")
    lines.append("")
    lines.append("Published per-task scores are not reproduced here (–); only the averages are cited.")
    if bench.published_split != "dev":
        lines.append(f"The published rows are {bench.published_split}-set scores and ours are dev-set scores: orientation, not a like-for-like comparison.")
    if summary.partial:
        lines.append("Our average is partial (*): it covers fewer dev sets than the published ones and is not comparable.")
    return lines


def plot_summary(summary: GlueSummary, png_path: str | Path) -> Path | None:
    """Bars of each dev set's score (median over seeds, every seed as a dot) and of the average, with the
    published averages as dashed lines; written atomically. None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = summary.bench
    columns, scores = _score_columns(summary)
    if not columns:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(columns) + 3), 4.5))
    ax.bar_label(ax.bar(columns, scores, color="C0"), fmt="%.1f", fontsize=8)
    for index, name in enumerate(columns):
        seeds = [bench.eval_set_score(name, values) for values in summary.per_seed[name].values()]
        ax.plot([index] * len(seeds), seeds, "k.", markersize=4)
    if summary.glue_average is not None:
        label = f"{bench.title} avg{'*' if summary.partial else ''}"
        average = ax.bar([label], [summary.glue_average], color="C1", hatch="//" if summary.partial else None)
        ax.bar_label(average, fmt="%.1f", fontsize=8)
        for row, style in zip(bench.published, ("--", ":"), strict=False):
            ax.axhline(row.glue_average, color="grey", linestyle=style, linewidth=1,
                       label=f"{row.name}: {row.glue_average:.1f} ({published_label(bench)})")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_ylabel("dev score x100 (median over seeds; dots: seeds)")
    checkpoint = Path(summary.checkpoint)
    shown = f"{checkpoint.parent.name}/{checkpoint.name}" if checkpoint.parent.name else str(checkpoint)
    ax.set_title(f"{bench.title} dev: {shown}" + (" (partial average: not comparable)" if summary.partial else ""),
                 fontsize=10)  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    with atomic_file(png_path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    plt.close(fig)
    return Path(png_path)


def format_console(summary: GlueSummary) -> str:
    """A fixed-width table for the terminal: every metric's median and per-seed values, then the average."""
    header = ("Task", "Metric", "Median", "Per seed")
    rows = [header, *_detail_rows(summary)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}" for row in rows]
    rule = "-" * max(len(line) for line in lines)
    lines = [lines[0], rule, *lines[1:], rule, f"{summary.bench.title} average: {_average_cell(summary)}"]
    if summary.partial:
        lines.append(_partial_note(summary))
    return "\n".join(lines)


def write_summary(save_folder: str | Path, summary: GlueSummary) -> tuple[Path, Path, Path | None]:
    """`{benchmark}_results.json`, `.md` and the bar chart `.png` in the save folder."""
    json_path = Path(save_folder) / results_json(summary.bench)
    stem = json_path.with_suffix("")
    markdown_path = stem.with_suffix(".md")
    write_json_atomically(json_path, summary.to_json())
    with atomic_file(markdown_path) as temporary:
        temporary.write_text(format_markdown(summary))
    return json_path, markdown_path, plot_summary(summary, stem.with_suffix(".png"))


def read_summary(save_folder: str | Path, bench: Benchmark = GLUE) -> GlueSummary:
    """A finished save folder's summary of `bench`, read back from its `{bench}_results.json` (for comparisons)."""
    path = Path(save_folder) / results_json(bench)
    name = bench.name
    try:
        payload = json.loads(path.read_text())
        return GlueSummary(
            checkpoint=str(payload["checkpoint"]),
            medians=payload["tasks"],
            per_seed=payload["per_seed"],
            glue_average=payload[f"{name}_average"],
            averaged_over=list(payload[f"{name}_average_over"]),
            missing_from_average=list(payload["missing_from_average"]),
            benchmark=name,
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{path} is unreadable or not a {bench.title} result ({type(error).__name__}); rerun "
            f"recipes/finetune_glue.py with save_folder={save_folder} to rewrite it"
        ) from None
