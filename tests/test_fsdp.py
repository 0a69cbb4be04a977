"""Sharded training: pretraining and GLUE under Composer's FSDP (FSDP2, torch `fully_shard`) on 2 CPU processes
with gloo; full and sharded checkpoints, each resumed; the `parallelism:` section's validation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from composer_bert.algorithms.config import FSDP_REFUSAL
from composer_bert.errors import UserError
from composer_bert.models import ComposerMLM
from composer_bert.parallelism import FSDPConfig, ParallelismConfig, trainer_parallelism
from tests.glue.glue_helpers import RECIPE_CLI, write_tsv
from tests.helpers import launch_two_ranks, tiny_args, tiny_model_config, train_losses
from tests.tiny_training import tiny_pretrain_config

# learned positions: the default (sinusoidal) has a 0-d parameter, which FSDP2 cannot shard (refused, see below)
COMMON = ("save_interval=2ba", "eval_interval=1000ba", "eval_subset_num_batches=1", "run_name=fsdp",
          "model.position_embedding=learned")


def launch(shards: Path, save: Path, *extra: str):
    ran = launch_two_ranks("recipes/pretrain.py", *tiny_args(shards, save, *COMMON, *extra), timeout=300)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    return ran


@pytest.fixture(scope="module")
def fsdp_runs(tiny_shards, tmp_path_factory) -> dict[str, Path]:
    """Four 2-process FSDP runs: 6 batches straight with full checkpoints; the same resumed from its batch-4
    checkpoint; 4 batches with sharded checkpoints, then resumed to 6."""
    root = tmp_path_factory.mktemp("fsdp")
    full, resumed_full, sharded = root / "full", root / "resumed-full", root / "sharded"
    launch(tiny_shards, full, "max_duration=6ba", "parallelism.fsdp.state_dict_type=full")
    shutil.copytree(full, resumed_full, symlinks=True)
    (resumed_full / "ep0-ba6-rank0.pt").unlink()  # autoresume falls back to the newest intact one: batch 4
    launch(tiny_shards, resumed_full, "max_duration=6ba", "parallelism.fsdp.state_dict_type=full")
    launch(tiny_shards, sharded, "max_duration=4ba", "parallelism.fsdp.state_dict_type=sharded")
    sharded_files = sorted(str(path.relative_to(sharded)) for path in sharded.rglob("*"))
    launch(tiny_shards, sharded, "max_duration=6ba", "parallelism.fsdp.state_dict_type=sharded")
    return dict(full=full, resumed_full=resumed_full, sharded=sharded, sharded_files=sharded_files)


def test_full_checkpoints_are_one_file_and_resume_exactly(fsdp_runs):
    names = sorted(path.name for path in fsdp_runs["full"].glob("ep*"))
    assert names == ["ep0-ba4-rank0.pt", "ep0-ba6-rank0.pt"], names  # rank 0 gathers one ordinary .pt
    straight, resumed = train_losses(fsdp_runs["full"]), train_losses(fsdp_runs["resumed_full"])
    assert sorted(straight) == sorted(resumed) == list(range(6))
    assert [resumed[b] for b in (4, 5)] == [straight[b] for b in (4, 5)]


def test_sharded_checkpoints_are_per_rank_shards_and_resume_exactly(fsdp_runs):
    files = fsdp_runs["sharded_files"]
    for step in ("ep0-ba2", "ep0-ba4"):  # a folder per checkpoint: one shard file per rank plus the metadata
        assert {f"{step}/__0_0.distcp", f"{step}/__1_0.distcp", f"{step}/.metadata"} <= set(files), files
    assert os.readlink(fsdp_runs["sharded"] / "latest-rank0.pt") == "ep0-ba6"
    straight, sharded = train_losses(fsdp_runs["full"]), train_losses(fsdp_runs["sharded"])
    assert sorted(sharded) == list(range(6))
    assert sharded == straight, "sharded checkpoints and a resume from one changed the trajectory"


def test_fsdp_glue_finetunes_from_the_fsdp_full_checkpoint(fsdp_runs, tmp_path):
    """GLUE under FSDP on 2 processes, from the full checkpoint the FSDP pretraining wrote (a plain .pt)."""
    glue = tmp_path / "glue"
    rows = [[f"good fun {i}" if i % 2 else f"dull bad {i}", str(i % 2)] for i in range(32)]
    for split in ("train", "dev"):
        write_tsv(glue / "SST-2" / f"{split}.tsv", rows, ["sentence", "label"])
    ran = launch_two_ranks(
        RECIPE_CLI, "yamls/finetune/glue.yaml", f"checkpoint={fsdp_runs['full'] / 'ep0-ba6-rank0.pt'}",
        f"save_folder={tmp_path / 'out'}", "data.source=glue_dir", f"data.path={glue}", "tasks=[SST-2]", "seeds=[1]",
        "epochs=1", "max_seq_length=32", "global_train_batch_size=8", "progress_bar=false", "parallelism.fsdp={}",
        timeout=300,
    )
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    assert (tmp_path / "out" / "glue_results.json").is_file()
    assert (tmp_path / "out" / "runs" / "SST-2" / "seed1.model.pt").is_file()


def test_parallelism_section_is_validated_and_what_fsdp_cannot_do_is_refused():
    assert tiny_pretrain_config("parallelism.fsdp={}").parallelism.fsdp.state_dict_type == "sharded"
    with pytest.raises(UserError, match="parallelism.fsdp.state_dict_type"):
        tiny_pretrain_config("parallelism.fsdp.state_dict_type=local")
    with pytest.raises(UserError) as refused:
        tiny_pretrain_config("parallelism.fsdp={}", "batch_ramp.final_global_batch_size=16")
    assert str(refused.value) == FSDP_REFUSAL
    fsdp = ParallelismConfig(fsdp=FSDPConfig())
    learned = ComposerMLM(tiny_model_config(64, position_embedding="learned"))
    with pytest.raises(UserError, match="composer -n N"):
        trainer_parallelism(fsdp, 1, learned)
    assert trainer_parallelism(ParallelismConfig(), 1, learned) is None
    assert trainer_parallelism(fsdp, 2, learned)["fsdp"].state_dict_type == "sharded"
    with pytest.raises(UserError, match=r"0-d parameter\(s\) model.bert.embeddings.positions.scale"):
        trainer_parallelism(fsdp, 2, ComposerMLM(tiny_model_config(64, position_embedding="sinusoidal")))

