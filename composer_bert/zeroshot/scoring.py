"""Zero- and few-shot scoring: the log-likelihood of each answer after the prompt, the most likely answer as the
prediction, accuracy (and CB's macro-F1) over the val split, and a report.

Each request is scored as lm-evaluation-harness scores it: the context and context + answer are tokenized
(no special tokens, as the shards hold text), the answer's tokens are what the longer one adds, the sequence is
cut from the left to the model's context, and the answer's log-probabilities are summed. Requests run longest
first in batches padded on the right (a causal model's earlier positions never see the padding).
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from composer_bert.errors import UserError
from composer_bert.glue.superglue.data import flat_rows, row_label
from composer_bert.glue.superglue.metrics import macro_f1
from composer_bert.glue.superglue.tasks import get_task
from composer_bert.run.files import atomic_file
from composer_bert.zeroshot.config import ZeroShotConfig
from composer_bert.zeroshot.prompts import FEWSHOT_DELIMITER, requests

RESULTS = "zero_shot_results"


@torch.no_grad()
def answer_logprobs(model: Any, tokenizer: Any, pairs: list[tuple[str, str]], batch_size: int, device: str,
                    max_len: int, show: str | None = None) -> list[float]:  # fmt: skip
    """Summed log-probability of each continuation given its context."""
    encoded = []
    for context, continuation in pairs:
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        context_len = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        answer = whole[context_len:]
        if not answer:
            raise UserError(f"the answer {continuation!r} adds no token to its prompt; give the choices some text")
        encoded.append((whole[-(max_len + 1) :], len(answer)))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    scores = [0.0] * len(encoded)
    bar = tqdm(total=len(order), desc=show, unit="req", file=sys.stderr, disable=show is None)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i][0]) - 1 for i in chunk)
        inputs = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            tokens = encoded[i][0][:-1]
            inputs[row, : len(tokens)] = torch.tensor(tokens)
        logits = model(inputs.to(device))
        for row, i in enumerate(chunk):  # only the answer's positions are normalised: the rest is never read
            tokens, answer_len = encoded[i]
            end = len(tokens) - 1
            logprobs = torch.log_softmax(logits[row, end - answer_len : end].float(), dim=-1).cpu()
            targets = torch.tensor(tokens[end - answer_len + 1 :])
            scores[i] = float(logprobs.gather(-1, targets[:, None]).sum())
        bar.update(len(chunk))
    bar.close()
    return scores


@dataclass
class TaskScore:
    task: str
    examples: int
    metrics: dict[str, float]  # x100
    seconds: float
    chance_accuracy: float  # x100: what guessing scores, for reading a small model's accuracy
    logliks: list[float] = field(default_factory=list, repr=False)  # every answer's, in request order (not saved)


def _labelled(task: str, split: Any, cfg: ZeroShotConfig) -> list[tuple[str, dict[str, Any], int]]:
    _, rows = flat_rows(split, cfg.data.source, cfg.data.path)
    return [(where, row, row_label(get_task(task), split.hf_config, row, where)) for where, row in rows]


def build_requests(
    task: str, template: str, val: list[tuple[str, dict[str, Any], int]], train: list[tuple[str, dict[str, Any], int]],
    num_fewshot: int, seed: int,
) -> tuple[list[tuple[str, str]], list[tuple[int, int]]]:
    """Every (context, answer) pair to score, and per val example where its answers start and how many there are.
    The k shots of each example are drawn from `train` by one `random.Random(seed)` in val order."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    for where, row, _ in val:
        try:
            context, answers = requests(task, template, row)
            shots = []
            # k + 1 drawn, the example itself dropped, the first k kept: lm-evaluation-harness's sampler, so the same
            # seed shows the same shots there and here
            drawn = [item for item in rng.sample(train, min(num_fewshot + 1, len(train))) if item[1] != row][:num_fewshot]
            for _, shot, shot_label in drawn if num_fewshot else []:
                shot_context, shot_answers = requests(task, template, shot)
                shots.append(shot_context + shot_answers[shot_label])
        except (KeyError, ValueError, IndexError) as err:
            raise UserError(f"{where}: cannot fill the {task} prompt ({err}); check the row and the template") from None
        prefix = FEWSHOT_DELIMITER.join(shots) + FEWSHOT_DELIMITER if shots else ""
        spans.append((len(pairs), len(answers)))
        pairs += [(prefix + context, answer) for answer in answers]
    return pairs, spans


def score_task(task: str, model: Any, tokenizer: Any, cfg: ZeroShotConfig, device: str) -> TaskScore:
    sg = get_task(task)
    val = _labelled(task, sg.eval_sets[0], cfg)[: cfg.limit]
    train = _labelled(task, sg.train_set, cfg) if cfg.num_fewshot else []
    if cfg.num_fewshot > len(train):
        raise UserError(f"num_fewshot={cfg.num_fewshot} but {task}'s train split has {len(train)} examples; lower num_fewshot")
    pairs, spans = build_requests(task, cfg.template(task), val, train, cfg.num_fewshot, cfg.fewshot_seed)
    started = time.perf_counter()
    max_len = model.config.max_position_embeddings
    scores = answer_logprobs(model, tokenizer, pairs, cfg.batch_size, device, max_len, show=task)
    predictions = np.array([int(np.argmax(scores[first : first + n])) for first, n in spans])
    gold = np.array([label for _, _, label in val])
    metrics = {"accuracy": 100.0 * float(np.mean(predictions == gold))}
    if "macro_f1" in sg.metrics:  # CB's second metric, as finetuning reports it
        metrics["macro_f1"] = 100.0 * macro_f1(predictions, gold, sg.num_labels)
    chance = 100.0 * float(np.mean([1.0 / n for _, n in spans]))  # a uniform guess's expected accuracy
    return TaskScore(task, len(val), metrics, time.perf_counter() - started, chance, scores)


def format_table(results: list[TaskScore], cfg: ZeroShotConfig) -> str:
    shots = "zero-shot" if cfg.num_fewshot == 0 else f"{cfg.num_fewshot}-shot (seed {cfg.fewshot_seed})"
    lines = [
        f"# SuperGLUE {shots}, val split (dev) of `{cfg.data.path or cfg.data.source}`: `{cfg.checkpoint}`",
        "",
        "| Task | Metric | Score | Chance | Examples | Seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        for metric, value in result.metrics.items():
            chance = f"{result.chance_accuracy:.1f}" if metric == "accuracy" else ""
            lines.append(
                f"| {result.task} | {metric} | {value:.1f} | {chance} | {result.examples} | {result.seconds:.1f} |"
            )
    return "\n".join(lines) + "\n"


def run_zero_shot(cfg: ZeroShotConfig) -> list[TaskScore]:
    """Score every task, print the table, write zero_shot_results.json and .md into save_folder."""
    from composer_bert.generation.sampling import load_causal_lm, resolve_device

    device = resolve_device(cfg.device)
    loaded = load_causal_lm(cfg.checkpoint, device, recipe="zero_shot")
    tasks = [cfg.task_name(name, "tasks") for name in cfg.tasks]
    results = [score_task(task, loaded.model, loaded.tokenizer, cfg, device) for task in tasks]
    table = format_table(results, cfg)
    folder = Path(cfg.save_folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"checkpoint": cfg.checkpoint, "num_fewshot": cfg.num_fewshot, "fewshot_seed": cfg.fewshot_seed,
               "split": "val", "tasks": [{k: v for k, v in asdict(r).items() if k != "logliks"} for r in results]}  # fmt: skip
    with atomic_file(folder / f"{RESULTS}.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    with atomic_file(folder / f"{RESULTS}.md") as tmp:
        tmp.write_text(table)
    print(table, flush=True)
    return results
