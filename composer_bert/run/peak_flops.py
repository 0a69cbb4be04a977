"""Peak dense FLOP/s per accelerator and precision: the denominator of model FLOP utilization (MFU).

Composer's SpeedMonitor computes `throughput/device/mfu` from `model.flops_per_batch(batch)` and a
`gpu_flops_available` number. Its own lookup knows few devices and silently logs no MFU for the others, so
this module is the one table we trust: vendor datasheet numbers *without* the 2x structured-sparsity factor.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import torch

TERA = 1e12


@dataclass(frozen=True)
class DevicePeak:
    """Dense peak FLOP/s of one accelerator; None where the hardware has no such tensor-core path."""

    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None


_H100_SXM = DevicePeak(fp32=67 * TERA, tf32=494.7 * TERA, bf16=989.4 * TERA, fp16=989.4 * TERA)
_H100_NVL = DevicePeak(fp32=60 * TERA, tf32=417.5 * TERA, bf16=835.5 * TERA, fp16=835.5 * TERA)

PEAK_FLOPS: dict[str, DevicePeak] = {
    "h200": _H100_SXM,  # same tensor cores and clocks as H100 SXM, more memory
    "h200-nvl": _H100_NVL,
    "gh200": _H100_SXM,
    "h100-sxm": _H100_SXM,
    "h100-nvl": _H100_NVL,
    "h100-pcie": DevicePeak(fp32=51 * TERA, tf32=378 * TERA, bf16=756.5 * TERA, fp16=756.5 * TERA),
    "a100": DevicePeak(fp32=19.5 * TERA, tf32=156 * TERA, bf16=312 * TERA, fp16=312 * TERA),
    "a40": DevicePeak(fp32=37.4 * TERA, tf32=74.8 * TERA, bf16=149.7 * TERA, fp16=149.7 * TERA),
    "a30": DevicePeak(fp32=10.3 * TERA, tf32=82 * TERA, bf16=165 * TERA, fp16=165 * TERA),
    "a10": DevicePeak(fp32=31.2 * TERA, tf32=62.5 * TERA, bf16=125 * TERA, fp16=125 * TERA),
    "rtx-a6000": DevicePeak(fp32=38.7 * TERA, tf32=77.4 * TERA, bf16=154.8 * TERA, fp16=154.8 * TERA),
    "rtx-6000-ada": DevicePeak(fp32=91.1 * TERA, tf32=182.1 * TERA, bf16=364.2 * TERA, fp16=364.2 * TERA),
    "l40s": DevicePeak(fp32=91.6 * TERA, tf32=183 * TERA, bf16=362.05 * TERA, fp16=362.05 * TERA),
    "l40": DevicePeak(fp32=90.5 * TERA, tf32=90.5 * TERA, bf16=181.05 * TERA, fp16=181.05 * TERA),
    "l4": DevicePeak(fp32=30.3 * TERA, tf32=60 * TERA, bf16=121 * TERA, fp16=121 * TERA),
    # GeForce cards: tensor-core rates with fp32 accumulation, which is what autocast uses.
    "rtx-4090": DevicePeak(fp32=82.6 * TERA, tf32=82.6 * TERA, bf16=165.2 * TERA, fp16=165.2 * TERA),
    "rtx-3090-ti": DevicePeak(fp32=40 * TERA, tf32=40 * TERA, bf16=80 * TERA, fp16=80 * TERA),
    "rtx-3090": DevicePeak(fp32=35.6 * TERA, tf32=35.6 * TERA, bf16=71 * TERA, fp16=71 * TERA),
    "v100s-pcie": DevicePeak(fp32=16.4 * TERA, tf32=None, bf16=None, fp16=130 * TERA),
    "v100-pcie": DevicePeak(fp32=14 * TERA, tf32=None, bf16=None, fp16=112 * TERA),
    "v100-sxm": DevicePeak(fp32=15.7 * TERA, tf32=None, bf16=None, fp16=125 * TERA),
    "t4": DevicePeak(fp32=8.1 * TERA, tf32=None, bf16=None, fp16=65 * TERA),
}

# First match wins, so variants come before the bare model number. Patterns run on the normalized name:
# lower case, every run of non-alphanumerics one space ('NVIDIA A100-SXM4-80GB' -> 'nvidia a100 sxm4 80gb').
_NAME_PATTERNS: list[tuple[str, str]] = [
    ("gh200", r"\bgh200\b"),
    ("h200-nvl", r"\bh200\b.*\bnvl\b"),
    ("h200", r"\bh200\b"),
    ("h100-nvl", r"\bh100\b.*\bnvl\b"),
    ("h100-pcie", r"\bh100\b.*\b(pcie|hbm2e)\b"),
    ("h100-sxm", r"\bh100\b"),  # 'NVIDIA H100 80GB HBM3' is the SXM part
    ("a100", r"\ba100\b"),
    ("a40", r"\ba40\b"),
    ("a30", r"\ba30\b"),
    ("a10", r"\ba10\b"),  # not 'a10g', whose rates differ
    ("rtx-6000-ada", r"\b6000 ada\b"),
    ("rtx-a6000", r"\ba6000\b"),
    ("l40s", r"\bl40s\b"),
    ("l40", r"\bl40\b"),
    ("l4", r"\bl4\b"),
    ("rtx-4090", r"\b4090\b(?! d\b)"),
    ("rtx-3090-ti", r"\b3090 ti\b"),
    ("rtx-3090", r"\b3090\b"),
    ("v100s-pcie", r"\bv100s\b"),
    ("v100-pcie", r"\bv100\b.*\bpcie\b"),
    ("v100-sxm", r"\bv100\b"),
    ("t4", r"\bt4\b"),
]

# Composer precision -> the tensor-core path its matmuls run on. Composer's GPU device turns TF32 matmuls on
# by default, so an fp32 run is measured against the TF32 peak where the hardware has one.
_PRECISION_PATH = {"fp32": "tf32", "amp_bf16": "bf16", "amp_fp16": "fp16"}

PEAK_FLOPS_KEY = "callbacks.peak_flops"


def match_device(device_name: str) -> str | None:
    """The `PEAK_FLOPS` key for a `torch.cuda.get_device_name()` string, or None if we do not know it."""
    normalized = re.sub(r"[^a-z0-9]+", " ", device_name.lower()).strip()
    for key, pattern in _NAME_PATTERNS:
        if re.search(pattern, normalized):
            return key
    return None


def lookup_peak_flops(device_name: str, precision: str, tf32_matmul: bool = True) -> float | None:
    """Dense peak FLOP/s of `device_name` at Composer `precision`, or None if the table has no number."""
    key = match_device(device_name)
    if key is None:
        return None
    peak = PEAK_FLOPS[key]
    path = _PRECISION_PATH.get(precision)
    if path is None:
        return None
    if path == "tf32":
        return peak.tf32 if tf32_matmul and peak.tf32 is not None else peak.fp32
    return getattr(peak, path)


def resolve_peak_flops(precision: str, override: float | None = None, device_name: str | None = None) -> float:
    """The FLOP/s for SpeedMonitor's `gpu_flops_available`; 0 means "log no MFU".

    An override (YAML `callbacks.peak_flops`) wins. Without one: the current CUDA device from our table,
    warning once (here, at build time) when the device is unknown, and 0 on CPU, where MFU means little.
    """
    if override is not None:
        return float(override)
    if device_name is None:
        if not torch.cuda.is_available():
            return 0.0
        device_name = torch.cuda.get_device_name()
    value = lookup_peak_flops(device_name, precision)
    if value is None:
        warnings.warn(
            f"no peak FLOP/s known for '{device_name}' at precision {precision}, so MFU "
            f"(throughput/device/mfu) will not be logged; set {PEAK_FLOPS_KEY} to the device's dense peak FLOP/s",
            stacklevel=2,
        )
        return 0.0
    return value
