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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer_bert.batch import IGNORE_INDEX
from composer_bert.errors import UserError
from composer_bert.models.bert import BertEncoder, LanguageModel, init_weights
from composer_bert.models.config import ModelConfig
from composer_bert.models.layers import KVCache
from composer_bert.objectives import OBJECTIVES, objective


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


class CausalLMForSequenceClassification(nn.Module):
    """The causal trunk + dropout + a linear head (no bias) on each row's last real token: the only position that has
    seen the whole row. As `LlamaForSequenceClassification` and `GPT2ForSequenceClassification` pool (their head is
    `score`, ours `classifier`: one key layout for every classifier), so a Llama-shaped one exports as that class.
    num_labels == 1 is regression."""

    def __init__(self, cfg: ModelConfig, num_labels: int):
        super().__init__()
        if not objective(cfg.objective).causal_attention:  # an encoder's [CLS] classifier is bert.py's
            causal = " or ".join(o.name for o in OBJECTIVES.values() if o.causal_attention)
            raise UserError(
                f"CausalLMForSequenceClassification needs a model with objective '{causal}', but this one is '{cfg.objective}'"
            )
        self.config = cfg
        self.bert = BertEncoder(cfg)
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels, bias=False)
        init_weights(self, cfg.init_std)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Logits [B, num_labels] at each row's last token whose `attention_mask` is 1 (the last token without a
        mask). Rows are right-padded (positions count from each row's first token, as the GLUE collator pads);
        `token_type_ids` are ignored: a causal trunk has no segments."""
        hidden = self.bert(input_ids, attention_mask)
        if attention_mask is None:
            last = hidden[:, -1]
        else:  # the rightmost real position, found on the device (no host read)
            position = torch.arange(input_ids.shape[1], device=input_ids.device)
            index = (position * (attention_mask != 0)).argmax(dim=-1)
            last = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), index]
        return self.classifier(self.dropout(last))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
