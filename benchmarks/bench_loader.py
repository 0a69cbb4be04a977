"""Throughput of the MLM loader: masked batches/s and sequences/s through the real DataLoader, vs the target.

Target: one DataLoader worker delivers >= 50,000 masked sequences of 128 tokens per second, so data
loading never starves one GPU. Also times the parts alone (reading rows, masking) to show where the time
goes, and the CPU each process spends per batch: on a shared machine wall-clock rates depend on what else
runs, while CPU per batch says what a dedicated core would give.

    python benchmarks/bench_loader.py                      # 200k rows, batch 256, workers 0 and 1
    python benchmarks/bench_loader.py --rows 50000 --batches 100 --root /tmp/bench_shards
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from streaming import MDSWriter

from composer_bert.data.contract import write_manifest
from composer_bert.data.load.collators import build_masker
from composer_bert.data.load.config import DataConfig
from composer_bert.data.load.loader import build_dataloader, build_dataset
from composer_bert.data.load.shard_set import open_shards

TARGET_SEQUENCES_PER_S = 50_000
VOCAB_SIZE = 32768
SPECIAL_TOKENS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
SEED = 17


def write_shards(root: Path, rows: int, seq_len: int) -> None:
    """Random token rows starting with [CLS], with ~1% [SEP], in 64 MB shards (convert_dataset.py's default)."""
    rng = np.random.default_rng(0)
    chunk = 10_000
    with MDSWriter(out=str(root / "train"), columns={"input_ids": "ndarray:uint16"}, size_limit=1 << 26) as writer:
        for start in range(0, rows, chunk):
            block = rng.integers(5, VOCAB_SIZE, size=(min(chunk, rows - start), seq_len), dtype=np.uint16)
            block[rng.random(block.shape) < 0.01] = SPECIAL_TOKENS["sep"]
            block[:, 0] = SPECIAL_TOKENS["cls"]
            for row in block:
                writer.write({"input_ids": row})
    tokenizer = {"sha256": "0" * 64, "vocab_size": VOCAB_SIZE, "special_tokens": SPECIAL_TOKENS}
    write_manifest(root, {"tokenizer": tokenizer, "seq_len": seq_len, "dtype": "uint16"})


@dataclass
class Measurement:
    name: str
    batches: int
    seconds: float
    loader_cpu_seconds: float | None = None  # CPU of the process(es) that build batches
    main_cpu_seconds: float | None = None  # CPU of the process that consumes them (when that is another one)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes, from /proc."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def time_dataloader(cfg: DataConfig, batch_size: int, batches: int) -> Measurement:
    """The real DataLoader, after its first batch (worker start-up is not throughput)."""
    loader = build_dataloader(cfg, open_shards(cfg), split="train", device_batch_size=batch_size, seed=SEED)
    iterator = iter(loader)
    next(iterator)
    worker_pids = [child.pid for child in multiprocessing.active_children()]  # the DataLoader's workers
    main_pid = os.getpid()
    start, loader_cpu, main_cpu = time.perf_counter(), cpu_seconds(worker_pids or [main_pid]), cpu_seconds([main_pid])
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    loader_cpu = cpu_seconds(worker_pids or [main_pid]) - loader_cpu
    main_cpu = cpu_seconds([main_pid]) - main_cpu if worker_pids else None
    del iterator
    return Measurement(f"DataLoader, {cfg.num_workers} worker(s)", batches, seconds, loader_cpu, main_cpu)


def time_rows_only(cfg: DataConfig, batch_size: int, batches: int) -> Measurement:
    """StreamingDataset's iteration plus batched row reads: no masking, no DataLoader."""
    dataset = build_dataset(
        cfg, open_shards(cfg), split="train", device_batch_size=batch_size, seed=SEED, shuffle=True, remask_each_epoch=True
    )
    iterator = iter(dataset)
    start = time.perf_counter()
    for _ in range(batches):
        dataset.rows(np.array([next(iterator)[0] for _ in range(batch_size)]))
    return Measurement("dataset + row reads only", batches, time.perf_counter() - start)


def time_masking_only(cfg: DataConfig, batch_size: int, seq_len: int, batches: int) -> Measurement:
    """MLMMasker alone on an in-memory batch."""
    masker = build_masker(cfg, open_shards(cfg).contract, seed=SEED)
    rows = np.random.default_rng(1).integers(5, VOCAB_SIZE, size=(batch_size, seq_len), dtype=np.uint16)
    out = (np.empty(rows.shape, np.int16), np.empty(rows.shape, np.int16))
    start = time.perf_counter()
    for step in range(batches):
        masker(rows, np.arange(step * batch_size, (step + 1) * batch_size), 0, out=out)
    return Measurement("masking only", batches, time.perf_counter() - start)


def print_table(measurements: list[Measurement], batch_size: int, seq_len: int) -> None:
    def ms_per_batch(seconds: float | None, batches: int) -> str:
        return f"{seconds / batches * 1e3:>10.2f}" if seconds is not None else f"{'-':>10}"

    print(
        f"{'configuration':<26}{'batches/s':>10}{'seq/s':>10}{'tokens/s':>12}{'x target':>9}"
        f"{'loader CPU':>11}{'main CPU':>10}"
    )
    print(f"{'':<26}{'':>10}{'':>10}{'':>12}{'':>9}{'ms/batch':>11}{'ms/batch':>10}")
    for m in measurements:
        sequences_per_s = m.batches * batch_size / m.seconds
        print(
            f"{m.name:<26}{m.batches / m.seconds:>10.1f}{sequences_per_s:>10,.0f}{sequences_per_s * seq_len:>12,.0f}"
            f"{sequences_per_s / TARGET_SEQUENCES_PER_S:>9.2f}"
            f"{ms_per_batch(m.loader_cpu_seconds, m.batches):>11}{ms_per_batch(m.main_cpu_seconds, m.batches)}"
        )
    worker_runs = [m for m in measurements if m.name.startswith("DataLoader, 1") and m.loader_cpu_seconds]
    for m in worker_runs:
        per_cpu_second = m.batches * batch_size / m.loader_cpu_seconds
        print(
            f"one worker with a core to itself: ~{per_cpu_second:,.0f} seq/s "
            f"({per_cpu_second / TARGET_SEQUENCES_PER_S:.2f}x target)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=300, help="timed batches per configuration")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--root", type=Path, default=None, help="keep shards here and reuse them (written if absent)")
    args = parser.parse_args()
    batches = min(args.batches, args.rows // args.batch_size - 2)

    scratch = Path(tempfile.mkdtemp(prefix="bench_loader_")) if args.root is None else None
    root = args.root or scratch / "shards"
    try:
        if not (root / "manifest.json").is_file():
            start = time.perf_counter()
            write_shards(root, args.rows, args.seq_len)
            print(f"wrote {args.rows:,} rows x {args.seq_len} tokens in {time.perf_counter() - start:.1f}s to {root}")
        print(
            f"batch {args.batch_size} x seq {args.seq_len}, {batches} timed batches, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        base = DataConfig(local=str(root))
        measurements = [
            time_masking_only(base, args.batch_size, args.seq_len, batches),
            time_rows_only(base, args.batch_size, batches),
        ]
        for workers in args.workers:
            measurements.append(
                time_dataloader(DataConfig(local=str(root), num_workers=workers), args.batch_size, batches)
            )
        print_table(measurements, args.batch_size, args.seq_len)
        print(f"target: one worker >= {TARGET_SEQUENCES_PER_S:,} sequences/s of {args.seq_len} tokens")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
