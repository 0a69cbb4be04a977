"""GLUE examples from any of three sources, checked row by row, tokenized (with the checked pretraining
tokenizer), and batched with dynamic padding.

Sources (`data.source`):
  hf        `datasets.load_dataset("nyu-mll/glue", config)`; `data.path` is an optional cache dir.
  glue_dir  the original GLUE download: `PATH/CoLA/train.tsv`, `PATH/MNLI/dev_matched.tsv`, ...
  jsonl     `PATH/<hf config>/<hf split>.jsonl` (e.g. `PATH/sst2/validation.jsonl`) with HF field names;
            labels as class ids or class names, STS-B scores as numbers.

Nothing is dropped silently: a missing file, bytes that are not UTF-8, a row with the wrong number of
columns, an unknown label or an empty split stops the run with one line naming the file and line. (The HF
loading script itself skips rows with an empty label; we read what it returns.) TSVs are read with `QUOTE_NONE`
because GLUE sentences contain unbalanced quotes, and blank lines are skipped since they hold no example.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from composer.utils import dist
from torch.utils.data import DataLoader, Dataset

from composer_bert.data.contract import end_rows_with_eos
from composer_bert.errors import UserError
from composer_bert.glue.tasks import STSB_SCORE_RANGE, EvalSet, GlueTask
from composer_bert.run.files import not_utf8
from composer_bert.run.tokenizer_files import tokenizer_errors

HF_DATASET = "nyu-mll/glue"
TOKENIZE_CHUNK = 10_000


@dataclass
class GlueExamples:
    """One split of one task: texts (one or two per example) and label ids (floats for STS-B); for SuperGLUE's
    grouped tasks also each example's group (a question, a minimal pair) and per-example extras (ReCoRD's texts)."""

    task: Any  # a GlueTask, or a SuperGlueTask (superglue/tasks.py)
    origin: str  # file or dataset the examples came from, for messages
    texts: list[tuple[str, ...]]
    labels: list[int | float]
    groups: list[int] | None = None
    extras: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def _unknown_label(task: GlueTask, value: Any, where: str) -> UserError:
    ids = ", ".join(f"{i}={name}" for i, name in enumerate(task.label_names))
    return UserError(f"{where}: unknown {task.name} label '{value}'; expected one of {ids}")


def _score(task: GlueTask, value: Any, where: str) -> float:
    low, high = STSB_SCORE_RANGE
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = float("nan")
    if isinstance(value, bool) or not low <= score <= high:
        raise UserError(f"{where}: '{value}' is not a {task.name} score; scores are numbers from {low:g} to {high:g}")
    return score


def tsv_label(task: GlueTask, raw: str, where: str) -> int | float:
    """A label as the GLUE TSVs write it: class names for NLI tasks, '0'/'1' ids elsewhere, STS-B scores."""
    if task.is_regression:
        return _score(task, raw, where)
    if task.tsv_labels_are_names:
        if raw in task.label_names:
            return task.label_names.index(raw)
    elif raw in {str(i) for i in range(task.num_labels)}:
        return int(raw)
    raise _unknown_label(task, raw, where)


def label_from_value(task: GlueTask, value: Any, where: str) -> int | float:
    """A label from JSONL or an HF row: a class id or class name, or an STS-B score."""
    if task.is_regression:
        return _score(task, value, where)
    if isinstance(value, str) and value in task.label_names:
        return task.label_names.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < task.num_labels:
        return value
    raise _unknown_label(task, value, where)


def _check_not_empty(examples: GlueExamples) -> GlueExamples:
    if not examples.labels:
        raise UserError(f"{examples.origin} holds no examples; check that the {examples.task.name} split is complete")
    return examples


def read_glue_tsv(task: GlueTask, path: Path) -> GlueExamples:
    """One TSV of the GLUE download, columns looked up by header name (CoLA: by its fixed layout)."""
    if not path.is_file():
        raise UserError(
            f"GLUE file '{path}' does not exist; data.path must hold the GLUE download ({task.glue_dir}/{path.name})"
        )
    try:
        return _check_not_empty(_read_tsv(task, path))
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _read_tsv(task: GlueTask, path: Path) -> GlueExamples:
    texts: list[tuple[str, ...]] = []
    labels: list[int | float] = []
    # utf-8-sig: MRPC's files start with a byte-order mark glued to the 'Quality' column name.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = task.tsv_fixed_header or tuple(next(rows, ()))
        wanted = [*task.tsv_columns.values(), task.tsv_label_column]
        missing = [name for name in wanted if name not in header]
        if missing:
            found = ", ".join(header) or "nothing"
            raise UserError(
                f"{path}:1: header lacks column '{missing[0]}' (found: {found}); is this the {task.name} file?"
            )
        text_at = [header.index(task.tsv_columns[field]) for field in task.text_fields]
        label_at = header.index(task.tsv_label_column)
        for row in rows:
            if not row:
                continue
            where = f"{path}:{rows.line_num}"
            if len(row) != len(header):
                raise UserError(
                    f"{where}: expected {len(header)} tab-separated columns, found {len(row)}; fix or remove this line"
                )
            texts.append(tuple(row[i] for i in text_at))
            labels.append(tsv_label(task, row[label_at], where))
    return GlueExamples(task, str(path), texts, labels)


def _jsonl_records(path: Path) -> Iterable[tuple[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{where}: not valid JSON ({err.msg}); write one JSON object per line") from None
        except UnicodeDecodeError:  # reading the next line
            raise not_utf8(path) from None


def read_jsonl(task: GlueTask, path: Path) -> GlueExamples:
    """One `<split>.jsonl` file with the HF field names of the task."""
    if not path.is_file():
        raise UserError(f"JSONL file '{path}' does not exist; data.path must hold {task.hf_config}/{path.name}")
    texts: list[tuple[str, ...]] = []
    labels: list[int | float] = []
    for where, record in _jsonl_records(path):
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object with {', '.join(task.text_fields)} and label")
        for name in (*task.text_fields, "label"):
            if name not in record:
                raise UserError(
                    f"{where}: missing field '{name}'; {task.name} rows need {', '.join(task.text_fields)}, label"
                )
        for name in task.text_fields:
            if not isinstance(record[name], str):
                raise UserError(f"{where}: field '{name}' must be a string, got {type(record[name]).__name__}")
        texts.append(tuple(record[name] for name in task.text_fields))
        labels.append(label_from_value(task, record["label"], where))
    return _check_not_empty(GlueExamples(task, str(path), texts, labels))


def read_hf(task: GlueTask, split: str, cache_dir: str | None) -> GlueExamples:
    """One split of `nyu-mll/glue` (downloaded once by local rank 0, then read from the cache)."""
    import datasets

    origin = f"{HF_DATASET} {task.hf_config}/{split}"
    try:
        with dist.run_local_rank_zero_first():
            table = datasets.load_dataset(HF_DATASET, task.hf_config, split=split, cache_dir=cache_dir)
    except Exception as err:  # network, hub or cache failures: one line, with the offline alternative
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"could not load {origin}: {first}; without network use data.source=glue_dir or jsonl"
        ) from None
    missing = [name for name in (*task.text_fields, "label") if name not in table.column_names]
    if missing:
        raise UserError(f"{origin} has no column '{missing[0]}' (columns: {', '.join(table.column_names)})")
    texts = list(zip(*[list(table[name]) for name in task.text_fields], strict=True))
    labels = [label_from_value(task, value, f"{origin} row {i}") for i, value in enumerate(table["label"])]
    return _check_not_empty(GlueExamples(task, origin, texts, labels))


def load_examples(task: GlueTask, split: EvalSet, source: str, path: str | None) -> GlueExamples:
    """The examples of `split` (the train split or one of the task's dev sets) from the configured source."""
    if source == "hf":
        return read_hf(task, split.hf_split, path)
    if path is None:
        raise UserError(f"data.source={source} needs data.path, the folder that holds the GLUE files")
    if source == "glue_dir":
        return read_glue_tsv(task, Path(path) / task.glue_dir / split.tsv_file)
    if source == "jsonl":
        return read_jsonl(task, Path(path) / task.hf_config / f"{split.hf_split}.jsonl")
    raise UserError(f"data.source '{source}' is not one of hf, glue_dir, jsonl")


def load_tokenizer(tokenizer_dir: str | Path | None) -> Any:
    """The pretraining tokenizer, from local files only (a `tokenizer.json` is enough)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if tokenizer_dir is None:
        raise UserError("the checkpoint carries no tokenizer; pass tokenizer=DIR (the folder with tokenizer.json)")
    folder = Path(tokenizer_dir)
    if not folder.is_dir():
        raise UserError(f"tokenizer folder '{folder}' does not exist; pass tokenizer=DIR with a tokenizer.json")
    try:
        # No remote code: an export's config.json names our model code, which transformers 5 asks about
        # interactively before it even reads the tokenizer; the tokenizer itself never needs any.
        with tokenizer_errors(folder):
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except UserError:
        if not (folder / "tokenizer.json").is_file():
            raise UserError(
                f"no usable tokenizer in '{folder}'; it needs tokenizer.json (or a full HF tokenizer)"
            ) from None
        with tokenizer_errors(folder):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token_id is None:
        raise UserError(f"the tokenizer in '{folder}' has no padding token; GLUE batches need one ([PAD])")
    return tokenizer


def check_tokenizer(tokenizer: Any, vocab_size: int | None, rows_start_with_cls: bool = True) -> None:
    """The tokenizer fits the model and builds the inputs its classifier reads: [CLS] a [SEP] b [SEP] for an
    encoder (`rows_start_with_cls`), a EOS b EOS for a causal model (set here: `end_rows_with_eos`)."""
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise UserError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {vocab_size}; "
            "pass the tokenizer the checkpoint was pretrained with"
        )
    if not rows_start_with_cls:
        if end_rows_with_eos(tokenizer) is None:
            raise UserError("the tokenizer has no end-of-text token (eos or [SEP]); a causal classifier reads the last one")
        return
    # The classifier reads position 0 and pairs need segment ids: both come from the post-processor.
    pair = tokenizer("a", "b", return_token_type_ids=True)
    if tokenizer.cls_token_id is None or pair["input_ids"][0] != tokenizer.cls_token_id:
        raise UserError("the tokenizer does not start sequences with [CLS]; use a BERT-style post-processor")
    if 1 not in pair["token_type_ids"]:
        raise UserError("the tokenizer gives sentence pairs no segment ids; use a BERT-style post-processor")


class TokenizedSplit(Dataset):
    """Token ids of a split in flat numpy arrays (compact for MNLI/QQP-sized splits); items are unpadded."""

    def __init__(self, input_ids: np.ndarray, token_type_ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray):
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.offsets = offsets
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return {
            "input_ids": self.input_ids[start:end],
            "token_type_ids": self.token_type_ids[start:end],
            "labels": self.labels[index],
        }


def tokenize_examples(examples: GlueExamples, tokenizer: Any, max_seq_length: int) -> TokenizedSplit:
    """The tokenizer's rows (`check_tokenizer` set them: [CLS] a [SEP] (b [SEP]) for an encoder, a EOS (b EOS) for a
    causal model) with token types 0/1, truncated longest-first to `max_seq_length`."""
    ids: list[np.ndarray] = []
    types: list[np.ndarray] = []
    for start in range(0, len(examples), TOKENIZE_CHUNK):
        columns = list(zip(*examples.texts[start : start + TOKENIZE_CHUNK], strict=True))
        encoded = tokenizer(
            *[list(column) for column in columns],
            truncation=True,
            max_length=max_seq_length,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        ids.extend(np.asarray(row, dtype=np.int32) for row in encoded["input_ids"])
        types.extend(np.asarray(row, dtype=np.int8) for row in encoded["token_type_ids"])
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in ids], out=offsets[1:])
    label_dtype = np.float32 if examples.task.is_regression else np.int64
    return TokenizedSplit(np.concatenate(ids), np.concatenate(types), offsets, np.asarray(examples.labels, label_dtype))


class PadToLongest:
    """Collate unpadded items into a batch padded to its longest sequence (the model unpads internally)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), length), self.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(items), length), dtype=torch.long)
        attention_mask = torch.zeros((len(items), length), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            input_ids[row, :n] = torch.from_numpy(item["input_ids"].astype(np.int64))
            token_type_ids[row, :n] = torch.from_numpy(item["token_type_ids"].astype(np.int64))
            attention_mask[row, :n] = 1
        labels = torch.as_tensor(np.asarray([item["labels"] for item in items]))
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "labels": labels,
        }


def train_dataloader(
    split: TokenizedSplit, batch_size_per_device: int, seed: int, pad_token_id: int, num_workers: int = 0
) -> DataLoader:
    """Shuffled, sharded across ranks by Composer's DistributedSampler (reshuffled every epoch by the Trainer)."""
    sampler = dist.get_sampler(split, shuffle=True, drop_last=False, seed=seed)
    return DataLoader(
        split,
        batch_size=batch_size_per_device,
        sampler=sampler,
        collate_fn=PadToLongest(pad_token_id),
        num_workers=num_workers,
    )


def eval_dataloader(split: TokenizedSplit, batch_size: int, pad_token_id: int) -> DataLoader:
    """The whole dev set in order, on every rank, so each rank can score it without gathering."""
    return DataLoader(split, batch_size=batch_size, shuffle=False, collate_fn=PadToLongest(pad_token_id))
