"""Composer's progress bar, also showing tokens/s and MFU next to the loss."""

from __future__ import annotations

from composer.core import State
from composer.loggers import ProgressBarLogger

SHOWN = {"throughput/tokens_per_sec": "tok/s", "throughput/device/mfu": "mfu"}


class TrainProgressBar(ProgressBarLogger):
    """Adds throughput keys (under short names) to the train bar's postfix."""

    def _build_pbar(self, state: State, is_train: bool):
        pbar = super()._build_pbar(state, is_train)
        if is_train:
            pbar.keys_to_log = [*pbar.keys_to_log, *SHOWN.values()]
        return pbar

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        shown = {short: metrics[name] for name, short in SHOWN.items() if name in metrics}
        if shown:
            self.log_to_pbar(shown)
