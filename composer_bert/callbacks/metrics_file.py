"""`{save_folder}/metrics.jsonl` (one JSON object per logged step) and a loss-curve PNG beside it.

`batch` is Composer's step: the row of step S holds the throughput and learning rate after S batches
and the loss of the batch that follows (Composer logs losses under the step count before the batch).

Composer names are kept as they are (`loss/train/total`, `throughput/tokens_per_sec`,
`throughput/device/mfu`, `l2_norm/grad/global`, `lr-DecoupledAdamW/group0`, ...). On resume, lines
past the restored batch (written by the interrupted run after its last checkpoint) are dropped, so
the file always tells the history of the weights that exist.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from composer.core import State
from composer.loggers import Logger, LoggerDestination
from composer.utils import dist

from composer_bert.files import atomic_file

LOSS_KEY = "loss/train/total"
EVAL_LOSS_KEY = "metrics/eval/LanguageCrossEntropy"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsFile(LoggerDestination):
    """Appends every logged metric, grouped by batch, to a JSONL file; plots the loss when training ends."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / "metrics.jsonl"
        self.plot_path = Path(folder) / "loss_curve.png"
        self._pending: dict[str, Any] = {}
        self._pending_batch: int | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate_from(int(state.timestamp.batch))

    def _truncate_from(self, batch: int) -> None:
        """Keep only lines before `batch`, the restored checkpoint's step (the resumed run logs that step
        again: Composer logs a batch's loss under the step count from before the batch); written atomically."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["batch"] < batch]
        with atomic_file(self.path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if dist.get_global_rank() != 0 or step is None:
            return
        if self._pending_batch is not None and step != self._pending_batch:
            self._flush()
        self._pending_batch = step
        self._pending.update({name: _jsonable(value) for name, value in metrics.items()})

    def _flush(self) -> None:
        if self._pending_batch is None or not self._pending:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps({"batch": self._pending_batch, **self._pending}, sort_keys=True) + "\n")
        self._pending, self._pending_batch = {}, None

    def fit_end(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0:
            return
        self._flush()
        if self.path.exists():
            plot_loss_curve(read_metrics(self.path), self.plot_path)

    def close(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            self._flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def plot_loss_curve(rows: list[dict[str, Any]], png_path: str | Path) -> Path | None:
    """Training loss (and eval cross entropy, when logged) against batch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["batch"], r[LOSS_KEY]) for r in rows if isinstance(r.get(LOSS_KEY), (int, float))]
    evals = [(r["batch"], r[EVAL_LOSS_KEY]) for r in rows if isinstance(r.get(EVAL_LOSS_KEY), (int, float))]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([b for b, _ in train], [v for _, v in train], label="train loss", linewidth=1)
    if evals:
        ax.plot([b for b, _ in evals], [v for _, v in evals], "o-", label="eval cross entropy")
    ax.set_xlabel("batch")
    ax.set_ylabel("MLM loss")
    ax.set_title(f"{Path(png_path).parent.name}: MLM loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return Path(png_path)
