"""The causal LM: no position sees a later token, the loss is next-token cross entropy, FLOPs and params add up."""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from composer_bert.batch import next_token_labels
from composer_bert.errors import UserError
from composer_bert.models.bert import BertForMaskedLM, BertForSequenceClassification
from composer_bert.models.causal import CausalLM
from composer_bert.models.composer_model import ComposerCausalLM, ComposerMLM, build_composer_model
from composer_bert.models.config import ModelConfig
from composer_bert.models.flops import causal_flops_per_batch
from composer_bert.models.layers import alibi_bias, alibi_slopes
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.run.config import load_config
from composer_bert.schema import validate
from tests.helpers import REPO
from tests.models import model_helpers
from tests.models.model_helpers import VOCAB

POSITIONS = ["learned", "sinusoidal", "rotary", "alibi"]
CAUSAL_RECIPES = ["gpt-tiny", "gpt2-124m", "minigpt-100m"]
causal_config = partial(
    model_helpers.tiny_config, objective="causal", type_vocab_size=0, norm_eps=1e-6, head_transform=False
)


def tiny_causal(**overrides) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(causal_config(**overrides)).eval()


def random_ids(rows: int = 3, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm_placement", ["pre", "post"])
@pytest.mark.parametrize("position_embedding", POSITIONS)
def test_a_later_token_never_changes_an_earlier_position(position_embedding, norm_placement):
    model = tiny_causal(position_embedding=position_embedding, norm_placement=norm_placement,
                        final_norm=norm_placement == "pre")
    ids = random_ids()
    logits = model(ids)
    assert logits.shape == (3, 12, VOCAB)  # the padded vocabulary rows (128) are sliced off
    for changed in (0, 5, 11):
        other = ids.clone()
        other[:, changed] = (other[:, changed] + 1) % VOCAB
        other_logits = model(other)
        torch.testing.assert_close(other_logits[:, :changed], logits[:, :changed], atol=1e-6, rtol=0)
        assert not torch.allclose(other_logits[:, changed:], logits[:, changed:])  # and it does change its own


@pytest.mark.parametrize("position_embedding", ["learned", "rotary", "alibi"])
def test_padded_rows_give_what_each_row_gives_alone(position_embedding):
    """The key-padding path joins the causal mask: right padding changes nothing for the real tokens."""
    model = tiny_causal(position_embedding=position_embedding)
    ids, mask = model_helpers.padded_ids(torch.Generator().manual_seed(2), (12, 7, 3), 12)
    padded = model(ids, attention_mask=mask)
    for row, length in enumerate(mask.sum(1).tolist()):
        torch.testing.assert_close(padded[row, :length], model(ids[row : row + 1, :length])[0], atol=1e-5, rtol=1e-5)


def test_explicit_position_ids_are_the_default_ones():
    model = tiny_causal(position_embedding="rotary")
    ids = random_ids()
    torch.testing.assert_close(model(ids, position_ids=torch.arange(12).expand(3, -1)), model(ids))


def test_causal_alibi_bias_is_the_original_decoder_form():
    bias = alibi_bias(alibi_slopes(4), 3, causal=True)
    slope = 2.0**-2
    expected = torch.tensor([[0.0, -math.inf, -math.inf], [-slope, 0.0, -math.inf], [-2 * slope, -slope, 0.0]])
    torch.testing.assert_close(bias[0, 0], expected)


def test_next_token_labels_and_loss_equal_a_hand_computation():
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    assert next_token_labels(ids).tolist() == [[6, 7, 8, -100], [10, 11, 12, -100]]
    torch.manual_seed(0)
    model = ComposerCausalLM(causal_config())
    batch = dict(input_ids=ids, labels=next_token_labels(ids))
    logits = model(batch)
    terms = []
    for row in range(2):
        for t in range(3):  # the last position has no next token in the row
            probabilities = torch.exp(logits[row, t]) / torch.exp(logits[row, t]).sum()
            terms.append(-torch.log(probabilities[ids[row, t + 1]]))
    hand = torch.stack(terms).mean()
    torch.testing.assert_close(model.loss(logits, batch), hand)
    torch.testing.assert_close(model.loss(logits, dict(input_ids=ids)), hand)  # labels derived when absent
    metrics = model.get_metrics(is_train=False)
    for metric in metrics.values():
        model.update_metric(batch, logits, metric)
    torch.testing.assert_close(metrics["LanguageCrossEntropy"].compute(), hand)
    torch.testing.assert_close(metrics["LanguagePerplexity"].compute(), hand.exp())


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = ComposerCausalLM(causal_config(position_embedding="rotary", ffn_type="swiglu", norm_type="rmsnorm"))
    batch = dict(input_ids=random_ids(4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model.loss(model(batch), batch)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("tie", [True, False])
def test_parameter_count_by_hand(tie):
    """GPT-2 shape, tiny: learned positions, LayerNorm with biases, GELU MLP, no head transform or decoder bias."""
    model = tiny_causal(position_embedding="learned", norm_type="layernorm", linear_bias=True, qkv_bias=True,
                        ffn_type="gelu", embedding_norm=False, decoder_bias=False, tie_embeddings=tie)
    d, i, v, positions = 64, 128, 128, 32
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * i + i) + (i * d + d) + 2 * 2 * d  # qkv, out, up, down, 2 norms
    embeddings = v * d + positions * d
    assert model.num_parameters() == embeddings + 2 * block + 2 * d + (0 if tie else v * d)


def test_flops_per_batch_matches_torch_flop_counter():
    model = tiny_causal(ffn_type="swiglu", head_transform=True)
    batch = dict(input_ids=random_ids())
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):  # the math kernel's bmm are counted
        model(batch["input_ids"]).sum().backward()
    assert counter.get_total_flops() == causal_flops_per_batch(model.config, batch)


@pytest.mark.parametrize("objective", ["mlm", "causal"])
def test_activation_checkpointing_gives_the_same_gradients(objective):
    ids = random_ids()
    extra = dict(objective="causal", type_vocab_size=0) if objective == "causal" else {}
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_composer_model(model_helpers.tiny_config(activation_checkpointing=checkpointing, **extra))
        batch = dict(input_ids=ids, labels=next_token_labels(ids) if objective == "causal" else ids)
        model.loss(model(batch), batch).backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=0, rtol=0, msg=name)


def test_objective_picks_the_model_and_bad_combinations_are_one_line():
    assert isinstance(build_composer_model(model_helpers.tiny_config()), ComposerMLM)
    assert isinstance(build_composer_model(causal_config()), ComposerCausalLM)
    with pytest.raises(UserError, match="'model.type_vocab_size' is 2; use 0 for a causal model"):
        validate(ModelConfig(objective="causal"), "model.")
    with pytest.raises(UserError, match="choose one of: mlm, causal"):
        validate(ModelConfig(objective="gpt"), "model.")
    with pytest.raises(UserError, match="BertForMaskedLM needs a model with objective 'mlm'"):
        BertForMaskedLM(causal_config())
    with pytest.raises(UserError, match="objective 'mlm'"):
        BertForSequenceClassification(causal_config(), 2)
    with pytest.raises(UserError, match="CausalLM needs a model with objective 'causal'"):
        CausalLM(model_helpers.tiny_config())


@pytest.mark.parametrize("position_embedding", ["rotary", "alibi"])
def test_causal_model_compiles_without_graph_breaks(position_embedding):
    """fullgraph=True fails on any graph break; aot_eager traces forward and backward without slow codegen."""
    model = tiny_causal(position_embedding=position_embedding, activation_checkpointing=True).train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    ids = random_ids()
    compiled(ids).sum().backward()
    torch.testing.assert_close(compiled(ids), model(ids))


def test_causal_recipes_load_and_have_their_published_sizes():
    """Built on the meta device (no memory, no init cost): GPT-2 small is 124M parameters, as published."""
    recipes = {name: load_config(PretrainConfig, REPO / f"yamls/pretrain/{name}.yaml") for name in CAUSAL_RECIPES}
    sizes = {}
    for name, cfg in recipes.items():
        assert cfg.model.objective == "causal" and not cfg.model.type_vocab_size
        with torch.device("meta"):
            sizes[name] = CausalLM(dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or 50257)).num_parameters()
    gpt2, mini = recipes["gpt2-124m"].model, recipes["minigpt-100m"]
    assert (gpt2.num_layers, gpt2.hidden_size, gpt2.max_position_embeddings) == (12, 768, 1024)
    assert (gpt2.position_embedding, gpt2.ffn_type, gpt2.norm_placement, gpt2.linear_bias) == ("learned", "gelu", "pre", True)
    assert 124.4e6 < sizes["gpt2-124m"] < 124.5e6  # 124,439,808 with GPT-2's 50257 rows; ours pads to 50304
    m = mini.model
    assert (m.norm_type, m.position_embedding, m.ffn_type, m.max_position_embeddings) == ("rmsnorm", "rotary", "swiglu", 512)
    assert m.tie_embeddings and not (m.qkv_bias or m.linear_bias or m.decoder_bias)
    assert mini.batch_ramp.final_global_batch_size > mini.global_train_batch_size and mini.optimizer.name == "adamw"
    assert 100e6 < sizes["minigpt-100m"] < 115e6


def test_qk_norm_gives_each_heads_queries_and_keys_unit_rms_and_leaves_the_llama_family():
    """With qk_norm each head's q and k are RMS-normalized (scale 1 at init) before rotary, which keeps norms; the
    model is then no longer Llama's function, so it exports as remote code, not LlamaForCausalLM."""
    from composer_bert.hf.llama import LLAMA_SWITCHES, is_llama
    from composer_bert.models.layers import AttentionInputs

    plain = tiny_causal(position_embedding="rotary")
    model = tiny_causal(position_embedding="rotary", qk_norm=True)
    model.load_state_dict(plain.state_dict(), strict=False)  # the same weights; q_norm/k_norm keep scale 1
    attention = model.bert.layers[0].attn
    assert attention.q_norm.weight.shape == (model.config.head_dim,) and torch.equal(attention.q_norm.weight, torch.ones(model.config.head_dim))
    hidden = torch.randn(2, 7, model.config.hidden_size) * 5
    rotary = model.bert.rotary(torch.arange(7)[None])
    q, k, _ = attention.project(hidden, AttentionInputs(bias=None, rotary=rotary, causal=True))
    for x in (q, k):
        torch.testing.assert_close(x.pow(2).mean(-1).sqrt(), torch.ones(x.shape[:-1]), atol=1e-3, rtol=0)
    ids = random_ids()
    assert not torch.allclose(model(ids), plain(ids))
    llama = dataclasses.replace(ModelConfig(), **LLAMA_SWITCHES)
    assert is_llama(llama) and not is_llama(dataclasses.replace(llama, qk_norm=True))
