"""Finetune a pretrained encoder on GLUE: one Composer Trainer per task x seed, then the summary.

`run_glue` walks the selected tasks and seeds. Each finished run leaves `{save_folder}/runs/{task}/seed{n}.json`
(written atomically, with a fingerprint of everything that shaped it), so a rerun in the same save folder
skips runs whose fingerprint still matches and redoes only the rest. Under `composer -n N` every rank
trains (DDP) and scores the full dev set itself; only rank 0 writes files and prints.

With `save_models` (the default), each finished run also leaves its classifier in `runs/{task}/seed{n}.model.pt`:
a Composer-layout checkpoint with `RunMetadata` (model config, tokenizer) plus the task's label names, so
`recipes/export_hf.py --checkpoint` turns it into a Hugging Face classifier (see `save_classifier`).

With `start_from_mnli`, MNLI runs first and its model file is kept whatever `save_models` says; seed s of a
listed task starts from MNLI seed s (or MNLI's first seed when MNLI did not run seed s), taking only the
encoder: MNLI's pooler and classifier are discarded.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from composer import Trainer
from composer.core import Callback, State
from composer.core.precision import get_precision_context
from composer.devices import Device
from composer.loggers import Logger
from composer.optim import (
    ComposerScheduler,
    CosineAnnealingScheduler,
    CosineAnnealingWithWarmupScheduler,
)
from composer.utils import dist, reproducibility
from tqdm.auto import tqdm

from composer_bert.callbacks.grad_norm import GradNormClip
from composer_bert.checkpoint import RunMetadata, load_pretrained
from composer_bert.errors import UserError
from composer_bert.files import atomic_file
from composer_bert.glue.config import FinetuneConfig, TaskHparams
from composer_bert.glue.data import (
    TokenizedSplit,
    eval_dataloader,
    load_examples,
    tokenize_examples,
    train_dataloader,
)
from composer_bert.glue.metrics import compute_task_metrics, predictions_from_logits
from composer_bert.glue.results import (
    GlueSummary,
    RunResult,
    format_console,
    read_run_result,
    run_result_path,
    summarize,
    write_run_result,
    write_summary,
)
from composer_bert.glue.tasks import TASKS, TRAIN_SPLIT, GlueTask
from composer_bert.models import ComposerClassifier, ModelConfig
from composer_bert.optim.optimizer import build_optimizer
from composer_bert.run_setup import per_device_batch, pick_device

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_precision(name: str) -> str:
    """'auto' is bf16 autocast on GPU and fp32 on CPU; any amp_* on CPU falls back to fp32."""
    if not torch.cuda.is_available():
        return "fp32"
    return "amp_bf16" if name == "auto" else name


def load_tokenizer(tokenizer_dir: str | Path | None) -> Any:
    """The pretraining tokenizer, from local files only (a `tokenizer.json` is enough)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if tokenizer_dir is None:
        raise UserError("the checkpoint carries no tokenizer; pass tokenizer=DIR (the folder with tokenizer.json)")
    folder = Path(tokenizer_dir)
    if not folder.is_dir():
        raise UserError(f"tokenizer folder '{folder}' does not exist; pass tokenizer=DIR with a tokenizer.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError):
        if not (folder / "tokenizer.json").is_file():
            raise UserError(
                f"no usable tokenizer in '{folder}'; it needs tokenizer.json (or a full HF tokenizer)"
            ) from None
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token_id is None:
        raise UserError(f"the tokenizer in '{folder}' has no padding token; GLUE batches need one ([PAD])")
    return tokenizer


def finetuning_model_config(model_config: ModelConfig, cfg: FinetuneConfig) -> ModelConfig:
    """The pretrained architecture with finetuning dropout switched on."""
    return dataclasses.replace(
        model_config,
        embedding_dropout=cfg.dropout.embedding,
        hidden_dropout=cfg.dropout.hidden,
        attention_dropout=cfg.dropout.attention,
        classifier_dropout=cfg.dropout.classifier,
    )


def fingerprint_of(payload: dict[str, Any]) -> str:
    """A short stable hash of everything that shapes a run's result."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TaskData:
    """A task's tokenized splits, built once and shared by all of its seeds."""

    train: TokenizedSplit
    evals: dict[str, TokenizedSplit]  # eval set name -> dev split


def prepare_task_data(task: GlueTask, cfg: FinetuneConfig, tokenizer: Any, max_seq_length: int) -> TaskData:
    train = tokenize_examples(
        load_examples(task, TRAIN_SPLIT, cfg.data.source, cfg.data.path), tokenizer, max_seq_length
    )
    evals = {
        eval_set.name: tokenize_examples(
            load_examples(task, eval_set, cfg.data.source, cfg.data.path), tokenizer, max_seq_length
        )
        for eval_set in task.eval_sets
    }
    return TaskData(train, evals)


@torch.no_grad()
def evaluate(
    model: ComposerClassifier,
    task: GlueTask,
    evals: dict[str, TokenizedSplit],
    device: Device,
    precision: str,
    batch_size: int,
    pad_token_id: int,
) -> dict[str, dict[str, float]]:
    """Task metrics on each full dev set from the model's predictions (identical on every rank)."""
    model.eval()
    scores: dict[str, dict[str, float]] = {}
    for name, split in evals.items():
        logits = []
        for batch in eval_dataloader(split, batch_size, pad_token_id):
            with get_precision_context(precision):
                output = model.eval_forward(device.batch_to_device(batch))
            logits.append(output.float().cpu().numpy())
        predictions = predictions_from_logits(task, np.concatenate(logits))
        scores[name] = compute_task_metrics(task, predictions, split.labels)
    return scores


def train_and_evaluate(
    task: GlueTask,
    seed: int,
    hparams: TaskHparams,
    cfg: FinetuneConfig,
    model_config: ModelConfig,
    init_state: dict[str, torch.Tensor],
    data: TaskData,
    pad_token_id: int,
) -> tuple[dict[str, dict[str, float]], ComposerClassifier]:
    """One finetuning run: a fresh classifier on the given encoder weights, trained, then scored on the dev sets."""
    reproducibility.seed_all(seed)  # the classifier head's initialization depends on the seed
    model = ComposerClassifier(model_config, task.num_labels)
    model.load_encoder_state_dict(init_state)
    precision = resolve_precision(cfg.precision)
    device_batch = per_device_batch(hparams.global_train_batch_size, "global_train_batch_size")
    loader = train_dataloader(data.train, device_batch, seed, pad_token_id, cfg.num_workers)
    total_batches = len(loader) * hparams.epochs
    show_progress = cfg.progress_bar and dist.get_global_rank() == 0
    trainer = Trainer(
        run_name=f"glue-{task.name}-seed{seed}",
        model=model,
        train_dataloader=loader,
        max_duration=f"{hparams.epochs}ep",
        optimizers=build_optimizer(
            dataclasses.replace(cfg.optimizer, lr=hparams.lr, weight_decay=hparams.weight_decay), model
        ),
        schedulers=cosine_with_warmup(hparams.warmup_fraction, total_batches),
        step_schedulers_every_batch=True,
        callbacks=[
            *([GradNormClip(cfg.optimizer.grad_clip_norm, log_interval=0)] if cfg.optimizer.grad_clip_norm else []),
            *([RunProgressBar(f"{task.name} seed {seed}", total_batches)] if show_progress else []),
        ],
        precision=precision,
        device=pick_device(),
        device_train_microbatch_size=device_batch,
        progress_bar=False,
        log_to_console=False,
        seed=seed,
        dist_timeout=cfg.dist_timeout,
        python_log_level=os.environ.get("COMPOSER_BERT_LOG_LEVEL"),
    )
    trainer.fit()
    scores = evaluate(model, task, data.evals, trainer.state.device, precision, cfg.device_eval_batch_size, pad_token_id)
    trainer.close()
    return scores, model


def cosine_with_warmup(warmup_fraction: float, total_batches: int) -> ComposerScheduler:
    """Linear warmup over `warmup_fraction` of all batches, then cosine decay to zero (counted in batches,
    so a fraction of a few epochs is not rounded to whole epochs)."""
    warmup_batches = int(warmup_fraction * total_batches)
    if warmup_batches == 0:
        return CosineAnnealingScheduler(alpha_f=0.0)
    return CosineAnnealingWithWarmupScheduler(t_warmup=f"{warmup_batches}ba", alpha_f=0.0)


class RunProgressBar(Callback):
    """One tqdm bar per run, labelled with task and seed, showing the latest training loss."""

    def __init__(self, label: str, total_batches: int):
        self.label = label
        self.total_batches = total_batches
        self.bar: tqdm | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        self.bar = tqdm(total=self.total_batches, desc=self.label, unit="ba", dynamic_ncols=True, mininterval=1.0)

    def batch_end(self, state: State, logger: Logger) -> None:
        assert self.bar is not None
        self.bar.update(1)
        if self.bar.n % 10 == 0 or self.bar.n == self.total_batches:
            losses = state.loss.values() if isinstance(state.loss, dict) else [state.loss]
            self.bar.set_postfix(loss=f"{sum(float(loss) for loss in losses):.4f}", refresh=False)

    def fit_end(self, state: State, logger: Logger) -> None:
        if self.bar is not None:
            self.bar.close()


def model_path(save_folder: str | Path, task_name: str, seed: int) -> Path:
    """A finished run's classifier file, next to its result: `runs/{task}/seed{n}.model.pt`."""
    return run_result_path(save_folder, task_name, seed).with_suffix(".model.pt")


def mnli_weights_path(save_folder: str | Path, seed: int) -> Path:
    return model_path(save_folder, "MNLI", seed)


def save_classifier(
    model: ComposerClassifier, task: GlueTask, model_config: ModelConfig, tokenizer_dir: str | Path | None, path: Path
) -> None:
    """Write the classifier atomically in the layout Composer checkpoints have, so one file is enough to export it.

    `{"state": {"model": {"model.bert.*", "model.pooler.*", "model.classifier.*"}, "callbacks": {"RunMetadata":
    {model_config, tokenizer_files, task, num_labels, label_names}}}}`: `load_composer_checkpoint` reads it like
    a pretraining checkpoint (ignoring the extra keys) and `export_checkpoint` turns label_names (empty for
    regression) into config.json's id2label. Everything in it loads with `torch.load(weights_only=True)`.
    """
    metadata = RunMetadata(model_config, tokenizer_dir).state_dict()
    metadata.update(task=task.name, num_labels=task.num_labels, label_names=list(task.label_names))
    weights = {key: value.detach().cpu() for key, value in model.model.state_dict(prefix="model.").items()}
    checkpoint = {"state": {"model": weights, "callbacks": {RunMetadata.__qualname__: metadata}}}
    with atomic_file(path) as temporary:
        torch.save(checkpoint, temporary)


def load_classifier_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a file `save_classifier` wrote (keys `model.*`); a bare state dict from older versions too."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint["state"]["model"] if "state" in checkpoint else checkpoint


def _on_rank_zero(decide: Callable[[], T]) -> T:
    """Rank 0's answer to `decide()`, shared with every rank (all must skip or run the same runs)."""
    answer = [decide() if dist.get_global_rank() == 0 else None]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(answer, src=0)
    return answer[0]


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
        self.pretrained = load_pretrained(cfg.checkpoint)
        self.tokenizer_dir = cfg.tokenizer or self.pretrained.tokenizer_dir
        self.tokenizer = load_tokenizer(self.tokenizer_dir)
        self.model_config = finetuning_model_config(self.pretrained.model_config, cfg)
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        self._check_tokenizer()

    def _check_tokenizer(self) -> None:
        vocab = self.model_config.vocab_size
        if vocab is not None and len(self.tokenizer) > vocab:
            raise UserError(
                f"the tokenizer has {len(self.tokenizer)} tokens but the model's vocab_size is {vocab}; "
                "pass the tokenizer the checkpoint was pretrained with"
            )
        # The classifier reads position 0 and pairs need segment ids: both come from the post-processor.
        pair = self.tokenizer("a", "b", return_token_type_ids=True)
        if self.tokenizer.cls_token_id is None or pair["input_ids"][0] != self.tokenizer.cls_token_id:
            raise UserError("the tokenizer does not start sequences with [CLS]; use a BERT-style post-processor")
        if 1 not in pair["token_type_ids"]:
            raise UserError("the tokenizer gives sentence pairs no segment ids; use a BERT-style post-processor")

    def _check_length(self, task: GlueTask, hparams: TaskHparams) -> None:
        if hparams.max_seq_length > self.model_config.max_position_embeddings:
            raise UserError(
                f"{task.name}: max_seq_length {hparams.max_seq_length} exceeds the model's max_position_embeddings "
                f"{self.model_config.max_position_embeddings}; lower max_seq_length"
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
                    mnli_seeds = cfg.hparams_for(TASKS["MNLI"]).seeds
                    mnli_seed = seed if seed in mnli_seeds else mnli_seeds[0]
                mnli_fingerprint = None if mnli_seed is None else mnli_fingerprints[mnli_seed]
                fingerprint = self._fingerprint(task, seed, hparams, mnli_fingerprint)
                keeps_weights = cfg.save_models or (task.name == "MNLI" and bool(cfg.mnli_starts()))
                plan = Plan(task, seed, hparams, fingerprint, mnli_seed, keeps_weights)
                plan.finished = _on_rank_zero(lambda plan=plan: self.stored_result(plan))
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
        data = {
            name: prepare_task_data(
                TASKS[name], self.cfg, self.tokenizer, self.cfg.hparams_for(TASKS[name]).max_seq_length
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
        init_state = self.pretrained.state_dict
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
            task, seed, plan.hparams, self.cfg, self.model_config, init_state, data, self.pad_token_id
        )
        hparams = {key: value for key, value in dataclasses.asdict(plan.hparams).items() if key != "seeds"}
        hparams["start_from_mnli_seed"] = plan.start_from_mnli_seed
        result = RunResult(task.name, seed, plan.fingerprint, scores, time.perf_counter() - started, hparams)
        if dist.get_global_rank() == 0:
            if plan.keeps_weights:  # before the result: a result on disk means its model file is there too
                model_file = model_path(self.cfg.save_folder, task.name, seed)
                save_classifier(model, task, self.model_config, self.tokenizer_dir, model_file)
            path = write_run_result(self.cfg.save_folder, result)
            log.info("%s seed %d: %s -> %s", task.name, seed, json.dumps(scores), path)
        del model
        _release_memory()
        dist.barrier()
        return result


def _release_memory() -> None:
    """Drop the finished run's model and optimizer state before the next run builds its own."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_glue(cfg: FinetuneConfig) -> GlueSummary:
    """Finetune and score every selected task x seed (reusing finished runs); rank 0 writes and prints the summary."""
    dist.initialize_dist(pick_device(), timeout=cfg.dist_timeout)
    runs = GlueRunner(cfg).run_all()
    summary = summarize(runs, cfg.checkpoint)
    if dist.get_global_rank() == 0:
        json_path, markdown_path = write_summary(cfg.save_folder, summary)
        print(format_console(summary), flush=True)
        print(f"results: {json_path} and {markdown_path}", flush=True)
    return summary
