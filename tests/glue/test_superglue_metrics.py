"""SuperGLUE's metrics against values worked out by hand (and scikit-learn where it has the metric), and the
SuperGLUE average: each task's metrics averaged first, then the tasks, the diagnostics left out."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from composer_bert.glue.benchmark import SUPERGLUE
from composer_bert.glue.data import GlueExamples
from composer_bert.glue.results import RunResult, format_markdown, summarize
from composer_bert.glue.superglue import metrics
from composer_bert.glue.superglue.tasks import TASKS


def test_cb_macro_f1_counts_a_class_never_seen_as_zero():
    predictions, labels = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    # class 0: tp 2, fp 1, fn 0 -> 4/5; class 1: tp 1, fn 1 -> 2/3; class 2 (neutral): absent -> 0
    assert metrics.macro_f1(predictions, labels, 3) == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert metrics.macro_f1(predictions, labels, 3) == pytest.approx(
        f1_score(labels, predictions, labels=[0, 1, 2], average="macro", zero_division=0)
    )


def test_multirc_exact_match_needs_every_answer_of_a_question_right():
    predictions, labels = np.array([1, 0, 1, 0, 0]), np.array([1, 0, 0, 0, 0])
    assert metrics.exact_match_per_group(predictions, labels, np.array([0, 0, 0, 1, 1])) == 0.5


def test_gender_parity_is_the_share_of_pairs_predicted_alike():
    assert metrics.gender_parity(np.array([1, 1, 0, 1, 0, 0]), np.array([0, 0, 1, 1, 2, 2])) == pytest.approx(2 / 3)


def test_record_token_f1_and_exact_match_take_the_best_gold_answer_after_normalization():
    assert metrics.normalize_answer("The  Big-Apple!") == "bigapple"
    assert metrics.token_f1("The cat sat.", "a cat sat on mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    examples = GlueExamples(
        TASKS["ReCoRD"], "test", [("p", "q")] * 4, [1, 0, 1, 0], groups=[0, 0, 1, 1],
        extras={"candidate": ["Paris", "London", "the Big Apple", "Boston"],
                "answers": [["Paris"]] * 2 + [["Big Apple", "New York"]] * 2},
    )  # fmt: skip
    logits = np.array([[0.0, 0.1], [0.0, 0.9], [0.0, 2.0], [0.0, -1.0]])  # picks London (wrong), the Big Apple
    scores = metrics.score_split(TASKS["ReCoRD"], ("token_f1", "em"), logits, examples)
    assert scores == {"token_f1": pytest.approx(50.0), "em": pytest.approx(50.0)}


def test_copa_picks_the_choice_scored_higher_and_multirc_judges_each_answer():
    copa = GlueExamples(TASKS["COPA"], "test", [("p", "c")] * 4, [1, 0, 0, 1], groups=[0, 0, 1, 1])
    logits = np.array([[0.0, 1.0], [0.0, 0.5], [0.0, 1.0], [0.0, -2.0]])  # group 0 right, group 1 wrong
    assert metrics.score_split(TASKS["COPA"], ("accuracy",), logits, copa) == {"accuracy": pytest.approx(50.0)}
    multirc = GlueExamples(TASKS["MultiRC"], "test", [("p", "q")] * 4, [1, 0, 1, 1], groups=[0, 0, 1, 1])
    logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # predictions 1, 0, 1, 0
    scores = metrics.score_split(TASKS["MultiRC"], ("f1a", "em"), logits, multirc)
    # F1a: tp 2, fn 1 -> 4/5; EM: question 0 all right, question 1 not -> 1/2
    assert scores == {"f1a": pytest.approx(80.0), "em": pytest.approx(50.0)}


def test_the_superglue_average_averages_each_tasks_metrics_then_the_tasks_without_the_diagnostics():
    scores = {
        "BoolQ": {"BoolQ": {"accuracy": 60.0}},
        "CB": {"CB": {"accuracy": 80.0, "macro_f1": 60.0}},  # 70
        "COPA": {"COPA": {"accuracy": 50.0}},
        "MultiRC": {"MultiRC": {"f1a": 40.0, "em": 10.0}},  # 25
        "ReCoRD": {"ReCoRD": {"token_f1": 30.0, "em": 20.0}},  # 25
        "RTE": {"RTE": {"accuracy": 55.0}, "AX-b": {"mcc": 10.0}, "AX-g": {"gender_parity": 90.0, "accuracy": 50.0}},
        "WiC": {"WiC": {"accuracy": 52.0}},
        "WSC": {"WSC": {"accuracy": 63.0}},
    }
    runs = [RunResult(task, 0, "f", metrics_of, 1.0) for task, metrics_of in scores.items()]
    summary = summarize(runs, "ckpt.pt", SUPERGLUE)
    assert summary.glue_average == pytest.approx((60 + 70 + 50 + 25 + 25 + 55 + 52 + 63) / 8)
    assert summary.averaged_over == list(TASKS) and not summary.partial
    assert summary.to_json()["superglue_average"] == summary.glue_average
    markdown = format_markdown(summary)
    assert "| BoolQ | CB | COPA | MultiRC | ReCoRD | RTE | WiC | WSC | AX-b | SuperGLUE avg |" in markdown
    assert "| 60.0 | 70.0 | 50.0 | 25.0 | 25.0 | 55.0 | 52.0 | 63.0 | 10.0 | 50.0 |" in markdown
    assert "| AX-g | parity | 90.0 | 0: 90.0 |" in markdown and "test-set scores and ours are dev-set" in markdown
    partial = summarize(runs[:2], "ckpt.pt", SUPERGLUE)
    assert partial.glue_average == pytest.approx(65.0) and partial.partial
