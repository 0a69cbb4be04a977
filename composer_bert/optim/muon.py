"""Muon for the transformer blocks' weight matrices and AdamW for every other parameter, in one optimizer: how
modded-nanogpt trains GPT-2 (and Moonlight, Kimi K2 after it), selected by `optimizer.name: muon`.

Muon (MomentUm Orthogonalized by Newton-Schulz) keeps a Nesterov momentum of each matrix's gradient and steps
along its orthogonalized form (five quintic Newton-Schulz iterations in bfloat16, which map every singular value
near 1), scaled by sqrt(max(1, rows / cols)): the update of `torch.optim.Muon` (torch >= 2.9, which the pinned
torch 2.7 lacks; a test checks ours against it on the current stack). Embeddings, the LM head, the classifier,
norms and biases are not hidden-layer matrices and take AdamW (torch's update, checked against it), with the
`lr`/`betas`/`eps` of the optimizer section; the matrices take `muon_lr`. A fused projection is orthogonalized
per part: q, k and v of the fused `qkv` separately, and the gate and value halves of a GLU's `up`, as the
separate matrices they stand for.

One optimizer, not two, so Composer's schedulers, gradient clipping, checkpoints and resumption see the one
`torch.optim.Optimizer` they expect. Muon needs each whole gradient matrix, so it does not run under FSDP
sharding (`pretrain/config.py` refuses that); under DDP every rank holds the whole all-reduced gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic: the steepest slope at zero that stays stable
NS_STEPS = 5


def orthogonalize(matrix: Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> Tensor:
    """U S' V^T with S' near the identity (singular values in about [0.5, 1.5]) for the 2-D `matrix` = U S V^T,
    by quintic Newton-Schulz iterations in bfloat16, on the wide orientation (fewer rows than columns)."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.bfloat16()
    tall = matrix.size(0) > matrix.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1: inside the iteration's basin
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def fused_parts(model: nn.Module) -> dict[Tensor, int]:
    """Weight -> how many matrices it fuses along its rows: attention's `qkv` 3, a GLU's `up` 2 (value and gate:
    twice `down`'s input width); the others are absent (one matrix)."""
    parts: dict[Tensor, int] = {}
    for module in model.modules():
        qkv = getattr(module, "qkv", None)
        if isinstance(qkv, nn.Linear):
            parts[qkv.weight] = 3
        up, down = getattr(module, "up", None), getattr(module, "down", None)
        if isinstance(up, nn.Linear) and isinstance(down, nn.Linear) and up.out_features != down.in_features:
            parts[up.weight] = up.out_features // down.in_features
    return parts


def is_block_matrix(name: str, param: Tensor) -> bool:
    """A hidden-layer weight matrix: 2-D and inside the trunk's blocks (`bert.layers.N.*`), so not an embedding,
    the LM head, the pooler or a classifier, which are not hidden-to-hidden maps and stay with AdamW."""
    return param.ndim == 2 and ".layers." in f".{name}"


def muon_parameter_groups(model: nn.Module, muon_lr: float, weight_decay: float) -> tuple[list[dict], list[Tensor]]:
    """Muon groups (one per fused-part count) for the blocks' matrices, and the other trainable parameters, which
    take AdamW (`optimizer.parameter_groups` splits them into decayed and not)."""
    parts = fused_parts(model)
    muon: dict[int, list[Tensor]] = {}
    rest = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_block_matrix(name, param):
            muon.setdefault(parts.get(param, 1), []).append(param)
        else:
            rest.append(param)
    groups = [{"params": ps, "muon": True, "parts": n, "lr": muon_lr, "weight_decay": weight_decay} for n, ps in sorted(muon.items())]
    return groups, rest


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the groups marked `muon` (with `parts` fused matrices per weight), AdamW on the others."""

    def __init__(
        self,
        groups: list[dict],
        *,
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = NS_STEPS,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, muon=False, parts=1)  # fmt: skip
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    (self._muon if group["muon"] else self._adamw)(param, group)
        return loss

    def _muon(self, param: Tensor, group: dict) -> None:
        grad, state = param.grad, self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buffer = state["momentum_buffer"]
        buffer.lerp_(grad, 1 - group["momentum"])
        update = grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
        parts = group["parts"]
        pieces = update.reshape(parts, update.size(0) // parts, update.size(1))
        update = torch.cat([orthogonalize(piece, group["ns_steps"]) for piece in pieces]).to(param.dtype)
        rows, cols = pieces.shape[1:]
        param.mul_(1 - group["lr"] * group["weight_decay"])
        param.add_(update, alpha=-group["lr"] * math.sqrt(max(1.0, rows / cols)))

    def _adamw(self, param: Tensor, group: dict) -> None:
        grad, state = param.grad, self.state[param]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = float(state["step"])
        param.mul_(1 - group["lr"] * group["weight_decay"])
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**step))
