"""SuperGLUE's metrics, x100, from a model's logits over a split's examples (grouped where the task groups them).

As the benchmark defines them (Wang et al., 2019, Table 1; its scorer is jiant's): CB's macro-F1 is the mean of
the F1 of each of its three classes (a class never predicted nor present scores 0); MultiRC's F1a is the binary
F1 over every answer, its EM the share of questions whose answers are all judged right; ReCoRD's token F1 and
EM take, per query, the best over its gold answers after SQuAD's normalization (lowercase, no punctuation, no
articles, single spaces); AX-g's gender parity is the share of its minimal pairs given the same prediction.
A candidate's score is the log-odds of its "right" class; "best" tasks pick the top candidate of each group.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import numpy as np

from composer_bert.glue.metrics import accuracy, binary_f1, matthews_corrcoef


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    scores = []
    for cls in range(num_classes):
        true_pos = float(np.sum((predictions == cls) & (labels == cls)))
        wrong = float(np.sum((predictions == cls) != (labels == cls)))
        scores.append(2 * true_pos / (2 * true_pos + wrong) if true_pos + wrong else 0.0)
    return float(np.mean(scores))


def exact_match_per_group(predictions: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """The share of groups (MultiRC questions) whose every member is predicted right."""
    wrong_groups = set(groups[predictions != labels].tolist())
    all_groups = set(groups.tolist())
    return 1.0 - len(wrong_groups) / len(all_groups)


def gender_parity(predictions: np.ndarray, pairs: np.ndarray) -> float:
    """The share of pairs (examples sharing a pair id) whose members are all predicted alike."""
    same = [len(set(predictions[pairs == pair].tolist())) == 1 for pair in np.unique(pairs)]
    return float(np.mean(same))


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization, which ReCoRD's scorer uses."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def best_candidates(scores: np.ndarray, groups: np.ndarray) -> dict[int, int]:
    """Group -> index of its highest-scored example (the first one on a tie)."""
    best: dict[int, int] = {}
    for index, group in enumerate(groups.tolist()):
        if group not in best or scores[index] > scores[best[group]]:
            best[group] = index
    return best


def score_split(task: Any, metrics: tuple[str, ...], logits: np.ndarray, examples: Any) -> dict[str, float]:
    """Every metric in `metrics` for `examples` (a GlueExamples with groups and extras where the task has them)."""
    labels = np.asarray(examples.labels)
    predictions = logits.argmax(axis=-1)
    values: dict[str, float] = {}
    if task.candidates == "best":
        groups = np.asarray(examples.groups)
        chosen = best_candidates(logits[:, 1] - logits[:, 0], groups)
        if "token_f1" in metrics:  # ReCoRD: the chosen entity's text against the query's gold answers
            texts = examples.extras["candidate"]
            answers = examples.extras["answers"]
            values["token_f1"] = float(np.mean([max(token_f1(texts[i], a) for a in answers[i]) for i in chosen.values()]))
            values["em"] = float(
                np.mean([max(float(normalize_answer(texts[i]) == normalize_answer(a)) for a in answers[i])
                         for i in chosen.values()])
            )
        else:  # COPA: right when the chosen choice is the right one
            values["accuracy"] = float(np.mean([labels[i] == 1 for i in chosen.values()]))
        return {name: 100.0 * values[name] for name in metrics}
    for name in metrics:
        if name == "accuracy":
            values[name] = accuracy(predictions, labels)
        elif name == "macro_f1":
            values[name] = macro_f1(predictions, labels, task.num_labels)
        elif name == "f1a":
            values[name] = binary_f1(predictions, labels)
        elif name == "em":
            values[name] = exact_match_per_group(predictions, labels, np.asarray(examples.groups))
        elif name == "mcc":
            values[name] = matthews_corrcoef(predictions, labels)
        elif name == "gender_parity":
            values[name] = gender_parity(predictions, np.asarray(examples.groups))
        else:
            raise ValueError(f"unknown SuperGLUE metric {name}")
    return {name: 100.0 * values[name] for name in metrics}


METRIC_LABELS = {"macro_f1": "macro-F1", "f1a": "F1a", "em": "EM", "token_f1": "F1", "gender_parity": "parity"}


def score_eval_set(task: Any, split: Any, logits: np.ndarray, examples: Any) -> dict[str, float]:
    """SuperGLUE's scorer (`benchmark.py`): a diagnostic's own metrics, else its task's."""
    return score_split(task, split.metrics or task.metrics, logits, examples)
