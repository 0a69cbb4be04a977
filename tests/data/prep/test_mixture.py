"""Prep-time mixtures (--mix): the choice of source, byte-identical output across runs and worker counts, the
manifest's per-source counts, and the one-line errors for bad proportions and unusable sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer_bert.data.contract import read_manifest
from composer_bert.data.prep import encoding
from composer_bert.data.prep.mixture import SourceTally, interleave
from composer_bert.data.prep.synthetic import synthetic_documents
from tests.data.shard_helpers import kept_documents, reference_cutoff, tree_hashes
from tests.helpers import REPO, assert_one_error_line, load_script_main, run_cli

SEQ_LEN = 32
SHORT_DOC = "The baker lives in the market."  # 7 tokens: under --min-tokens 8
A_SPEC = "synthetic:2000"  # plentiful
A_FIRST = next(synthetic_documents(1, seed=0))


def test_interleave_takes_the_source_furthest_below_its_share():
    tallies = [SourceTally(), SourceTally()]
    streams = [iter([("a", 30)] * 10), iter([("b", 10)] * 4)]
    order = []
    for index, (name, tokens) in interleave(streams, [0.5, 0.5], tallies):
        order.append(name)
        tallies[index].tokens += tokens  # what packing does once the chunk is filtered
    # a first (a tie: the one listed first), then whichever has fewer kept tokens for its share...
    assert order == ["a", "b", "b", "b", "a", "b"]
    # ...until b, the one behind (40 < 60), has run out: the mixture stops there, within a chunk of its shares.
    assert [t.exhausted for t in tallies] == [False, True]
    assert [t.tokens for t in tallies] == [60, 40]


@pytest.fixture
def scarce_folder(tmp_path) -> tuple[Path, list[str]]:
    """The scarce source: an hf: folder of jsonl, with a short document and two duplicates planted in it."""
    documents = list(synthetic_documents(150, seed=9))
    documents = documents[:40] + [SHORT_DOC, A_FIRST, documents[3]] + documents[40:]
    folder = tmp_path / "scarce"
    folder.mkdir()
    (folder / "docs.jsonl").write_text("".join(json.dumps({"text": doc}) + "\n" for doc in documents))
    return folder, documents


def convert(tokenizer_dir: Path, out: Path, *flags: str) -> dict:
    """The convert CLI in-process (the pool forks from here): a subprocess would pay torch's import each time."""
    main = load_script_main(REPO / "data_prep" / "convert_dataset.py")
    main([*flags, "--tokenizer", str(tokenizer_dir), "--seq-len", str(SEQ_LEN), "--out", str(out), "--no-progress"])
    return read_manifest(out)


def expected_counts(documents: list[str], tokenizer_dir: Path, seen: set[str], max_ratio: float) -> dict[str, int]:
    """Plain-Python filters for one fully read source (default --min-tokens), de-duplicating against `seen`."""
    counts = dict.fromkeys(("ratio_dropped", "too_short_dropped", "duplicate_dropped", "documents", "tokens"), 0)
    for _, ids in kept_documents(documents, tokenizer_dir, seen, counts, max_ratio):
        counts["documents"] += 1
        counts["tokens"] += len(ids) + 1
    return counts


def test_mixture_is_byte_identical_across_runs_and_workers(tokenizer_dir, tmp_path, scarce_folder, monkeypatch):
    monkeypatch.setattr(encoding, "_CHUNK_CHARS", 2048)  # many chunks per source, so the interleave really runs
    folder, _ = scarce_folder
    mix = ["--mix", "0.6", A_SPEC, "--mix", "0.4", f"hf:{folder}"]
    hashes = []
    for name, workers in (("w1", "1"), ("w2", "2"), ("w2again", "2")):
        convert(tokenizer_dir, tmp_path / name, *mix, "--workers", workers)
        hashes.append(tree_hashes(tmp_path / name))
    assert hashes[0] == hashes[1] == hashes[2]
    assert {"manifest.json", "train/index.json", "val/index.json"} <= set(hashes[0])


def test_manifest_counts_each_source(tokenizer_dir, tmp_path, scarce_folder, monkeypatch, capsys):
    monkeypatch.setattr(encoding, "_CHUNK_CHARS", 2048)
    folder, scarce_documents = scarce_folder
    manifest = convert(tokenizer_dir, tmp_path / "out", "--mix", "0.6", A_SPEC, "--mix", "0.4", f"hf:{folder}")
    plentiful, scarce = manifest["sources"]
    assert (plentiful["source"], scarce["source"]) == (A_SPEC, f"hf:{folder}")
    assert scarce["resolved"] == f"hf:{folder}::train" and manifest["source"] == f"0.6 {A_SPEC} + 0.4 hf:{folder}"
    assert (plentiful["proportion"], scarce["proportion"]) == (0.6, 0.4)
    # The scarce source ran out, so every one of its documents is counted, exactly as a plain reference does.
    assert scarce["exhausted"] and not plentiful["exhausted"]
    assert scarce["documents_read"] == len(scarce_documents)
    # One ratio cutoff for the mixture: 1.5 x the median of every source's start (here each whole source) pooled.
    cutoff = manifest["filters"]["ratio_cutoff"]
    assert cutoff == reference_cutoff(list(synthetic_documents(2000, seed=0)) + scarce_documents, tokenizer_dir)
    expected = expected_counts(scarce_documents, tokenizer_dir, {" ".join(A_FIRST.lower().split())}, cutoff)
    assert expected["too_short_dropped"] == 1 and expected["duplicate_dropped"] == 2  # the planted documents
    assert {**scarce["filters"], "documents": scarce["documents"], "tokens": scarce["tokens"]} == expected
    # The plentiful one stopped part way, each of its documents accounted for.
    assert 0 < plentiful["documents_read"] < 2000
    assert plentiful["documents_read"] == plentiful["documents"] + sum(plentiful["filters"].values())
    # Shares of the kept tokens land within about a chunk of the proportions asked for.
    total = plentiful["tokens"] + scarce["tokens"]
    assert plentiful["share"] == round(plentiful["tokens"] / total, 6)
    assert abs(plentiful["share"] - 0.6) < 0.05 and abs(scarce["share"] - 0.4) < 0.05
    # Totals agree with the per-source counts and with the rows written.
    assert manifest["documents_read"] == plentiful["documents_read"] + scarce["documents_read"]
    for name in ("ratio_dropped", "too_short_dropped", "duplicate_dropped"):
        assert manifest["filters"][name] == plentiful["filters"][name] + scarce["filters"][name]
    splits = manifest["splits"]
    assert splits["train"]["documents"] + splits["val"]["documents"] == plentiful["documents"] + scarce["documents"]
    rows = splits["train"]["rows"] + splits["val"]["rows"]
    assert total == rows * (SEQ_LEN - 1) + manifest["dropped_tail_tokens"]
    stderr = capsys.readouterr().err
    assert f"stopped when hf:{folder} ran out" in stderr and "(asked 0.6)" in stderr


def test_max_documents_caps_each_source(tokenizer_dir, tmp_path, scarce_folder):
    folder, _ = scarce_folder
    manifest = convert(
        tokenizer_dir, tmp_path / "out", "--mix", "0.5", A_SPEC, "--mix", "0.5", f"hf:{folder}", "--max-documents", "40"
    )
    read = [entry["documents_read"] for entry in manifest["sources"]]
    assert max(read) <= 40 and manifest["max_documents"] == 40
    assert [entry["documents_read"] for entry in manifest["sources"] if entry["exhausted"]] == [40]


def bad_mixtures(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (--mix flags, words the error line must hold)."""
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "short.txt").write_text("\n\n".join([SHORT_DOC, "Too short as well."]))
    return {
        "sum below 1": (["--mix", "0.7", A_SPEC, "--mix", "0.2", "synthetic:50"], ["sum to 0.9 (0.7 + 0.2), not 1"]),
        "sum above 1": (["--mix", "0.7", A_SPEC, "--mix", "0.7", "synthetic:50"], ["sum to 1.4", "add up to 1"]),
        "not a number": (["--mix", "most", A_SPEC], ["proportion comes first", "must be a number"]),
        "negative": (["--mix", "1.5", A_SPEC, "--mix", "-0.5", "synthetic:50"], ["-0.5 must be a positive share"]),
        "listed twice": (["--mix", "0.5", A_SPEC, "--mix", "0.5", A_SPEC], ["listed twice"]),
        "empty source": (["--mix", "0.5", A_SPEC, "--mix", "0.5", f"text:{tmp_path}/empty.txt"], ["has no documents"]),
        "all filtered": (
            ["--mix", "0.5", A_SPEC, "--mix", "0.5", f"text:{tmp_path}/short.txt"],
            ["no documents of source 'text:", "survived the filters", "shorter than 8 tokens"],
        ),
    }


@pytest.mark.parametrize(
    "case", ["sum below 1", "sum above 1", "not a number", "negative", "listed twice", "empty source", "all filtered"]
)
@pytest.mark.slow
def test_bad_mixture_gives_one_line_and_no_output(tokenizer_dir, tmp_path, case):
    flags, words = bad_mixtures(tmp_path)[case]
    out = tmp_path / "out"
    args = [*flags, "--tokenizer", str(tokenizer_dir), "--out", str(out), "--no-progress", "--workers", "1"]
    assert_one_error_line(run_cli("data_prep/convert_dataset.py", *args, timeout=180), *words)
    assert not out.exists() and not list(tmp_path.glob("out.*"))
