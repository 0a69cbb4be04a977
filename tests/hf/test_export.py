"""Hugging Face export: remote-code and plain-BERT exports load in `transformers` and compute our logits."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: nothing here may reach the hub

import ast
import contextlib
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertForMaskedLM,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    pipeline,
)

from composer_bert.errors import UserError
from composer_bert.hf.export import export_checkpoint, export_classifier, export_language_model
from composer_bert.hf.load import load_exported, load_pretrained
from composer_bert.models.bert import BertForMaskedLM as OurBertForMaskedLM
from composer_bert.models.composer_model import ComposerClassifier, ComposerMLM
from composer_bert.models.config import ModelConfig
from composer_bert.models.hf_bert import is_plain_bert
from tests.helpers import (
    BERT_SPECIALS,
    REPO,
    load_script_main,
    run_cli,
    save_bert_tokenizer,
    save_mlm_checkpoint,
    tiny_model_config,
)
from tests.hf.hf_helpers import WITHOUT_COMPOSER_BERT, perturbed, save_checkpoint_dict

WORDS = "the a cat dog sat ran on in mat park big small red blue ##s ##ed and was is it".split()
SENTENCES = ["the cat sat on the mat", "a big dog ran"]  # unequal lengths: the batch is padded
TOLERANCE = 1e-5
CLASS_NAMES = ("negative", "neutral", "positive")

# pre-norm, GEGLU, scaled sinusoidal positions, no biases (the defaults), tiny
CRAMMED = tiny_model_config(len(BERT_SPECIALS) + len(WORDS), intermediate_size=48)
ROTARY_RMS = replace(CRAMMED, position_embedding="rotary", norm_type="rmsnorm", ffn_type="swiglu", type_vocab_size=0)
ALIBI = replace(CRAMMED, position_embedding="alibi")
PLAIN_BERT = replace(
    CRAMMED,
    norm_placement="post",
    final_norm=False,
    ffn_type="gelu",
    qkv_bias=True,
    linear_bias=True,
    position_embedding="learned",
    sparse_prediction=False,
)

# Runs in a fresh interpreter where importing composer_bert fails: the export must stand on its own.
REMOTE_LOADER = WITHOUT_COMPOSER_BERT + """
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline
jobs, results = json.loads(sys.argv[1]), {}
inputs = torch.load(jobs["inputs"])
with torch.no_grad():
    mlm = AutoModelForMaskedLM.from_pretrained(jobs["mlm"], trust_remote_code=True).eval()
    results["mlm_logits"] = mlm(**inputs).logits
    alibi = AutoModelForMaskedLM.from_pretrained(jobs["alibi"], trust_remote_code=True).eval()
    results["alibi_logits"] = alibi(**inputs).logits
    results["mlm_class"] = type(mlm).__module__ + "." + type(mlm).__name__
    fresh_head = AutoModelForSequenceClassification.from_pretrained(jobs["mlm"], trust_remote_code=True, num_labels=3)
    results["fresh_head_logits"] = fresh_head.eval()(**inputs).logits
    results["fresh_pooler"] = dict(fresh_head.model.pooler.named_parameters())
    classifier = AutoModelForSequenceClassification.from_pretrained(jobs["classifier"], trust_remote_code=True).eval()
    results["classifier_logits"] = classifier(**inputs).logits
    results["classifier_labels"] = classifier.config.id2label
    models = {"mlm": mlm, "alibi": alibi, "classifier": classifier}
    results["buffers"] = {name: dict(model.named_buffers()) for name, model in models.items()}
    results["pair_inputs"] = {
        name: sorted(AutoTokenizer.from_pretrained(jobs[name], trust_remote_code=True)("the cat", "a dog"))
        for name in ("mlm", "classifier")
    }
    fill_mask = pipeline("fill-mask", model=jobs["mlm"], trust_remote_code=True)
    results["fill_mask"] = fill_mask("the [MASK] sat on the mat", top_k=3)
results["composer_bert_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "composer_bert")
torch.save(results, jobs["results"])
"""


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A fixed-vocabulary WordPiece tokenizer with BERT's special tokens and post-processor."""
    return save_bert_tokenizer(tmp_path_factory.mktemp("tokenizer"), WORDS)


@pytest.fixture(scope="module")
def batch(tokenizer_dir) -> dict[str, torch.Tensor]:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    encoded = tokenizer(SENTENCES, padding=True, return_tensors="pt", return_token_type_ids=True)
    assert not encoded["attention_mask"].all(), "the test batch must contain padding"
    return dict(encoded)


def assert_close_at_tokens(logits: torch.Tensor, expected: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
    """Equal at real tokens; at padding, transformers' BERT computes values ours leaves out (both are unused)."""
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory, tokenizer_dir) -> tuple[Path, ComposerMLM]:
    """Two real Composer Trainer steps of a crammed-style MLM, saved with RunMetadata."""
    torch.manual_seed(0)
    composer_model = ComposerMLM(CRAMMED)
    perturbed(composer_model.model, seed=1).train()
    samples = []
    for index in range(4):
        input_ids = torch.randint(len(BERT_SPECIALS), CRAMMED.vocab_size, (16,))
        labels = torch.full((16,), -100)
        labels[index + 1 :: 4] = input_ids[index + 1 :: 4]
        input_ids[index + 1 :: 4] = BERT_SPECIALS.index("[MASK]")
        samples.append({"input_ids": input_ids, "attention_mask": torch.ones(16, dtype=torch.long), "labels": labels})
    save_folder = tmp_path_factory.mktemp("pretrain")
    save_mlm_checkpoint(composer_model, CRAMMED, tokenizer_dir, samples, save_folder, batch_size=2, batches=2)
    checkpoint = save_folder / "latest-rank0.pt"
    assert checkpoint.exists(), sorted(p.name for p in save_folder.iterdir())
    return checkpoint, composer_model.eval()


def export_main(argv: list[str]) -> None:
    """recipes/export_hf.py's `main(argv)`, run in this process (no second torch import)."""
    load_script_main(REPO / "recipes" / "export_hf.py")(argv)


@pytest.fixture(scope="module")
def mlm_export(trained_checkpoint, tmp_path_factory) -> Path:
    """The trained checkpoint exported through the CLI."""
    out = tmp_path_factory.mktemp("exports") / "crammed-mlm"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        export_main(["--checkpoint", str(trained_checkpoint[0]), "--out", str(out)])
    assert printed.getvalue() == f"exported masked LM to {out}\n"
    return out


@pytest.fixture(scope="module")
def classifier(tokenizer_dir) -> ComposerClassifier:
    torch.manual_seed(2)
    return perturbed(ComposerClassifier(ROTARY_RMS, num_labels=3), seed=3)


@pytest.fixture(scope="module")
def classifier_export(classifier, tokenizer_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "classifier"
    return export_classifier(classifier, ROTARY_RMS, 3, tokenizer_dir, out, label_names=CLASS_NAMES)


@pytest.fixture(scope="module")
def alibi_mlm() -> OurBertForMaskedLM:
    torch.manual_seed(10)
    return perturbed(OurBertForMaskedLM(ALIBI), seed=11)


@pytest.fixture(scope="module")
def alibi_export(alibi_mlm, tokenizer_dir, tmp_path_factory) -> Path:
    return export_language_model(alibi_mlm, ALIBI, tokenizer_dir, tmp_path_factory.mktemp("exports") / "alibi")


@pytest.fixture(scope="module")
def remote_results(mlm_export, classifier_export, alibi_export, batch, tmp_path_factory) -> dict:
    """Load the remote-code exports in an interpreter that cannot import composer_bert."""
    work = tmp_path_factory.mktemp("remote")
    torch.save(batch, work / "inputs.pt")
    jobs = {
        "mlm": str(mlm_export),
        "classifier": str(classifier_export),
        "alibi": str(alibi_export),
        "inputs": str(work / "inputs.pt"),
        "results": str(work / "results.pt"),
    }
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(work / "hf_home"),
        "HF_MODULES_CACHE": str(work / "modules"),
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", REMOTE_LOADER, json.dumps(jobs)],
        cwd=work,
        stdin=subprocess.DEVNULL,  # transformers asks before running remote code that was not trusted: never wait
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(work / "results.pt", weights_only=False)


# ---------------------------------------------------------------------------------------------- remote code


def test_export_directory_is_self_contained(mlm_export):
    files = {path.name for path in mlm_export.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    assert {"configuration_composer_bert.py", "modeling_composer_bert.py", "bert.py", "layers.py"} <= files
    assert not any(name.startswith(".") for name in files)
    config = json.loads((mlm_export / "config.json").read_text())
    assert config["model_type"] == "composer_bert" and config["architectures"] == ["ComposerBertForMaskedLM"]
    assert ModelConfig(**{k: config[k] for k in ModelConfig.__dataclass_fields__}) == CRAMMED
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers"}
    for source in mlm_export.glob("*.py"):
        for module in _unguarded_absolute_imports(source.read_text()):
            assert module in allowed, f"{source.name} imports {module}, which a plain transformers user may lack"


def _unguarded_absolute_imports(source: str) -> set[str]:
    """Top-level package of every absolute import outside try blocks (transformers' own check skips those)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Try):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


@pytest.mark.slow
def test_remote_mlm_matches_ours_without_composer_bert(remote_results, trained_checkpoint, batch):
    assert remote_results["composer_bert_modules"] == []
    assert remote_results["mlm_class"].startswith("transformers_modules.")
    with torch.no_grad():
        ours = trained_checkpoint[1].model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert remote_results["mlm_logits"].shape == ours.shape == (*batch["input_ids"].shape, CRAMMED.vocab_size)
    torch.testing.assert_close(remote_results["mlm_logits"], ours, atol=TOLERANCE, rtol=0)


def test_fill_mask_pipeline_predicts_tokens(remote_results):
    predictions = remote_results["fill_mask"]
    assert len(predictions) == 3
    for prediction in predictions:
        assert prediction["token_str"] and prediction["sequence"].endswith("sat on the mat")
        assert 0.0 < prediction["score"] <= 1.0


def test_mlm_export_loads_as_classifier_with_fresh_head(remote_results, batch):
    assert remote_results["fresh_head_logits"].shape == (len(SENTENCES), 3)
    assert torch.isfinite(remote_results["fresh_head_logits"]).all()
    pooler = remote_results["fresh_pooler"]  # not in the checkpoint: initialized as ours, normal(0, init_std)
    assert 0.8 * CRAMMED.init_std < pooler["weight"].std() < 1.2 * CRAMMED.init_std
    assert not pooler["bias"].any()


def test_classifier_export_matches_ours(remote_results, classifier, batch):
    assert remote_results["classifier_labels"] == dict(enumerate(CLASS_NAMES))
    with torch.no_grad():
        ours = classifier.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    torch.testing.assert_close(remote_results["classifier_logits"], ours, atol=TOLERANCE, rtol=0)


def test_remote_models_recompute_their_fixed_buffers(remote_results, trained_checkpoint, classifier, alibi_mlm, batch):
    """Sinusoid table, rotary frequencies and ALiBi slopes are never saved; loading must rebuild them exactly.

    transformers 5 materializes such buffers uninitialized and leaves them to `_init_weights`: a gap there is NaN.
    """
    ours = {"mlm": trained_checkpoint[1].model, "classifier": classifier.model, "alibi": alibi_mlm}
    for name, model in ours.items():
        expected = {f"model.{key}": buffer for key, buffer in model.named_buffers()}
        assert expected and remote_results["buffers"][name].keys() == expected.keys(), name
        for key, buffer in expected.items():
            torch.testing.assert_close(remote_results["buffers"][name][key], buffer, atol=0, rtol=0, msg=key)
    with torch.no_grad():
        expected_logits = alibi_mlm(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    torch.testing.assert_close(remote_results["alibi_logits"], expected_logits, atol=TOLERANCE, rtol=0)


def test_exported_tokenizer_gives_segment_ids_when_the_model_reads_them(remote_results):
    """transformers 5's generic tokenizer returns token_type_ids only when told to; the export tells it."""
    assert remote_results["pair_inputs"]["mlm"] == ["attention_mask", "input_ids", "token_type_ids"]
    assert remote_results["pair_inputs"]["classifier"] == ["attention_mask", "input_ids"]  # type_vocab_size=0


# ---------------------------------------------------------------------------------------------- plain BERT


def test_plain_bert_exports_as_transformers_bert(tokenizer_dir, batch, tmp_path):
    assert is_plain_bert(PLAIN_BERT)
    torch.manual_seed(4)
    ours = perturbed(OurBertForMaskedLM(PLAIN_BERT), seed=5)
    out = export_language_model(ours, PLAIN_BERT, tokenizer_dir, tmp_path / "bert")
    assert not list(out.glob("*.py"))
    hf_model = AutoModelForMaskedLM.from_pretrained(str(out)).eval()  # no trust_remote_code
    assert type(hf_model) is BertForMaskedLM and hf_model.config.model_type == "bert"
    with torch.no_grad():
        assert_close_at_tokens(hf_model(**batch).logits, ours(**batch), batch)
    predictions = pipeline("fill-mask", model=str(out))("the [MASK] sat on the mat", top_k=2)
    assert len(predictions) == 2 and all(p["token_str"] for p in predictions)


def test_plain_bert_regressor_checkpoint_exports_as_transformers_bert(tokenizer_dir, batch, tmp_path):
    torch.manual_seed(6)
    regressor = perturbed(ComposerClassifier(PLAIN_BERT, num_labels=1), seed=7)
    checkpoint = save_checkpoint_dict(tmp_path / "stsb.pt", regressor, PLAIN_BERT, tokenizer_dir)
    out, kind = export_checkpoint(str(checkpoint), tmp_path / "stsb")
    assert kind == "classifier with 1 label"
    hf_model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert type(hf_model) is BertForSequenceClassification and hf_model.config.problem_type == "regression"
    with torch.no_grad():
        torch.testing.assert_close(hf_model(**batch).logits, regressor(batch), atol=TOLERANCE, rtol=0)
    encoder = load_exported(out).state_dict  # a finetuned classifier can seed another finetune: encoder only
    assert encoder.keys() == regressor.model.bert.state_dict(prefix="bert.").keys()


# ---------------------------------------------------------------------------------------------- reading back


def test_load_exported_round_trips_remote_code_export(mlm_export, trained_checkpoint):
    pretrained = load_pretrained(str(mlm_export))  # the GLUE recipe's entry point: dispatches on a directory
    assert pretrained.model_config == CRAMMED and pretrained.tokenizer_dir == mlm_export
    expected = trained_checkpoint[1].model.state_dict()
    assert pretrained.state_dict.keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(pretrained.state_dict[key], tensor, atol=0, rtol=0, msg=key)


def test_glue_reads_an_exports_tokenizer_without_asking_about_remote_code(mlm_export, capsys):
    """transformers 5's AutoTokenizer reads config.json first and asks before running the code it names."""
    from composer_bert.glue.data import check_tokenizer, load_tokenizer

    capsys.readouterr()
    tokenizer = load_tokenizer(mlm_export)
    assert "custom code" not in capsys.readouterr().out
    check_tokenizer(tokenizer, CRAMMED.vocab_size)
    assert tokenizer("the cat", "a dog", return_token_type_ids=True)["token_type_ids"][-1] == 1


@pytest.mark.slow
def test_checkpoint_format_does_not_import_the_hf_package():
    """`composer_bert.run.checkpoint` owns the .pt format; `hf` reads it, never the reverse (no import cycle)."""
    probe = (
        "import sys, composer_bert.run.checkpoint; "
        "print(sorted(m for m in sys.modules if m.startswith('composer_bert.hf')))"
    )
    loaded = run_cli("-c", probe, timeout=120)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout == "[]\n"


def test_pretraining_checkpoint_reads_as_no_classifier(trained_checkpoint):
    pretrained = load_pretrained(str(trained_checkpoint[0]))  # a file, not a directory: Composer's format
    assert pretrained.model_config == CRAMMED and pretrained.classifier is None
    assert pretrained.state_dict.keys() == trained_checkpoint[1].model.state_dict().keys()


def test_load_exported_round_trips_plain_bert_export(tokenizer_dir, batch, tmp_path):
    torch.manual_seed(8)
    ours = perturbed(OurBertForMaskedLM(PLAIN_BERT), seed=9)
    out = export_language_model(ours, PLAIN_BERT, tokenizer_dir, tmp_path / "bert")
    pretrained = load_exported(out)
    assert is_plain_bert(pretrained.model_config)
    reloaded = OurBertForMaskedLM(pretrained.model_config)
    reloaded.load_state_dict(pretrained.state_dict, strict=True)
    with torch.no_grad():
        assert_close_at_tokens(reloaded.eval()(**batch), ours(**batch), batch)


def test_load_exported_classifier_gives_its_encoder(classifier_export, classifier):
    pretrained = load_exported(classifier_export)
    assert pretrained.model_config == ROTARY_RMS
    assert pretrained.state_dict and all(key.startswith("bert.") for key in pretrained.state_dict)
    fresh = ComposerClassifier(pretrained.model_config, num_labels=2)
    fresh.load_encoder_state_dict(pretrained.state_dict)
    for key, tensor in classifier.model.bert.state_dict().items():
        torch.testing.assert_close(fresh.model.bert.state_dict()[key], tensor, atol=0, rtol=0, msg=key)


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_checkpoint_is_one_line_cli_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("error: checkpoint") and "missing.pt" in stderr
    assert not (tmp_path / "x").exists()


def test_bad_inputs_raise_user_errors(tmp_path, tokenizer_dir, trained_checkpoint):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable Composer checkpoint"):
        export_checkpoint(str(garbage), tmp_path / "out")
    with pytest.raises(UserError, match="is a directory"):
        export_checkpoint(str(tmp_path), tmp_path / "out")
    with pytest.raises(UserError, match="has no config.json"):
        load_exported(tmp_path)
    mlm = trained_checkpoint[1]
    with pytest.raises(UserError, match="weights do not fit the model config"):
        export_language_model(mlm, replace(CRAMMED, num_layers=3), tokenizer_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path, tokenizer_dir, trained_checkpoint):
    out = tmp_path / "export"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        export_language_model(trained_checkpoint[1], CRAMMED, tokenizer_dir, out)
    with pytest.raises(UserError, match="not a previous output"):  # no config.json: never an export, keep it
        export_language_model(trained_checkpoint[1], CRAMMED, tokenizer_dir, out, overwrite=True)
    (out / "config.json").write_text("{}")
    export_language_model(trained_checkpoint[1], CRAMMED, tokenizer_dir, out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"], "staging directories were left behind"


def test_an_output_that_is_a_file_is_named_as_one_before_the_checkpoint_is_read(tmp_path):
    out = tmp_path / "export"
    out.write_text("not an export")
    for overwrite in (False, True):  # the checkpoint does not exist: the output is checked first
        with pytest.raises(UserError, match="is a file; --out takes a directory"):
            export_checkpoint(str(tmp_path / "missing.pt"), out, overwrite=overwrite)
    assert out.read_text() == "not an export"
