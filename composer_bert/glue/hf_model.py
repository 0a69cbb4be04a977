"""`checkpoint=hf:NAME_OR_PATH`: any `transformers` model with a sequence-classification head (encoders, and
decoders such as GPT-2 and Llama, whose head reads the last token before the padding), scored under our GLUE
protocol (same data, seeds, optimizer, schedule, evaluation and report) beside our own checkpoints.

The model comes from `AutoModelForSequenceClassification` and is tokenized by its own `AutoTokenizer`. Nothing
is fetched at run time: NAME_OR_PATH is a local `save_pretrained` folder or a hub name already in the offline
cache (`huggingface-cli download NAME` first); anything else stops with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.models import ComposerModel
from torch import Tensor

from composer_bert.errors import UserError
from composer_bert.glue.config import DropoutConfig
from composer_bert.models import ComposerClassifier
from composer_bert.run.tokenizer_files import tokenizer_errors
from composer_bert.run.weights_files import safetensors_errors

HF_PREFIX = "hf:"
# Our finetuning dropout, mapped onto the config attribute names transformers encoders use (set where present).
_DROPOUT_ATTRIBUTES = {
    "hidden": ("hidden_dropout_prob", "hidden_dropout", "mlp_dropout"),
    "attention": ("attention_probs_dropout_prob", "attention_dropout"),
    "embedding": ("embedding_dropout",),
    "classifier": ("classifier_dropout",),
}

# Any one of these in a model folder means it carries a tokenizer (fast, WordPiece, BPE or SentencePiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def hf_name(checkpoint: str) -> str | None:
    """NAME_OR_PATH of an `hf:` checkpoint value, else None."""
    return checkpoint[len(HF_PREFIX) :] if checkpoint.startswith(HF_PREFIX) else None


@dataclass
class HFSource:
    """A transformers checkpoint resolved offline: its config and tokenizer (weights load per run)."""

    name: str
    config: Any
    tokenizer: Any

    @property
    def max_positions(self) -> int | None:
        """Longest input the model takes (RoBERTa's position table holds two padding offsets)."""
        positions = getattr(self.config, "max_position_embeddings", None)
        if positions is None:
            return None
        return (
            positions - 2
            if getattr(self.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}
            else positions
        )

    def classifier(self, num_labels: int, dropout: DropoutConfig) -> HFClassifier:
        return HFClassifier(self, num_labels, dropout)


def load_hf_source(name: str) -> HFSource:
    """Config and tokenizer of NAME_OR_PATH from local files only; one clear line when they are not there."""
    from transformers import AutoConfig, AutoTokenizer

    local = Path(name)
    if local.exists() and not (local / "config.json").is_file():
        raise UserError(f"checkpoint=hf:{name}: not a transformers model folder (no config.json); use save_pretrained")
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError, KeyError):
        if local.exists():
            raise UserError(f"checkpoint=hf:{name}: not a transformers model folder (unreadable config.json)") from None
        raise UserError(
            f"checkpoint=hf:{name} is not a local folder and not in the offline Hugging Face cache; "
            f"download it first (huggingface-cli download {name}) or pass hf:FOLDER"
        ) from None
    # transformers 5 builds an empty tokenizer for a folder that has none, so look for the files first.
    if local.is_dir() and not any((local / file).is_file() for file in TOKENIZER_FILES):
        raise UserError(f"checkpoint=hf:{name} has no tokenizer AutoTokenizer can load; save one beside the model")
    with tokenizer_errors(f"hf:{name}", "save one beside the model that AutoTokenizer can load"):
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise UserError(f"the tokenizer of hf:{name} has neither a padding nor an end-of-text token; batches need one")
        # A decoder's tokenizer (GPT-2, Llama) has no padding token: pad with end-of-text, as transformers documents
        # for GPT2ForSequenceClassification. Its classifier reads the last token before the padding.
        tokenizer.pad_token = tokenizer.eos_token
    return HFSource(name, config, tokenizer)


class HFClassifier(ComposerClassifier):
    """A transformers sequence classifier behind `ComposerClassifier`'s loss, metrics and eval_forward."""

    def __init__(self, source: HFSource, num_labels: int, dropout: DropoutConfig):
        ComposerModel.__init__(self)  # not ComposerClassifier's: that builds our own classifier
        from transformers import AutoModelForSequenceClassification

        overrides = {
            attribute: getattr(dropout, ours)
            for ours, attributes in _DROPOUT_ATTRIBUTES.items()
            for attribute in attributes
            if hasattr(source.config, attribute)
        }
        if getattr(source.config, "pad_token_id", None) is None:  # where a decoder's classifier looks for the padding
            overrides["pad_token_id"] = source.tokenizer.pad_token_id
        self.config = source.config
        self.num_labels = num_labels
        self.is_regression = num_labels == 1
        with safetensors_errors(f"the .safetensors of checkpoint=hf:{source.name}", "save or download the model again"):
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source.name,
                num_labels=num_labels,
                problem_type="regression" if self.is_regression else "single_label_classification",
                ignore_mismatched_sizes=True,  # a checkpoint's own head of another size is replaced by a fresh one
                local_files_only=True,
                **overrides,
            )
        # Segment ids only where the model has segment embeddings for them (RoBERTa-style models have one type).
        self.uses_token_types = getattr(self.model.config, "type_vocab_size", 0) > 1
        self.train_metrics, self.eval_metrics = self._metrics(), self._metrics()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        extra = (
            {"token_type_ids": batch["token_type_ids"]} if self.uses_token_types and "token_type_ids" in batch else {}
        )
        return self.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), **extra).logits

    def load_encoder_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        raise NotImplementedError("hf: checkpoints load their own weights")

    def flops_per_batch(self, batch: dict[str, Tensor]) -> int:
        raise NotImplementedError("no FLOP count for arbitrary transformers models")

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())
