"""The schema of `yamls/finetune/*.yaml`: one set of hyperparameters for every GLUE (or SuperGLUE) task, with typed
per-task overrides.

Defaults are Cramming's "GLUE-sane" setting (Geiping & Goldstein, 2023): 5 epochs, lr 4e-5, batch 16,
AdamW(0.9, 0.98, eps 1e-6), no weight decay, cosine decay after 10% warmup, sequence length 128.
Dropout, off in pretraining, is switched back on (0.1) for finetuning as in BERT. The `optimizer:` section
has the shape of pretraining's (`optim/config.py`); the flat keys of earlier releases (`lr`, `betas`, `eps`,
`weight_decay`, `grad_clip_norm`, `optimizer: NAME`, `batch_size`, `eval_batch_size`) are still read, with a
warning, until the next release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import MISSING

from composer_bert.errors import UserError
from composer_bert.optim.config import OptimizerConfig
from composer_bert.run.loggers_config import TrackersConfig
from composer_bert.run.parallelism import ParallelismConfig
from composer_bert.run.remote import is_remote
from composer_bert.schema import bounded, check_run_seed, choice, key_error, positive, probability

if TYPE_CHECKING:
    from composer_bert.glue.benchmark import Benchmark


@dataclass
class GlueDataConfig:
    """Where the GLUE examples come from; see composer_bert/glue/data.py for each layout."""

    source: str = choice(
        "hf", ["hf", "glue_dir", "jsonl", "superglue_dir"],
        help="Hugging Face datasets, a GLUE download folder, JSONL files (GLUE), or the SuperGLUE download folder",
    )  # fmt: skip
    path: str | None = None  # glue_dir/jsonl/superglue_dir: the folder; hf: a cache dir (SuperGLUE: or save_to_disk folder)


@dataclass
class DropoutConfig:
    """Replaces the pretrained model config's dropout rates while finetuning."""

    embedding: float = probability(0.1)
    hidden: float = probability(0.1)
    attention: float = probability(0.1)
    classifier: float = probability(0.1)


_EPOCHS = "a positive number of epochs"
_LR = "a positive learning rate"
_BATCH = "a positive batch size"
_DECAY = "a non-negative weight decay"
_WARMUP = "a fraction in [0, 1)"
_SEQ = "at least 3 tokens ([CLS] x [SEP])"


def _check_seeds(seeds: list[int], key: str) -> None:
    if not seeds or len(set(seeds)) != len(seeds):
        raise key_error(key, seeds, "at least one seed, each once")
    for seed in seeds:
        check_run_seed(key, seed, shown=seeds)


@dataclass
class TaskOverrides:
    """Per-task replacements for the shared hyperparameters; unset (null) keeps the shared value.

    `lr` and `weight_decay` replace `optimizer.lr` and `optimizer.weight_decay`.
    """

    epochs: int | None = positive(None, _EPOCHS)
    lr: float | None = positive(None, _LR)
    global_train_batch_size: int | None = positive(None, _BATCH)
    weight_decay: float | None = bounded(None, _DECAY, ge=0)
    warmup_fraction: float | None = bounded(None, _WARMUP, ge=0, lt=1)
    max_seq_length: int | None = bounded(None, _SEQ, ge=3)
    seeds: list[int] | None = None


@dataclass(frozen=True)
class TaskHparams:
    """The resolved hyperparameters of one task (shared values with its overrides applied)."""

    epochs: int
    lr: float
    global_train_batch_size: int
    weight_decay: float
    warmup_fraction: float
    max_seq_length: int
    seeds: tuple[int, ...]


@dataclass
class FinetuneConfig:
    """Top level of a `yamls/finetune/*.yaml` recipe."""

    checkpoint: str = MISSING  # Composer .pt (local or s3://...) or an exported Hugging Face directory
    benchmark: str = choice("glue", ["glue", "superglue"])  # glue/benchmark.py
    tokenizer: str | None = None  # a tokenizer directory; default: the one carried by the checkpoint
    save_folder: str = "runs/glue"
    tasks: list[str] | None = None  # None: every task of the benchmark (GLUE's eight averaged ones, SuperGLUE's eight)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    epochs: int = positive(5, _EPOCHS)
    global_train_batch_size: int = positive(16, _BATCH)  # split across ranks
    max_seq_length: int = bounded(128, _SEQ, ge=3)
    warmup_fraction: float = bounded(0.1, _WARMUP, ge=0, lt=1)  # linear warmup, then cosine decay to 0
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(name="adamw", lr=4e-5, eps=1e-6, weight_decay=0.0, grad_clip_norm=None)
    )
    precision: str = choice("auto", ["auto", "fp32", "amp_bf16", "amp_fp16"], help="auto: amp_bf16 on GPU, fp32 on CPU")
    device_eval_batch_size: int = positive(128, _BATCH)
    # Tasks whose encoder starts from the finetuned MNLI model, e.g. [RTE, MRPC, STS-B] as MosaicBERT does;
    # needs MNLI in `tasks`; listed tasks that are not selected are ignored.
    start_from_mnli: list[str] = field(default_factory=list)
    # Keep each run's classifier as runs/{task}/seed{n}.model.pt (for recipes/export_hf.py); MNLI's is kept
    # regardless when start_from_mnli needs it. Off saves disk: a BERT-base file is ~0.4 GB per task x seed.
    save_models: bool = True
    task_overrides: dict[str, TaskOverrides] = field(default_factory=dict)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)
    data: GlueDataConfig = field(default_factory=GlueDataConfig)
    num_workers: int = bounded(0, "0 (load in the training process) or more", ge=0)
    progress_bar: bool = True
    # W&B / MLflow / TensorBoard, as in pretraining's `loggers:` (run/loggers_config.py); one tracker run per
    # task x seed, named glue-{TASK}-seed{n}. TensorBoard's default log_dir is {save_folder}/tensorboard.
    loggers: TrackersConfig = field(default_factory=TrackersConfig)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)  # FSDP: composer_bert/run/parallelism.py
    dist_timeout: float = positive(600.0, "a positive number of seconds")

    # Flat keys of earlier releases -> their place now (read with a warning until the next release).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "optimizer": "optimizer.name",  # first: `optimizer: adamw` was a name, now a section
        "lr": "optimizer.lr",
        "betas": "optimizer.betas",
        "eps": "optimizer.eps",
        "weight_decay": "optimizer.weight_decay",
        "grad_clip_norm": "optimizer.grad_clip_norm",
        "batch_size": "global_train_batch_size",
        "eval_batch_size": "device_eval_batch_size",
    }

    def check(self) -> None:
        """What types and ranges cannot say: task names, the MNLI dependency, seeds (run by `schema.validate`)."""
        bench = self.bench()
        if self.optimizer.name == "muon":  # its muon_lr would ignore the per-task learning rates
            raise UserError(
                "config key 'optimizer.name' is 'muon', a pretraining optimizer; finetune with adamw or "
                "decoupled_adamw, whose lr the per-task hyperparameters set"
            )
        if self.tasks is not None and not self.tasks:
            example = ",".join(bench.default_tasks)
            raise UserError(f"config key 'tasks' is empty; list {bench.title} tasks, e.g. tasks=[{example}]")
        if self.data.source not in bench.sources:
            raise UserError(
                f"config key 'data.source' is '{self.data.source}', which holds no {bench.title}; "
                f"use one of {', '.join(bench.sources)}"
            )
        if self.start_from_mnli and "MNLI" not in bench.tasks:
            raise UserError(
                f"config key 'start_from_mnli' applies to GLUE: MNLI is not a {bench.title} task; set start_from_mnli=[]"
            )
        get_task = bench.get_task
        if is_remote(self.save_folder):  # runs resume from their per-run files, which are read and written locally
            raise UserError(
                f"config key 'save_folder' is '{self.save_folder}', but GLUE writes to a local folder; give a local "
                "save_folder and copy it to the bucket after (compare_runs.py reads it from there); the checkpoint "
                "may be in a bucket"
            )
        names = [get_task(name, "tasks").name for name in self.task_names()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise UserError(f"config key 'tasks' lists {duplicates[0]} twice; list each task once")
        overridden = [get_task(name, "task_overrides").name for name in self.task_overrides]
        twice = sorted({name for name in overridden if overridden.count(name) > 1})
        if twice:
            raise UserError(f"config key 'task_overrides' names {twice[0]} twice (different spellings); merge them")
        for name in self.start_from_mnli:
            if get_task(name, "start_from_mnli").name == "MNLI":
                raise UserError("config key 'start_from_mnli' lists MNLI itself; list the tasks that start from MNLI")
        needing = sorted(self.mnli_starts())
        if needing and "MNLI" not in names:
            raise UserError(
                f"{needing[0]} starts from the finetuned MNLI model (start_from_mnli) but MNLI is not in tasks; "
                "add MNLI to tasks or set start_from_mnli=[]"
            )
        _check_seeds(self.seeds, "seeds")
        for name, overrides in self.task_overrides.items():
            if overrides.seeds is not None:
                _check_seeds(overrides.seeds, f"task_overrides.{name}.seeds")

    def bench(self) -> Benchmark:
        """The benchmark's tasks, readers, metrics and report (glue/benchmark.py)."""
        from composer_bert.glue.benchmark import get_benchmark

        return get_benchmark(self.benchmark)

    def task_names(self) -> list[str]:
        return list(self.bench().default_tasks) if self.tasks is None else list(self.tasks)

    def selected_tasks(self) -> list[Any]:
        """The tasks to run in order, with MNLI first when other tasks start from it."""
        tasks = [self.bench().get_task(name, "tasks") for name in self.task_names()]
        return sorted(tasks, key=lambda task: task.name != "MNLI") if self.mnli_starts() else tasks

    def mnli_starts(self) -> set[str]:
        """Names of the selected tasks whose encoder starts from the finetuned MNLI model."""
        get_task = self.bench().get_task
        selected = {get_task(name, "tasks").name for name in self.task_names()}
        return {get_task(name, "start_from_mnli").name for name in self.start_from_mnli} & selected

    def shared_hparams(self) -> TaskHparams:
        return TaskHparams(
            self.epochs,
            self.optimizer.lr,
            self.global_train_batch_size,
            self.optimizer.weight_decay,
            self.warmup_fraction,
            self.max_seq_length,
            tuple(self.seeds),
        )

    def hparams_for(self, task: Any) -> TaskHparams:
        """The shared hyperparameters with `task_overrides[task]` applied."""
        shared = self.shared_hparams()
        overrides = {self.bench().get_task(name).name: value for name, value in self.task_overrides.items()}.get(task.name)
        if overrides is None:
            return shared
        changes = {key: value for key, value in dataclasses.asdict(overrides).items() if value is not None}
        if "seeds" in changes:
            changes["seeds"] = tuple(changes["seeds"])
        return dataclasses.replace(shared, **changes)
