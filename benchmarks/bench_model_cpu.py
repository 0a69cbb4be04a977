"""CPU training throughput of our BERT vs transformers' BertForMaskedLM of the same size, two ways.

Same shape (4 layers x 256 hidden, 4 heads, seq 128, batch 32, fp32, vocab 32768), same AdamW, same
15%-masked batch; steps of the three models interleaved so machine load hits all alike. Two ratios:

- same math: ours configured as original BERT (post-norm, learned positions, GELU, biases, dense MLM
  head with its transform: `hf_bert.model_config_from_hf` of the HF config) vs `BertForMaskedLM`. The
  two compute the same function (the equivalence tests prove equal logits); the ratio is implementation.
- architecture: our crammed recipe vs the same `BertForMaskedLM`. This ratio also reflects Cramming's
  changes (sparse prediction: the head runs on the 15% masked positions only; no head transform; no
  biases; pre-norm GEGLU), not implementation alone. "FFN 1024" is the up-projection width for both:
  GELU 256 -> 1024 -> 256 for HF; GEGLU 256 -> 2x512 -> 512 -> 256 for ours, which is how Cramming's
  crammed BERT relates to BERT-base (intermed_size 3072 in both).

    python benchmarks/bench_model_cpu.py [--steps 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import transformers

from composer_bert.models.bert import masked_positions
from composer_bert.models.composer_model import ComposerMLM
from composer_bert.models.config import ModelConfig
from composer_bert.models.hf_bert import model_config_from_hf

VOCAB, HIDDEN, LAYERS, HEADS, FFN, SEQ, BATCH = 32768, 256, 4, 4, 1024, 128, 32
MASK_ID = 4


def masked_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, VOCAB, (BATCH, SEQ), generator=generator)
    masked = torch.rand(BATCH, SEQ, generator=generator) < 0.15
    labels = torch.where(masked, input_ids, -100)
    return dict(
        input_ids=input_ids.masked_fill(masked, MASK_ID), attention_mask=torch.ones_like(input_ids), labels=labels
    )


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
    """The batch as our MLM loader delivers it: full rows without a mask, masked positions in fixed-width slots
    (here as wide as the most masked row: these Bernoulli masks vary more per row than the loader's)."""
    labels = batch["labels"]
    width = int((labels != -100).sum(1).max())
    return dict(input_ids=batch["input_ids"], labels=labels, masked_positions=masked_positions(labels, width))


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
    return model, lambda batch: model(**batch).loss


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
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch = masked_batch()
    runs = {
        "ours (original BERT)": ours_as_original_bert(),
        "ours (crammed)": ours(),
        "transformers BERT": hugging_face(),
    }
    seconds = time_training_steps(runs, batch, args.steps, args.warmup)
    tokens = BATCH * SEQ * args.steps
    print(f"{'model':<22} {'params':>12} {'tokens/s':>10} {'s/step':>8}")
    for name, (model, _) in runs.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<22} {params:>12,} {tokens / seconds[name]:>10,.0f} {seconds[name] / args.steps:>8.2f}")
    hf = seconds["transformers BERT"]
    print(f"same math     (ours as original BERT / transformers BERT): {hf / seconds['ours (original BERT)']:.2f}x tokens/s")
    print(f"architecture  (ours crammed / transformers BERT, includes Cramming's changes): {hf / seconds['ours (crammed)']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
