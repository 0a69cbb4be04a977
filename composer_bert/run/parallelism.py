"""The `parallelism:` section (pretraining and GLUE): sharded data parallelism with Composer's FSDP.

Composer 0.32.1 has two FSDP implementations. FSDP1 (`FullyShardedDataParallel`) passes
`device_id=torch.cuda.current_device()` unconditionally (composer/distributed/dist_strategy.py,
`prepare_fsdp_module`), so it cannot run without CUDA. FSDP2 (torch's `fully_shard`, Composer's `FSDP2Config`)
shards over a device mesh of whatever device the Trainer runs on, so it runs on CPU processes with gloo as on
GPUs with NCCL: that is the one we use, everywhere, so what the CPU tests prove is what a GPU run executes.

    parallelism:
      fsdp: {state_dict_type: sharded}   # a section present (even `parallelism.fsdp={}`) turns FSDP on
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composer_bert.errors import UserError
from composer_bert.schema import choice

if TYPE_CHECKING:
    import torch

# Why not: the open window's gradient sum is part of the state_dict so that a checkpoint saved mid-window
# resumes exactly; under FSDP those gradients are per-rank shards (DTensors), which our state_dict (and its
# name-keyed, unsharded resume across world sizes) does not hold. It can change: keep the sum as DTensors and
# save it through Composer's sharded checkpoint (torch.distributed.checkpoint), or close every window before a
# checkpoint. Until then a fixed larger batch (gradient accumulation via device_train_microbatch_size) works.
FSDP_REFUSAL = (
    "batch_ramp does not work with parallelism.fsdp (its mid-window gradient sum cannot go into a sharded "
    "checkpoint); drop batch_ramp.final_global_batch_size and set global_train_batch_size to the batch you want, "
    "or drop parallelism.fsdp"
)


@dataclass
class FSDPConfig:
    """Composer's FSDP2 (`composer.utils.parallelism.FSDP2Config`): every parameter sharded across all ranks."""

    # sharded: each rank writes its shards into a checkpoint folder ep{E}-ba{B}/ (torch.distributed.checkpoint);
    # full: rank 0 gathers one ordinary .pt, like a DDP run's
    state_dict_type: str = choice("sharded", ["sharded", "full"])
    reshard_after_forward: bool = True  # free gathered parameters after forward (less memory, one more all-gather)
    activation_checkpointing: bool = False  # recompute activations of modules marked for it in backward
    # DEFAULT: parameters in the Trainer's precision, reductions in fp32; PURE: everything in it; FULL: fp32
    mixed_precision: str = choice("DEFAULT", ["DEFAULT", "PURE", "FULL"])


@dataclass
class ParallelismConfig:
    """How ranks share the model. Without `fsdp`, Composer replicates it (DDP) over however many ranks run."""

    fsdp: FSDPConfig | None = None

    def refuse_batch_ramp(self, final_global_batch_size: int | None) -> None:
        """The batch ramp's gradient sum lives in its state_dict as whole tensors, which a sharded checkpoint
        cannot hold (see `algorithms/batch_ramp.py`); refuse the pair before anything starts."""
        if self.fsdp is not None and final_global_batch_size is not None:
            raise UserError(FSDP_REFUSAL)


    def refuse_muon(self, optimizer_name: str) -> None:
        """Muon orthogonalizes each whole gradient matrix; FSDP gives every rank a shard of it (`optim/muon.py`)."""
        if self.fsdp is not None and optimizer_name == "muon":
            raise UserError(
                "optimizer.name=muon orthogonalizes whole weight matrices, but parallelism.fsdp gives each rank a "
                "shard of them; drop parallelism.fsdp (DDP keeps whole gradients) or choose another optimizer.name"
            )


def trainer_parallelism(cfg: ParallelismConfig, world_size: int, model: torch.nn.Module) -> dict[str, Any] | None:
    """The Trainer's `parallelism_config` for `model` (None: no FSDP), or one UserError line for what FSDP2
    cannot do: shard over a world of one process, or shard a 0-d parameter (torch's `fully_shard` refuses
    scalars; ours is the scaled sinusoidal positions' `scale`, `model.position_embedding=sinusoidal`)."""
    if cfg.fsdp is None:
        return None
    from composer.utils.parallelism import FSDP2Config

    if world_size < 2:
        raise UserError(
            "parallelism.fsdp shards the model across processes but this run has one; launch it with "
            "`composer -n N` (N >= 2), or drop parallelism.fsdp"
        )
    scalars = [name for name, param in model.named_parameters() if param.dim() == 0]
    if scalars:
        raise UserError(
            f"parallelism.fsdp cannot shard the 0-d parameter(s) {', '.join(scalars)} (torch's fully_shard refuses "
            "scalars; model.position_embedding=sinusoidal has one): use another model.position_embedding "
            "(learned, alibi, rotary) or drop parallelism.fsdp (DDP)"
        )
    fsdp = cfg.fsdp
    return {
        "fsdp": FSDP2Config(
            state_dict_type=fsdp.state_dict_type,
            reshard_after_forward=fsdp.reshard_after_forward,
            activation_checkpointing=fsdp.activation_checkpointing,
            mixed_precision=fsdp.mixed_precision,
        )
    }


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict of an FSDP model on rank 0 (CPU tensors; empty on the other ranks). A collective:
    every rank must call it. (An FSDP2 module's own `state_dict()` holds this rank's shards only.)"""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
