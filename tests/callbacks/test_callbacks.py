"""Peak-FLOPs table, gradient norm and clipping, the NaN guard, and the training controls as the trainer builds them."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from composer import Trainer
from composer.callbacks import LRMonitor, SpeedMonitor
from composer.core import Callback
from composer.loggers import InMemoryLogger, LoggerDestination
from composer.models import ComposerClassifier
from torch import nn
from torch.utils.data import DataLoader

from composer_bert.algorithms.batch_ramp import BatchRamp
from composer_bert.callbacks.budget import WallClockBudget
from composer_bert.callbacks.grad_norm import GLOBAL_NORM_KEY, GradNormClip
from composer_bert.callbacks.metrics_file import MetricsFile, read_metrics
from composer_bert.callbacks.nan_guard import NaNGuard, NonFiniteLossError
from composer_bert.errors import UserError
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.pretrain.controls import build_training_controls
from composer_bert.run.peak_flops import PEAK_FLOPS, lookup_peak_flops, match_device, resolve_peak_flops
from tests.host_reads import HostReads
from tests.tiny_training import (
    TinyNet,
    logged,
    tiny_classifier,
    tiny_loader,
    tiny_pretrain_config,
    tiny_rows,
    tiny_trainer,
)

BATCH = 4


def batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = tiny_rows(n * BATCH, seed, scale=3.0)
    return [(x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH]) for i in range(n)]


def loader(data: list[tuple[torch.Tensor, torch.Tensor]]) -> DataLoader:
    return tiny_loader(torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]), BATCH)


def trainer(model, data, optimizer, max_duration: str, logger: LoggerDestination, **kwargs) -> Trainer:
    return tiny_trainer(model, loader(data), optimizer, max_duration, logger, **kwargs)


# -- peak FLOP/s ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device_name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA GH200 480GB", "gh200"),
        ("NVIDIA A100-SXM4-40GB", "a100"),
        ("NVIDIA A100 80GB PCIe", "a100"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA RTX A6000", "rtx-a6000"),
        ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA GeForce RTX 3090", "rtx-3090"),
        ("NVIDIA GeForce RTX 3090 Ti", "rtx-3090-ti"),
        ("Tesla V100-SXM2-16GB", "v100-sxm"),
        ("Tesla V100-PCIE-32GB", "v100-pcie"),
        ("Tesla T4", "t4"),
        ("NVIDIA A10G", None),  # not an A10: different rates, so unknown rather than wrong
        ("NVIDIA GeForce RTX 4090 D", None),
        ("AMD Instinct MI250X", None),
    ],
)
def test_device_names_match_the_right_row(device_name, key):
    assert match_device(device_name) == key


def test_peak_flops_per_precision_are_dense_numbers():
    h100 = "NVIDIA H100 80GB HBM3"
    assert lookup_peak_flops(h100, "amp_bf16") == pytest.approx(989.4e12)
    assert lookup_peak_flops(h100, "amp_fp16") == pytest.approx(989.4e12)
    assert lookup_peak_flops(h100, "fp32") == pytest.approx(494.7e12)  # TF32 matmuls, Composer's GPU default
    assert lookup_peak_flops(h100, "fp32", tf32_matmul=False) == pytest.approx(67e12)
    assert lookup_peak_flops("NVIDIA A100-SXM4-80GB", "amp_bf16") == pytest.approx(312e12)
    assert lookup_peak_flops("Tesla V100-SXM2-16GB", "fp32") == pytest.approx(15.7e12)  # no TF32 on Volta
    assert lookup_peak_flops("Tesla T4", "amp_bf16") is None  # no bf16 tensor cores
    for row in PEAK_FLOPS.values():  # dense, not the 2x sparsity figures: no GPU here beats 1 PFLOP/s dense
        assert all(v is None or 1e12 < v < 1e15 for v in (row.fp32, row.tf32, row.bf16, row.fp16))


def test_override_wins_and_cpu_means_no_mfu(monkeypatch):
    assert resolve_peak_flops("amp_bf16", override=123e12, device_name="NVIDIA H100 PCIe") == 123e12
    assert resolve_peak_flops("amp_bf16", device_name="NVIDIA H100 PCIe") == pytest.approx(756.5e12)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_peak_flops("amp_bf16") == 0.0
    assert resolve_peak_flops("fp32", override=5e9) == 5e9


def test_unknown_device_warns_naming_device_and_key():
    with pytest.warns(UserWarning) as caught:
        assert resolve_peak_flops("amp_bf16", device_name="NVIDIA Mystery X1") == 0.0
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "NVIDIA Mystery X1" in message and "callbacks.peak_flops" in message


# -- gradient norm and clipping ---------------------------------------------------------------------------


def reference_norms(module: nn.Module, data, lr: float, max_norm: float | None) -> list[float]:
    """Plain PyTorch: the pre-clip global norm of each step, clipping and stepping as the trainer should."""
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    norms = []
    for x, y in data:
        optimizer.zero_grad()
        F.cross_entropy(module(x), y).backward()
        norms.append(math.sqrt(sum(float((p.grad**2).sum()) for p in module.parameters())))
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        optimizer.step()
    return norms


def train_with(callback: GradNormClip) -> tuple[ComposerClassifier, InMemoryLogger, nn.Module, list[float]]:
    """Five SGD steps (lr 0.5) of the tiny classifier under `callback`, and the same steps in plain PyTorch:
    (the trained model, its logger, the plain copy after its steps, the plain copy's pre-clip norms)."""
    data, model = batches(5), tiny_classifier()
    reference = copy.deepcopy(model.module)
    logger = InMemoryLogger()
    trainer(model, data, torch.optim.SGD(model.parameters(), lr=0.5), "5ba", logger, callbacks=[callback]).fit()
    return model, logger, reference, reference_norms(reference, data, lr=0.5, max_norm=callback.max_norm)


def test_grad_norm_is_the_pre_clip_norm_and_clipping_is_applied():
    model, logger, reference, expected = train_with(GradNormClip(max_norm=0.05, log_interval=1))
    assert min(expected) > 0.05, "the test needs clipping to bite"
    norms = logged(logger, GLOBAL_NORM_KEY)
    assert list(norms) == [0, 1, 2, 3, 4]
    assert list(norms.values()) == pytest.approx(expected, rel=1e-5)
    for ours, theirs in zip(model.module.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)  # same updates: the clipped gradient is what was stepped on


def test_grad_norm_interval_and_per_layer_norms_without_clipping():
    _, logger, _, expected = train_with(GradNormClip(max_norm=None, log_interval=2, per_layer=True))
    norms = logged(logger, GLOBAL_NORM_KEY)
    assert list(norms) == [0, 2, 4]
    assert list(norms.values()) == pytest.approx([expected[0], expected[2], expected[4]], rel=1e-5)
    layer_0, layer_1 = logged(logger, "l2_norm/grad/layer_0"), logged(logger, "l2_norm/grad/layer_1")
    for batch, total in norms.items():
        assert math.hypot(layer_0[batch], layer_1[batch]) == pytest.approx(total, rel=1e-5)
    assert not any(
        key.startswith("l2_norm/grad/") and "layer" not in key and key != GLOBAL_NORM_KEY for key in logger.data
    )


def test_grad_norm_rejects_bad_settings():
    with pytest.raises(UserError, match="optimizer.grad_clip_norm"):
        pretrain_config("optimizer.grad_clip_norm=0.0")
    with pytest.raises(UserError, match="callbacks.grad_norm_interval"):
        pretrain_config("optimizer.grad_clip_norm=1.0", "callbacks.grad_norm_interval=-1")


# -- NaN guard ----------------------------------------------------------------------------------------------


def test_nan_loss_stops_before_the_step_and_saves_nothing_after(tmp_path):
    data = batches(6)
    data[3] = (torch.full_like(data[3][0], float("nan")), data[3][1])
    model = tiny_classifier()
    run = trainer(
        model,
        data,
        torch.optim.SGD(model.parameters(), lr=0.1),
        "6ba",
        InMemoryLogger(),
        callbacks=[NaNGuard()],
        save_folder=str(tmp_path),
        save_interval="1ba",
    )
    with pytest.raises(NonFiniteLossError, match=r"training batch 4 \(after 3 completed batches"):
        run.fit()
    saved = sorted(p.name for p in tmp_path.glob("ep*-ba*-rank0.pt"))
    assert saved == ["ep0-ba1-rank0.pt", "ep0-ba2-rank0.pt", "ep0-ba3-rank0.pt"]
    assert all(torch.isfinite(p).all() for p in model.parameters()), "the optimizer stepped on NaN gradients"
    assert issubclass(NonFiniteLossError, UserError)


# -- host reads -------------------------------------------------------------------------------------------


def test_callbacks_read_device_values_only_when_they_report(tmp_path):
    """What would synchronise a GPU, per callback: the budget (one rank) and the NaN guard before the step
    nothing; the NaN guard one read per batch end, of its own host copy of the flag (on a GPU a pinned
    copy that Composer's own per-batch loss read has already waited for); the gradient norm one read per
    logged step; the metrics file one read per write."""
    data, model = batches(6), tiny_classifier()
    metrics = MetricsFile(tmp_path, write_interval=4)
    callbacks = [WallClockBudget(3600.0), NaNGuard(), GradNormClip(max_norm=0.05, log_interval=3, per_layer=True)]
    run = trainer(model, data, torch.optim.SGD(model.parameters(), lr=0.5), "6ba", metrics, callbacks=callbacks)
    with HostReads() as reads:
        run.fit()
    ours = [r.where for r in reads.ours("composer_bert.callbacks")]
    assert ours.count("composer_bert.callbacks.nan_guard.batch_end") == 6
    assert ours.count("composer_bert.callbacks.grad_norm.after_train_batch") == 2  # batches 0 and 3
    written = read_metrics(tmp_path / "metrics.jsonl")
    assert [row["batch"] for row in written] == list(range(7))  # steps 0..6: every row, numbers only
    assert all(isinstance(v, (int, float, str)) for row in written for v in row.values())
    assert ours.count("composer_bert.callbacks.metrics_file.host_values") == 2  # 4 rows, then the last 3
    assert len(ours) == 6 + 2 + 2, ours


def test_metrics_file_is_written_up_to_each_checkpoint_right_after_it(tmp_path):
    """Buffered rows reach the file once a checkpoint exists, so a run resumed from it loses no row."""
    seen: dict[int, list[int]] = {}

    class Peek(Callback):
        def after_dataloader(self, state, logger) -> None:
            path = tmp_path / "metrics.jsonl"
            seen[int(state.timestamp.batch)] = [r["batch"] for r in read_metrics(path)] if path.exists() else []

    data, model = batches(6), tiny_classifier()
    metrics = MetricsFile(tmp_path, write_interval=100)
    run = trainer(model, data, torch.optim.SGD(model.parameters(), lr=0.5), "6ba", metrics, callbacks=[Peek()],
                  save_folder=str(tmp_path / "checkpoints"), save_interval="2ba")
    run.fit()
    # the checkpoint after batch 2 restores step 2: rows 0 and 1 are what a resumed run keeps
    assert seen == {0: [], 1: [], 2: [0, 1], 3: [0, 1], 4: [0, 1, 2, 3], 5: [0, 1, 2, 3]}
    assert [r["batch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(7))


# -- what the trainer gets ------------------------------------------------------------------------------


class CountedClassifier(ComposerClassifier):
    """Reports FLOPs per batch the way ComposerMLM does, so SpeedMonitor can compute MFU."""

    def flops_per_batch(self, batch) -> float:
        return 1e6 * batch[0].shape[0]


def pretrain_config(*overrides: str) -> PretrainConfig:
    return tiny_pretrain_config(*overrides, batch_size=BATCH)


def test_controls_wire_speed_monitor_mfu_and_schedule_into_a_trainer():
    cfg = pretrain_config("callbacks.peak_flops=1e9", "callbacks.speed_monitor_window=2", "optimizer.lr=0.5")
    controls = build_training_controls(cfg)
    assert [type(c) for c in controls.callbacks] == [NaNGuard, GradNormClip, SpeedMonitor, LRMonitor]
    assert controls.algorithms == [] and controls.budget is None

    torch.manual_seed(0)
    model = CountedClassifier(TinyNet(), num_classes=2)
    logger = InMemoryLogger()
    run = trainer(
        model,
        batches(6),
        torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr),
        cfg.max_duration,
        logger,
        callbacks=controls.callbacks,
        algorithms=controls.algorithms,
        schedulers=controls.schedulers,
        step_schedulers_every_batch=True,
    )
    run.fit()
    flops, mfu = logged(logger, "throughput/device/flops_per_sec"), logged(logger, "throughput/device/mfu")
    assert mfu and set(mfu) == set(flops)
    for batch, value in mfu.items():
        assert value == pytest.approx(flops[batch] / 1e9)
    assert GLOBAL_NORM_KEY in logger.data
    # The default triangle starts at 0.25 * lr: the LR monitor sees the schedule applied.
    lrs = logged(logger, "lr-SGD/group0")
    assert lrs[1] == pytest.approx(0.25 * 0.5)


def test_controls_with_budget_and_ramp_and_bad_settings():
    controls = build_training_controls(pretrain_config("budget=2h", "batch_ramp.final_global_batch_size=16"))
    assert isinstance(controls.callbacks[0], WallClockBudget) and controls.callbacks[0].budget_seconds == 7200
    assert [type(a) for a in controls.algorithms] == [BatchRamp]
    assert controls.progress.budget is controls.budget
    with pytest.raises(UserError, match="batch_ramp.final_global_batch_size"):
        build_training_controls(pretrain_config("batch_ramp.final_global_batch_size=10"))
    with pytest.raises(UserError, match="scheduler.peak_fraction"):
        build_training_controls(pretrain_config("scheduler.peak_fraction=1.5"))
    with pytest.raises(UserError, match="callbacks.peak_flops"):
        build_training_controls(pretrain_config("callbacks.peak_flops=-1"))
    no_norm = build_training_controls(
        pretrain_config("optimizer.grad_clip_norm=null", "callbacks.grad_norm_interval=0")
    )
    assert not any(isinstance(c, GradNormClip) for c in no_norm.callbacks)
