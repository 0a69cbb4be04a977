"""Loading a recipe: YAML onto its schema, `key=value` overrides on top, one validation pass, and the
top level of a pretraining recipe.

Each section's dataclass lives beside the component it configures (torchtitan's way):

| YAML section | dataclass | file |
|---|---|---|
| top level (pretraining) | `PretrainConfig` | this file |
| top level (GLUE) | `FinetuneConfig` | `glue/config.py` |
| `model:` | `ModelConfig` | `models/config.py` |
| `data:` | `DataConfig` | `data/config.py` |
| `optimizer:`, `scheduler:` | `OptimizerConfig`, `SchedulerConfig` | `optim/config.py` |
| `batch_ramp:`, `seq_length_warmup:` | `BatchRampConfig`, `SeqLengthWarmupConfig` | `algorithms/config.py` |
| `callbacks:`, `loggers:` | `CallbacksConfig`, `LoggersConfig` | `callbacks/config.py` |
| `parallelism:` | `ParallelismConfig` | `parallelism.py` |

`load_config` rejects an unknown key (naming the nearest valid one), a wrong type or a missing field, then
runs `schema.validate` once: every key's range and choices, then each section's cross-key `check()`. All of
it happens before any heavy import, process-group start or data loading, and every problem is one
`UserError` line naming the key.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
import warnings
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from composer_bert.algorithms.config import BatchRampConfig, SeqLengthWarmupConfig
from composer_bert.callbacks.config import CallbacksConfig, LoggersConfig
from composer_bert.data.config import DataConfig
from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig
from composer_bert.optim.config import OptimizerConfig, SchedulerConfig
from composer_bert.parallelism import ParallelismConfig
from composer_bert.schema import bounded, choice, key_error, positive, validate

T = TypeVar("T")


@dataclass
class PretrainConfig:
    """Top level of a `yamls/pretrain/*.yaml` recipe."""

    run_name: str = MISSING
    seed: int = 17
    save_folder: str = "runs/${run_name}"
    save_interval: str = "1000ba"
    save_num_checkpoints_to_keep: int = bounded(2, "a count >= 0, or -1 to keep all", ge=-1)
    autoresume: bool = True
    max_duration: str = MISSING
    budget: str | None = None
    eval_interval: str = "1000ba"
    eval_subset_num_batches: int = bounded(50, "a positive number of batches, or -1 for the whole split", ge=-1)
    precision: str = choice("amp_bf16", ["fp32", "amp_bf16", "amp_fp16"])
    global_train_batch_size: int = positive(MISSING, "a positive batch size")
    device_train_microbatch_size: Any = "auto"
    device_eval_batch_size: int = positive(64, "a positive batch size")
    compile: bool = False
    dist_timeout: float = positive(600.0, "a positive number of seconds")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    batch_ramp: BatchRampConfig = field(default_factory=BatchRampConfig)
    seq_length_warmup: SeqLengthWarmupConfig = field(default_factory=SeqLengthWarmupConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    loggers: LoggersConfig = field(default_factory=LoggersConfig)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)

    # Keys of earlier releases -> their place now (read with a warning until the next release).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "loggers.wandb_project": "loggers.wandb.project",
        "loggers.wandb_entity": "loggers.wandb.entity",
    }

    def check(self) -> None:
        for key in ("max_duration", "save_interval", "eval_interval"):
            check_duration(key, getattr(self, key))
        if self.budget is not None:
            parse_budget_seconds(self.budget)
        mb = self.device_train_microbatch_size
        if not (mb == "auto" or (isinstance(mb, int) and not isinstance(mb, bool) and mb > 0)):
            raise UserError(f"config key 'device_train_microbatch_size' is '{mb}'; use a positive integer or 'auto'")
        final = self.batch_ramp.final_global_batch_size
        self.parallelism.refuse_batch_ramp(final)
        start = self.global_train_batch_size
        if final is not None and (final < start or final % start):
            raise key_error(
                "batch_ramp.final_global_batch_size", final,
                f"a multiple of global_train_batch_size ({start}), e.g. {start * max(final // start, 2)}",
            )

    @property
    def budget_seconds(self) -> float | None:
        """The wall-clock budget in seconds (validated by `check`), or None without one."""
        return None if self.budget is None else parse_budget_seconds(self.budget)


_DURATION = re.compile(r"^(\d+(\.\d+)?)(ba|ep|tok|sp|dur)$")
_BUDGET = re.compile(r"^(\d+(\.\d+)?)(s|m|h|d)$")


def check_duration(key: str, value: str) -> None:
    """A positive Composer duration such as 1000ba, 1ep or 10000000tok."""
    match = _DURATION.match(value)
    if not match or float(match.group(1)) <= 0:
        raise key_error(key, value, "a positive Composer duration such as 1000ba, 1ep or 10000000tok")


def parse_budget_seconds(budget: str) -> float:
    """'24h' -> 86400.0; accepts s, m, h, d."""
    match = _BUDGET.match(budget)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"budget '{budget}' is not a positive wall-clock duration: write e.g. 90s, 30m, 24h or 1.5d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(3)]


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
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value (e.g. max_duration=100ba)")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    return layers


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


def split_recipe_argv(argv: list[str], usage: str) -> tuple[str, list[str]] | None:
    """A recipe script's arguments as (YAML path, `key=value` overrides); None when asked for help."""
    if not argv or argv[0] in ("-h", "--help"):
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
