"""Workarounds for Composer 0.32.1 (its last release) bugs that our recipes hit, kept in this one place.

(What differs between torch/transformers stacks is `compat.py`; this module is about Composer itself.)

Shared `save_folder` on several nodes (NFS, a NAS, a Lustre mount): `composer.utils.dist.get_node_signal_file_name`
draws a random name and broadcasts global rank 0's, so every node gets `._signal_file_node0_XXXXXX` - the *same*
name. `Trainer._get_autoresume_checkpoint` (and `utils.checkpoint.download_checkpoint`) then have local rank 0 of
every node write that file into the save folder and `os.remove` it; on a folder all nodes share, the second node's
`os.remove` raises `FileNotFoundError` and the run dies before training (or, worse, one node's wait sees the
other node's file). The name was meant to be per node: we keep the broadcast (so every rank still takes part
in the same collectives) and put this node's own rank into the name, so each node writes and removes its own file.

Warnings Composer raises about what we do on purpose are silenced here, each by its message, and nowhere else:
`BENIGN_WARNINGS` says why each one is benign. (A warning about something we could avoid is avoided instead:
pretraining's evaluator asks for no more batches than the eval split has, so no DataloaderNumBatchesWarning.)
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable

from composer.utils import dist

_SIGNAL_PREFIX = "._signal_file_node"
# message (a regex of its start) -> why it is benign for our runs
BENIGN_WARNINGS = {
    # our train bar is a ProgressBarLogger subclass (callbacks/progress.py), so it goes in through `loggers`; we set
    # none of the Trainer arguments the warning says it overrides
    "Specifying the ProgressBarLogger via `loggers` is not recommended": "our own progress bar",
    # an eval batch smaller than the eval microbatch (the split's last batch, or a small split): nothing to split
    "Cannot split tensor of length": "a short last eval batch",
}


def _per_node(shared: Callable[[random.Random | None], str]) -> Callable[[random.Random | None], str]:
    def get_node_signal_file_name(rng: random.Random | None = None) -> str:
        name = shared(rng)  # a collective: '._signal_file_node0_<random>' from global rank 0, on every rank
        return f"{_SIGNAL_PREFIX}{dist.get_node_rank()}_{name.rsplit('_', 1)[-1]}"

    get_node_signal_file_name.composer_bert_fix = True  # type: ignore[attr-defined]
    return get_node_signal_file_name


def apply_composer_fixes() -> None:
    """Install the workarounds above (idempotent). Composer's callers look the function up on the module at
    call time (`dist.get_node_signal_file_name()` in trainer.py and checkpoint.py, a module global in dist.py),
    so replacing the module attribute reaches all of them."""
    current = dist.get_node_signal_file_name
    if not getattr(current, "composer_bert_fix", False):
        dist.get_node_signal_file_name = _per_node(current)
    for message in BENIGN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
