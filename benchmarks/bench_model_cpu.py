"""CPU training throughput of our BERT vs transformers' BertForMaskedLM of the same size, two ways.

Same shape (4 layers x 256 hidden, 4 heads, seq 128, batch 32, fp32, vocab 32768), same AdamW, same
15%-masked batch (our loader's masker); steps of the three models interleaved so machine load hits all alike. Two ratios:

- same math: ours configured as original BERT (post-norm, learned positions, GELU, biases, dense MLM
  head with its transform: `hf_bert.model_config_from_hf` of the HF config) vs `BertForMaskedLM`. The
  two compute the same function (the equivalence tests prove equal logits); the ratio is implementation.
- architecture: our crammed recipe vs the same `BertForMaskedLM`. This ratio also reflects Cramming's
  changes (sparse prediction: the head runs on the 15% masked positions only; no head transform; no
  biases; pre-norm GEGLU), not implementation alone. "FFN 1024" is the up-projection width for both:
  GELU 256 -> 1024 -> 256 for HF; GEGLU 256 -> 2x512 -> 512 -> 256 for ours, which is how Cramming's
  crammed BERT relates to BERT-base (intermed_size 3072 in both).
- ModernBERT, same math: ours with ModernBERT's switches (hf/modernbert.py: local attention in 3 layers of 4,
  a 64-token band at sequence 128, two rotary bases, GeGLU 256 -> 2x512 -> 256, sparse prediction) vs
  `ModernBertForMaskedLM` of the same config with its own `sparse_prediction`, eager and `torch.compile`d
  (compile time is left out: the warmup steps absorb it). transformers' SDPA path on CPU, as ours.

    python benchmarks/bench_model_cpu.py [--steps 5] [--no-compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers

from composer_bert.data.load.masking import MLMMasker
from composer_bert.hf.modernbert import model_config_from_modernbert
from composer_bert.models.bert import masked_positions
from composer_bert.models.composer_model import ComposerMLM
from composer_bert.models.config import ModelConfig
from composer_bert.models.hf_bert import model_config_from_hf

VOCAB, HIDDEN, LAYERS, HEADS, FFN, SEQ, BATCH = 32768, 256, 4, 4, 1024, 128, 32
CLS_ID, MASK_ID = 2, 4


def masked_batch() -> dict[str, torch.Tensor]:
    """[CLS]-led rows masked by our loader's masker (15%: each row exactly floor(0.15 n + u) positions), so a
    sparse head has the same rows to predict in every model: transformers' sparse prediction gathers exactly the
    masked ones, ours a fixed-width slot per row the masker can fill (`prediction_slots`)."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator)
    rows[:, 0] = CLS_ID
    masker = MLMMasker(vocab_size=VOCAB, special_token_ids=range(5), mask_token_id=MASK_ID, seed=0)
    input_ids, labels = masker(rows.numpy(), np.arange(BATCH), 0)
    input_ids, labels = torch.from_numpy(input_ids).long(), torch.from_numpy(labels).long()
    slots = masker.prediction_slots(SEQ)
    return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels, slots=slots)


def ours() -> tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]:
    cfg = ModelConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        num_heads=HEADS,
        intermediate_size=FFN // 2,
        max_position_embeddings=SEQ,
    )  # crammed defaults otherwise
    model = ComposerMLM(cfg)
    return model, lambda batch: model.loss(model(as_loaded(batch)), as_loaded(batch))


def as_loaded(batch: dict) -> dict:
    """The batch as our MLM loader delivers it: full rows without a mask, masked positions in fixed-width slots."""
    labels = batch["labels"]
    return dict(input_ids=batch["input_ids"], labels=labels, masked_positions=masked_positions(labels, batch["slots"]))


def for_transformers(batch: dict) -> dict:
    return {key: value for key, value in batch.items() if key != "slots"}


def hf_config() -> transformers.BertConfig:
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=SEQ,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config._attn_implementation = "sdpa"
    return config


def ours_as_original_bert() -> tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]:
    model = ComposerMLM(model_config_from_hf(hf_config()))
    return model, lambda batch: model.loss(model(as_loaded(batch)), as_loaded(batch))


def hugging_face() -> tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]:
    model = transformers.BertForMaskedLM(hf_config())
    return model, lambda batch: model(**for_transformers(batch)).loss


def modernbert_config() -> transformers.ModernBertConfig:
    config = transformers.ModernBertConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FFN // 2, max_position_embeddings=SEQ, local_attention=SEQ // 2, global_attn_every_n_layers=3,
        sparse_prediction=True, pad_token_id=0, bos_token_id=None, eos_token_id=None, cls_token_id=None, sep_token_id=None,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    return config


def ours_as_modernbert(compiled: bool) -> tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]:
    """Compiled: the forward and the loss each (transformers' forward computes its loss inside its graph).

    One graph of both trips an inductor assertion on torch 2.7's vectorised CPU codegen (any of our MLM configs;
    tests/pretrain/test_compile.py compiles them whole with scalar codegen); Composer compiles the forward alone.
    """
    model = ComposerMLM(model_config_from_modernbert(modernbert_config()))
    forward, loss = (torch.compile(model), torch.compile(model.loss)) if compiled else (model, model.loss)

    def step_loss(batch: dict) -> torch.Tensor:
        loaded = as_loaded(batch)
        return loss(forward(loaded), loaded)

    return model, step_loss


def hugging_face_modernbert(compiled: bool) -> tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]:
    model = transformers.ModernBertForMaskedLM(modernbert_config())
    forward = torch.compile(model) if compiled else model
    return model, lambda batch: forward(**for_transformers(batch)).loss


def time_training_steps(
    runs: dict[str, tuple[torch.nn.Module, Callable[[dict], torch.Tensor]]], batch: dict, steps: int, warmup: int
) -> dict[str, float]:
    """Seconds each run spent in `steps` AdamW training steps on `batch`, after `warmup` untimed ones.

    The runs' steps are interleaved (one step of each in turn), so machine load hits all of them alike.
    """
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, (model, _) in runs.items()}
    seconds = dict.fromkeys(runs, 0.0)
    for step in range(warmup + steps):
        for name, (_, loss_of) in runs.items():
            start = time.perf_counter()
            loss = loss_of(batch)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            if step >= warmup:
                seconds[name] += time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled ModernBERT rows")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch = masked_batch()
    runs = {
        "ours (original BERT)": ours_as_original_bert(),
        "ours (crammed)": ours(),
        "transformers BERT": hugging_face(),
        "ours (ModernBERT)": ours_as_modernbert(compiled=False),
        "transformers ModernBERT": hugging_face_modernbert(compiled=False),
    }
    if not args.no_compile:
        runs["ours (ModernBERT) compiled"] = ours_as_modernbert(compiled=True)
        runs["transformers ModernBERT compiled"] = hugging_face_modernbert(compiled=True)
    seconds = time_training_steps(runs, batch, args.steps, args.warmup)
    tokens = BATCH * SEQ * args.steps
    print(f"{'model':<34} {'params':>12} {'tokens/s':>10} {'s/step':>8}")
    for name, (model, _) in runs.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<34} {params:>12,} {tokens / seconds[name]:>10,.0f} {seconds[name] / args.steps:>8.2f}")
    hf = seconds["transformers BERT"]
    print(f"same math     (ours as original BERT / transformers BERT): {hf / seconds['ours (original BERT)']:.2f}x tokens/s")
    print(f"architecture  (ours crammed / transformers BERT, includes Cramming's changes): {hf / seconds['ours (crammed)']:.2f}x tokens/s")
    for suffix in ("", " compiled"):
        if f"ours (ModernBERT){suffix}" in seconds:
            ratio = seconds[f"transformers ModernBERT{suffix}"] / seconds[f"ours (ModernBERT){suffix}"]
            print(f"same math     (ours as ModernBERT / transformers ModernBERT{suffix}): {ratio:.2f}x tokens/s")


if __name__ == "__main__":
    main()
