"""`{save_folder}/metrics.jsonl` (one JSON object per logged step) and a loss-curve PNG beside it.

`batch` is Composer's step: the row of step S holds the throughput and learning rate after S batches
and the loss of the batch that follows (Composer logs losses under the step count before the batch).

Composer names are kept as they are (`loss/train/total`, `throughput/tokens_per_sec`,
`throughput/device/mfu`, `l2_norm/grad/global`, `lr-DecoupledAdamW/group0`, ...). On resume, lines
past the restored batch (written by the interrupted run after its last checkpoint) are dropped, so
the file always tells the history of the weights that exist.

Rows are written every `write_interval` batches, not as they come: Composer logs its training metrics
(MaskedAccuracy, ...) as device tensors every batch, and turning one into a number makes the host wait
for the GPU. Buffered rows are turned into numbers together, with one read per write. Rows also go to
disk right after every checkpoint (so the file is never behind a checkpoint a resumed run starts from),
at the end of training and when the trainer closes.

With `remote_folder` (a run whose save_folder is in a bucket), every write is also handed to Composer's
`Logger.upload_file` (the run's RemoteUploaderDownloader uploads it in the background under
`remote_folder/metrics.jsonl`), as is the loss curve at the end.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from composer.callbacks import CheckpointSaver
from composer.core import State
from composer.loggers import Logger, LoggerDestination
from composer.utils import dist

from composer_bert.run.files import atomic_file

LOSS_KEY = "loss/train/total"
EVAL_LOSS_KEY = "metrics/eval/LanguageCrossEntropy"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def host_values(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` with every one-element tensor turned into a Python number: one host read per device."""
    tensors = [v for row in rows for v in row.values() if isinstance(v, torch.Tensor) and v.numel() == 1]
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_device.setdefault(tensor.device, []).append(tensor)
    numbers: dict[int, Any] = {}
    for group in by_device.values():
        values = torch.stack([t.detach().reshape(()).to(torch.float64) for t in group]).tolist()
        for tensor, value in zip(group, values, strict=True):
            floating = tensor.is_floating_point() or tensor.is_complex()
            numbers[id(tensor)] = value if floating else (bool(value) if tensor.dtype == torch.bool else int(value))
    return [{name: _jsonable(numbers.get(id(v), v)) for name, v in row.items()} for row in rows]


class MetricsFile(LoggerDestination):
    """Appends every logged metric, grouped by batch, to a JSONL file; plots the loss when training ends."""

    def __init__(self, folder: str | Path, write_interval: int = 50, remote_folder: str | None = None) -> None:
        self.path = Path(folder) / "metrics.jsonl"
        self.remote_folder = remote_folder  # a key prefix in the uploader's bucket; None: local only
        self._logger: Logger | None = None
        self.plot_path = Path(folder) / "loss_curve.png"
        self.write_interval = write_interval
        self._pending: dict[str, Any] = {}
        self._pending_batch: int | None = None
        self._rows: list[dict[str, Any]] = []  # complete rows not yet written; values may be device tensors
        self._saver: CheckpointSaver | None = None
        self._checkpoint_written: Any = None  # the saver's last checkpoint batch when rows last went to disk

    def fit_start(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._logger = logger
        self._truncate_from(int(state.timestamp.batch))
        self._saver = next((cb for cb in state.callbacks if isinstance(cb, CheckpointSaver)), None)
        self._checkpoint_written = self._saver.last_checkpoint_batch if self._saver is not None else None

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
            self._close_row()
        self._pending_batch = step
        self._pending.update(metrics)  # device tensors stay as they are until written

    def _close_row(self) -> None:
        if self._pending_batch is not None and self._pending:
            self._rows.append({"batch": self._pending_batch, **self._pending})
            if len(self._rows) >= self.write_interval:
                self._write()
        self._pending, self._pending_batch = {}, None

    def _write(self) -> None:
        if not self._rows:
            return
        lines = [json.dumps(row, sort_keys=True) + "\n" for row in host_values(self._rows)]
        with self.path.open("a") as handle:
            handle.write("".join(lines))
        self._rows = []
        self._upload(self.path)

    def _upload(self, path: Path) -> None:
        if self.remote_folder is not None and self._logger is not None:
            self._logger.upload_file(f"{self.remote_folder}/{path.name}", path, overwrite=True)

    def _write_if_checkpointed(self) -> None:
        """After a checkpoint, the rows before it go to disk: a run resumed from it keeps exactly those."""
        checkpoint = None if self._saver is None else self._saver.last_checkpoint_batch
        if checkpoint is not None and checkpoint != self._checkpoint_written:
            self._checkpoint_written = checkpoint
            if self._pending_batch is not None and self._pending_batch < int(checkpoint):
                self._close_row()  # nothing is logged under a step before the checkpoint's any more
            self._write()

    def before_dataloader(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            self._write_if_checkpointed()

    def epoch_end(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            self._write_if_checkpointed()

    def fit_end(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() != 0:
            return
        self._close_row()
        self._write()
        if self.path.exists() and plot_loss_curve(read_metrics(self.path), self.plot_path) is not None:
            self._upload(self.plot_path)

    def close(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            self._close_row()
            self._write()


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
