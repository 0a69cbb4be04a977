"""Composer's progress bar, showing loss, tokens/s and MFU under short names (so they fit 120 columns)."""

from __future__ import annotations

from composer.core import State
from composer.loggers import ProgressBarLogger

SHOWN = {"loss/train/total": "loss", "throughput/tokens_per_sec": "tok/s", "throughput/device/mfu": "mfu"}


class TrainProgressBar(ProgressBarLogger):
    """The train bar's postfix is `loss=…, tok/s=…, mfu=…`; evaluation bars are Composer's own."""

    def _build_pbar(self, state: State, is_train: bool):
        pbar = super()._build_pbar(state, is_train)
        if is_train:
            pbar.keys_to_log = list(SHOWN.values())
        return pbar

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.eval_pbar is not None:
            super().log_metrics(metrics, step)
            return
        shown = {short: metrics[name] for name, short in SHOWN.items() if name in metrics}
        if shown:
            self.log_to_pbar(shown)
