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

from composer_bert.errors import UserError
from composer_bert.generation.sampling import load_causal_lm
from composer_bert.glue.config import FinetuneConfig
from composer_bert.glue.data import read_glue_tsv, tokenize_examples
from composer_bert.glue.runner import GlueRunner
from composer_bert.glue.tasks import TASKS
from composer_bert.hf.export import export_checkpoint, export_classifier
from composer_bert.models import ComposerCausalLM
from composer_bert.models.causal import CausalLMForSequenceClassification
from composer_bert.run.checkpoint import load_composer_checkpoint
from composer_bert.run.config import load_config
from tests.generation.generation_helpers import LLAMA_LIKE
from tests.glue.glue_helpers import RECIPE, tiny_run
from tests.glue.superglue_helpers import superglue_run, write_superglue_dir
from tests.helpers import cli_error, tiny_model_config
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
    causal_checkpoint, glue_dir, tmp_path, capsys
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    save = tmp_path / "glue"
    summary = tiny_run(causal_checkpoint, glue_dir, save, "tasks=[SST-2,RTE]", "seeds=[0]")
    assert sorted(summary.medians) == ["RTE", "SST-2"]
    results = json.loads((save / "glue_results.json").read_text())
    assert 0 <= results["tasks"]["RTE"]["accuracy"] <= 100 and 0 <= results["tasks"]["SST-2"]["accuracy"] <= 100

    # The runner's rows: a EOS b EOS, no [CLS], so the classified position is the same token in every row.
    cfg = load_config(FinetuneConfig, str(RECIPE), [f"checkpoint={causal_checkpoint}", f"save_folder={tmp_path / 'x'}"])
    tokenizer = GlueRunner(cfg).tokenizer
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

    # A classifier has no LM head left: generation and zero-shot scoring refuse the model file and its export.
    error = cli_error(capsys, "recipes/generate.py", f"checkpoint={model_file}", "prompt=the cat")
    assert "is a finetuned classifier, which has no language-model head; pass the pretraining checkpoint" in error
    with pytest.raises(UserError, match="holds a Llama sequence classifier .* pass a LlamaForCausalLM folder"):
        load_causal_lm(str(out), recipe="zero_shot")


@pytest.mark.parametrize("pad", ["[UNK]", "[SEP]"])
def test_a_classifier_exports_with_its_tokenizers_padding_id_or_as_remote_code_when_that_is_end_of_text(
    causal_checkpoint, tmp_path, pad
):
    """transformers' Llama classifier reads the last token that is not `pad_token_id`: the export names the
    tokenizer's padding token ([UNK] here, id 1, not the model config's 0); a tokenizer padding with end-of-text
    would make it read the token before each row's end, so that classifier exports as remote code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast

    pretrained = load_composer_checkpoint(str(causal_checkpoint))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(pretrained.tokenizer_dir))
    tokenizer.pad_token = pad
    tokenizer.save_pretrained(str(tmp_path / "tokenizer"))
    torch.manual_seed(3)
    classifier = perturbed(CausalLMForSequenceClassification(pretrained.model_config, 2), 4).eval()
    out = export_classifier(classifier, pretrained.model_config, 2, tmp_path / "tokenizer", tmp_path / "export")
    config = json.loads((out / "config.json").read_text())
    native = pad != "[SEP]"
    assert ("auto_map" not in config) == native  # remote code reads the attention mask, whatever pads the rows
    assert not native or config["pad_token_id"] == tokenizer.pad_token_id == 1
    hf_tokenizer = AutoTokenizer.from_pretrained(str(out))
    batch = hf_tokenizer(["the cat sat", "a dog ran on the mat"], ["it", "the rug"], padding=True, return_tensors="pt")
    assert not batch["attention_mask"].all() and int(batch["input_ids"][0, -1]) == tokenizer.pad_token_id
    hf_model = AutoModelForSequenceClassification.from_pretrained(str(out), trust_remote_code=not native).eval()
    with torch.no_grad():
        expected = classifier(batch["input_ids"], batch["attention_mask"])
        theirs = hf_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(theirs, expected, atol=1e-5, rtol=0)


def test_a_causal_checkpoint_finetunes_on_superglue_choice_and_candidate_tasks(causal_checkpoint, tmp_path):
    """COPA scores each (premise, choice) row and picks the higher; ReCoRD each candidate entity: the same
    formulations as an encoder's, on the last-token classifier."""
    data = write_superglue_dir(tmp_path / "superglue")
    summary = superglue_run(causal_checkpoint, data, tmp_path / "sg", "tasks=[COPA,ReCoRD]")
    assert set(summary.medians) == {"COPA", "ReCoRD"}
    assert set(summary.medians["ReCoRD"]) == {"token_f1", "em"} and 0 <= summary.medians["COPA"]["accuracy"] <= 100
