"""The GLUE task table: where each task's data lives in every source format, and how it is scored.

One `GlueTask` per task holds everything that differs between tasks, so the readers, the trainer and
the report never branch on a task name. Field and label names follow the Hugging Face `nyu-mll/glue`
dataset (the JSONL format reuses them); the TSV rules follow the original GLUE download
(`download_glue_data.py`): CoLA's train/dev files have no header, every other file is read by its
header names, and labels are either `0`/`1` digits or class names depending on the task.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from composer_bert.errors import UserError


@dataclass(frozen=True)
class EvalSet:
    """One dev set a task is scored on; MNLI has two (matched and mismatched), every other task one."""

    name: str  # the row name in the results table, e.g. "MNLI-m"
    hf_split: str  # split name in `nyu-mll/glue` and the JSONL file stem
    tsv_file: str  # file name inside the task's GLUE directory


@dataclass(frozen=True)
class GlueTask:
    """How to read, train and score one GLUE task."""

    name: str  # canonical display name, also the `runs/{name}/` folder
    hf_config: str  # `nyu-mll/glue` config name, also the JSONL folder name
    glue_dir: str  # folder name in the GLUE download
    text_fields: tuple[str, ...]  # one (single sentence) or two (pair) HF field names
    tsv_columns: dict[str, str]  # HF field name -> TSV column name
    tsv_label_column: str
    # Column names of a headerless file (CoLA's source, label, annotation, sentence); None: the first line names them.
    tsv_fixed_header: tuple[str, ...] | None
    label_names: tuple[str, ...]  # class names in label-id order; empty for regression
    tsv_labels_are_names: bool  # True: the TSV writes "entailment"; False: it writes the label id ("0", "1")
    metrics: tuple[str, ...]  # first one is the task's GLUE score
    eval_sets: tuple[EvalSet, ...]
    in_glue_average: bool = True

    @property
    def num_labels(self) -> int:
        """1 means regression (STS-B): the classifier predicts one score and trains with MSE."""
        return len(self.label_names) or 1

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def train_set(self) -> EvalSet:
        return TRAIN_SPLIT


def _dev(name: str) -> tuple[EvalSet, ...]:
    return (EvalSet(name, "validation", "dev.tsv"),)


STSB_SCORE_RANGE = (0.0, 5.0)
TRAIN_SPLIT = EvalSet("train", "train", "train.tsv")

TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            name="CoLA",
            hf_config="cola",
            glue_dir="CoLA",
            text_fields=("sentence",),
            tsv_columns={"sentence": "sentence"},
            tsv_label_column="label",
            tsv_fixed_header=("source", "label", "original_annotation", "sentence"),
            label_names=("unacceptable", "acceptable"),
            tsv_labels_are_names=False,
            metrics=("mcc",),
            eval_sets=_dev("CoLA"),
        ),
        GlueTask(
            name="SST-2",
            hf_config="sst2",
            glue_dir="SST-2",
            text_fields=("sentence",),
            tsv_columns={"sentence": "sentence"},
            tsv_label_column="label",
            tsv_fixed_header=None,
            label_names=("negative", "positive"),
            tsv_labels_are_names=False,
            metrics=("accuracy",),
            eval_sets=_dev("SST-2"),
        ),
        GlueTask(
            name="MRPC",
            hf_config="mrpc",
            glue_dir="MRPC",
            text_fields=("sentence1", "sentence2"),
            tsv_columns={"sentence1": "#1 String", "sentence2": "#2 String"},
            tsv_label_column="Quality",
            tsv_fixed_header=None,
            label_names=("not_equivalent", "equivalent"),
            tsv_labels_are_names=False,
            metrics=("f1", "accuracy"),
            eval_sets=_dev("MRPC"),
        ),
        GlueTask(
            name="STS-B",
            hf_config="stsb",
            glue_dir="STS-B",
            text_fields=("sentence1", "sentence2"),
            tsv_columns={"sentence1": "sentence1", "sentence2": "sentence2"},
            tsv_label_column="score",
            tsv_fixed_header=None,
            label_names=(),
            tsv_labels_are_names=False,
            metrics=("pearson", "spearman"),
            eval_sets=_dev("STS-B"),
        ),
        GlueTask(
            name="QQP",
            hf_config="qqp",
            glue_dir="QQP",
            text_fields=("question1", "question2"),
            tsv_columns={"question1": "question1", "question2": "question2"},
            tsv_label_column="is_duplicate",
            tsv_fixed_header=None,
            label_names=("not_duplicate", "duplicate"),
            tsv_labels_are_names=False,
            metrics=("f1", "accuracy"),
            eval_sets=_dev("QQP"),
        ),
        GlueTask(
            name="MNLI",
            hf_config="mnli",
            glue_dir="MNLI",
            text_fields=("premise", "hypothesis"),
            tsv_columns={"premise": "sentence1", "hypothesis": "sentence2"},
            tsv_label_column="gold_label",
            tsv_fixed_header=None,
            label_names=("entailment", "neutral", "contradiction"),
            tsv_labels_are_names=True,
            metrics=("accuracy",),
            eval_sets=(
                EvalSet("MNLI-m", "validation_matched", "dev_matched.tsv"),
                EvalSet("MNLI-mm", "validation_mismatched", "dev_mismatched.tsv"),
            ),
        ),
        GlueTask(
            name="QNLI",
            hf_config="qnli",
            glue_dir="QNLI",
            text_fields=("question", "sentence"),
            tsv_columns={"question": "question", "sentence": "sentence"},
            tsv_label_column="label",
            tsv_fixed_header=None,
            label_names=("entailment", "not_entailment"),
            tsv_labels_are_names=True,
            metrics=("accuracy",),
            eval_sets=_dev("QNLI"),
        ),
        GlueTask(
            name="RTE",
            hf_config="rte",
            glue_dir="RTE",
            text_fields=("sentence1", "sentence2"),
            tsv_columns={"sentence1": "sentence1", "sentence2": "sentence2"},
            tsv_label_column="label",
            tsv_fixed_header=None,
            label_names=("entailment", "not_entailment"),
            tsv_labels_are_names=True,
            metrics=("accuracy",),
            eval_sets=_dev("RTE"),
        ),
        GlueTask(
            # BERT and Cramming leave WNLI out of the average (its dev set is adversarial to training).
            name="WNLI",
            hf_config="wnli",
            glue_dir="WNLI",
            text_fields=("sentence1", "sentence2"),
            tsv_columns={"sentence1": "sentence1", "sentence2": "sentence2"},
            tsv_label_column="label",
            tsv_fixed_header=None,
            label_names=("not_entailment", "entailment"),
            tsv_labels_are_names=False,
            metrics=("accuracy",),
            eval_sets=_dev("WNLI"),
            in_glue_average=False,
        ),
    )
}

DEFAULT_TASKS = ("MNLI", "QQP", "QNLI", "SST-2", "CoLA", "STS-B", "MRPC", "RTE")
# The column order of the BERT paper's GLUE table, used by every report.
EVAL_SET_ORDER = ("MNLI-m", "MNLI-mm", "QQP", "QNLI", "SST-2", "CoLA", "STS-B", "MRPC", "RTE", "WNLI")
_AVERAGED = {eval_set.name for task in TASKS.values() if task.in_glue_average for eval_set in task.eval_sets}
GLUE_AVERAGE_EVAL_SETS = tuple(name for name in EVAL_SET_ORDER if name in _AVERAGED)


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(name): task for name, task in TASKS.items()}


def get_task(name: str, where: str = "tasks") -> GlueTask:
    """The task called `name`, forgiving case and dashes ('sst2', 'STS-B', 'stsb' all work)."""
    task = _BY_KEY.get(_key(str(name)))
    if task is None:
        match = difflib.get_close_matches(_key(str(name)), list(_BY_KEY), n=1, cutoff=0.4)
        hint = f"did you mean '{_BY_KEY[match[0]].name}'?" if match else f"choose from {', '.join(TASKS)}"
        raise UserError(f"{where}: unknown GLUE task '{name}'; {hint}")
    return task
