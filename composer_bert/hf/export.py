"""Export to a Hugging Face directory that `transformers` loads without composer-bert (read back by `hf.load`).

A plain original-BERT config exports as `transformers`' own `BertForMaskedLM` /
`BertForSequenceClassification` (no remote code). Every other config exports as remote code: our model
sources are copied next to the weights with their `composer_bert` imports rewritten to relative ones, and
config.json's `auto_map` points `transformers` at the wrappers in `modeling_composer_bert.py`, so
`from_pretrained(dir, trust_remote_code=True)` runs exactly the modules we trained.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from composer_bert.checkpoint import load_composer_checkpoint
from composer_bert.compat import make_tokenizer_portable
from composer_bert.errors import UserError
from composer_bert.files import atomic_output_dir
from composer_bert.models.config import ModelConfig
from composer_bert.version import __version__

# The two modules `transformers` imports from an export; everything they import from us is copied with them.
REMOTE_ENTRY_MODULES = ("composer_bert.hf.configuration_composer_bert", "composer_bert.hf.modeling_composer_bert")
AUTO_MAP = {
    "AutoConfig": "configuration_composer_bert.ComposerBertConfig",
    "AutoModelForMaskedLM": "modeling_composer_bert.ComposerBertForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_composer_bert.ComposerBertForSequenceClassification",
}
EXPORT_MARKER = "config.json"  # every export has one; --overwrite replaces only a directory that does
_FROM_IMPORT_HEADER = re.compile(r"^(\s*from\s+)(\.*[\w.]*)(\s+import\b)")


# ---------------------------------------------------------------------------------------------- exporting


def export_mlm(
    model_or_state: nn.Module | Mapping[str, Tensor],
    model_config: ModelConfig,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    overwrite: bool = False,
) -> Path:
    """Write a masked-LM export: `ComposerMLM`, its `.model`, or that module's state dict."""
    from composer_bert.models.bert import BertForMaskedLM

    state = _module_state(model_or_state, BertForMaskedLM(model_config))
    with atomic_output_dir(out_dir, overwrite, EXPORT_MARKER) as staging:
        _save_model(state, model_config, None, None, staging)
        _save_tokenizer(tokenizer_dir, model_config, staging)
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
    from composer_bert.models.bert import BertForSequenceClassification

    if label_names is not None and len(label_names) != num_labels:
        raise UserError(f"{len(label_names)} label names for {num_labels} labels; pass one name per label")
    state = _module_state(composer_classifier_or_state, BertForSequenceClassification(model_config, num_labels))
    with atomic_output_dir(out_dir, overwrite, EXPORT_MARKER) as staging:
        _save_model(state, model_config, num_labels, label_names, staging)
        _save_tokenizer(tokenizer_dir, model_config, staging)
    return Path(out_dir)


def export_checkpoint(
    checkpoint: str, out_dir: str | Path, overwrite: bool = False, tokenizer_dir: str | Path | None = None
) -> tuple[Path, str]:
    """Export a Composer checkpoint; a classifier (it has `classifier.weight`) exports as one, else the MLM.

    A GLUE model file (`runs/{task}/seed{n}.model.pt`) is a classifier checkpoint whose label names become
    config.json's id2label. Returns the output directory and what was exported ("masked LM" or
    "classifier with N labels", naming them when known).
    """
    if Path(checkpoint).is_dir():
        raise UserError(f"checkpoint '{checkpoint}' is a directory; pass a Composer .pt file from a save_folder")
    if not overwrite and Path(out_dir).exists():  # checked again on rename; this one fails before any heavy work
        raise UserError(f"output '{out_dir}' already exists; pass --overwrite to replace it or choose another --out")
    pretrained = load_composer_checkpoint(checkpoint)
    tokenizer_dir = tokenizer_dir if tokenizer_dir is not None else pretrained.tokenizer_dir
    if tokenizer_dir is None:
        raise UserError(f"checkpoint '{checkpoint}' carries no tokenizer; pass --tokenizer DIR")
    config, state = pretrained.model_config, pretrained.state_dict
    if "classifier.weight" not in state:
        return export_mlm(state, config, tokenizer_dir, out_dir, overwrite), "masked LM"
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
) -> None:
    """Weights and config.json: transformers' own BERT for a plain-BERT config, remote code otherwise."""
    from composer_bert.models.hf_bert import is_plain_bert

    label_kwargs = {} if num_labels is None else _label_kwargs(num_labels, label_names)
    if is_plain_bert(model_config):
        hf_model = _plain_bert_model(state, model_config, label_kwargs)
        hf_model.save_pretrained(out_dir, safe_serialization=True)
        return
    from composer_bert.hf.configuration_composer_bert import ComposerBertConfig
    from composer_bert.hf.modeling_composer_bert import ComposerBertForMaskedLM, ComposerBertForSequenceClassification

    hf_config = ComposerBertConfig.from_model_config(model_config, auto_map=AUTO_MAP, **label_kwargs)
    model_class = ComposerBertForMaskedLM if num_labels is None else ComposerBertForSequenceClassification
    hf_model = model_class(hf_config)
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


def _plain_bert_model(state: dict[str, Tensor], model_config: ModelConfig, label_kwargs: dict) -> nn.Module:
    from transformers import BertForMaskedLM, BertForSequenceClassification

    from composer_bert.models.hf_bert import hf_config_from_model_config, state_dict_to_hf_bert

    hf_config = hf_config_from_model_config(model_config)
    for key, value in label_kwargs.items():
        setattr(hf_config, key, value)
    hf_model = BertForSequenceClassification(hf_config) if label_kwargs else BertForMaskedLM(hf_config)
    hf_model.load_state_dict(state_dict_to_hf_bert(state, model_config), strict=True)
    return hf_model


def _write_full_config(path: Path, model_config: ModelConfig) -> None:
    """Spell out every ModelConfig field: `save_pretrained` drops defaults, which may change between versions."""
    config = json.loads(path.read_text())
    config.update(dataclasses.asdict(model_config))
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_tokenizer(tokenizer_dir: str | Path, model_config: ModelConfig, out_dir: Path) -> None:
    """Re-save through `transformers` so tokenizer_config.json names its class (AutoTokenizer needs it), by a
    name that both transformers 4 and 5 resolve.

    It also records the model's inputs: transformers 5's generic tokenizer returns no token_type_ids unless told
    to, and without them a sentence pair would reach a model with segment embeddings as one segment.
    """
    from transformers import PreTrainedTokenizerFast

    if not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        raise UserError(
            f"no tokenizer.json in '{tokenizer_dir}'; pass a tokenizer directory from data_prep/train_tokenizer.py"
        )
    segments = ["token_type_ids"] if model_config.type_vocab_size > 0 else []
    input_names = ["input_ids", *segments, "attention_mask"]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir), model_input_names=input_names)
    if len(tokenizer) > model_config.vocab_size:
        raise UserError(
            f"tokenizer '{tokenizer_dir}' has {len(tokenizer)} tokens but the model only {model_config.vocab_size}; "
            "pass the tokenizer the model was trained with"
        )
    tokenizer.model_max_length = min(tokenizer.model_max_length, model_config.max_position_embeddings)
    tokenizer.save_pretrained(str(out_dir))
    make_tokenizer_portable(out_dir)


# ---------------------------------------------------------------------------------------------- remote code


def remote_code_files() -> dict[str, str]:
    """File name -> source of every module the export's remote code needs, imports made relative.

    Starts from the configuration and modeling modules and follows their `composer_bert` imports, so a
    new import in our model code is copied without touching this list.
    """
    sources: dict[str, str] = {}
    direct_imports: dict[str, list[str]] = {}
    pending = list(REMOTE_ENTRY_MODULES)
    while pending:
        module = pending.pop()
        if module not in sources:
            sources[module], direct_imports[module] = _relative_source(module)
            pending.extend(direct_imports[module])
    for entry in REMOTE_ENTRY_MODULES:
        indirect = _reachable(entry, direct_imports) - set(direct_imports[entry]) - {entry}
        sources[entry] = _with_direct_imports(sources[entry], sorted(indirect))
    by_file_name: dict[str, list[str]] = {}
    for module in sources:
        by_file_name.setdefault(_file_stem(module) + ".py", []).append(module)
    for file_name, modules in by_file_name.items():
        if len(modules) > 1:
            raise RuntimeError(f"remote code modules {' and '.join(modules)} would both be copied as {file_name}")
    return {_file_stem(module) + ".py": source for module, source in sources.items()}


def _file_stem(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def _reachable(module: str, direct_imports: dict[str, list[str]]) -> set[str]:
    seen, pending = set(), [module]
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(direct_imports[current])
    return seen


def _with_direct_imports(source: str, modules: list[str]) -> str:
    """`source` that also imports `modules` relatively, after its last top-level import.

    For a local directory, `transformers` copies into its module cache only the files that the module it
    loads imports directly, not what those import in turn; naming every file here gets them all copied.
    """
    if not modules:
        return source
    last_import = max(
        node.end_lineno for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))
    )
    lines = source.splitlines(keepends=True)
    added = ["# transformers copies only the files this module imports directly; these name the rest.\n"]
    added += [f"from .{_file_stem(m)} import __name__ as _{_file_stem(m)}_module  # noqa: F401\n" for m in modules]
    return "".join(lines[:last_import] + added + lines[last_import:])


def _relative_source(module: str) -> tuple[str, list[str]]:
    """`module`'s source with each `from composer_bert.x.y import ...` made `from .y import ...`, and the y's."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find the source of {module}")
    source = Path(spec.origin).read_text()
    lines = source.splitlines(keepends=True)
    imported = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(_is_ours(alias.name) for alias in node.names):
            raise RuntimeError(
                f"{module} line {node.lineno}: write `from composer_bert.x import y` so it can be copied"
            )
        if not isinstance(node, ast.ImportFrom):
            continue
        target = importlib.util.resolve_name("." * node.level + (node.module or ""), spec.parent)
        if not _is_ours(target):
            continue
        target_spec = importlib.util.find_spec(target)
        if target_spec is None or target_spec.submodule_search_locations is not None:
            raise RuntimeError(f"{module} line {node.lineno}: import names from a module, not the package {target}")
        header = _FROM_IMPORT_HEADER.match(lines[node.lineno - 1])
        if header is None:
            raise RuntimeError(f"{module} line {node.lineno}: put `from {target} import` on one line")
        relative = "." + _file_stem(target)
        lines[node.lineno - 1] = header.expand(rf"\g<1>{relative}\g<3>") + lines[node.lineno - 1][header.end() :]
        imported.append(target)
    provenance = f"# Copied from {module} (composer-bert {__version__}) with its imports made relative.\n"
    return provenance + "".join(lines), imported


def _is_ours(module: str) -> bool:
    return module == "composer_bert" or module.startswith("composer_bert.")
