"""The BERT model: every option builds and trains, padding is invisible, heads and FLOP counts are right."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from composer_bert.models.bert import BertEncoder, BertForMaskedLM, masked_positions, masked_targets
from composer_bert.models.flops import mlm_flops_per_batch
from composer_bert.models.layers import AttentionInputs, Block, Rotary, alibi_bias, alibi_slopes, apply_rotary
from tests.models import model_helpers
from tests.models.model_helpers import VOCAB, padded_ids

POSITIONS = ["learned", "sinusoidal", "rotary", "alibi"]
tiny_config = partial(model_helpers.tiny_config, norm_eps=1e-6)


def tiny_model(**overrides) -> BertForMaskedLM:
    torch.manual_seed(0)
    return BertForMaskedLM(tiny_config(**overrides)).eval()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """Three sequences of lengths 12, 7 and 3, right-padded to 12, with a few masked labels in 4 slots per row."""
    input_ids, attention_mask = padded_ids(torch.Generator().manual_seed(1), (12, 7, 3), 12)
    labels = torch.full_like(input_ids, -100)
    labels[0, [1, 5, 9]] = input_ids[0, [1, 5, 9]]
    labels[1, [2, 6]] = input_ids[1, [2, 6]]
    labels[2, 0] = input_ids[2, 0]
    token_type_ids = (torch.arange(12) >= 6).long().expand(3, -1) * attention_mask
    positions = torch.tensor([[1, 5, 9, -1], [2, 6, -1, -1], [0, -1, -1, -1]])
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, token_type_ids=token_type_ids,
                masked_positions=positions)


@pytest.mark.parametrize(
    "norm_placement, ffn_type, position_embedding, norm_type",
    list(itertools.product(["pre", "post"], ["gelu", "geglu", "swiglu"], POSITIONS, ["layernorm", "rmsnorm"])),
)
def test_every_option_combination_runs_and_trains_every_parameter(
    batch, norm_placement, ffn_type, position_embedding, norm_type
):
    model = tiny_model(norm_placement=norm_placement, ffn_type=ffn_type, position_embedding=position_embedding,
                       norm_type=norm_type, final_norm=norm_placement == "pre").train()
    logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["masked_positions"])
    assert logits.shape == (3, 4, VOCAB)  # one row of logits per slot, empty slots included
    logits.logsumexp(-1).sum().backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_dense_prediction_gives_logits_for_every_position(batch):
    dense = tiny_model(sparse_prediction=False)
    logits = dense(batch["input_ids"], batch["attention_mask"], masked_positions=batch["masked_positions"])
    assert logits.shape == (3, 12, VOCAB)


@pytest.mark.parametrize("position_embedding", POSITIONS)
@pytest.mark.parametrize("norm_placement", ["pre", "post"])
def test_padding_does_not_change_real_tokens(batch, position_embedding, norm_placement):
    """The padded path (a key mask) gives each sequence what it gets alone, however much padding follows it."""
    encoder = tiny_model(position_embedding=position_embedding, norm_placement=norm_placement).bert
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    padded = encoder(ids, mask, types)
    more_padding = encoder(F.pad(ids, (0, 5)), F.pad(mask, (0, 5)), F.pad(types, (0, 5)))
    torch.testing.assert_close(more_padding[:, :12], padded, atol=1e-5, rtol=1e-5)
    for row, length in enumerate(mask.sum(1).tolist()):
        alone = encoder(ids[row : row + 1, :length], token_type_ids=types[row : row + 1, :length])  # no mask
        torch.testing.assert_close(padded[row, :length], alone[0], atol=1e-5, rtol=1e-5)
        assert padded[row, length:].abs().sum() == 0


def test_all_ones_mask_gives_the_result_of_no_mask(batch):
    encoder = tiny_model().bert
    ids = batch["input_ids"][:1]
    torch.testing.assert_close(encoder(ids, torch.ones_like(ids)), encoder(ids))


def test_masked_positions_fill_fixed_width_slots_in_order(batch):
    labels = batch["labels"]
    assert masked_positions(labels, 4).tolist() == batch["masked_positions"].tolist()
    assert masked_positions(labels, 14).shape == (3, 14) and masked_positions(labels, 14)[:, 4:].eq(-1).all()
    assert masked_positions(labels, 2).tolist() == [[1, 5], [2, 6], [0, -1]]  # too narrow: first positions kept
    targets = masked_targets(labels, batch["masked_positions"])
    assert targets.tolist() == [[labels[0, 1], labels[0, 5], labels[0, 9], -100],
                                [labels[1, 2], labels[1, 6], -100, -100], [labels[2, 0], -100, -100, -100]]


def test_sparse_logits_are_the_dense_logits_at_the_masked_positions(batch):
    sparse, dense = tiny_model(), tiny_model(sparse_prediction=False)
    dense.load_state_dict(sparse.state_dict())
    args = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["masked_positions"]
    sparse_logits, dense_logits = sparse(*args), dense(*args)
    for row, slots in enumerate(batch["masked_positions"].tolist()):
        for slot, position in enumerate(slots):
            torch.testing.assert_close(sparse_logits[row, slot], dense_logits[row, max(position, 0)])


@pytest.mark.parametrize("ffn_type", ["gelu", "geglu"])
def test_sparse_and_dense_mlm_give_the_same_loss_and_gradients(batch, ffn_type):
    sparse, dense = tiny_model(ffn_type=ffn_type), tiny_model(ffn_type=ffn_type, sparse_prediction=False)
    dense.load_state_dict(sparse.state_dict())
    args = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["masked_positions"]
    labels = batch["labels"]
    targets = masked_targets(labels, batch["masked_positions"])
    sparse_loss = F.cross_entropy(sparse(*args).flatten(0, 1), targets.flatten(), ignore_index=-100)
    dense_loss = F.cross_entropy(dense(*args).flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(sparse_loss, dense_loss)
    sparse_loss.backward()
    dense_loss.backward()
    for (name, p), q in zip(sparse.named_parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_vocab_is_padded_in_the_embedding_and_decoder_but_not_the_logits(batch):
    model = tiny_model(pad_vocab_multiple=64, sparse_prediction=False)
    assert model.bert.embeddings.tokens.weight.shape[0] == 128 and model.head.decoder.weight.shape[0] == 128
    logits = model(batch["input_ids"])
    assert logits.shape[-1] == VOCAB
    with torch.no_grad():
        model.head.decoder.weight[VOCAB:] = 5.0  # padded rows never reach the logits
        model.head.decoder.bias[VOCAB:] = 5.0
    torch.testing.assert_close(model(batch["input_ids"]), logits)
    assert tiny_model(pad_vocab_multiple=1).bert.embeddings.tokens.weight.shape[0] == VOCAB


def test_tied_embeddings_share_one_parameter():
    tied, untied = tiny_model(tie_embeddings=True), tiny_model(tie_embeddings=False)
    assert tied.head.decoder.weight is tied.bert.embeddings.tokens.weight
    assert untied.head.decoder.weight is not untied.bert.embeddings.tokens.weight
    assert untied.num_parameters() - tied.num_parameters() == 128 * 64


def test_parameter_count_by_hand():
    """Crammed defaults, tiny: no linear biases, LayerNorm without bias, GEGLU up-projection 2x128."""
    d, i, v = 64, 128, 128
    block = 3 * d * d + d * d + d * 2 * i + i * d + 2 * d  # qkv, out, ffn up/down, two norm weights
    embeddings = v * d + 2 * d + 1 + d  # tokens, token types, sinusoid scale, norm
    head = d * d + d + v  # transform dense and norm, decoder bias (decoder weight tied)
    assert tiny_model().num_parameters() == embeddings + 2 * block + d + head  # + final norm


def test_flops_per_batch_counted_by_hand():
    cfg = tiny_config(ffn_type="geglu", sparse_prediction=True, head_transform=True)
    input_ids = torch.ones(2, 8, dtype=torch.long)
    labels = torch.full((2, 8), -100)
    labels[0, 1] = labels[1, 3] = labels[1, 4] = 7
    positions = torch.tensor([[1, -1], [3, 4]])
    tokens, d, i = 16, 64, 128
    layer = 2 * tokens * (3 * d * d + d * d + d * 2 * i + i * d) + 4 * 2 * 8 * 8 * d
    head = 2 * 4 * (d * d + d * 128)  # four slots (one empty), decoder over the padded vocabulary
    batch = dict(input_ids=input_ids, labels=labels, masked_positions=positions)
    assert mlm_flops_per_batch(cfg, batch) == 3 * (2 * layer + head)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0  # padding is masked, not removed: the model computes (and the count counts) all 16 positions
    assert mlm_flops_per_batch(cfg, dict(batch, attention_mask=mask)) == 3 * (2 * layer + head)
    without_positions = 2 * 16 * (d * d + d * 128)  # ComposerMLM's fallback: slots as wide as the row
    assert mlm_flops_per_batch(cfg, dict(input_ids=input_ids, labels=labels)) == 3 * (2 * layer + without_positions)


@pytest.mark.parametrize("sparse_prediction, ffn_type, padded", [(True, "geglu", False), (False, "gelu", True)])
def test_flops_per_batch_matches_torch_flop_counter(batch, sparse_prediction, ffn_type, padded):
    model = tiny_model(sparse_prediction=sparse_prediction, ffn_type=ffn_type)
    counted = dict(input_ids=batch["input_ids"], labels=batch["labels"], masked_positions=batch["masked_positions"])
    if padded:
        counted["attention_mask"] = batch["attention_mask"]
    args = counted["input_ids"], counted.get("attention_mask"), None, counted["masked_positions"]
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):  # the math kernel's bmm are counted
        model(*args).sum().backward()
    assert counter.get_total_flops() == mlm_flops_per_batch(model.config, counted)


def test_alibi_slopes_and_bias():
    assert alibi_slopes(8).tolist() == [2.0**-k for k in range(1, 9)]
    assert alibi_slopes(6).tolist() == [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]
    bias = alibi_bias(alibi_slopes(4), 3)
    assert bias.shape == (1, 4, 3, 3) and bias[0, 0, 0, 2] == bias[0, 0, 2, 0] == -2 * 2.0**-2


def test_rotary_scores_depend_only_on_relative_position():
    rotary = Rotary(head_dim=16)
    q, k = torch.randn(1, 16), torch.randn(1, 16)

    def score(q_position: int, k_position: int) -> torch.Tensor:
        cos, sin = rotary(torch.tensor([q_position, k_position]))
        return (apply_rotary(q, cos[0], sin[0]) * apply_rotary(k, cos[1], sin[1])).sum()

    torch.testing.assert_close(score(3, 7), score(10, 14))
    assert not torch.allclose(score(3, 7), score(3, 8))


@pytest.mark.parametrize("position_embedding", ["rotary", "alibi"])
def test_block_compiles_without_graph_breaks(batch, position_embedding):
    """fullgraph=True fails on any graph break; aot_eager traces forward and backward without slow codegen."""
    torch.manual_seed(0)
    cfg = tiny_config(position_embedding=position_embedding)
    encoder = BertEncoder(cfg)
    block = Block(cfg)
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    x = torch.randn(3, 12, 64, requires_grad=True)
    position_ids = torch.arange(12)
    inputs = encoder._attention_inputs(12, position_ids, None)
    torch.testing.assert_close(compiled(x, inputs), block(x, inputs))
    padded_inputs = encoder._attention_inputs(12, position_ids, batch["attention_mask"])  # key-padding mask
    assert isinstance(padded_inputs, AttentionInputs) and padded_inputs.bias is not None
    compiled(x, padded_inputs).sum().backward()
    torch.testing.assert_close(compiled(x, padded_inputs), block(x, padded_inputs))


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="vocab_size"):
        BertEncoder(tiny_config(vocab_size=None))
    with pytest.raises(ValueError, match="divisible"):
        BertEncoder(tiny_config(num_heads=5))
