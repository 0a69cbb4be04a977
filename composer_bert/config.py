"""The config schema: one set of dataclasses that recipes, the CLI and the tests all load through.

A YAML file is merged onto the schema's defaults, then `key=value` overrides on top. Anything the
schema does not know, a value of the wrong type, a missing required field or a value outside a
field's `choices` is a `UserError` naming the key (and the nearest valid key for a typo), raised
before any heavy work starts.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from composer_bert.callbacks.config import CallbacksConfig, LoggersConfig
from composer_bert.data.config import DataConfig
from composer_bert.errors import UserError
from composer_bert.fields import choice
from composer_bert.models.config import ModelConfig
from composer_bert.schedulers_config import BatchRampConfig, SchedulerConfig, SeqLengthWarmupConfig

T = TypeVar("T")


@dataclass
class OptimizerConfig:
    """AdamW as Cramming and MosaicBERT use it; weight decay skips norms and biases unless `decay_norm_and_bias`."""

    name: str = choice("decoupled_adamw", ["adamw", "decoupled_adamw"])
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-12
    weight_decay: float = 0.01
    decay_norm_and_bias: bool = False
    grad_clip_norm: float | None = 0.5


@dataclass
class PretrainConfig:
    """Top level of a `yamls/pretrain/*.yaml` recipe."""

    run_name: str = MISSING
    seed: int = 17
    save_folder: str = "runs/${run_name}"
    save_interval: str = "1000ba"
    save_num_checkpoints_to_keep: int = 2
    autoresume: bool = True
    max_duration: str = MISSING
    budget: str | None = None
    eval_interval: str = "1000ba"
    eval_subset_num_batches: int = 50
    precision: str = choice("amp_bf16", ["fp32", "amp_bf16", "amp_fp16"])
    global_train_batch_size: int = MISSING
    device_train_microbatch_size: Any = "auto"
    device_eval_batch_size: int = 64
    compile: bool = False
    dist_timeout: float = 600.0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    batch_ramp: BatchRampConfig = field(default_factory=BatchRampConfig)
    seq_length_warmup: SeqLengthWarmupConfig = field(default_factory=SeqLengthWarmupConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    loggers: LoggersConfig = field(default_factory=LoggersConfig)


_DURATION = re.compile(r"^\d+(\.\d+)?(ba|ep|tok|sp|dur)$")
_BUDGET = re.compile(r"^\d+(\.\d+)?(s|m|h|d)$")


def parse_budget_seconds(budget: str) -> float:
    """'24h' -> 86400.0; accepts s, m, h, d."""
    if not _BUDGET.match(budget):
        raise UserError(f"budget '{budget}' is not a wall-clock duration: write e.g. 90s, 30m, 24h or 1.5d")
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[budget[-1]]
    return float(budget[:-1]) * scale


def _nearest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.4)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(sorted(candidates))}"


def _keys_of(schema: Any, dotted: str) -> list[str]:
    """The valid keys at `dotted`'s parent level in `schema` (for 'did you mean'), walking dict-of-dataclass fields."""
    node: Any = schema if isinstance(schema, type) else type(schema)
    parts = dotted.split(".")[:-1]
    index = 0
    while index < len(parts) and is_dataclass(node):
        hint = typing.get_type_hints(node).get(parts[index])
        if typing.get_origin(hint) is dict:  # name -> dataclass: skip over the user's dict key
            hint, index = typing.get_args(hint)[1], index + 1
        node, index = hint, index + 1
    return [f.name for f in fields(node)] if is_dataclass(node) and index >= len(parts) else []


def _explain(err: OmegaConfBaseException, schema: Any) -> str:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) or "Key '" in str(err) and "not in" in str(err):
        return f"unknown config key '{key}'{_nearest(key.split('.')[-1], _keys_of(schema, key))}"
    if isinstance(err, ValidationError):
        first = str(err).splitlines()[0]
        return f"config key '{key}' has the wrong type: {first}"
    return f"config error at '{key}': {str(err).splitlines()[0]}"


def _check_choices(node: Any, prefix: str = "") -> None:
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            _check_choices(value, f"{prefix}{f.name}.")
        elif "choices" in f.metadata and value not in f.metadata["choices"]:
            options = ", ".join(map(str, f.metadata["choices"]))
            raise UserError(f"config key '{prefix}{f.name}' is '{value}'; choose one of: {options}")


def _check_pretrain(cfg: PretrainConfig) -> None:
    for key in ("max_duration", "save_interval", "eval_interval"):
        value = getattr(cfg, key)
        if not _DURATION.match(value):
            raise UserError(f"config key '{key}' is '{value}'; write a Composer duration such as 1000ba, 1ep or 10000000tok")
    if cfg.budget is not None:
        parse_budget_seconds(cfg.budget)
    mb = cfg.device_train_microbatch_size
    if not (mb == "auto" or (isinstance(mb, int) and mb > 0)):
        raise UserError(f"config key 'device_train_microbatch_size' is '{mb}'; use a positive integer or 'auto'")
    if cfg.global_train_batch_size <= 0:
        raise UserError("config key 'global_train_batch_size' must be positive")


def load_config(schema: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Merge defaults <- YAML <- `key=value` overrides, validate, and return a schema instance."""
    base = OmegaConf.structured(schema)
    layers: list[DictConfig] = []
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise UserError(f"config file '{path}' does not exist; pass a YAML recipe such as yamls/pretrain/tiny.yaml")
        try:
            layers.append(OmegaConf.load(path))
        except Exception as err:  # yaml.YAMLError and friends: one line, not a traceback
            raise UserError(f"config file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value (e.g. max_duration=100ba)")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(base, *layers)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise UserError(f"config key '{missing[0]}' is required; set it in the YAML or as {missing[0]}=VALUE")
        OmegaConf.resolve(merged)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise UserError(_explain(err, schema())) from None
    _check_choices(cfg)
    if isinstance(cfg, PretrainConfig):
        _check_pretrain(cfg)
    return cfg  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config object (for logging and saving beside checkpoints)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
