"""Causal-LM batches: the packed rows as input_ids, plus their next-token labels (no masking).

The causal loader is the MLM one with another collate (`mlm_dataset.CausalCollator`): the same
`MLMStreamingDataset` (so the same elastic-deterministic sample order under resume and any rank count)
and the same compact-then-widen batches (`mlm_dataset.model_batch`). Nothing is random, so a sample's
batch entry depends on its id alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from composer_bert.data.masking import IGNORE_INDEX


def next_token_labels(input_ids: Tensor) -> Tensor:
    """labels[:, t] = input_ids[:, t + 1]; the last position has no next token in the row (IGNORE_INDEX).

    Rows are cut from one stream of packed documents, so the token after a row's last one sits in the next
    row: it is not predicted, and each row trains L - 1 predictions.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    return labels
