"""Damaged shard roots fail in one line that names the file and says to rebuild, through the loader's entry
points and the pretraining CLI; a split smaller than one global batch is refused when the loader is built;
data_prep/verify_shards.py finds what only a hash can (one changed byte).

Each test damages a copy of the session's tiny shards (built by the real data_prep CLIs).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from composer_bert.data.load import loader
from composer_bert.data.load.config import DataConfig
from composer_bert.errors import UserError
from tests.data.shard_helpers import split_dataspec, split_loader
from tests.helpers import REPO, assert_one_error_line, load_script_main, run_cli, tiny_args

REBUILD = "rebuild the shards with data_prep/convert_dataset.py"


@pytest.fixture()
def shards(tiny_shards, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_shards, tmp_path / "shards"))


def first_shard(root: Path, split: str = "train") -> Path:
    index = json.loads((root / split / "index.json").read_text())
    return root / split / index["shards"][0]["raw_data"]["basename"]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def overwrite_first_kib(data: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with open(path, "r+b") as file:
            file.write(data)

    return damage


# case -> (damage done to the shard root, what is named in the error, other words the error must hold)
DAMAGE: dict[str, tuple[Callable[[Path], None], Callable[[Path], Path], list[str]]] = {
    "shard truncated": (lambda r: truncate(first_shard(r)), first_shard, ["truncated"]),
    "shard's first KiB random": (
        lambda r: overwrite_first_kib(os.urandom(1024))(first_shard(r)),
        first_shard,
        ["damaged"],
    ),
    "shard's first KiB zeroed": (lambda r: overwrite_first_kib(bytes(1024))(first_shard(r)), first_shard, ["damaged"]),
    "shard missing": (lambda r: first_shard(r).unlink(), first_shard, ["missing"]),
    "index.json not JSON": (
        lambda r: (r / "train" / "index.json").write_text('{"shards": ['),
        lambda r: r / "train" / "index.json",
        ["not valid JSON"],
    ),
    "index.json a list": (
        lambda r: (r / "train" / "index.json").write_text("[]"),
        lambda r: r / "train" / "index.json",
        ["not a streaming index"],
    ),
    "manifest.json a list": (
        lambda r: (r / "manifest.json").write_text('[{"format_version": 1}]'),
        lambda r: r / "manifest.json",
        ["JSON list"],
    ),
    "manifest.json not JSON": (
        lambda r: (r / "manifest.json").write_text('{"format_version": 1,'),
        lambda r: r / "manifest.json",
        ["not valid JSON"],
    ),
    "manifest.json vocab_size not a number": (
        lambda r: (r / "manifest.json").write_text(
            (r / "manifest.json").read_text().replace('"vocab_size": 1024', '"vocab_size": "1024"')
        ),
        lambda r: r / "manifest.json",
        ["tokenizer.vocab_size"],
    ),
}


def build(root: Path, entry_point: str, **cfg):
    build_fn = split_loader if entry_point == "dataloader" else split_dataspec
    return build_fn(
        DataConfig(local=str(root), **{"num_workers": 0, **cfg}),
        split="train",
        device_batch_size=8,
        seed=0,
        vocab_size=None,
    )


def assert_names(err: pytest.ExceptionInfo, named: Path, words: list[str]) -> None:
    message = str(err.value)
    assert "\n" not in message and f"'{named}'" in message and REBUILD in message, message
    for word in words:
        assert word in message, message


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["dataloader", "dataspec"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_one_line_naming_the_file(shards, case, entry_point):
    damage, named, words = DAMAGE[case]
    built = build(shards, entry_point)  # whole, the copy loads
    assert next(iter(built.dataloader if entry_point == "dataspec" else built))["input_ids"].shape == (8, 64)
    damage(shards)
    with pytest.raises(UserError) as err:
        build(shards, entry_point)
    assert_names(err, named(shards), words)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_shard_damaged_after_the_loader_was_built_is_named_when_read(shards, num_workers):
    """The check where rows are read (also in DataLoader workers, whose error reaches the trainer as one line)."""
    dataloader = build(shards, "dataloader", num_workers=num_workers)
    truncate(first_shard(shards))
    with pytest.raises(UserError) as err:
        next(iter(dataloader))
    assert_names(err, first_shard(shards), ["truncated"])


def test_a_damaged_shard_fetched_from_a_remote_is_named(shards, tmp_path):
    truncate(first_shard(shards))
    cache = tmp_path / "cache"
    cfg = DataConfig(remote=str(shards), local=str(cache), num_workers=0)
    dataloader = split_loader(cfg, split="train", device_batch_size=8, seed=0, vocab_size=None)
    with pytest.raises(UserError) as err:
        next(iter(dataloader))
    assert_names(err, first_shard(cache), ["truncated"])


@pytest.mark.slow
def test_pretraining_on_a_damaged_shard_is_one_line(shards, tmp_path):
    overwrite_first_kib(os.urandom(1024))(first_shard(shards))
    result = run_cli("recipes/pretrain.py", *tiny_args(shards, tmp_path / "run", "max_duration=2ba"), timeout=300)
    assert_one_error_line(result, f"shard '{first_shard(shards)}'", "damaged", REBUILD, after_other_output=True)


def split_rows(root: Path, split: str) -> int:
    return json.loads((root / "manifest.json").read_text())["splits"][split]["rows"]


@pytest.mark.slow
def test_a_split_smaller_than_one_global_batch_is_refused(tiny_shards, monkeypatch):
    rows = split_rows(tiny_shards, "val")
    cfg = DataConfig(local=str(tiny_shards), num_workers=0)

    def spec(device_batch_size: int, drop_last: bool = True):
        return split_dataspec(
            cfg, split="val", device_batch_size=device_batch_size, seed=0, vocab_size=None, drop_last=drop_last
        )

    with pytest.raises(UserError, match=rf"'val' split has {rows} rows .* one global batch of {rows + 1} "):
        spec(rows + 1)
    assert len(list(spec(rows).dataloader)) == 1  # exactly one batch fits
    assert len(list(spec(rows + 1, drop_last=False).dataloader)) == 1  # a short last batch is kept: no hang

    monkeypatch.setattr(loader.dist, "get_world_size", lambda: 4)  # the global batch is device batch x world size
    device_batch = rows // 4 + 1
    with pytest.raises(UserError, match=rf"{4 * device_batch} \({device_batch} per device x 4 devices\)") as err:
        spec(device_batch)
    assert "global_train_batch_size" in str(err.value) and "\n" not in str(err.value)
    spec(rows // 4)


@pytest.mark.slow
def test_pretraining_with_a_global_batch_larger_than_the_data_is_one_line(tiny_shards, tmp_path):
    rows = split_rows(tiny_shards, "train")
    batch = f"global_train_batch_size={rows + 1}"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, tmp_path / "run", "max_duration=2ba", batch))
    assert_one_error_line(result, f"'train' split has {rows} rows", f"global batch of {rows + 1}", after_other_output=True)


VERIFY_CLI = "data_prep/verify_shards.py"


def test_verify_shards_hashes_every_byte_and_names_each_changed_shard(shards, capsys):
    load_script_main(REPO / VERIFY_CLI)([str(shards), "--no-progress"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["split", "shards", "MB", "read", "result"]
    assert [line.split()[0] for line in table[1:]] == [str(shards / "train"), str(shards / "val")]
    assert all(line.endswith("  ok") for line in table[1:])

    flipped, truncated = first_shard(shards), first_shard(shards, "val")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside the rows: size and header still right, only the hash can tell
    flipped.write_bytes(bytes(data))
    truncate(truncated)
    result = run_cli(VERIFY_CLI, shards, "--no-progress", timeout=120)
    assert_one_error_line(result, f"shard '{flipped}' does not match the xxh64 hash", "1 more shard", REBUILD)
    assert f"shard '{truncated}' has" in result.stdout and "truncated" in result.stdout
    assert "1 bad" in result.stdout

    index = shards / "train" / "index.json"  # shards built before they carried hashes
    entries = json.loads(index.read_text())
    for entry in entries["shards"]:
        entry["raw_data"].pop("hashes")
    index.write_text(json.dumps(entries))
    result = run_cli(VERIFY_CLI, shards / "train", "--no-progress", timeout=120)
    assert_one_error_line(result, "has no xxh64 hash in its index.json (built before shards had them)", REBUILD)


@pytest.mark.parametrize(
    ("target", "words"),
    [("missing", ("does not exist",)), ("empty", ("holds no shards",)), ("s3://bucket/shards", ("is a bucket",))],
)
def test_verify_shards_refuses_what_is_not_a_local_shard_folder(tmp_path, capsys, target, words):
    (tmp_path / "empty").mkdir()
    path = target if "://" in target else str(tmp_path / target)
    with pytest.raises(SystemExit) as exit_info:
        load_script_main(REPO / VERIFY_CLI)([path, "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and error.startswith("error: ") and all(word in error for word in words)


@pytest.mark.parametrize("removed", ["train/index.json", "train"])
def test_verify_shards_refuses_a_copy_that_lacks_a_split_its_manifest_lists(shards, tmp_path, capsys, removed):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    target = copy / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(SystemExit) as exit_info:
        load_script_main(REPO / VERIFY_CLI)([str(copy), "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and error.startswith("error: ")
    assert "lacks train/index.json of split 'train', which manifest.json lists; the copy is incomplete" in error
