"""The top level of a pretraining recipe (`yamls/pretrain/*.yaml`): run, duration, budget and batch keys, and
one section per component (each section's dataclass lives beside that component: `run/config.py` lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from composer_bert.algorithms.config import BatchRampConfig, SeqLengthWarmupConfig
from composer_bert.callbacks.config import CallbacksConfig
from composer_bert.data.load.config import DataConfig
from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig
from composer_bert.optim.config import OptimizerConfig, SchedulerConfig
from composer_bert.run.loggers_config import LoggersConfig
from composer_bert.run.parallelism import ParallelismConfig
from composer_bert.run.remote import UploadConfig
from composer_bert.schema import bounded, check_run_seed, choice, key_error, positive


@dataclass
class PretrainConfig:
    """Top level of a `yamls/pretrain/*.yaml` recipe."""

    run_name: str = MISSING
    seed: int = 17  # check_run_seed: [0, 2**32 - 1], less one per extra rank
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
    upload: UploadConfig = field(default_factory=UploadConfig)  # a bucket save_folder's timeouts (run/remote.py)

    # Keys of earlier releases -> their place now (read with a warning until the next release).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "loggers.wandb_project": "loggers.wandb.project",
        "loggers.wandb_entity": "loggers.wandb.entity",
    }

    def check(self) -> None:
        check_run_seed("seed", self.seed)
        for key in ("max_duration", "save_interval", "eval_interval"):
            check_duration(key, getattr(self, key))
        if self.budget is not None:
            parse_budget_seconds(self.budget)
        mb = self.device_train_microbatch_size
        if not (mb == "auto" or (isinstance(mb, int) and not isinstance(mb, bool) and mb > 0)):
            raise UserError(f"config key 'device_train_microbatch_size' is '{mb}'; use a positive integer or 'auto'")
        final = self.batch_ramp.final_global_batch_size
        self.parallelism.refuse_batch_ramp(final)
        self.parallelism.refuse_muon(self.optimizer.name)
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
