"""The training step compiles whole: no graph break, no recompile, no host-device synchronisation.

For the MLM step of each BERT pretraining recipe and the next-token step of each GPT recipe (its `model:`
section, shrunk to 2 layers of 32) and the padded GLUE classifier step: forward + loss is compiled with `fullgraph=True` on CPU inductor (a graph
break is an error), backward runs through the compiled graph, and an optimizer steps between batches,
as in Composer's loop (Composer compiles `forward`, a part of this graph). Three batches with different
masks (a different number of masked tokens, different padding) must reuse the first compile
(`error_on_recompile`), and the compiled losses must match eager ones to rtol 1e-4 / atol 1e-5 (fp32;
inductor reorders reductions). Dropout stays on, with `fallback_random` so both draw the same masks.
Cost: one compile per configuration, of scalar C++ kernels (`cpp.vec_isa_ok=False`: vectorised codegen
and its compiler runs take about twice as long on two cores and change nothing about graph breaks).

The eager tests check the same steps for host reads (tests/host_reads.py), which on a GPU would each be
a synchronisation: the model, loss, metric updates, FLOP count and sequence-length cut have none.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch._dynamo.utils import counters

from composer_bert.algorithms.seq_length_warmup import cut
from composer_bert.batch import MASKED_POSITIONS, next_token_labels
from composer_bert.data.load.masking import MLMMasker
from composer_bert.models.composer_model import ComposerCausalLM, ComposerClassifier, ComposerMLM
from composer_bert.models.config import ModelConfig
from tests.helpers import REPO
from tests.host_reads import HostReads

RECIPES = ["crammed-bert", "mosaic-bert-base", "bert-base", "modernbert-base"]  # modernbert: local attention layers
CAUSAL_RECIPES = ["minigpt-100m", "gpt2-124m"]  # rotary/RMSNorm/SwiGLU and learned/LayerNorm/GELU
CONFIGS = [*RECIPES, "glue-classifier", *CAUSAL_RECIPES]
VOCAB, SEQ_LEN, BATCH, NUM_LABELS = 100, 16, 4, 3
SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
RTOL, ATOL = 1e-4, 1e-5


def recipe_config(recipe: str) -> ModelConfig:
    """The recipe's model section, shrunk: every switch as the recipe sets it, only smaller."""
    section = OmegaConf.to_container(OmegaConf.load(REPO / "yamls" / "pretrain" / f"{recipe}.yaml")["model"])
    section.update(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                   max_position_embeddings=32, pad_token_id=0)
    if section.get("global_attn_every_n_layers", 1) > 1:  # layer 1 local, its band narrower than the rows
        section["local_attention"] = SEQ_LEN // 2
    return ModelConfig(**section)


def build(name: str) -> ComposerMLM | ComposerClassifier | ComposerCausalLM:
    torch.manual_seed(0)
    if name == "glue-classifier":  # finetuning starts from the crammed encoder
        return ComposerClassifier(recipe_config("crammed-bert"), NUM_LABELS)
    if name in CAUSAL_RECIPES:
        return ComposerCausalLM(recipe_config(name))
    return ComposerMLM(recipe_config(name))


def causal_batches(num_batches: int = 3) -> list[dict[str, torch.Tensor]]:
    """Rows of packed documents ([SEP] ends each) with next-token labels, as the causal loader yields them."""
    generator = torch.Generator().manual_seed(2)
    batches = []
    for _ in range(num_batches):
        input_ids = torch.randint(len(SPECIAL), VOCAB, (BATCH, SEQ_LEN), generator=generator)
        input_ids[torch.rand(input_ids.shape, generator=generator) < 0.1] = SPECIAL["sep"]
        batches.append({"input_ids": input_ids, "labels": next_token_labels(input_ids)})
    return batches


def mlm_batches(mlm_probability: float, num_batches: int = 3) -> list[dict[str, torch.Tensor]]:
    """Batches as the MLM collator builds them (the real masker): full rows, fixed-width masked positions."""
    masker = MLMMasker(vocab_size=VOCAB, special_token_ids=SPECIAL.values(), mask_token_id=SPECIAL["mask"], seed=3,
                       mlm_probability=mlm_probability)
    rng = np.random.default_rng(0)
    batches = []
    for index in range(num_batches):
        rows = rng.integers(len(SPECIAL), VOCAB, size=(BATCH, SEQ_LEN))
        rows[rng.random(rows.shape) < 0.2 * index] = SPECIAL["sep"]  # fewer maskable tokens batch after batch
        rows[:, 0] = SPECIAL["cls"]
        positions = np.empty((BATCH, masker.prediction_slots(SEQ_LEN)), dtype=np.int64)
        input_ids, labels = masker(rows, np.arange(BATCH) + index * BATCH, 0, positions_out=positions)
        batches.append({"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                        MASKED_POSITIONS: torch.from_numpy(positions)})
    masked_counts = {int((b["labels"] != -100).sum()) for b in batches}
    assert num_batches == 1 or len(masked_counts) > 1, "the batches must differ in their number of masked tokens"
    return batches


def classifier_batches(num_batches: int = 3) -> list[dict[str, torch.Tensor]]:
    """Padded GLUE batches (pad id 0 after each sequence), all padded to SEQ_LEN, with different lengths."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(num_batches):
        lengths = torch.randint(3, SEQ_LEN + 1, (BATCH,), generator=generator)
        attention_mask = (torch.arange(SEQ_LEN) < lengths[:, None]).long()
        input_ids = torch.randint(len(SPECIAL), VOCAB, (BATCH, SEQ_LEN), generator=generator) * attention_mask
        token_type_ids = (torch.arange(SEQ_LEN) >= lengths[:, None] // 2).long() * attention_mask
        labels = torch.randint(0, NUM_LABELS, (BATCH,), generator=generator)
        batches.append(dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            labels=labels))
    return batches


def batches_for(name: str) -> list[dict[str, torch.Tensor]]:
    if name == "glue-classifier":
        return classifier_batches()
    if name in CAUSAL_RECIPES:
        return causal_batches()
    return mlm_batches(OmegaConf.load(REPO / "yamls" / "pretrain" / f"{name}.yaml")["data"]["mlm_probability"])


def train_step(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.loss(model(batch), batch)


@pytest.mark.parametrize("name", CONFIGS)
def test_train_step_compiles_whole_once_and_matches_eager(name):
    torch._dynamo.reset()
    counters.clear()
    compiled_model = build(name).train()
    eager_model = copy.deepcopy(compiled_model)
    compiled_step = torch.compile(train_step, fullgraph=True)  # any graph break raises
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (compiled_model, eager_model)]
    inductor_settings = torch._inductor.config.patch({"fallback_random": True, "cpp.vec_isa_ok": False})
    with inductor_settings, torch._dynamo.config.patch(error_on_recompile=True):
        for step, batch in enumerate(batches_for(name)):
            losses = []
            for model, step_fn, optimizer in zip((compiled_model, eager_model), (compiled_step, train_step),
                                                 optimizers, strict=True):
                torch.manual_seed(step)  # the same dropout masks in both
                loss = step_fn(model, batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.detach())
            torch.testing.assert_close(losses[0], losses[1], rtol=RTOL, atol=ATOL, msg=f"{name}, step {step}")
    # compiled once (one graph, no recompile: error_on_recompile above), whatever the time it took on this machine
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


@pytest.mark.parametrize("name", CONFIGS)
def test_train_step_reads_nothing_on_the_host(name):
    """Forward, loss, backward, Composer's metric updates and the FLOP count: nothing that would sync a GPU."""
    model = build(name).train()
    batch = batches_for(name)[0]
    with HostReads() as reads:
        outputs = model(batch)
        model.loss(outputs, batch).backward()
        for metric in model.get_metrics(is_train=True).values():
            model.update_metric(batch, outputs.detach(), metric)
        assert model.flops_per_batch(batch) > 0
    assert reads.records == []


def test_sequence_length_warmup_keeps_the_slots_and_reads_nothing():
    """The warmup's cut (the real trainer runs it in tests/pretrain/test_pretrain.py) keeps masked_positions' width."""
    batch = mlm_batches(0.25, num_batches=1)[0]
    with HostReads() as reads:
        cut_batch = {key: cut(key, value, 8) for key, value in batch.items()}
    assert reads.records == []
    assert cut_batch["input_ids"].shape == cut_batch["labels"].shape == (BATCH, 8)
    slots = batch[MASKED_POSITIONS].shape[1]
    assert cut_batch[MASKED_POSITIONS].shape == (BATCH, slots)  # the head keeps its shape
    for row in range(BATCH):
        kept = [p for p in batch[MASKED_POSITIONS][row].tolist() if 0 <= p < 8]
        assert cut_batch[MASKED_POSITIONS][row].tolist() == kept + [-1] * (slots - len(kept))
    model = ComposerMLM(recipe_config("crammed-bert"))
    without_slots = {k: v for k, v in cut_batch.items() if k != MASKED_POSITIONS}  # predicts at every masked label
    torch.testing.assert_close(model.loss(model(cut_batch), cut_batch), model.loss(model(without_slots), without_slots))


def test_host_reads_sees_what_would_synchronise_a_gpu():
    x = torch.randn(6)
    with HostReads() as reads:
        x.sum().item()
        bool(x.max() > 0)
        x[x > 0]
        torch.nonzero(x)
        x.tolist()
        x.masked_fill(x > 0, 0.0).sum()  # a static shape: no read
    assert [r.op for r in reads.records] == [
        "aten._local_scalar_dense.default", "aten._local_scalar_dense.default", "aten.index.Tensor",
        "aten.nonzero.default", "Tensor.tolist",
    ]
