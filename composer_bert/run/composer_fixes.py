"""Workarounds for Composer 0.32.1 (its last release) bugs that our recipes hit, kept in this one place.

(What differs between torch/transformers stacks is `compat.py`; this module is about Composer itself.)

Shared `save_folder` on several nodes (NFS, a NAS, a Lustre mount): `composer.utils.dist.get_node_signal_file_name`
draws a random name and broadcasts global rank 0's, so every node gets `._signal_file_node0_XXXXXX` - the *same*
name. `Trainer._get_autoresume_checkpoint` (and `utils.checkpoint.download_checkpoint`) then have local rank 0 of
every node write that file into the save folder and `os.remove` it; on a folder all nodes share, the second node's
`os.remove` raises `FileNotFoundError` and the run dies before training (or, worse, one node's wait sees the
other node's file). The name was meant to be per node: we keep the broadcast (so every rank still takes part
in the same collectives) and put this node's own rank into the name, so each node writes and removes its own file.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from composer.utils import dist

_SIGNAL_PREFIX = "._signal_file_node"


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
