"""Zero-/few-shot scoring of causal checkpoints: the answers' log-likelihoods equal a plain transformers computation
on the exported Llama folder (one request at a time, no batching), the checkpoint and its export score alike, the
prompts are lm-evaluation-harness's shape, and every bad setting is one line."""

from __future__ import annotations

import json
import re

import pytest
import torch

from composer_bert.errors import UserError
from composer_bert.generation.sampling import load_causal_lm
from composer_bert.glue.superglue.tasks import TASKS
from composer_bert.zeroshot.prompts import requests
from composer_bert.zeroshot.scoring import _labelled, answer_logprobs, build_requests, run_zero_shot
from tests.generation.generation_helpers import mlm_checkpoint
from tests.helpers import assert_one_error_line, run_cli
from tests.zeroshot.conftest import RECIPE, zero_shot_cfg


def _reference_logprob(model, tokenizer, context: str, answer: str) -> float:
    """transformers alone, one request: log P(answer tokens | context tokens)."""
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    ids = tokenizer(context + answer, add_special_tokens=False)["input_ids"]
    logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return float(sum(logprobs[position - 1, ids[position]] for position in range(len(context_ids), len(ids))))


def test_answer_loglikelihoods_equal_transformers_one_request_at_a_time(world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_model = AutoModelForCausalLM.from_pretrained(world["export"]).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(world["export"])
    cfg = zero_shot_cfg(world, "num_fewshot=2")
    ours = load_causal_lm(str(world["checkpoint"]), "cpu", recipe="zero_shot")
    for task in ("COPA", "CB", "WiC"):
        val, train = (_labelled(task, split, cfg) for split in (TASKS[task].eval_sets[0], TASKS[task].train_set))
        pairs, spans = build_requests(task, cfg.template(task), val[:4], train, 2, 1234)
        scores = answer_logprobs(ours.model, ours.tokenizer, pairs, 3, "cpu", 512)  # 2-shot WiC: ~330 tokens
        with torch.no_grad():
            reference = [_reference_logprob(hf_model, hf_tokenizer, context, answer) for context, answer in pairs]
        assert scores == pytest.approx(reference, abs=1e-4), task
        assert len(spans) == 4 and all(n == (3 if task == "CB" else 2) for _, n in spans)


def test_the_checkpoint_and_its_export_score_alike_and_the_report_is_written(world):
    by_checkpoint = run_zero_shot(zero_shot_cfg(world, "num_fewshot=1"))
    by_export = run_zero_shot(zero_shot_cfg(world, "num_fewshot=1", f"checkpoint={world['export']}"))
    assert [r.metrics for r in by_checkpoint] == [r.metrics for r in by_export]
    assert [r.task for r in by_checkpoint] == ["BoolQ", "CB", "COPA", "RTE", "WiC"]
    assert set(by_checkpoint[1].metrics) == {"accuracy", "macro_f1"} and by_checkpoint[2].examples == 8
    saved = json.loads((world["root"] / "out" / "zero_shot_results.json").read_text())
    assert saved["num_fewshot"] == 1 and saved["split"] == "val" and len(saved["tasks"]) == 5
    report = (world["root"] / "out" / "zero_shot_results.md").read_text()
    # beside each accuracy, a uniform guess's: 1 / (number of answers), CB's three, the others' two
    assert re.search(r"\| COPA \| accuracy \| [\d.]+ \| 50\.0 \| 8 \|", report), report
    assert re.search(r"\| CB \| accuracy \| [\d.]+ \| 33\.3 \|", report) and "| CB | macro_f1 |" in report
    assert [task["chance_accuracy"] for task in saved["tasks"]] == pytest.approx([50, 100 / 3, 50, 50, 50])


def test_prompts_have_lm_evaluation_harness_shape_and_shots_come_first(world):
    row = {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He won.", "question": "cause"}
    assert requests("COPA", "{premise_stem} {connector} {answer}", row) == ("The man fell because", [" he slipped.", " he won."])
    row = {"premise": "A cat sat.", "hypothesis": "An animal sat", "label": 0}
    context, answers = requests("RTE", "{premise}\nQuestion: {hypothesis} True or False?\nAnswer: {answer}", row)
    assert context == "A cat sat.\nQuestion: An animal sat True or False?\nAnswer:" and answers == [" True", " False"]
    cfg = zero_shot_cfg(world)
    val, train = (_labelled("RTE", split, cfg) for split in (TASKS["RTE"].eval_sets[0], TASKS["RTE"].train_set))
    pairs, _ = build_requests("RTE", cfg.template("RTE"), val[:1], train, 2, 7)
    shots = pairs[0][0].split("\n\n")
    assert len(shots) == 3 and shots[2] == requests("RTE", cfg.template("RTE"), val[0][1])[0]
    assert all(shot.endswith((" True", " False")) for shot in shots[:2])


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (['prompts.RTE="{premise} {hypothesis}"'], ["'prompts.RTE' has no {answer} slot at its end"]),
        (['prompts.RTE="{premise} {colour} {answer}"'], ["'prompts.RTE' names 'colour', not a RTE field"]),
        (["prompts.RTE={premise} {answer}"], ["override 'prompts.RTE' has a value YAML cannot read", "quote it"]),
        (["tasks=[COPA,BoolW]"], ["unknown SuperGLUE task 'BoolW'; did you mean 'BoolQ'"]),
        (["tasks=[WSC]"], ["WSC has no likelihood prompt here"]),
        (["data.source=glue_dir"], ["zero-shot reads superglue_dir or hf"]),
    ],
)
def test_bad_settings_are_one_line(world, overrides, words):
    with pytest.raises(UserError) as caught:
        zero_shot_cfg(world, *overrides)
    for word in words:
        assert word in str(caught.value)


def test_too_many_shots_a_missing_folder_and_a_masked_lm_are_one_line(world, tmp_path):
    with pytest.raises(UserError, match="num_fewshot=40 but COPA's train split has 16 examples"):
        run_zero_shot(zero_shot_cfg(world, "num_fewshot=40", "tasks=[COPA]"))
    with pytest.raises(UserError, match="BoolQ/val.jsonl' does not exist"):
        run_zero_shot(zero_shot_cfg(world, f"data.path={tmp_path}", "tasks=[BoolQ]"))
    tokenizer = world["root"] / "tokenizer"
    masked = mlm_checkpoint(tmp_path / "mlm.pt", tokenizer)
    out = tmp_path / "out"
    result = run_cli("recipes/zero_shot.py", RECIPE, f"checkpoint={masked}", f"data.path={world['data']}",
                     f"save_folder={out}", timeout=300)  # fmt: skip
    assert_one_error_line(result, "holds a masked-LM encoder", "recipes/zero_shot.py takes a causal language model")
    assert not out.exists()
