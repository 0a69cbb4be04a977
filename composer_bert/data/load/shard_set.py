"""The shard roots a `data:` config names (data.local/remote, or data.streams) and the contract their manifests
state, opened once per run: `open_shards` fetches each remote manifest, checks its fields, and makes several
streams agree on tokenizer, seq_len and objective. Every split's loader then takes the `ShardSet`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass

from streaming.base.storage import CloudDownloader

from composer_bert.data.contract import MANIFEST_NAME, ShardContract
from composer_bert.data.load.config import DataConfig
from composer_bert.data.load.shard_checks import INDEX_NAME, check_split_shards
from composer_bert.errors import UserError
from composer_bert.run.remote import store_problem

# Several streams must agree on these: manifest key -> ShardContract attribute (the objective through the
# attribute, since old manifests lack the key).
_MUST_AGREE = {
    "tokenizer.sha256": "tokenizer_sha256",
    "tokenizer.vocab_size": "vocab_size",
    "tokenizer.special_tokens": "special_ids",
    "seq_len": "seq_len",
    "objective": "objective",
}


@dataclass(frozen=True)
class ShardRoot:
    """One shard root: where it is read from (`local`, always set) and fetched from (`remote`, optional)."""

    name: str  # "data" for data.local/remote, else the stream's key in data.streams
    local: str
    remote: str | None
    proportion: float | None


@dataclass(frozen=True)
class ShardSet:
    """Every shard root of the run and the one contract they share."""

    roots: list[ShardRoot]
    contract: ShardContract

    def check_split(self, split: str) -> None:
        """Each root holds `split` (a remote root: what is cached so far), its shard files whole."""
        for root in self.roots:
            _check_split_present(root, split)


def _cache_dir_for(remote: str) -> str:
    """Where a remote-only root is cached: a temp dir named after the remote, as StreamingDataset itself does."""
    return os.path.join(tempfile.gettempdir(), hashlib.blake2s(remote.encode("utf-8"), digest_size=16).hexdigest())


def shard_roots(cfg: DataConfig) -> list[ShardRoot]:
    """The roots a validated config names: data.local/remote, or each of data.streams."""
    if cfg.streams:
        named = [(f"data.streams.{name}", s.local, s.remote, s.proportion) for name, s in cfg.streams.items()]
    elif cfg.local or cfg.remote:
        named = [("data", cfg.local, cfg.remote, None)]
    else:
        raise UserError(
            "no shards configured; set data.local (a shard root from data_prep/convert_dataset.py), "
            "data.remote or data.streams"
        )
    return [
        ShardRoot(name, local or _cache_dir_for(remote), remote or None, proportion)
        for name, local, remote, proportion in named
    ]


def _fetch_manifest(root: ShardRoot, timeout: float) -> None:
    """Download `remote/manifest.json` into `local` unless it is cached there (atomically: ranks may race)."""
    local_path = os.path.join(root.local, MANIFEST_NAME)
    if root.remote is None or os.path.isfile(local_path):
        return
    created = not os.path.isdir(root.local)
    os.makedirs(root.local, exist_ok=True)
    partial = f"{local_path}.{os.getpid()}.tmp"
    try:
        CloudDownloader.direct_download(os.path.join(root.remote, MANIFEST_NAME), partial, timeout)
    except Exception as err:  # each cloud client raises its own types; all mean "can't get it"
        with contextlib.suppress(OSError):  # the cache folder this run made, if it is still empty, goes too
            os.remove(partial)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(root.local)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = f"{MANIFEST_NAME} of {root.name}.remote '{root.remote}'"
        raise UserError(
            store_problem(err, where) or f"cannot fetch {where} ({reason}); check the path and credentials"
        ) from None
    os.replace(partial, local_path)


def _root_contract(root: ShardRoot, timeout: float, where: str) -> ShardContract:
    if root.remote is None and not os.path.isdir(root.local):
        raise UserError(
            f"{root.name}.local '{root.local}' does not exist; build shards with data_prep/convert_dataset.py "
            f"or set {root.name}.remote"
        )
    _fetch_manifest(root, timeout)
    return ShardContract.read(root.local, where)


def open_shards(cfg: DataConfig) -> ShardSet:
    """The shards of a validated `data:` config and their contract (fetched from the remote when needed)."""
    roots = shard_roots(cfg)
    where = ", ".join(root.local for root in roots)
    contracts = [_root_contract(root, cfg.download_timeout, where) for root in roots]
    first = contracts[0]
    for root, contract in zip(roots[1:], contracts[1:], strict=True):
        for key, attribute in _MUST_AGREE.items():
            theirs, ours = getattr(contract, attribute), getattr(first, attribute)
            if theirs != ours:
                raise UserError(
                    f"{root.name} disagrees with {roots[0].name} on {key} ({theirs} vs {ours}); "
                    "mix only shards built with the same tokenizer and seq_len"
                )
    return ShardSet(roots, first)


def _check_split_present(root: ShardRoot, split: str) -> None:
    """A local-only root must hold the split, and every shard file of it whole; of a remote root, what is cached.

    Missing pieces of a remote root are StreamingDataset's to fetch (and to report when the remote lacks them).
    """
    split_dir = os.path.join(root.local, split)
    if not os.path.isfile(os.path.join(split_dir, INDEX_NAME)):
        if root.remote is None:
            raise UserError(
                f"{root.name}.local '{root.local}' has no '{split}' split ({split}/{INDEX_NAME}); "
                "rebuild the shards or fix data.train_split/data.eval_split"
            )
        return
    check_split_shards(split_dir, local_only=root.remote is None)
