"""GLUE data, metrics, config and report tests: readers for all three sources, the errors bad files give,
tokenization and padding, metric formulas against scikit-learn/scipy, and the GLUE-average arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm
from transformers import PreTrainedTokenizerFast

from composer_bert.errors import UserError
from composer_bert.glue import metrics
from composer_bert.glue.config import FinetuneConfig
from composer_bert.glue.data import (
    PadToLongest,
    load_examples,
    read_glue_tsv,
    tokenize_examples,
)
from composer_bert.glue.results import RunResult, format_console, format_markdown, glue_average, summarize
from composer_bert.glue.tasks import TASKS, TRAIN_SPLIT, get_task
from composer_bert.run.config import load_config
from tests.glue.glue_helpers import STSB_HEADER, write_tsv
from tests.helpers import bert_tokenizer

SENTENCES = [
    "the movie was great and fun",
    "a dull and boring film",
    "is the cat on the mat",
    "the dog sat on the mat",
    "what a wonderful day it was",
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """The tiny BERT tokenizer, its vocabulary trained on SENTENCES."""
    return bert_tokenizer(trained_on=SENTENCES * 4, vocab_size=120)


MNLI_HEADER = [
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
    "label1",
    "gold_label",
]


def mnli_row(i: int, premise: str, hypothesis: str, label: str) -> list[str]:
    return [
        str(i),
        "1",
        f"{i}e",
        "fiction",
        "( x )",
        "( y )",
        "(ROOT x)",
        "(ROOT y)",
        premise,
        hypothesis,
        label,
        label,
    ]


# ---------------------------------------------------------------- readers


def test_sst2_and_stsb_are_read_by_header_names(tmp_path):
    write_tsv(tmp_path / "SST-2/train.tsv", [["a fine film", "1"], ['a "quoted film', "0"]], ["sentence", "label"])
    sst2 = load_examples(TASKS["SST-2"], TRAIN_SPLIT, "glue_dir", str(tmp_path))
    assert sst2.texts == [("a fine film",), ('a "quoted film',)]
    assert sst2.labels == [1, 0]

    rows = [["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "a man plays", "a man sings", "3.2"]]
    write_tsv(tmp_path / "STS-B/dev.tsv", rows, STSB_HEADER)
    stsb = load_examples(TASKS["STS-B"], TASKS["STS-B"].eval_sets[0], "glue_dir", str(tmp_path))
    assert stsb.texts == [("a man plays", "a man sings")]
    assert stsb.labels == [pytest.approx(3.2)]


def test_cola_has_no_header_and_four_columns(tmp_path):
    rows = [["gj04", "1", "", "Our friends won't buy this analysis."], ["gj04", "0", "*", 'He said "so.']]
    cola = read_glue_tsv(TASKS["CoLA"], write_tsv(tmp_path / "CoLA/dev.tsv", rows))
    assert cola.texts == [("Our friends won't buy this analysis.",), ('He said "so.',)]
    assert cola.labels == [1, 0]


def test_mrpc_header_with_byte_order_mark(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    path = write_tsv(tmp_path / "MRPC/train.tsv", [["1", "7", "8", "first one", "second one"]], header, bom=True)
    mrpc = read_glue_tsv(TASKS["MRPC"], path)
    assert mrpc.texts == [("first one", "second one")] and mrpc.labels == [1]


def test_mnli_reads_matched_and_mismatched_dev_sets(tmp_path):
    mnli = TASKS["MNLI"]
    matched = [mnli_row(0, "p m", "h m", "neutral"), mnli_row(1, "p m2", "h m2", "contradiction")]
    mismatched = [mnli_row(0, "p mm", "h mm", "entailment")]
    header = [*MNLI_HEADER[:11], "label2", "label3", "label4", "label5", "gold_label"]
    write_tsv(tmp_path / "MNLI/dev_matched.tsv", [row[:11] + ["x"] * 4 + row[11:] for row in matched], header)
    write_tsv(tmp_path / "MNLI/dev_mismatched.tsv", [row[:11] + ["x"] * 4 + row[11:] for row in mismatched], header)
    assert [eval_set.name for eval_set in mnli.eval_sets] == ["MNLI-m", "MNLI-mm"]
    dev_m = load_examples(mnli, mnli.eval_sets[0], "glue_dir", str(tmp_path))
    dev_mm = load_examples(mnli, mnli.eval_sets[1], "glue_dir", str(tmp_path))
    assert dev_m.texts == [("p m", "h m"), ("p m2", "h m2")] and dev_m.labels == [1, 2]
    assert dev_mm.texts == [("p mm", "h mm")] and dev_mm.labels == [0]


def test_jsonl_accepts_label_ids_and_names(tmp_path):
    path = tmp_path / "rte/validation.jsonl"
    path.parent.mkdir()
    records = [
        {"sentence1": "a", "sentence2": "b", "label": 1},
        {"sentence1": "c", "sentence2": "d", "label": "entailment"},
    ]
    path.write_text("\n".join(json.dumps(record) for record in records) + "\n\n")
    rte = load_examples(TASKS["RTE"], TASKS["RTE"].eval_sets[0], "jsonl", str(tmp_path))
    assert rte.texts == [("a", "b"), ("c", "d")] and rte.labels == [1, 0]


def test_hf_source_uses_nyu_glue(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split, cache_dir=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"question1": ["q1?"], "question2": ["q2?"], "label": [1], "idx": [0]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    qqp = load_examples(TASKS["QQP"], TASKS["QQP"].eval_sets[0], "hf", None)
    assert calls == [("nyu-mll/glue", "qqp", "validation")]
    assert qqp.texts == [("q1?", "q2?")] and qqp.labels == [1]


def test_hf_rows_without_labels_are_rejected(monkeypatch):
    import datasets

    unlabeled = datasets.Dataset.from_dict({"sentence": ["x", "y"], "label": [0, -1], "idx": [0, 1]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: unlabeled)
    with pytest.raises(UserError, match=r"nyu-mll/glue sst2/train row 1: unknown SST-2 label '-1'"):
        load_examples(TASKS["SST-2"], TRAIN_SPLIT, "hf", None)


# ---------------------------------------------------------------- errors


def _error_for(tmp_path: Path, task: str, text: str | None) -> str:
    glue_task = TASKS[task]
    path = tmp_path / glue_task.glue_dir / "train.tsv"
    if text is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_examples(glue_task, TRAIN_SPLIT, "glue_dir", str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_wrong_column_count_names_file_and_line(tmp_path):
    message = _error_for(tmp_path, "SST-2", "sentence\tlabel\ngood\t1\nbad\textra\t0\n")
    assert f"{tmp_path / 'SST-2/train.tsv'}:3: expected 2 tab-separated columns, found 3" in message


def test_unknown_label_names_file_and_line(tmp_path):
    message = _error_for(tmp_path, "RTE", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n")
    assert f"{tmp_path / 'RTE/train.tsv'}:3: unknown RTE label 'maybe'" in message


def test_out_of_range_sts_score_is_rejected(tmp_path):
    header = "\t".join(STSB_HEADER) + "\n"
    message = _error_for(tmp_path, "STS-B", header + "0\tg\tf\ty\to\ts\ts\ta\tb\t7.5\n")
    assert ":2: '7.5' is not a STS-B score" in message


def test_empty_split_is_an_error(tmp_path):
    message = _error_for(tmp_path, "SST-2", "sentence\tlabel\n")
    assert "holds no examples" in message and "SST-2/train.tsv" in message


def test_missing_file_is_an_error(tmp_path):
    message = _error_for(tmp_path, "QNLI", None)
    assert f"'{tmp_path / 'QNLI/train.tsv'}' does not exist" in message


def test_wrong_header_is_an_error(tmp_path):
    message = _error_for(tmp_path, "SST-2", "text\tlabel\nfine\t1\n")
    assert ":1: header lacks column 'sentence'" in message


def test_cola_with_header_like_row_is_an_unknown_label(tmp_path):
    message = _error_for(tmp_path, "CoLA", "source\tlabel\tannotation\tsentence\n")
    assert "CoLA/train.tsv:1: unknown CoLA label 'label'" in message


def test_jsonl_that_is_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "sst2" / "train.jsonl"
    path.parent.mkdir()
    path.write_bytes(b'{"sentence": "fine", "label": 1}\n\n{"sentence": "na\xefve", "label": 0}\n')
    with pytest.raises(UserError) as caught:
        load_examples(get_task("SST-2"), TRAIN_SPLIT, "jsonl", str(tmp_path))
    assert str(caught.value) == f"{path}:3 is not UTF-8 (byte 0xef at column 17); save the file as UTF-8 text"


def test_jsonl_missing_field_names_line(tmp_path):
    path = tmp_path / "sst2/train.jsonl"
    path.parent.mkdir()
    path.write_text('{"sentence": "ok", "label": 1}\n{"text": "no", "label": 0}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: missing field 'sentence'"):
        load_examples(TASKS["SST-2"], TRAIN_SPLIT, "jsonl", str(tmp_path))


# ---------------------------------------------------------------- tokenization and batching


def test_pairs_get_token_types_and_batches_pad_to_longest(tokenizer, tmp_path):
    rows = [["0", "the cat", "the dog sat on the mat", "entailment"], ["1", "a", "b", "not_entailment"]]
    rte = read_glue_tsv(
        TASKS["RTE"], write_tsv(tmp_path / "RTE/dev.tsv", rows, ["index", "sentence1", "sentence2", "label"])
    )
    split = tokenize_examples(rte, tokenizer, max_seq_length=8)
    first = split[0]
    assert first["input_ids"][0] == tokenizer.cls_token_id and len(first["input_ids"]) == 8  # truncated
    assert list(first["token_type_ids"]).count(1) > 0 and first["token_type_ids"][0] == 0
    batch = PadToLongest(tokenizer.pad_token_id)([split[0], split[1]])
    assert batch["input_ids"].shape == (2, 8)
    short = len(split[1]["input_ids"])
    assert batch["attention_mask"][1].tolist() == [1] * short + [0] * (8 - short)
    assert batch["input_ids"][1, short:].eq(tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [0, 1]


def test_regression_labels_are_float(tokenizer, tmp_path):
    stsb = read_glue_tsv(TASKS["STS-B"], write_tsv(tmp_path / "dev.tsv", [["0", *"gfyoss", "a", "b", "2.5"]], STSB_HEADER))
    batch = PadToLongest(0)([tokenize_examples(stsb, tokenizer, 16)[0]])
    assert batch["labels"].dtype.is_floating_point and batch["labels"].tolist() == [2.5]


# ---------------------------------------------------------------- metrics


def test_metrics_match_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert metrics.accuracy(predictions, labels) == pytest.approx(skm.accuracy_score(labels, predictions))
    assert metrics.binary_f1(predictions, labels) == pytest.approx(skm.f1_score(labels, predictions))
    assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(skm.matthews_corrcoef(labels, predictions))
    three_way, three_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert metrics.matthews_corrcoef(three_pred, three_way) == pytest.approx(
        skm.matthews_corrcoef(three_way, three_pred)
    )
    scores = rng.integers(0, 6, 200).astype(float)  # many ties, as in STS-B
    guesses = scores + rng.normal(0, 1.5, 200)
    assert metrics.pearson(guesses, scores) == pytest.approx(stats.pearsonr(guesses, scores)[0])
    assert metrics.spearman(guesses, scores) == pytest.approx(stats.spearmanr(guesses, scores)[0])
    assert metrics.spearman(np.round(guesses), scores) == pytest.approx(stats.spearmanr(np.round(guesses), scores)[0])


def test_constant_predictions_score_zero_correlation():
    labels = np.array([0, 1, 1, 0])
    assert metrics.matthews_corrcoef(np.zeros(4, dtype=int), labels) == 0.0
    assert metrics.pearson(np.ones(4), labels.astype(float)) == 0.0


def test_task_metrics_are_scaled_by_100():
    scores = metrics.compute_task_metrics(TASKS["MRPC"], np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert scores == {"f1": pytest.approx(100 * 2 / 3), "accuracy": 75.0}


# ---------------------------------------------------------------- report


FULL_MEDIANS = {
    "MNLI-m": {"accuracy": 84.0},
    "MNLI-mm": {"accuracy": 83.0},
    "QQP": {"f1": 87.0, "accuracy": 90.0},
    "QNLI": {"accuracy": 90.0},
    "SST-2": {"accuracy": 92.0},
    "CoLA": {"mcc": 50.0},
    "STS-B": {"pearson": 86.0, "spearman": 85.0},
    "MRPC": {"f1": 88.0, "accuracy": 83.0},
    "RTE": {"accuracy": 60.0},
    "WNLI": {"accuracy": 30.0},
}


def test_glue_average_counts_both_mnli_sets_and_skips_wnli():
    average, over, missing = glue_average(FULL_MEDIANS)
    assert average == pytest.approx((84 + 83 + 87 + 90 + 92 + 50 + 86 + 88 + 60) / 9)
    assert len(over) == 9 and "WNLI" not in over and missing == []


def test_partial_glue_average_is_over_present_sets():
    average, over, missing = glue_average({"SST-2": {"accuracy": 90.0}, "STS-B": {"pearson": 80.0, "spearman": 0.0}})
    assert average == pytest.approx(85.0) and over == ["SST-2", "STS-B"]
    assert missing == ["MNLI-m", "MNLI-mm", "QQP", "QNLI", "CoLA", "MRPC", "RTE"]


def test_summary_takes_median_over_seeds_and_marks_partial():
    runs = [
        RunResult("MRPC", seed, "fp", {"MRPC": {"f1": f1, "accuracy": acc}}, 1.0)
        for seed, f1, acc in [(0, 80.0, 70.0), (1, 90.0, 75.0), (2, 85.0, 60.0)]
    ]
    summary = summarize(runs, "ckpt.pt")
    assert summary.medians == {"MRPC": {"f1": 85.0, "accuracy": 70.0}}
    assert summary.per_seed["MRPC"]["1"] == {"f1": 90.0, "accuracy": 75.0}
    assert summary.glue_average == 85.0 and summary.partial
    payload = summary.to_json()
    assert payload["glue_average_partial"] is True and payload["tasks"]["MRPC"]["f1"] == 85.0
    assert "| MRPC | GLUE avg |" in format_markdown(summary) and "85.0*" in format_console(summary)


# ---------------------------------------------------------------- config


def test_config_overrides_are_typed_and_validated():
    cfg = load_config(FinetuneConfig,
        "yamls/finetune/glue.yaml", ["checkpoint=x.pt", "task_overrides.rte.lr=1e-5", "start_from_mnli=[RTE,stsb]"]
    )
    assert cfg.hparams_for(get_task("RTE")).lr == 1e-5 and cfg.hparams_for(get_task("QQP")).lr == 4e-5
    assert cfg.selected_tasks()[0].name == "MNLI" and cfg.mnli_starts() == {"RTE", "STS-B"}
    with pytest.raises(UserError, match="did you mean 'STS-B'"):
        load_config(FinetuneConfig, None, ["checkpoint=x", "tasks=[stsbb]"])
    with pytest.raises(UserError, match="task_overrides.RTE.global_train_batch_size' is 0"):
        load_config(FinetuneConfig, None, ["checkpoint=x", "task_overrides.RTE.global_train_batch_size=0"])
    with pytest.raises(UserError, match="MNLI is not in tasks"):
        load_config(FinetuneConfig, None, ["checkpoint=x", "tasks=[RTE]", "start_from_mnli=[RTE]"])
    with pytest.raises(UserError, match="unknown config key 'task_overrides.RTE.learning_rate'"):
        load_config(FinetuneConfig, None, ["checkpoint=x", "task_overrides.RTE.learning_rate=1"])
