"""MLMMasker: mask rate, special tokens, the 80/10/10 split, and masks as a pure function of (seed, epoch, sample)."""

from __future__ import annotations

import numpy as np
import pytest

from composer_bert.batch import IGNORE_INDEX
from composer_bert.data.load.masking import MLMMasker
from composer_bert.errors import UserError

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 1000


def make_masker(**overrides) -> MLMMasker:
    kwargs = dict(vocab_size=VOCAB, special_token_ids=SPECIAL, mask_token_id=MASK, seed=17)
    return MLMMasker(**{**kwargs, **overrides})


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """Packed rows as the shards hold them: [CLS] first, a [SEP] after each ~20-token document, some [UNK]."""
    rng = np.random.default_rng(0)
    ids = rng.integers(len(SPECIAL), VOCAB, size=(4096, 128)).astype(np.uint16)
    ids[rng.random(ids.shape) < 0.05] = SEP
    ids[rng.random(ids.shape) < 0.01] = UNK
    ids[:, 0] = CLS
    return ids


def split_of(rows: np.ndarray, corrupted: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    masked = labels != IGNORE_INDEX
    return {
        "masked": masked,
        "mask_token": masked & (corrupted == MASK),
        "kept": masked & (corrupted == rows),
        "random": masked & (corrupted != MASK) & (corrupted != rows),
    }


def test_each_row_masks_its_share_of_maskable_positions(rows):
    corrupted, labels = make_masker()(rows, np.arange(len(rows)), 0)
    maskable = ~np.isin(rows, SPECIAL)
    per_row = (labels != IGNORE_INDEX).sum(axis=1)
    expected = 0.15 * maskable.sum(axis=1)
    assert np.all((per_row == np.floor(expected)) | (per_row == np.ceil(expected)))
    assert abs(per_row.sum() / maskable.sum() - 0.15) < 0.002  # stochastic rounding: unbiased overall


def test_labels_hold_the_original_token_where_masked_and_ignore_index_elsewhere(rows):
    corrupted, labels = make_masker()(rows, np.arange(len(rows)), 0)
    masked = labels != IGNORE_INDEX
    assert corrupted.dtype == np.int64 and labels.dtype == np.int64
    assert np.array_equal(labels[masked], rows[masked])
    assert np.array_equal(corrupted[~masked], rows[~masked])


def test_special_tokens_are_never_masked_nor_drawn_as_replacements(rows):
    corrupted, labels = make_masker()(rows, np.arange(len(rows)), 0)
    special = np.isin(rows, SPECIAL)
    assert np.all(labels[special] == IGNORE_INDEX)
    assert np.array_equal(corrupted[special], rows[special])
    replaced = split_of(rows, corrupted, labels)["random"]
    assert replaced.sum() > 1000
    assert not np.isin(corrupted[replaced], SPECIAL).any()


def test_masked_positions_split_80_10_10(rows):
    corrupted, labels = make_masker()(rows, np.arange(len(rows)), 0)
    parts = split_of(rows, corrupted, labels)
    total = parts["masked"].sum()
    # ~75k masked positions: one percentage point is over 7 standard deviations
    assert abs(parts["mask_token"].sum() / total - 0.8) < 0.01
    assert abs(parts["random"].sum() / total - 0.1) < 0.01
    assert abs(parts["kept"].sum() / total - 0.1) < 0.01


def test_all_mask_mode_replaces_every_masked_position_with_mask(rows):
    masker = make_masker(mask_token_prob=1.0, random_token_prob=0.0)
    corrupted, labels = masker(rows, np.arange(len(rows)), 0)
    masked = labels != IGNORE_INDEX
    assert masked.any() and np.all(corrupted[masked] == MASK)


def test_random_replacements_cover_the_non_special_vocabulary_evenly():
    masker = make_masker(vocab_size=20, mlm_probability=1.0, mask_token_prob=0.0, random_token_prob=1.0)
    rows = np.full((2000, 64), 10, dtype=np.uint16)
    corrupted, _ = masker(rows, np.arange(len(rows)), 0)
    counts = np.bincount(corrupted.ravel(), minlength=20)
    assert np.all(counts[SPECIAL] == 0)
    share = counts[len(SPECIAL) :] / counts.sum()
    assert np.all(np.abs(share - 1 / 15) < 0.005)  # 128k draws: ~7 standard deviations


def test_mask_of_a_sample_depends_only_on_seed_epoch_and_sample_id(rows):
    masker = make_masker()
    ids = np.arange(64)
    alone, alone_labels = masker(rows[:64], ids, 3)
    order = np.random.default_rng(1).permutation(64)
    shuffled, shuffled_labels = make_masker()(rows[:64][order], ids[order], 3)  # fresh masker, other batch order
    assert np.array_equal(shuffled, alone[order]) and np.array_equal(shuffled_labels, alone_labels[order])
    part, part_labels = masker(rows[10:20], ids[10:20], np.full(10, 3))  # other batch size, epochs as an array
    assert np.array_equal(part, alone[10:20]) and np.array_equal(part_labels, alone_labels[10:20])


def test_another_epoch_seed_or_sample_id_gives_another_mask(rows):
    ids = np.arange(256)
    _, base = make_masker()(rows[:256], ids, 0)
    _, next_epoch = make_masker()(rows[:256], ids, 1)
    _, other_seed = make_masker(seed=18)(rows[:256], ids, 0)
    _, other_ids = make_masker()(rows[:256], ids + 256, 0)
    for other in (next_epoch, other_seed, other_ids):
        differing_rows = np.any((base != IGNORE_INDEX) != (other != IGNORE_INDEX), axis=1)
        assert differing_rows.mean() > 0.99


def test_writes_into_narrow_output_buffers(rows):
    masker = make_masker()
    wide = masker(rows[:32], np.arange(32), 0)
    narrow = (np.empty((32, 128), np.int16), np.empty((32, 128), np.int16))
    assert masker(rows[:32], np.arange(32), 0, out=narrow) is narrow
    assert np.array_equal(narrow[0], wide[0]) and np.array_equal(narrow[1], wide[1])
    with pytest.raises(ValueError, match="C-contiguous"):
        masker(rows[:32], np.arange(32), 0, out=(np.empty((128, 32), np.int16).T, narrow[1]))


def test_rows_without_maskable_tokens_stay_unmasked():
    rows = np.array([[CLS, SEP, PAD, PAD], [CLS, 7, SEP, PAD]], dtype=np.uint16)
    corrupted, labels = make_masker(mlm_probability=1.0, mask_token_prob=1.0, random_token_prob=0.0)(
        rows, np.arange(2), 0
    )
    assert np.all(labels[0] == IGNORE_INDEX) and np.array_equal(corrupted[0], rows[0])
    assert labels[1].tolist() == [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX] and corrupted[1, 1] == MASK


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(mlm_probability=0.0), "data.mlm_probability"),
        (dict(mlm_probability=1.5), "data.mlm_probability"),
        (dict(mask_token_prob=-0.1), "data.mask_token_prob"),
        (dict(mask_token_prob=0.8, random_token_prob=0.3), "at most 1"),
        (dict(mask_token_id=7), "not among the special token ids"),
        (dict(vocab_size=4), "do not fit vocab_size"),
    ],
)
def test_bad_settings_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        make_masker(**overrides)


def test_masked_positions_list_each_rows_masked_positions_in_fixed_width_slots(rows):
    masker = make_masker()
    slots = masker.prediction_slots(128)
    assert slots == 20  # floor(0.15 * 128 + u) <= 20 for every row
    positions = np.empty((len(rows), slots), dtype=np.int16)  # narrow, as the collator ships them
    corrupted, labels = masker(rows, np.arange(len(rows)), 0, positions_out=positions)
    plain_corrupted, plain_labels = make_masker()(rows, np.arange(len(rows)), 0)
    assert np.array_equal(corrupted, plain_corrupted) and np.array_equal(labels, plain_labels)  # masks unchanged
    for row in range(len(rows)):
        masked = np.flatnonzero(labels[row] != IGNORE_INDEX)
        assert positions[row, : len(masked)].tolist() == masked.tolist()
        assert np.all(positions[row, len(masked) :] == -1)
    assert (positions != -1).sum() == (labels != IGNORE_INDEX).sum()
    with pytest.raises(ValueError, match="positions_out"):
        masker(rows[:4], np.arange(4), 0, positions_out=np.empty((4, slots - 1), dtype=np.int16))


@pytest.mark.parametrize("mlm_probability", [0.15, 0.25, 0.3, 0.5, 1.0, 0.1 + 0.2])
@pytest.mark.parametrize("seq_len", [1, 7, 64, 100, 128, 512])
def test_prediction_slots_are_the_largest_count_the_rule_can_draw(mlm_probability, seq_len):
    """K bounds floor(p * n + u) for every n <= L and u < 1 (in the masker's float64 arithmetic), and is reached."""
    masker = make_masker(mlm_probability=mlm_probability)
    slots = masker.prediction_slots(seq_len)
    largest_u = np.float64(1.0) - np.float64(2.0**-53)
    counts = np.minimum(np.floor(mlm_probability * np.arange(seq_len + 1) + largest_u).astype(np.int64),
                        np.arange(seq_len + 1))
    assert counts.max() == slots
    assert slots <= mlm_probability * seq_len + 1
