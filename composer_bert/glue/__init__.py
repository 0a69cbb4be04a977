"""GLUE finetuning and evaluation: task table, data readers, metrics, the per-task trainer and the report."""

from composer_bert.glue.config import FinetuneConfig, load_finetune_config
from composer_bert.glue.finetune import run_glue
from composer_bert.glue.results import GlueSummary, glue_average, summarize
from composer_bert.glue.tasks import TASKS, GlueTask, get_task

__all__ = [
    "TASKS",
    "FinetuneConfig",
    "GlueSummary",
    "GlueTask",
    "get_task",
    "glue_average",
    "load_finetune_config",
    "run_glue",
    "summarize",
]
