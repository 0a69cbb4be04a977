"""One GLUE finetuning run: a fresh classifier on given encoder weights, trained by Composer's Trainer, then
scored on the task's full dev set(s).

`runner.py` decides which task x seed runs to do, in what order, and what to keep; everything here is
about a single run. Under `composer -n N` every rank trains (DDP) and scores the whole dev set itself.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from composer import Trainer
from composer.core.precision import get_precision_context
from composer.devices import Device
from composer.optim import (
    ComposerScheduler,
    CosineAnnealingScheduler,
    CosineAnnealingWithWarmupScheduler,
)
from composer.utils import dist, reproducibility

from composer_bert.callbacks.grad_norm import GradNormClip
from composer_bert.callbacks.progress import RunProgressBar
from composer_bert.glue.benchmark import Benchmark
from composer_bert.glue.config import FinetuneConfig, TaskHparams
from composer_bert.glue.data import (
    GlueExamples,
    TokenizedSplit,
    eval_dataloader,
    tokenize_examples,
    train_dataloader,
)
from composer_bert.glue.hf_model import HFSource
from composer_bert.glue.tasks import EvalSet, GlueTask
from composer_bert.models import ComposerClassifier, ModelConfig
from composer_bert.optim.optimizer import build_optimizer
from composer_bert.run.config import to_dict
from composer_bert.run.devices import per_device_batch, pick_device
from composer_bert.run.loggers import flat_hyperparameters, tracker_loggers
from composer_bert.run.parallelism import full_state_dict, trainer_parallelism


def resolve_precision(name: str) -> str:
    """'auto' is bf16 autocast on GPU and fp32 on CPU; any amp_* on CPU falls back to fp32."""
    if not torch.cuda.is_available():
        return "fp32"
    return "amp_bf16" if name == "auto" else name


def finetuning_model_config(model_config: ModelConfig, cfg: FinetuneConfig) -> ModelConfig:
    """The pretrained architecture with finetuning dropout switched on."""
    return dataclasses.replace(
        model_config,
        embedding_dropout=cfg.dropout.embedding,
        hidden_dropout=cfg.dropout.hidden,
        attention_dropout=cfg.dropout.attention,
        classifier_dropout=cfg.dropout.classifier,
    )


@dataclass
class EvalData:
    """One eval set: where it comes from, its examples (groups and extras its metrics read) and their tokens."""

    split: EvalSet
    examples: GlueExamples
    tokens: TokenizedSplit


@dataclass
class TaskData:
    """A task's tokenized splits, built once and shared by all of its seeds."""

    train: TokenizedSplit
    evals: dict[str, EvalData]  # eval set name -> dev split (and SuperGLUE's diagnostics, for RTE)


def prepare_task_data(task: GlueTask, cfg: FinetuneConfig, tokenizer: Any, max_seq_length: int) -> TaskData:
    bench = cfg.bench()
    source, path = cfg.data.source, cfg.data.path
    train = tokenize_examples(bench.load(task, task.train_set, source, path), tokenizer, max_seq_length)
    evals = {}
    for eval_set in task.eval_sets:
        examples = bench.load(task, eval_set, source, path)
        evals[eval_set.name] = EvalData(eval_set, examples, tokenize_examples(examples, tokenizer, max_seq_length))
    return TaskData(train, evals)


def cosine_with_warmup(warmup_fraction: float, total_batches: int) -> ComposerScheduler:
    """Linear warmup over `warmup_fraction` of all batches, then cosine decay to zero (counted in batches,
    so a fraction of a few epochs is not rounded to whole epochs)."""
    warmup_batches = int(warmup_fraction * total_batches)
    if warmup_batches == 0:
        return CosineAnnealingScheduler(alpha_f=0.0)
    return CosineAnnealingWithWarmupScheduler(t_warmup=f"{warmup_batches}ba", alpha_f=0.0)


@torch.no_grad()
def evaluate(
    model: ComposerClassifier,
    task: GlueTask,
    evals: dict[str, EvalData],
    device: Device,
    precision: str,
    batch_size: int,
    pad_token_id: int,
    bench: Benchmark,
) -> dict[str, dict[str, float]]:
    """Task metrics on each full dev set from the model's logits (identical on every rank)."""
    model.eval()
    scores: dict[str, dict[str, float]] = {}
    for name, data in evals.items():
        logits = []
        for batch in eval_dataloader(data.tokens, batch_size, pad_token_id):
            with get_precision_context(precision):
                output = model.eval_forward(device.batch_to_device(batch))
            logits.append(output.float().cpu().numpy())
        scores[name] = bench.score(task, data.split, np.concatenate(logits), data.examples)
    return scores


def train_and_evaluate(
    task: GlueTask,
    seed: int,
    hparams: TaskHparams,
    cfg: FinetuneConfig,
    model_config: ModelConfig | None,
    init_state: dict[str, torch.Tensor] | None,
    data: TaskData,
    pad_token_id: int,
    hf: HFSource | None = None,
) -> tuple[dict[str, dict[str, float]], ComposerClassifier]:
    """One finetuning run: a fresh classifier on the given encoder weights (or the `hf:` checkpoint's own),
    trained, then scored on the dev sets."""
    reproducibility.seed_all(seed)  # the classifier head's initialization depends on the seed
    if hf is not None:
        model = hf.classifier(task.num_labels, cfg.dropout)
    else:
        model = ComposerClassifier(model_config, task.num_labels)
        model.load_encoder_state_dict(init_state)
    precision = resolve_precision(cfg.precision)
    device_batch = per_device_batch(hparams.global_train_batch_size, "global_train_batch_size")
    loader = train_dataloader(data.train, device_batch, seed, pad_token_id, cfg.num_workers)
    total_batches = len(loader) * hparams.epochs
    show_progress = cfg.progress_bar and dist.get_global_rank() == 0
    trainer = Trainer(
        run_name=f"{cfg.benchmark}-{task.name}-seed{seed}",
        model=model,
        train_dataloader=loader,
        max_duration=f"{hparams.epochs}ep",
        # The shared optimizer section, with this task's lr and weight decay (task_overrides may change them).
        optimizers=build_optimizer(
            dataclasses.replace(cfg.optimizer, lr=hparams.lr, weight_decay=hparams.weight_decay), model
        ),
        schedulers=cosine_with_warmup(hparams.warmup_fraction, total_batches),
        step_schedulers_every_batch=True,
        callbacks=[
            *([GradNormClip(cfg.optimizer.grad_clip_norm, log_interval=0)] if cfg.optimizer.grad_clip_norm else []),
            *([RunProgressBar(f"{task.name} seed {seed}", total_batches)] if show_progress else []),
        ],
        # each run is its own tracker run, named as above
        loggers=tracker_loggers(cfg.loggers, cfg.save_folder, f"{cfg.save_folder} keeps every dev score"),
        precision=precision,
        device=pick_device(),
        device_train_microbatch_size=device_batch,
        progress_bar=False,
        log_to_console=False,
        seed=seed,
        dist_timeout=cfg.dist_timeout,
        parallelism_config=trainer_parallelism(cfg.parallelism, dist.get_world_size(), model),  # FSDP, or None
        python_log_level=os.environ.get("COMPOSER_BERT_LOG_LEVEL"),
    )
    run_config = {**to_dict(cfg), "run": {"task": task.name, "seed": seed, **dataclasses.asdict(hparams)}}
    trainer.logger.log_hyperparameters(flat_hyperparameters(run_config))
    trainer.fit()
    scores = evaluate(
        model, task, data.evals, trainer.state.device, precision, cfg.device_eval_batch_size, pad_token_id, cfg.bench()
    )
    trainer.logger.log_metrics(
        {f"{cfg.benchmark}/{eval_set}/{metric}": value for eval_set, metrics in scores.items() for metric, value in metrics.items()}
    )
    trainer.close()
    if cfg.parallelism.fsdp is not None:  # the caller saves model.state_dict() on rank 0: hand it an unsharded copy
        full = full_state_dict(model)
        model = hf.classifier(task.num_labels, cfg.dropout) if hf is not None else ComposerClassifier(
            model_config, task.num_labels
        )
        if dist.get_global_rank() == 0:
            model.load_state_dict(full)
    return scores, model


def release_memory() -> None:
    """Drop the finished run's model and optimizer state before the next run builds its own."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
