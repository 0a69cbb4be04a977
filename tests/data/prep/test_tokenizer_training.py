"""Tokenizer training: fixed special ids, BERT post-processing, byte-level round trips, offline AutoTokenizer, the
CLI's contract."""

from __future__ import annotations

import os
import queue
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from composer_bert.data.prep.sources import limit_documents, open_source
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.data.prep.tokenizer_training import save_pretrained_fast, train_tokenizer
from tests.helpers import REPO, assert_one_error_line, load_script_main, run_cli

TRAIN_CLI = REPO / "data_prep" / "train_tokenizer.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
TEXT_CORPUS = (
    "The quick brown fox jumps over the lazy dog.\nIt was a sunny day.\n\n"
    "Café owners in Zürich serve naïve crème brûlée.\n\n"
    "Tokenizers split words into pieces; pieces become ids, and ids become vectors.\n\n"
) * 30


def train_cli(*args: str | Path | int) -> subprocess.CompletedProcess:
    return run_cli(TRAIN_CLI, *args, "--no-progress", env=OFFLINE, timeout=120)


@pytest.fixture(scope="module")
def synthetic_tokenizer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "synthetic_wordpiece"
    save_pretrained_fast(train_tokenizer(synthetic_documents(2000, seed=0), 1000, progress=False), out)
    return out


@pytest.fixture()
def text_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT_CORPUS, encoding="utf-8")
    return path


def test_wordpiece_on_synthetic_loads_offline_with_bert_conventions(synthetic_tokenizer_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(synthetic_tokenizer_dir))
    assert len(tokenizer) == 1000
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_IDS} == SPECIAL_IDS
    assert (
        tokenizer.pad_token,
        tokenizer.unk_token,
        tokenizer.cls_token,
        tokenizer.sep_token,
        tokenizer.mask_token,
    ) == (
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    )
    assert tokenizer.model_max_length == 512

    text = "The Baker from Seellfield has 3 red boats."
    single = tokenizer(text)["input_ids"]
    assert single[0] == 2 and single[-1] == 3 and 1 not in single  # [CLS] ... [SEP], nothing unknown
    assert tokenizer.decode(single, skip_special_tokens=True) == text.lower()

    pair = tokenizer("Who is the baker?", "The baker is Mara.")
    ids, types = pair["input_ids"], pair["token_type_ids"]
    assert ids[0] == 2 and ids.count(3) == 2 and ids[-1] == 3
    first_sep = ids.index(3)
    assert set(types[: first_sep + 1]) == {0} and set(types[first_sep + 1 :]) == {1}


def test_normalizer_lowercases_and_strips_accents(synthetic_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(synthetic_tokenizer_dir))
    assert tokenizer.tokenize("BAKER") == tokenizer.tokenize("baker")
    assert tokenizer.tokenize("Bákér") == tokenizer.tokenize("baker")


def test_bpe_on_text_file_round_trips(text_file):
    source = open_source(f"text:{text_file}")
    tokenizer = train_tokenizer(source, 300, model="bpe", progress=False)
    assert [tokenizer.token_to_id(token) for token in SPECIAL_IDS] == [0, 1, 2, 3, 4]
    text = "The quick brown fox serves crème brûlée."
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == 2 and encoding.ids[-1] == 3
    decoded = tokenizer.decode(encoding.ids)
    # BPE with the BERT pre-tokenizer rejoins words with spaces, so compare without whitespace.
    assert "".join(decoded.split()) == "".join("the quick brown fox serves creme brulee.".split())


def test_bytelevel_keeps_every_text_and_the_space_before_a_continuation(text_file):
    tokenizer = train_tokenizer(open_source(f"text:{text_file}"), 400, model="bytelevel", progress=False)
    assert [tokenizer.token_to_id(token) for token in SPECIAL_IDS] == [0, 1, 2, 3, 4]
    assert 261 < tokenizer.get_vocab_size() <= 400  # all 256 bytes and the specials, then merges
    text = "The QUICK  fox\tserves crème brûlée. 😀\nNew line"  # case, runs of spaces, tabs, unseen characters
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == 2 and encoding.ids[-1] == 3 and 1 not in encoding.ids  # no [UNK]: bytes cover all
    assert tokenizer.decode(encoding.ids) == text
    ids = tokenizer.encode("the quick brown fox", add_special_tokens=False).ids
    split = len(tokenizer.encode("the quick", add_special_tokens=False).ids)
    assert "the quick" + tokenizer.decode(ids[split:]) == "the quick brown fox"  # a continuation keeps its space


def test_cli_trains_refuses_to_overwrite_then_replaces(text_file, tmp_path, capsys):
    train_main = load_script_main(TRAIN_CLI)  # in-process: a subprocess would pay the transformers import again
    out = tmp_path / "tok"
    train_main(["--source", f"text:{text_file}", "--vocab-size", "400", "--out", str(out), "--no-progress"])
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert "from 90 documents" in capsys.readouterr().err  # 3 paragraphs x 30 repetitions

    again = train_cli("--source", f"text:{text_file}", "--vocab-size", 400, "--out", out)
    assert_one_error_line(again, str(out), "--overwrite")

    before = (out / "tokenizer.json").read_bytes()
    train_main(
        ["--source", "synthetic:500", "--max-documents", "50", "--vocab-size", "30000", "--model", "bpe",
         "--out", str(out), "--overwrite", "--no-progress"]
    )  # fmt: skip
    stderr = capsys.readouterr().err
    assert "from 50 documents" in stderr
    assert "yielded only" in stderr  # 50 documents cannot fill 30000 tokens, and the user is told
    assert (out / "tokenizer.json").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "tok"]  # no temporary or old dirs left


def test_cli_out_that_is_a_file_is_named_as_one(text_file, tmp_path):
    for overwrite in ([], ["--overwrite"]):
        result = train_cli("--source", f"text:{text_file}", "--vocab-size", 400, "--out", text_file, *overwrite)
        assert_one_error_line(result, str(text_file), "is a file", "directory")
    assert text_file.read_text(encoding="utf-8") == TEXT_CORPUS and [p.name for p in tmp_path.iterdir()] == ["corpus.txt"]


def test_cli_counts_rows_without_text_and_refuses_a_source_without_any(tmp_path, capsys):
    import json

    documents = list(synthetic_documents(100, seed=3))
    rows = [{"text": doc if i % 2 else None} for i, doc in enumerate(documents)] + [{"text": 5}, {"text": " "}]
    (tmp_path / "half.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "tok"
    load_script_main(TRAIN_CLI)(["--source", f"jsonl:{tmp_path}/half.jsonl", "--vocab-size", "300", "--out", str(out),
                                 "--no-progress"])  # fmt: skip
    assert "from 50 documents (rows without text: 50 null text, 1 not text (e.g. int), 1 empty text)" in capsys.readouterr().err

    (tmp_path / "nulls.jsonl").write_text('{"text": null}\n' * 10)
    refused = train_cli("--source", f"jsonl:{tmp_path}/nulls.jsonl", "--vocab-size", 300, "--out", tmp_path / "none")
    assert_one_error_line(refused, "has no usable text", "none of its 10 rows", "10 null text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.jsonl", "nulls.jsonl", "tok"]


def test_limit_documents_caps_count_and_bytes():
    documents = ["a" * 100] * 10
    assert len(list(limit_documents(documents, max_documents=3))) == 3
    assert len(list(limit_documents(documents, max_bytes=250))) == 3  # stops once 250 bytes have been taken
    assert len(list(limit_documents(documents))) == 10


@pytest.mark.parametrize(
    "source, words",
    [
        ("text:/nonexistent/*.txt", ["no files match"]),
        ("bookcorpus", ["unknown source", "synthetic"]),
        ("synthetic:zero", ["positive document count"]),
    ],
)
def test_cli_bad_source_is_one_line_and_leaves_nothing(tmp_path, source, words):
    out = tmp_path / "tok"
    assert_one_error_line(train_cli("--source", source, "--vocab-size", 400, "--out", out), *words)
    assert not list(tmp_path.iterdir())


def test_cli_empty_text_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n\n")
    out = tmp_path / "tok"
    assert_one_error_line(train_cli("--source", f"text:{empty}", "--vocab-size", 400, "--out", out), "no documents")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]


def test_cli_refuses_a_tiny_vocabulary(tmp_path):
    out = tmp_path / "tok"
    assert_one_error_line(train_cli("--source", "synthetic:10", "--vocab-size", 10, "--out", out), "--vocab-size 10")
    refused = train_cli("--source", "synthetic:10", "--vocab-size", 200, "--model", "bytelevel", "--out", out)
    assert_one_error_line(refused, "--vocab-size 200", "bytelevel", "at least 261")  # 256 bytes + 5 specials
    huge = train_cli("--source", "synthetic:10", "--vocab-size", 2**32, "--out", out)  # aborted asking for 283 GB
    assert_one_error_line(huge, "--vocab-size 4294967296 is more than the 4,194,304 this trainer accepts")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def write_many_word_corpus(path: Path, distinct_words: int = 300_000, words: int = 1_000_000) -> Path:
    """~8 MB of random words: read in seconds, but WordPiece then computes merges for many seconds more."""
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = rng.integers(3, 12, size=distinct_words)
    vocabulary = [
        w.tobytes() for w in np.split(letters[rng.integers(0, 26, size=lengths.sum())], lengths.cumsum()[:-1])
    ]
    text = [vocabulary[i] for i in rng.integers(0, distinct_words, size=words)]
    path.write_bytes(b"".join(b" ".join(text[i : i + 50]) + b".\n\n" for i in range(0, words, 50)))
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the running process `pid` has used so far, all its threads together (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def reaped_cpu_seconds() -> float:
    """User + system CPU time of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pump(stream, chunks: queue.Queue[bytes]) -> None:
    while chunk := stream.read1(4096):
        chunks.put(chunk)
    chunks.put(b"")


@pytest.mark.parametrize("phase", ["reading", "computing"])
def test_ctrl_c_stops_training_promptly_and_leaves_nothing(tmp_path, phase):
    """Ctrl-C while documents are read, and once the Rust trainer computes merges without returning to Python."""
    # 16 MB: read in ~3 s, then ~15 s of CPU computing merges; the corpus outlasts the test, which never waits for it
    corpus = write_many_word_corpus(tmp_path / "corpus.txt", distinct_words=1_000_000, words=2_000_000)
    out = tmp_path / "tok"
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_CLI), "--source", f"text:{corpus}", "--vocab-size", "32768", "--out", str(out)],
        stderr=subprocess.PIPE,
        env={**os.environ, **OFFLINE},
    )
    chunks: queue.Queue[bytes] = queue.Queue()  # stderr as it comes, then b"" at its end
    threading.Thread(target=_pump, args=(process.stderr, chunks), daemon=True).start()
    stderr = b""
    # The progress bar is drawn as documents are read, and ends its line once the last one is.
    started_phase = re.compile(rb"reading documents" if phase == "reading" else rb"reading documents[^\n]*\n")
    try:
        deadline = time.monotonic() + 120
        while not started_phase.search(stderr):
            stderr += chunks.get(timeout=max(0.0, deadline - time.monotonic()))
        time.sleep(0.5)
        assert process.poll() is None, f"training ended before the interrupt: the corpus is too small for {phase}"
        reaped, used = reaped_cpu_seconds(), cpu_seconds(process.pid)
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=60)  # only a hang bound: a run that sat out the training would end too
        used_after_interrupt = reaped_cpu_seconds() - reaped - used
    finally:
        process.kill()
        process.wait()
    stderr += b"".join(iter(lambda: chunks.get(timeout=10), b""))
    lines = stderr.decode().splitlines()
    assert returncode == 130 and lines[-1] == "interrupted", stderr.decode()[-2000:]
    assert "panicked" not in stderr.decode() and "Traceback" not in stderr.decode()
    # Promptly: little work after Ctrl-C. Counted in CPU time, which a busy machine does not stretch as it does
    # wall-clock time: under 0.35 s on a quiet machine, against ~15 s for the training this corpus still has at
    # either interrupt point (what a process that let the trainer finish uses; ~11 s of wall-clock time).
    assert used_after_interrupt < 4, f"the process used {used_after_interrupt:.1f} s of CPU after Ctrl-C"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]
