"""Causal exports: Llama-like models as transformers' own LlamaForCausalLM, the others as remote code; read back."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: nothing here may reach the hub

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from composer_bert.data.contract import tokenizer_fingerprint
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.data.prep.tokenizer_training import save_pretrained_fast, train_tokenizer
from composer_bert.errors import UserError
from composer_bert.generation.sampling import Sampler, generate_tokens
from composer_bert.hf.export import export_classifier, export_language_model
from composer_bert.hf.llama import is_llama
from composer_bert.hf.load import init_state_from_hf, load_pretrained
from composer_bert.models.composer_model import ComposerCausalLM, ComposerClassifier
from tests.generation.generation_helpers import (
    LLAMA_LIKE,
    SEP,
    causal_checkpoint,
    causal_config,
    export_cli,
    generate_cli,
    save_word_tokenizer,
)
from tests.helpers import BERT_SPECIALS
from tests.hf.hf_helpers import WITHOUT_COMPOSER_BERT, perturbed

TOLERANCE = 1e-5
PROMPT = "the big dog ran in the park"
CASED_PROMPT = "The big Dog ran,  in the Park"  # for the byte-level tokenizer, which keeps case and spaces
NEW_TOKENS = 24
LLAMA = causal_config(**LLAMA_LIKE)
LLAMA_UNTIED = dataclasses.replace(LLAMA, tie_embeddings=False)
ALIBI = causal_config(position_embedding="alibi", qk_norm=True)  # LayerNorm, GEGLU, QK-norm: not Llama, remote code
CLS = BERT_SPECIALS.index("[CLS]")
PAIRS = (["the cat sat on the mat", "a dog ran"], ["it was red", "the big blue dog sat in the park"])

# Runs in a fresh interpreter where importing composer_bert fails: the exports must stand on their own.
LOADER = WITHOUT_COMPOSER_BERT + """
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
jobs, results = json.loads(sys.argv[1]), {}
input_ids = torch.load(jobs["inputs"])
with torch.no_grad():
    for name in ("llama", "untied", "remote"):
        model = AutoModelForCausalLM.from_pretrained(jobs[name], trust_remote_code=name == "remote").eval()
        results[name + "_class"] = type(model).__module__ + "." + type(model).__name__
        results[name + "_logits"] = model(input_ids).logits
    ids = AutoTokenizer.from_pretrained(jobs["llama"])(jobs["prompt"], return_tensors="pt")["input_ids"]
    results["prompt_ids"] = ids[0].tolist()
    results["remote_greedy"] = model.generate(ids, max_new_tokens=jobs["new"], do_sample=False)[0, ids.shape[1]:].tolist()
for name, prompt in (("llama", jobs["prompt"]), ("bytelevel", jobs["cased_prompt"])):
    generator = pipeline("text-generation", model=jobs[name])
    out = generator(prompt, max_new_tokens=jobs["new"], do_sample=False, return_tensors=True)
    results[name + "_pipeline_ids"] = out[0]["generated_token_ids"]
    results[name + "_pipeline_text"] = generator(prompt, max_new_tokens=jobs["new"], do_sample=False)[0]["generated_text"]
from transformers import AutoModelForSequenceClassification
for name in ("llama_classifier", "remote_classifier"):  # a padded batch of pairs, encoded by the export's tokenizer
    tokenizer = AutoTokenizer.from_pretrained(jobs[name])
    batch = tokenizer(*jobs["pairs"], padding=True, return_tensors="pt")
    model = AutoModelForSequenceClassification.from_pretrained(jobs[name], trust_remote_code=name.startswith("remote"))
    results[name + "_class"] = type(model).__module__ + "." + type(model).__name__
    results[name + "_batch"] = dict(batch)
    with torch.no_grad():
        results[name + "_logits"] = model.eval()(**batch).logits
results["composer_bert_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "composer_bert")
torch.save(results, jobs["results"])
"""


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return save_word_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def llama_checkpoint(tokenizer_dir, tmp_path_factory) -> tuple[Path, ComposerCausalLM]:
    return causal_checkpoint(tmp_path_factory.mktemp("ckpt") / "llama.pt", LLAMA, tokenizer_dir, seed=0)


@pytest.fixture(scope="module")
def exports(llama_checkpoint, tokenizer_dir, tmp_path_factory) -> dict[str, Path]:
    """The Llama-like checkpoint exported through the CLI; an untied Llama and an ALiBi model through the library."""
    root = tmp_path_factory.mktemp("exports")
    printed = export_cli("--checkpoint", str(llama_checkpoint[0]), "--out", str(root / "llama"))
    assert printed == f"exported causal LM as transformers LlamaForCausalLM to {root / 'llama'}\n"
    torch.manual_seed(2)
    untied = perturbed(ComposerCausalLM(LLAMA_UNTIED).model, seed=3)
    torch.manual_seed(4)
    alibi = perturbed(ComposerCausalLM(ALIBI).model, seed=5)
    bytelevel_tokenizer = root / "bytelevel_tokenizer"
    save_pretrained_fast(train_tokenizer(synthetic_documents(300, seed=0), 320, "bytelevel", False), bytelevel_tokenizer)
    bytelevel = dataclasses.replace(LLAMA, vocab_size=320)
    checkpoint, _ = causal_checkpoint(root / "bytelevel.pt", bytelevel, bytelevel_tokenizer, seed=9)
    export_cli("--checkpoint", str(checkpoint), "--out", str(root / "bytelevel"))
    classifiers = {}
    for name, cfg in (("llama_classifier", LLAMA), ("remote_classifier", ALIBI)):
        torch.manual_seed(6)
        classifiers[name] = perturbed(ComposerClassifier(cfg, 3).model, seed=7).eval()
        export_classifier(classifiers[name], cfg, 3, tokenizer_dir, root / name, label_names=["x", "y", "z"])
    return {
        **{name: root / name for name in classifiers},
        "classifiers": classifiers,
        "llama": root / "llama",
        "bytelevel": root / "bytelevel",
        "bytelevel_checkpoint": checkpoint,
        "untied": export_language_model(untied, LLAMA_UNTIED, tokenizer_dir, root / "untied"),
        "remote": export_language_model(alibi, ALIBI, tokenizer_dir, root / "remote"),
        "models": {"untied": untied, "remote": alibi},
    }


@pytest.fixture(scope="module")
def input_ids() -> torch.Tensor:
    return torch.randint(5, LLAMA.vocab_size, (2, 20), generator=torch.Generator().manual_seed(6))


@pytest.fixture(scope="module")
def loaded(exports, input_ids, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("loader")
    torch.save(input_ids, work / "inputs.pt")
    names = ("llama", "untied", "remote", "bytelevel", "llama_classifier", "remote_classifier")
    jobs = {name: str(exports[name]) for name in names}
    jobs.update(inputs=str(work / "inputs.pt"), results=str(work / "results.pt"), new=NEW_TOKENS, pairs=PAIRS)
    jobs.update(prompt=PROMPT, cased_prompt=CASED_PROMPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(work / "hf"), "HF_MODULES_CACHE": str(work / "mods")}
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOADER, json.dumps(jobs)],
        cwd=work, stdin=subprocess.DEVNULL, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(work / "results.pt", weights_only=False)


@pytest.mark.slow
def test_llama_like_model_exports_as_transformers_llama(exports, llama_checkpoint, loaded, input_ids):
    assert is_llama(LLAMA) and not is_llama(ALIBI)
    assert not list(exports["llama"].glob("*.py")), "no remote code"
    config = json.loads((exports["llama"] / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert config["rms_norm_eps"] == LLAMA.norm_eps and config["vocab_size"] == LLAMA.vocab_size
    assert config["tie_word_embeddings"] is True and config["eos_token_id"] == 3 and config.get("bos_token_id") is None
    assert loaded["composer_bert_modules"] == []
    assert loaded["llama_class"] == "transformers.models.llama.modeling_llama.LlamaForCausalLM"
    with torch.no_grad():
        ours = llama_checkpoint[1].model(input_ids)
    assert loaded["llama_logits"].shape == ours.shape == (*input_ids.shape, LLAMA.vocab_size)
    torch.testing.assert_close(loaded["llama_logits"], ours, atol=TOLERANCE, rtol=0)
    with torch.no_grad():
        untied = exports["models"]["untied"](input_ids)
    torch.testing.assert_close(loaded["untied_logits"], untied, atol=TOLERANCE, rtol=0)


def test_pipeline_greedy_continuation_equals_generate_py(exports, llama_checkpoint, loaded, tokenizer_dir):
    from transformers import PreTrainedTokenizerFast

    ours_text = generate_cli(
        f"checkpoint={llama_checkpoint[0]}", f"prompt={PROMPT}", f"max_new_tokens={NEW_TOKENS}", "temperature=0"
    )
    prompt_ids = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))(PROMPT, add_special_tokens=False)
    assert loaded["prompt_ids"] == prompt_ids["input_ids"], "the export's tokenizer adds no [CLS]/[SEP]"
    model = llama_checkpoint[1].model
    ours = list(generate_tokens(model, loaded["prompt_ids"], NEW_TOKENS, Sampler(0.0), eos_token_id=SEP))
    assert loaded["llama_pipeline_ids"] == loaded["prompt_ids"] + ours  # both stop after the end-of-text token
    # The text is the decoded ids. (transformers 5's pipeline decodes the continuation apart from the prompt and
    # glues the two, which loses the space a WordPiece decoder puts between them: its text, not its tokens, differs.
    # A byte-level tokenizer holds the spaces in its tokens: the next test.)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(exports["llama"]))
    assert ours_text == tokenizer.decode(loaded["llama_pipeline_ids"], skip_special_tokens=True) + "\n"
    text = loaded["llama_pipeline_text"]
    assert text.startswith(PROMPT) and len(ours_text) - len(text) in (1, 2)


def test_with_a_byte_level_tokenizer_the_pipeline_text_is_exactly_ours(exports, loaded):
    """data_prep/train_tokenizer.py --model bytelevel: case and spaces survive, and so does the text the
    pipeline glues from prompt and separately decoded continuation, on transformers 4 and 5 alike."""
    args = [f"prompt={CASED_PROMPT}", f"max_new_tokens={NEW_TOKENS}", "temperature=0"]
    ours_text = generate_cli(f"checkpoint={exports['bytelevel_checkpoint']}", *args)
    assert ours_text.startswith(CASED_PROMPT) and len(ours_text) > len(CASED_PROMPT) + 1
    assert ours_text == loaded["bytelevel_pipeline_text"] + "\n"
    assert generate_cli(f"checkpoint={exports['bytelevel']}", *args) == ours_text


def test_remote_code_causal_export_matches_ours(exports, loaded, input_ids):
    files = {path.name for path in exports["remote"].iterdir()}
    assert {"modeling_composer_bert.py", "causal.py", "layers.py", "config.json"} <= files
    config = json.loads((exports["remote"] / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_composer_bert.ComposerBertForCausalLM"
    assert config["objective"] == "causal"
    assert loaded["remote_class"].startswith("transformers_modules.")
    model = exports["models"]["remote"]
    with torch.no_grad():
        torch.testing.assert_close(loaded["remote_logits"], model(input_ids), atol=TOLERANCE, rtol=0)
    greedy = list(generate_tokens(model, loaded["prompt_ids"], NEW_TOKENS, Sampler(0.0), eos_token_id=SEP))
    assert loaded["remote_greedy"] == greedy


def test_llama_export_reads_back_for_generation_and_training(exports, llama_checkpoint, input_ids):
    pretrained = load_pretrained(str(exports["llama"]))
    assert is_llama(pretrained.model_config)
    assert dataclasses.replace(pretrained.model_config, pad_vocab_multiple=LLAMA.pad_vocab_multiple) == LLAMA
    args = [f"prompt={PROMPT}", f"max_new_tokens={NEW_TOKENS}", "temperature=0"]
    from_export = generate_cli(f"checkpoint={exports['llama']}", *args)
    assert from_export == generate_cli(f"checkpoint={llama_checkpoint[0]}", *args)
    # model.init_from=hf:DIR of a causal recipe: the recipe's padding multiple, same logits
    recipe = dataclasses.replace(LLAMA, pad_vocab_multiple=64)
    state = init_state_from_hf(f"hf:{exports['llama']}", recipe, tokenizer_fingerprint(exports["llama"]))
    model = ComposerCausalLM(recipe)
    model.model.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected = llama_checkpoint[1].model(input_ids)
        torch.testing.assert_close(model.eval().model(input_ids), expected, atol=TOLERANCE, rtol=0)
    with pytest.raises(UserError, match="model.ffn_type is 'geglu'"):
        init_state_from_hf(f"hf:{exports['llama']}", dataclasses.replace(recipe, ffn_type="geglu"), "x")
    with pytest.raises(UserError, match="a model with objective 'causal' starts from a LlamaForCausalLM folder"):
        init_state_from_hf(f"hf:{exports['remote']}", recipe, "x")


@pytest.mark.slow
def test_pretraining_continues_from_a_llama_export(tiny_causal_shards, tmp_path):
    """model.init_from=hf:DIR through recipes/pretrain.py: a gpt-tiny run starts from the export's weights.

    The exported model's logits are scaled up (its final norm's weight x30), so its loss is far above ln(vocab),
    where a freshly initialized model starts: the first logged loss tells which weights the run started from.
    """
    from transformers import PreTrainedTokenizerFast

    from composer_bert.data.contract import read_manifest
    from tests.helpers import run_cli, tiny_args, train_losses

    tokenizer_dir = tiny_causal_shards.parent / "tokenizer"
    vocab_size = read_manifest(tiny_causal_shards)["tokenizer"]["vocab_size"]
    recipe = dataclasses.replace(
        LLAMA, vocab_size=vocab_size, hidden_size=64, num_heads=2, intermediate_size=128, pad_vocab_multiple=64
    )
    assert len(PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))) == vocab_size
    torch.manual_seed(7)
    source = perturbed(ComposerCausalLM(recipe).model, seed=8)
    with torch.no_grad():
        source.bert.final_norm.weight.mul_(30.0)  # very confident logits: a loss no fresh init comes near
    export = export_language_model(source, recipe, tokenizer_dir, tmp_path / "llama")
    shards = tmp_path / "shards"  # built with the export's tokenizer, as init_from requires
    step = run_cli(
        "data_prep/convert_dataset.py", "--source", "synthetic:1500", "--tokenizer", str(export), "--seq-len", "64",
        "--out", str(shards), "--val-fraction", "0.05", "--no-ratio-filter", "--objective", "causal", timeout=300,
    )  # fmt: skip
    assert step.returncode == 0, step.stderr[-3000:]
    run = tmp_path / "run"
    args = tiny_args(shards, run, "max_duration=2ba", "eval_interval=2ba", f"model.init_from=hf:{export}", objective="causal")
    result = run_cli("recipes/pretrain.py", *args, "model.num_layers=2", "model.num_heads=2", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"initialized the model from hf:{export}" in result.stderr
    first_loss = train_losses(run)[1]
    assert first_loss > 3 * math.log(vocab_size), f"loss {first_loss:.2f}: the run did not start from the export"


def test_causal_classifiers_export_as_llama_or_remote_code_with_our_logits(exports, loaded):
    """Our causal trunk's classifier (last real token, linear head without bias), read in a process without
    composer_bert: Llama-shaped as transformers' own LlamaForSequenceClassification, the others as remote code;
    the export's tokenizer writes each pair as `a [SEP] b [SEP]`, as GLUE finetuning does."""
    assert loaded["llama_classifier_class"] == "transformers.models.llama.modeling_llama.LlamaForSequenceClassification"
    assert loaded["remote_classifier_class"].startswith("transformers_modules.")
    config = json.loads((exports["llama_classifier"] / "config.json").read_text())
    assert config["id2label"] == {"0": "x", "1": "y", "2": "z"} and config["pad_token_id"] == 0
    for name in ("llama_classifier", "remote_classifier"):
        batch = loaded[f"{name}_batch"]
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        assert not mask.all()  # one row padded: the classifier reads each row's own last token
        ends = [int(row[length - 1]) for row, length in zip(input_ids, mask.sum(-1), strict=True)]
        assert ends == [SEP, SEP] and CLS not in input_ids[:, 0].tolist()  # a [SEP] b [SEP], no [CLS]
        with torch.no_grad():
            ours = exports["classifiers"][name](input_ids, mask)
        assert loaded[f"{name}_logits"].shape == ours.shape == (2, 3)
        torch.testing.assert_close(loaded[f"{name}_logits"], ours, atol=TOLERANCE, rtol=0)
