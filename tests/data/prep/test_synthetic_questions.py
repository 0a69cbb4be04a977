"""data_prep/synthetic_questions.py: two-choice questions about the synthetic corpus's text, in COPA's layout."""

from __future__ import annotations

import json
import re

import pytest

from composer_bert.data.prep.synthetic import _COUNTED_ANIMALS, _VERBS, synthetic_questions
from composer_bert.glue.superglue.data import flat_rows
from composer_bert.glue.superglue.tasks import get_task
from tests.helpers import REPO, load_script_main

SCRIPT = REPO / "data_prep" / "synthetic_questions.py"


def _right_and_wrong(row: dict) -> tuple[str, str]:
    right = row["choice2"] if row["label"] else row["choice1"]
    return right, row["choice1"] if row["label"] else row["choice2"]


def test_each_question_is_answered_by_its_document_or_by_agreement():
    rows = list(synthetic_questions(300, seed=3))
    assert rows == list(synthetic_questions(300, seed=3)) and rows != list(synthetic_questions(300, seed=4))
    assert [row["idx"] for row in rows] == list(range(300))
    assert 120 < sum(row["label"] for row in rows) < 180  # the right ending is first or second at random
    kinds = {"job": 0, "age": 0, "agreement": 0}
    for row in rows:
        right, wrong = _right_and_wrong(row)
        premise = row["premise"]
        assert right != wrong and row["question"] == "effect"
        if premise.endswith(" is a"):  # a restarted introduction: the right job is the one introduced
            name = re.search(r"(\w+ \w+) is a$", premise)[1]
            job, town = re.fullmatch(r"(\w+) from (\w+)\.", right).groups()
            assert f"{name} is a {job} from {town}." in premise and wrong.endswith(f" from {town}.")
            kinds["job"] += 1
        elif premise.endswith(" is") and "How old is" in premise:
            first = re.search(r"How old is (\w+)\? \1 is$", premise)[1]
            age = re.fullmatch(r"(\d+) years old\.", right)[1]
            assert f"{first} is {age} years old" in premise and re.fullmatch(r"\d+ years old\.", wrong)
            kinds["age"] += 1
        else:  # 'The old dogs' -> 'see the boats.' / 'sees the boats.': the verbs differ by number only
            animal = re.fullmatch(r"The \w+ (\w+)", premise)[1]
            plural = animal in {pair[1] for pair in _COUNTED_ANIMALS}
            assert plural != (animal in {pair[0] for pair in _COUNTED_ANIMALS}), animal  # sheep/sheep never asked
            verbs = {pair[plural]: pair[not plural] for pair in _VERBS}  # the right number's form -> the other's
            assert verbs[right.split()[0]] == wrong.split()[0] and right.split()[1:] == wrong.split()[1:]
            kinds["agreement"] += 1
    assert min(kinds.values()) > 60, kinds


def test_the_script_writes_a_copa_folder_the_superglue_reader_takes(tmp_path, capsys):
    main = load_script_main(SCRIPT)
    out = tmp_path / "questions"
    main(["--out", str(out), "--train", "5", "--val", "12", "--seed", "2"])
    assert json.loads((out / "questions.json").read_text())["questions"] == {"train": 5, "val": 12}
    copa = get_task("COPA")
    val = list(flat_rows(copa.eval_sets[0], "superglue_dir", str(out))[1])
    train = list(flat_rows(copa.train_set, "superglue_dir", str(out))[1])
    assert len(val) == 12 and len(train) == 5
    assert not {row["premise"] for _, row in val} & {row["premise"] for _, row in train}  # no shared document
    refused = [(["--out", str(out)], "already exists; pass --overwrite"),
               (["--out", str(tmp_path / "other"), "--val", "0"], "--val is 0; pass a positive number of questions")]  # fmt: skip
    for argv, words in refused:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    main(["--out", str(out), "--val", "3", "--overwrite"])
    assert len((out / "COPA" / "val.jsonl").read_text().splitlines()) == 3
