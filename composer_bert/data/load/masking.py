"""BERT's masked-language-model corruption as a pure function of (seed, epoch, sample id, position).

Why counter-based randomness: Composer resumes a StreamingDataset mid-epoch without restoring the
DataLoader workers' RNG state, and a different number of ranks or workers hands samples to different
processes. Masks drawn from a stateful RNG would then differ from an uninterrupted run. Here every
random number is a splitmix64 hash of (seed, epoch, sample id, position), computed with numpy over the
whole batch at once, so the mask of a sample depends on nothing else.

Why `masked_positions` of a fixed width: a sparse MLM head that selected the masked tokens of a batch
would get a different number of rows every batch, a shape only known after reading the labels on the
host (one GPU synchronisation per step, and a recompile of a compiled model). The masker instead also
lists each row's masked positions in K slots, K = `prediction_slots(seq_len)`: the most positions its
count rule can ever mask in a row of that length, so every row fits and every batch has the same shape.
Unused slots hold -1. The masks themselves do not depend on K.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from composer_bert.batch import IGNORE_INDEX
from composer_bert.data.load.config import DataConfig
from composer_bert.errors import UserError
from composer_bert.schema import validate

MAX_SEQ_LEN = 1 << 16  # positions take the low bits of a 32-bit rank; the high 16+ bits stay random
_LARGEST_UNIT = 1.0 - 2.0**-53  # the largest value `unit_interval` returns

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (golden ratio)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_ROUNDING_SALT = np.uint64(0x5851F42D4C957F2D)
_REPLACEMENT_SALT = np.uint64(0x2545F4914F6CDD1D)
_LOW_32 = np.uint64(0xFFFFFFFF)
_U64_MASK = (1 << 64) - 1


def splitmix64(x: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None) -> np.ndarray:
    """splitmix64 of uint64 `x`: a cheap bijective hash whose outputs pass BigCrush.

    Writes into `out` (may be `x`) and uses `scratch` (same shape) when given, so a hot loop allocates nothing.
    """
    z = np.add(x, _GAMMA, out=out)
    shifted = np.right_shift(z, np.uint64(30), out=scratch)
    z ^= shifted
    z *= _MUL1
    np.right_shift(z, np.uint64(27), out=shifted)
    z ^= shifted
    z *= _MUL2
    np.right_shift(z, np.uint64(31), out=shifted)
    z ^= shifted
    return z


def unit_interval(bits: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from the top 53 bits of uint64 hashes."""
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def sample_keys(seed: int, epochs: np.ndarray | int, sample_ids: np.ndarray) -> np.ndarray:
    """One uint64 key per sample, a hash of (seed, epoch, sample id): the root of all of its random numbers."""
    seed_key = splitmix64(np.array([seed & _U64_MASK], dtype=np.uint64))
    epoch_keys = splitmix64(seed_key ^ np.asarray(epochs, dtype=np.int64).astype(np.uint64))
    return splitmix64(epoch_keys ^ np.asarray(sample_ids, dtype=np.int64).astype(np.uint64))


class _Workspace:
    """Scratch arrays for one batch shape, reused call after call: fresh 256 KB arrays cost page faults."""

    def __init__(self, num_rows: int, seq_len: int) -> None:
        shape = (num_rows, seq_len)
        self.hashes = np.empty(shape, dtype=np.uint64)
        self.scratch = np.empty(shape, dtype=np.uint64)
        self.scores = np.empty(shape, dtype=np.uint32)
        self.sorted_scores = np.empty(shape, dtype=np.uint32)
        self.maskable = np.empty(shape, dtype=bool)
        self.flags = np.empty(shape, dtype=bool)
        self.position_offsets = np.arange(1, seq_len + 1, dtype=np.uint64) * _GAMMA  # key + offset: splitmix's stream
        self.positions = np.arange(seq_len, dtype=np.uint32)
        self.row_index = np.arange(num_rows)


class MLMMasker:
    """Turns token rows into (corrupted input_ids, labels) the BERT way, deterministically per sample.

    Count: each row masks exactly floor(p * n + u) of its n maskable (non-special) positions, u ~ U[0, 1)
    per row: so the count is p * n rounded down or up, and its mean is exactly p * n (no binomial spread;
    HF's collator draws each position independently instead). Which positions: the k with the smallest
    position hashes. Each masked position then becomes [MASK] with `mask_token_prob`, a random non-special
    token with `random_token_prob`, and keeps its token otherwise (independently per position).
    Labels hold the original id at masked positions and IGNORE_INDEX elsewhere. Special tokens are never
    masked and never drawn as random replacements. Not thread-safe (it reuses scratch arrays); each
    DataLoader worker process has its own copy.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        special_token_ids: Iterable[int],
        mask_token_id: int,
        seed: int,
        mlm_probability: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
    ) -> None:
        special = np.unique(np.fromiter(special_token_ids, dtype=np.int64))
        check_masking_probabilities(mlm_probability, mask_token_prob, random_token_prob)
        if mask_token_id not in special:
            raise UserError(
                f"mask token id {mask_token_id} is not among the special token ids {special.tolist()}; "
                "fix the shards' manifest.json"
            )
        if special.min() < 0 or special.max() >= vocab_size:
            raise UserError(
                f"special token ids {special.tolist()} do not fit vocab_size {vocab_size}; "
                "fix the shards' manifest.json"
            )
        self.seed = seed
        self.mask_token_id = mask_token_id
        self.mlm_probability = mlm_probability
        self.special_ids = special.tolist()
        is_special = np.zeros(vocab_size, dtype=bool)
        is_special[special] = True
        self.replacement_ids = np.flatnonzero(~is_special)  # what a random replacement may be
        if random_token_prob > 0 and len(self.replacement_ids) == 0:
            raise UserError("every token id is special, so no random replacement exists; set data.random_token_prob=0")
        # Replacement choice on the low 32 hash bits: below the first cut [MASK], below the second a random token.
        self._mask_token_cut = np.uint64(round(mask_token_prob * 2**32))
        self._random_token_cut = np.uint64(round(min(mask_token_prob + random_token_prob, 1.0) * 2**32))
        self._workspace: _Workspace | None = None

    def prediction_slots(self, seq_len: int) -> int:
        """K: the most positions a row of `seq_len` tokens can have masked, so the width of `masked_positions`.

        The count rule's largest value, floor(p * n + u) for n = seq_len and the largest u, in the same
        float64 arithmetic (monotone in n and u), so no row ever masks more. About p * seq_len + 1.
        """
        return min(seq_len, math.floor(self.mlm_probability * seq_len + _LARGEST_UNIT))

    def _workspace_for(self, num_rows: int, seq_len: int) -> _Workspace:
        if self._workspace is None or self._workspace.hashes.shape != (num_rows, seq_len):
            self._workspace = _Workspace(num_rows, seq_len)
        return self._workspace

    def __call__(
        self,
        input_ids: np.ndarray,
        sample_ids: np.ndarray,
        epochs: np.ndarray | int,
        out: tuple[np.ndarray, np.ndarray] | None = None,
        positions_out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask a [B, L] batch of rows whose samples are `sample_ids` ([B]) seen in `epochs` ([B] or one int).

        Returns (corrupted input_ids, labels), both [B, L]: new int64 arrays, or `out` filled in when given
        (contiguous arrays of any signed integer type that holds the vocabulary and -100, e.g. int16 shared
        memory a DataLoader worker ships cheaply). `input_ids` is not modified. With `positions_out`, a
        C-contiguous signed integer [B, prediction_slots(L)] array, also writes each row's masked positions
        there in ascending order, then -1.
        """
        if input_ids.ndim != 2 or input_ids.shape[1] > MAX_SEQ_LEN:
            raise ValueError(f"input_ids must be [batch, seq_len <= {MAX_SEQ_LEN}], got shape {input_ids.shape}")
        num_rows, seq_len = input_ids.shape
        ws = self._workspace_for(num_rows, seq_len)
        keys = sample_keys(self.seed, epochs, sample_ids)  # [B]
        # One 64-bit hash per position: the high half ranks positions for masking, the low half picks the replacement.
        np.add(keys[:, None], ws.position_offsets, out=ws.hashes)
        hashes = splitmix64(ws.hashes, out=ws.hashes, scratch=ws.scratch)

        maskable = np.not_equal(input_ids, self.special_ids[0], out=ws.maskable)
        for special_id in self.special_ids[1:]:
            maskable &= np.not_equal(input_ids, special_id, out=ws.flags)
        num_maskable = maskable.sum(axis=1)
        rounding = unit_interval(splitmix64(keys ^ _ROUNDING_SALT))
        num_to_mask = np.minimum(
            np.floor(self.mlm_probability * num_maskable + rounding).astype(np.int64), num_maskable
        )

        # Rank = high hash bits with the position in the low bits: distinct within a row, so exactly k are <= the k-th.
        position_bits = np.uint32(max(1, (seq_len - 1).bit_length()))
        scores = ws.scores
        np.copyto(scores, np.right_shift(hashes, np.uint64(32), out=ws.scratch), casting="unsafe")
        scores >>= position_bits
        scores <<= position_bits
        scores |= ws.positions
        np.putmask(scores, np.logical_not(maskable, out=ws.flags), np.uint32(0xFFFFFFFF))
        np.copyto(ws.sorted_scores, scores)
        ws.sorted_scores.sort(axis=1)
        threshold = ws.sorted_scores[ws.row_index, np.clip(num_to_mask - 1, 0, seq_len - 1)]
        masked = np.less_equal(scores, threshold[:, None], out=ws.flags)
        masked &= maskable
        masked[num_to_mask == 0] = False
        if positions_out is not None:
            self._write_positions(masked, positions_out)

        if out is None:
            out = (np.empty((num_rows, seq_len), dtype=np.int64), np.empty((num_rows, seq_len), dtype=np.int64))
        if not all(array.shape == input_ids.shape and array.flags.c_contiguous for array in out):
            raise ValueError(f"out must be two C-contiguous arrays of shape {input_ids.shape}")
        corrupted, labels = out[0].reshape(-1), out[1].reshape(-1)  # views, as both are contiguous
        flat_input = input_ids.reshape(-1)
        positions = np.flatnonzero(masked)
        labels.fill(IGNORE_INDEX)
        labels[positions] = flat_input[positions]
        np.copyto(corrupted, flat_input, casting="unsafe")

        masked_hashes = hashes.reshape(-1)[positions]
        replacement_bits = masked_hashes & _LOW_32
        to_mask_token = replacement_bits < self._mask_token_cut
        corrupted[positions[to_mask_token]] = self.mask_token_id
        to_random = ~to_mask_token & (replacement_bits < self._random_token_cut)
        if to_random.any():
            draws = splitmix64(masked_hashes[to_random] ^ _REPLACEMENT_SALT) % np.uint64(len(self.replacement_ids))
            corrupted[positions[to_random]] = self.replacement_ids[draws.astype(np.int64)]
        return out


    def _write_positions(self, masked: np.ndarray, out: np.ndarray) -> None:
        num_rows, seq_len = masked.shape
        counts = masked.sum(axis=1)
        slots = self.prediction_slots(seq_len)
        if out.shape != (num_rows, slots) or not out.flags.c_contiguous:
            raise ValueError(f"positions_out must be a C-contiguous array of shape {(num_rows, slots)}")
        if counts.max(initial=0) > slots:  # the bound is exact, so this is a bug, never bad input
            raise AssertionError(f"a row masked {counts.max()} positions, more than its {slots} slots")
        flat = np.flatnonzero(masked)  # row-major: each row's positions ascending, rows in order
        rows = flat // seq_len
        row_starts = np.cumsum(counts) - counts  # where each row's run begins in `flat`
        slot = np.arange(len(flat)) - row_starts[rows]
        out.fill(-1)
        out.reshape(-1)[rows * slots + slot] = flat - rows * seq_len


def check_masking_probabilities(mlm_probability: float, mask_token_prob: float, random_token_prob: float) -> None:
    """Refuse probabilities that cannot describe BERT masking: the `data:` section's own rules (`DataConfig`)."""
    config = DataConfig(mlm_probability=mlm_probability, mask_token_prob=mask_token_prob, random_token_prob=random_token_prob)
    validate(config, "data.")
