"""Finetune a pretrained model (an encoder, or a decoder's last-token classifier) on GLUE or SuperGLUE: plan the
task x seed runs, resume them, train what is left, report.

`run_glue` first proves `save_folder` writable, then walks the selected tasks and seeds. Each finished run
leaves `{save_folder}/runs/{task}/seed{n}.json` (written atomically, with a fingerprint of everything that
shaped it), so a rerun in the same save folder skips runs whose fingerprint still matches and redoes only
the rest. One run's training and scoring is `train.py`'s job. Under `composer -n N` every rank trains (DDP)
and scores the full dev set itself; only rank 0 writes files and prints.

With `save_models` (the default), each finished run also leaves its classifier in `runs/{task}/seed{n}.model.pt`
(`composer_bert.run.checkpoint.save_classifier`: weights, model config, tokenizer, task and label names), so
`recipes/export_hf.py --checkpoint` turns it into a Hugging Face classifier.

With `start_from_mnli`, MNLI runs first and its model file is kept whatever `save_models` says; seed s of a
listed task starts from MNLI seed s (or MNLI's first seed when MNLI did not run seed s), taking only the
encoder: MNLI's pooler and classifier are discarded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from composer.utils import dist

from composer_bert.errors import UserError
from composer_bert.glue.config import FinetuneConfig, TaskHparams
from composer_bert.glue.data import check_tokenizer, load_tokenizer
from composer_bert.glue.hf_model import HFSource, hf_name, load_hf_source
from composer_bert.glue.results import (
    GlueSummary,
    RunResult,
    format_console,
    mnli_weights_path,
    model_path,
    read_run_result,
    run_result_path,
    summarize,
    write_run_result,
    write_summary,
)
from composer_bert.glue.tasks import GlueTask
from composer_bert.glue.train import (
    TaskData,
    finetuning_model_config,
    prepare_task_data,
    release_memory,
    resolve_precision,
    train_and_evaluate,
)
from composer_bert.hf.load import load_pretrained
from composer_bert.objectives import objective, refuse_unless_accepted
from composer_bert.run.checkpoint import ClassifierInfo, load_classifier_weights, save_classifier
from composer_bert.run.composer_fixes import apply_composer_fixes
from composer_bert.run.devices import on_rank_zero, pick_device
from composer_bert.run.files import ensure_writable_dir, removed_if_refused

log = logging.getLogger(__name__)
T = TypeVar("T")


def fingerprint_of(payload: dict[str, Any]) -> str:
    """A short stable hash of everything that shapes a run's result."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_folder_problem(save_folder: str) -> str | None:
    try:
        ensure_writable_dir(save_folder, "save_folder")
    except UserError as err:
        return str(err)
    return None


def check_save_folder(save_folder: str) -> None:
    """Rank 0 proves `save_folder` writable before any data or model load; every rank stops on its answer,
    so a bad folder costs seconds, not the finished runs."""
    problem = on_rank_zero(_save_folder_problem, save_folder)
    if problem is not None:
        raise UserError(problem)


@dataclass
class Plan:
    """One task x seed run: its fingerprint, the MNLI run it starts from (if any), and a stored result if finished."""

    task: GlueTask
    seed: int
    hparams: TaskHparams
    fingerprint: str
    start_from_mnli_seed: int | None
    keeps_weights: bool  # writes its model file: save_models, or an MNLI run that later tasks start from
    finished: RunResult | None = None


class GlueRunner:
    """Plans the task x seed grid, reads and checks all data still needed, then trains what is not finished.

    All plans and data checks come first, so a bad file or setting stops the run before any training.
    """

    def __init__(self, cfg: FinetuneConfig):
        self.cfg = cfg
        self.hf: HFSource | None = None
        name = hf_name(cfg.checkpoint)
        if name is not None:  # a transformers classifier with its own tokenizer (glue/hf_model.py)
            if cfg.tokenizer is not None:
                raise UserError("tokenizer= does not apply to hf: checkpoints, which use their own; drop it")
            if cfg.mnli_starts():
                raise UserError("start_from_mnli is not supported with hf: checkpoints; set start_from_mnli=[]")
            self.hf = load_hf_source(name)
            self.tokenizer, self.tokenizer_dir, self.model_config, self.pretrained = self.hf.tokenizer, None, None, None
            self.max_positions = self.hf.max_positions
            if cfg.save_models:
                log.info("save_models does not apply to hf: checkpoints; no model files are written")
        else:
            self.pretrained = load_pretrained(cfg.checkpoint)
            refuse_unless_accepted(self.pretrained.model_config.objective, "finetune_glue", cfg.checkpoint)
            self.tokenizer_dir = cfg.tokenizer or self.pretrained.tokenizer_dir
            self.tokenizer = load_tokenizer(self.tokenizer_dir)
            self.model_config = finetuning_model_config(self.pretrained.model_config, cfg)
            self.max_positions = self.model_config.max_position_embeddings
            rows_start_with_cls = objective(self.model_config.objective).rows_start_with_cls
            check_tokenizer(self.tokenizer, self.model_config.vocab_size, rows_start_with_cls)
        self.pad_token_id = int(self.tokenizer.pad_token_id)

    def _check_length(self, task: GlueTask, hparams: TaskHparams) -> None:
        if self.max_positions is not None and hparams.max_seq_length > self.max_positions:
            raise UserError(
                f"{task.name}: max_seq_length {hparams.max_seq_length} exceeds the model's max_position_embeddings "
                f"{self.max_positions}; lower max_seq_length"
            )

    def _fingerprint(self, task: GlueTask, seed: int, hparams: TaskHparams, mnli_fingerprint: str | None) -> str:
        """Everything that shapes this run's result; output paths, progress bars and the seed list do not."""
        cfg = self.cfg
        return fingerprint_of(
            {
                "checkpoint": cfg.checkpoint,
                "tokenizer": cfg.tokenizer,
                "task": task.name,
                "seed": seed,
                "hparams": {key: value for key, value in dataclasses.asdict(hparams).items() if key != "seeds"},
                "optimizer": dataclasses.asdict(cfg.optimizer),
                "precision": resolve_precision(cfg.precision),
                "dropout": dataclasses.asdict(cfg.dropout),
                "data": dataclasses.asdict(cfg.data),
                "starts_from_mnli": mnli_fingerprint,
                # GLUE's fingerprints predate the key, so a half-done GLUE sweep of an earlier release still resumes
                **({"benchmark": cfg.benchmark} if cfg.benchmark != "glue" else {}),
            }
        )

    def plan(self) -> list[Plan]:
        """Every run in order (MNLI first when others start from it), each marked finished or not."""
        cfg = self.cfg
        mnli_fingerprints: dict[int, str] = {}
        plans = []
        for task in cfg.selected_tasks():
            hparams = cfg.hparams_for(task)
            self._check_length(task, hparams)
            for seed in hparams.seeds:
                mnli_seed = None
                if task.name in cfg.mnli_starts():
                    mnli_seeds = cfg.hparams_for(cfg.bench().tasks["MNLI"]).seeds
                    mnli_seed = seed if seed in mnli_seeds else mnli_seeds[0]
                mnli_fingerprint = None if mnli_seed is None else mnli_fingerprints[mnli_seed]
                fingerprint = self._fingerprint(task, seed, hparams, mnli_fingerprint)
                keeps_weights = self.hf is None and (
                    cfg.save_models or (task.name == "MNLI" and bool(cfg.mnli_starts()))
                )
                plan = Plan(task, seed, hparams, fingerprint, mnli_seed, keeps_weights)
                plan.finished = on_rank_zero(self.stored_result, plan)
                if task.name == "MNLI":
                    mnli_fingerprints[seed] = plan.fingerprint
                plans.append(plan)
        return plans

    def stored_result(self, plan: Plan) -> RunResult | None:
        """The stored result of an identical earlier run, if there is one (and its weights, when needed)."""
        path = run_result_path(self.cfg.save_folder, plan.task.name, plan.seed)
        stored = read_run_result(path)
        if stored is None:
            return None
        if stored.fingerprint != plan.fingerprint:
            log.info(
                "%s seed %d: configuration changed since %s was written; running again", plan.task.name, plan.seed, path
            )
            return None
        if plan.keeps_weights and not model_path(self.cfg.save_folder, plan.task.name, plan.seed).is_file():
            log.info("%s seed %d: finished, but its model file is missing; running again", plan.task.name, plan.seed)
            return None
        return stored

    def run_all(self) -> list[RunResult]:
        plans = self.plan()
        pending = list(dict.fromkeys(plan.task.name for plan in plans if plan.finished is None))
        tasks = self.cfg.bench().tasks
        data = {
            name: prepare_task_data(
                tasks[name], self.cfg, self.tokenizer, self.cfg.hparams_for(tasks[name]).max_seq_length
            )
            for name in pending
        }
        results = []
        for plan in plans:
            if plan.finished is not None:
                log.info(
                    "%s seed %d: already finished in %s; skipping", plan.task.name, plan.seed, self.cfg.save_folder
                )
                results.append(plan.finished)
            else:
                results.append(self.run(plan, data[plan.task.name]))
        return results

    def run(self, plan: Plan, data: TaskData) -> RunResult:
        task, seed = plan.task, plan.seed
        init_state = None if self.pretrained is None else self.pretrained.state_dict
        if plan.start_from_mnli_seed is not None:
            init_state = load_classifier_weights(mnli_weights_path(self.cfg.save_folder, plan.start_from_mnli_seed))
        source = "" if plan.start_from_mnli_seed is None else f" from MNLI seed {plan.start_from_mnli_seed}"
        log.info(
            "%s seed %d: finetuning on %d examples for %d epochs%s",
            task.name,
            seed,
            len(data.train),
            plan.hparams.epochs,
            source,
        )
        started = time.perf_counter()
        scores, model = train_and_evaluate(
            task, seed, plan.hparams, self.cfg, self.model_config, init_state, data, self.pad_token_id, self.hf
        )
        hparams = {key: value for key, value in dataclasses.asdict(plan.hparams).items() if key != "seeds"}
        hparams["start_from_mnli_seed"] = plan.start_from_mnli_seed
        result = RunResult(task.name, seed, plan.fingerprint, scores, time.perf_counter() - started, hparams)
        if dist.get_global_rank() == 0:
            if plan.keeps_weights:  # before the result: a result on disk means its model file is there too
                info = ClassifierInfo(task.name, task.num_labels, tuple(task.label_names))
                model_file = model_path(self.cfg.save_folder, task.name, seed)
                save_classifier(model_file, model.model, self.model_config, self.tokenizer_dir, info)
            path = write_run_result(self.cfg.save_folder, result)
            log.info("%s seed %d: %s -> %s", task.name, seed, json.dumps(scores), path)
        del model
        release_memory()
        dist.barrier()
        return result


def run_glue(cfg: FinetuneConfig) -> GlueSummary:
    """Finetune and score every selected task x seed (reusing finished runs); rank 0 writes and prints the summary."""
    apply_composer_fixes()  # Composer's benign warnings (a short last eval batch) silenced, as in pretraining
    dist.initialize_dist(pick_device(), timeout=cfg.dist_timeout)
    with removed_if_refused(cfg.save_folder):  # a refused checkpoint or data file leaves no empty save_folder
        check_save_folder(cfg.save_folder)
        runs = GlueRunner(cfg).run_all()
    summary = summarize(runs, cfg.checkpoint, cfg.bench())
    if dist.get_global_rank() == 0:
        json_path, markdown_path, chart_path = write_summary(cfg.save_folder, summary)
        print(format_console(summary), flush=True)
        chart = f", chart {chart_path}" if chart_path else ""
        print(f"results: {json_path} and {markdown_path}{chart}", flush=True)
    return summary
