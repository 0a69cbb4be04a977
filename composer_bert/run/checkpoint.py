"""The one owner of the checkpoint format: what a `.pt` carries besides weights, written and read back here.

Composer saves each callback's `state_dict()` in its checkpoints under `state["callbacks"][class name]`.
`RunMetadata` uses that to embed the model config and the tokenizer files, so a single `.pt` (local or
remote) is enough to finetune or export. Two kinds of file share that layout:

  * a pretraining checkpoint, written by Composer's Trainer with `RunMetadata` among its callbacks;
  * a finetuned GLUE classifier (`runs/{task}/seed{n}.model.pt`), written by `save_classifier`: the same
    layout with only the model and `RunMetadata`, whose state also names the task and its label names.

`load_composer_checkpoint` reads either into a `Pretrained`; `load_classifier_weights` reads only a
classifier's weights (the MNLI model that other GLUE tasks start from). Exported Hugging Face folders are
read by `composer_bert.hf.load`, which depends on this module and not the reverse.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from composer.core import Callback

from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig
from composer_bert.run.files import atomic_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MODEL_PREFIX = "model."  # a ComposerModel's state dict holds our bare module under `.model`


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


@dataclass(frozen=True)
class ClassifierInfo:
    """What a finetuned classifier file adds to `RunMetadata`: its task and class names (none for regression)."""

    task: str
    num_labels: int
    label_names: tuple[str, ...]


@dataclass
class Pretrained:
    """A model ready to finetune or export: `state_dict` keys are those of `ComposerMLM.model` (or of
    `ComposerClassifier.model` for a classifier file, whose `classifier` then says what it classifies)."""

    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer_dir: Path | None
    classifier: ClassifierInfo | None = None


def fetch_checkpoint(path: str) -> Path:
    """A local path for `path`, downloading `s3://`, `gs://`, `oci://`, `https://` checkpoints with Composer."""
    if "://" not in path:
        local = Path(path)
        if not local.is_file():
            raise UserError(
                f"checkpoint '{path}' does not exist; "
                "pass a .pt from a pretraining save_folder or a GLUE runs/TASK/seedN.model.pt"
            )
        return local
    from composer_bert.run.remote import download_to_temp  # Composer's get_file, its errors as one line

    return download_to_temp(path)


def load_composer_checkpoint(path: str) -> Pretrained:
    """Read a `.pt` written by `recipes/pretrain.py` or `save_classifier`: weights, model config, tokenizer,
    and for a classifier file its task and label names."""
    local = fetch_checkpoint(path)
    try:
        checkpoint = torch.load(local, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"'{path}' is not a readable Composer checkpoint: {str(err).splitlines()[0]}") from None
    finally:
        if "://" in path:  # the downloaded copy, in a temporary folder of its own
            shutil.rmtree(local.parent, ignore_errors=True)
    state = checkpoint.get("state", {}) if isinstance(checkpoint, dict) else {}
    metadata = state.get("callbacks", {}).get(RunMetadata.__qualname__)
    if metadata is None or "model" not in state:
        raise UserError(
            f"'{path}' has no composer-bert run metadata; "
            "use a checkpoint saved by recipes/pretrain.py or recipes/finetune_glue.py"
        )
    model_state = {k.removeprefix(MODEL_PREFIX): v for k, v in state["model"].items() if k.startswith(MODEL_PREFIX)}
    tokenizer_dir = _tokenizer_folder(metadata["tokenizer_files"]) if metadata["tokenizer_files"] else None
    return Pretrained(ModelConfig(**metadata["model_config"]), model_state, tokenizer_dir, _classifier_info(metadata))


def _tokenizer_folder(files: Mapping[str, str]) -> Path:
    """The checkpoint's tokenizer files in a temporary folder, removed when this process exits: callers use
    the path for the whole run (a GLUE run copies it into every classifier file it saves)."""
    folder = Path(tempfile.mkdtemp(prefix="composer_bert_tok_"))
    atexit.register(_remove_folder, folder, os.getpid())
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _remove_folder(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # never from a forked child (a DataLoader worker): its parent still reads it
        shutil.rmtree(folder, ignore_errors=True)


def _classifier_info(metadata: Mapping[str, Any]) -> ClassifierInfo | None:
    """The classifier fields `save_classifier` adds; None for a pretraining checkpoint."""
    if "task" not in metadata:
        return None
    label_names = tuple(str(name) for name in metadata.get("label_names", []))
    return ClassifierInfo(str(metadata["task"]), int(metadata.get("num_labels", len(label_names))), label_names)


def save_classifier(
    path: str | Path,
    module: torch.nn.Module,
    model_config: ModelConfig,
    tokenizer_dir: str | Path | None,
    info: ClassifierInfo,
) -> None:
    """Write a finetuned classifier atomically in the layout Composer checkpoints have, so one file is enough
    to export it or to start another finetune from it.

    `module` is the bare classifier (`ComposerClassifier.model`). The file is `{"state": {"model":
    {"model.bert.*", "model.pooler.*", "model.classifier.*"}, "callbacks": {"RunMetadata": {model_config,
    tokenizer_files, task, num_labels, label_names}}}}`; everything in it loads with
    `torch.load(weights_only=True)`.
    """
    metadata = RunMetadata(model_config, tokenizer_dir).state_dict()
    metadata.update(task=info.task, num_labels=info.num_labels, label_names=list(info.label_names))
    weights = {key: value.detach().cpu() for key, value in module.state_dict(prefix=MODEL_PREFIX).items()}
    checkpoint = {"state": {"model": weights, "callbacks": {RunMetadata.__qualname__: metadata}}}
    with atomic_file(path) as temporary:
        torch.save(checkpoint, temporary)


def load_classifier_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a file `save_classifier` wrote (keys `model.*`); a bare state dict from older versions too."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint["state"]["model"] if "state" in checkpoint else checkpoint

