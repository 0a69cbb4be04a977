"""The training sections of `gpu_check.py`: loader stall under the real Composer Trainer, and a 2-process DDP step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
from gpu_check_report import blocks, fmt_mfu, markdown_table
from gpu_check_steps import (
    REPO,
    Ctx,
    Result,
    Trainee,
    masked_batches,
    peak_bf16_flops,
    progress,
    recipe,
    synchronize,
    timed_steps,
    train_step,
)


def _data_prep(*args: str, timeout: float) -> None:
    """One of the package's data_prep CLIs, as a user runs it."""
    done = subprocess.run([sys.executable, *args, "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"{args[0]} exited {done.returncode}: {lines[-1] if lines else 'no output'}")


def build_shards(root: Path, rows: int, smoke: bool) -> tuple[Path, int]:
    """Tokenizer and seq-128 shards of the synthetic corpus through data_prep/, with at least `rows` train rows."""
    tokenizer, shards = root / "tokenizer", root / "shards"
    vocab, tokenizer_docs = (1024, 1000) if smoke else (4096, 3000)
    _data_prep("data_prep/train_tokenizer.py", "--source", f"synthetic:{tokenizer_docs}", "--vocab-size", str(vocab),
               "--out", str(tokenizer), timeout=120)
    documents = int(rows * 1.3) + 200  # about one 128-token row per synthetic document
    workers = 1 if smoke else min(8, os.cpu_count() or 1)
    _data_prep("data_prep/convert_dataset.py", "--source", f"synthetic:{documents}", "--tokenizer", str(tokenizer),
               "--seq-len", "128", "--out", str(shards), "--workers", str(workers), "--no-ratio-filter", timeout=240)
    built = json.loads((shards / "manifest.json").read_text())["splits"]["train"]["rows"]
    if built < rows:
        raise RuntimeError(f"the synthetic shards hold {built} train rows, fewer than the {rows} the timed steps need")
    return shards, built


def loader_section(ctx: Ctx) -> Result:
    from composer.core import Callback

    from composer_bert.callbacks.metrics_file import read_metrics
    from composer_bert.pretrain.trainer import build_trainer

    device = ctx.device

    class LoaderStall(Callback):
        """Time blocked in next(dataloader) and the whole step (dataloader to dataloader); syncs at each batch end."""

        def __init__(self) -> None:
            self.waits: list[float] = []
            self.cycles: list[float] = []
            self.started: float | None = None

        def before_dataloader(self, state, logger) -> None:
            now = time.perf_counter()
            if self.started is not None:
                self.cycles.append(now - self.started)
            self.started = now

        def after_dataloader(self, state, logger) -> None:
            self.waits.append(time.perf_counter() - self.started)

        def batch_end(self, state, logger) -> None:
            synchronize(device)

    microbatch = ctx.microbatch or (8 if ctx.smoke else 256)
    warmup, steps = (1, 3) if ctx.smoke else (4, 20)
    with tempfile.TemporaryDirectory(prefix="gpu_check_loader_") as tmp:
        progress("loader: tokenizer and shards through data_prep/")
        start = time.time()
        shards, rows = build_shards(Path(tmp), (warmup + steps + 2) * microbatch, ctx.smoke)
        shard_s = time.time() - start
        name = "tiny" if ctx.smoke else "crammed-bert"
        overrides = [
            f"data.local={shards}", f"save_folder={tmp}/run", "model.vocab_size=null", "budget=null", "autoresume=false",
            "batch_ramp.final_global_batch_size=null", f"global_train_batch_size={microbatch}",
            f"device_train_microbatch_size={microbatch}", f"max_duration={warmup + steps + 1}ba", "data.eval_split=null",
            "save_interval=1000000ba", "loggers.progress_bar=false", f"callbacks.speed_monitor_window={steps}",
        ]
        cfg = recipe(name, *overrides, *(["data.num_workers=1"] if ctx.smoke else []))
        progress(f"loader: Composer Trainer on {name}.yaml, microbatch {microbatch}")
        trainer = build_trainer(cfg)
        stall = LoaderStall()
        trainer.state.callbacks.append(stall)
        trainer.fit()
        flops = trainer.state.model.flops_per_batch(trainer.state.batch)
        trainer.close()
        logged = read_metrics(Path(cfg.save_folder) / "metrics.jsonl")
    waits, cycles = stall.waits[warmup:len(stall.cycles)], stall.cycles[warmup:]
    if not cycles:
        raise RuntimeError(f"the Trainer ran {len(stall.cycles)} steps, none after the {warmup} warm-up")
    share, cycle = sum(waits) / sum(cycles), sum(cycles) / len(cycles)
    peak = peak_bf16_flops(device)
    seq = 128

    def last(key: str) -> float | None:
        values = [row[key] for row in logged if isinstance(row.get(key), (int, float))]
        return values[-1] if values else None

    monitor_tps, monitor_mfu = last("throughput/tokens_per_sec"), last("throughput/device/mfu")
    lines = blocks(
        f"`build_trainer` of composer_bert/pretrain/trainer.py on {name}.yaml (compile {cfg.compile}, precision "
        f"{cfg.precision if device.type == 'cuda' else 'fp32 (CPU)'}, "
        f"data.num_workers {cfg.data.num_workers}), microbatch {microbatch}, vocab from the shards "
        f"({trainer.state.model.config.vocab_size}); {len(cycles)} timed steps after {warmup} warm-up. The device is "
        "synchronised at each batch end, so time blocked in the loader is time the GPU waits (an upper bound).",
        markdown_table(["", ""], [
            ["shards (data_prep/ on the synthetic corpus)", f"{rows:,} train rows × {seq} built in {shard_s:.1f} s"],
            ["blocked in next(dataloader)", f"{sum(waits) / len(waits) * 1e3:.2f} ms/step mean, {max(waits) * 1e3:.2f} ms max"],
            ["step, dataloader to dataloader", f"{cycle * 1e3:.1f} ms"],
            ["**loader stall**", f"**{share:.1%}** of step time"],
            ["tokens/s through the Trainer", f"{microbatch * seq / cycle:,.0f} (MFU {fmt_mfu(flops / cycle / peak if peak else None)})"],
            ["SpeedMonitor's last (tokens/s, MFU)", f"{'n/a' if monitor_tps is None else f'{monitor_tps:,.0f}'}, {fmt_mfu(monitor_mfu)}"],
        ]),
    )
    return {"markdown": lines, "data": {"loader_stall": share}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_worker(rank: int, world: int, port: int, backend: str, out: str) -> None:
    """One rank: tiny model under DistributedDataParallel, a warm-up and a timed step on this rank's own batch."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from composer_bert.models.composer_model import ComposerMLM
    from composer_bert.optim.optimizer import build_optimizer

    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        cfg = recipe("tiny", "model.vocab_size=4096")
        torch.manual_seed(0)
        model = ComposerMLM(cfg.model).to(device)
        ddp = DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
        trainee = Trainee("ddp", ddp, lambda b: model.loss(ddp(b), b), build_optimizer(cfg.optimizer, model),
                          model.flops_per_batch, cfg.optimizer.grad_clip_norm)
        batches = masked_batches(2, 16, 128, 4096, 0.15, device, seed=100 + rank)  # each rank its own data
        bf16 = device.type == "cuda"
        train_step(trainee, batches[0], device, bf16)
        step_s = timed_steps(trainee, batches[1:], 1, device, bf16)
        differences = {}
        for what, tensors in (("gradients", [p.grad for p in model.parameters()]), ("weights", list(model.parameters()))):
            flat = torch.cat([t.detach().flatten().float() for t in tensors])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            differences[what] = max(float((g - gathered[0]).abs().max()) for g in gathered)
        if rank == 0:
            Path(out).write_text(json.dumps({"step_s": step_s, **differences}))
    finally:
        dist.destroy_process_group()


def ddp_section(ctx: Ctx) -> Result:
    gpus = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    if ctx.device.type == "cuda" and gpus < 2:
        return {"markdown": [f"skipped ({gpus} GPU)"], "data": {"ddp": "skipped"}}
    backend = "nccl" if gpus else "gloo"
    progress(f"ddp: 2 processes, {backend}")
    with tempfile.TemporaryDirectory(prefix="gpu_check_ddp_") as tmp:
        out = str(Path(tmp) / "rank0.json")
        start_method = "spawn" if gpus else "fork"  # CUDA needs fresh processes; on the CPU fork skips the re-imports
        torch.multiprocessing.start_processes(
            ddp_worker, args=(2, _free_port(), backend, out), nprocs=2, join=True, start_method=start_method
        )
        found = json.loads(Path(out).read_text())
    same = found["gradients"] == 0.0 and found["weights"] == 0.0
    where = "2 GPUs" if gpus else "CPU (--cpu-smoke)"
    return {
        "markdown": [
            f"2 processes ({backend}, {where}), tiny.yaml's model under DistributedDataParallel, each rank its own batch "
            f"of 16×128: step {found['step_s'] * 1e3:.1f} ms; gradients and weights identical across ranks after the "
            f"step: **{'PASS' if same else 'FAIL'}** (max differences {found['gradients']:.2e}, {found['weights']:.2e})",
        ],
        "data": {"ddp": "ok" if same else "differ"},
    }
