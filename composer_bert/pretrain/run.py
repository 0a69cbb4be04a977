"""Run (or resume) a pretraining run end to end: build the trainer, train unless the run already finished,
and write and return its summary on rank 0."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

from composer import Trainer
from composer.utils import dist

from composer_bert.errors import UserError
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.pretrain.summary import PretrainResult, summarize
from composer_bert.pretrain.trainer import already_finished, build_trainer, run_dir_of
from composer_bert.run.files import atomic_file, removed_if_refused
from composer_bert.run.remote import RemoteFolder, is_remote, store_problem
from composer_bert.run.resources import EnergyMeter

log = logging.getLogger(__name__)


def _kept_locally(trainer: Trainer | None) -> str:
    """Where a bucket run that stopped on its uploads keeps what it wrote (a rerun resumes from the bucket)."""
    if trainer is None or dist.get_global_rank() != 0:
        return ""
    checkpoints = sorted(path.name for path in run_dir_of(trainer).glob("ep*-ba*-rank0.pt"))
    if not checkpoints:
        return ""
    return (
        f"; the run's checkpoints ({', '.join(checkpoints)}) are kept in {run_dir_of(trainer)}; once the store "
        "answers, the same command resumes from the newest checkpoint in the bucket"
    )


def run_pretraining(cfg: PretrainConfig) -> PretrainResult | None:
    """Train (or resume) and return the summary on rank 0, None on the other ranks."""
    energy = EnergyMeter() if dist.get_local_rank() == 0 else None
    trainer = None
    try:
        with removed_if_refused(cfg.save_folder):
            trainer = build_trainer(cfg)
        finished = already_finished(trainer)
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
        raise UserError(problem + _kept_locally(trainer)) from None
    finally:
        if energy is not None:
            energy.close()
    if dist.get_global_rank() != 0:
        return None
    run_dir = run_dir_of(trainer)
    summary = run_dir / "summary.json"
    if finished and summary.is_file():  # the training process's figures (energy, peak memory), not this one's
        stored = json.loads(summary.read_text())
        if is_remote(cfg.save_folder):
            shutil.rmtree(summary.parent, ignore_errors=True)  # the local copy restored from the bucket
        return PretrainResult(**{field.name: stored[field.name] for field in dataclasses.fields(PretrainResult)
                                 if field.name in stored})  # fmt: skip
    result = summarize(trainer, cfg, run_dir, energy_kwh)
    with atomic_file(summary) as tmp:
        tmp.write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    if is_remote(cfg.save_folder):  # the uploader closed with the trainer: this last file goes up directly
        RemoteFolder(cfg.save_folder).upload(summary, summary.name)
        shutil.rmtree(summary.parent, ignore_errors=True)  # everything is in the bucket now
    return result
