"""Quality per step of Muon (with AdamW on the rest, `optimizer.name: muon`) against AdamW alone, on real English.

The same causal model (Llama's switches, 4 layers x 256, SwiGLU, rotary, untied head), the same initial
weights, the same batches in the same order and the same schedule (5% warm-up, then linear decay to 0) for
every run; only the optimizer and its learning rate differ, each swept over three values, so each optimizer is
compared at its best of the sweep, not at one guess. Data: WikiText-2 (`../shared/data/wikitext-2`), `valid.txt`
to train on and `test.txt` to evaluate, with a 4k byte-level BPE tokenizer trained by `data_prep/` on the
training text. Prints a table of held-out loss at each quarter of the steps and the step time (Muon's
Newton-Schulz iterations cost time on top of the same forward/backward), and writes the curves as a PNG.

    python benchmarks/bench_optimizers_cpu.py [--steps 400] [--out bench_out/optimizers]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from composer_bert.batch import next_token_labels
from composer_bert.models.composer_model import ComposerCausalLM
from composer_bert.models.config import ModelConfig
from composer_bert.optim.config import OptimizerConfig
from composer_bert.optim.optimizer import build_optimizer

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2"
VOCAB, SEQ, BATCH, EVAL_ROWS = 4096, 128, 16, 256
MODEL = ModelConfig(
    objective="causal", vocab_size=VOCAB, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688,
    max_position_embeddings=SEQ, type_vocab_size=0, norm_type="rmsnorm", norm_eps=1e-6, embedding_norm=False,
    ffn_type="swiglu", position_embedding="rotary", decoder_bias=False, head_transform=False, tie_embeddings=False,
)  # fmt: skip
SWEEP = {  # optimizer -> (learning rates of its sweep); muon's are muon_lr, its AdamW part keeps lr 3e-3
    "adamw": (1e-3, 3e-3, 1e-2),
    "muon": (0.01, 0.02, 0.05),
}
ADAMW_LR_WITH_MUON = 3e-3


@dataclass
class Curve:
    name: str
    lr: float
    steps: list[int]
    losses: list[float]
    seconds_per_step: float


def token_rows(tokenizer_dir: Path, text: Path) -> torch.Tensor:
    """The text's token ids cut into SEQ-token rows (a causal LM's rows: one stream, no padding)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.model_max_length = 1 << 30  # one long stream, cut into rows below: no "longer than" warning
    ids = tokenizer(text.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    usable = len(ids) // SEQ * SEQ
    return torch.tensor(ids[:usable]).view(-1, SEQ)


def batch_of(rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """A causal batch as the collator makes it: labels are the next tokens (`batch.next_token_labels`)."""
    return {"input_ids": rows, "attention_mask": torch.ones_like(rows), "labels": next_token_labels(rows)}


@torch.no_grad()
def held_out_loss(model: ComposerCausalLM, rows: torch.Tensor) -> float:
    model.eval()
    losses = [model.loss(model(batch_of(chunk)), batch_of(chunk)).item() for chunk in rows.split(64)]
    model.train()
    return sum(losses) / len(losses)


def train(name: str, lr: float, initial: dict, train_rows: torch.Tensor, eval_rows: torch.Tensor, steps: int) -> Curve:
    model = ComposerCausalLM(MODEL)
    model.load_state_dict(initial)
    if name == "muon":
        cfg = OptimizerConfig(name="muon", lr=ADAMW_LR_WITH_MUON, muon_lr=lr, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.0)
    else:
        cfg = OptimizerConfig(name="adamw", lr=lr, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.0)
    optimizer = build_optimizer(cfg, model)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, (steps - s) / (steps - warmup)))
    order = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(0))
    marks = {steps * q // 4 for q in (1, 2, 3, 4)}
    curve = Curve(name, lr, [], [], 0.0)
    busy = 0.0
    for step in range(1, steps + 1):
        picks = order[(step - 1) * BATCH % len(order):][:BATCH]
        if len(picks) < BATCH:
            picks = order[:BATCH]
        batch = batch_of(train_rows[picks])
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.loss(model(batch), batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        busy += time.perf_counter() - started
        if step in marks:
            curve.steps.append(step)
            curve.losses.append(held_out_loss(model, eval_rows))
    curve.seconds_per_step = busy / steps
    return curve


def prepare_tokenizer(out: Path) -> Path:
    tokenizer = out / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        command = [sys.executable, str(REPO / "data_prep/train_tokenizer.py"), "--source", f"text:{WIKITEXT / 'valid.txt'}",
                   "--model", "bytelevel", "--vocab-size", str(VOCAB), "--out", str(tokenizer), "--no-progress", "--overwrite"]  # fmt: skip
        subprocess.run(command, check=True)
    return tokenizer


def report(curves: list[Curve]) -> str:
    best = {name: min((c for c in curves if c.name == name), key=lambda c: c.losses[-1]) for name in SWEEP}
    head = "| optimizer | lr | " + " | ".join(f"loss @ {s}" for s in curves[0].steps) + " | s/step |"
    lines = [head, "|" + "---|" * (3 + len(curves[0].steps))]
    for c in curves:
        mark = " (best)" if best[c.name] is c else ""
        lines.append(f"| {c.name}{mark} | {c.lr:g} | " + " | ".join(f"{x:.3f}" for x in c.losses) + f" | {c.seconds_per_step:.3f} |")
    adamw, muon = best["adamw"], best["muon"]
    lines.append("")
    lines.append(f"best muon vs best adamw: held-out loss {muon.losses[-1]:.3f} vs {adamw.losses[-1]:.3f} "
                 f"(difference {muon.losses[-1] - adamw.losses[-1]:+.3f}); step time ratio muon/adamw "
                 f"{muon.seconds_per_step / adamw.seconds_per_step:.2f}")  # fmt: skip
    reached = next((s for s, x in zip(muon.steps, muon.losses, strict=True) if x <= adamw.losses[-1]), None)
    if reached is not None:
        lines.append(f"muon reached adamw's final loss by step {reached} of {muon.steps[-1]}")
    return "\n".join(lines)


def plot(curves: list[Curve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for c in curves:
        axes.plot(c.steps, c.losses, marker="o", linestyle="-" if c.name == "muon" else "--", label=f"{c.name} lr {c.lr:g}")
    axes.set_xlabel("step")
    axes.set_ylabel("held-out loss (WikiText-2 test)")
    axes.set_title("Muon vs AdamW, same model, data and schedule")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "optimizers")
    args = parser.parse_args()
    if not WIKITEXT.is_dir():
        sys.exit(f"error: no WikiText-2 at {WIKITEXT} (see ../shared/data/README.md); this benchmark needs real text")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    tokenizer = prepare_tokenizer(args.out)
    train_rows, eval_rows = token_rows(tokenizer, WIKITEXT / "valid.txt"), token_rows(tokenizer, WIKITEXT / "test.txt")[:EVAL_ROWS]
    print(f"{len(train_rows)} training rows, {len(eval_rows)} held-out rows of {SEQ} tokens; {args.steps} steps of {BATCH} rows", flush=True)
    torch.manual_seed(0)
    initial = ComposerCausalLM(MODEL).state_dict()
    curves = []
    for name, lrs in SWEEP.items():
        for lr in lrs:
            curves.append(train(name, lr, initial, train_rows, eval_rows, args.steps))
            print(f"{name} lr {lr:g}: " + ", ".join(f"{x:.3f}" for x in curves[-1].losses), flush=True)
    print(report(curves))
    plot(curves, args.out / "optimizers.png")
    print(f"curves: {args.out / 'optimizers.png'}")


if __name__ == "__main__":
    main()
