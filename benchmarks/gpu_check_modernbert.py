"""The ModernBERT section of `gpu_check.py`: modernbert-base's model against transformers' ModernBertForMaskedLM of the
same config (`composer_bert.hf.modernbert.modernbert_config`: the same function, so implementation alone).

First correctness on the device: both models in fp32 (TF32 off) from the same weights on a padded batch longer
than the local band, logits compared at real tokens; this checks our band-masked SDPA on the GPU's kernels
against transformers' own masks. Then speed: the step of gpu_check_kit.py (bf16 autocast, forward compiled)
at one microbatch, ours then transformers', then a second interleaved round; both sparse heads predict the same
rows (our masker's batches: transformers gathers the masked tokens, ours fixed-width slots).
"""

from __future__ import annotations

import dataclasses

import gpu_check_steps as kit
import numpy as np
import torch
from gpu_check_report import blocks, fmt_gib, markdown_table, speed_cells

OURS, THEIRS = "ours modernbert-base", "transformers ModernBertForMaskedLM (sdpa)"
MICROBATCH, SMOKE_MICROBATCH, SMOKE_SEQ = 32, 2, 64  # 32k tokens a step on a GPU at seq 1024
LOGIT_TOLERANCE = 1e-4  # relative (Frobenius), fp32 with TF32 off


def _model_config(smoke: bool):
    run = kit.recipe("modernbert-base")
    if not smoke:
        return run, run.model
    toy = dict(kit.TOY, num_layers=4, max_position_embeddings=SMOKE_SEQ, local_attention=16, pad_token_id=0)
    return run, dataclasses.replace(run.model, **toy)


def _batches(count: int, batch: int, cfg, mlm_probability: float, device: torch.device) -> list[dict]:
    """Our masker's batches (a fixed count a row), with the slots ours predicts in and the mask transformers reads."""
    from composer_bert.data.load.masking import MLMMasker
    from composer_bert.models.bert import masked_positions

    masker = MLMMasker(vocab_size=cfg.vocab_size, special_token_ids=range(5), mask_token_id=4, seed=0,
                       mlm_probability=mlm_probability)
    generator = np.random.default_rng(7)
    batches = []
    for index in range(count):
        rows = generator.integers(5, cfg.vocab_size, (batch, cfg.max_position_embeddings))
        ids, labels = (torch.from_numpy(a).long() for a in masker(rows, np.arange(batch) + index * batch, 0))
        slots = masked_positions(labels, masker.prediction_slots(cfg.max_position_embeddings))
        parts = dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, masked_positions=slots)
        batches.append({key: value.to(device) for key, value in parts.items()})
    return batches


def _transformers(cfg, optimizer_cfg, device: torch.device, compile: bool) -> kit.Trainee:
    import transformers

    from composer_bert.hf.modernbert import is_modernbert, modernbert_config
    from composer_bert.models.flops import mlm_flops_per_batch
    from composer_bert.optim.optimizer import build_optimizer

    if not is_modernbert(cfg):
        raise RuntimeError("modernbert-base.yaml no longer has ModernBERT's switches (hf/modernbert.py): not the same math")
    config = modernbert_config(cfg)
    config.sparse_prediction, config._attn_implementation = True, "sdpa"
    model = transformers.ModernBertForMaskedLM(config).to(device)
    if compile:
        model.forward = torch.compile(model.forward)
    optimizer = build_optimizer(optimizer_cfg, model)

    def loss_of(batch: dict) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss

    return kit.Trainee(THEIRS, model, loss_of, optimizer, lambda b: mlm_flops_per_batch(cfg, b), optimizer_cfg.grad_clip_norm)


def _logit_error(cfg, device: torch.device) -> float:
    """Relative error of our fp32 logits against transformers' at real tokens of a padded batch, same weights."""
    import transformers

    from composer_bert.hf.modernbert import modernbert_config, state_dict_from_modernbert
    from composer_bert.models.bert import BertForMaskedLM

    dense = dataclasses.replace(cfg, sparse_prediction=False)
    torch.manual_seed(0)
    theirs = transformers.ModernBertForMaskedLM(modernbert_config(dense)).to(device).eval()
    with torch.no_grad():  # off transformers' init (zero biases, tiny head), so a misplaced weight shows
        for parameter in theirs.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    mine = BertForMaskedLM(dense).to(device).eval()
    mine.load_state_dict(state_dict_from_modernbert(theirs.state_dict(), dense))
    seq = min(dense.max_position_embeddings, 4 * dense.local_attention)
    ids = torch.randint(5, dense.vocab_size, (2, seq), device=device)
    mask = torch.ones_like(ids)
    mask[1, seq // 3:] = 0
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            expected = theirs(input_ids=ids, attention_mask=mask).logits[mask.bool()]
            got = mine(ids, mask)[mask.bool()]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return float((got - expected).norm() / expected.norm())


def modernbert_section(ctx: kit.Ctx) -> kit.Result:
    device, bf16, compile_on = ctx.device, ctx.bf16, not ctx.smoke
    run, cfg = _model_config(ctx.smoke)
    torch.backends.cuda.matmul.allow_tf32 = True  # as Composer's GPU device sets it (after the fp32 check)
    peak = kit.peak_bf16_flops(device)
    warmup, steps = (2, 2) if ctx.smoke else (3, 10)
    microbatch = SMOKE_MICROBATCH if ctx.smoke else MICROBATCH
    kit.progress("modernbert: fp32 logits of ours vs transformers")
    error = _logit_error(cfg, device)
    verdict = "**PASS**" if error < LOGIT_TOLERANCE else f"**FAIL** (over {LOGIT_TOLERANCE:g})"
    results: dict[str, kit.Throughput] = {}
    params: dict[str, float] = {}
    notes: dict[str, str] = {}
    shape = (f"{cfg.num_layers}×{cfg.hidden_size}, geglu {cfg.intermediate_size}, a global layer every "
             f"{cfg.global_attn_every_n_layers}, band {cfg.local_attention}, seq {cfg.max_position_embeddings}, "
             f"vocab {cfg.vocab_size}")

    def report() -> list[str]:
        rows = [[name, f"{params[name] / 1e6:.1f}M", *speed_cells(r), f"{r.first_step_s:.1f}", fmt_gib(r.peak_memory_gib)]
                for name, r in results.items()] + [[name, note] for name, note in notes.items()]
        ratio = ([f"- same math (ours / transformers, the same config): **{results[OURS].tokens_per_s / results[THEIRS].tokens_per_s:.2f}×** tokens/s"]
                 if OURS in results and THEIRS in results else [])
        return blocks(
            f"modernbert-base.yaml's model ({shape}); fp32 logits at real tokens of a padded batch, ours against "
            f"transformers' from the same weights: relative error {error:.2e}, {verdict}.",
            f"Speed: microbatch {microbatch}, {'bf16 autocast + torch.compile of each forward' if bf16 else 'fp32 eager'}, "
            f"AdamW of the recipe, mlm {run.data.mlm_probability}; {warmup} warm-up, {steps} timed step(s), two "
            "interleaved rounds. Our local layers run SDPA with a band mask (docs/gpu.md).",
            markdown_table(["model", "params", "tokens/s", "MFU", "step ms", "first step s", "peak mem GiB"], rows),
            ratio,
        )

    batches = _batches(3, microbatch, cfg, run.data.mlm_probability, device)
    from composer_bert.models.composer_model import ComposerMLM

    builders = {OURS: lambda: kit.ours(OURS, None, run.optimizer, device, compile_on, module=ComposerMLM(cfg)),
                THEIRS: lambda: _transformers(cfg, run.optimizer, device, compile_on)}
    trainees: dict[str, kit.Trainee] = {}
    for name, build in builders.items():
        kit.progress(f"modernbert: {'compiling and warming up ' if compile_on else ''}{name}")
        try:
            torch.manual_seed(0)
            trainees[name] = build()
            params[name] = trainees[name].params
            results[name] = kit.measure(trainees[name], batches, warmup, steps, device, bf16, peak)
        except Exception as err:  # one model failing still leaves the other's row
            notes[name] = "out of memory" if isinstance(err, torch.cuda.OutOfMemoryError) else f"FAILED: {kit.first_line(err)}"
        ctx.checkpoint(report())
    if len(results) == 2 and ctx.time_left() > 15 + 2 * steps * sum(r.step_s for r in results.values()):
        for name in results:  # the second round, interleaved: the same machine state for both
            again = kit.measure(trainees[name], batches, 0, steps, device, bf16, peak)
            mine = results[name]
            mine.step_s = (mine.step_s + again.step_s) / 2
            mine.tokens_per_s = mine.microbatch * cfg.max_position_embeddings / mine.step_s
            mine.mfu = mine.flops_per_step / mine.step_s / peak if peak else None
    if not results:
        raise RuntimeError("no model ran: " + "; ".join(f"{name}: {note}" for name, note in notes.items()))
    data = {"modernbert_logit_error": error}
    if len(results) == 2:
        data["modernbert_same_math"] = results[OURS].tokens_per_s / results[THEIRS].tokens_per_s
    return {"markdown": report(), "data": data}
