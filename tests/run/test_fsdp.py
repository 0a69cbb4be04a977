"""Sharded training: pretraining and GLUE under Composer's FSDP (FSDP2, torch `fully_shard`) on 2 CPU processes
with gloo; full and sharded checkpoints, each resumed; the `parallelism:` section's validation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from composer_bert.errors import UserError
from composer_bert.models import ComposerClassifier, ComposerMLM
from composer_bert.run.checkpoint import load_classifier_weights, load_composer_checkpoint
from composer_bert.run.parallelism import FSDP_REFUSAL, FSDPConfig, ParallelismConfig, trainer_parallelism
from tests.glue.glue_helpers import RECIPE_CLI, assert_encoder_finetuned_from, write_tsv
from tests.helpers import (
    PROBED_RECIPE,
    REPO,
    kept_and_rewritten,
    launch_two_ranks,
    mark_rows_before_rerun,
    tiny_args,
    tiny_model_config,
    train_losses,
)
from tests.tiny_training import tiny_pretrain_config

# learned positions: the default (sinusoidal) has a 0-d parameter, which FSDP2 cannot shard (refused, see below)
COMMON = ("save_interval=2ba", "eval_interval=1000ba", "eval_subset_num_batches=1", "run_name=fsdp",
          "model.position_embedding=learned")


def launch(shards: Path, save: Path, *extra: str, env: dict[str, str] | None = None, ok: bool = True):
    """recipes/pretrain.py (or, with `env`, PROBED_RECIPE) on 2 processes under FSDP; with `ok`, it must succeed."""
    script = "recipes/pretrain.py"
    if env is not None:
        script = save.parent / "probed_pretrain.py"
        script.write_text(PROBED_RECIPE)
        env = {**env, "REPO": str(REPO)}
    ran = launch_two_ranks(script, *tiny_args(shards, save, *COMMON, *extra), env=env, timeout=300)
    assert ran.returncode == 0 or not ok, (ran.stdout + ran.stderr)[-3000:]
    return ran


@pytest.fixture(scope="module")
def full_runs(tiny_shards, tmp_path_factory) -> dict[str, Path]:
    """Full checkpoints: 6 batches straight (the reference of both checkpoint forms); then a copy of that run
    whose last checkpoint is gone, rerun with the same command, so it resumes from its batch-4 checkpoint. The
    copy's metrics rows are marked first, so the test can tell the rows the rerun kept from those it wrote."""
    root = tmp_path_factory.mktemp("fsdp-full")
    full, resumed = root / "full", root / "resumed"
    launch(tiny_shards, full, "max_duration=6ba", "parallelism.fsdp.state_dict_type=full")
    shutil.copytree(full, resumed, symlinks=True)
    (resumed / "ep0-ba6-rank0.pt").unlink()  # autoresume falls back to the newest intact one: batch 4
    mark_rows_before_rerun(resumed)
    launch(tiny_shards, resumed, "max_duration=6ba", "parallelism.fsdp.state_dict_type=full")
    return dict(full=full, resumed=resumed)


@pytest.fixture(scope="module")
def sharded_run(tiny_shards, tmp_path_factory) -> dict:
    """Sharded checkpoints: the same 6 batches, both ranks SIGKILLed after batch 5, then the same command again."""
    root = tmp_path_factory.mktemp("fsdp-sharded")
    sharded, args = root / "sharded", ("max_duration=6ba", "parallelism.fsdp.state_dict_type=sharded")
    killed = launch(tiny_shards, sharded, *args, env={"KILL_AT_BATCH": "5"}, ok=False)
    assert killed.returncode != 0 and "exited with code -9" in killed.stderr, killed.stderr[-3000:]
    files = sorted(str(path.relative_to(sharded)) for path in sharded.rglob("*"))
    mark_rows_before_rerun(sharded)
    launch(tiny_shards, sharded, *args)
    return dict(sharded=sharded, files_when_killed=files)


@pytest.mark.slow
@pytest.mark.scaleout
def test_full_checkpoints_are_one_file_and_resume_exactly(full_runs):
    names = sorted(path.name for path in full_runs["full"].glob("ep*"))
    assert names == ["ep0-ba4-rank0.pt", "ep0-ba6-rank0.pt"], names  # rank 0 gathers one ordinary .pt
    # resumed at batch 4: the rows before it are the copied run's, batches 4 and 5 were trained by the rerun
    # (one started over would write every row; one that trained nothing, none)
    assert kept_and_rewritten(full_runs["resumed"]) == ([0, 1, 2, 3], [4, 5])
    straight, resumed = train_losses(full_runs["full"]), train_losses(full_runs["resumed"])
    assert sorted(straight) == sorted(resumed) == list(range(6))
    assert [resumed[b] for b in (4, 5)] == [straight[b] for b in (4, 5)]


@pytest.mark.slow
@pytest.mark.scaleout
def test_sharded_checkpoints_are_per_rank_shards_and_resume_exactly(full_runs, sharded_run):
    files = sharded_run["files_when_killed"]
    for step in ("ep0-ba2", "ep0-ba4"):  # a folder per checkpoint: one shard file per rank plus the metadata
        assert {f"{step}/__0_0.distcp", f"{step}/__1_0.distcp", f"{step}/.metadata"} <= set(files), files
    assert not [name for name in files if name.startswith("ep0-ba5")], files
    assert os.readlink(sharded_run["sharded"] / "latest-rank0.pt") == "ep0-ba6"
    assert kept_and_rewritten(sharded_run["sharded"]) == ([0, 1, 2, 3], [4, 5])  # resumed from the batch-4 shards
    straight, sharded = train_losses(full_runs["full"]), train_losses(sharded_run["sharded"])
    assert sorted(sharded) == list(range(6))
    assert sharded == straight, "sharded checkpoints and a resume from one changed the trajectory"


@pytest.mark.slow
@pytest.mark.scaleout
def test_fsdp_glue_finetunes_from_the_fsdp_full_checkpoint(full_runs, tmp_path):
    """GLUE under FSDP on 2 processes, from the full checkpoint the FSDP pretraining wrote (a plain .pt)."""
    glue = tmp_path / "glue"
    rows = [[f"good fun {i}" if i % 2 else f"dull bad {i}", str(i % 2)] for i in range(32)]
    for split in ("train", "dev"):
        write_tsv(glue / "SST-2" / f"{split}.tsv", rows, ["sentence", "label"])
    ran = launch_two_ranks(
        RECIPE_CLI, "yamls/finetune/glue.yaml", f"checkpoint={full_runs['full'] / 'ep0-ba6-rank0.pt'}",
        f"save_folder={tmp_path / 'out'}", "data.source=glue_dir", f"data.path={glue}", "tasks=[SST-2]", "seeds=[1]",
        "epochs=1", "max_seq_length=32", "global_train_batch_size=8", "progress_bar=false", "parallelism.fsdp={}",
        timeout=300,
    )
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    assert (tmp_path / "out" / "glue_results.json").is_file()
    # the classifier file holds whole tensors (gathered from both ranks' shards), shaped as the unsharded model's
    saved = load_classifier_weights(tmp_path / "out" / "runs" / "SST-2" / "seed1.model.pt")
    config = load_composer_checkpoint(str(full_runs["full"] / "ep0-ba6-rank0.pt")).model_config
    expected = ComposerClassifier(config, 2).model.state_dict(prefix="model.")
    assert {key: value.shape for key, value in saved.items()} == {key: value.shape for key, value in expected.items()}
    assert all(type(value) is torch.Tensor for value in saved.values())
    # ... and their values: the encoder is the pretraining checkpoint's, moved only by the few finetuning steps
    checkpoints = {step: torch.load(full_runs["full"] / f"ep0-ba{step}-rank0.pt", weights_only=False) for step in (4, 6)}
    pretrained, earlier = (checkpoints[step]["state"]["model"] for step in (6, 4))
    assert_encoder_finetuned_from(saved, pretrained, other=earlier)


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

