"""The SuperGLUE task table: how each task becomes text pairs a classifier reads, and how it is scored.

Every task is cast as classification of (text_a, text_b) pairs, so the GLUE tokenizer, classifier and trainer
serve it unchanged; what a task's examples mean is in its formulation (`superglue/data.py`) and its metrics:

| task | formulation (one example = one pair) | metrics (x100) |
|---|---|---|
| BoolQ | (question, passage) -> False/True | accuracy |
| CB | (premise, hypothesis) -> entailment/contradiction/neutral | accuracy, macro-F1 over the 3 classes |
| COPA | each choice: (premise + "What was the cause/effect?", choice) -> wrong/right; the choice scored higher wins | accuracy |
| MultiRC | each answer: (paragraph, question + answer) -> False/True, grouped by question | F1 over all answers (F1a), exact match per question |
| ReCoRD | each candidate entity: (passage, query with the entity in @placeholder) -> wrong/right; the best-scored candidate per query is the answer | max over gold answers of token F1 and of exact match |
| RTE | (premise, hypothesis) -> entailment/not_entailment | accuracy |
| WiC | (sentence1, sentence2), the target word marked *so* at its given offsets in both -> False/True | accuracy |
| WSC | (text with the noun *marked* and the pronoun #marked#, "Does PRONOUN refer to NOUN?") -> False/True | accuracy |
| AX-b | RTE's model on (sentence1, sentence2) | Matthews correlation |
| AX-g | RTE's model on (premise, hypothesis), pairs differing only in gender | gender parity (% of pairs predicted alike), accuracy |

The candidate formulations (COPA, MultiRC, ReCoRD) score each candidate on its own, as the SuperGLUE paper's
BERT baselines do for MultiRC and ReCoRD (Wang et al., 2019, section 5); the marked spans of WiC and WSC are
the entity-marker formulation of relation classification (Baldini Soares et al., 2019, "Matching the Blanks"),
in plain characters because a pretraining tokenizer has no marker tokens. The diagnostics are RTE's extra eval
sets (the benchmark scores them with the RTE model) and never enter the average. The SuperGLUE score averages
each task's metrics first, then the eight tasks.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from composer_bert.errors import UserError
from composer_bert.glue.tasks import EvalSet

BINARY = ("False", "True")
CANDIDATE = ("wrong", "right")  # one candidate of COPA, ReCoRD: is it the answer?


@dataclass(frozen=True)
class SuperGlueEvalSet(EvalSet):
    """A dev set, or a diagnostic read from its own folder and scored by its own metrics."""

    folder: str = ""  # the official download's task folder that holds `tsv_file` (here a .jsonl)
    hf_config: str = ""  # the Hugging Face config name
    metrics: tuple[str, ...] = ()
    in_average: bool = True


@dataclass(frozen=True)
class SuperGlueTask:
    """How to read, formulate and score one SuperGLUE task (the attributes GLUE's runner reads, and more)."""

    name: str  # display name and official folder name
    hf_config: str
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]  # the dev set's; the task's score is their mean
    eval_sets: tuple[SuperGlueEvalSet, ...]
    candidates: str = ""  # "best": one right candidate per group (COPA, ReCoRD); "each": every one judged (MultiRC)
    in_glue_average: bool = True  # (runner's name) every SuperGLUE task is in the average; the diagnostics are not

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_regression(self) -> bool:
        return False

    @property
    def train_set(self) -> SuperGlueEvalSet:
        return SuperGlueEvalSet("train", "train", "train.jsonl", self.name, self.hf_config, self.metrics)


def _task(name: str, hf_config: str, labels: tuple[str, ...], metrics: tuple[str, ...], **kwargs) -> SuperGlueTask:
    extra = kwargs.pop("diagnostics", ())
    dev = SuperGlueEvalSet(name, "validation", "val.jsonl", name, hf_config, metrics)
    return SuperGlueTask(name, hf_config, labels, metrics, (dev, *extra), **kwargs)


AX_B = SuperGlueEvalSet("AX-b", "test", "AX-b.jsonl", "AX-b", "axb", ("mcc",), in_average=False)
AX_G = SuperGlueEvalSet("AX-g", "test", "AX-g.jsonl", "AX-g", "axg", ("gender_parity", "accuracy"), in_average=False)
NLI = ("entailment", "not_entailment")

TASKS: dict[str, SuperGlueTask] = {
    task.name: task
    for task in (
        _task("BoolQ", "boolq", BINARY, ("accuracy",)),
        _task("CB", "cb", ("entailment", "contradiction", "neutral"), ("accuracy", "macro_f1")),
        _task("COPA", "copa", CANDIDATE, ("accuracy",), candidates="best"),
        _task("MultiRC", "multirc", BINARY, ("f1a", "em"), candidates="each"),
        _task("ReCoRD", "record", CANDIDATE, ("token_f1", "em"), candidates="best"),
        _task("RTE", "rte", NLI, ("accuracy",), diagnostics=(AX_B, AX_G)),
        _task("WiC", "wic", BINARY, ("accuracy",)),
        _task("WSC", "wsc.fixed", BINARY, ("accuracy",)),
    )
}
DEFAULT_TASKS = tuple(TASKS)
EVAL_SET_ORDER = (*TASKS, "AX-b", "AX-g")
AVERAGE_EVAL_SETS = tuple(TASKS)


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(".fixed", "")


_BY_KEY = {_key(name): task for name, task in TASKS.items()} | {_key(t.hf_config): t for t in TASKS.values()}


def get_task(name: str, where: str = "tasks") -> SuperGlueTask:
    """The task called `name`, forgiving case and dashes ('boolq', 'ReCoRD', 'record' all work)."""
    task = _BY_KEY.get(_key(str(name)))
    if task is None:
        if _key(str(name)) in ("axb", "axg"):
            raise UserError(f"{where}: {name} is a diagnostic, scored with the RTE model; list RTE instead")
        match = difflib.get_close_matches(_key(str(name)), list(_BY_KEY), n=1, cutoff=0.4)
        hint = f"did you mean '{_BY_KEY[match[0]].name}'?" if match else f"choose from {', '.join(TASKS)}"
        raise UserError(f"{where}: unknown SuperGLUE task '{name}'; {hint}")
    return task
