"""The training step that `gpu_check.py` times, and the models it times, built as pretraining builds them.

One step is what Composer's Trainer does for `precision: amp_bf16` with `compile: true`: zero the
gradients, forward and loss under bf16 autocast (only the model's `forward` compiled, as the Trainer's
`compile_config` does; our loss stays eager), backward, clip at the recipe's `grad_clip_norm` (our
GradNormClip), and the optimizer of `build_optimizer`. Every model in one comparison goes through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent
T0 = float(os.environ.get("GPU_CHECK_T0") or time.time())
Batch = dict[str, Tensor]
MASK_ID = 4  # [MASK] in our tokenizers; ids below 5 are the special tokens
GPU_MICROBATCHES = (64, 128, 256, 512)
TOY = dict(vocab_size=1024, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)  # --cpu-smoke shapes


@dataclass
class Ctx:
    """What a section knows: the mode, when its process will be killed, and what earlier sections found."""

    smoke: bool
    deadline: float
    microbatches: tuple[int, ...] = GPU_MICROBATCHES
    microbatch: int | None = None  # the speed section's best, for the sections after it
    result_path: str | None = None  # where partial results go, so a section killed at its budget still reports

    def checkpoint(self, lines: list[str]) -> None:
        """Save the results so far: the parent shows them if this process is killed before it finishes."""
        if self.result_path:
            from composer_bert.run.files import atomic_file

            with atomic_file(self.result_path) as tmp:
                tmp.write_text(json.dumps({"ok": False, "error": "incomplete", "markdown": lines}))

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() and not self.smoke else "cpu")

    @property
    def bf16(self) -> bool:
        return self.device.type == "cuda"

    def time_left(self) -> float:
        return self.deadline - time.time()


Result = dict[str, Any]  # {"markdown": [lines], "data": {...}}


def recipe(name: str, *overrides: str):
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.run.config import load_config

    return load_config(PretrainConfig, REPO / "yamls" / "pretrain" / f"{name}.yaml", list(overrides))


def progress(message: str) -> None:
    """A timestamped progress line on stderr (stdout is kept for the markdown)."""
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:5.0f}s] {message}", file=sys.stderr, flush=True)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """Composer's amp_bf16 (autocast around forward and loss), or nothing for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def masked_batches(count: int, batch: int, seq: int, vocab: int, mlm_probability: float, device: torch.device,
                   seed: int = 0) -> list[Batch]:
    """Random MLM batches in the loader's model form: int64 input_ids, attention_mask (ones), labels (-100 = unmasked)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(5, vocab, (batch, seq), generator=generator)
        masked = torch.rand(batch, seq, generator=generator) < mlm_probability
        labels = torch.where(masked, ids, -100)
        parts = dict(input_ids=ids.masked_fill(masked, MASK_ID), attention_mask=torch.ones_like(ids), labels=labels)
        batches.append({key: value.to(device) for key, value in parts.items()})
    return batches


def causal_batches(count: int, batch: int, seq: int, vocab: int, device: torch.device, seed: int = 0) -> list[Batch]:
    """Random causal batches in the loader's model form: int64 input_ids and next-token labels, no attention_mask."""
    from composer_bert.batch import next_token_labels

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(5, vocab, (batch, seq), generator=generator)
        batches.append({"input_ids": ids.to(device), "labels": next_token_labels(ids).to(device)})
    return batches


def mark_batch_dynamic(batches: list[Batch]) -> None:
    """One compile serves every microbatch size of a search (the batch dimension is symbolic)."""
    for batch in batches:
        for tensor in batch.values():
            torch._dynamo.maybe_mark_dynamic(tensor, 0)


@dataclass
class Trainee:
    """A model with its loss, optimizer and FLOP count, as one timing loop needs it."""

    name: str
    module: torch.nn.Module
    loss_of: Callable[[Batch], Tensor]
    optimizer: torch.optim.Optimizer
    flops_of: Callable[[Batch], int]
    grad_clip_norm: float | None

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def ours(name: str, model_cfg, optimizer_cfg, device: torch.device, compile: bool, module=None) -> Trainee:
    """`ComposerMLM` (what pretraining trains) on `device`, its forward compiled as the Trainer compiles it."""
    from composer_bert.models.composer_model import ComposerMLM
    from composer_bert.optim.optimizer import build_optimizer

    model = (module if module is not None else ComposerMLM(model_cfg)).to(device)
    if compile:
        model.forward = torch.compile(model.forward)
    optimizer = build_optimizer(optimizer_cfg, model)
    return Trainee(name, model, lambda b: model.loss(model(b), b), optimizer, model.flops_per_batch, optimizer_cfg.grad_clip_norm)


def hugging_face(name: str, hf_cfg, optimizer_cfg, device: torch.device, compile: bool) -> Trainee:
    """`transformers.BertForMaskedLM` with SDPA attention, FLOPs counted as for ours of the same config."""
    import transformers

    from composer_bert.models.flops import mlm_flops_per_batch
    from composer_bert.models.hf_bert import model_config_from_hf
    from composer_bert.optim.optimizer import build_optimizer

    hf_cfg._attn_implementation = "sdpa"
    model = transformers.BertForMaskedLM(hf_cfg).to(device)
    if compile:
        model.forward = torch.compile(model.forward)
    same_math = model_config_from_hf(hf_cfg)
    optimizer = build_optimizer(optimizer_cfg, model)
    return Trainee(
        name, model, lambda b: model(**b).loss, optimizer, lambda b: mlm_flops_per_batch(same_math, b),
        optimizer_cfg.grad_clip_norm,
    )


def train_step(trainee: Trainee, batch: Batch, device: torch.device, bf16: bool) -> Tensor:
    trainee.optimizer.zero_grad(set_to_none=True)
    with autocast(device, bf16):
        loss = trainee.loss_of(batch)
    loss.backward()
    if trainee.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(trainee.module.parameters(), trainee.grad_clip_norm)
    trainee.optimizer.step()
    return loss.detach()


def timed_steps(trainee: Trainee, batches: list[Batch], steps: int, device: torch.device, bf16: bool) -> float:
    """Seconds per step over `steps` steps, synchronised with the device before and after."""
    synchronize(device)
    start = time.perf_counter()
    for index in range(steps):
        train_step(trainee, batches[index % len(batches)], device, bf16)
    synchronize(device)
    return (time.perf_counter() - start) / steps


_SDPA_OPS = (  # profiler op-name fragment -> backend, most specific first
    ("flash_attention_for_cpu", "flash (CPU)"),
    ("flash_attention", "flash"),
    ("efficient_attention", "efficient"),
    ("cudnn_attention", "cudnn"),
    ("attention_math", "math"),
)


def sdpa_in_step(trainee: Trainee, batch: Batch, device: torch.device, bf16: bool) -> tuple[str, list[str], list[str]]:
    """The SDPA backend(s), ops and (on CUDA) attention kernels the profiler sees in one training step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_step(trainee, batch, device, bf16)
        synchronize(device)
    events = prof.key_averages()
    ops = sorted({e.key for e in events if "scaled_dot_product" in e.key and e.key != "aten::scaled_dot_product_attention"})
    kernels = sorted({
        e.key[:90] for e in events
        if e.device_type == DeviceType.CUDA and any(s in e.key.lower() for s in ("flash", "fmha", "attention"))
    })
    used = {next((name for fragment, name in _SDPA_OPS if fragment in op), op) for op in ops}
    return ", ".join(sorted(used)) or "none seen", ops, kernels


@dataclass
class Throughput:
    """One model at one microbatch: the numbers every speed table shows."""

    microbatch: int
    step_s: float
    first_step_s: float  # includes compiling
    tokens_per_s: float
    flops_per_step: float
    mfu: float | None
    peak_memory_gib: float | None


def measure(trainee: Trainee, batches: list[Batch], warmup: int, steps: int, device: torch.device, bf16: bool,
            peak_flops: float | None) -> Throughput:
    """Warm up (the first step compiles), then time `steps` steps; peak memory over the whole run."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first = timed_steps(trainee, batches, 1, device, bf16)
    if warmup > 1:
        timed_steps(trainee, batches[1:] + batches[:1], warmup - 1, device, bf16)
    step_s = timed_steps(trainee, batches, steps, device, bf16)
    batch_size, seq = batches[0]["input_ids"].shape
    flops = sum(trainee.flops_of(b) for b in batches) / len(batches)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Throughput(
        microbatch=batch_size,
        step_s=step_s,
        first_step_s=first,
        tokens_per_s=batch_size * seq / step_s,
        flops_per_step=flops,
        mfu=flops / step_s / peak_flops if peak_flops else None,
        peak_memory_gib=memory,
    )


def peak_bf16_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak from our table (composer_bert/run/peak_flops.py); None on CPU."""
    from composer_bert.run.peak_flops import lookup_peak_flops

    return lookup_peak_flops(torch.cuda.get_device_name(device), "amp_bf16") if device.type == "cuda" else None

