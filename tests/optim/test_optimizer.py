"""Weight decay groups: matrices (tied embedding/decoder included, once) decay; norms, biases and scalars don't."""

from __future__ import annotations

from composer_bert.models import ComposerMLM
from composer_bert.models.config import ModelConfig
from composer_bert.optim.config import OptimizerConfig
from composer_bert.optim.optimizer import build_optimizer, parameter_groups


def tiny_model() -> ComposerMLM:
    cfg = ModelConfig(vocab_size=200, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                      linear_bias=True, qkv_bias=True, max_position_embeddings=32)
    return ComposerMLM(cfg)


def test_matrices_decay_and_norms_biases_scalars_do_not():
    model = tiny_model()
    decayed, plain = parameter_groups(model.parameters(), 0.01, decay_all=False)
    decayed_ids = {id(p) for p in decayed["params"]}
    plain_ids = {id(p) for p in plain["params"]}
    names = {id(p): name for name, p in model.named_parameters()}
    assert decayed_ids.isdisjoint(plain_ids)
    assert decayed_ids | plain_ids == {id(p) for p in model.parameters()}
    assert all(names[i].endswith("weight") for i in decayed_ids)
    assert any("embeddings.tokens" in names[i] for i in decayed_ids)  # tied with the decoder
    assert all(p.ndim < 2 for p in plain["params"]) and plain["params"]
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0


def test_decay_all_and_optimizer_choice():
    model = tiny_model()
    decayed, plain = parameter_groups(model.parameters(), 0.1, decay_all=True)
    assert not plain["params"]
    adamw = build_optimizer(OptimizerConfig(name="adamw", lr=1e-3), model)
    assert type(adamw).__name__ == "AdamW" and adamw.defaults["betas"] == (0.9, 0.98)
    decoupled = build_optimizer(OptimizerConfig(name="decoupled_adamw", lr=5e-4, eps=1e-6), model)
    assert type(decoupled).__name__ == "DecoupledAdamW" and decoupled.defaults["eps"] == 1e-6
