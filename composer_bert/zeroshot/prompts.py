"""The prompt of each task that a causal LM can answer by likelihood, and the answers it chooses between.

A template is a Python format string over the task's row fields (the Hugging Face field names) ending in the
`{answer}` slot; the context is everything before the slot and each choice fills it. The defaults are
lm-evaluation-harness's SuperGLUE prompts (its `super_glue/*/default.yaml`), so our scores and its scores mean
the same thing; COPA joins the premise to its choice with "because" or "therefore". As there, whitespace that
ends the context moves to the front of the answer ("Answer:" + " yes"), and k-shot examples are the filled
prompt with their gold answer, separated by a blank line.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from composer_bert.errors import UserError

ANSWER = "{answer}"
FEWSHOT_DELIMITER = "\n\n"


def _copa_fields(row: dict[str, Any]) -> dict[str, Any]:
    connector = {"cause": "because", "effect": "therefore"}.get(row["question"])
    if connector is None:
        raise ValueError(f"COPA question '{row['question']}' is neither 'cause' nor 'effect'")
    return {**row, "premise_stem": row["premise"].strip()[:-1], "connector": connector}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _wic_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "target_word": row["sentence1"][int(row["start1"]) : int(row["end1"])]}


@dataclass(frozen=True)
class TaskPrompt:
    template: str
    choices: Callable[[dict[str, Any]], list[str]]  # the answers in label order
    fields: Callable[[dict[str, Any]], dict[str, Any]] = dict  # computed fields the template may use
    extra_fields: tuple[str, ...] = ()


def _fixed(*answers: str) -> Callable[[dict[str, Any]], list[str]]:
    return lambda row: list(answers)


PROMPTS: dict[str, TaskPrompt] = {
    "BoolQ": TaskPrompt("{passage}\nQuestion: {question}?\nAnswer: {answer}", _fixed("no", "yes")),
    "CB": TaskPrompt(
        "{premise}\nQuestion: {hypothesis}. True, False, or Neither?\nAnswer: {answer}", _fixed("True", "False", "Neither")
    ),
    "COPA": TaskPrompt(
        "{premise_stem} {connector} {answer}",
        lambda row: [_lower_first(row["choice1"]), _lower_first(row["choice2"])],
        _copa_fields,
        ("premise_stem", "connector"),
    ),
    "RTE": TaskPrompt("{premise}\nQuestion: {hypothesis} True or False?\nAnswer: {answer}", _fixed("True", "False")),
    "WiC": TaskPrompt(
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nQuestion: Is the word '{target_word}' used in the same way "
        "in the two sentences above?\nAnswer: {answer}",
        _fixed("no", "yes"),
        _wic_fields,
        ("target_word",),
    ),
}
DEFAULT_TASKS = tuple(PROMPTS)


def check_template(task: str, template: str, row_fields: tuple[str, ...], key: str) -> None:
    """One line for a template without the answer slot at its end, or naming a field the task's rows lack."""
    if not template.endswith(ANSWER) or template.count(ANSWER) != 1:
        raise UserError(
            f"config key '{key}' has no {ANSWER} slot at its end; end the template with {ANSWER}, where each choice "
            f"goes, e.g. '...\\nAnswer: {ANSWER}'"
        )
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise UserError(f"config key '{key}' is not a format string ({err}); write fields as {{name}}") from None
    allowed = {*row_fields, *PROMPTS[task].extra_fields, "answer"}
    unknown = sorted(names - allowed)
    if unknown:
        raise UserError(f"config key '{key}' names '{unknown[0]}', not a {task} field; use {', '.join(sorted(allowed - {'answer'}))}")


def requests(task: str, template: str, row: dict[str, Any]) -> tuple[str, list[str]]:
    """(context, continuations): the prompt up to the slot, and each choice as the text that follows it."""
    prompt = PROMPTS[task]
    filled = template[: -len(ANSWER)].format(**prompt.fields(row))
    stripped = filled.rstrip()
    moved = filled[len(stripped) :]  # trailing whitespace belongs to the answer, as lm-evaluation-harness splits it
    return stripped, [moved + choice for choice in prompt.choices(row)]
