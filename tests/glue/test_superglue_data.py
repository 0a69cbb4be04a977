"""SuperGLUE data: the official download and Hugging Face's `super_glue` shape give the same formulated examples;
every damage is one line naming the file and line (through the CLI: exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from composer_bert.errors import UserError
from composer_bert.glue.superglue.data import load_examples
from composer_bert.glue.superglue.tasks import TASKS, get_task
from tests.glue.glue_helpers import RECIPE_CLI
from tests.glue.superglue_helpers import save_as_hf, write_superglue_dir
from tests.helpers import REPO, assert_one_error_line, cli_error, run_cli

SUPERGLUE_RECIPE = REPO / "yamls/finetune/superglue.yaml"


@pytest.fixture(scope="module")
def superglue_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("superglue")
    official = write_superglue_dir(root / "official")
    return official, save_as_hf(official, root / "hf")


def test_official_and_hugging_face_shapes_give_the_same_examples(superglue_dirs):
    official, hf = superglue_dirs
    for task in TASKS.values():
        for split in (task.train_set, *task.eval_sets):
            ours, theirs = (load_examples(task, split, source, str(path))
                            for source, path in (("superglue_dir", official), ("hf", hf)))  # fmt: skip
            assert (ours.texts, ours.labels, ours.groups, ours.extras) == (
                theirs.texts, theirs.labels, theirs.groups, theirs.extras), (task.name, split.name)  # fmt: skip


def test_formulations(superglue_dirs):
    official, _ = superglue_dirs
    val = {name: load_examples(task, task.eval_sets[0], "superglue_dir", str(official)) for name, task in TASKS.items()}
    copa_row = json.loads((official / "COPA/val.jsonl").read_text().splitlines()[0])
    question = {"cause": "What was the cause?", "effect": "What happened as a result?"}[copa_row["question"]]
    assert val["COPA"].texts[:2] == [(f"{copa_row['premise']} {question}", copa_row["choice1"]),
                                     (f"{copa_row['premise']} {question}", copa_row["choice2"])]  # fmt: skip
    assert val["COPA"].labels[:2] == [int(copa_row["label"] == 0), int(copa_row["label"] == 1)]
    assert val["COPA"].groups[:2] == [0, 0] and len(val["COPA"]) == 2 * 8
    record = json.loads((official / "ReCoRD/val.jsonl").read_text().splitlines()[0])
    answer = record["qas"][0]["answers"][0]["text"]
    candidates = val["ReCoRD"].extras["candidate"][:3]
    assert sorted(candidates) == candidates and answer in candidates
    assert val["ReCoRD"].labels[:3] == [int(candidate == answer) for candidate in candidates]
    assert "@highlight" not in val["ReCoRD"].texts[0][0] and "@placeholder" not in val["ReCoRD"].texts[0][1]
    wic = json.loads((official / "WiC/val.jsonl").read_text().splitlines()[0])
    assert val["WiC"].texts[0][0].startswith(f"*{wic['word']}*")
    wsc = json.loads((official / "WSC/val.jsonl").read_text().splitlines()[0])["target"]
    text, query = val["WSC"].texts[0]
    assert text.startswith(f"*{wsc['span1_text']}*") and text.endswith(f"#{wsc['span2_text']}#")
    assert query == f"Does {wsc['span2_text']} refer to {wsc['span1_text']}?"
    assert len(set(val["MultiRC"].groups)) == 16 and len(val["MultiRC"]) == 48  # 8 passages x 2 questions x 3 answers


def _damaged(superglue_dirs, tmp_path, task: str, file: str, line: int, change) -> Path:
    root = tmp_path / "damaged"
    shutil.copytree(superglue_dirs[0], root)
    path = root / task / file
    lines = path.read_text().splitlines()
    lines[line - 1] = change(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")
    return root


def _field_dropped(name: str):
    return lambda line: json.dumps({k: v for k, v in json.loads(line).items() if k != name})


def _label(value):
    return lambda line: json.dumps({**json.loads(line), "label": value})


@pytest.mark.parametrize(
    ("task", "file", "line", "change", "words"),
    [
        ("BoolQ", "val.jsonl", 3, _field_dropped("passage"), ["val.jsonl:3: missing field 'passage'"]),
        ("CB", "train.jsonl", 2, _label("maybe"), ["train.jsonl:2: unknown CB label 'maybe'", "0=entailment"]),
        ("COPA", "val.jsonl", 1, lambda line: line.replace('"question": "', '"question": "x'), ["neither 'cause'"]),
        ("WiC", "val.jsonl", 4, lambda line: json.dumps({**json.loads(line), "end1": 999}), ["val.jsonl:4: span"]),
        ("RTE", "val.jsonl", 5, lambda line: line[:-3], ["val.jsonl:5: not valid JSON"]),
        ("AX-g", "AX-g.jsonl", 2, lambda line: line.replace('"hypothesis"', '"hypo"'), ["AX-g.jsonl:2: missing"]),
    ],
)
def test_a_damaged_row_is_one_line_naming_file_and_line(superglue_dirs, tmp_path, task, file, line, change, words):
    root = _damaged(superglue_dirs, tmp_path, task, file, line, change)
    owner = "RTE" if task.startswith("AX") else task
    with pytest.raises(UserError) as caught:
        for split in (TASKS[owner].train_set, *TASKS[owner].eval_sets):
            load_examples(TASKS[owner], split, "superglue_dir", str(root))
    for word in words:
        assert word in str(caught.value)


def test_unlabelled_rows_and_a_missing_task_folder_are_one_line(superglue_dirs, tmp_path, monkeypatch):
    import datasets

    # offline, as the machines are: online, `datasets` spent 23 s retrying the Hub before it gave up
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    root = _damaged(superglue_dirs, tmp_path, "BoolQ", "val.jsonl", 1, _label(-1))
    with pytest.raises(UserError, match="no label .* score on val"):
        load_examples(TASKS["BoolQ"], TASKS["BoolQ"].eval_sets[0], "superglue_dir", str(root))
    shutil.rmtree(root / "WiC")
    with pytest.raises(UserError, match=r"WiC/train.jsonl' does not exist; data.path must hold the official download"):
        load_examples(TASKS["WiC"], TASKS["WiC"].train_set, "superglue_dir", str(root))
    with pytest.raises(UserError, match="could not load .*save_to_disk"):
        load_examples(TASKS["WiC"], TASKS["WiC"].train_set, "hf", str(root))


def test_task_names_forgive_case_and_suggest_the_nearest():
    assert get_task("record").name == "ReCoRD" and get_task("wsc.fixed").name == "WSC"
    with pytest.raises(UserError, match="unknown SuperGLUE task 'BoolW'; did you mean 'BoolQ'"):
        get_task("BoolW")
    with pytest.raises(UserError, match="AX-b is a diagnostic, scored with the RTE model; list RTE"):
        get_task("AX-b")


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("tasks=[BoolW,CB]", ["unknown SuperGLUE task 'BoolW'", "did you mean 'BoolQ'"]),
        ("data.source=glue_dir", ["'data.source' is 'glue_dir', which holds no SuperGLUE"]),
        ("start_from_mnli=[RTE]", ["'start_from_mnli' applies to GLUE: MNLI is not a SuperGLUE task"]),
    ],
)
def test_the_cli_refuses_bad_superglue_settings_in_one_line(superglue_dirs, checkpoint, tmp_path, override, words, capsys):
    save = tmp_path / "out"
    error = cli_error(capsys, "recipes/finetune_glue.py", SUPERGLUE_RECIPE, f"checkpoint={checkpoint}",
                      f"data.path={superglue_dirs[0]}", f"save_folder={save}", override)  # fmt: skip
    assert all(word in error for word in words), error
    assert not save.exists()


def test_a_damaged_file_stops_the_cli_before_training_and_writes_nothing(superglue_dirs, checkpoint, tmp_path):
    root = _damaged(superglue_dirs, tmp_path, "CB", "val.jsonl", 6, _label("perhaps"))
    save = tmp_path / "out"
    result = run_cli(RECIPE_CLI, SUPERGLUE_RECIPE, f"checkpoint={checkpoint}", f"data.path={root}",
                     f"save_folder={save}", "tasks=[CB,WiC]", "seeds=[0]", "max_seq_length=32", timeout=300)  # fmt: skip
    assert_one_error_line(result, f"{root / 'CB/val.jsonl'}:6: unknown CB label 'perhaps'", after_other_output=True)
    assert not save.exists()
