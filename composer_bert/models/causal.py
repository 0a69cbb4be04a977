"""The causal (GPT-style) language model: the BERT trunk with causal self-attention and an LM head.

One trunk serves both objectives (`BertEncoder`, the same `Block`, norms, positions and FFNs); with
`model.objective: causal` its attention is causal (SDPA `is_causal`, or ALiBi's causal bias) and there are
no token types. The LM head is `MLMHead` run at every position, tied to the token embeddings or not by
`tie_embeddings`. Module names (`bert.*`, `head.*`) are those of `BertForMaskedLM`, so checkpoints of both
objectives share one key layout.

Labels: the loader shifts them (data/causal.py, `next_token_labels`): `labels[:, t]` is the token at t + 1
and the row's last position is IGNORE_INDEX, so the loss is a plain cross entropy of logits against labels
(`next_token_loss`). Like the MLM model, nothing here reads a tensor value on the host.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from composer_bert.batch import IGNORE_INDEX
from composer_bert.models.bert import LanguageModel
from composer_bert.models.layers import KVCache


class CausalLM(LanguageModel):
    """Decoder-only LM: logits [B, L, vocab_size] for the token after each position."""

    def forward(
        self,
        input_ids: Tensor,
        position_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Logits [B, L, vocab_size] (vocabulary padding sliced off); position t sees tokens 0..t only.

        `position_ids` [L] or [B, L] default to 0..L-1; `attention_mask` [B, L] (1 = real) for right-padded rows.
        A `cache` (generation) places the tokens after those it holds and keeps their keys and values.
        """
        return self.head(self.bert(input_ids, attention_mask, position_ids=position_ids, cache=cache))


def next_token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross entropy of logits [B, L, V] against already shifted labels [B, L], IGNORE_INDEX skipped."""
    return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX)
