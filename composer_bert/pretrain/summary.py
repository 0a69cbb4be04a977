"""The end-of-run summary of a pretraining run: what it reached (from its own `metrics.jsonl`), as the
`summary.json` beside its checkpoints and the two-column table `recipes/pretrain.py` prints.

The objective's own row (masked accuracy, perplexity) is its `summary` entry in `objectives.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from composer import Trainer

from composer_bert.callbacks.metrics_file import read_metrics
from composer_bert.objectives import DEFAULT_OBJECTIVE, objective
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.pretrain.report import summarize_metrics
from composer_bert.run.remote import is_remote
from composer_bert.run.resources import peak_memory


@dataclass
class PretrainResult:
    """What the run ended with, as printed at the end of `recipes/pretrain.py`."""

    batches: int
    tokens: int
    final_train_loss: float | None
    eval_loss: float | None
    eval_masked_accuracy: float | None
    tokens_per_sec: float | None
    mfu: float | None
    metrics_path: str
    plot_path: str | None
    save_folder: str
    budget_used: float | None = None  # fraction of `budget` spent; None without one
    peak_memory_gib: float | None = None
    peak_memory_of: str = ""  # "GPU, max allocated" or "CPU, peak RSS"
    energy_kwh: float | None = None  # NVML, all GPUs of this node; None without NVML
    objective: str = DEFAULT_OBJECTIVE
    eval_perplexity: float | None = None  # exp(eval loss); the console shows it where it is the objective's row


def summarize(trainer: Trainer, cfg: PretrainConfig, run_dir: Path, energy_kwh: float | None = None) -> PretrainResult:
    """Read the run's own metrics file for the summary table (rank 0); paths name the bucket's copies if remote."""
    metrics_path = run_dir / "metrics.jsonl"
    figures = summarize_metrics(read_metrics(metrics_path) if metrics_path.exists() else [])
    plot = run_dir / "loss_curve.png"
    shown = (lambda path: f"{cfg.save_folder.rstrip('/')}/{path.name}") if is_remote(cfg.save_folder) else str
    memory = peak_memory()
    return PretrainResult(
        batches=int(trainer.state.timestamp.batch),
        tokens=int(trainer.state.timestamp.token),
        final_train_loss=figures.final_train_loss,
        eval_loss=figures.eval_loss,
        eval_masked_accuracy=figures.eval_masked_accuracy,
        tokens_per_sec=figures.tokens_per_sec,
        mfu=figures.mfu,
        metrics_path=shown(metrics_path),
        plot_path=shown(plot) if plot.exists() else None,
        save_folder=cfg.save_folder,
        budget_used=figures.budget_used,
        peak_memory_gib=memory.gib,
        peak_memory_of=memory.of,
        energy_kwh=energy_kwh,
        objective=cfg.model.objective,
        eval_perplexity=math.exp(figures.eval_loss) if figures.eval_loss is not None else None,
    )


def format_result(result: PretrainResult) -> str:
    """A two-column table for the console."""

    def show(value: float | None, spec: str, unit: str = "") -> str:
        return "n/a" if value is None else format(value, spec) + unit

    row = objective(result.objective).summary  # the objective's own figure

    rows = [
        ("batches", f"{result.batches:,}"),
        ("tokens", f"{result.tokens:,}"),
        ("train loss (last 5 logged)", show(result.final_train_loss, ".4f")),
        ("eval loss", show(result.eval_loss, ".4f")),
        (row.label, show(getattr(result, row.field), row.spec)),
        ("tokens/s (last 20 logged)", show(result.tokens_per_sec, ",.0f")),
        ("MFU", show(result.mfu, ".1%")),
        ("budget used", show(result.budget_used, ".1%")),
        (f"peak memory ({result.peak_memory_of or 'n/a'})", show(result.peak_memory_gib, ".2f", " GiB")),
        ("GPU energy (NVML, this node)", show(result.energy_kwh, ".4f", " kWh")),
        ("metrics", result.metrics_path),
        ("loss curve", result.plot_path or "n/a"),
        ("checkpoints", result.save_folder),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
