"""Export to a Hugging Face directory that `transformers` loads without composer-bert (read back by `hf.load`).

A config that is exactly a transformers architecture (hf/families.py: original BERT, ModernBERT, Llama) exports as
`transformers`' own class (`BertForMaskedLM` / `BertForSequenceClassification`, `ModernBertForMaskedLM` /
`ModernBertForSequenceClassification`, `LlamaForCausalLM` / `LlamaForSequenceClassification`), without remote
code. Every other config exports as remote code: our model sources are copied next to the weights with their
`composer_bert` imports rewritten to relative ones (`hf/remote_code.py`), and config.json's `auto_map` points
`transformers` at the wrappers in `modeling_composer_bert.py`, so `from_pretrained(dir, trust_remote_code=True)`
runs exactly the modules we trained.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from composer_bert.data.contract import end_of_text_id, end_rows_with_eos
from composer_bert.errors import UserError
from composer_bert.hf.families import native_family
from composer_bert.hf.remote_code import remote_code_files
from composer_bert.models.config import ModelConfig
from composer_bert.objectives import Objective, objective
from composer_bert.run.checkpoint import load_composer_checkpoint
from composer_bert.run.compat import make_tokenizer_portable
from composer_bert.run.files import atomic_output_dir, check_output_dir
from composer_bert.run.tokenizer_files import tokenizer_errors

CLASSIFIER_CLASS = "ComposerBertForSequenceClassification"  # GLUE models of an objective that finetunes on GLUE


def auto_map(entry: Objective) -> dict[str, str]:
    """config.json's `auto_map` of a remote-code export of objective `entry`: its config, LM and classifier."""
    mapping = {
        "AutoConfig": "configuration_composer_bert.ComposerBertConfig",
        entry.remote_auto_class: f"modeling_composer_bert.{entry.remote_code_class}",
    }
    if entry.accepted_by("finetune_glue"):
        mapping["AutoModelForSequenceClassification"] = f"modeling_composer_bert.{CLASSIFIER_CLASS}"
    return mapping


EXPORT_MARKER = "config.json"  # every export has one; --overwrite replaces only a directory that does


# ---------------------------------------------------------------------------------------------- exporting


def export_language_model(
    model_or_state: nn.Module | Mapping[str, Tensor],
    model_config: ModelConfig,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
) -> Path:
    """Write the export of a pretrained model of `model_config.objective`: a masked LM, or a causal LM
    (`LlamaForCausalLM` when the switches are Llama's). Takes the Composer model, its `.model`, or that module's
    state dict."""
    from composer_bert.models.composer_model import build_composer_model

    state = _module_state(model_or_state, build_composer_model(model_config).model)
    with atomic_output_dir(out_dir, overwrite, EXPORT_MARKER) as staging:
        eos_token_id, _ = _save_tokenizer(tokenizer_dir, model_config, staging)  # eos: None for a masked LM
        _save_model(state, model_config, None, None, staging, eos_token_id)
    return Path(out_dir)


def export_classifier(
    composer_classifier_or_state: nn.Module | Mapping[str, Tensor],
    model_config: ModelConfig,
    num_labels: int,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write a sequence-classification export (num_labels == 1: regression) of a finetuned classifier.

    Accepts `ComposerClassifier`, its `.model`, or either's state dict; `label_names` become config.json's
    `id2label`, which `pipeline("text-classification")` reports.
    """
    if label_names is not None and len(label_names) != num_labels:
        raise UserError(f"{len(label_names)} label names for {num_labels} labels; pass one name per label")
    classifier = objective(model_config.objective).load("classifier")(model_config, num_labels)
    state = _module_state(composer_classifier_or_state, classifier)
    with atomic_output_dir(out_dir, overwrite, EXPORT_MARKER) as staging:
        # first: a native writer may read its special ids
        eos_token_id, pad_token_id = _save_tokenizer(tokenizer_dir, model_config, staging, classifier=True)
        _save_model(state, model_config, num_labels, label_names, staging, eos_token_id, pad_token_id)
    return Path(out_dir)


def export_checkpoint(
    checkpoint: str, out_dir: str | Path, overwrite: bool = False, tokenizer_dir: str | Path | None = None
) -> tuple[Path, str]:
    """Export a Composer checkpoint; a classifier (it has `classifier.weight`) exports as one, else the language
    model of its objective.

    A GLUE model file (`runs/{task}/seed{n}.model.pt`) is a classifier checkpoint whose label names become
    config.json's id2label. Returns the output directory and what was exported ("masked LM" or
    "classifier with N labels", naming them when known).
    """
    if Path(checkpoint).is_dir():
        raise UserError(f"checkpoint '{checkpoint}' is a directory; pass a Composer .pt file from a save_folder")
    check_output_dir(out_dir, overwrite, EXPORT_MARKER)  # again on writing; this one fails before any heavy work
    pretrained = load_composer_checkpoint(checkpoint)
    tokenizer_dir = tokenizer_dir if tokenizer_dir is not None else pretrained.tokenizer_dir
    if tokenizer_dir is None:
        raise UserError(f"checkpoint '{checkpoint}' carries no tokenizer; pass --tokenizer DIR")
    config, state = pretrained.model_config, pretrained.state_dict
    if "classifier.weight" not in state:
        entry = objective(config.objective)
        family = native_family(entry, config)
        kind = entry.short if family is None else f"{entry.short} as transformers {family.native_class}"
        return export_language_model(state, config, tokenizer_dir, out_dir, overwrite), kind
    num_labels = state["classifier.weight"].shape[0]
    info = pretrained.classifier  # a GLUE model file names its task's labels; None for regression
    label_names = list(info.label_names) if info is not None and info.label_names else None
    path = export_classifier(state, config, num_labels, tokenizer_dir, out_dir, overwrite, label_names)
    named = f" ({', '.join(label_names)})" if label_names else ""
    return path, f"classifier with {num_labels} label{'s' * (num_labels != 1)}{named}"


def _module_state(source: nn.Module | Mapping[str, Tensor], target: nn.Module) -> dict[str, Tensor]:
    """`source`'s weights loaded into `target` (our bare module), checked key by key and shape by shape."""
    if isinstance(source, nn.Module):
        inner = getattr(source, "model", None)  # a Composer wrapper holds our module as .model
        state = (inner if isinstance(inner, nn.Module) else source).state_dict()
    else:
        state = dict(source)
        if state and all(key.startswith("model.") for key in state):  # a Composer wrapper's own state dict
            state = {key.removeprefix("model."): value for key, value in state.items()}
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        problem = (lines[1] if len(lines) > 1 else lines[0]).strip()[:200]
        raise UserError(
            f"weights do not fit the model config ({problem}); export a checkpoint and its own config"
        ) from None
    return target.state_dict()


def _save_model(
    state: dict[str, Tensor],
    model_config: ModelConfig,
    num_labels: int | None,
    label_names: Sequence[str] | None,
    out_dir: Path,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> None:
    """Weights and config.json: transformers' own class when the config is exactly its architecture (one of the
    objective's `hf_families`), remote code otherwise.

    A causal classifier (`eos_token_id` given) reads each row's last real token. transformers' decoder classifiers
    find it as the last token that is not `pad_token_id`, which lands where ours does only when the padding token
    is not the end-of-text token every row ends with; otherwise (or without a padding token) the export is remote
    code, which reads the attention mask as we do."""
    from composer_bert.hf import modeling_composer_bert
    from composer_bert.hf.configuration_composer_bert import ComposerBertConfig

    label_kwargs = {} if num_labels is None else _label_kwargs(num_labels, label_names)
    entry = objective(model_config.objective)
    family = native_family(entry, model_config, classifier=num_labels is not None)
    if family is not None and num_labels is not None and eos_token_id is not None:  # a causal classifier, natively
        if pad_token_id is None or pad_token_id == eos_token_id:
            family = None
        else:
            label_kwargs["pad_token_id"] = pad_token_id
    if family is not None:
        family.write(state, model_config, out_dir, label_kwargs, eos_token_id)
        return
    hf_config = ComposerBertConfig.from_model_config(model_config, auto_map=auto_map(entry), **label_kwargs)
    if entry.ends_documents_with_eos:
        hf_config.eos_token_id, hf_config.bos_token_id = eos_token_id, None  # rows start without a bos token
    class_name = entry.remote_code_class if num_labels is None else CLASSIFIER_CLASS
    hf_model = getattr(modeling_composer_bert, class_name)(hf_config)
    hf_model.model.load_state_dict(state, strict=True)
    hf_model.save_pretrained(out_dir, safe_serialization=True)
    _write_full_config(out_dir / "config.json", model_config)
    for name, source in remote_code_files().items():
        (out_dir / name).write_text(source)


def _label_kwargs(num_labels: int, label_names: Sequence[str] | None) -> dict:
    kwargs: dict = {"num_labels": num_labels}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if label_names is not None:
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {name: index for index, name in enumerate(label_names)}
    return kwargs


def _write_full_config(path: Path, model_config: ModelConfig) -> None:
    """Spell out every ModelConfig field: `save_pretrained` drops defaults, which may change between versions."""
    config = json.loads(path.read_text())
    config.update(dataclasses.asdict(model_config))
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_tokenizer(
    tokenizer_dir: str | Path, model_config: ModelConfig, out_dir: Path, classifier: bool = False
) -> tuple[int | None, int | None]:
    """Re-save through `transformers` so tokenizer_config.json names its class (AutoTokenizer needs it), by a
    name that both transformers 4 and 5 resolve.

    It also records the model's inputs: transformers 5's generic tokenizer returns no token_type_ids unless told
    to, and without them a sentence pair would reach a model with segment embeddings as one segment.
    A causal language model's tokenizer adds no special tokens (see `_as_causal_tokenizer`); a causal
    classifier's ends each text with end-of-text, as it was finetuned (`data.contract.end_rows_with_eos`).
    Returns its end-of-text id (causal models; None for the others) and its padding id.
    """
    from transformers import PreTrainedTokenizerFast

    if not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        raise UserError(
            f"no tokenizer.json in '{tokenizer_dir}'; pass a tokenizer directory from data_prep/train_tokenizer.py"
        )
    segments = ["token_type_ids"] if model_config.type_vocab_size > 0 else []
    input_names = ["input_ids", *segments, "attention_mask"]
    with tokenizer_errors(tokenizer_dir):
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir), model_input_names=input_names)
    if len(tokenizer) > model_config.vocab_size:
        raise UserError(
            f"tokenizer '{tokenizer_dir}' has {len(tokenizer)} tokens but the model only {model_config.vocab_size}; "
            "pass the tokenizer the model was trained with"
        )
    tokenizer.model_max_length = min(tokenizer.model_max_length, model_config.max_position_embeddings)
    eos_token_id = None
    if objective(model_config.objective).ends_documents_with_eos:
        eos_token_id = _as_causal_tokenizer(tokenizer)
        if classifier:  # rows as finetuning saw them: a EOS b EOS, padded on the right
            end_rows_with_eos(tokenizer)
            tokenizer.padding_side = "right"
    tokenizer.save_pretrained(str(out_dir))
    make_tokenizer_portable(out_dir)
    return eos_token_id, tokenizer.pad_token_id


def _as_causal_tokenizer(tokenizer) -> int | None:
    """Encode text as causal rows hold it, with no [CLS]/[SEP] around it, so `pipeline("text-generation")`
    feeds the model what recipes/generate.py does; name the end-of-text token as eos, where generation stops."""
    from tokenizers import processors

    plain = processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    tokenizer.backend_tokenizer.post_processor = plain
    eos_token_id = end_of_text_id(tokenizer)
    if tokenizer.eos_token is None and eos_token_id is not None:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_token_id)
    return eos_token_id
