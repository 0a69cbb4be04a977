"""What a pretraining checkpoint carries besides weights, and how later stages read it back.

Composer saves each callback's `state_dict()` in its checkpoints under
`state["callbacks"][class name]`. `RunMetadata` uses that to embed the model config and the
tokenizer files, so a single `.pt` (local or remote) is enough to finetune or export.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from composer.core import Callback

from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class RunMetadata(Callback):
    """Carries the model config and tokenizer into every checkpoint; trains nothing."""

    def __init__(self, model_config: ModelConfig, tokenizer_dir: str | Path | None) -> None:
        self.model_config = asdict(model_config)
        self.tokenizer_files: dict[str, str] = {}
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                path = Path(tokenizer_dir) / name
                if path.is_file():
                    self.tokenizer_files[name] = path.read_text()

    def state_dict(self) -> dict[str, Any]:
        return {"model_config": self.model_config, "tokenizer_files": self.tokenizer_files}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the current run's config is authoritative."""


@dataclass
class Pretrained:
    """A pretrained encoder ready to finetune or export: `state_dict` keys are those of `ComposerMLM.model`."""

    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_dir: Path | None


def _fetch(path: str) -> Path:
    """A local path for `path`, downloading `s3://`, `gs://`, `oci://`, `https://` checkpoints with Composer."""
    if "://" not in path:
        local = Path(path)
        if not local.is_file():
            raise UserError(f"checkpoint '{path}' does not exist; pass a .pt from a pretraining save_folder or a GLUE runs/TASK/seedN.model.pt")
        return local
    from composer.utils import get_file

    destination = Path(tempfile.mkdtemp(prefix="composer_bert_ckpt_")) / Path(path).name
    try:
        get_file(path, str(destination))
    except Exception as err:
        raise UserError(f"could not download checkpoint '{path}': {str(err).splitlines()[0]}") from None
    return destination


def load_composer_checkpoint(path: str) -> Pretrained:
    """Read a `.pt` written by `recipes/pretrain.py` (or a finetuned GLUE model file): weights, model config, tokenizer."""
    local = _fetch(path)
    try:
        checkpoint = torch.load(local, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"'{path}' is not a readable Composer checkpoint: {str(err).splitlines()[0]}") from None
    state = checkpoint.get("state", {}) if isinstance(checkpoint, dict) else {}
    metadata = state.get("callbacks", {}).get(RunMetadata.__qualname__)
    if metadata is None or "model" not in state:
        raise UserError(f"'{path}' has no composer-bert run metadata; use a checkpoint saved by recipes/pretrain.py or recipes/finetune_glue.py")
    model_state = {k.removeprefix("model."): v for k, v in state["model"].items() if k.startswith("model.")}
    tokenizer_dir = None
    if metadata["tokenizer_files"]:
        tokenizer_dir = Path(tempfile.mkdtemp(prefix="composer_bert_tok_"))
        for name, text in metadata["tokenizer_files"].items():
            (tokenizer_dir / name).write_text(text)
    return Pretrained(ModelConfig(**metadata["model_config"]), model_state, tokenizer_dir)


def load_pretrained(path: str) -> Pretrained:
    """A Composer `.pt` (local or remote) or an exported Hugging Face directory."""
    if Path(path).is_dir():
        from composer_bert.hf.export import load_exported  # written with the HF export

        return load_exported(path)
    return load_composer_checkpoint(path)
