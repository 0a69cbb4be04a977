"""SuperGLUE examples from the official download or from Hugging Face's `super_glue`, formulated as pairs.

Sources (`data.source`, with `benchmark: superglue`):
  superglue_dir  the official download: `PATH/BoolQ/train.jsonl`, `PATH/BoolQ/val.jsonl`, ..., `PATH/AX-b/AX-b.jsonl`
  hf             a folder written by `DatasetDict.save_to_disk` per config (`PATH/boolq/`, `PATH/wsc.fixed/`, `PATH/axb/`),
                 else `datasets.load_dataset("aps/super_glue", config)` from the offline cache (`data.path`: cache dir)

Both shapes are first read into one flat row per example (the Hugging Face field names; MultiRC's nested
questions and ReCoRD's entity spans unrolled as its loading script does), then formulated (`superglue/tasks.py`).
A missing field, an unknown label or a file that is not UTF-8 or not JSON stops the run with one line naming the
file and line (or the dataset and row); nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from composer_bert.errors import UserError
from composer_bert.glue.data import GlueExamples, _jsonl_records
from composer_bert.glue.superglue.tasks import BINARY, SuperGlueEvalSet, SuperGlueTask

HF_DATASET = "aps/super_glue"
# Flat fields each task's rows need (besides `label`; ReCoRD's are `entities` and `answers` instead).
FIELDS = {
    "boolq": ("question", "passage"),
    "cb": ("premise", "hypothesis"),
    "copa": ("premise", "choice1", "choice2", "question"),
    "multirc": ("paragraph", "question", "answer"),
    "record": ("passage", "query"),
    "rte": ("premise", "hypothesis"),
    "wic": ("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2"),
    "wsc.fixed": ("text", "span1_index", "span2_index", "span1_text", "span2_text"),
    "axb": ("sentence1", "sentence2"),
    "axg": ("premise", "hypothesis"),
}
COPA_QUESTION = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _missing(record: dict[str, Any], names: Iterable[str], where: str, what: str) -> None:
    for name in names:
        if name not in record:
            raise UserError(f"{where}: missing field '{name}'; {what} rows need {', '.join(names)}")


def label_index(names: tuple[str, ...], value: Any, where: str, task: str) -> int:
    """A label written as a class id, a class name, or (for True/False tasks) a JSON boolean."""
    if isinstance(value, bool) and names == BINARY:
        return int(value)
    if isinstance(value, str) and value in names:
        return names.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    if value == -1 or value is None:
        raise UserError(f"{where}: {task} row has no label (-1/null); the test split is unlabelled, score on val")
    ids = ", ".join(f"{i}={name}" for i, name in enumerate(names))
    raise UserError(f"{where}: unknown {task} label {value!r}; expected one of {ids}")


def row_label(task: SuperGlueTask, config: str, row: dict[str, Any], where: str) -> int:
    """A flat row's label as its dataset writes it: a class of the task, or for COPA the right choice (0 or 1),
    whatever the task's formulation then makes of it."""
    names = ("choice1", "choice2") if config == "copa" else task.label_names
    return label_index(names, row.get("label"), where, task.name)


def _official_rows(config: str, record: Any, where: str) -> list[dict[str, Any]]:
    """One official JSONL record as flat rows (MultiRC and ReCoRD records hold many examples)."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object")
    if config == "multirc":
        _missing(record, ("idx", "passage"), where, "MultiRC")
        rows = []
        for question in record["passage"].get("questions", []):
            _missing(question, ("question", "answers", "idx"), where, "a MultiRC question's")
            for answer in question["answers"]:
                _missing(answer, ("text", "label"), where, "a MultiRC answer's")
                rows.append({"paragraph": record["passage"].get("text", ""), "question": question["question"],
                             "answer": answer["text"], "label": answer["label"],
                             "group": (record["idx"], question["idx"])})  # fmt: skip
        return rows
    if config == "record":
        _missing(record, ("passage", "qas"), where, "ReCoRD")
        text = record["passage"].get("text", "")
        entities = sorted({text[span["start"] : span["end"] + 1] for span in record["passage"].get("entities", [])})
        rows = []
        for qa in record["qas"]:
            _missing(qa, ("query", "answers", "idx"), where, "a ReCoRD query's")
            rows.append({"passage": text, "query": qa["query"], "entities": entities,
                         "answers": sorted({answer["text"] for answer in qa["answers"]}), "group": qa["idx"]})  # fmt: skip
        return rows
    if config == "wsc.fixed" and isinstance(record.get("target"), dict):
        record = {**record, **record["target"]}
    if config == "axg" and "pair_id" in record:
        record = {**record, "group": record["pair_id"]}
    return [record]


def _hf_rows(config: str, record: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face row as a flat row: MultiRC's and ReCoRD's grouping ids out of their `idx` dicts."""
    if config == "multirc":
        return {**record, "group": (record["idx"]["paragraph"], record["idx"]["question"])}
    if config == "record":
        return {**record, "label": 0, "group": record["idx"]["query"]}  # ReCoRD's answers are its labels
    return record


def _mark(text: str, start: int, end: int, mark: str, where: str) -> str:
    if not 0 <= start < end <= len(text):
        raise UserError(f"{where}: span {start}:{end} lies outside its sentence of {len(text)} characters")
    return f"{text[:start]}{mark}{text[start:end]}{mark}{text[end:]}"


def _mark_word(words: list[str], index: int, mark: str, where: str) -> None:
    if not 0 <= index < len(words):
        raise UserError(f"{where}: span index {index} lies outside its text of {len(words)} words")
    words[index] = f"{mark}{words[index]}{mark}"


class _Builder:
    """Collects formulated examples of one split."""

    def __init__(self, task: SuperGlueTask, origin: str):
        self.task, self.origin = task, origin
        self.texts: list[tuple[str, ...]] = []
        self.labels: list[int] = []
        self.groups: list[int] = []
        self.group_ids: dict[Any, int] = {}
        self.extras: dict[str, list[Any]] = {}

    def add(self, texts: tuple[str, ...], label: int, group: Any = None, **extras: Any) -> None:
        self.texts.append(texts)
        self.labels.append(label)
        self.groups.append(self.group_ids.setdefault(group if group is not None else len(self.texts), len(self.group_ids)))
        for key, value in extras.items():
            self.extras.setdefault(key, []).append(value)

    def examples(self) -> GlueExamples:
        if not self.labels:
            raise UserError(f"{self.origin} holds no examples; check that the {self.task.name} split is complete")
        return GlueExamples(self.task, self.origin, self.texts, self.labels, self.groups, self.extras)


def formulate(task: SuperGlueTask, config: str, row: dict[str, Any], where: str, out: _Builder) -> None:
    """Add the example(s) `row` (flat, of dataset config `config`) becomes under the task's formulation."""
    if config == "record":
        _missing(row, ("passage", "query", "entities", "answers"), where, "ReCoRD")
        if not row["answers"]:
            raise UserError(f"{where}: ReCoRD query has no answers; the test split is unlabelled, score on val")
        passage = row["passage"].replace("@highlight\n", "- ")
        for entity in row["entities"]:
            query = row["query"].replace("@placeholder", entity)
            out.add((passage, query), int(entity in row["answers"]), row["group"],
                    candidate=entity, answers=list(row["answers"]))  # fmt: skip
        return
    _missing(row, (*FIELDS[config], "label"), where, task.name)
    label = row_label(task, config, row, where)
    if config == "copa":
        question = COPA_QUESTION.get(row["question"])
        if question is None:
            raise UserError(f"{where}: COPA question '{row['question']}' is neither 'cause' nor 'effect'")
        for choice in (0, 1):
            out.add((f"{row['premise']} {question}", row[f"choice{choice + 1}"]), int(label == choice), row.get("idx", where))
    elif config == "multirc":
        out.add((row["paragraph"], f"{row['question']} {row['answer']}"), label, row["group"])
    elif config == "wic":
        first = _mark(row["sentence1"], int(row["start1"]), int(row["end1"]), "*", where)
        second = _mark(row["sentence2"], int(row["start2"]), int(row["end2"]), "*", where)
        out.add((first, second), label)
    elif config == "wsc.fixed":
        words = str(row["text"]).split()
        _mark_word(words, int(row["span1_index"]), "*", where)
        _mark_word(words, int(row["span2_index"]), "#", where)
        out.add((" ".join(words), f"Does {row['span2_text']} refer to {row['span1_text']}?"), label)
    elif config == "axg":
        out.add((row["premise"], row["hypothesis"]), label, row.get("group", int(row.get("idx", len(out.texts))) // 2))
    else:  # boolq, cb, rte, axb: a text pair as the fields name it
        first, second = FIELDS[config]
        out.add((str(row[first]), str(row[second])), label)


def _official(split: SuperGlueEvalSet, root: Path) -> tuple[str, Iterator[tuple[str, dict[str, Any]]]]:
    path = root / split.folder / split.tsv_file
    if not path.is_file():
        raise UserError(
            f"SuperGLUE file '{path}' does not exist; data.path must hold the official download "
            f"({split.folder}/{split.tsv_file})"
        )
    rows = ((where, row) for where, record in _jsonl_records(path) for row in _official_rows(split.hf_config, record, where))
    return str(path), rows


def _hugging_face(split: SuperGlueEvalSet, path: str | None) -> tuple[str, Iterator[tuple[str, dict[str, Any]]]]:
    """A `save_to_disk` folder (`PATH/CONFIG`), else `aps/super_glue` from the offline cache."""
    import datasets

    saved = Path(path) / split.hf_config if path else None
    from_disk = saved is not None and saved.is_dir()
    origin = f"{saved}/{split.hf_split}" if from_disk else f"{HF_DATASET} {split.hf_config}/{split.hf_split}"
    try:
        if from_disk:
            table = datasets.load_from_disk(str(saved))[split.hf_split]
        else:
            table = datasets.load_dataset(HF_DATASET, split.hf_config, split=split.hf_split, cache_dir=path)
    except Exception as err:  # a missing split or folder, the hub offline, a damaged Arrow file: one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"could not load {origin}: {first}; save each config with save_to_disk into data.path, or use "
            "data.source=superglue_dir"
        ) from None
    rows = ((f"{origin} row {index}", _hf_rows(split.hf_config, record)) for index, record in enumerate(table))
    return origin, rows


def flat_rows(split: SuperGlueEvalSet, source: str, path: str | None) -> tuple[str, Iterator[tuple[str, dict[str, Any]]]]:
    """(origin, (where, flat row) for every example of `split`): the Hugging Face field names whatever the shape."""
    if source == "hf":
        return _hugging_face(split, path)
    if source == "superglue_dir":
        if path is None:
            raise UserError("data.source=superglue_dir needs data.path, the folder of the official download")
        return _official(split, Path(path))
    raise UserError(f"data.source '{source}' does not hold SuperGLUE; use superglue_dir or hf")


def load_examples(task: SuperGlueTask, split: SuperGlueEvalSet, source: str, path: str | None) -> GlueExamples:
    """The examples of `split` formulated for a sequence classifier (`superglue/tasks.py`)."""
    origin, rows = flat_rows(split, source, path)
    out = _Builder(task, origin)
    for where, row in rows:
        formulate(task, split.hf_config, row, where, out)
    return out.examples()
