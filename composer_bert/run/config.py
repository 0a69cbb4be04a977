"""Loading a recipe: YAML onto its schema, `key=value` overrides on top, one validation pass.

Each section's dataclass lives beside the component it configures (torchtitan's way):

| YAML section | dataclass | file |
|---|---|---|
| top level (pretraining) | `PretrainConfig` | `pretrain/config.py` |
| top level (GLUE) | `FinetuneConfig` | `glue/config.py` |
| top level (generation) | `GenerateConfig` | `generation/config.py` |
| `model:` | `ModelConfig` | `models/config.py` |
| `data:` | `DataConfig` | `data/load/config.py` |
| `optimizer:`, `scheduler:` | `OptimizerConfig`, `SchedulerConfig` | `optim/config.py` |
| `batch_ramp:`, `seq_length_warmup:` | `BatchRampConfig`, `SeqLengthWarmupConfig` | `algorithms/config.py` |
| `callbacks:` | `CallbacksConfig` | `callbacks/config.py` |
| `loggers:` | `LoggersConfig` | `run/loggers_config.py` |
| `parallelism:` | `ParallelismConfig` | `run/parallelism.py` |
| `upload:` | `UploadConfig` | `run/remote.py` |

`load_config` rejects an unknown key (naming the nearest valid one), a wrong type or a missing field, then
runs `schema.validate` once: every key's range and choices, then each section's cross-key `check()`. All of
it happens before any heavy import, process-group start or data loading, and every problem is one
`UserError` line naming the key.
"""

from __future__ import annotations

import difflib
import types
import typing
import warnings
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from composer_bert.errors import UserError
from composer_bert.schema import validate

T = TypeVar("T")


def _nearest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.4)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(sorted(candidates))}"


def _unwrap_optional(hint: Any) -> Any:
    """`X | None` -> X, for an optional section such as `loggers.wandb`."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if len(args) == 1 and typing.get_origin(hint) in (typing.Union, types.UnionType) else hint


def _keys_of(schema: Any, dotted: str) -> list[str]:
    """The valid keys at `dotted`'s parent level in `schema` (for 'did you mean'), walking dict-of-dataclass fields."""
    node: Any = schema if isinstance(schema, type) else type(schema)
    parts = dotted.split(".")[:-1]
    index = 0
    while index < len(parts) and is_dataclass(node):
        hint = typing.get_type_hints(node).get(parts[index])
        if typing.get_origin(hint) is dict:  # name -> dataclass: skip over the user's dict key
            hint, index = typing.get_args(hint)[1], index + 1
        node, index = _unwrap_optional(hint), index + 1
    return [f.name for f in fields(node)] if is_dataclass(node) and index >= len(parts) else []


def _explain(err: OmegaConfBaseException, schema: Any) -> str:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) or "Key '" in str(err) and "not in" in str(err):
        return f"unknown config key '{key}'{_nearest(key.split('.')[-1], _keys_of(schema, key))}"
    if isinstance(err, ValidationError):
        first = str(err).splitlines()[0]
        return f"config key '{key}' has the wrong type: {first}"
    return f"config error at '{key}': {str(err).splitlines()[0]}"


def _layers(yaml_path: str | Path | None, overrides: list[str] | None) -> list[DictConfig]:
    """The YAML file and the `key=value` overrides as OmegaConf layers, with one-line errors for bad input."""
    layers: list[DictConfig] = []
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise UserError(f"config file '{path}' does not exist; pass a YAML recipe such as yamls/pretrain/tiny.yaml")
        try:
            loaded = OmegaConf.load(path)
        except Exception as err:  # yaml.YAMLError and friends: one line, not a traceback
            raise UserError(f"config file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(loaded, DictConfig):
            raise UserError(f"config file '{path}' holds a {type(loaded).__name__.removesuffix('Config').lower()} at its top level; a recipe is a mapping of key: value lines")
        layers.append(loaded)
    for item in overrides or []:
        check_utf8_argument(item, f"override '{item.split('=')[0]}'")
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value (e.g. max_duration=100ba)")
        try:  # each value is read as YAML: `key={a} {b}` is a broken flow mapping, not a string
            OmegaConf.from_dotlist([item])
        except Exception as err:
            key, value = item.split("=", 1)
            reason = str(err).splitlines()[0]
            raise UserError(
                f"override '{key}' has a value YAML cannot read ({reason}); quote it, e.g. '{key}=\"{value}\"'"
            ) from None
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    return layers


def _check_sections(node: dict[str, Any], schema: Any, prefix: str = "") -> None:
    """A plain value where the schema has a section (`loggers.mlflow=yes`, `model=[1]`): name the key and say that
    a section is expected, instead of OmegaConf's merge error, which names no key."""
    hints = typing.get_type_hints(schema)
    for name, value in node.items():
        hint = hints.get(name)
        if hint is None or isinstance(value, str) and value.startswith(("${", "???")):  # unknown keys: OmegaConf's
            continue
        key = f"{prefix}{name}"
        section = _unwrap_optional(hint)
        if typing.get_origin(section) is dict and is_dataclass(typing.get_args(section)[1]) and isinstance(value, dict):
            for entry, item in value.items():  # name -> section (task_overrides)
                _check_section_value(f"{key}.{entry}", item, typing.get_args(section)[1], optional=False)
        elif is_dataclass(section):
            _check_section_value(key, value, section, optional=section is not hint)


def _check_section_value(key: str, value: Any, section: Any, optional: bool) -> None:
    if isinstance(value, dict):
        _check_sections(value, section, f"{key}.")
    elif value is not None or not optional:
        hints = typing.get_type_hints(section)
        leaf = next((f.name for f in fields(section) if not is_dataclass(_unwrap_optional(hints[f.name]))), None)
        example = f"{key}.{leaf or fields(section)[0].name}=VALUE"
        turn = f"write {key}={{}} (or set its keys, e.g. {example}) to turn it on, or {key}=null to turn it off"
        raise UserError(f"config key '{key}' is {value!r}, but it is a section, not a value; "
                        f"{turn if optional else f'set its keys, e.g. {example}'}")  # fmt: skip


def _migrate(layer: DictConfig, renamed: dict[str, str]) -> DictConfig:
    """Move keys a schema renamed (its `RENAMED_KEYS`, old -> new dotted key) to their new place, warning once each."""
    container = OmegaConf.to_container(layer)
    assert isinstance(container, dict)
    for old, new in renamed.items():
        *old_parents, old_leaf = old.split(".")
        source = _section(container, old_parents)
        if source is None or old_leaf not in source or isinstance(source[old_leaf], dict):
            continue
        value = source.pop(old_leaf)
        *new_parents, new_leaf = new.split(".")
        target = container
        for depth, part in enumerate(new_parents):
            if target.get(part) is None:  # absent, or an optional section left null: the old key turns it on
                target[part] = {}
            target = target[part]
            if not isinstance(target, dict):
                raise UserError(f"config key '{'.'.join(new_parents[: depth + 1])}' is a section; write {new}={value}")
        target[new_leaf] = value
        warnings.warn(f"config key '{old}' is now '{new}'; the old name is read until the next release", FutureWarning, stacklevel=3)
    return OmegaConf.create(container)


def _section(container: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The nested mapping at `path` in a plain config dict, or None when it is absent or not a mapping."""
    node: Any = container
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def check_utf8_argument(text: str, what: str) -> None:
    """A command-line argument holds UTF-8 text: Python keeps other bytes as lone surrogates (surrogateescape),
    which tokenizers, YAML and file names then fail on deep inside; here they are one line naming the byte."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character U+{code:04X}"
        raise UserError(
            f"{what} is not UTF-8 text ({byte} at character {err.start + 1}); pass UTF-8 text "
            "(check the terminal's or script's encoding, e.g. LANG=C.UTF-8)"
        ) from None


def split_recipe_argv(argv: list[str], usage: str) -> tuple[str, list[str]] | None:
    """A recipe script's arguments as (YAML path, `key=value` overrides); None when asked for help."""
    if not argv:
        raise UserError(f"no recipe given; usage: {usage} (--help for more)")
    if argv[0] in ("-h", "--help"):
        return None
    if not argv[0].endswith((".yaml", ".yml")):
        raise UserError(f"first argument '{argv[0]}' is not a YAML recipe; usage: {usage}")
    return argv[0], argv[1:]


def load_config(schema: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Merge defaults <- YAML <- `key=value` overrides, validate once, and return a schema instance."""
    layers = _layers(yaml_path, overrides)
    renamed = getattr(schema, "RENAMED_KEYS", None)
    if renamed:
        layers = [_migrate(layer, renamed) for layer in layers]
    for layer in layers:
        _check_sections(OmegaConf.to_container(layer), schema)  # type: ignore[arg-type]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *layers)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise UserError(f"config key '{missing[0]}' is required; set it in the YAML or as {missing[0]}=VALUE")
        OmegaConf.resolve(merged)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise UserError(_explain(err, schema())) from None
    validate(cfg)
    return cfg  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config object (for logging and saving beside checkpoints)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
