"""Turn a validated `PretrainConfig` into a Composer Trainer, run it, and summarize the result."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from composer import Trainer
from composer.core import Evaluator
from composer.loggers import LoggerDestination
from composer.utils import dist, reproducibility
from omegaconf import OmegaConf

from composer_bert.callbacks.budget import WallClockBudget
from composer_bert.callbacks.metrics_file import MetricsFile, read_metrics
from composer_bert.callbacks.progress import TrainProgressBar
from composer_bert.checkpoint import RunMetadata
from composer_bert.composer_fixes import apply_composer_fixes
from composer_bert.config import PretrainConfig, to_dict
from composer_bert.data.loader import build_mlm_dataspec, read_data_manifest, shard_roots
from composer_bert.data.manifest import check_objective
from composer_bert.errors import UserError
from composer_bert.files import atomic_file, ensure_writable_dir, removed_if_refused
from composer_bert.loggers import flat_hyperparameters, tracker_loggers
from composer_bert.models import build_composer_model
from composer_bert.optim.optimizer import build_optimizer
from composer_bert.parallelism import trainer_parallelism
from composer_bert.remote import RemoteFolder, checkpoint_uploads, is_remote, store_problem
from composer_bert.resources import EnergyMeter, peak_memory
from composer_bert.resume import (
    LATEST_FILENAME,
    SAVE_FILENAME,
    on_rank_zero,
    prepare_autoresume,
    restore_remote_run,
)
from composer_bert.run_report import summarize_metrics
from composer_bert.run_setup import microbatch_size, per_device_batch, pick_device
from composer_bert.training_controls import build_training_controls

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """What the run ended with, as printed at the end of `recipes/pretrain.py`."""

    batches: int
    tokens: int
    final_train_loss: float | None
    eval_loss: float | None
    eval_masked_accuracy: float | None
    tokens_per_sec: float | None
    mfu: float | None
    metrics_path: str
    plot_path: str | None
    save_folder: str
    budget_used: float | None = None  # fraction of `budget` spent; None without one
    peak_memory_gib: float | None = None
    peak_memory_of: str = ""  # "GPU, max allocated" or "CPU, peak RSS"
    energy_kwh: float | None = None  # NVML, all GPUs of this node; None without NVML
    objective: str = "mlm"
    eval_perplexity: float | None = None  # causal runs: exp(eval loss), Composer's LanguagePerplexity


def _loggers(cfg: PretrainConfig, run_dir: str, remote: RemoteFolder | None) -> list[LoggerDestination]:
    loggers: list[LoggerDestination] = [MetricsFile(run_dir, remote_folder=remote.prefix if remote else None)]
    if cfg.loggers.progress_bar:
        loggers.append(TrainProgressBar())
    return loggers + tracker_loggers(cfg.loggers, run_dir)


def _local_run_dir(cfg: PretrainConfig) -> str:
    """Where the run writes: `save_folder` itself, or for a bucket a fresh local folder filled from the bucket
    (newest checkpoint, metrics) when resuming; what is written there is uploaded as the run goes."""
    if not is_remote(cfg.save_folder):
        return cfg.save_folder
    run_dir = tempfile.mkdtemp(prefix=f"composer_bert_{cfg.run_name}_")
    if cfg.autoresume:
        restore_remote_run(cfg.save_folder, run_dir)
    return run_dir


def build_trainer(cfg: PretrainConfig) -> Trainer:
    """Everything a pretraining run needs, wired from a validated config (rank-aware, resumable by run name)."""
    reproducibility.seed_all(cfg.seed)
    apply_composer_fixes()  # a save_folder shared by several nodes
    device = pick_device()
    dist.initialize_dist(device, timeout=cfg.dist_timeout)
    manifest = read_data_manifest(cfg.data)
    # before save_folder exists: shards of the other objective leave nothing behind
    check_objective(manifest, cfg.model.objective, ", ".join(root.local for root in shard_roots(cfg.data)))
    on_rank_zero(ensure_writable_dir, cfg.save_folder, "save_folder")
    remote = RemoteFolder(cfg.save_folder) if is_remote(cfg.save_folder) else None
    run_dir = on_rank_zero(_local_run_dir, cfg)  # one path for every rank: Composer broadcasts rank 0's
    vocab_size = cfg.model.vocab_size or manifest["tokenizer"]["vocab_size"]
    # init_from only says where a fresh run's weights come from: checkpoints and resume checks never see it.
    model_cfg = dataclasses.replace(cfg.model, vocab_size=vocab_size, init_from=None)
    if manifest["seq_len"] > model_cfg.max_position_embeddings:
        raise UserError(
            f"shards have seq_len {manifest['seq_len']} but model.max_position_embeddings is "
            f"{model_cfg.max_position_embeddings}; raise model.max_position_embeddings"
        )
    resuming = False
    if cfg.autoresume:  # before Composer loads: damaged checkpoints set aside, another model's refused
        resuming = on_rank_zero(prepare_autoresume, run_dir, dataclasses.asdict(model_cfg)) is not None
    device_batch = per_device_batch(cfg.global_train_batch_size, "global_train_batch_size")
    objective = model_cfg.objective  # the loader refuses shards built for the other one
    train_data = build_mlm_dataspec(
        cfg.data,
        split=cfg.data.train_split,
        device_batch_size=device_batch,
        seed=cfg.seed,
        vocab_size=vocab_size,
        objective=objective,
    )
    evaluators = []
    eval_rows = manifest.get("splits", {}).get(cfg.data.eval_split or "", {}).get("rows")
    if cfg.data.eval_split and eval_rows == 0:
        log.warning("split '%s' of the shards is empty: no evaluation in this run", cfg.data.eval_split)
    elif cfg.data.eval_split:
        eval_masking = cfg.data.eval_mlm_probability or cfg.data.mlm_probability
        eval_data = build_mlm_dataspec(
            dataclasses.replace(cfg.data, mlm_probability=eval_masking),
            split=cfg.data.eval_split,
            device_batch_size=cfg.device_eval_batch_size,
            seed=cfg.seed,
            vocab_size=vocab_size,
            shuffle=False,
            drop_last=False,
            objective=objective,
        )
        evaluators.append(Evaluator(label="eval", dataloader=eval_data))

    model = build_composer_model(model_cfg)  # ComposerMLM or ComposerCausalLM, by model.objective
    if cfg.model.init_from and not resuming:  # a resumed run continues from its own checkpoint
        from composer_bert.hf.load import init_state_from_hf

        sha = manifest["tokenizer"]["sha256"]
        model.model.load_state_dict(init_state_from_hf(cfg.model.init_from, model_cfg, sha))  # each rank: same files
        log.warning("initialized the model from %s", cfg.model.init_from)
    optimizer = build_optimizer(cfg.optimizer, model)
    controls = build_training_controls(cfg)
    tokenizer_dir = manifest["tokenizer"].get("path")
    metadata = RunMetadata(model_cfg, tokenizer_dir if tokenizer_dir and Path(tokenizer_dir).is_dir() else None)
    saving: dict = dict(
        save_folder=run_dir,
        save_filename=SAVE_FILENAME,
        save_latest_filename=LATEST_FILENAME,
        save_interval=cfg.save_interval,
        save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
        save_overwrite=not cfg.autoresume,
    )
    callbacks, loggers = [*controls.callbacks, metadata], _loggers(cfg, run_dir, remote)
    if remote is not None:  # Composer's CheckpointSaver names each checkpoint's copy in the bucket; Trainer adopts it
        saver, uploader = checkpoint_uploads(
            remote,
            run_dir,
            filename=SAVE_FILENAME,
            latest_filename=LATEST_FILENAME,
            save_interval=cfg.save_interval,
            overwrite=not cfg.autoresume,
            num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep,
        )
        callbacks.append(saver)
        loggers.append(uploader)

    trainer = Trainer(
        run_name=cfg.run_name,
        model=model,
        train_dataloader=train_data,
        eval_dataloader=evaluators or None,
        eval_interval=cfg.eval_interval,
        eval_subset_num_batches=cfg.eval_subset_num_batches,
        max_duration=cfg.max_duration,
        optimizers=optimizer,
        schedulers=controls.schedulers,
        step_schedulers_every_batch=True,
        algorithms=controls.algorithms,
        callbacks=callbacks,
        loggers=loggers,
        progress_bar=False,
        log_to_console=False,
        precision=cfg.precision if device.name == "gpu" else "fp32",
        device_train_microbatch_size=microbatch_size(cfg.device_train_microbatch_size, device, device_batch),
        **saving,
        autoresume=cfg.autoresume,
        seed=cfg.seed,
        compile_config={} if cfg.compile else None,
        parallelism_config=trainer_parallelism(cfg.parallelism, dist.get_world_size(), model),  # FSDP, or None
        dist_timeout=cfg.dist_timeout,
        device=device,
        python_log_level=os.environ.get("COMPOSER_BERT_LOG_LEVEL"),
    )
    if _already_finished(trainer):  # a rerun of a finished run trains nothing: its config.yaml stays the one it used
        return trainer
    resolved = {**to_dict(cfg), "model": dataclasses.asdict(model_cfg)}
    trainer.logger.log_hyperparameters(flat_hyperparameters(resolved))  # once, to every tracker (rank 0 only)
    if dist.get_global_rank() == 0:  # only once the run starts (checkpoint loaded): a failed rerun keeps the old one
        with atomic_file(Path(run_dir) / "config.yaml") as tmp:
            tmp.write_text(OmegaConf.to_yaml(resolved))
        if remote is not None:
            trainer.logger.upload_file(remote.key("config.yaml"), Path(run_dir) / "config.yaml", overwrite=True)
    return trainer


def _run_dir(trainer: Trainer) -> Path:
    """The folder the run writes to (the local copy for a bucket save_folder): where its MetricsFile writes."""
    return next(d for d in trainer.logger.destinations if isinstance(d, MetricsFile)).path.parent


def summarize(trainer: Trainer, cfg: PretrainConfig, energy_kwh: float | None = None) -> PretrainResult:
    """Read the run's own metrics file for the summary table (rank 0); paths name the bucket's copies if remote."""
    run_dir = _run_dir(trainer)
    metrics_path = run_dir / "metrics.jsonl"
    figures = summarize_metrics(read_metrics(metrics_path) if metrics_path.exists() else [])
    plot = run_dir / "loss_curve.png"
    shown = (lambda path: f"{cfg.save_folder.rstrip('/')}/{path.name}") if is_remote(cfg.save_folder) else str
    memory = peak_memory()
    causal = cfg.model.objective == "causal"
    return PretrainResult(
        batches=int(trainer.state.timestamp.batch),
        tokens=int(trainer.state.timestamp.token),
        final_train_loss=figures.final_train_loss,
        eval_loss=figures.eval_loss,
        eval_masked_accuracy=figures.eval_masked_accuracy,
        tokens_per_sec=figures.tokens_per_sec,
        mfu=figures.mfu,
        metrics_path=shown(metrics_path),
        plot_path=shown(plot) if plot.exists() else None,
        save_folder=cfg.save_folder,
        budget_used=figures.budget_used,
        peak_memory_gib=memory.gib,
        peak_memory_of=memory.of,
        energy_kwh=energy_kwh,
        objective=cfg.model.objective,
        eval_perplexity=math.exp(figures.eval_loss) if causal and figures.eval_loss is not None else None,
    )


def format_result(result: PretrainResult) -> str:
    """A two-column table for the console."""

    def show(value: float | None, spec: str, unit: str = "") -> str:
        return "n/a" if value is None else format(value, spec) + unit

    rows = [
        ("batches", f"{result.batches:,}"),
        ("tokens", f"{result.tokens:,}"),
        ("train loss (last 5 logged)", show(result.final_train_loss, ".4f")),
        ("eval loss", show(result.eval_loss, ".4f")),
        ("eval perplexity", show(result.eval_perplexity, ".3f"))
        if result.objective == "causal"
        else ("eval masked accuracy", show(result.eval_masked_accuracy, ".4f")),
        ("tokens/s (last 20 logged)", show(result.tokens_per_sec, ",.0f")),
        ("MFU", show(result.mfu, ".1%")),
        ("budget used", show(result.budget_used, ".1%")),
        (f"peak memory ({result.peak_memory_of or 'n/a'})", show(result.peak_memory_gib, ".2f", " GiB")),
        ("GPU energy (NVML, this node)", show(result.energy_kwh, ".4f", " kWh")),
        ("metrics", result.metrics_path),
        ("loss curve", result.plot_path or "n/a"),
        ("checkpoints", result.save_folder),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _already_finished(trainer: Trainer) -> bool:
    """Whether the checkpoint autoresume loaded ended the run: at (or past) max_duration, where `fit` would refuse
    to start, or with its wall-clock budget spent (Composer does not checkpoint max_duration, so a budgeted
    recipe's generous max_duration says nothing; the budget's own restored clock does)."""
    max_duration = trainer.state.max_duration
    if max_duration is not None and trainer.state.timestamp.get(max_duration.unit) >= max_duration:
        return True
    return any(isinstance(callback, WallClockBudget) and callback.spent() for callback in trainer.state.callbacks)


def run_pretraining(cfg: PretrainConfig) -> PretrainResult | None:
    """Train (or resume) and return the summary on rank 0, None on the other ranks."""
    energy = EnergyMeter() if dist.get_local_rank() == 0 else None
    try:
        with removed_if_refused(cfg.save_folder):
            trainer = build_trainer(cfg)
        finished = _already_finished(trainer)
        if finished:  # the same command again after the run ended (a scheduler's retry): nothing left to train
            limit = f"its budget {cfg.budget}" if cfg.budget else f"max_duration {cfg.max_duration}"
            log.warning(
                "run '%s' already finished after %d batches, having reached %s; its results stay as they are in %s "
                "(raise max_duration or the budget to train further, or choose another run_name to start again)",
                cfg.run_name, int(trainer.state.timestamp.batch), limit, cfg.save_folder,
            )  # fmt: skip
        else:
            trainer.fit()
        trainer.close()
        energy_kwh = energy.kwh() if energy is not None else None
    except Exception as err:  # an upload to a bucket save_folder that failed in Composer's uploader: one line
        problem = store_problem(err, cfg.save_folder) if is_remote(cfg.save_folder) else None
        if problem is None or isinstance(err, UserError):
            raise
        raise UserError(problem) from None
    finally:
        if energy is not None:
            energy.close()
    if dist.get_global_rank() != 0:
        return None
    summary = _run_dir(trainer) / "summary.json"
    if finished and summary.is_file():  # the training process's figures (energy, peak memory), not this one's
        stored = json.loads(summary.read_text())
        if is_remote(cfg.save_folder):
            shutil.rmtree(summary.parent, ignore_errors=True)  # the local copy restored from the bucket
        return PretrainResult(**{field.name: stored[field.name] for field in dataclasses.fields(PretrainResult)
                                 if field.name in stored})  # fmt: skip
    result = summarize(trainer, cfg, energy_kwh)
    with atomic_file(summary) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    if is_remote(cfg.save_folder):  # the uploader closed with the trainer: this last file goes up directly
        RemoteFolder(cfg.save_folder).upload(summary, summary.name)
        shutil.rmtree(summary.parent, ignore_errors=True)  # everything is in the bucket now
    return result
