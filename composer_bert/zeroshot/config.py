"""The keys of `recipes/zero_shot.py` (`yamls/zeroshot/*.yaml`), checked by the one validation pass before torch loads."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from composer_bert.errors import UserError
from composer_bert.glue.config import GlueDataConfig
from composer_bert.glue.superglue.data import FIELDS
from composer_bert.glue.superglue.tasks import get_task
from composer_bert.schema import bounded, choice, positive, seed_field
from composer_bert.zeroshot.prompts import DEFAULT_TASKS, PROMPTS, check_template


@dataclass
class ZeroShotConfig:
    """Which tasks, how many examples in the prompt, and where the data and the report are."""

    checkpoint: str = MISSING  # a Composer .pt of a causal run, or a folder written by recipes/export_hf.py
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    num_fewshot: int = bounded(0, "0 (zero-shot) or more examples from the train split", ge=0)
    fewshot_seed: int = seed_field(1234)  # which train examples each prompt shows
    limit: int | None = positive(None, "a positive number of examples per task")  # None: the whole val split
    batch_size: int = positive(16, "a positive number of sequences")
    device: str = choice("auto", ["auto", "cpu", "cuda"])
    save_folder: str = "runs/zero_shot"  # zero_shot_results.json and .md
    prompts: dict[str, str] = field(default_factory=dict)  # TASK -> template replacing the default (zeroshot/prompts.py)
    data: GlueDataConfig = field(default_factory=lambda: GlueDataConfig(source="superglue_dir"))

    def check(self) -> None:
        if not self.tasks:
            raise UserError(f"config key 'tasks' is empty; list tasks, e.g. tasks=[{','.join(DEFAULT_TASKS)}]")
        names = [self.task_name(name, "tasks") for name in self.tasks]
        if len(set(names)) != len(names):
            raise UserError("config key 'tasks' lists a task twice; list each task once")
        if self.data.source not in ("superglue_dir", "hf"):
            raise UserError(f"config key 'data.source' is '{self.data.source}'; zero-shot reads superglue_dir or hf")
        for name, template in self.prompts.items():
            task = self.task_name(name, "prompts")
            check_template(task, template, FIELDS[get_task(task).hf_config], f"prompts.{name}")

    @staticmethod
    def task_name(name: str, key: str) -> str:
        task = get_task(name, key).name
        if task not in PROMPTS:
            raise UserError(f"config key '{key}': {task} has no likelihood prompt here; choose from {', '.join(PROMPTS)}")
        return task

    def template(self, task: str) -> str:
        given = {self.task_name(name, "prompts"): template for name, template in self.prompts.items()}
        return given.get(task, PROMPTS[task].template)
