"""The objective table: everything that differs between a masked LM and a causal LM, in one entry each.

`model.objective` (and `convert_dataset.py --objective`, and the shards' manifest) names an entry; every
module that behaves differently by objective reads its entry here instead of comparing names. Adding an
objective (or a model family with its own wrapper, collator and export) is one entry plus its own modules.

Behaviour is named as "module:attribute" and imported on first use (`Objective.load`), so this module imports
nothing from the package: models, data, export and the recipes can all read the table without a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from composer_bert.errors import UserError
from composer_bert.lazy import resolve


@dataclass(frozen=True)
class SummaryRow:
    """The objective's own row of the pretraining summary: a `PretrainResult` field, its label and format."""

    field: str
    label: str
    spec: str


@dataclass(frozen=True)
class Objective:
    """One training objective: what its rows, model, batches, FLOPs, metrics, report and export are."""

    name: str
    what: str  # in messages: "masked-LM encoder"
    short: str  # in export messages: "masked LM"
    # shards (data/prep/packing.py): a row starts with [CLS] (a summary position for classifiers), or is the
    # plain packed stream
    rows_start_with_cls: bool
    # model (models/bert.py): each position attends only to itself and earlier ones
    causal_attention: bool
    # model config (models/config.py): token-type (segment) embeddings make sense
    token_types: bool
    composer_model: str  # the ComposerModel wrapper pretraining trains
    bare_model: str  # the torch module the wrapper holds (checkpoints carry its state dict)
    # finetuning (glue/): the sequence classifier on this trunk, (ModelConfig, num_labels) -> module with keys
    # `bert.*` and `classifier.*`; it reads [CLS] (rows start with it) or the last real token (causal)
    classifier: str
    collator: str  # data/load/collators.py: (dataset, data config, shard contract, seed) -> collate_fn
    flops_per_batch: str  # models/flops.py: the wrapper's FLOP count, for MFU
    train_metrics: tuple[str, ...]  # metric names (models/composer_model.py METRICS) the wrapper logs in training
    eval_metrics: tuple[str, ...]  # and in evaluation
    summary: SummaryRow
    # Hugging Face (hf/): the transformers architectures (hf/families.py) whose folders `model.init_from=hf:DIR`
    # and `checkpoint=hf:DIR` read and whose class a native export writes when the config is exactly one of
    # them; otherwise the export is the remote-code class of hf/modeling_composer_bert.py, under its Auto class
    hf_families: tuple[str, ...]
    remote_code_class: str
    remote_auto_class: str
    ends_documents_with_eos: bool  # exported tokenizer: the end-of-text token is eos, no special tokens added
    recipes: frozenset[str]  # the entry scripts under recipes/ that accept a checkpoint of this objective

    def load(self, attribute: str) -> Any:
        """The object a "module:attribute" field names, imported now."""
        return resolve(getattr(self, attribute))

    def accepted_by(self, recipe: str) -> bool:
        return recipe in self.recipes



OBJECTIVES: dict[str, Objective] = {
    "mlm": Objective(
        name="mlm",
        what="masked-LM encoder",
        short="masked LM",
        rows_start_with_cls=True,
        causal_attention=False,
        token_types=True,
        composer_model="composer_bert.models.composer_model:ComposerMLM",
        bare_model="composer_bert.models.bert:BertForMaskedLM",
        classifier="composer_bert.models.bert:BertForSequenceClassification",
        collator="composer_bert.data.load.collators:mlm_collator",
        flops_per_batch="composer_bert.models.flops:mlm_flops_per_batch",
        train_metrics=("MaskedAccuracy", "LanguageCrossEntropy"),
        eval_metrics=("MaskedAccuracy", "LanguageCrossEntropy", "LanguagePerplexity"),
        summary=SummaryRow("eval_masked_accuracy", "eval masked accuracy", ".4f"),
        hf_families=("bert", "modernbert"),
        remote_code_class="ComposerBertForMaskedLM",
        remote_auto_class="AutoModelForMaskedLM",
        ends_documents_with_eos=False,
        recipes=frozenset({"pretrain", "finetune_glue", "export_hf"}),
    ),
    "causal": Objective(
        name="causal",
        what="causal language model",
        short="causal LM",
        rows_start_with_cls=False,
        causal_attention=True,
        token_types=False,
        composer_model="composer_bert.models.composer_model:ComposerCausalLM",
        bare_model="composer_bert.models.causal:CausalLM",
        classifier="composer_bert.models.causal:CausalLMForSequenceClassification",
        collator="composer_bert.data.load.collators:causal_collator",
        flops_per_batch="composer_bert.models.flops:causal_flops_per_batch",
        train_metrics=("LanguageCrossEntropy",),
        eval_metrics=("LanguageCrossEntropy", "LanguagePerplexity"),
        summary=SummaryRow("eval_perplexity", "eval perplexity", ".3f"),
        hf_families=("llama",),
        remote_code_class="ComposerBertForCausalLM",
        remote_auto_class="AutoModelForCausalLM",
        ends_documents_with_eos=True,
        recipes=frozenset({"pretrain", "finetune_glue", "generate", "zero_shot", "export_hf"}),
    ),
}
DEFAULT_OBJECTIVE = "mlm"  # configs and manifests written before objectives existed hold masked-LM rows


def objective(name: str) -> Objective:
    """The table entry `name`; an unknown one is one line listing the known."""
    if name not in OBJECTIVES:
        raise UserError(f"objective '{name}' is unknown; use one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def refuse_unless_accepted(name: str, recipe: str, checkpoint: str) -> None:
    """One line when recipes/`recipe`.py cannot take `checkpoint`, a model of objective `name`."""
    entry = objective(name)
    if not entry.accepted_by(recipe):
        takers = [other for other in OBJECTIVES.values() if other.accepted_by(recipe)]
        raise UserError(
            f"checkpoint '{checkpoint}' holds a {entry.what} (model.objective={name}); recipes/{recipe}.py takes a "
            f"{' or '.join(t.what for t in takers)}: pass a checkpoint of a run with "
            f"{' or '.join(f'model.objective={t.name}' for t in takers)}"
        )
