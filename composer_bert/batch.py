"""The batch format: what the collators (`data/load/collators.py`) produce and the models read.

Both objectives' batches hold `input_ids` [B, L] and `labels` [B, L] (IGNORE_INDEX where nothing is
predicted). Masked-LM batches add MASKED_POSITIONS [B, K]: each row's masked positions in K fixed slots (-1:
empty), so every batch has the same shapes. Causal-LM labels are the next tokens (`next_token_labels`).
Models import this module, never `data/`.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100  # label of positions the loss skips: torch's cross-entropy default
MASKED_POSITIONS = "masked_positions"  # batch key of the [B, K] masked positions (-1: empty slot)


def next_token_labels(input_ids: Tensor) -> Tensor:
    """labels[:, t] = input_ids[:, t + 1]; the last position has no next token in the row (IGNORE_INDEX).

    Rows are cut from one stream of packed documents, so the token after a row's last one sits in the next
    row: it is not predicted, and each row trains L - 1 predictions.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    return labels
