"""The collates that turn the dataset's (sample id, epoch) items into compact batches of `composer_bert/batch.py`'s
format: masked batches (MLM) or next-token batches (causal LM). `objectives.py` names each objective's
factory (`mlm_collator`, `causal_collator`); the loader calls it with the run's one `ShardContract`.

Why compact: a worker ships a batch through shared memory, and every fresh page there costs a fault;
int64 input_ids + labels + attention_mask took ~1.2 ms more per batch of 256 x 128 than int16 ids and
labels. `RowDataLoader` (dataset.py) widens the batch to the model's int64 form in the training process.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from composer_bert.batch import IGNORE_INDEX, MASKED_POSITIONS
from composer_bert.data.contract import ShardContract
from composer_bert.data.load.config import DataConfig
from composer_bert.data.load.dataset import RowStreamingDataset
from composer_bert.data.load.masking import MLMMasker
from composer_bert.errors import UserError


def mlm_collator(dataset: RowStreamingDataset, cfg: DataConfig, contract: ShardContract, seed: int) -> MLMCollator:
    """The masked-LM collate of these shards: its masker's special ids come from the contract, never hard-coded."""
    return MLMCollator(dataset, build_masker(cfg, contract, seed), contract.vocab_size)


def causal_collator(dataset: RowStreamingDataset, cfg: DataConfig, contract: ShardContract, seed: int) -> CausalCollator:
    """The causal-LM collate: nothing is random, so neither `cfg` nor `seed` matters."""
    return CausalCollator(dataset, contract.vocab_size)


def build_masker(cfg: DataConfig, contract: ShardContract, seed: int) -> MLMMasker:
    """The masker for these shards: special ids come from the manifest, never hard-coded."""
    special_tokens = contract.special_ids
    if "mask" not in special_tokens:
        raise UserError(
            "the shards' manifest.json names no 'mask' special token; "
            "rebuild the shards with data_prep/convert_dataset.py"
        )
    return MLMMasker(
        vocab_size=contract.vocab_size,
        special_token_ids=special_tokens.values(),
        mask_token_id=special_tokens["mask"],
        seed=seed,
        mlm_probability=cfg.mlm_probability,
        mask_token_prob=cfg.mask_token_prob,
        random_token_prob=cfg.random_token_prob,
    )


class MLMCollator:
    """(sample id, epoch) items -> a compact masked batch {input_ids, labels, masked_positions}: int16 (int32
    for vocabularies or rows over 32768) views of one storage, in shared memory when built in a DataLoader worker.

    input_ids and labels are [B, L]; masked_positions is [B, K], K = `masker.prediction_slots(L)` (see
    masking.py): the same width in every batch of a run, so a compiled model keeps one graph. No
    attention mask: rows are packed to full length, and the model treats a missing mask as all ones.

    Holds the dataset to read rows; in a DataLoader worker that is the worker's own copy.
    """

    def __init__(self, dataset: RowStreamingDataset, masker: MLMMasker, vocab_size: int) -> None:
        self.dataset = dataset
        self.masker = masker
        self.vocab_size = vocab_size

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        sample_ids, epochs = np.array(items, dtype=np.int64).reshape(-1, 2).T
        rows = self.dataset.rows(sample_ids)
        num_rows, seq_len = rows.shape
        slots = self.masker.prediction_slots(seq_len)
        dtype = torch.int16 if max(self.vocab_size, seq_len) <= 1 << 15 else torch.int32
        packed = batch_buffer((2 * num_rows * seq_len + num_rows * slots,), dtype)
        input_ids, labels, positions = _split_batch(packed, num_rows, seq_len, slots)
        self.masker(rows, sample_ids, epochs, out=(input_ids.numpy(), labels.numpy()), positions_out=positions.numpy())
        return {"input_ids": input_ids, "labels": labels, MASKED_POSITIONS: positions}


class CausalCollator:
    """(sample id, epoch) items -> a compact causal batch {input_ids, labels}, labels as batch.py's
    `next_token_labels`: int16 (int32 for vocabularies over 32768) views of one storage, in shared memory in a
    DataLoader worker (as `MLMCollator`).

    Holds the dataset to read rows; in a DataLoader worker that is the worker's own copy.
    """

    def __init__(self, dataset: RowStreamingDataset, vocab_size: int) -> None:
        self.dataset = dataset
        self.vocab_size = vocab_size

    def __call__(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        sample_ids = np.array(items, dtype=np.int64).reshape(-1, 2)[:, 0]
        rows = self.dataset.rows(sample_ids)
        dtype = torch.int16 if self.vocab_size <= 1 << 15 else torch.int32
        packed = batch_buffer((2, *rows.shape), dtype)
        input_ids, labels = packed.numpy()
        input_ids[:] = rows
        labels[:, :-1] = rows[:, 1:]  # next_token_labels, in numpy on the compact rows
        labels[:, -1] = IGNORE_INDEX
        return {"input_ids": packed[0], "labels": packed[1]}


def _split_batch(
    storage: torch.Tensor, num_rows: int, seq_len: int, slots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids [B, L], labels [B, L] and masked positions [B, K] as views of one flat tensor."""
    tokens = num_rows * seq_len
    return (
        storage[:tokens].view(num_rows, seq_len),
        storage[tokens : 2 * tokens].view(num_rows, seq_len),
        storage[2 * tokens :].view(num_rows, slots),
    )


def batch_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor for a whole batch; in a DataLoader worker, born in shared memory (as torch's default_collate does)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=dtype).new(storage).view(shape)
