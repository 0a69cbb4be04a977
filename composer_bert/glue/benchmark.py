"""The two benchmarks GLUE's runner serves, as one interface: tasks, readers, metrics, the average and the report's
published rows. `FinetuneConfig.benchmark` picks one; the runner, training, seeds, medians and resume are shared.

GLUE's average takes one metric per dev set (MRPC/QQP F1, STS-B Pearson, CoLA MCC, others accuracy: Cramming's
and BERT's table); SuperGLUE's averages each task's metrics first (CB accuracy and macro-F1, MultiRC F1a and EM,
ReCoRD F1 and EM), then the eight tasks, as the benchmark's leaderboard does (Wang et al., 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from composer_bert.errors import UserError
from composer_bert.glue import published, tasks
from composer_bert.glue.metrics import METRIC_LABELS
from composer_bert.glue.superglue import tasks as sg_tasks
from composer_bert.lazy import resolve


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its tasks and report, and how it reads, scores and averages. Behaviour is named as
    "module:function" and imported on first use (the readers pull in datasets and torch), so adding a benchmark
    is one entry plus its own modules, as the objective table does for objectives."""

    name: str  # the config value, and the results files' stem: {name}_results.json
    title: str
    tasks: dict[str, Any]
    default_tasks: tuple[str, ...]
    eval_set_order: tuple[str, ...]  # report column order
    average_eval_sets: tuple[str, ...]
    sources: tuple[str, ...]  # data.source values it reads
    get_task: Callable[..., Any]
    published: tuple[published.PublishedResult, ...]
    published_split: str  # which split the published rows were measured on
    reader: str  # (task, split, data.source, data.path) -> GlueExamples, formulated for a classifier
    scorer: str  # (task, split, logits, examples) -> every metric of the split, x100
    # what an eval set adds to the average: the mean of all its metrics (SuperGLUE), or its first one (GLUE)
    averages_every_metric: bool
    scores_line: str  # under the report's table: which metric each score is

    def eval_set_metrics(self, eval_set: str) -> tuple[str, ...]:
        """The metrics reported for an eval set (a diagnostic's own, else its task's)."""
        for task in self.tasks.values():
            for split in task.eval_sets:
                if split.name == eval_set:
                    return getattr(split, "metrics", ()) or task.metrics
        raise KeyError(eval_set)

    def eval_set_score(self, eval_set: str, medians: dict[str, float]) -> float:
        """What an eval set contributes to the average, and its bar in the chart."""
        metrics = self.eval_set_metrics(eval_set)
        if not self.averages_every_metric:
            return medians[metrics[0]]
        return float(np.mean([medians[metric] for metric in metrics]))

    def metric_label(self, metric: str) -> str:
        return {**METRIC_LABELS, **_sg_labels()}.get(metric, metric)

    def load(self, task: Any, split: Any, source: str, path: str | None) -> Any:
        return resolve(self.reader)(task, split, source, path)

    def score(self, task: Any, split: Any, logits: np.ndarray, examples: Any) -> dict[str, float]:
        """Every metric of `split` (x100) from the model's logits over its examples."""
        return resolve(self.scorer)(task, split, logits, examples)


def _sg_labels() -> dict[str, str]:
    from composer_bert.glue.superglue.metrics import METRIC_LABELS as SG

    return SG


GLUE = Benchmark(
    "glue", "GLUE", tasks.TASKS, tasks.DEFAULT_TASKS, tasks.EVAL_SET_ORDER, tasks.GLUE_AVERAGE_EVAL_SETS,
    ("hf", "glue_dir", "jsonl"), tasks.get_task, published.PUBLISHED, "dev",
    reader="composer_bert.glue.data:load_examples",
    scorer="composer_bert.glue.metrics:score_eval_set",
    averages_every_metric=False,
    scores_line="GLUE scores: MRPC/QQP F1, STS-B Pearson, CoLA MCC, others accuracy; WNLI is not averaged.",
)  # fmt: skip
SUPERGLUE = Benchmark(
    "superglue", "SuperGLUE", sg_tasks.TASKS, sg_tasks.DEFAULT_TASKS, sg_tasks.EVAL_SET_ORDER,
    sg_tasks.AVERAGE_EVAL_SETS, ("hf", "superglue_dir"), sg_tasks.get_task, published.SUPERGLUE_PUBLISHED, "test",
    reader="composer_bert.glue.superglue.data:load_examples",
    scorer="composer_bert.glue.superglue.metrics:score_eval_set",
    averages_every_metric=True,
    scores_line="SuperGLUE scores: each task's metrics averaged (CB acc/macro-F1, MultiRC F1a/EM, ReCoRD F1/EM), "
    "others accuracy; the diagnostics AX-b (MCC) and AX-g (gender parity, accuracy) come from the RTE model and are "
    "not averaged. Dev = the benchmark's val split (its test labels are hidden).",
)  # fmt: skip
BENCHMARKS = {bench.name: bench for bench in (GLUE, SUPERGLUE)}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"config key 'benchmark' is '{name}'; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
