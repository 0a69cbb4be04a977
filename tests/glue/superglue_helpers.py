"""SuperGLUE fixtures: every task in the official download's layout (`TASK/train.jsonl`, `TASK/val.jsonl`,
`AX-b/AX-b.jsonl`, `AX-g/AX-g.jsonl`), made of the tiny tokenizer's words, and the same rows in the Hugging Face
shape (`super_glue`'s fields, MultiRC and ReCoRD unrolled as its loading script does) saved with `save_to_disk`;
and a tiny SuperGLUE run on such a folder."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from composer_bert.glue.config import FinetuneConfig
from composer_bert.glue.results import GlueSummary
from composer_bert.glue.runner import run_glue
from composer_bert.run.config import load_config
from tests.glue.glue_helpers import WORDS, sentence
from tests.helpers import REPO

HF_CONFIG = {"BoolQ": "boolq", "CB": "cb", "COPA": "copa", "MultiRC": "multirc", "ReCoRD": "record", "RTE": "rte",
             "WiC": "wic", "WSC": "wsc.fixed", "AX-b": "axb", "AX-g": "axg"}  # fmt: skip
NLI = ["entailment", "not_entailment"]


def _record(task: str, rng: random.Random, idx: int) -> dict[str, Any]:
    """One official-format row of `task`, its label learnable from the words where that is easy."""
    a, b = sentence(rng), sentence(rng)
    if task == "BoolQ":
        return {"question": a, "passage": b, "idx": idx, "label": "good" in a}
    if task == "CB":
        return {"premise": a, "hypothesis": b, "idx": idx, "label": rng.choice(["entailment", "contradiction", "neutral"])}
    if task == "COPA":
        return {"premise": a, "choice1": b, "choice2": sentence(rng), "question": rng.choice(["cause", "effect"]),
                "idx": idx, "label": rng.randint(0, 1)}  # fmt: skip
    if task == "MultiRC":
        questions = [
            {"question": sentence(rng), "idx": q,
             "answers": [{"text": sentence(rng), "idx": 3 * q + k, "label": rng.randint(0, 1)} for k in range(3)]}
            for q in range(2)
        ]  # fmt: skip
        return {"idx": idx, "passage": {"text": a + " . " + b, "questions": questions}}
    if task == "ReCoRD":
        names = rng.sample(WORDS, 3)
        text = f"{names[0]} sat on {names[1]} .\n@highlight\n{names[2]} ran"
        spans = [{"start": text.index(name), "end": text.index(name) + len(name) - 1} for name in names]
        answer = rng.choice(names)
        return {"idx": idx, "passage": {"text": text, "entities": spans},
                "qas": [{"query": f"the @placeholder {a}", "idx": 100 + idx,
                         "answers": [{"start": text.index(answer), "end": text.index(answer) + len(answer) - 1,
                                      "text": answer}]}]}  # fmt: skip
    if task in ("RTE", "AX-g"):
        return {"premise": a, "hypothesis": b, "idx": idx, "label": rng.choice(NLI),
                **({"pair_id": idx // 2} if task == "AX-g" else {})}  # fmt: skip
    if task == "AX-b":
        return {"sentence1": a, "sentence2": b, "idx": idx, "label": rng.choice(NLI)}
    if task == "WiC":
        word = a.split()[0]
        return {"word": word, "sentence1": a, "sentence2": word + " " + b, "start1": 0, "end1": len(word),
                "start2": 0, "end2": len(word), "idx": idx, "label": rng.random() < 0.5}  # fmt: skip
    words = (a + " " + b).split()
    return {"text": " ".join(words), "idx": idx, "label": rng.random() < 0.5,
            "target": {"span1_index": 0, "span1_text": words[0], "span2_index": len(words) - 1,
                       "span2_text": words[-1]}}  # fmt: skip


def write_superglue_dir(root: Path, train: int = 16, val: int = 8, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for task in HF_CONFIG:
        splits = {f"{task}.jsonl": val} if task.startswith("AX") else {"train.jsonl": train, "val.jsonl": val}
        for file, size in splits.items():
            path = root / task / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(_record(task, rng, i)) + "\n" for i in range(size)), encoding="utf-8")
    return root


def _hf_rows(task: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """An official row in `super_glue`'s shape (ClassLabel ids, MultiRC/ReCoRD unrolled)."""
    if task == "MultiRC":
        return [{"paragraph": record["passage"]["text"], "question": q["question"], "answer": a["text"],
                 "idx": {"paragraph": record["idx"], "question": q["idx"], "answer": a["idx"]}, "label": a["label"]}
                for q in record["passage"]["questions"] for a in q["answers"]]  # fmt: skip
    if task == "ReCoRD":
        text = record["passage"]["text"]
        entities = sorted({text[s["start"] : s["end"] + 1] for s in record["passage"]["entities"]})
        return [{"passage": text, "query": qa["query"], "entities": entities,
                 "answers": sorted({a["text"] for a in qa["answers"]}), "idx": {"passage": record["idx"], "query": qa["idx"]}}
                for qa in record["qas"]]  # fmt: skip
    row = {**record, **record.pop("target", {})}
    row.pop("pair_id", None)  # super_glue's axg has no pair ids: consecutive rows are pairs
    label = row["label"]
    names = {"CB": ["entailment", "contradiction", "neutral"], "RTE": NLI, "AX-b": NLI, "AX-g": NLI}.get(task)
    row["label"] = names.index(label) if names else int(label)
    return [row]


def save_as_hf(official: Path, out: Path) -> Path:
    """The official folder's rows as `DatasetDict.save_to_disk` folders, one per config (`out/boolq`, ...)."""
    import datasets

    for task, config in HF_CONFIG.items():
        files = {"test": f"{task}.jsonl"} if task.startswith("AX") else {"train": "train.jsonl", "validation": "val.jsonl"}
        splits = {}
        for split, file in files.items():
            lines = (official / task / file).read_text().splitlines()
            splits[split] = datasets.Dataset.from_list([row for line in lines for row in _hf_rows(task, json.loads(line))])
        datasets.DatasetDict(splits).save_to_disk(str(out / config))
    return out


SUPERGLUE_RECIPE = REPO / "yamls/finetune/superglue.yaml"


def superglue_run(checkpoint: Path, data: Path, save: Path, *overrides: str) -> GlueSummary:
    """The SuperGLUE recipe on an official-layout folder: one seed, one epoch, 48 tokens, no model files."""
    cfg = load_config(
        FinetuneConfig, str(SUPERGLUE_RECIPE),
        [f"checkpoint={checkpoint}", f"save_folder={save}", f"data.path={data}", "seeds=[0]", "epochs=1",
         "max_seq_length=48", "progress_bar=false", "device_eval_batch_size=16", "save_models=false",
         "task_overrides.BoolQ.max_seq_length=48", "task_overrides.MultiRC.max_seq_length=48",
         "task_overrides.ReCoRD.max_seq_length=48", "task_overrides.ReCoRD.epochs=1", "task_overrides.CB.epochs=1",
         "task_overrides.COPA.epochs=1", "task_overrides.WSC.epochs=1", *overrides],
    )  # fmt: skip
    return run_glue(cfg)
