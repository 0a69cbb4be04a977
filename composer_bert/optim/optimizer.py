"""AdamW with weight decay on weight matrices only (embeddings and the tied decoder included); norms, biases and
scalars are not decayed, as in Cramming and original BERT. Or Muon with AdamW (`optim/muon.py`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from composer.optim import DecoupledAdamW

from composer_bert.optim.config import OptimizerConfig
from composer_bert.optim.muon import MuonAdamW, muon_parameter_groups


def parameter_groups(params: Iterable[torch.Tensor], weight_decay: float, decay_all: bool) -> list[dict]:
    """Two groups: decayed (tensors of 2+ dims) and not decayed (norms, biases, scalars), unless `decay_all`."""
    decayed, plain = [], []
    for param in params:
        if not param.requires_grad:
            continue
        is_matrix = param.ndim >= 2
        (decayed if decay_all or is_matrix else plain).append(param)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def build_optimizer(cfg: OptimizerConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    if cfg.name == "muon":
        muon_groups, rest = muon_parameter_groups(model, cfg.muon_lr, cfg.weight_decay)
        groups = [g for g in muon_groups + parameter_groups(rest, cfg.weight_decay, cfg.decay_norm_and_bias) if g["params"]]
        return MuonAdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum)
    groups = parameter_groups(model.parameters(), cfg.weight_decay, cfg.decay_norm_and_bias)
    if cfg.name == "decoupled_adamw":
        return DecoupledAdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
