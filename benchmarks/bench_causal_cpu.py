"""CPU throughput of our causal LM: training steps vs transformers' Llama and GPT-2, and generation with the KV cache.

gpt-tiny shape: 4 layers x 256 hidden, 4 heads, seq 256, batch 8, vocabulary 8192, fp32, AdamW. Steps of the
models are interleaved (`bench_model_cpu.time_training_steps`) so machine load hits all alike. Rows:

- same math, Llama: ours with Llama's switches (pre-norm RMSNorm, rotary, SwiGLU 256 -> 2x688 -> 256, no biases,
  tied) vs `transformers.LlamaForCausalLM` of that shape (SDPA). They compute the same function: the export
  tests prove equal logits.
- same math, GPT-2: ours as GPT-2 (pre-norm LayerNorm with biases, learned positions, GELU 1024, biased
  projections, tied, no embedding norm) vs `GPT2LMHeadModel` with exact GELU (`activation_function="gelu"`; GPT-2's
  default tanh approximation would be a different function) and SDPA attention.
- generation: greedy tokens/s of the Llama-like model from a 16-token prompt for 256 new tokens, our KV cache vs
  recomputing the sequence every token (same model, same tokens), and vs `LlamaForCausalLM.generate` (its
  cache on) on the exported weights (hf/llama.py, the conversion recipes/export_hf.py writes). Batch-1 decoding
  multiplies one row at a time, which a second thread barely speeds up and a loaded machine slows down a lot
  (threads waiting on each other), so generation runs on `--generation-threads` (default 1), training on 2.
- `--compile`: the Llama pair again with each loss function under `torch.compile` (inductor; the warm-up steps
  compile), so the same math in another execution mode.
- matmul ceiling: the best GFLOP/s of one plain fp32 matmul at the step's weight shapes on the same threads, and
  each training row's GFLOP/s (training FLOPs, `models/flops.py`, over its step time) as a share of it: how much
  room a same-math step has left on this machine.

    python benchmarks/bench_causal_cpu.py [--steps 5] [--new-tokens 256] [--generation-threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch
import transformers
from bench_model_cpu import time_training_steps

from composer_bert.generation.sampling import Sampler, generate_tokens
from composer_bert.hf.llama import is_llama, llama_config, state_dict_to_llama
from composer_bert.models.causal import CausalLM
from composer_bert.models.composer_model import ComposerCausalLM
from composer_bert.models.config import ModelConfig
from composer_bert.models.flops import causal_flops_per_batch

VOCAB, HIDDEN, LAYERS, HEADS, SEQ, BATCH = 8192, 256, 4, 4, 256, 8
SWIGLU, GELU = 688, 1024  # SwiGLU width ~ 8/3 x hidden (Llama's rule, same parameters as a 1024 GELU MLP)
LLAMA_LIKE = ModelConfig(
    objective="causal", vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS,
    intermediate_size=SWIGLU, max_position_embeddings=512, type_vocab_size=0, norm_type="rmsnorm", norm_eps=1e-6,
    embedding_norm=False, ffn_type="swiglu", position_embedding="rotary", decoder_bias=False, head_transform=False,
)  # fmt: skip
GPT2_LIKE = dataclasses.replace(
    LLAMA_LIKE, norm_type="layernorm", norm_eps=1e-5, ffn_type="gelu", intermediate_size=GELU,
    position_embedding="learned", qkv_bias=True, linear_bias=True,
)  # fmt: skip
Run = tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]
COMPILED_OURS, COMPILED_HF = "ours (Llama), torch.compile", "LlamaForCausalLM, torch.compile"
ROW_SHAPES = {  # each training row's function (both rows of a pair compute the same one)
    "ours (Llama switches)": LLAMA_LIKE, "transformers LlamaForCausalLM": LLAMA_LIKE,
    "ours (GPT-2 switches)": GPT2_LIKE, "transformers GPT2LMHeadModel": GPT2_LIKE,
    COMPILED_OURS: LLAMA_LIKE, COMPILED_HF: LLAMA_LIKE,
}


def ours(cfg: ModelConfig) -> Run:
    model = ComposerCausalLM(cfg)
    return model, lambda batch: model.loss(model(batch), batch)


def hf_llama() -> Run:
    config = llama_config(LLAMA_LIKE, eos_token_id=None)
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config)
    return model, lambda batch: model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss


def hf_gpt2() -> Run:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=512, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=GELU,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    model = transformers.GPT2LMHeadModel(config)
    return model, lambda batch: model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss


def matmul_ceiling(repeats: int = 20) -> float:
    """GFLOP/s of one fp32 matmul at each of the step's weight shapes (tokens x hidden times hidden x out), best
    of them: what this machine's matmul kernel gives on these threads, so the most a step of the same math nears."""
    best = 0.0
    for out in (3 * HIDDEN, 2 * SWIGLU, GELU, VOCAB):  # fused QKV, SwiGLU's up+gate, GELU's up, the LM head
        a, b = torch.randn(BATCH * SEQ, HIDDEN), torch.randn(HIDDEN, out)
        for _ in range(3):
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * BATCH * SEQ * HIDDEN * out * repeats / (time.perf_counter() - start) / 1e9)
    return best


def train_rows(runs: dict[str, Run], steps: int, warmup: int) -> list[str]:
    batch = {"input_ids": torch.randint(5, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))}
    ceiling = matmul_ceiling()
    seconds = time_training_steps(runs, batch, steps, warmup)
    ceiling = max(ceiling, matmul_ceiling())  # before and after: the less loaded of the two
    tokens = BATCH * SEQ * steps
    rows = [f"{'train step':<34} {'params':>12} {'tokens/s':>10} {'s/step':>8} {'GFLOP/s':>8} {'of matmul':>9}"]
    for name, (model, _) in runs.items():
        params = sum(p.numel() for p in model.parameters())
        # both models of a pair compute the same function, so the same FLOPs (ours counted, models/flops.py)
        flops = causal_flops_per_batch(ROW_SHAPES[name], batch) * steps / seconds[name] / 1e9
        rows.append(
            f"{name:<34} {params:>12,} {tokens / seconds[name]:>10,.0f} {seconds[name] / steps:>8.2f} "
            f"{flops:>8.1f} {flops / ceiling:>9.0%}"
        )
    rows.append(f"matmul ceiling (best fp32 matmul of the step's weight shapes, same threads): {ceiling:.1f} GFLOP/s")
    llama = seconds["transformers LlamaForCausalLM"] / seconds["ours (Llama switches)"]
    gpt2 = seconds["transformers GPT2LMHeadModel"] / seconds["ours (GPT-2 switches)"]
    rows.append(f"same math, Llama  (ours / LlamaForCausalLM): {llama:.2f}x tokens/s (target 1.3x)")
    rows.append(f"same math, GPT-2  (ours / GPT2LMHeadModel):  {gpt2:.2f}x tokens/s (target 1.3x)")
    if COMPILED_OURS in seconds:
        both = seconds[COMPILED_HF] / seconds[COMPILED_OURS]
        eager_hf = seconds["transformers LlamaForCausalLM"] / seconds[COMPILED_OURS]
        rows.append(f"Llama, both compiled (ours / LlamaForCausalLM): {both:.2f}x tokens/s")
        rows.append(f"Llama, ours compiled / LlamaForCausalLM eager: {eager_hf:.2f}x tokens/s")
    return rows


@torch.inference_mode()
def generation_rows(new_tokens: int) -> list[str]:
    torch.manual_seed(1)
    model = CausalLM(LLAMA_LIKE).eval()
    assert is_llama(LLAMA_LIKE)
    hf = transformers.LlamaForCausalLM(llama_config(LLAMA_LIKE, eos_token_id=None)).eval()
    hf.load_state_dict(state_dict_to_llama(model.state_dict(), LLAMA_LIKE))
    prompt = torch.randint(5, VOCAB, (16,), generator=torch.Generator().manual_seed(2)).tolist()
    greedy, timings, tokens = Sampler(0.0), {}, {}
    for name, cache in (("ours, KV cache", True), ("ours, no cache", False)):
        start = time.perf_counter()
        tokens[name] = list(generate_tokens(model, prompt, new_tokens, greedy, kv_cache=cache))
        timings[name] = time.perf_counter() - start
    ids = torch.tensor([prompt])
    start = time.perf_counter()
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                      do_sample=False, use_cache=True, pad_token_id=0)  # fmt: skip
    timings["LlamaForCausalLM.generate"] = time.perf_counter() - start
    tokens["LlamaForCausalLM.generate"] = out[0, len(prompt) :].tolist()
    rows = [f"{'generation (greedy, batch 1)':<34} {'tokens/s':>10}  same tokens as ours with cache"]
    for name, seconds in timings.items():
        same = tokens[name] == tokens["ours, KV cache"]
        rows.append(f"{name:<34} {new_tokens / seconds:>10,.0f}  {same}")
    cache_ratio = timings["ours, no cache"] / timings["ours, KV cache"]
    hf_ratio = timings["LlamaForCausalLM.generate"] / timings["ours, KV cache"]
    rows.append(f"KV cache / no cache (same model): {cache_ratio:.2f}x tokens/s")
    rows.append(f"ours with cache / LlamaForCausalLM.generate (exported weights): {hf_ratio:.2f}x tokens/s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens each generation run produces")
    parser.add_argument("--generation-threads", type=int, default=1, help="torch threads while generating")
    parser.add_argument(
        "--compile", action="store_true", help="also time both Llama-shaped models under torch.compile (minutes)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    runs = {
        "ours (Llama switches)": ours(LLAMA_LIKE),
        "transformers LlamaForCausalLM": hf_llama(),
        "ours (GPT-2 switches)": ours(GPT2_LIKE),
        "transformers GPT2LMHeadModel": hf_gpt2(),
    }
    if args.compile:  # the loss function compiled (forward + loss; backward through the compiled graph)
        for name, (model, loss_of) in ((COMPILED_OURS, ours(LLAMA_LIKE)), (COMPILED_HF, hf_llama())):
            runs[name] = (model, torch.compile(loss_of))
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"training on {torch.get_num_threads()} threads")
    print("\n".join(train_rows(runs, args.steps, args.warmup)))
    torch.set_num_threads(args.generation_threads)
    print(f"generation on {torch.get_num_threads()} thread(s)")
    print("\n".join(generation_rows(args.new_tokens)))


if __name__ == "__main__":
    main()
