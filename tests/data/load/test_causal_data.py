"""Causal-LM data: shards without [CLS] built from the MLM stream, the manifest's objective, and a loader of
next-token batches whose sample order (fresh, resumed, in a worker) is the MLM loader's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming import MDSWriter

from composer_bert.batch import IGNORE_INDEX, next_token_labels
from composer_bert.data.contract import read_manifest, write_manifest
from composer_bert.data.load.config import DataConfig
from composer_bert.data.prep.packing import ConvertOptions, convert_dataset
from composer_bert.data.prep.sources import open_source
from composer_bert.errors import UserError
from tests.data.shard_helpers import read_rows, split_loader

SEQ_LEN, VOCAB, BATCH, SEED = 32, 1000, 16, 5
SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def test_causal_rows_are_the_mlm_stream_without_cls(tokenizer_dir, tmp_path):
    """Same documents, filters and split: the MLM rows minus their [CLS] and the causal rows cut one token stream."""
    streams = {}
    for objective in ("mlm", "causal"):
        options = ConvertOptions(seq_len=SEQ_LEN, val_fraction=0.1, workers=1, progress=False, objective=objective)
        out = tmp_path / objective
        manifest = convert_dataset(open_source("synthetic:400", seed=3), tokenizer_dir, out, options)
        assert read_manifest(out)["objective"] == manifest["objective"] == objective
        cls = manifest["tokenizer"]["special_tokens"]["cls"]
        for split in ("train", "val"):
            rows = read_rows(out / split)
            assert rows.shape[1] == SEQ_LEN and len(rows) == manifest["splits"][split]["rows"]
            if objective == "mlm":
                assert (rows[:, 0] == cls).all()
                rows = rows[:, 1:]
            else:
                assert not (rows == cls).any()
            streams[objective, split] = rows.ravel()
    sep = manifest["tokenizer"]["special_tokens"]["sep"]
    for split in ("train", "val"):
        mlm, causal = streams["mlm", split], streams["causal", split]
        shorter = min(len(mlm), len(causal))
        assert len(causal) > len(mlm) - SEQ_LEN  # no [CLS]: at least as many stream tokens kept
        np.testing.assert_array_equal(causal[:shorter], mlm[:shorter])
        assert (causal == sep).sum() > 5  # [SEP] ends every document: the end-of-text token


def shard_root(root, rows: np.ndarray, objective: str | None):
    with MDSWriter(out=str(root / "train"), columns={"input_ids": "ndarray:uint16"}, size_limit=1 << 13) as writer:
        for row in rows:
            writer.write({"input_ids": row})
    tokenizer = {"sha256": "ab" * 32, "vocab_size": VOCAB, "special_tokens": SPECIAL}
    extra = {} if objective is None else {"objective": objective}
    write_manifest(root, {"tokenizer": tokenizer, "seq_len": SEQ_LEN, "dtype": "uint16", **extra})
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """The same 800 rows as MLM shards (a manifest from before the objective key) and as causal shards."""
    rows = np.random.default_rng(0).integers(len(SPECIAL), VOCAB, size=(800, SEQ_LEN)).astype(np.uint16)
    return shard_root(tmp_path_factory.mktemp("mlm"), rows, None), shard_root(tmp_path_factory.mktemp("causal"), rows, "causal")


def loader(root, objective: str, **overrides):
    cfg = DataConfig(local=str(root), **{"num_workers": 0, **overrides})
    return split_loader(cfg, split="train", device_batch_size=BATCH, seed=SEED, vocab_size=VOCAB, objective=objective)


def take(batches, count: int | None = None) -> list[dict[str, torch.Tensor]]:
    return [batch for _, batch in zip(range(count or 10**9), batches, strict=False)]


def test_causal_batches_are_next_token_pairs_in_the_mlm_sample_order(roots):
    mlm_root, causal_root = roots
    mlm, causal = take(loader(mlm_root, "mlm")), take(loader(causal_root, "causal"))
    assert len(causal) == len(mlm) == 800 // BATCH
    for masked, batch in zip(mlm, causal, strict=True):
        assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].dtype == torch.int64
        original = torch.where(masked["labels"] != IGNORE_INDEX, masked["labels"], masked["input_ids"])
        assert torch.equal(batch["input_ids"], original)  # same rows, same order, unmasked
        assert torch.equal(batch["labels"], next_token_labels(batch["input_ids"]))


def test_causal_loader_resumes_mid_epoch_and_matches_in_a_worker(roots):
    _, causal_root = roots
    epoch = take(loader(causal_root, "causal"))
    interrupted = loader(causal_root, "causal")
    take(interrupted, 20)
    state = interrupted.dataset.state_dict(num_samples=20 * BATCH, from_beginning=True)  # as Composer checkpoints
    resumed = loader(causal_root, "causal", num_workers=1, persistent_workers=False)
    resumed.dataset.load_state_dict(state)
    rest = take(resumed)
    assert len(rest) == len(epoch) - 20
    for got, expected in zip(rest, epoch[20:], strict=True):
        assert all(torch.equal(got[key], expected[key]) for key in ("input_ids", "labels"))


def test_shards_of_the_other_objective_are_refused(roots):
    mlm_root, causal_root = roots
    with pytest.raises(UserError, match="built for objective 'mlm' but model.objective is 'causal'; rebuild them"):
        loader(mlm_root, "causal")
    with pytest.raises(UserError, match="--objective mlm"):
        loader(causal_root, "mlm")
