"""The data_prep CLIs against real OS failures: an unreadable input, a full disk, a file size limit.

Each must end in one `error:` line and leave nothing behind that could pass for finished output. The
failures are real: permissions with root's bypass dropped (setpriv), a tiny tmpfs in a private mount
namespace (unshare), and RLIMIT_FSIZE.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from composer_bert.data.prep.sources import open_source
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.errors import UserError
from tests.data.shard_helpers import save_synthetic_tokenizer
from tests.helpers import REPO, assert_one_error_line, missing_capability

CONVERT = [sys.executable, str(REPO / "data_prep" / "convert_dataset.py"), "--no-progress"]
TRAIN_TOKENIZER = [sys.executable, str(REPO / "data_prep" / "train_tokenizer.py"), "--no-progress"]
# In a fresh mount namespace ($0 = size, $1 = mount point): mount a tmpfs, run the command, list what it left.
ON_TMPFS = 'mount -t tmpfs -o size="$0" tmpfs "$1" || exit 99; disk="$1"; shift; "$@"; rc=$?; ls -A "$disk"; exit $rc'


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return save_synthetic_tokenizer(tmp_path_factory.mktemp("tokenizer"), documents=1000, vocab_size=1024)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180, **kwargs)


def without_permission_bypass() -> list[str]:
    """A command prefix under which file permissions hold: root's CAP_DAC_* bypass is dropped for the child."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        missing_capability("running as root, and setpriv (to drop CAP_DAC_OVERRIDE) is not installed")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def on_small_tmpfs(disk: Path, size: str, command: list[str]) -> subprocess.CompletedProcess:
    """Run `command` with a `size` tmpfs mounted at `disk`, in a private mount namespace (nothing to unmount)."""
    disk.mkdir()
    if shutil.which("unshare") is None:
        missing_capability("unshare (util-linux) is not installed: no private mount namespace for a small tmpfs")
    probe = run(["unshare", "--map-root-user", "--mount", "sh", "-c", ON_TMPFS, "64k", str(disk), "true"])
    if probe.returncode != 0:
        missing_capability(f"cannot mount a tmpfs in a private mount namespace here: {probe.stderr.strip()}")
    return run(["unshare", "--map-root-user", "--mount", "sh", "-c", ON_TMPFS, size, str(disk), *command])


@pytest.mark.parametrize("cli", ["convert_dataset", "train_tokenizer"])
def test_unreadable_input_file_is_one_line_and_leaves_nothing(cli, tokenizer_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(synthetic_documents(50, seed=0)))
    corpus.chmod(0)
    out = tmp_path / "out"
    if cli == "convert_dataset":
        command = [*CONVERT, "--source", f"text:{corpus}", "--tokenizer", str(tokenizer_dir), "--out", str(out)]
    else:
        command = [*TRAIN_TOKENIZER, "--source", f"text:{corpus}", "--vocab-size", "400", "--out", str(out)]
    assert_one_error_line(run([*without_permission_bypass(), *command]), f"cannot read '{corpus}'", "Permission denied")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]


def test_a_file_gone_since_the_glob_is_one_line(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("one document\n\nanother document\n")
    source = open_source(f"text:{tmp_path}/*.txt")
    (tmp_path / "b.txt").unlink()
    with pytest.raises(UserError, match=r"cannot read '.*b\.txt' \(No such file or directory\)"):
        list(source)


@pytest.mark.slow
def test_full_disk_while_writing_shards_is_one_line_and_leaves_nothing(tokenizer_dir, tmp_path):
    disk = tmp_path / "disk"
    out = disk / "shards"
    args = ["--source", "synthetic:6000", "--tokenizer", str(tokenizer_dir), "--seq-len", "64", "--no-ratio-filter"]
    result = on_small_tmpfs(disk, "512k", [*CONVERT, *args, "--out", str(out)])  # the shards need ~1.9 MB
    assert_one_error_line(result, f"cannot write shards to '{out}'", "No space left on device", "free some space")
    assert result.stdout == ""  # what the run left on the tmpfs: nothing, not even a staging directory


def test_full_disk_while_saving_a_tokenizer_is_one_line_and_leaves_nothing(tmp_path):
    disk = tmp_path / "disk"
    out = disk / "tokenizer"
    args = ["--source", "synthetic:3000", "--vocab-size", "1024", "--out", str(out)]
    result = on_small_tmpfs(disk, "16k", [*TRAIN_TOKENIZER, *args])  # tokenizer.json alone is ~22 kB
    assert_one_error_line(result, f"cannot write the tokenizer to '{out}'", "No space left on device")
    assert result.stdout == ""


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))


@pytest.mark.slow
def test_file_size_limit_while_writing_shards_is_one_line_and_leaves_nothing(tokenizer_dir, tmp_path):
    out = tmp_path / "shards"
    args = ["--source", "synthetic:6000", "--tokenizer", str(tokenizer_dir), "--seq-len", "64", "--no-ratio-filter"]
    result = run([*CONVERT, *args, "--out", str(out)], preexec_fn=_limit_file_size)
    assert_one_error_line(result, f"cannot write shards to '{out}'", "File too large", "ulimit -f")
    assert list(tmp_path.iterdir()) == []
