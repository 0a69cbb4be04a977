"""Published GLUE dev results that our report sits beside: published, not measured here.

Only numbers whose source is stated are listed, each under the same protocol as ours (Cramming's: dev
sets, median over seeds, the unweighted nine-entry average described in `results.py`, one set of
"GLUE-sane" finetuning hyperparameters for every task). Per-task values are left out on purpose: they were
not checked against the paper's table when this module was written, so only the GLUE averages are given;
add a task's value only together with the table it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRAMMING = (
    "Geiping & Goldstein, \"Cramming: Training a Language Model on a Single GPU in One Day\", "
    "ICML 2023 (arXiv:2212.14034)"
)


@dataclass(frozen=True)
class PublishedResult:
    """One published row: its GLUE average and where the number comes from."""

    name: str
    glue_average: float
    source: str
    per_task: dict[str, float] = field(default_factory=dict)  # eval set -> score x100; empty: not given here


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult(
        name="crammed BERT (1 GPU, 24 h)",
        glue_average=78.6,
        source=f"{CRAMMING}, v1: GLUE dev average of the final crammed BERT recipe (as quoted in this project's README and docs/glue.md)",
    ),
    PublishedResult(
        name="original BERT-base, finetuned under Cramming's protocol",
        glue_average=80.9,
        source=f"{CRAMMING}: GLUE dev average of fully trained BERT-base under the paper's finetuning protocol (as quoted in this project's README and docs/glue.md)",
    ),
)

LABEL = "published, not measured"

SUPERGLUE = (
    "Wang et al., \"SuperGLUE: A Stickier Benchmark for General-Purpose Language Understanding Systems\", "
    "NeurIPS 2019 (arXiv:1905.00537), Table 3"
)
# SuperGLUE's labels for its test split are hidden, so the paper's rows are test-set scores and ours are dev-set
# scores: the two are beside each other for orientation, not as an equal comparison (the report says so).
SUPERGLUE_PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult(name="BERT-large baseline", glue_average=69.0, source=f"{SUPERGLUE}: test-set average"),
    PublishedResult(name="human baseline", glue_average=89.8, source=f"{SUPERGLUE}: test-set average"),
)
