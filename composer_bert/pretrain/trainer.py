"""Turn a validated `PretrainConfig` into a Composer Trainer: data, model, checkpointing and monitoring, each
from its own builder, wired once (rank-aware, resumable by run name). `run.py` runs it.

The shards' manifest is read once (`open_shards`) and that one `ShardSet` serves every split and every check.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from composer import Trainer
from composer.core import DataSpec, Evaluator
from composer.loggers import LoggerDestination
from composer.utils import dist, reproducibility
from omegaconf import OmegaConf

from composer_bert.callbacks.budget import WallClockBudget
from composer_bert.callbacks.metrics_file import MetricsFile
from composer_bert.callbacks.progress import TrainProgressBar
from composer_bert.data.load.loader import build_dataspec
from composer_bert.data.load.shard_set import ShardSet, open_shards
from composer_bert.errors import UserError
from composer_bert.hf.load import check_init_from, init_state_from_hf
from composer_bert.models import ModelConfig, build_composer_model
from composer_bert.optim.optimizer import build_optimizer
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.pretrain.controls import build_training_controls
from composer_bert.pretrain.resume import LATEST_FILENAME, SAVE_FILENAME, prepare_autoresume, restore_remote_run
from composer_bert.run.checkpoint import RunMetadata
from composer_bert.run.composer_fixes import apply_composer_fixes
from composer_bert.run.config import to_dict
from composer_bert.run.devices import microbatch_size, on_rank_zero, per_device_batch, pick_device
from composer_bert.run.files import atomic_file, ensure_writable_dir
from composer_bert.run.loggers import flat_hyperparameters, tracker_loggers
from composer_bert.run.parallelism import trainer_parallelism
from composer_bert.run.remote import RemoteFolder, checkpoint_uploads, is_remote

log = logging.getLogger(__name__)


def _loggers(cfg: PretrainConfig, run_dir: str, remote: RemoteFolder | None) -> list[LoggerDestination]:
    loggers: list[LoggerDestination] = [MetricsFile(run_dir, remote_folder=remote.prefix if remote else None)]
    if cfg.loggers.progress_bar:
        loggers.append(TrainProgressBar())
    return loggers + tracker_loggers(cfg.loggers, run_dir, f"{Path(run_dir) / 'metrics.jsonl'} keeps every metric")


def _local_run_dir(cfg: PretrainConfig) -> str:
    """Where the run writes: `save_folder` itself, or for a bucket a fresh local folder filled from the bucket
    (newest checkpoint, metrics) when resuming; what is written there is uploaded as the run goes."""
    if not is_remote(cfg.save_folder):
        return cfg.save_folder
    run_dir = tempfile.mkdtemp(prefix=f"composer_bert_{cfg.run_name}_")
    if cfg.autoresume:
        restore_remote_run(cfg.save_folder, run_dir)
    return run_dir


def _model_config(cfg: PretrainConfig, shards: ShardSet) -> ModelConfig:
    """The model trained: the recipe's, its vocabulary from the shards when unset, checked against the shards."""
    contract = shards.contract
    # init_from only says where a fresh run's weights come from: checkpoints and resume checks never see it.
    model_cfg = dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or contract.vocab_size, init_from=None)
    contract.check_model(model_cfg.vocab_size, model_cfg.objective)  # before save_folder exists
    if contract.seq_len > model_cfg.max_position_embeddings:
        raise UserError(
            f"shards have seq_len {contract.seq_len} but model.max_position_embeddings is "
            f"{model_cfg.max_position_embeddings}; raise model.max_position_embeddings"
        )
    return model_cfg


def _data(cfg: PretrainConfig, shards: ShardSet, device_batch: int) -> tuple[DataSpec, list[Evaluator]]:
    """The train split's DataSpec and the eval split's Evaluator (none when the split is unset or empty)."""
    train = build_dataspec(cfg.data, shards, split=cfg.data.train_split, device_batch_size=device_batch, seed=cfg.seed)
    split = cfg.data.eval_split
    if not split:
        return train, []
    if shards.contract.split_rows(split) == 0:
        log.warning("split '%s' of the shards is empty: no evaluation in this run", split)
        return train, []
    eval_masking = cfg.data.eval_mlm_probability or cfg.data.mlm_probability
    eval_data = build_dataspec(
        dataclasses.replace(cfg.data, mlm_probability=eval_masking),
        shards,
        split=split,
        device_batch_size=cfg.device_eval_batch_size,
        seed=cfg.seed,
        shuffle=False,
        drop_last=False,
    )
    eval_batches = len(eval_data.dataloader)  # this rank's; more than that is Composer's DataloaderNumBatchesWarning
    wanted = cfg.eval_subset_num_batches
    subset = None if wanted < 0 else min(wanted, eval_batches)
    return train, [Evaluator(label="eval", dataloader=eval_data, subset_num_batches=subset)]


def _model(cfg: PretrainConfig, model_cfg: ModelConfig, shards: ShardSet, resuming: bool):
    """The ComposerModel of `model.objective` (objectives.py), from `model.init_from` on a fresh run."""
    model = build_composer_model(model_cfg)
    if cfg.model.init_from and not resuming:  # a resumed run continues from its own checkpoint
        state = init_state_from_hf(cfg.model.init_from, model_cfg, shards.contract.tokenizer_sha256)
        loaded = model.model.load_state_dict(state, strict=False)  # each rank: same files
        if loaded.unexpected_keys or any(not key.startswith("head.") for key in loaded.missing_keys):
            raise UserError(f"model.init_from: the weights do not fit the model ({loaded}); check the model: keys")
        log.warning("initialized the model from %s", cfg.model.init_from)
        if loaded.missing_keys and dist.get_global_rank() == 0:  # a bare trunk, such as a sentence-embedding model
            print(f"{cfg.model.init_from} has no LM head: the run starts with a freshly initialised head", flush=True)
    return model


@dataclass
class _Saving:
    """Where and how checkpoints go: Trainer keyword arguments, and for a bucket its saver and uploader."""

    trainer_args: dict
    callbacks: list
    loggers: list


def _checkpointing(cfg: PretrainConfig, run_dir: str, remote: RemoteFolder | None) -> _Saving:
    saving = _Saving(
        trainer_args=dict(
            save_folder=run_dir,
            save_filename=SAVE_FILENAME,
            save_latest_filename=LATEST_FILENAME,
            save_interval=cfg.save_interval,
            save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
            save_overwrite=not cfg.autoresume,
            autoresume=cfg.autoresume,
        ),
        callbacks=[],
        loggers=[],
    )
    if remote is not None:  # Composer's CheckpointSaver names each checkpoint's copy in the bucket; Trainer adopts it
        saver, uploader = checkpoint_uploads(
            remote,
            run_dir,
            filename=SAVE_FILENAME,
            latest_filename=LATEST_FILENAME,
            save_interval=cfg.save_interval,
            overwrite=not cfg.autoresume,
            num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
            limits=cfg.upload,
        )
        saving.callbacks.append(saver)
        saving.loggers.append(uploader)
    return saving


def build_trainer(cfg: PretrainConfig) -> Trainer:
    """Everything a pretraining run needs, wired from a validated config (rank-aware, resumable by run name)."""
    reproducibility.seed_all(cfg.seed)
    apply_composer_fixes()  # a save_folder shared by several nodes
    device = pick_device()
    dist.initialize_dist(device, timeout=cfg.dist_timeout)
    shards = open_shards(cfg.data)  # the one read of the manifest
    model_cfg = _model_config(cfg, shards)  # shards the model cannot read leave nothing behind
    if cfg.model.init_from:  # and neither does an init_from folder the run could not start from
        check_init_from(cfg.model.init_from, model_cfg, shards.contract.tokenizer_sha256)
    on_rank_zero(ensure_writable_dir, cfg.save_folder, "save_folder")
    remote = RemoteFolder(cfg.save_folder, cfg.upload) if is_remote(cfg.save_folder) else None
    run_dir = on_rank_zero(_local_run_dir, cfg)  # one path for every rank: Composer broadcasts rank 0's
    resuming = False
    if cfg.autoresume:  # before Composer loads: damaged checkpoints set aside, another model's refused
        resuming = on_rank_zero(prepare_autoresume, run_dir, dataclasses.asdict(model_cfg)) is not None
    device_batch = per_device_batch(cfg.global_train_batch_size, "global_train_batch_size")
    train_data, evaluators = _data(cfg, shards, device_batch)
    model = _model(cfg, model_cfg, shards, resuming)
    controls = build_training_controls(cfg)
    tokenizer_dir = shards.contract.tokenizer_dir
    metadata = RunMetadata(model_cfg, tokenizer_dir if tokenizer_dir and Path(tokenizer_dir).is_dir() else None)
    saving = _checkpointing(cfg, run_dir, remote)
    trainer = Trainer(
        run_name=cfg.run_name,
        model=model,
        train_dataloader=train_data,
        eval_dataloader=evaluators or None,
        eval_interval=cfg.eval_interval,
        eval_subset_num_batches=cfg.eval_subset_num_batches,
        max_duration=cfg.max_duration,
        optimizers=build_optimizer(cfg.optimizer, model),
        schedulers=controls.schedulers,
        step_schedulers_every_batch=True,
        algorithms=controls.algorithms,
        callbacks=[*controls.callbacks, metadata, *saving.callbacks],
        loggers=[*_loggers(cfg, run_dir, remote), *saving.loggers],
        progress_bar=False,
        log_to_console=False,
        precision=cfg.precision if device.name == "gpu" else "fp32",
        device_train_microbatch_size=microbatch_size(cfg.device_train_microbatch_size, device, device_batch),
        **saving.trainer_args,
        seed=cfg.seed,
        compile_config={} if cfg.compile else None,
        parallelism_config=trainer_parallelism(cfg.parallelism, dist.get_world_size(), model),  # FSDP, or None
        dist_timeout=cfg.dist_timeout,
        device=device,
        python_log_level=os.environ.get("COMPOSER_BERT_LOG_LEVEL"),
    )
    if already_finished(trainer):  # a rerun of a finished run trains nothing: its config.yaml stays the one it used
        return trainer
    resolved = {**to_dict(cfg), "model": dataclasses.asdict(model_cfg)}
    trainer.logger.log_hyperparameters(flat_hyperparameters(resolved))  # once, to every tracker (rank 0 only)
    if dist.get_global_rank() == 0:  # only once the run starts (checkpoint loaded): a failed rerun keeps the old one
        with atomic_file(Path(run_dir) / "config.yaml") as tmp:
            tmp.write_text(OmegaConf.to_yaml(resolved))
        if remote is not None:
            trainer.logger.upload_file(remote.key("config.yaml"), Path(run_dir) / "config.yaml", overwrite=True)
    return trainer


def run_dir_of(trainer: Trainer) -> Path:
    """The folder the run writes to (the local copy for a bucket save_folder): where its MetricsFile writes."""
    return next(d for d in trainer.logger.destinations if isinstance(d, MetricsFile)).path.parent


def already_finished(trainer: Trainer) -> bool:
    """Whether the checkpoint autoresume loaded ended the run: at (or past) max_duration, where `fit` would refuse
    to start, or with its wall-clock budget spent (Composer does not checkpoint max_duration, so a budgeted
    recipe's generous max_duration says nothing; the budget's own restored clock does)."""
    max_duration = trainer.state.max_duration
    if max_duration is not None and trainer.state.timestamp.get(max_duration.unit) >= max_duration:
        return True
    return any(isinstance(callback, WallClockBudget) and callback.spent() for callback in trainer.state.callbacks)
