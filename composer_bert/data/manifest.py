"""`manifest.json` beside the shards: what they were built from, so a loader can refuse a mismatch.

Layout of a shard root written by `data_prep/convert_dataset.py`::

    ROOT/manifest.json
    ROOT/train/   StreamingDataset split (MDS, column `input_ids`: ndarray of exactly seq_len tokens)
    ROOT/val/     StreamingDataset split, same format

Every row starts with [CLS]; the rest is the packed token stream, each document followed by [SEP]. Shards
for a causal LM (`"objective": "causal"`) have no [CLS]: the whole row is the packed stream, [SEP] ending
each document. Manifests written before the key existed are MLM shards.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from composer_bert.errors import UserError
from composer_bert.files import atomic_file

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
REBUILD = "rebuild the shards with data_prep/convert_dataset.py"
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
OBJECTIVES = ("mlm", "causal")  # what the rows were built for (model.objective must match)


def tokenizer_fingerprint(tokenizer_dir: str | Path) -> str:
    """sha256 of the tokenizer's `tokenizer.json`: two shard sets agree on tokens iff these agree."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"tokenizer directory '{tokenizer_dir}' has no tokenizer.json; train one with data_prep/train_tokenizer.py")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    with atomic_file(Path(root) / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2, sort_keys=True) + "\n")


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Read `ROOT/manifest.json`; a missing, unreadable or malformed one is a UserError naming it."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"no {MANIFEST_NAME} in '{root}'; build shards with data_prep/convert_dataset.py")
    try:
        manifest = json.loads(path.read_bytes())
    except OSError as err:
        raise UserError(f"cannot read '{path}' ({err.strerror}); check the file's permissions") from None
    except json.JSONDecodeError as err:
        raise UserError(f"'{path}' is not valid JSON ({err.msg}); {REBUILD} (--overwrite)") from None
    except UnicodeDecodeError:
        raise UserError(f"'{path}' is not UTF-8 text; {REBUILD} (--overwrite)") from None
    if not isinstance(manifest, dict):
        raise UserError(f"'{path}' holds a JSON {type(manifest).__name__}, not an object; {REBUILD} (--overwrite)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"'{path}' has format_version {manifest.get('format_version')}, expected {FORMAT_VERSION}; {REBUILD}")
    return manifest


def check_loader_fields(manifest: dict[str, Any], path: str | Path) -> None:
    """Refuse a manifest whose fields the loader relies on are missing or of the wrong type."""
    tokenizer = manifest.get("tokenizer")
    problem = None
    if not isinstance(tokenizer, dict):
        problem = "no 'tokenizer' object"
    elif not isinstance(tokenizer.get("sha256"), str):
        problem = "no 'tokenizer.sha256' string"
    elif not _positive_int(tokenizer.get("vocab_size")):
        problem = "no positive integer 'tokenizer.vocab_size'"
    elif not isinstance(specials := tokenizer.get("special_tokens"), dict) or not all(
        isinstance(name, str) and _int(token_id) and token_id >= 0 for name, token_id in specials.items()
    ):
        problem = "no 'tokenizer.special_tokens' object of token ids"
    elif not _positive_int(manifest.get("seq_len")):
        problem = "no positive integer 'seq_len'"
    if problem:
        raise UserError(f"'{path}' has {problem}; {REBUILD}")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _int(value) and value > 0


def shard_objective(manifest: dict[str, Any]) -> str:
    """The objective the shards were built for; manifests older than the key hold MLM rows."""
    return manifest.get("objective", "mlm")


def check_objective(manifest: dict[str, Any], objective: str, where: str = "") -> None:
    """Refuse shards built for the other objective: [CLS]-led MLM rows teach a causal LM a wrong first token."""
    built_for = shard_objective(manifest)
    if built_for != objective:
        raise UserError(
            f"shards{' in ' + where if where else ''} were built for objective '{built_for}' but model.objective is "
            f"'{objective}'; rebuild them with data_prep/convert_dataset.py --objective {objective}"
        )


def check_compatible(manifest: dict[str, Any], vocab_size: int, tokenizer_sha256: str | None = None, where: str = "") -> None:
    """Refuse shards whose vocabulary (or tokenizer, when known) differs from the model's."""
    shard_vocab = manifest["tokenizer"]["vocab_size"]
    if shard_vocab != vocab_size:
        raise UserError(
            f"shards{' in ' + where if where else ''} were tokenized with vocab_size {shard_vocab} but model.vocab_size is "
            f"{vocab_size}; set model.vocab_size={shard_vocab} or rebuild the shards with the model's tokenizer"
        )
    if tokenizer_sha256 is not None and manifest["tokenizer"]["sha256"] != tokenizer_sha256:
        raise UserError(
            f"shards{' in ' + where if where else ''} were built with a different tokenizer (sha256 "
            f"{manifest['tokenizer']['sha256'][:12]} vs {tokenizer_sha256[:12]}); use the matching tokenizer or rebuild the shards"
        )
