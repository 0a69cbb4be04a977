"""The schema of `yamls/finetune/*.yaml`: one set of hyperparameters for every GLUE task, with typed per-task overrides.

Defaults are Cramming's "GLUE-sane" setting (Geiping & Goldstein, 2023): 5 epochs, lr 4e-5, batch 16,
AdamW(0.9, 0.98, eps 1e-6), no weight decay, cosine decay after 10% warmup, sequence length 128.
Dropout, off in pretraining, is switched back on (0.1) for finetuning as in BERT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from omegaconf import MISSING

from composer_bert.config import load_config
from composer_bert.errors import UserError
from composer_bert.fields import choice
from composer_bert.glue.tasks import DEFAULT_TASKS, GlueTask, get_task


@dataclass
class GlueDataConfig:
    """Where the GLUE examples come from; see composer_bert/glue/data.py for each layout."""

    source: str = choice("hf", ["hf", "glue_dir", "jsonl"], help="nyu-mll/glue, a GLUE download folder, or JSONL files")
    path: str | None = None  # glue_dir/jsonl: the folder; hf: an optional datasets cache dir


@dataclass
class DropoutConfig:
    """Replaces the pretrained model config's dropout rates while finetuning."""

    embedding: float = 0.1
    hidden: float = 0.1
    attention: float = 0.1
    classifier: float = 0.1


@dataclass
class TaskOverrides:
    """Per-task replacements for the shared hyperparameters; unset (null) keeps the shared value."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    warmup_fraction: float | None = None
    max_seq_length: int | None = None
    seeds: list[int] | None = None


@dataclass(frozen=True)
class TaskHparams:
    """The resolved hyperparameters of one task (shared values with its overrides applied)."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    warmup_fraction: float
    max_seq_length: int
    seeds: tuple[int, ...]


@dataclass
class FinetuneConfig:
    """Top level of a `yamls/finetune/*.yaml` recipe."""

    checkpoint: str = MISSING  # Composer .pt (local or s3://...) or an exported Hugging Face directory
    tokenizer: str | None = None  # a tokenizer directory; default: the one carried by the checkpoint
    save_folder: str = "runs/glue"
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    epochs: int = 5
    lr: float = 4e-5
    batch_size: int = 16  # global, split across ranks
    max_seq_length: int = 128
    warmup_fraction: float = 0.1
    optimizer: str = choice("adamw", ["adamw", "decoupled_adamw"])
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None
    precision: str = choice("auto", ["auto", "fp32", "amp_bf16", "amp_fp16"], help="auto: amp_bf16 on GPU, fp32 on CPU")
    eval_batch_size: int = 128
    # Tasks whose encoder starts from the finetuned MNLI model, e.g. [RTE, MRPC, STS-B] as MosaicBERT does;
    # needs MNLI in `tasks`; listed tasks that are not selected are ignored.
    start_from_mnli: list[str] = field(default_factory=list)
    # Keep each run's classifier as runs/{task}/seed{n}.model.pt (for recipes/export_hf.py); MNLI's is kept
    # regardless when start_from_mnli needs it. Off saves disk: a BERT-base file is ~0.4 GB per task x seed.
    save_models: bool = True
    task_overrides: dict[str, TaskOverrides] = field(default_factory=dict)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    data: GlueDataConfig = field(default_factory=GlueDataConfig)
    num_workers: int = 0
    progress_bar: bool = True
    dist_timeout: float = 600.0

    def selected_tasks(self) -> list[GlueTask]:
        """The tasks to run in order, with MNLI first when other tasks start from it."""
        tasks = [get_task(name, "tasks") for name in self.tasks]
        return sorted(tasks, key=lambda task: task.name != "MNLI") if self.mnli_starts() else tasks

    def mnli_starts(self) -> set[str]:
        """Names of the selected tasks whose encoder starts from the finetuned MNLI model."""
        selected = {get_task(name, "tasks").name for name in self.tasks}
        return {get_task(name, "start_from_mnli").name for name in self.start_from_mnli} & selected

    def shared_hparams(self) -> TaskHparams:
        return TaskHparams(
            self.epochs,
            self.lr,
            self.batch_size,
            self.weight_decay,
            self.warmup_fraction,
            self.max_seq_length,
            tuple(self.seeds),
        )

    def hparams_for(self, task: GlueTask) -> TaskHparams:
        """The shared hyperparameters with `task_overrides[task]` applied."""
        shared = self.shared_hparams()
        overrides = {get_task(name).name: value for name, value in self.task_overrides.items()}.get(task.name)
        if overrides is None:
            return shared
        changes = {key: value for key, value in dataclasses.asdict(overrides).items() if value is not None}
        if "seeds" in changes:
            changes["seeds"] = tuple(changes["seeds"])
        return dataclasses.replace(shared, **changes)


def _check_hparams(hparams: TaskHparams, where: str) -> None:
    checks = [
        (hparams.epochs > 0, "epochs", "a positive number of epochs"),
        (hparams.lr > 0, "lr", "a positive learning rate"),
        (hparams.batch_size > 0, "batch_size", "a positive batch size"),
        (hparams.weight_decay >= 0, "weight_decay", "a non-negative weight decay"),
        (0 <= hparams.warmup_fraction < 1, "warmup_fraction", "a fraction in [0, 1)"),
        (hparams.max_seq_length > 2, "max_seq_length", "at least 3 tokens ([CLS] x [SEP])"),
        (len(hparams.seeds) > 0, "seeds", "at least one seed"),
        (len(set(hparams.seeds)) == len(hparams.seeds), "seeds", "distinct seeds"),
    ]
    for ok, key, expected in checks:
        if not ok:
            raise UserError(f"config key '{where}{key}' is {getattr(hparams, key)}; use {expected}")


def check_finetune_config(cfg: FinetuneConfig) -> FinetuneConfig:
    """Everything `load_config` cannot check by type: task names, overrides, the MNLI dependency."""
    if not cfg.tasks:
        raise UserError(f"config key 'tasks' is empty; list GLUE tasks, e.g. tasks=[{','.join(DEFAULT_TASKS)}]")
    names = [get_task(name, "tasks").name for name in cfg.tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"config key 'tasks' lists {duplicates[0]} twice; list each task once")
    overridden = [get_task(name, "task_overrides").name for name in cfg.task_overrides]
    twice = sorted({name for name in overridden if overridden.count(name) > 1})
    if twice:
        raise UserError(f"config key 'task_overrides' names {twice[0]} twice (different spellings); merge them")
    for name in cfg.start_from_mnli:
        if get_task(name, "start_from_mnli").name == "MNLI":
            raise UserError("config key 'start_from_mnli' lists MNLI itself; list the tasks that start from MNLI")
    needing = sorted(cfg.mnli_starts())
    if needing and "MNLI" not in names:
        raise UserError(
            f"{needing[0]} starts from the finetuned MNLI model (start_from_mnli) but MNLI is not in tasks; "
            "add MNLI to tasks or set start_from_mnli=[]"
        )
    _check_hparams(cfg.shared_hparams(), "")
    for name in cfg.task_overrides:
        _check_hparams(cfg.hparams_for(get_task(name)), f"task_overrides.{name}.")
    if len(cfg.betas) != 2 or not all(0 <= beta < 1 for beta in cfg.betas):
        raise UserError(f"config key 'betas' is {cfg.betas}; use two numbers in [0, 1), e.g. [0.9, 0.98]")
    for name, rate in dataclasses.asdict(cfg.dropout).items():
        if not 0 <= rate < 1:
            raise UserError(f"config key 'dropout.{name}' is {rate}; use a probability in [0, 1)")
    if cfg.eval_batch_size <= 0:
        raise UserError(f"config key 'eval_batch_size' is {cfg.eval_batch_size}; use a positive batch size")
    return cfg


def load_finetune_config(yaml_path: str | None, overrides: list[str] | None = None) -> FinetuneConfig:
    """Load and fully validate a finetuning recipe (schema errors, then GLUE-specific checks)."""
    return check_finetune_config(load_config(FinetuneConfig, yaml_path, overrides))
