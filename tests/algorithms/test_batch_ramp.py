"""Batch-size ramp: k progression, equivalence with one big batch, and exact resume from mid-window."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from composer import Trainer
from composer.loggers import InMemoryLogger
from composer.models import ComposerClassifier

from composer_bert.algorithms.batch_ramp import EFFECTIVE_BATCH_KEY, BatchRamp
from composer_bert.callbacks.grad_norm import GLOBAL_NORM_KEY, GradNormClip
from composer_bert.errors import UserError
from composer_bert.pretrain.progress import RunProgress
from tests.tiny_training import logged, tiny_classifier, tiny_loader, tiny_pretrain_config, tiny_rows, tiny_trainer


def ramp_trainer(model, ramp: BatchRamp, x, y, batch_size: int, max_duration: str, logger, **kwargs) -> Trainer:
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    return tiny_trainer(model, tiny_loader(x, y, batch_size), optimizer, max_duration, logger, algorithms=[ramp], **kwargs)


def test_window_size_grows_linearly_then_holds():
    ramp = BatchRamp(start_batch_size=128, final_batch_size=4096, ramp_fraction=0.6, progress=RunProgress())
    # effective = 128 + 3968 * min(p / 0.6, 1); k = round(effective / 128)
    assert [ramp.window_size(p) for p in (0.0, 0.06, 0.31, 0.45, 0.6, 0.9, 1.0)] == [1, 4, 17, 24, 32, 32, 32]
    ks = [ramp.window_size(i / 100) for i in range(101)]
    assert ks == sorted(ks)


def test_bad_ramp_settings_name_the_key():
    def load(final: int, fraction: float) -> None:
        ramp = [f"batch_ramp.final_global_batch_size={final}", f"batch_ramp.ramp_fraction={fraction}"]
        tiny_pretrain_config(*ramp, batch_size=128)

    with pytest.raises(UserError, match="final_global_batch_size"):
        load(1000, 0.5)
    with pytest.raises(UserError, match="final_global_batch_size"):
        load(64, 0.5)
    with pytest.raises(UserError, match="ramp_fraction"):
        load(256, 0.0)


def test_k_accumulated_batches_make_the_same_update_as_one_k_times_bigger_batch():
    """Batch 0 steps alone (k = 1 at p = 0), then windows of k = 3: steps on batches 1-3 and 4-6."""
    b, k, max_norm = 4, 3, 0.5
    x, y = tiny_rows(7 * b, seed=3, scale=3.0)
    model = tiny_classifier()
    reference = copy.deepcopy(model.module)
    logger = InMemoryLogger()
    ramp = BatchRamp(start_batch_size=b, final_batch_size=k * b, ramp_fraction=0.01, progress=RunProgress())
    ramp_trainer(model, ramp, x, y, b, "7ba", logger, callbacks=[GradNormClip(max_norm, log_interval=1)]).fit()

    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.01, weight_decay=0.1)
    expected_norms = []
    for start, stop in ((0, 1), (1, 4), (4, 7)):
        optimizer.zero_grad()
        rows = slice(start * b, stop * b)
        F.cross_entropy(reference(x[rows]), y[rows]).backward()
        expected_norms.append(float(torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)))
        optimizer.step()

    for ours, theirs in zip(model.module.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert logged(logger, EFFECTIVE_BATCH_KEY) == {0: 4, 1: 12, 2: 12, 3: 12, 4: 12, 5: 12, 6: 12}
    norms = logged(logger, GLOBAL_NORM_KEY)  # only at real steps, on the accumulated gradient
    assert list(norms) == [0, 3, 6]
    assert list(norms.values()) == pytest.approx(expected_norms, rel=1e-5)
    assert max(expected_norms[1:]) > max_norm, "the test needs clipping of an accumulated gradient to bite"


def test_resume_from_mid_window_checkpoint_matches_the_uninterrupted_run(tmp_path):
    b, steps = 2, 12
    x, y = tiny_rows(steps * b, seed=3, scale=3.0)

    def run(folder, **kwargs) -> tuple[dict[int, float], ComposerClassifier]:
        model, logger = tiny_classifier(), InMemoryLogger()
        ramp = BatchRamp(start_batch_size=b, final_batch_size=4 * b, ramp_fraction=0.5, progress=RunProgress())
        trainer = ramp_trainer(
            model, ramp, x, y, b, f"{steps}ba", logger, save_folder=str(folder), save_interval="7ba", **kwargs
        )
        trainer.fit()
        return logged(logger, "loss/train/total"), model

    straight_losses, straight_model = run(tmp_path / "a")
    checkpoint = tmp_path / "a" / "ep0-ba7-rank0.pt"
    ramp_state = torch.load(checkpoint, weights_only=False)["state"]["algorithms"][0][1]
    assert ramp_state["window"] == 4 and ramp_state["accumulated"] == 2 and ramp_state["grad_sum"], "not mid-window"

    resumed_losses, resumed_model = run(tmp_path / "b", load_path=str(checkpoint))
    assert sorted(resumed_losses) == list(range(7, steps))
    assert resumed_losses == {batch: straight_losses[batch] for batch in resumed_losses}
    for ours, theirs in zip(resumed_model.parameters(), straight_model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
