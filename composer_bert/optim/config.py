"""The `optimizer:` and `scheduler:` sections, shared by pretraining and GLUE finetuning.

Scheduler fractions refer to the run's budget: wall clock when `budget` is set, else `max_duration`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from composer_bert.schema import bounded, choice, fraction, key_error, positive, probability

SCHEDULES = ["triangle", "one_cycle", "linear", "cosine", "wsd", "constant"]


@dataclass
class OptimizerConfig:
    """AdamW as Cramming and MosaicBERT use it; weight decay skips norms and biases unless `decay_norm_and_bias`.
    `muon`: Muon on the blocks' weight matrices at `muon_lr` with `muon_momentum`, AdamW at `lr` on the rest
    (`optim/muon.py`), as modded-nanogpt trains GPT-2.

    Defaults are pretraining's; GLUE's recipe sets its own (see `glue/config.py`).
    """

    name: str = choice("decoupled_adamw", ["adamw", "decoupled_adamw", "muon"])
    lr: float = positive(1e-3, "a positive learning rate such as 1e-3")  # muon: of the embeddings, head and norms
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = positive(1e-12, "a small positive epsilon such as 1e-12")
    weight_decay: float = bounded(0.01, "a weight decay >= 0", ge=0)
    decay_norm_and_bias: bool = False
    grad_clip_norm: float | None = positive(0.5, "a positive norm such as 0.5, or null for no clipping")
    muon_lr: float = positive(0.02, "a positive learning rate such as 0.02")  # muon: of the blocks' matrices
    muon_momentum: float = probability(0.95, "a momentum in [0, 1) such as 0.95")  # muon: Nesterov momentum

    def check(self) -> None:
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise key_error("optimizer.betas", self.betas, "two numbers in [0, 1), e.g. [0.9, 0.98]")


@dataclass
class SchedulerConfig:
    """Learning-rate multiplier as a function of the elapsed fraction of the budget (see `optim/schedulers.py`)."""

    name: str = choice("triangle", SCHEDULES)
    warmup_fraction: float = fraction(0.06, "a fraction of the budget between 0 and 1")  # all but triangle, one_cycle
    peak_fraction: float = fraction(0.75, "a fraction of the budget between 0 and 1")  # triangle: multiplier reaches 1
    start_factor: float = bounded(0.25, "a learning-rate multiplier >= 0", ge=0)  # triangle: multiplier at the start
    decay_fraction: float = fraction(0.2, "a fraction of the budget between 0 and 1")  # wsd: decay over this last part
    final_factor: float = bounded(0.0, "a learning-rate multiplier >= 0", ge=0)  # all but constant: at the end

    def check(self) -> None:
        if self.name == "wsd" and self.warmup_fraction + self.decay_fraction > 1.0:
            raise key_error(
                "scheduler.warmup_fraction",
                self.warmup_fraction,
                f"a warmup that leaves room for scheduler.decay_fraction ({self.decay_fraction}) in the wsd schedule",
            )
