"""The transformers architectures our model can be exactly: BERT, ModernBERT (masked LM) and Llama (causal LM).

Each family says which `model_type` its folders carry, which class a native export writes, whether a
`ModelConfig` is exactly that architecture, and how to write and read its weights. An objective's
`hf_families` (objectives.py) lists the ones it exports to and starts from; a config none of them matches
exports as remote code (hf/export.py). Adding an architecture is one entry here plus its own weight-mapping
module (as hf/llama.py, hf/modernbert.py, models/hf_bert.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig
from composer_bert.objectives import Objective

# (state, model config, out dir, label kwargs of a classifier or {}, eos id of a causal model) -> files in out dir
Writer = Callable[[dict[str, Tensor], ModelConfig, Path, dict, "int | None"], None]
# (folder, config to take the keys the family has no counterpart for, or None) -> our config of the folder
ConfigReader = Callable[[Path, "ModelConfig | None"], ModelConfig]
# (folder, that config) -> our weights; without `head.*` when the folder has no LM head (a bare trunk)
Reader = Callable[[Path, ModelConfig], "dict[str, Tensor]"]


@dataclass(frozen=True)
class Family:
    model_type: str  # config.json's
    native_class: str  # what a language-model export of this family is
    matches: Callable[[ModelConfig], bool]  # the config computes exactly this architecture
    write: Writer
    read_config: ConfigReader
    read_state: Reader
    # the `classifier_head` whose classifiers export as this family's sequence classifier (None: any, the
    # family's classifier reads the last token through a plain linear head, as our causal classifier does)
    classifier_head: str | None

    def read(self, directory: Path, base: ModelConfig | None = None) -> tuple[ModelConfig, dict[str, Tensor]]:
        model_config = self.read_config(directory, base)
        return model_config, self.read_state(directory, model_config)


def _weights(directory: Path) -> dict[str, Tensor]:
    from composer_bert.hf.load import read_weights

    return read_weights(directory)


# ------------------------------------------------------------------------------------------------ BERT


def _is_plain_bert(cfg: ModelConfig) -> bool:
    from composer_bert.models.hf_bert import is_plain_bert

    return is_plain_bert(cfg)


def _write_bert(state: dict, cfg: ModelConfig, out_dir: Path, label_kwargs: dict, eos_token_id: int | None) -> None:
    from transformers import BertForMaskedLM, BertForSequenceClassification

    from composer_bert.models.hf_bert import hf_config_from_model_config, state_dict_to_hf_bert

    hf_config = hf_config_from_model_config(cfg)
    for key, value in label_kwargs.items():
        setattr(hf_config, key, value)
    hf_model = BertForSequenceClassification(hf_config) if label_kwargs else BertForMaskedLM(hf_config)
    hf_model.load_state_dict(state_dict_to_hf_bert(state, cfg), strict=True)
    hf_model.save_pretrained(out_dir, safe_serialization=True)


def _bert_config(directory: Path, base: ModelConfig | None) -> ModelConfig:
    from transformers import BertConfig

    from composer_bert.models.hf_bert import model_config_from_hf

    try:
        return model_config_from_hf(BertConfig.from_pretrained(str(directory)))
    except ValueError as err:
        raise UserError(f"'{directory}': {str(err).splitlines()[0]}") from None


def _read_bert(directory: Path, model_config: ModelConfig) -> dict[str, Tensor]:
    """A BertForMaskedLM / BertForSequenceClassification / bare BertModel folder (its pretraining NSP head dropped)."""
    from composer_bert.models.hf_bert import state_dict_from_hf_bert

    hf_state = {key: value for key, value in _weights(directory).items() if not key.startswith("cls.seq_relationship.")}
    if not any(key.startswith("bert.") for key in hf_state):  # a BertModel's save_pretrained
        hf_state = {f"bert.{key}": value for key, value in hf_state.items()}
    try:
        return state_dict_from_hf_bert(hf_state, model_config)
    except (ValueError, KeyError) as err:
        raise UserError(f"'{directory}' is not a BERT checkpoint this package reads: {err}") from None


# ------------------------------------------------------------------------------------------ ModernBERT


def _is_modernbert(cfg: ModelConfig) -> bool:
    from composer_bert.hf.modernbert import is_modernbert

    return is_modernbert(cfg)


def _write_modernbert(state: dict, cfg: ModelConfig, out_dir: Path, label_kwargs: dict, eos_token_id: int | None) -> None:
    """A ModernBertForMaskedLM or ModernBertForSequenceClassification; its config names the [CLS]/[SEP] ids of the
    tokenizer already saved in `out_dir`."""
    from transformers import ModernBertForMaskedLM, ModernBertForSequenceClassification, PreTrainedTokenizerFast

    from composer_bert.hf.modernbert import both_majors_keys, modernbert_config, state_dict_to_modernbert

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(out_dir))
    special_ids = {"cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id}
    hf_config = modernbert_config(cfg, special_ids)
    for key, value in label_kwargs.items():
        setattr(hf_config, key, value)
    hf_model = (ModernBertForSequenceClassification if label_kwargs else ModernBertForMaskedLM)(hf_config)
    hf_model.load_state_dict(state_dict_to_modernbert(state, cfg), strict=True)
    hf_model.save_pretrained(out_dir, safe_serialization=True)
    config_path = out_dir / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **both_majors_keys(cfg)}, indent=2) + "\n")


def _modernbert_config(directory: Path, base: ModelConfig | None) -> ModelConfig:
    from transformers import ModernBertConfig

    from composer_bert.hf.modernbert import model_config_from_modernbert

    return model_config_from_modernbert(ModernBertConfig.from_pretrained(str(directory)), base)


def _read_modernbert(directory: Path, model_config: ModelConfig) -> dict[str, Tensor]:
    from composer_bert.hf.modernbert import state_dict_from_modernbert

    try:
        return state_dict_from_modernbert(_weights(directory), model_config)
    except KeyError as err:
        raise UserError(f"'{directory}' lacks the ModernBERT weight {err}; save a complete ModernBertForMaskedLM") from None


# ----------------------------------------------------------------------------------------------- Llama


def _is_llama(cfg: ModelConfig) -> bool:
    from composer_bert.hf.llama import is_llama

    return is_llama(cfg)


def _write_llama(state: dict, cfg: ModelConfig, out_dir: Path, label_kwargs: dict, eos_token_id: int | None) -> None:
    """A LlamaForCausalLM, or a LlamaForSequenceClassification: it reads the last token that is not
    `pad_token_id`, so its label kwargs carry the tokenizer's padding id (hf/export.py exports as Llama only a
    classifier whose padding token is not the end-of-text token each classified row ends with)."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from composer_bert.hf.llama import llama_config, state_dict_to_llama

    hf_config = llama_config(cfg, eos_token_id)
    for key, value in label_kwargs.items():
        setattr(hf_config, key, value)
    hf_model = (LlamaForSequenceClassification if label_kwargs else LlamaForCausalLM)(hf_config)
    tied_head = cfg.tie_embeddings and not label_kwargs  # save_pretrained stores a tied LM head once
    hf_model.load_state_dict(state_dict_to_llama(state, cfg), strict=not tied_head)
    hf_model.save_pretrained(out_dir, safe_serialization=True)


def _llama_config(directory: Path, base: ModelConfig | None) -> ModelConfig:
    """A `LlamaForCausalLM` folder's (ours or any whose shape our blocks compute)."""
    from transformers import LlamaConfig

    from composer_bert.hf.llama import model_config_from_llama

    return model_config_from_llama(LlamaConfig.from_pretrained(str(directory)), base)


def _read_llama(directory: Path, model_config: ModelConfig) -> dict[str, Tensor]:
    from composer_bert.hf.llama import state_dict_from_llama

    weights = _weights(directory)
    if "score.weight" in weights:  # a LlamaForSequenceClassification: its LM head was dropped when it was finetuned
        raise UserError(
            f"'{directory}' holds a Llama sequence classifier (a finetuned model without a language-model head); "
            "pass a LlamaForCausalLM folder"
        )
    try:
        return state_dict_from_llama(weights, model_config)
    except KeyError as err:
        raise UserError(f"'{directory}' lacks the Llama weight {err}; save a complete LlamaForCausalLM") from None


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family("bert", "BertForMaskedLM", _is_plain_bert, _write_bert, _bert_config, _read_bert, "pooler"),
        Family("modernbert", "ModernBertForMaskedLM", _is_modernbert, _write_modernbert, _modernbert_config,
               _read_modernbert, "modernbert"),
        Family("llama", "LlamaForCausalLM", _is_llama, _write_llama, _llama_config, _read_llama, None),
    )
}


def families_of(entry: Objective) -> list[Family]:
    return [FAMILIES[name] for name in entry.hf_families]


def native_family(entry: Objective, cfg: ModelConfig, classifier: bool = False) -> Family | None:
    """The family a model of objective `entry` and config `cfg` exports as (None: remote code)."""
    for family in families_of(entry):
        if family.matches(cfg) and (not classifier or family.classifier_head in (None, cfg.classifier_head)):
            return family
    return None


def folder_model_type(directory: Path, what: str) -> str | None:
    """config.json's model_type of a folder; `what` names the setting in the one-line error."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise UserError(f"{what}: '{directory}' has no config.json; pass a transformers model folder")
    try:
        return json.loads(config_path.read_text()).get("model_type")
    except json.JSONDecodeError as err:
        raise UserError(f"{what}: '{config_path}' is not valid JSON ({err}); save or export the model again") from None
