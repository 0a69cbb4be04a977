"""The MLM loader over tiny shards: model-ready batches, refusal of bad input, and exact mid-epoch resumption.

Every test writes its own shards (MDSWriter + manifest). Samples are recognised by their original row,
recovered from a batch as `labels` where masked and `input_ids` elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from streaming import MDSWriter

from composer_bert.batch import IGNORE_INDEX
from composer_bert.data.contract import MANIFEST_NAME, write_manifest
from composer_bert.data.load.config import DataConfig, StreamConfig
from composer_bert.data.load.dataset import MappedShard
from composer_bert.data.load.masking import MLMMasker
from composer_bert.data.load.shard_set import open_shards, shard_roots
from composer_bert.errors import UserError
from tests.data.shard_helpers import split_dataspec, split_loader
from tests.helpers import REPO, free_port

SEQ_LEN = 32
VOCAB = 1000
SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
SHA = "ab" * 32
SEED = 5
BATCH = 16
TRAIN_ROWS = 2000  # 125 batches of 16


def random_rows(num_rows: int, seed: int, seq_len: int = SEQ_LEN) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.integers(len(SPECIAL), VOCAB, size=(num_rows, seq_len)).astype(np.uint16)
    rows[rng.random(rows.shape) < 0.05] = SPECIAL["sep"]
    rows[:, 0] = SPECIAL["cls"]
    return rows


def write_shard_root(
    root: Path, splits: dict[str, np.ndarray], seq_len: int = SEQ_LEN, vocab_size: int = VOCAB
) -> Path:
    """A shard root as data_prep/convert_dataset.py lays it out, in small shards (~115 rows) to cross shard bounds."""
    dtype = next(iter(splits.values())).dtype.name
    for split, rows in splits.items():
        with MDSWriter(out=str(root / split), columns={"input_ids": f"ndarray:{dtype}"}, size_limit=1 << 13) as writer:
            for row in rows:
                writer.write({"input_ids": row})
    tokenizer = {"sha256": SHA, "vocab_size": vocab_size, "special_tokens": SPECIAL}
    write_manifest(root, {"tokenizer": tokenizer, "seq_len": seq_len, "dtype": dtype})
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    train, val = random_rows(TRAIN_ROWS, seed=0), random_rows(200, seed=1)
    root = write_shard_root(tmp_path_factory.mktemp("shards"), {"train": train, "val": val})
    return root, train, val


def config(root: Path, **overrides) -> DataConfig:
    return DataConfig(local=str(root), **{"num_workers": 0, **overrides})


def loader_for(cfg: DataConfig, split: str = "train", batch_size: int = BATCH, **kwargs):
    return split_loader(cfg, split=split, device_batch_size=batch_size, seed=SEED, vocab_size=VOCAB, **kwargs)


def originals(batch: dict[str, torch.Tensor]) -> np.ndarray:
    labels, input_ids = batch["labels"].numpy(), batch["input_ids"].numpy()
    return np.where(labels != IGNORE_INDEX, labels, input_ids)


class SampleIds:
    """Which sample (row index of the written data) each row of a batch is."""

    def __init__(self, rows: np.ndarray) -> None:
        self.by_bytes = {row.astype(np.int64).tobytes(): i for i, row in enumerate(rows)}

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[int]:
        return [self.by_bytes[row.tobytes()] for row in originals(batch)]


def take(loader, num_batches: int | None = None) -> list[dict[str, torch.Tensor]]:
    batches = []
    for batch in loader:
        if num_batches is not None and len(batches) == num_batches:
            break
        batches.append(batch)
    return batches


def same_batches(left: list[dict[str, torch.Tensor]], right: list[dict[str, torch.Tensor]]) -> bool:
    return len(left) == len(right) and all(
        all(torch.equal(a[key], b[key]) for key in ("input_ids", "labels", "masked_positions"))
        for a, b in zip(left, right, strict=True)
    )


def expected_masking(rows: np.ndarray, sample_ids: list[int], epoch: int) -> tuple[np.ndarray, np.ndarray]:
    masker = MLMMasker(vocab_size=VOCAB, special_token_ids=SPECIAL.values(), mask_token_id=SPECIAL["mask"], seed=SEED)
    return masker(rows[sample_ids], np.array(sample_ids), epoch)


def test_batches_are_model_ready_and_count_tokens(shards):
    root = shards[0]
    spec = split_dataspec(config(root), split="train", device_batch_size=BATCH, seed=SEED, vocab_size=VOCAB)
    batch = next(iter(spec.dataloader))
    assert set(batch) == {"input_ids", "labels", "masked_positions"}  # no attention mask: rows are full
    slots = math.floor(0.15 * SEQ_LEN + 1)  # the most a row of SEQ_LEN can have masked at data.mlm_probability
    for key, tensor in batch.items():
        assert tensor.dtype == torch.int64 and tensor.shape == (BATCH, slots if key == "masked_positions" else SEQ_LEN)
    positions = batch["masked_positions"]
    for row in range(BATCH):  # each row's masked positions in ascending order, then empty slots
        masked = torch.nonzero(batch["labels"][row] != IGNORE_INDEX).flatten().tolist()
        assert positions[row].tolist() == masked + [-1] * (slots - len(masked))
    assert spec.get_num_tokens_in_batch(batch) == BATCH * SEQ_LEN
    assert spec.get_num_samples_in_batch(batch) == BATCH
    masked = (batch["labels"] != IGNORE_INDEX).sum().item()
    assert 0.1 < masked / (BATCH * (SEQ_LEN - 1)) < 0.2


def test_an_epoch_yields_every_row_once_masked_by_seed_epoch_and_sample_id(shards):
    root, train, _ = shards
    ids_of = SampleIds(train)
    loader = loader_for(config(root), drop_last=False)
    orders = []
    for epoch in range(2):
        batches = take(loader)
        sample_ids = [i for batch in batches for i in ids_of(batch)]
        assert sorted(sample_ids) == list(range(TRAIN_ROWS))
        input_ids, labels = expected_masking(train, sample_ids, epoch)
        assert np.array_equal(torch.cat([b["input_ids"] for b in batches]).numpy(), input_ids)
        assert np.array_equal(torch.cat([b["labels"] for b in batches]).numpy(), labels)
        orders.append(sample_ids)
    assert list(range(TRAIN_ROWS)) != orders[0] != orders[1]  # shuffled, and reshuffled each epoch


def test_eval_split_is_in_order_with_the_same_masks_every_pass(shards):
    root, _, val = shards
    loader = loader_for(config(root), split="val", drop_last=False)
    first, second = take(loader), take(loader)
    assert [i for batch in first for i in SampleIds(val)(batch)] == list(range(len(val)))
    assert same_batches(first, second)


def test_a_worker_process_gives_the_batches_of_the_training_process(shards):
    root, _, _ = shards
    in_process = take(loader_for(config(root)), 30)
    in_worker = take(loader_for(config(root, num_workers=1, persistent_workers=False)), 30)
    assert same_batches(in_process, in_worker)


def test_resumed_mid_epoch_runs_see_the_uninterrupted_batches(shards):
    root, _, _ = shards
    uninterrupted = loader_for(config(root))
    epochs = [take(uninterrupted) for _ in range(3)]

    interrupted = loader_for(config(root))
    assert same_batches(take(interrupted), epochs[0])
    assert same_batches(take(interrupted, 40), epochs[1][:40])
    state = interrupted.dataset.state_dict(num_samples=40 * BATCH, from_beginning=True)  # as Composer checkpoints

    resumed = loader_for(config(root, num_workers=1, persistent_workers=False))
    resumed.dataset.load_state_dict(state)
    assert same_batches(take(resumed, 20), epochs[1][40:60])
    # counting from the resumption point, as streaming's own StreamingDataLoader does
    state = resumed.dataset.state_dict(num_samples=20 * BATCH, from_beginning=False)

    resumed_again = loader_for(config(root))
    resumed_again.dataset.load_state_dict(state)
    assert same_batches(take(resumed_again), epochs[1][60:])
    assert same_batches(take(resumed_again), epochs[2])


def _run_rank(root: str, out_dir: str, checkpoint_step: int) -> None:
    """One rank of a simulated 2-GPU run (in a subprocess; streaming reads the rank from the environment)."""
    loader = loader_for(config(Path(root)), batch_size=BATCH // 2)
    rank = int(os.environ["RANK"])
    input_ids, labels = [], []
    for step, batch in enumerate(loader):
        if step == checkpoint_step and rank == 0:
            state = loader.dataset.state_dict(num_samples=checkpoint_step * BATCH, from_beginning=True)
            Path(out_dir, "state.json").write_text(json.dumps(state))
        input_ids.append(batch["input_ids"].numpy())
        labels.append(batch["labels"].numpy())
    np.savez(Path(out_dir, f"rank{rank}.npz"), input_ids=np.stack(input_ids), labels=np.stack(labels))


@pytest.mark.slow
def test_state_of_a_two_rank_run_resumes_on_one_rank(shards, tmp_path):
    root, train, _ = shards
    checkpoint_step = 50
    port = free_port()
    ranks = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PYTHONPATH=str(REPO))  # this file imports tests.*
        command = [sys.executable, __file__, str(root), str(tmp_path), str(checkpoint_step)]
        ranks.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        for process in ranks:
            output, _ = process.communicate(timeout=240)
            assert process.returncode == 0, output[-3000:]
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()

    # Global batch j of the 2-rank run = rank 0's batch j + rank 1's batch j (8 each).
    per_rank = [np.load(tmp_path / f"rank{rank}.npz") for rank in range(2)]
    global_batches = [
        {key: torch.from_numpy(np.concatenate([r[key][step] for r in per_rank])) for key in ("input_ids", "labels")}
        for step in range(TRAIN_ROWS // BATCH)
    ]
    ids_of = SampleIds(train)

    def by_sample(batch: dict[str, torch.Tensor]) -> dict[int, tuple[bytes, bytes]]:
        rows = zip(batch["input_ids"].numpy(), batch["labels"].numpy(), strict=True)
        return {i: (x.tobytes(), y.tobytes()) for i, (x, y) in zip(ids_of(batch), rows, strict=True)}

    # Same global order on one rank with the same global batch (streaming's elastic determinism).
    one_rank = take(loader_for(config(root)), checkpoint_step)
    assert [by_sample(b) for b in one_rank] == [by_sample(b) for b in global_batches[:checkpoint_step]]

    resumed = loader_for(config(root))
    resumed.dataset.load_state_dict(json.loads((tmp_path / "state.json").read_text()))
    rest = take(resumed)
    assert [by_sample(b) for b in rest] == [by_sample(b) for b in global_batches[checkpoint_step:]]
    seen = [i for b in global_batches[:checkpoint_step] + rest for i in ids_of(b)]
    assert sorted(seen) == list(range(TRAIN_ROWS))  # nothing repeated, nothing skipped


def test_shards_of_another_vocabulary_or_tokenizer_are_refused(shards):
    root, _, _ = shards
    with pytest.raises(UserError, match="vocab_size 1000 but model.vocab_size is 1024"):
        split_dataspec(config(root), split="train", device_batch_size=BATCH, seed=SEED, vocab_size=1024)
    with pytest.raises(UserError, match="different tokenizer"):
        split_dataspec(
            config(root),
            split="train",
            device_batch_size=BATCH,
            seed=SEED,
            vocab_size=VOCAB,
            tokenizer_sha256="cd" * 32,
        )
    spec = split_dataspec(
        config(root), split="train", device_batch_size=BATCH, seed=SEED, vocab_size=None, tokenizer_sha256=SHA
    )
    assert next(iter(spec.dataloader))["input_ids"].shape == (BATCH, SEQ_LEN)


def test_bad_locations_and_settings_are_user_errors(shards, tmp_path):
    root, _, _ = shards
    (tmp_path / "no_manifest" / "train").mkdir(parents=True)
    cases = [
        (DataConfig(), "no shards configured"),
        (DataConfig(local=str(tmp_path / "missing")), "does not exist"),
        (DataConfig(local=str(tmp_path / "no_manifest")), "no manifest.json"),
        (DataConfig(local=str(root), streams={"a": StreamConfig(local=str(root))}), "not both"),
        (DataConfig(streams={"a": StreamConfig()}), "data.streams.a has neither local nor remote"),
        (config(root, mlm_probability=0.0), "data.mlm_probability"),
        (config(root, num_workers=-1), "data.num_workers"),
    ]
    for cfg, message in cases:
        with pytest.raises(UserError, match=message):
            loader_for(cfg)
    with pytest.raises(UserError, match="has no 'test' split"):
        loader_for(config(root), split="test")


def test_remote_shards_are_fetched_into_local(shards, tmp_path):
    root, _, _ = shards
    cache = tmp_path / "cache"
    remote_cfg = DataConfig(remote=str(root), local=str(cache), num_workers=0)
    assert open_shards(remote_cfg).contract.seq_len == SEQ_LEN
    assert (cache / MANIFEST_NAME).is_file()
    from_remote, from_local = loader_for(remote_cfg), loader_for(config(root))
    for _ in range(2):  # epoch 0 downloads as it goes; epoch 1 reads the cached shards
        assert same_batches(take(from_remote), take(from_local))
    assert (cache / "train" / "index.json").is_file()
    only_remote = shard_roots(DataConfig(remote="s3://bucket/shards"))[0]
    assert only_remote.remote == "s3://bucket/shards" and only_remote.local != only_remote.remote


def test_with_a_cache_limit_rows_come_through_streaming_and_match(shards, tmp_path):
    root, _, _ = shards
    # ~18 shards of ~8 KB: a 64 KB cache must evict as it goes. In order, not shuffled: with shuffling every
    # predownload window touches every shard, and streaming 0.13 can then evict a shard its ready thread awaits.
    cache = DataConfig(remote=str(root), local=str(tmp_path / "cache"), cache_limit="64kb", num_workers=0)
    limited = loader_for(cache, shuffle=False)
    assert same_batches(take(limited), take(loader_for(config(root), shuffle=False)))
    assert not any(limited.dataset._mapped_shards.values())  # no memory maps: evicted files must go
    assert len(list((tmp_path / "cache" / "train").glob("*.mds"))) < len(list((root / "train").glob("*.mds")))


def test_vocabularies_beyond_int16_keep_their_ids(tmp_path):
    vocab = 70_000
    rows = np.random.default_rng(4).integers(len(SPECIAL), vocab, size=(256, SEQ_LEN)).astype(np.int32)
    rows[:, 0] = SPECIAL["cls"]
    root = write_shard_root(tmp_path / "big_vocab", {"train": rows}, vocab_size=vocab)
    loader = split_loader(config(root), split="train", device_batch_size=BATCH, seed=SEED, vocab_size=vocab)
    ids_of = SampleIds(rows)  # raises KeyError if any id came back truncated
    assert sorted(i for batch in take(loader) for i in ids_of(batch)) == list(range(len(rows)))


def test_a_shard_is_memory_mapped_only_when_its_records_are_one_size(tmp_path):
    rows = random_rows(5, seed=6)
    for name, lengths in (("equal", [SEQ_LEN] * 5), ("ragged", [SEQ_LEN, 8, SEQ_LEN, SEQ_LEN, SEQ_LEN])):
        with MDSWriter(out=str(tmp_path / name), columns={"input_ids": "ndarray:uint16"}) as writer:
            for row, length in zip(rows, lengths, strict=True):
                writer.write({"input_ids": row[:length]})
    mapped = MappedShard.open(str(tmp_path / "equal" / "shard.00000.mds"), np.dtype(np.uint16), SEQ_LEN)
    assert np.array_equal(mapped.rows(np.array([4, 0, 2])), rows[[4, 0, 2]])
    assert MappedShard.open(str(tmp_path / "ragged" / "shard.00000.mds"), np.dtype(np.uint16), SEQ_LEN) is None


def test_streams_mix_shard_roots_that_agree(shards, tmp_path):
    root, train, _ = shards
    other_rows = random_rows(500, seed=2)
    other = write_shard_root(tmp_path / "other", {"train": other_rows})
    mixed = DataConfig(
        streams={
            "big": StreamConfig(local=str(root), proportion=0.5),
            "small": StreamConfig(local=str(other), proportion=0.5),
        },
        num_workers=0,
    )
    ids_of = SampleIds(np.concatenate([train, other_rows]))
    sample_ids = [i for batch in take(loader_for(mixed, drop_last=False)) for i in ids_of(batch)]
    assert len(sample_ids) == TRAIN_ROWS + 500
    assert sum(i >= TRAIN_ROWS for i in sample_ids) == (TRAIN_ROWS + 500) // 2  # the small root, upsampled to half

    short = write_shard_root(tmp_path / "short", {"train": random_rows(50, seed=3, seq_len=16)}, seq_len=16)
    disagreeing = DataConfig(streams={"big": StreamConfig(local=str(root)), "short": StreamConfig(local=str(short))})
    with pytest.raises(UserError, match="disagrees with data.streams.big on seq_len"):
        open_shards(disagreeing)
    half_weighted = DataConfig(
        streams={"big": StreamConfig(local=str(root), proportion=1.0), "small": StreamConfig(local=str(other))}
    )
    with pytest.raises(UserError, match="some data.streams have a proportion"):
        loader_for(half_weighted)


if __name__ == "__main__":
    _run_rank(*sys.argv[1:3], int(sys.argv[3]))
