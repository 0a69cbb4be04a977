"""Helpers the export and generation tests share: weights moved off their init, and a checkpoint in the layout
recipes/pretrain.py writes without running a Trainer."""

from __future__ import annotations

from pathlib import Path

import torch
from composer import ComposerModel

from composer_bert.models.config import ModelConfig
from composer_bert.run.checkpoint import RunMetadata

# The start of a script run in a fresh interpreter (`python -I -c`) where importing composer_bert fails, so what it
# loads (an export) must stand on its own; it also imports json and sys for the script's own use.
WITHOUT_COMPOSER_BERT = """
import importlib.abc, json, sys
class NoComposerBert(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "composer_bert":
            raise ImportError("composer_bert is blocked: the export must not need it")
sys.meta_path.insert(0, NoComposerBert())
"""


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Noise on every weight, so norms, biases and scales are not at their init and logits are far from uniform."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    return module.eval()


def save_checkpoint_dict(path: Path, composer_model: ComposerModel, cfg: ModelConfig, tokenizer_dir: Path) -> Path:
    """The layout Composer writes (see composer_bert.run.checkpoint): the ComposerModel's weights, RunMetadata's state."""
    state = {"model": composer_model.state_dict()}
    state["callbacks"] = {"RunMetadata": RunMetadata(cfg, tokenizer_dir).state_dict()}
    torch.save({"state": state}, path)
    return path
