"""Workarounds for Composer 0.32.1 (its last release) bugs that our recipes hit, kept in this one place.

(What differs between torch/transformers stacks is `compat.py`; this module is about Composer itself.)

Shared `save_folder` on several nodes (NFS, a NAS, a Lustre mount): `composer.utils.dist.get_node_signal_file_name`
draws a random name and broadcasts global rank 0's, so every node gets `._signal_file_node0_XXXXXX` - the *same*
name. `Trainer._get_autoresume_checkpoint` (and `utils.checkpoint.download_checkpoint`) then have local rank 0 of
every node write that file into the save folder and `os.remove` it; on a folder all nodes share, the second node's
`os.remove` raises `FileNotFoundError` and the run dies before training (or, worse, one node's wait sees the
other node's file). The name was meant to be per node: we keep the broadcast (so every rank still takes part
in the same collectives) and put this node's own rank into the name, so each node writes and removes its own file.

Uploads to a bucket `save_folder` run in `RemoteUploaderDownloader`'s thread, which hands a failed upload to the
training thread through a queue, and that raises it at the next batch. But a failure of the existence check it
makes first (a checkpoint is uploaded with overwrite=False) escapes the queue: the thread dies with a traceback
on stderr and training stops with "Upload worker crashed. Please check the logs.". We run the thread's function
inside one that queues whatever it raises (unless a failure is queued already), so every upload failure reaches
the training thread as itself, which `pretrain/run.py` turns into one line, and the thread prints nothing.

Warnings Composer raises about what we do on purpose are silenced here, each by its message, and nowhere else:
`BENIGN_WARNINGS` says why each one is benign. (A warning about something we could avoid is avoided instead:
pretraining's evaluator asks for no more batches than the eval split has, so no DataloaderNumBatchesWarning.)
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from typing import Any

from composer.loggers import remote_uploader_downloader
from composer.utils import dist

_SIGNAL_PREFIX = "._signal_file_node"
# message (a regex of its start) -> why it is benign for our runs
BENIGN_WARNINGS = {
    # our train bar is a ProgressBarLogger subclass (callbacks/progress.py), so it goes in through `loggers`; we set
    # none of the Trainer arguments the warning says it overrides
    "Specifying the ProgressBarLogger via `loggers` is not recommended": "our own progress bar",
    # an eval batch smaller than the eval microbatch (the split's last batch, or a small split): nothing to split
    "Cannot split tensor of length": "a short last eval batch",
    # said by the run's own error line, which names the local folder that keeps those files
    "The following objects may not have been uploaded": "an upload the run reports failing",
}


def _per_node(shared: Callable[[random.Random | None], str]) -> Callable[[random.Random | None], str]:
    def get_node_signal_file_name(rng: random.Random | None = None) -> str:
        name = shared(rng)  # a collective: '._signal_file_node0_<random>' from global rank 0, on every rank
        return f"{_SIGNAL_PREFIX}{dist.get_node_rank()}_{name.rsplit('_', 1)[-1]}"

    get_node_signal_file_name.composer_bert_fix = True  # type: ignore[attr-defined]
    return get_node_signal_file_name


def _queuing_failures(worker: Callable[..., None]) -> Callable[..., None]:
    def _upload_worker(*, exception_queue: Any, **kwargs: Any) -> None:
        try:
            worker(exception_queue=exception_queue, **kwargs)
        except Exception as err:
            if exception_queue.empty():  # else Composer queued this failure itself before raising it
                exception_queue.put_nowait(err)

    _upload_worker.composer_bert_fix = True  # type: ignore[attr-defined]
    return _upload_worker


def apply_composer_fixes() -> None:
    """Install the workarounds above (idempotent). Composer's callers look each function up on its module at
    call time (`dist.get_node_signal_file_name()` in trainer.py and checkpoint.py, a module global in dist.py;
    `_upload_worker` when the uploader starts), so replacing the module attribute reaches all of them."""
    current = dist.get_node_signal_file_name
    if not getattr(current, "composer_bert_fix", False):
        dist.get_node_signal_file_name = _per_node(current)
    worker = remote_uploader_downloader._upload_worker  # looked up when the uploader starts its thread
    if not getattr(worker, "composer_bert_fix", False):
        remote_uploader_downloader._upload_worker = _queuing_failures(worker)
    for message in BENIGN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
