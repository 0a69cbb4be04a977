"""The shard contract: what prep time (`data/prep/`) writes and train time (`data/load/`) reads, the only data
module both sides import: `manifest.json` (what the shards were built from, so a loader can refuse a
mismatch), the row dtype, the shard hash, the special tokens and the end-of-text token. The batch format the
loader then produces (keys, ignore index, masked-position slots) is `composer_bert/batch.py`.

Layout of a shard root written by `data_prep/convert_dataset.py`::

    ROOT/manifest.json
    ROOT/train/   StreamingDataset split (MDS, column `input_ids`: ndarray of exactly seq_len tokens)
    ROOT/val/     StreamingDataset split, same format

Every row starts with [CLS]; the rest is the packed token stream, each document followed by [SEP]. Shards
for a causal LM (`"objective": "causal"`) have no [CLS]: the whole row is the packed stream, the end-of-text
token ending each document. Manifests written before the key existed are MLM shards. [CLS], [SEP] and the rest
are roles, whatever the tokenizer's tokens and ids: `tokenizer.special_tokens` in the manifest maps each role
the tokenizer has (cls, sep, mask, pad, unk, bos, eos) to its id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composer_bert.errors import UserError
from composer_bert.objectives import DEFAULT_OBJECTIVE
from composer_bert.run.files import atomic_file

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
REBUILD = "rebuild the shards with data_prep/convert_dataset.py"
# This package's own special tokens: the roles of a tokenizer folder that names none (data/prep/tokenizer_roles.py)
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
END_OF_TEXT_ROLES = ("eos", "sep")  # the token ending each document of causal rows: the tokenizer's eos, else its sep
SHARD_HASH = "xxh64"  # streaming's fastest non-cryptographic hash, recorded per shard: detects damage, not tampering


def row_dtype(vocab_size: int) -> np.dtype:
    """The dtype of the `input_ids` column: the smallest that holds every token id."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


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
    return manifest.get("objective", DEFAULT_OBJECTIVE)


@dataclass(frozen=True)
class ShardContract:
    """What a shard set promises whoever reads it, from its manifest.json: opened once per run (its fields
    checked then), then handed to every split's loader and to the model checks."""

    manifest: dict[str, Any]
    where: str  # the shard root(s), for messages

    @classmethod
    def read(cls, root: str | Path, where: str | None = None) -> ShardContract:
        """`ROOT/manifest.json`, its loader fields checked (one line naming the file for any problem)."""
        manifest = read_manifest(root)
        check_loader_fields(manifest, Path(root) / MANIFEST_NAME)
        return cls(manifest, where or str(root))

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def vocab_size(self) -> int:
        return self.manifest["tokenizer"]["vocab_size"]

    @property
    def tokenizer_sha256(self) -> str:
        return self.manifest["tokenizer"]["sha256"]

    @property
    def special_ids(self) -> dict[str, int]:
        return self.manifest["tokenizer"]["special_tokens"]

    @property
    def objective(self) -> str:
        return shard_objective(self.manifest)

    @property
    def tokenizer_dir(self) -> str | None:
        """Where the tokenizer was when the shards were built (it may since have moved)."""
        return self.manifest["tokenizer"].get("path")

    def split_rows(self, split: str) -> int | None:
        """Rows in `split` as recorded at build time (None when the manifest does not say)."""
        return self.manifest.get("splits", {}).get(split, {}).get("rows")

    def check_model(self, vocab_size: int, objective: str, tokenizer_sha256: str | None = None) -> None:
        """Refuse a model these rows do not fit: another vocabulary or tokenizer (when known), or another
        objective ([CLS]-led MLM rows teach a causal LM a wrong first token)."""
        where = f" in {self.where}" if self.where else ""
        if self.objective != objective:
            raise UserError(
                f"shards{where} were built for objective '{self.objective}' but model.objective is "
                f"'{objective}'; rebuild them with data_prep/convert_dataset.py --objective {objective}"
            )
        if self.vocab_size != vocab_size:
            raise UserError(
                f"shards{where} were tokenized with vocab_size {self.vocab_size} but model.vocab_size is "
                f"{vocab_size}; set model.vocab_size={self.vocab_size} or rebuild the shards with the model's tokenizer"
            )
        if tokenizer_sha256 is not None and self.tokenizer_sha256 != tokenizer_sha256:
            raise UserError(
                f"shards{where} were built with a different tokenizer (sha256 {self.tokenizer_sha256[:12]} vs "
                f"{tokenizer_sha256[:12]}); use the matching tokenizer or rebuild the shards"
            )


def end_of_text_id(tokenizer: Any) -> int | None:
    """The token that ends each document in causal shards (`END_OF_TEXT_ROLES`) of a transformers tokenizer."""
    for role in END_OF_TEXT_ROLES:
        token_id = getattr(tokenizer, f"{role}_token_id")
        if token_id is not None:
            return int(token_id)
    return None


def end_rows_with_eos(tokenizer: Any) -> int | None:
    """Make a transformers tokenizer encode a text as `text EOS` and a pair as `a EOS b EOS` (segment 1 from b),
    no [CLS]: a causal classifier's input, shaped like its shards (each document ends with end-of-text), so the
    last token, where the classifier reads, is the same token in every row. Returns that token's id (None, and
    the tokenizer left as it was, when it has no end-of-text token)."""
    from tokenizers import processors

    eos_id = end_of_text_id(tokenizer)
    if eos_id is None:
        return None
    eos = tokenizer.convert_ids_to_tokens(eos_id)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1", special_tokens=[(eos, eos_id)]
    )
    return eos_id
