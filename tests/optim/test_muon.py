"""Muon on the blocks' matrices, AdamW on the rest (optim/muon.py): which parameter goes where, each update against
torch's own optimizer (torch.optim.Muon where torch has it, torch.optim.AdamW), fused projections orthogonalized
per part, a saved and loaded optimizer continuing exactly, and a tiny causal model learning with it."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from composer_bert.batch import next_token_labels
from composer_bert.errors import UserError
from composer_bert.glue.config import FinetuneConfig
from composer_bert.models import ComposerCausalLM, ComposerMLM
from composer_bert.models.config import ModelConfig
from composer_bert.optim.config import OptimizerConfig
from composer_bert.optim.muon import MuonAdamW, fused_parts, muon_parameter_groups, orthogonalize
from composer_bert.optim.optimizer import build_optimizer
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.run.config import load_config
from tests.helpers import REPO, tiny_args, train_losses

MUON = OptimizerConfig(name="muon", lr=3e-3, muon_lr=0.02, weight_decay=0.01)


def tiny(objective: str = "mlm", **overrides) -> torch.nn.Module:
    fields = dict(vocab_size=200, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=32, ffn_type="gelu")
    if objective == "causal":  # Llama's switches, as gpt-tiny: rotary, SwiGLU (a fused value and gate), RMSNorm, untied
        fields.update(objective="causal", position_embedding="rotary", ffn_type="swiglu", norm_type="rmsnorm",
                      type_vocab_size=0, embedding_norm=False, decoder_bias=False, tie_embeddings=False)  # fmt: skip
    return (ComposerCausalLM if objective == "causal" else ComposerMLM)(ModelConfig(**{**fields, **overrides}))


def give_gradients(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator)


@pytest.mark.parametrize("objective", ["mlm", "causal"])
def test_the_blocks_matrices_take_muon_and_everything_else_adamw(objective):
    model = tiny(objective)
    optimizer = build_optimizer(MUON, model)
    assert isinstance(optimizer, MuonAdamW)
    names = {param: name for name, param in model.named_parameters()}
    muon = {names[p]: group["parts"] for group in optimizer.param_groups if group["muon"] for p in group["params"]}
    adamw = {names[p] for group in optimizer.param_groups if not group["muon"] for p in group["params"]}
    assert set(muon) | adamw == set(names.values()) and not set(muon) & adamw
    assert muon and all(".layers." in name for name in muon)
    assert {name.split(".layers.")[1].split(".", 1)[1] for name in muon} == {"attn.qkv.weight", "attn.out.weight", "ffn.up.weight", "ffn.down.weight"}
    assert all(parts == 3 for name, parts in muon.items() if name.endswith("qkv.weight"))
    glu = objective == "causal"  # the causal tiny model's feed-forward is SwiGLU: its `up` fuses value and gate
    assert all(parts == (2 if glu else 1) for name, parts in muon.items() if name.endswith("ffn.up.weight"))
    assert any("embeddings.tokens" in name for name in adamw) and any("norm" in name for name in adamw)
    lrs = {group["lr"] for group in optimizer.param_groups if group["muon"]}, {group["lr"] for group in optimizer.param_groups if not group["muon"]}
    assert lrs == ({0.02}, {3e-3})


def test_a_fused_qkv_is_orthogonalized_as_three_matrices():
    model = tiny()
    qkv = model.model.bert.layers[0].attn.qkv.weight
    assert fused_parts(model)[qkv] == 3
    give_gradients(model)
    before = qkv.detach().clone()
    optimizer = MuonAdamW(muon_parameter_groups(model, 1.0, 0.0)[0], lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, nesterov=False, momentum=0.0)
    optimizer.step()
    step = (before - qkv.detach()).reshape(3, 32, 32)  # lr 1, no momentum, square parts: the orthogonalized gradient
    grads = qkv.grad.reshape(3, 32, 32)
    for part, grad in zip(step, grads, strict=True):
        assert torch.allclose(part, orthogonalize(grad).float(), atol=1e-6)
        singular = torch.linalg.svdvals(part)
        assert singular.min() > 0.3 and singular.max() < 1.6, singular  # each part near orthogonal
    whole = torch.linalg.svdvals(orthogonalize(qkv.grad).float())  # what one 96 x 32 orthogonalization would give
    assert not torch.allclose(step.reshape(96, 32), orthogonalize(qkv.grad).float(), atol=1e-2), whole


def test_the_muon_update_is_torch_optim_muons():
    """Unfused matrices only (torch's Muon knows no parts), three steps with Nesterov momentum and weight decay."""
    if not hasattr(torch.optim, "Muon"):
        pytest.skip(f"torch {torch.__version__} has no torch.optim.Muon (added in 2.9): the current stack checks this")
    generator = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in [(48, 16), (16, 48), (32, 32)]]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    mine = MuonAdamW([{"params": ours, "muon": True, "parts": 1}], lr=0.02, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    reference = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
    for _ in range(3):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        mine.step()
        reference.step()
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_the_adamw_update_is_torch_optim_adamws():
    model = tiny("causal")
    reference_model = copy.deepcopy(model)
    optimizer = build_optimizer(MUON, model)
    adamw_names = {name for name, p in model.named_parameters() if all(p is not q for g in optimizer.param_groups if g["muon"] for q in g["params"])}
    reference = torch.optim.AdamW(
        [p for name, p in reference_model.named_parameters() if name in adamw_names], lr=3e-3, betas=(0.9, 0.98), eps=1e-12, weight_decay=0.0
    )
    for step in range(3):
        give_gradients(model, step)
        give_gradients(reference_model, step)
        optimizer.step()
        reference.step()
    theirs = dict(reference_model.named_parameters())
    plain = [name for name, p in model.named_parameters() if name in adamw_names and p.ndim < 2]  # not decayed in ours
    assert plain
    for name in plain:
        assert torch.allclose(dict(model.named_parameters())[name], theirs[name], atol=1e-6), name


def test_a_saved_and_loaded_optimizer_continues_exactly():
    straight, resumed = tiny("causal"), tiny("causal")
    resumed.load_state_dict(straight.state_dict())
    first = build_optimizer(MUON, straight)
    for step in range(3):
        give_gradients(straight, step)
        first.step()
        if step == 1:
            saved_model, saved_optimizer = copy.deepcopy(straight.state_dict()), copy.deepcopy(first.state_dict())
    resumed.load_state_dict(saved_model)
    second = build_optimizer(MUON, resumed)
    second.load_state_dict(saved_optimizer)
    give_gradients(resumed, 2)
    second.step()
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_a_tiny_causal_model_learns_a_repeating_sequence_with_muon():
    torch.manual_seed(0)
    model = tiny("causal")
    optimizer = build_optimizer(MUON, model)
    tokens = torch.arange(32).remainder(7).add(10).repeat(4, 1)  # a period-7 pattern, four rows
    batch = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens), "labels": next_token_labels(tokens)}
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = model.loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses


@pytest.mark.parametrize(
    "schema, recipe, overrides, expected",
    [
        ("pretrain", "tiny.yaml", ["optimizer.name=muon", "parallelism.fsdp={}"],
         "optimizer.name=muon orthogonalizes whole weight matrices, but parallelism.fsdp gives each rank a shard"),
        ("pretrain", "tiny.yaml", ["optimizer.name=muon", "optimizer.muon_momentum=1"],
         "config key 'optimizer.muon_momentum' is 1"),
        ("finetune", "glue.yaml", ["checkpoint=x.pt", "optimizer.name=muon"],
         "config key 'optimizer.name' is 'muon', a pretraining optimizer; finetune with adamw or decoupled_adamw"),
    ],
)  # fmt: skip
def test_muon_where_it_cannot_work_is_one_line(schema, recipe, overrides, expected):
    config = PretrainConfig if schema == "pretrain" else FinetuneConfig
    with pytest.raises(UserError) as caught:
        load_config(config, REPO / "yamls" / schema / recipe, overrides)
    assert str(caught.value).startswith(expected), caught.value


@pytest.mark.slow
def test_a_muon_pretraining_run_learns_and_resumes_bit_exactly(tiny_causal_shards, tmp_path):
    """gpt-tiny with optimizer.name=muon through the pretraining entry point (in process): the loss falls, and a
    rerun from its batch-6 checkpoint (Composer's, with our optimizer's momentum buffers and AdamW moments)
    repeats batches 6-11 bit for bit."""
    from composer_bert.pretrain.run import run_pretraining

    def pretrain(out):
        args = tiny_args(tiny_causal_shards, out, "max_duration=12ba", "save_interval=6ba", "eval_interval=12ba",
                         "optimizer.name=muon", objective="causal")  # fmt: skip
        return run_pretraining(load_config(PretrainConfig, REPO / args[0], args[1:]))

    straight = tmp_path / "straight"
    assert pretrain(straight).batches == 12
    expected = train_losses(straight)
    assert expected[11] < expected[0] - 0.4, expected  # 6.94 -> 6.31 here (ln 1024 = 6.93: from chance)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed, symlinks=True)
    (resumed / "ep0-ba12-rank0.pt").unlink()
    (resumed / "latest-rank0.pt").unlink()
    (resumed / "latest-rank0.pt").symlink_to("ep0-ba6-rank0.pt")
    rows = [row for row in (resumed / "metrics.jsonl").read_text().splitlines() if json.loads(row)["batch"] < 6]
    (resumed / "metrics.jsonl").write_text("".join(row + "\n" for row in rows))
    assert pretrain(resumed).batches == 12
    again = train_losses(resumed)
    assert [again[b] for b in range(6, 12)] == [expected[b] for b in range(6, 12)]
