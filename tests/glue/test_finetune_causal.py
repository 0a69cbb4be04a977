"""GLUE (and through the same runner, SuperGLUE) finetuning of our own causal checkpoint: the classifier reads
the last real token of `a EOS b EOS`, the saved model exports as transformers' own LlamaForSequenceClassification
with the same logits and the same tokenization, and that export finetunes again as `checkpoint=hf:DIR`."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: nothing here may reach the hub

import json
from pathlib import Path

import pytest
import torch

from composer_bert.glue.data import check_tokenizer, load_tokenizer, read_glue_tsv, tokenize_examples
from composer_bert.glue.tasks import TASKS
from composer_bert.hf.export import export_checkpoint
from composer_bert.models import ComposerCausalLM
from composer_bert.models.causal import CausalLMForSequenceClassification
from composer_bert.run.checkpoint import load_composer_checkpoint
from tests.generation.generation_helpers import LLAMA_LIKE
from tests.glue.glue_helpers import tiny_run
from tests.glue.superglue_helpers import superglue_run, write_superglue_dir
from tests.helpers import tiny_model_config
from tests.hf.hf_helpers import perturbed, save_checkpoint_dict

SEP = 3  # the test tokenizer's [SEP] (tests/helpers.bert_tokenizer): a causal row's end-of-text token


@pytest.fixture(scope="module")
def causal_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """A Llama-shaped causal checkpoint over the GLUE fixture's tokenizer, saved as recipes/pretrain.py saves it."""
    tokenizer_dir = load_composer_checkpoint(str(checkpoint)).tokenizer_dir
    cfg = tiny_model_config(100, objective="causal", type_vocab_size=0, **LLAMA_LIKE)
    torch.manual_seed(0)
    model = ComposerCausalLM(cfg)
    perturbed(model.model, 1)
    return save_checkpoint_dict(tmp_path_factory.mktemp("causal") / "causal.pt", model, cfg, tokenizer_dir)


def test_a_causal_checkpoint_finetunes_exports_as_llama_and_finetunes_again_from_the_export(
    causal_checkpoint, glue_dir, tmp_path
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    save = tmp_path / "glue"
    summary = tiny_run(causal_checkpoint, glue_dir, save, "tasks=[SST-2,RTE]", "seeds=[0]")
    assert sorted(summary.medians) == ["RTE", "SST-2"]
    results = json.loads((save / "glue_results.json").read_text())
    assert 0 <= results["tasks"]["RTE"]["accuracy"] <= 100 and 0 <= results["tasks"]["SST-2"]["accuracy"] <= 100

    # The runner's rows: a EOS b EOS, no [CLS], so the classified position is the same token in every row.
    pretrained = load_composer_checkpoint(str(causal_checkpoint))
    tokenizer = load_tokenizer(pretrained.tokenizer_dir)
    check_tokenizer(tokenizer, 100, rows_start_with_cls=False)
    rte = read_glue_tsv(TASKS["RTE"], glue_dir / "RTE" / "dev.tsv")
    tokens = tokenize_examples(rte, tokenizer, 32)
    first = tokens[0]["input_ids"].tolist()
    a, b = rte.texts[0]
    plain = tokenizer(a, add_special_tokens=False)["input_ids"], tokenizer(b, add_special_tokens=False)["input_ids"]
    assert first == [*plain[0], SEP, *plain[1], SEP]

    # The RTE model file: the classifier of our causal trunk, exported as transformers' own Llama classifier.
    model_file = save / "runs" / "RTE" / "seed0.model.pt"
    out, what = export_checkpoint(str(model_file), tmp_path / "rte-hf")
    assert what == "classifier with 2 labels (entailment, not_entailment)"
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and "auto_map" not in config
    assert config["pad_token_id"] == 0 and not list(out.glob("*.py"))
    hf_tokenizer = AutoTokenizer.from_pretrained(str(out))
    encoded = hf_tokenizer([a, "the dog"], [b, "sat"], padding=True, return_tensors="pt")
    assert encoded["input_ids"][0].tolist()[: len(first)] == first  # the export encodes pairs as finetuning did
    assert not encoded["attention_mask"].all()  # the second row is padded: the classifier skips the padding
    hf_model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    classifier = load_composer_checkpoint(str(model_file))
    ours = CausalLMForSequenceClassification(classifier.model_config, 2).eval()
    ours.load_state_dict(classifier.state_dict, strict=True)
    with torch.no_grad():
        expected = ours(encoded["input_ids"], encoded["attention_mask"])
        theirs = hf_model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
    torch.testing.assert_close(theirs, expected, atol=1e-5, rtol=0)

    # checkpoint=hf:DIR takes that LlamaForSequenceClassification folder (its own head replaced for the task).
    again = tiny_run(f"hf:{out}", glue_dir, tmp_path / "from-export", "tasks=[SST-2]", "seeds=[0]")
    assert list(again.medians) == ["SST-2"]


def test_a_causal_checkpoint_finetunes_on_superglue_choice_and_candidate_tasks(causal_checkpoint, tmp_path):
    """COPA scores each (premise, choice) row and picks the higher; ReCoRD each candidate entity: the same
    formulations as an encoder's, on the last-token classifier."""
    data = write_superglue_dir(tmp_path / "superglue")
    summary = superglue_run(causal_checkpoint, data, tmp_path / "sg", "tasks=[COPA,ReCoRD]")
    assert set(summary.medians) == {"COPA", "ReCoRD"}
    assert set(summary.medians["ReCoRD"]) == {"token_f1", "em"} and 0 <= summary.medians["COPA"]["accuracy"] <= 100
