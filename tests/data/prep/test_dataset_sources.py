"""Hugging Face `datasets` sources, offline: hf: on local folders, disk: (save_to_disk), arrow:, the named
shortcuts, and the one-line errors for a Hub name offline, a missing text field and unreadable data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest

from composer_bert.data.contract import read_manifest
from composer_bert.data.prep.sources import checked_documents, open_source
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.errors import UserError
from tests.data.shard_helpers import SKIPPED, rows_with_gaps
from tests.helpers import REPO, assert_one_error_line, load_script_main, run_cli

datasets = pytest.importorskip("datasets")

OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}  # and the machine has no route to the Hub anyway


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def data_folder(tmp_path) -> Path:
    """A folder of data files, as a Hub dataset repository holds them: two jsonl files of one train split."""
    folder = tmp_path / "folder"
    write_jsonl(folder / "part-a.jsonl", [{"body": "first document", "id": 1}, {"body": "  ", "id": 2}])
    write_jsonl(folder / "part-b.jsonl", [{"body": "second document", "id": 3}, {"body": "third one", "id": 4}])
    return folder


# ---------------------------------------------------------------- hf:


def test_hf_streams_a_local_folder_of_data_files(data_folder):
    source = open_source(f"hf:{data_folder}", text_field="body")
    assert list(source) == ["first document", "second document", "third one"]
    assert list(source) == ["first document", "second document", "third one"]  # it can be read again
    assert source.resolved == f"hf:{data_folder}::train"


def test_hf_split_and_parquet_files(tmp_path):
    import pyarrow.parquet as pq

    folder = tmp_path / "splits"
    folder.mkdir()
    pq.write_table(pa.table({"text": ["train row one", "train row two"]}), folder / "train.parquet")
    pq.write_table(pa.table({"text": ["validation row"]}), folder / "validation.parquet")
    assert list(open_source(f"hf:{folder}")) == ["train row one", "train row two"]
    assert list(open_source(f"hf:{folder}::validation")) == ["validation row"]
    with pytest.raises(UserError, match="could not open") as err:
        open_source(f"hf:{folder}::test")
    assert "\n" not in str(err.value)


def test_hf_on_a_saved_folder_reads_it_as_disk(tmp_path):
    datasets.Dataset.from_dict({"text": ["saved one", "saved two"]}).save_to_disk(str(tmp_path / "saved"))
    source = open_source(f"hf:{tmp_path / 'saved'}")
    assert list(source) == ["saved one", "saved two"]
    assert source.resolved == f"disk:{(tmp_path / 'saved').resolve()}"
    with pytest.raises(UserError, match="saved with save_to_disk and has no configs; use disk:"):
        open_source(f"hf:{tmp_path / 'saved'}:some_config")
    (tmp_path / "docs.jsonl").write_text('{"text": "a"}\n')
    with pytest.raises(UserError, match="is a file; hf: takes a Hub name or a folder"):
        open_source(f"hf:{tmp_path / 'docs.jsonl'}")


def test_shortcuts_stream_their_hub_datasets(monkeypatch):
    calls = []
    rows = {"text": ["a page", "  ", "another page"], "url": ["u1", "u2", "u3"]}

    def hub(path, name=None, split=None, streaming=False):  # stands in for the Hub: the machine has no network
        calls.append((path, name, split, streaming))
        return datasets.Dataset.from_dict(rows).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", hub)
    for shortcut in ("c4", "openwebtext", "pile", "wikipedia"):
        source = open_source(shortcut)
        assert list(source) == ["a page", "another page"] and source.spec == shortcut
    assert calls == [
        ("allenai/c4", "en", "train", True),
        ("Skylion007/openwebtext", None, "train", True),
        ("monology/pile-uncopyrighted", None, "train", True),
        ("wikimedia/wikipedia", "20231101.en", "train", True),
    ]
    assert open_source("c4").resolved == "hf:allenai/c4:en:train"
    open_source("hf:org/name:cfg:validation")
    assert calls[-1] == ("org/name", "cfg", "validation", True)


def test_missing_field_found_at_the_first_row_when_columns_are_unknown(monkeypatch):
    def rows():
        yield {"content": "words", "n": 1}

    unknown_columns = datasets.IterableDataset.from_generator(rows)  # like some Hub datasets: no features up front
    assert unknown_columns.column_names is None
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: unknown_columns)
    source = open_source("hf:org/name")  # nothing to check yet
    with pytest.raises(UserError, match=r"no 'text' field \(fields: content, n\); pass --text-field"):
        list(source)
    assert list(open_source("hf:org/name", text_field="content")) == ["words"]


def test_hub_unreachable_is_one_line_without_retry_noise(monkeypatch, caplog):
    def unreachable(*args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 8s [Retry 4/5].")
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    level = logging.getLogger("huggingface_hub").level
    with caplog.at_level(logging.WARNING), pytest.raises(UserError) as err:
        open_source("hf:org/name")
    message = str(err.value)
    assert "'org/name' is not a local folder" in message and "could not be reached" in message
    assert "not available offline" in message and "disk:DIR" in message
    assert not [record for record in caplog.records if record.name.startswith("huggingface_hub")]
    assert logging.getLogger("huggingface_hub").level == level  # put back as it was


def test_unknown_hub_dataset_is_one_line(monkeypatch):
    def not_found(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'org/typo' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset", not_found)
    with pytest.raises(UserError, match=r"source 'hf:org/typo': Dataset 'org/typo' doesn't exist .*check the name"):
        open_source("hf:org/typo")


def test_a_file_gone_while_streaming_is_one_line(data_folder):
    source = open_source(f"hf:{data_folder}", text_field="body")
    (data_folder / "part-b.jsonl").unlink()
    with pytest.raises(UserError, match="reading 'hf:.*' failed .*part-b.jsonl.*run again"):
        list(source)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("hf:", ["hf:DATASET[:CONFIG][:SPLIT]"]),
        ("hf:a:b:c:d", ["hf:DATASET[:CONFIG][:SPLIT]"]),
        ("hf:./no/such/folder", ["no folder './no/such/folder'"]),
        ("disk:", ["needs a folder"]),
    ],
)
def test_malformed_specs(spec, words):
    with pytest.raises(UserError) as err:
        open_source(spec)
    assert all(word in str(err.value) for word in words)


# ---------------------------------------------------------------- disk: and arrow:


def test_disk_reads_datasets_and_dataset_dicts(tmp_path):
    single = datasets.Dataset.from_dict({"text": ["only one", "only two"], "n": [1, 2]})
    single.save_to_disk(str(tmp_path / "single"))
    assert list(open_source(f"disk:{tmp_path / 'single'}")) == ["only one", "only two"]
    with pytest.raises(UserError, match="holds a single dataset, not splits; drop ':train'"):
        open_source(f"disk:{tmp_path / 'single'}:train")

    both = datasets.DatasetDict(
        {"train": single, "validation": datasets.Dataset.from_dict({"text": ["held out"], "n": [3]})}
    )
    both.save_to_disk(str(tmp_path / "dict"))
    assert list(open_source(f"disk:{tmp_path / 'dict'}")) == ["only one", "only two"]  # train by default
    assert list(open_source(f"disk:{tmp_path / 'dict'}:validation")) == ["held out"]
    with pytest.raises(UserError, match=r"no split 'test' \(splits: train, validation\)"):
        open_source(f"disk:{tmp_path / 'dict'}:test")

    datasets.DatasetDict({"validation": single}).save_to_disk(str(tmp_path / "valonly"))
    with pytest.raises(UserError, match=r"no split 'train' \(splits: validation\); name one, e.g. disk:.*:validation"):
        open_source(f"disk:{tmp_path / 'valonly'}")


def test_disk_refuses_what_save_to_disk_did_not_write(tmp_path, data_folder):
    with pytest.raises(UserError, match="no folder"):
        open_source(f"disk:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="not written by save_to_disk .* use hf:"):
        open_source(f"disk:{data_folder}")
    datasets.Dataset.from_dict({"text": ["x"]}).save_to_disk(str(tmp_path / "damaged"))
    for arrow in (tmp_path / "damaged").glob("*.arrow"):
        arrow.unlink()
    with pytest.raises(UserError, match="cannot load .*save the dataset again"):
        open_source(f"disk:{tmp_path / 'damaged'}")


def test_arrow_files_in_file_and_stream_format(tmp_path):
    table = pa.table({"text": ["arrow one", "", "arrow two"], "n": [1, 2, 3]})
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pa.OSFile(str(tmp_path / "b.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.slice(2))
    assert list(open_source(f"arrow:{tmp_path}/*.arrow")) == ["arrow one", "arrow two", "arrow two"]
    # The files save_to_disk writes are Arrow streams too.
    datasets.Dataset.from_dict({"text": ["from datasets"]}).save_to_disk(str(tmp_path / "saved"))
    assert list(open_source(f"arrow:{tmp_path}/saved/*.arrow")) == ["from datasets"]

    with pytest.raises(UserError, match=r"no column 'body' \(columns: text, n\)"):
        list(open_source(f"arrow:{tmp_path}/a.arrow", text_field="body"))
    (tmp_path / "junk.arrow").write_text("not arrow at all")
    with pytest.raises(UserError, match="'.*junk.arrow' is not a readable Arrow file"):
        list(open_source(f"arrow:{tmp_path}/junk.arrow"))


# ---------------------------------------------------------------- through the CLIs


@pytest.mark.slow
def test_convert_cli_reads_an_hf_folder_offline(tokenizer_dir, tmp_path):
    folder = tmp_path / "corpus"
    write_jsonl(folder / "docs.jsonl", [{"text": doc} for doc in synthetic_documents(200, seed=4)])
    out = tmp_path / "out"
    args = ["--source", f"hf:{folder}", "--tokenizer", tokenizer_dir, "--seq-len", "32", "--out", out]
    result = run_cli("data_prep/convert_dataset.py", *map(str, args), "--no-progress", env=OFFLINE, timeout=180)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["source"] == f"hf:{folder}" and manifest["documents_read"] == 200
    assert manifest["sources"][0]["resolved"] == f"hf:{folder}::train"


def test_train_tokenizer_cli_reads_a_saved_dataset(tmp_path):
    documents = list(synthetic_documents(300, seed=6))
    datasets.Dataset.from_dict({"content": documents}).save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "tokenizer"
    train_main = load_script_main(REPO / "data_prep" / "train_tokenizer.py")
    train_main(["--source", f"disk:{tmp_path / 'saved'}", "--text-field", "content", "--vocab-size", "200",
                "--out", str(out), "--no-progress"])  # fmt: skip
    assert (out / "tokenizer.json").is_file()


def bad_sources(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (--source and flags, words the error line must hold)."""
    write_jsonl(tmp_path / "jsonfolder" / "d.jsonl", [{"content": "words here", "meta": 1}])
    datasets.Dataset.from_dict({"content": ["a"], "id": [1]}).save_to_disk(str(tmp_path / "saved"))
    return {
        "hub name offline": (["--source", "hf:no-such-org/no-such-dataset"], ["not available offline", "disk:DIR"]),
        "shortcut offline": (["--source", "c4"], ["source 'c4'", "'allenai/c4' is not a local folder", "not available offline"]),
        "hf folder without the field": (
            ["--source", f"hf:{tmp_path / 'jsonfolder'}"],
            ["no 'text' field (fields: content, meta)", "--text-field"],
        ),
        "saved dataset without the field": (
            ["--source", f"disk:{tmp_path / 'saved'}", "--text-field", "body"],
            ["no 'body' field (fields: content, id)"],
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["hub name offline", "shortcut offline", "hf folder without the field", "saved dataset without the field"])
def test_bad_dataset_sources_give_one_line_and_no_output(tokenizer_dir, tmp_path, case):
    flags, words = bad_sources(tmp_path)[case]
    out = tmp_path / "out"
    args = [*flags, "--tokenizer", str(tokenizer_dir), "--out", str(out), "--no-progress"]
    assert_one_error_line(run_cli("data_prep/convert_dataset.py", *args, env=OFFLINE, timeout=120), *words)
    assert not out.exists() and not list(tmp_path.glob("out.*"))
    tokenizer_out = tmp_path / "tok"
    result = run_cli("data_prep/train_tokenizer.py", *flags, "--out", str(tokenizer_out), env=OFFLINE, timeout=120)
    assert_one_error_line(result, *words)
    assert not tokenizer_out.exists()


# ---------------------------------------------------------------- what datasets and pyarrow fail on, as one line


def json_lines(count: int, broken_at: int | None = None, broken: str = '{"text": "cut short') -> str:
    """`count` lines of JSON documents, line `broken_at` (1-based) replaced by `broken`."""
    lines = [json.dumps({"text": f"document {i} tells of the baker and the market"}) for i in range(count)]
    if broken_at is not None:
        lines[broken_at - 1] = broken
    return "\n".join(lines) + "\n"


def broken_json_folders(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (--source or --mix flags, the FILE:LINE the error must name)."""
    (tmp_path / "middle").mkdir()
    (tmp_path / "middle" / "a.jsonl").write_text(json_lines(150, broken_at=100))
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "a.jsonl").write_text(json_lines(40))
    (tmp_path / "second" / "b.jsonl").write_text(json_lines(40, broken_at=11, broken='{"text": 1,,}'))
    return {
        "middle of a file": (["--source", f"hf:{tmp_path / 'middle'}"], f"{tmp_path / 'middle' / 'a.jsonl'}:100"),
        "second file": (["--source", f"hf:{tmp_path / 'second'}"], f"{tmp_path / 'second' / 'b.jsonl'}:11"),
        "inside --mix": (
            ["--mix", "0.5", "synthetic:300", "--mix", "0.5", f"hf:{tmp_path / 'middle'}"],
            f"{tmp_path / 'middle' / 'a.jsonl'}:100",
        ),
    }


@pytest.mark.parametrize("case", ["middle of a file", "second file", "inside --mix"])
def test_a_malformed_json_line_in_an_hf_folder_is_one_line_naming_file_and_line(tokenizer_dir, tmp_path, case):
    flags, where = broken_json_folders(tmp_path)[case]
    out = tmp_path / "out"
    result = run_cli("data_prep/convert_dataset.py", *flags, "--tokenizer", tokenizer_dir, "--out", out, "--no-progress",
                     env=OFFLINE, timeout=120)  # fmt: skip
    assert_one_error_line(result, f"{where} is not valid JSON", "fix or remove that line")
    assert not out.exists() and not list(tmp_path.glob("out.*"))
    if case != "inside --mix":  # train_tokenizer.py takes one source
        tokenizer_out = tmp_path / "tok"
        result = run_cli("data_prep/train_tokenizer.py", *flags, "--vocab-size", 300, "--out", tokenizer_out,
                         "--no-progress", env=OFFLINE, timeout=120)  # fmt: skip
        assert_one_error_line(result, f"{where} is not valid JSON", "fix or remove that line")
        assert not tokenizer_out.exists()


def test_the_same_bad_line_reads_the_same_through_hf_and_jsonl(tmp_path):
    (tmp_path / "a.jsonl").write_text(json_lines(150, broken_at=100))
    messages = []
    for spec in (f"hf:{tmp_path}", f"jsonl:{tmp_path}/a.jsonl"):
        with pytest.raises(UserError) as err:
            list(open_source(spec))
        messages.append(str(err.value))
    where = tmp_path / "a.jsonl"
    assert messages[0] == messages[1] == (
        f"{where}:100 is not valid JSON (Unterminated string starting at column 10); fix or remove that line"
    )


def test_datasets_failures_on_other_files_name_the_file_and_print_nothing_else(tmp_path, capsys):
    (tmp_path / "utf8").mkdir()
    (tmp_path / "utf8" / "a.jsonl").write_bytes(json_lines(20).encode() + b'{"text": "caf\xe9"}\n')
    (tmp_path / "array").mkdir()
    (tmp_path / "array" / "a.json").write_text('[\n  {"text": "one"},\n  {"text": "two"},,\n  {"text": "three"}\n]\n')
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "a.csv").write_text('text,id\n"hello",1\n"cut short,2\n')
    (tmp_path / "parquet").mkdir()
    (tmp_path / "parquet" / "a.parquet").write_bytes(b"PAR1 not really parquet")
    expected = {
        "utf8": f"{tmp_path / 'utf8' / 'a.jsonl'}:21 is not UTF-8 (byte 0xe9 at column 14)",
        "array": f"{tmp_path / 'array' / 'a.json'}:3 is not valid JSON",
        "csv": f"through Hugging Face datasets failed: '{tmp_path / 'csv' / 'a.csv'}' is unreadable (Error tokenizing",
        "parquet": f"could not open 'hf:{tmp_path / 'parquet'}' through Hugging Face datasets: '{tmp_path / 'parquet' / 'a.parquet'}' is unreadable",
    }
    for name, words in expected.items():
        with pytest.raises(UserError) as err:
            list(open_source(f"hf:{tmp_path / name}"))
        assert words in str(err.value) and "\n" not in str(err.value), name
    captured = capsys.readouterr()
    assert captured.err == captured.out == ""  # datasets' own "Failed to load JSON from file ..." is kept back


def test_damaged_parquet_and_arrow_files_are_one_line(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["parquet one", "parquet two"] * 500}), tmp_path / "good.parquet", row_group_size=100)
    data = (tmp_path / "good.parquet").read_bytes()
    middle = len(data) // 2
    (tmp_path / "damaged.parquet").write_bytes(data[:middle] + bytes(64) + data[middle + 64 :])  # a page overwritten
    with pytest.raises(UserError, match=r"damaged.parquet' (is not a readable parquet file|\()") as err:
        list(open_source(f"parquet:{tmp_path}/damaged.parquet"))
    assert "\n" not in str(err.value)
    table = pa.table({"text": ["arrow one"]})
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (tmp_path / "cut.arrow").write_bytes((tmp_path / "a.arrow").read_bytes()[:-40])
    with pytest.raises(UserError, match="cut.arrow' is not a readable Arrow file") as err:
        list(open_source(f"arrow:{tmp_path}/cut.arrow"))
    assert "\n" not in str(err.value)


def test_hf_and_disk_rows_without_text_are_counted_by_reason(tokenizer_dir, tmp_path):
    from composer_bert.data.prep.packing import ConvertOptions, convert_dataset

    documents = list(synthetic_documents(60, seed=8))
    write_jsonl(tmp_path / "folder" / "a.jsonl", [{"text": row} for row in rows_with_gaps(documents, typed=False)])
    typed = rows_with_gaps(documents, typed=True)
    datasets.Dataset.from_dict({"text": typed}).save_to_disk(str(tmp_path / "saved"))
    datasets.Dataset.from_dict({"text": [1, 2, 3], "body": ["x"] * 3}).save_to_disk(str(tmp_path / "numbers"))
    options = ConvertOptions(seq_len=32, workers=1, progress=False)
    cases = ((f"hf:{tmp_path / 'folder'}", SKIPPED), (f"disk:{tmp_path / 'saved'}", {**SKIPPED, "not_text": 0}))
    for spec, skipped in cases:
        manifest = convert_dataset(open_source(spec), tokenizer_dir, tmp_path / spec[:4], options)
        assert manifest["skipped_rows"] == skipped and manifest["documents_read"] == 60, spec
    with pytest.raises(UserError, match=r"none of its 3 rows holds text .*\(0 null text, 3 not text \(e.g. int\)"):
        numbers = open_source(f"disk:{tmp_path / 'numbers'}")
        checked_documents(numbers, numbers)
