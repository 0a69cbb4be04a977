"""Reading finished (or running) pretraining runs back from their save folders: the figures of the end-of-run
summary, computed from `metrics.jsonl`, and `recipes/compare_runs.py`'s picture and table of several runs.

`metrics.jsonl` rows are keyed by Composer's step S: the training loss in row S was computed after S
batches, by weights that had seen `time/token` tokens and `time/train` hours of training (SpeedMonitor's
wall clock, evaluation excluded), so each loss is plotted at its own row's tokens and hours.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer_bert.callbacks.budget import FRACTION_KEY
from composer_bert.callbacks.metrics_file import EVAL_LOSS_KEY, LOSS_KEY
from composer_bert.errors import UserError
from composer_bert.run.files import atomic_file, not_utf8

TOKENS_KEY = "time/token"
HOURS_KEY = "time/train"
ACCURACY_KEY = "metrics/eval/MaskedAccuracy"
TOKENS_PER_SEC_KEY = "throughput/tokens_per_sec"
MFU_KEY = "throughput/device/mfu"


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def last(rows: list[dict[str, Any]], key: str) -> float | None:
    values = _values(rows, key)
    return values[-1] if values else None


def mean_tail(rows: list[dict[str, Any]], key: str, tail: int = 20) -> float | None:
    values = _values(rows, key)[-tail:]
    return sum(values) / len(values) if values else None


@dataclass
class MetricsSummary:
    """The figures of a run's end-of-run table that come from its metrics."""

    final_train_loss: float | None  # mean of the last 5 logged
    eval_loss: float | None
    eval_masked_accuracy: float | None
    tokens_per_sec: float | None  # mean of the last 20 logged
    mfu: float | None
    budget_used: float | None  # fraction of the wall-clock budget spent; None without a budget
    train_hours: float | None


def summarize_metrics(rows: list[dict[str, Any]]) -> MetricsSummary:
    return MetricsSummary(
        final_train_loss=mean_tail(rows, LOSS_KEY, tail=5),
        eval_loss=last(rows, EVAL_LOSS_KEY),
        eval_masked_accuracy=last(rows, ACCURACY_KEY),
        tokens_per_sec=mean_tail(rows, TOKENS_PER_SEC_KEY),
        mfu=mean_tail(rows, MFU_KEY),
        budget_used=last(rows, FRACTION_KEY),
        train_hours=last(rows, HOURS_KEY),
    )


@dataclass
class Run:
    """One run folder: its label, metrics rows and (once it finished) its summary.json."""

    label: str
    folder: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def tokens(self) -> float | None:
        return last(self.rows, TOKENS_KEY)

    def curve(self, y_key: str, x_key: str) -> tuple[list[float], list[float]]:
        """(x, y) of every row that logged both keys (x: `time/token` or `time/train`)."""
        points = [(r[x_key], r[y_key]) for r in self.rows if _finite(r.get(x_key)) and _finite(r.get(y_key))]
        return [float(x) for x, _ in points], [float(y) for _, y in points]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A metrics.jsonl's rows; an unfinished last line (a run still writing) is left out, a bad line elsewhere is an error."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise UserError(f"{path} line {number} is not JSON; the file is damaged") from None
    return rows


def load_run(folder: str | Path) -> Run:
    """A run folder written by recipes/pretrain.py (its save_folder)."""
    path = Path(folder)
    metrics = path / "metrics.jsonl"
    if not path.is_dir():
        raise UserError(f"run folder '{path}' does not exist; pass save folders of recipes/pretrain.py runs")
    if not metrics.is_file():
        raise UserError(
            f"'{path}' has no metrics.jsonl (nor glue_results.json); pass save folders of recipes/pretrain.py "
            "or recipes/finetune_glue.py runs"
        )
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):  # a damaged summary only costs the peak-memory and energy columns
        print(f"note: {summary_path} is damaged; its run's peak memory and energy are left out", file=sys.stderr)
        summary = {}
    return Run(path.name or str(path), path, read_rows(metrics), summary if isinstance(summary, dict) else {})


def load_runs(folders: list[str]) -> list[Run]:
    """Every folder's run, labelled by folder name (by the path as given where names repeat)."""
    runs = [load_run(folder) for folder in folders]
    names = [run.label for run in runs]
    for run, given in zip(runs, folders, strict=True):
        if names.count(run.label) > 1:
            run.label = given.rstrip("/")
    return runs


def _show(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


TABLE_HEADER = (
    "run", "tokens", "train hours", "final eval loss", "masked accuracy", "tokens/s", "MFU", "budget used",
    "peak memory", "energy",
)


def table_row(run: Run) -> list[str]:
    figures = summarize_metrics(run.rows)
    memory = run.summary.get("peak_memory_gib")
    memory_cell = "n/a" if memory is None else f"{memory:.2f} GiB ({run.summary.get('peak_memory_of', '?')})"
    energy = run.summary.get("energy_kwh")
    tokens = run.tokens()
    return [
        run.label,
        _show(tokens, ",.0f"),
        _show(figures.train_hours, ".3f"),
        _show(figures.eval_loss, ".4f"),
        _show(figures.eval_masked_accuracy, ".4f"),
        _show(figures.tokens_per_sec, ",.0f"),
        _show(figures.mfu, ".1%"),
        _show(figures.budget_used, ".0%"),
        memory_cell,
        "n/a" if energy is None else f"{energy:.3f} kWh",
    ]


def markdown_table(runs: list[Run]) -> str:
    """One row per run: where each ended (eval loss and accuracy are the last evaluation's)."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|---|" + "---:|" * (len(TABLE_HEADER) - 1)]
    lines += ["| " + " | ".join(table_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


def plot_runs(runs: list[Run], png_path: str | Path) -> Path:
    """Training loss (lines) and eval loss (markers, same colour) of every run, against tokens and against hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for index, run in enumerate(runs):
        colour = f"C{index % 10}"
        for ax, x_key in zip(axes, (TOKENS_KEY, HOURS_KEY), strict=True):
            x, y = run.curve(LOSS_KEY, x_key)
            ax.plot(x, y, color=colour, linewidth=1, label=f"{run.label} train")
            x, y = run.curve(EVAL_LOSS_KEY, x_key)
            if x:
                ax.plot(x, y, "o--", color=colour, markersize=4, label=f"{run.label} eval")
    axes[0].set_xlabel("tokens seen")
    axes[1].set_xlabel("training wall-clock hours (evaluation excluded)")
    axes[0].set_ylabel("MLM loss (cross entropy)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].set_title("loss against tokens")
    axes[1].set_title("loss against training time")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_file(png_path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    plt.close(fig)
    return Path(png_path)
