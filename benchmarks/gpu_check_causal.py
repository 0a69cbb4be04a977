"""The causal-LM section of `gpu_check.py`: minigpt-100m's model against transformers' LlamaForCausalLM of the same
config (`composer_bert.hf.llama.llama_config`: the same function, so implementation alone), then gpt2-124m's model
alone at nanoGPT's shape (seq 1024).

Every model goes through the step of gpu_check_steps.py (bf16 autocast, the model's forward under torch.compile,
AdamW and clip of its recipe) at one microbatch (static shapes: one compile per model, three in all). The Llama
pair runs first, so a section cut at its budget still has the ratio; gpt2-124m runs only when the time left
covers another compile.
"""

from __future__ import annotations

import dataclasses
import gc

import torch
from gpu_check_report import blocks, fmt_gib, markdown_table, speed_cells
from gpu_check_steps import (
    TOY,
    Ctx,
    Result,
    Throughput,
    Trainee,
    causal_batches,
    first_line,
    measure,
    ours,
    peak_bf16_flops,
    progress,
    recipe,
    sdpa_in_step,
)

MINI, LLAMA, GPT2 = "ours minigpt-100m", "transformers LlamaForCausalLM (sdpa)", "ours gpt2-124m"
GPT2_VOCAB = 50257  # the recipe takes it from the shards' manifest; GPT-2's tokenizer (padded to 50304 inside)
MICROBATCH = {MINI: 64, LLAMA: 64, GPT2: 32}  # 32k tokens a step each on a GPU
SMOKE_SEQ = {MINI: 64, LLAMA: 64, GPT2: 128}  # --cpu-smoke: TOY shapes, microbatch 2


def _model_configs(smoke: bool):
    """(minigpt-100m's recipe, its model config, gpt2-124m's recipe, its model config); TOY shapes for the smoke run."""
    mini, gpt2 = recipe("minigpt-100m"), recipe("gpt2-124m", f"model.vocab_size={GPT2_VOCAB}")
    if not smoke:
        return mini, mini.model, gpt2, gpt2.model
    toy = lambda cfg, seq: dataclasses.replace(cfg.model, **TOY, max_position_embeddings=seq)  # noqa: E731
    return mini, toy(mini, SMOKE_SEQ[MINI]), gpt2, toy(gpt2, SMOKE_SEQ[GPT2])


def hf_llama(model_cfg, optimizer_cfg, device: torch.device, compile: bool) -> Trainee:
    """`transformers.LlamaForCausalLM` of `llama_config(model_cfg)` with SDPA attention, FLOPs counted as for ours.

    Its forward takes the labels (it shifts them itself, the same targets as our loader's) and computes the loss
    inside, as a Trainer of transformers models runs it; no KV cache (training).
    """
    import transformers

    from composer_bert.hf.llama import is_llama, llama_config
    from composer_bert.models.flops import causal_flops_per_batch
    from composer_bert.optim.optimizer import build_optimizer

    if not is_llama(model_cfg):
        raise RuntimeError("minigpt-100m.yaml no longer has Llama's switches (hf/llama.py LLAMA_SWITCHES): not the same math")
    config = llama_config(model_cfg, eos_token_id=None)
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config).to(device)
    if compile:
        model.forward = torch.compile(model.forward)
    optimizer = build_optimizer(optimizer_cfg, model)

    def loss_of(batch: dict) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], labels=batch["input_ids"], use_cache=False).loss

    return Trainee(LLAMA, model, loss_of, optimizer, lambda b: causal_flops_per_batch(model_cfg, b), optimizer_cfg.grad_clip_norm)


def _allocated_gib(device: torch.device) -> float:
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def causal_section(ctx: Ctx) -> Result:
    from composer_bert.models.composer_model import ComposerCausalLM

    device, bf16, compile_on = ctx.device, ctx.bf16, not ctx.smoke
    mini, mini_cfg, gpt2, gpt2_cfg = _model_configs(ctx.smoke)
    torch.backends.cuda.matmul.allow_tf32 = True  # as Composer's GPU device sets it
    peak = peak_bf16_flops(device)
    warmup, steps, rounds = (1, 1, 2) if ctx.smoke else (3, 10, 2)
    configs = {MINI: mini_cfg, LLAMA: mini_cfg, GPT2: gpt2_cfg}
    builders = {
        MINI: lambda: ours(MINI, None, mini.optimizer, device, compile_on, module=ComposerCausalLM(mini_cfg)),
        LLAMA: lambda: hf_llama(mini_cfg, mini.optimizer, device, compile_on),
        GPT2: lambda: ours(GPT2, None, gpt2.optimizer, device, compile_on, module=ComposerCausalLM(gpt2_cfg)),
    }
    microbatch = {name: 2 for name in MICROBATCH} if ctx.smoke else MICROBATCH
    trainees: dict[str, Trainee] = {}
    batches: dict[str, list] = {}
    params: dict[str, float] = {}
    results: dict[str, Throughput] = {}
    own_memory: dict[str, float | None] = {}
    backends: dict[str, str] = {}
    kernels: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    mode = ("bf16 autocast + torch.compile of each model's forward (the transformers model's holds its loss, ours "
            "computes it after, as each one's trainer does)") if bf16 else "fp32 eager"

    def shape(cfg) -> str:
        positions = {"rotary": "rotary", "learned": "learned positions"}.get(cfg.position_embedding, cfg.position_embedding)
        return (f"{cfg.num_layers}×{cfg.hidden_size}, {cfg.ffn_type} {cfg.intermediate_size}, {positions}, "
                f"{cfg.norm_type}, vocab {cfg.vocab_size}")

    def report() -> list[str]:
        rows = []
        for name in (MINI, LLAMA, GPT2):
            if name in results:
                r, seq = results[name], configs[name].max_position_embeddings
                rows.append([name, f"{params[name] / 1e6:.1f}M", f"{r.microbatch} × {seq}", *speed_cells(r),
                             f"{r.first_step_s:.1f}", fmt_gib(own_memory.get(name)), backends.get(name, "")])
            elif name in notes:
                rows.append([name, notes[name]])
        bullets = []
        if MINI in results and LLAMA in results:
            bullets.append(f"- same math (ours minigpt-100m / transformers LlamaForCausalLM of the same config; the same "
                           f"function, so implementation alone): **{results[MINI].tokens_per_s / results[LLAMA].tokens_per_s:.2f}×** "
                           f"tokens/s")
        bullets += [f"- attention kernels of {name}: {', '.join(f'`{k}`' for k in found[:2])}"
                    for name, found in kernels.items() if found]
        header = ["model", "params", "microbatch × seq", "tokens/s", "MFU", "step ms", "first step s", "peak mem GiB", "SDPA"]
        return blocks(
            f"One step for all ({mode}; AdamW and clip of each model's recipe), random tokens with next-token labels, "
            f"dropout 0; {warmup} warm-up step(s){' (the first compiles)' if compile_on else ''}, then {rounds} interleaved round(s) of {steps} "
            f"timed step(s) for the Llama pair, one for gpt2-124m. minigpt-100m: {shape(mini_cfg)}; the transformers "
            f"model is `LlamaForCausalLM(llama_config(cfg))` of that config (same math). gpt2-124m: {shape(gpt2_cfg)}.",
            markdown_table(header, rows),
            bullets,
            "MFU: `ComposerCausalLM.flops_per_batch` (the same FLOPs for both of the pair; full L×L score matrices, as "
            "nanoGPT counts) / step time / bf16 dense peak"
            + (f" {peak / 1e12:.1f} TFLOP/s." if peak else " (none on this device).")
            + " Peak memory: each model's own (the most allocated during its steps, less what was allocated before it "
            "was built). SDPA: the attention backend the profiler saw in one training step.",
        )

    def time_for(name: str) -> bool:
        """Whether the time left covers one more model (its compile about as long as the slowest before it)."""
        compile_s = max((r.first_step_s for r in results.values()), default=0.0)
        if ctx.time_left() >= 1.5 * compile_s + 15:
            return True
        notes[name] = f"not run (time budget: {ctx.time_left():.0f} s left, a first step took {compile_s:.0f} s)"
        return False

    def run(name: str) -> None:
        """Build, warm up and time `name`; a failure is its row's note."""
        progress(f"causal: compiling and warming up {name}" if compile_on else f"causal: {name}")
        baseline = _allocated_gib(device)
        try:
            torch.manual_seed(0)
            trainees[name] = builders[name]()
            params[name] = trainees[name].params
            cfg = configs[name]
            batches[name] = causal_batches(3, microbatch[name], cfg.max_position_embeddings, cfg.vocab_size, device, seed=11)
            results[name] = measure(trainees[name], batches[name], warmup, steps, device, bf16, peak)
            peak_gib = results[name].peak_memory_gib
            own_memory[name] = None if peak_gib is None else peak_gib - baseline
        except Exception as err:  # one model failing (out of memory, a compile error) still leaves the others
            notes[name] = "out of memory" if isinstance(err, torch.cuda.OutOfMemoryError) else f"FAILED: {first_line(err)}"
            trainees.pop(name, None)
            batches.pop(name, None)
            _free(device)
        ctx.checkpoint(report())

    def profile(name: str) -> None:
        try:
            backends[name], _, kernels[name] = sdpa_in_step(trainees[name], batches[name][0], device, bf16)
        except Exception as err:
            backends[name] = f"profiler failed: {first_line(err)}"

    run(MINI)
    if time_for(LLAMA):
        run(LLAMA)
    pair = [name for name in (MINI, LLAMA) if name in results]
    for round_ in range(1, rounds):  # interleaved: the same machine state for both
        if ctx.time_left() < 15 + 2 * steps * sum(results[n].step_s for n in pair):
            break
        progress(f"causal: timing round {round_ + 1}/{rounds}")
        for name in pair:
            again, mine = measure(trainees[name], batches[name], 0, steps, device, bf16, peak), results[name]
            mine.step_s = (mine.step_s * round_ + again.step_s) / (round_ + 1)
            mine.tokens_per_s = mine.microbatch * configs[name].max_position_embeddings / mine.step_s
            mine.mfu = mine.flops_per_step / mine.step_s / peak if peak else None
        ctx.checkpoint(report())
    for name in pair:
        profile(name)
    ctx.checkpoint(report())
    trainees.clear()  # gpt2-124m gets the device to itself
    batches.clear()
    if compile_on:
        torch._dynamo.reset()  # the pair's compiled graphs and their references go too
    _free(device)
    if time_for(GPT2):
        run(GPT2)
        if GPT2 in results:
            profile(GPT2)
    if not results:
        raise RuntimeError("no model ran: " + "; ".join(f"{name}: {note}" for name, note in notes.items()))
    data = {"causal_tokens_per_s": {name: r.tokens_per_s for name, r in results.items()}}
    if MINI in results and LLAMA in results:
        data["causal_same_math"] = results[MINI].tokens_per_s / results[LLAMA].tokens_per_s
    return {"markdown": report(), "data": data}
