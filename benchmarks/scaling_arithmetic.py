"""Scaling arithmetic for the crammed and MosaicBERT recipes on 8 and 64 GPUs: the tables of docs/scaling.md.

Nothing here is measured: every figure is arithmetic on the inputs below (change them and rerun). The
parameter count and FLOPs per step come from our own model code (`ComposerMLM`, `mlm_flops_per_batch`) for each
recipe's `model:` section, so they follow the recipes.

    python benchmarks/scaling_arithmetic.py
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPES = {"crammed-bert": "yamls/pretrain/crammed-bert.yaml", "mosaic-bert-base": "yamls/pretrain/mosaic-bert-base.yaml"}
SEQ_LEN = 128  # both recipes' shards (max_position_embeddings 128)
GPUS = (8, 64)
GPUS_PER_NODE = 8
# Dense bf16 peak FLOP/s per GPU (as in composer_bert/run/peak_flops.py) and an assumed MFU (not measured here).
PEAK_FLOPS = {"A100": 312e12, "H100": 989e12}
ASSUMED_MFU = 0.40
# Bandwidth one GPU's share of a ring all-reduce can use, bytes/s, per direction: NVLink inside a node
# (A100 NVLink3 ~300 GB/s, H100 NVLink4 ~450 GB/s per direction), one NIC per node between nodes.
NVLINK = {"A100": 300e9, "H100": 450e9}
INTER_NODE_GBIT = (100, 200, 400)
GRAD_BYTES = 4  # DDP all-reduces gradients in the parameters' dtype: fp32 master weights under amp_bf16
TOKEN_BYTES = 2  # our shards store token ids as uint16 (vocab <= 65536): 2 bytes per token, plus MDS framing
CHECKPOINT_BYTES_PER_PARAM = 4 * 3  # fp32 weights + Adam's two moments (what a Composer .pt holds)
UPLOAD_GBIT = 10  # assumed object-store upload bandwidth from rank 0


@dataclass
class Recipe:
    name: str
    params: int
    global_batch: int  # rows per optimizer step (the crammed ramp: per Composer batch, which DDP all-reduces)
    flops_per_batch: int  # our model's exact forward+backward matmul FLOPs for one global batch


def load_recipe(name: str, path: str) -> Recipe:
    """Build the recipe's model (on the meta device: no memory) to count its parameters and FLOPs."""
    import torch

    from composer_bert.batch import MASKED_POSITIONS
    from composer_bert.models import ComposerMLM
    from composer_bert.models.flops import mlm_flops_per_batch
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.run.config import load_config

    cfg = load_config(PretrainConfig, REPO / path, ["data.local=unused"])
    with torch.device("meta"):
        params = sum(p.numel() for p in ComposerMLM(cfg.model).parameters())
    batch = cfg.global_train_batch_size
    slots = min(SEQ_LEN, math.floor(cfg.data.mlm_probability * SEQ_LEN + 1))
    shapes = {"input_ids": torch.empty(batch, SEQ_LEN, device="meta"),
              MASKED_POSITIONS: torch.empty(batch, slots, device="meta")}
    return Recipe(name, params, batch, mlm_flops_per_batch(cfg.model, shapes))


def allreduce_seconds(params: int, gpus: int, bandwidth: float) -> float:
    """Ring all-reduce: each GPU (and, across nodes, each node's NIC) moves 2(N-1)/N x the gradient bytes."""
    return 2 * (gpus - 1) / gpus * params * GRAD_BYTES / bandwidth


def tables(recipes: list[Recipe]) -> str:
    out = ["## Per recipe", "", "| recipe | params | global batch (rows x 128) | tokens/step | FLOPs/step (ours) "
           f"| 6·N·tokens | checkpoint (fp32 + Adam) | upload at {UPLOAD_GBIT} Gb/s |", "|---|---|---|---|---|---|---|---|"]
    for r in recipes:
        tokens = r.global_batch * SEQ_LEN
        ckpt = r.params * CHECKPOINT_BYTES_PER_PARAM
        out.append(f"| {r.name} | {r.params / 1e6:.1f} M | {r.global_batch} | {tokens:,} | {r.flops_per_batch:.3g} "
                   f"| {6 * r.params * tokens:.3g} | {ckpt / 1e9:.2f} GB | {ckpt * 8 / (UPLOAD_GBIT * 1e9):.1f} s |")
    out += ["", f"## Per step at {ASSUMED_MFU:.0%} MFU (assumed): compute vs gradient all-reduce", "",
            "| recipe | GPU | GPUs | compute/step | all-reduce volume/GPU | all-reduce over | comm/step | comm ÷ compute "
            "| data per node |", "|---|---|---|---|---|---|---|---|---|"]
    for r in recipes:
        for gpu, peak in PEAK_FLOPS.items():
            for gpus in GPUS:
                compute = r.flops_per_batch / (gpus * peak * ASSUMED_MFU)
                volume = 2 * (gpus - 1) / gpus * r.params * GRAD_BYTES
                nodes = max(1, gpus // GPUS_PER_NODE)
                tokens_per_s = r.global_batch * SEQ_LEN / compute
                loader = f"{tokens_per_s / nodes * TOKEN_BYTES / 1e6:.1f} MB/s"
                links = [("NVLink", NVLINK[gpu])] if nodes == 1 else [
                    (f"{g} Gb/s", g * 1e9 / 8) for g in INTER_NODE_GBIT]
                for label, bandwidth in links:
                    comm = allreduce_seconds(r.params, gpus, bandwidth)
                    out.append(f"| {r.name} | {gpu} | {gpus} | {compute * 1e3:.1f} ms | {volume / 1e9:.2f} GB | {label} "
                               f"| {comm * 1e3:.1f} ms | {comm / compute:.2f} | {loader} |")
    return "\n".join(out)


def main() -> None:
    recipes = [load_recipe(name, path) for name, path in RECIPES.items()]
    print(f"Inputs: seq {SEQ_LEN}, assumed MFU {ASSUMED_MFU:.0%}, peaks {PEAK_FLOPS}, NVLink {NVLINK} B/s per "
          f"direction, inter-node {INTER_NODE_GBIT} Gb/s per node, gradients {GRAD_BYTES} B, tokens {TOKEN_BYTES} B, "
          f"{GPUS_PER_NODE} GPUs per node\n")
    print(tables(recipes))


if __name__ == "__main__":
    main()
