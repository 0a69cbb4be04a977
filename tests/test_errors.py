"""Every argparse script refuses a bad or missing argument in one `error:` line (errors.ArgumentParser), as its
other refusals, instead of argparse's usage block followed by its message."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import REPO, cli_error

SCRIPTS_AND_BAD_ARGUMENTS = [
    ("data_prep/convert_dataset.py", ["--source", "synthetic", "--tokenizer", "t", "--out", "o", "--max-token-ratio", "autox"],
     "argument --max-token-ratio: 'autox' is neither a number nor 'auto'"),
    ("data_prep/convert_dataset.py", ["--source", "synthetic", "--tokenizer", "t", "--out", "o", "--seq-len", "1e3"],
     "argument --seq-len: invalid int value: '1e3'"),
    ("data_prep/train_tokenizer.py", ["--source", "synthetic"], "the following arguments are required: --out"),
    ("data_prep/synthetic_questions.py", ["--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
    ("data_prep/verify_shards.py", [], "the following arguments are required"),
    ("recipes/export_hf.py", ["--checkpoint", "x.pt"], "the following arguments are required: --out"),
    ("recipes/compare_runs.py", [], "the following arguments are required"),
    ("benchmarks/gpu_check.py", ["--budget", "ten"], "argument --budget: invalid float value: 'ten'"),
]  # fmt: skip


@pytest.mark.parametrize("script, args, words", SCRIPTS_AND_BAD_ARGUMENTS, ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_argument_is_one_line_naming_it_and_help(capsys, monkeypatch, script, args, words):
    monkeypatch.setattr(sys, "argv", [script])  # as when the script runs: argparse names the program after it,
    monkeypatch.syspath_prepend(str(REPO / script.split("/")[0]))  # and its folder is on the path
    line = cli_error(capsys, script, *args)
    assert words in line, line
    assert line.rstrip().endswith(f"see {script.split('/')[-1]} --help"), line
