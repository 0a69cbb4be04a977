"""The Composer wrappers: losses go down, metrics count the right tokens, encoders move from MLM to classifier."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from composer import Trainer
from composer.callbacks import SpeedMonitor
from composer.loggers import InMemoryLogger
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from composer_bert.models.bert import masked_positions
from composer_bert.models.composer_model import ComposerClassifier, ComposerMLM, build_composer_model
from tests.models import model_helpers
from tests.models.model_helpers import VOCAB, padded_ids

tiny_config = partial(model_helpers.tiny_config, classifier_dropout=0.0)


def tiny_mlm(**overrides) -> ComposerMLM:
    torch.manual_seed(0)
    return ComposerMLM(tiny_config(**overrides))


@pytest.fixture
def mlm_batch() -> dict[str, torch.Tensor]:
    """As the MLM collator builds them: full rows (no attention mask), masked positions in fixed-width slots."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, VOCAB, (4, 16), generator=generator)
    labels = torch.full_like(input_ids, -100)
    masked = torch.rand(4, 16, generator=generator) < 0.25
    labels[masked] = input_ids[masked]
    input_ids = input_ids.masked_fill(masked, 3)  # the [MASK] id
    slots = int(masked.sum(1).max()) + 1  # at least one empty slot
    return dict(input_ids=input_ids, labels=labels, masked_positions=masked_positions(labels, slots))


@pytest.fixture
def finetune_batch() -> dict[str, torch.Tensor]:
    input_ids, attention_mask = padded_ids(torch.Generator().manual_seed(1), (7, 12) * 3, 12)
    return dict(input_ids=input_ids, attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids), labels=torch.tensor([0, 1, 2, 1, 0, 2]))


def train_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int = 8) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model.loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("sparse_prediction", [True, False])
def test_mlm_loss_decreases_on_a_fixed_batch(mlm_batch, sparse_prediction):
    losses = train_losses(tiny_mlm(sparse_prediction=sparse_prediction), mlm_batch)
    assert losses[0] == pytest.approx(math.log(VOCAB), rel=0.1)  # near-uniform predictions at init
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("sparse_prediction", [True, False])
def test_mlm_loss_is_the_same_with_an_attention_mask_or_without_masked_positions(mlm_batch, sparse_prediction):
    """A batch built by hand (all-ones mask, no masked_positions) gets the collator batch's loss."""
    model = tiny_mlm(sparse_prediction=sparse_prediction).eval()
    by_hand = {k: v for k, v in mlm_batch.items() if k != "masked_positions"}
    by_hand["attention_mask"] = torch.ones_like(mlm_batch["input_ids"])
    with torch.no_grad():
        expected = model.loss(model(mlm_batch), mlm_batch)
        torch.testing.assert_close(model.loss(model(by_hand), by_hand), expected)


def test_classifier_and_regressor_losses_decrease(finetune_batch):
    torch.manual_seed(0)
    losses = train_losses(ComposerClassifier(tiny_config(), num_labels=3), finetune_batch)
    assert losses[-1] < 0.5 * losses[0]
    regression_batch = {**finetune_batch, "labels": torch.tensor([0.5, 3.0, 1.5, 4.5, 2.0, 0.0])}
    regressor = ComposerClassifier(tiny_config(), num_labels=1)
    losses = train_losses(regressor, regression_batch)
    assert losses[-1] < 0.5 * losses[0]
    assert regressor.eval_forward(regression_batch).shape == (6,)


@pytest.mark.parametrize("sparse_prediction", [True, False])
def test_mlm_metrics_count_only_masked_tokens(mlm_batch, sparse_prediction):
    model = tiny_mlm(sparse_prediction=sparse_prediction).eval()
    with torch.no_grad():
        outputs = model.eval_forward(mlm_batch)
        loss = model.loss(outputs, mlm_batch)
    metrics = model.get_metrics(is_train=False)
    assert set(metrics) == {"MaskedAccuracy", "LanguageCrossEntropy", "LanguagePerplexity"}
    assert set(model.get_metrics(is_train=True)) == {"MaskedAccuracy", "LanguageCrossEntropy"}
    for metric in metrics.values():
        model.update_metric(mlm_batch, outputs, metric)
    labels, slots = mlm_batch["labels"], mlm_batch["masked_positions"]
    predictions = outputs.argmax(-1)[slots >= 0] if sparse_prediction else outputs.argmax(-1)[labels != -100]
    accuracy = (predictions == labels[labels != -100]).float().mean()
    torch.testing.assert_close(metrics["MaskedAccuracy"].compute(), accuracy)
    torch.testing.assert_close(metrics["LanguageCrossEntropy"].compute(), loss)
    torch.testing.assert_close(metrics["LanguagePerplexity"].compute(), loss.exp())


def test_classifier_metrics(finetune_batch):
    model = ComposerClassifier(tiny_config(), num_labels=3).eval()
    metric = model.get_metrics(is_train=False)["MulticlassAccuracy"]
    with torch.no_grad():
        logits = model.eval_forward(finetune_batch)
    model.update_metric(finetune_batch, logits, metric)
    expected = (logits.argmax(-1) == finetune_batch["labels"]).float().mean()
    torch.testing.assert_close(metric.compute(), expected)


def test_load_encoder_state_dict_from_a_pretraining_checkpoint(finetune_batch):
    mlm = tiny_mlm()
    checkpoint_state = {k.removeprefix("model."): v for k, v in mlm.state_dict().items()}
    assert any(k.startswith("head.") for k in checkpoint_state)  # ignored by the classifier
    classifier = ComposerClassifier(tiny_config(), num_labels=2)
    classifier.load_encoder_state_dict(checkpoint_state)
    for key, tensor in mlm.model.bert.state_dict().items():
        assert torch.equal(classifier.model.bert.state_dict()[key], tensor), key
    with pytest.raises(RuntimeError, match="Missing key"):
        classifier.load_encoder_state_dict({k: v for k, v in checkpoint_state.items() if "layers.1." not in k})
    with pytest.raises(RuntimeError, match="size mismatch"):
        ComposerClassifier(tiny_config(intermediate_size=96), num_labels=2).load_encoder_state_dict(checkpoint_state)


def test_build_composer_model():
    assert isinstance(build_composer_model(tiny_config()), ComposerMLM)
    assert build_composer_model(tiny_config(), num_labels=1).is_regression


def test_trainer_logs_mlm_metrics_and_mfu_inputs(mlm_batch):
    """Two real Composer steps: metric names as the loggers see them, and SpeedMonitor's FLOP rate."""
    model = tiny_mlm()
    dataset = [{k: v[i] for k, v in mlm_batch.items()} for i in range(4)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    logger = InMemoryLogger()
    trainer = Trainer(model=model, train_dataloader=loader, max_duration="2ba", loggers=[logger],
                      callbacks=[SpeedMonitor(window_size=1)], device="cpu", progress_bar=False, log_to_console=False)
    trainer.fit()
    assert {"metrics/train/MaskedAccuracy", "metrics/train/LanguageCrossEntropy"} <= set(logger.data)
    assert "throughput/flops_per_sec" in logger.data
    assert model.flops_per_batch(mlm_batch) == counted_flops(model, mlm_batch) > 0
    # counted by hand for the tiny config: d 64, FFN 128 (GeGLU: up 2 x 128), 2 layers, vocab 100 padded to 128,
    # no linear biases, LayerNorm without bias, sinusoidal positions (one scale), the decoder tied to the embeddings
    d, ffn, vocab = 64, 128, 128
    embeddings = vocab * d + 1 + 2 * d + d  # tokens, position scale, 2 token types, norm
    layer = d + 3 * d * d + d * d + d + 2 * ffn * d + ffn * d  # norm, qkv, out, norm, up, down
    final_norm, head = d, d * d + d + vocab  # the head: transform, its norm, the decoder's bias
    assert model.num_parameters() == embeddings + 2 * layer + final_norm + head == 94_913


def counted_flops(model, batch) -> int:
    """Forward + backward FLOPs of one step, counted by PyTorch's FlopCounterMode as the ops run (attention on the
    math backend, whose matmuls it sees)."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        model.loss(model(batch), batch).backward()
    model.zero_grad()
    return counter.get_total_flops()
