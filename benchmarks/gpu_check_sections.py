"""The model sections of `gpu_check.py`: environment, correctness (with the SDPA backend) and speed. Each takes
a `Ctx` and returns markdown lines plus data for the sections after it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import os
import platform
import subprocess
from importlib import metadata

import torch
from gpu_check_report import blocks, fmt_gib, fmt_mfu, markdown_table, speed_cells
from gpu_check_steps import (
    TOY,
    Ctx,
    Result,
    Throughput,
    autocast,
    first_line,
    mark_batch_dynamic,
    masked_batches,
    measure,
    ours,
    peak_bf16_flops,
    progress,
    recipe,
    sdpa_in_step,
    synchronize,
    train_step,
)

LOSS_TOLERANCE = 0.02  # nats: bf16 autocast + compile may differ from fp32 eager by this much per step
LOGIT_TOLERANCE = 0.02  # relative (Frobenius) error of bf16 logits against fp32 at the same weights


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as err:
        return f"n/a (nvidia-smi: {first_line(err)})"


def env_section(ctx: Ctx) -> Result:
    import composer_bert

    cuda = torch.cuda.is_available()
    rows = []
    if cuda:
        props = torch.cuda.get_device_properties(0)
        rows.append(("device", f"{props.name} ×{torch.cuda.device_count()}, {props.total_memory / 2**30:.1f} GiB, "
                               f"sm_{props.major}{props.minor}, {props.multi_processor_count} SMs"))
        rows.append(("driver", _driver()))
    else:
        rows.append(("device", f"CPU only ({os.cpu_count()} cores): no CUDA device"))
    cudnn = torch.backends.cudnn.version() if cuda else None
    rows += [
        ("torch / CUDA / cuDNN / Triton", f"{torch.__version__} / {torch.version.cuda} / {cudnn} / {_version('triton')}"),
        ("composer-bert / Composer / streaming",
         f"{composer_bert.__version__} / {_version('mosaicml')} / {_version('mosaicml-streaming')}"),
        ("transformers / tokenizers / numpy / Python",
         f"{_version('transformers')} / {_version('tokenizers')} / {_version('numpy')} / {platform.python_version()}"),
    ]
    if cuda:
        peak = peak_bf16_flops(torch.device("cuda"))
        rows.append(("bf16 dense peak (peak_flops.py)", f"{peak / 1e12:.1f} TFLOP/s" if peak else "not in the table: no MFU"))
    for module in ("composer", "streaming", "composer_bert.pretrain.trainer", "transformers"):
        try:
            importlib.import_module(module)
            rows.append((f"import {module}", "ok"))
        except Exception as err:  # reported, so the other sections' failures can be read against it
            rows.append((f"import {module}", f"FAILED: {first_line(err)}"))
    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    return {"markdown": markdown_table(["", ""], rows), "data": {"cuda": cuda, "device_name": name}}


def _sdpa_backends(device: torch.device) -> list[str]:
    """Which SDPA backends run the crammed attention shape ([8, 12, 128, 64]) forward and backward, each alone."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    found = []
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
        q, k, v = (torch.randn(8, 12, 128, 64, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
            synchronize(device)
            found.append(f"{backend.name.lower()} ok")
        except RuntimeError as err:
            found.append(f"{backend.name.lower()} no ({first_line(err)[:80]})")
    return found


def correctness_section(ctx: Ctx) -> Result:
    from composer_bert.models.composer_model import ComposerMLM

    cfg = recipe("tiny", "model.vocab_size=4096")
    device = ctx.device
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference is true fp32
    torch.manual_seed(0)
    reference = ComposerMLM(cfg.model)
    candidate_module = copy.deepcopy(reference)
    compile_on = device.type == "cuda"
    reference = ours("fp32 eager", None, cfg.optimizer, device, compile=False, module=reference)
    candidate = ours("bf16", None, cfg.optimizer, device, compile=compile_on, module=candidate_module)
    steps = 2 if ctx.smoke else 8
    seq = cfg.model.max_position_embeddings
    batches = masked_batches(2, cfg.global_train_batch_size, seq, 4096, cfg.data.mlm_probability, device, seed=1)
    label = "bf16 autocast + compile" if compile_on else "bf16 autocast (CPU, no compile)"
    progress(f"correctness: logits, then {steps} steps of fp32 eager vs {label}")
    with torch.no_grad():
        fp32_logits = reference.module(batches[0]).float()
        with autocast(device, True):
            bf16_logits = candidate.module(batches[0]).float()
    logit_error = float((bf16_logits - fp32_logits).norm() / fp32_logits.norm())
    rows, worst = [], 0.0
    for step in range(steps):  # two batches in turn: the loss falls, so the trajectories are worth comparing
        fp32 = float(train_step(reference, batches[step % 2], device, bf16=False))
        bf16 = float(train_step(candidate, batches[step % 2], device, bf16=True))
        worst = max(worst, abs(fp32 - bf16)) if math.isfinite(fp32) and math.isfinite(bf16) else math.inf
        rows.append([str(step + 1), f"{fp32:.4f}", f"{bf16:.4f}", f"{abs(fp32 - bf16):.4f}"])
    passed = worst <= LOSS_TOLERANCE and logit_error <= LOGIT_TOLERANCE
    lines = blocks(
        f"tiny.yaml's model ({cfg.model.num_layers}×{cfg.model.hidden_size}, vocab 4096), batch "
        f"{cfg.global_train_batch_size}×{seq}, same init, two random batches in turn, AdamW of tiny.yaml, clip "
        f"{cfg.optimizer.grad_clip_norm}, no schedule.",
        markdown_table(["step", "fp32 eager loss", f"{label} loss", "abs diff"], rows),
        f"Logits before training: relative error {logit_error:.2e} (tolerance {LOGIT_TOLERANCE}); max abs loss diff "
        f"{worst:.4f} (tolerance {LOSS_TOLERANCE}): **{'PASS' if passed else 'FAIL'}**",
    )
    ctx.checkpoint(lines)
    progress("correctness: SDPA backend of the training step, then each backend alone")
    backend = "unknown"
    try:  # the model's own step first: a backend probe that breaks the CUDA context cannot spoil it
        backend, ops, kernels = sdpa_in_step(candidate, batches[0], device, bf16=True)
        not_math = "PASS" if ops and "math" not in backend else "FAIL"
        in_step = (f"SDPA in the {label} training step (profiler): **{backend}** (not math: **{not_math}**); "
                   f"ops: {', '.join(f'`{op}`' for op in ops) or 'none'}"
                   + (f"; kernels: {', '.join(f'`{k}`' for k in kernels[:3])}" if kernels else ""))
    except Exception as err:  # reported in the section; the loss comparison above stands
        in_step = f"SDPA in the training step: **FAILED**: {first_line(err)}"
    try:
        alone = "SDPA backends alone on [8, 12, 128, 64] (head dim 64, as crammed-bert and tiny): " + "; ".join(
            _sdpa_backends(device))
    except Exception as err:
        alone = f"SDPA backends alone: **FAILED**: {first_line(err)}"
    return {"markdown": blocks(lines, in_step, alone), "data": {"max_loss_diff": worst, "logit_error": logit_error, "sdpa": backend}}


def _graph_breaks() -> str:
    """Dynamo's graph breaks so far, counted by reason (each reason's first line)."""
    counts = torch._dynamo.utils.counters["graph_break"]
    reasons = ", ".join(f"{n}× {reason.splitlines()[0][:70]}" for reason, n in counts.items())
    return f"{sum(counts.values())} graph breaks" + (f" ({reasons})" if reasons else "")


def speed_section(ctx: Ctx) -> Result:
    cfg = recipe("crammed-bert")
    model_cfg = dataclasses.replace(cfg.model, **TOY) if ctx.smoke else cfg.model
    device, bf16 = ctx.device, ctx.bf16
    torch.backends.cuda.matmul.allow_tf32 = True  # as Composer's GPU device sets it
    torch.manual_seed(0)
    trainee = ours("crammed-bert", model_cfg, cfg.optimizer, device, compile=not ctx.smoke)
    peak = peak_bf16_flops(device)
    seq = model_cfg.max_position_embeddings
    warmup, steps = (1, 2) if ctx.smoke else (3, 10)
    shape = f"{model_cfg.num_layers}×{model_cfg.hidden_size}, {model_cfg.ffn_type}, vocab {model_cfg.vocab_size}, seq {seq}"
    mode = "bf16 autocast + torch.compile (batch dim dynamic: one compile for the search)" if bf16 else "fp32 eager"
    results: list[Throughput] = []
    notes: list[str] = []

    def report() -> list[str]:
        rows = [[str(r.microbatch), *speed_cells(r), f"{r.flops_per_step / 1e12:.3f}", f"{r.first_step_s:.1f}",
                 fmt_gib(r.peak_memory_gib)] for r in results]
        return blocks(
            f"crammed-bert.yaml's model ({shape}, {trainee.params / 1e6:.1f}M params), {mode}; AdamW and clip of the "
            f"recipe; mlm {cfg.data.mlm_probability}; {steps} timed steps after {warmup} warm-up"
            + (", CUDA-synchronised." if device.type == "cuda" else "."),
            markdown_table(["microbatch", "tokens/s", "MFU", "step ms", "TFLOP/step", "first step s", "peak mem GiB"],
                           rows + [[note] for note in notes]),
        )

    for microbatch in ctx.microbatches:
        if results:  # later sizes reuse the compiled graphs: about (warm-up + timed) steps, scaled by the size
            last = results[-1]
            needed = 10 + 2 * (warmup + steps) * last.step_s * microbatch / last.microbatch
            if ctx.time_left() < needed:
                notes.append(f"{microbatch}: not run (time budget)")
                break
        progress(f"speed: microbatch {microbatch}")
        batches = masked_batches(4, microbatch, seq, model_cfg.vocab_size, cfg.data.mlm_probability, device, seed=microbatch)
        mark_batch_dynamic(batches)
        try:
            results.append(measure(trainee, batches, warmup, steps, device, bf16, peak))
        except torch.cuda.OutOfMemoryError:
            notes.append(f"{microbatch}: out of memory")
            break
        except Exception as err:  # one size failing still leaves the others' numbers
            notes.append(f"{microbatch}: FAILED: {first_line(err)}")
            break
        finally:
            del batches
            if device.type == "cuda":
                torch.cuda.empty_cache()
        ctx.checkpoint(report())
    if not results:
        raise RuntimeError("no microbatch size ran: " + "; ".join(notes))
    best = max(results, key=lambda r: r.tokens_per_s)
    compile_s = max(0.0, results[0].first_step_s - results[0].step_s)
    graphs = torch._dynamo.utils.counters["stats"].get("unique_graphs", 0)
    mfu = f"MFU **{fmt_mfu(best.mfu)}**" + (f" (flops_per_batch / step time / bf16 peak {peak / 1e12:.1f} TFLOP/s)"
                                             if peak else f" (no peak FLOP/s for {device})")
    lines = blocks(
        report(),
        f"Best: microbatch **{best.microbatch}**: **{best.tokens_per_s:,.0f} tokens/s**, {mfu}.",
        f"Compile: {compile_s:.1f} s (first step minus a timed one); dynamo compiled {graphs} graphs, {_graph_breaks()}.",
    )
    return {"markdown": lines, "data": {"best_microbatch": best.microbatch, "tokens_per_s": best.tokens_per_s}}
