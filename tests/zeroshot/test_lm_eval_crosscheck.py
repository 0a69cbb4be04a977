"""The cross-check the zero-shot scorer answers to: lm-evaluation-harness (`lm-eval`, a test-only dependency: the
scorer does not need it) runs on our exported Llama folder with the same local files and the same prompts, as
its own task YAMLs; both must give every answer the same log-likelihood and so the same predictions and
accuracies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer_bert.zeroshot.scoring import run_zero_shot
from tests.helpers import missing_capability
from tests.zeroshot.conftest import zero_shot_cfg

# lm-eval task YAMLs over the fixture's official-format files, each with our default prompt (zeroshot/prompts.py).
TASKS = {
    "BoolQ": ("{{passage}}\\nQuestion: {{question}}?\\nAnswer:", "['no', 'yes']", "{{1 if label else 0}}"),
    "CB": ("{{premise}}\\nQuestion: {{hypothesis}}. True, False, or Neither?\\nAnswer:", "['True', 'False', 'Neither']",
           "{{['entailment', 'contradiction', 'neutral'].index(label)}}"),
    "COPA": ("{{premise.strip()[:-1]}} {{'because' if question == 'cause' else 'therefore'}}",
             "{{[choice1[0].lower() + choice1[1:], choice2[0].lower() + choice2[1:]]}}", "{{label}}"),
    "RTE": ("{{premise}}\\nQuestion: {{hypothesis}} True or False?\\nAnswer:", "['True', 'False']",
            "{{['entailment', 'not_entailment'].index(label)}}"),
    "WiC": ("Sentence 1: {{sentence1}}\\nSentence 2: {{sentence2}}\\nQuestion: Is the word '{{sentence1[start1:end1]}}' "
            "used in the same way in the two sentences above?\\nAnswer:", "['no', 'yes']", "{{1 if label else 0}}"),
}  # fmt: skip


def _task_yaml(name: str, data: Path) -> str:
    text, choices, target = TASKS[name]
    return (
        f"task: crosscheck_{name.lower()}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    train: {data / name / 'train.jsonl'}\n    validation: {data / name / 'val.jsonl'}\n"
        f"output_type: multiple_choice\ntraining_split: train\nvalidation_split: validation\n"
        f'doc_to_text: "{text}"\ndoc_to_choice: "{choices}"\ndoc_to_target: "{target}"\n'
        "metric_list:\n  - metric: acc\n"
    )


@pytest.mark.parametrize("shots", [0, 2])
def test_lm_evaluation_harness_gives_the_same_loglikelihoods_and_accuracies(world, tmp_path, shots):
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        missing_capability("lm-eval is not installed (pip install -e .[crosscheck])")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name in TASKS:
        (tasks / f"crosscheck_{name.lower()}.yaml").write_text(_task_yaml(name, world["data"]))
    theirs = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={world['export']},dtype=float32", tasks=[f"crosscheck_{n.lower()}" for n in TASKS],
        num_fewshot=shots, batch_size=1, device="cpu", task_manager=TaskManager(include_path=str(tasks)), log_samples=True,
    )  # fmt: skip
    cfg = zero_shot_cfg(world, f"checkpoint={world['export']}", f"num_fewshot={shots}")
    ours = {result.task: result for result in run_zero_shot(cfg)}
    for name in TASKS:
        key = f"crosscheck_{name.lower()}"
        assert theirs["results"][key]["acc,none"] * 100 == pytest.approx(ours[name].metrics["accuracy"]), name
        samples = sorted(theirs["samples"][key], key=lambda sample: sample["doc_id"])
        their_logliks = [float(response[0]) for sample in samples for response in sample["filtered_resps"]]
        assert their_logliks == pytest.approx(ours[name].logliks, abs=1e-3), name
    (tmp_path / "agreement.json").write_text(json.dumps({n: ours[n].metrics for n in TASKS}))
