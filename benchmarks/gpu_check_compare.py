"""The comparison section of `gpu_check.py`: ours as original BERT vs transformers' BertForMaskedLM of BERT-base
shape (the same function: implementation alone), and crammed-bert vs the same (architecture too)."""

from __future__ import annotations

import dataclasses

import torch
from gpu_check_report import blocks, markdown_table, speed_cells
from gpu_check_steps import (
    TOY,
    Ctx,
    Result,
    first_line,
    hugging_face,
    mark_batch_dynamic,
    masked_batches,
    measure,
    ours,
    peak_bf16_flops,
    progress,
    recipe,
    sdpa_in_step,
)


def _bert_base_config(smoke: bool):
    import transformers

    shape = dict(vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256) if smoke \
        else dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    return transformers.BertConfig(**shape, max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


SAME_MATH, HF, CRAMMED = "ours as original BERT", "transformers BertForMaskedLM (sdpa)", "ours crammed-bert"


def compare_section(ctx: Ctx) -> Result:
    from composer_bert.models.hf_bert import model_config_from_hf

    device, bf16 = ctx.device, ctx.bf16
    cfg = recipe("crammed-bert")
    crammed_cfg = dataclasses.replace(cfg.model, **TOY) if ctx.smoke else cfg.model
    hf_cfg = _bert_base_config(ctx.smoke)
    microbatch = ctx.microbatch or (4 if ctx.smoke else 256)
    seq, compile_on = 128, not ctx.smoke
    torch.backends.cuda.matmul.allow_tf32 = True
    builders = {  # crammed first: the speed section left its graphs in the compile cache
        CRAMMED: lambda: ours(CRAMMED, crammed_cfg, cfg.optimizer, device, compile_on),
        SAME_MATH: lambda: ours(SAME_MATH, model_config_from_hf(hf_cfg), cfg.optimizer, device, compile_on),
        HF: lambda: hugging_face(HF, hf_cfg, cfg.optimizer, device, compile_on),
    }
    batches = masked_batches(4, microbatch, seq, min(hf_cfg.vocab_size, crammed_cfg.vocab_size), 0.15, device, seed=7)
    mark_batch_dynamic(batches)
    peak = peak_bf16_flops(device)
    warmup, steps, rounds = (1, 1, 1) if ctx.smoke else (3, 5, 3)
    trainees, results, failed, backends = {}, {}, {}, {}
    shape = f"{hf_cfg.num_hidden_layers}×{hf_cfg.hidden_size}, FFN {hf_cfg.intermediate_size}, vocab {hf_cfg.vocab_size}"
    mode = "bf16 autocast + torch.compile" if bf16 else "fp32 eager"

    def report() -> list[str]:
        rows = []
        for name in (SAME_MATH, HF, CRAMMED):
            if name in results:
                r = results[name]
                rows.append([name, f"{trainees[name].params / 1e6:.1f}M", *speed_cells(r), f"{r.first_step_s:.1f}",
                             backends.get(name, "")])
            elif name in failed:
                rows.append([name, f"FAILED: {failed[name]}"])
        bullets = []
        if SAME_MATH in results and HF in results:
            bullets.append(f"- same math (ours as original BERT / transformers BERT; the same function, so implementation "
                           f"alone): **{results[SAME_MATH].tokens_per_s / results[HF].tokens_per_s:.2f}×** tokens/s")
        if CRAMMED in results and HF in results:
            bullets.append(f"- architecture (ours crammed-bert / transformers BERT; also reflects Cramming's changes: sparse "
                           f"prediction, no head transform, no biases, pre-norm GEGLU, {crammed_cfg.num_layers} layers): "
                           f"**{results[CRAMMED].tokens_per_s / results[HF].tokens_per_s:.2f}×** tokens/s")
        return blocks(
            f"Same step for all three ({mode}, AdamW and clip of crammed-bert.yaml), microbatch {microbatch} × seq {seq}, "
            f"the same batches (15% masked), dropout 0; {rounds} interleaved round(s) of {steps} step(s). Original-BERT "
            f"shape: {shape}.",
            markdown_table(["model", "params", "tokens/s", "MFU", "step ms", "first step s", "SDPA"], rows),
            bullets,
            "MFU counts each model's own FLOPs (transformers BERT: those of ours as original BERT, the same math). SDPA: "
            "the attention backend the profiler saw in one training step.",
        )

    for name, build in builders.items():
        progress(f"compare: compiling and warming up {name}" if compile_on else f"compare: {name}")
        try:
            torch.manual_seed(0)
            trainees[name] = build()
            results[name] = measure(trainees[name], batches, warmup, steps, device, bf16, peak)
        except Exception as err:  # one model failing still leaves the others' numbers
            failed[name] = first_line(err)
            trainees.pop(name, None)
        ctx.checkpoint(report())
    for round_ in range(1, rounds):  # interleaved rounds: the same machine state for all
        progress(f"compare: timing round {round_ + 1}/{rounds}")
        for name, trainee in trainees.items():
            again, mine = measure(trainee, batches, 0, steps, device, bf16, peak), results[name]
            mine.step_s = (mine.step_s * round_ + again.step_s) / (round_ + 1)
            mine.tokens_per_s = microbatch * seq / mine.step_s
            mine.mfu = mine.flops_per_step / mine.step_s / peak if peak else None
        ctx.checkpoint(report())
    for name, trainee in trainees.items():  # after the timing: which attention kernels each one ran
        try:
            backends[name] = sdpa_in_step(trainee, batches[0], device, bf16)[0]
        except Exception as err:
            backends[name] = f"profiler failed: {first_line(err)}"
    if not results:
        raise RuntimeError("no model ran: " + "; ".join(f"{name}: {error}" for name, error in failed.items()))
    ratios = {key: results[a].tokens_per_s / results[HF].tokens_per_s
              for key, a in (("same_math", SAME_MATH), ("architecture", CRAMMED)) if a in results and HF in results}
    return {"markdown": report(), "data": ratios}
