"""Training progress bars: pretraining's (Composer's bar, one per run) and GLUE's (one per task x seed run).

Both show the training loss under the same short name, read from what Composer already computed for the
batch (`loss/train/total`, summed over loss terms and averaged over ranks), so they never disagree.
"""

from __future__ import annotations

from composer.core import Callback, State
from composer.loggers import Logger, ProgressBarLogger
from composer.utils import dist
from tqdm.auto import tqdm

TOTAL_LOSS = "loss/train/total"
SHOWN = {TOTAL_LOSS: "loss", "throughput/tokens_per_sec": "tok/s", "throughput/device/mfu": "mfu"}


class TrainProgressBar(ProgressBarLogger):
    """Composer's progress bar, with the train bar's postfix `loss=…, tok/s=…, mfu=…` (so it fits 120 columns);
    evaluation bars are Composer's own."""

    def _build_pbar(self, state: State, is_train: bool):
        pbar = super()._build_pbar(state, is_train)
        if is_train:
            pbar.keys_to_log = list(SHOWN.values())
        return pbar

    def _log_hparams_to_console(self) -> None:
        """One line instead of Composer's dump of every key (80 lines): the whole config is in config.yaml."""
        if dist.get_local_rank() == 0:
            h = self.hparams
            model = f"{h.get('model.objective', 'mlm')} {h.get('model.num_layers')}×{h.get('model.hidden_size')}"
            self._log_to_console(
                f"run '{h.get('run_name')}': {model}, seq {h.get('model.max_position_embeddings')}; "
                f"{h.get('max_duration')} of {h.get('global_train_batch_size')} rows, lr {h.get('optimizer.lr')}; "
                f"full config: {h.get('save_folder')}/config.yaml"
            )
        self.hparams_already_logged_to_console = True

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.eval_pbar is not None:
            super().log_metrics(metrics, step)
            return
        shown = {short: metrics[name] for name, short in SHOWN.items() if name in metrics}
        if shown:
            self.log_to_pbar(shown)


class RunProgressBar(Callback):
    """One tqdm bar for a whole finetuning run (all its epochs, which Composer's bar would split), labelled
    with task and seed, showing the latest training loss."""

    def __init__(self, label: str, total_batches: int):
        self.label = label
        self.total_batches = total_batches
        self.bar: tqdm | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        self.bar = tqdm(total=self.total_batches, desc=self.label, unit="ba", dynamic_ncols=True, mininterval=1.0)

    def batch_end(self, state: State, logger: Logger) -> None:
        assert self.bar is not None
        self.bar.update(1)
        loss = state.total_loss_dict.get(TOTAL_LOSS)
        if loss is not None and (self.bar.n % 10 == 0 or self.bar.n == self.total_batches):
            self.bar.set_postfix({SHOWN[TOTAL_LOSS]: f"{loss:.4f}"}, refresh=False)

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.bar is not None:
            self.bar.close()
