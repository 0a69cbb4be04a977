"""The two supported stacks of `make test`: how the current one is installed, and exports that cross between them.

An export written under one transformers major must read under the other. The other stack's interpreter is `$COMPOSER_BERT_OTHER_PYTHON`, or else whichever of the repo's `.venv`
(pinned stack) and `.venv-current` (current stack) this run is not using; `make test` builds both before
either suite runs, so each suite runs this test, in both directions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from packaging.requirements import Requirement
from transformers import AutoTokenizer

from composer_bert.glue.data import check_tokenizer, load_tokenizer
from composer_bert.hf.export import export_language_model
from composer_bert.hf.load import load_exported
from composer_bert.models.bert import BertForMaskedLM
from tests.helpers import BERT_SPECIALS, REPO, missing_capability, run_cli, save_bert_tokenizer, tiny_model_config
from tests.hf.hf_helpers import WITHOUT_COMPOSER_BERT

WORDS = "the a cat dog sat ran on in mat big ##s and".split()  # a fixed vocabulary: no tokenizer training
PAIR = ("the cats sat on a mat", "a big dog ran")
CONFIG = tiny_model_config(len(BERT_SPECIALS) + len(WORDS), num_layers=1, intermediate_size=48, max_position_embeddings=32)

# Runs in the other stack's interpreter: read our export (tokenizer, and model as remote code), then write an
# export and a data_prep tokenizer directory of its own.
OTHER_SIDE = """
import json, sys
import torch, transformers
from tokenizers import Tokenizer
from transformers import AutoModelForMaskedLM, AutoTokenizer
from composer_bert.data.prep.tokenizer_training import save_pretrained_fast
from composer_bert.hf.export import export_language_model
from composer_bert.models.bert import BertForMaskedLM
from composer_bert.models.config import ModelConfig
job = json.loads(sys.argv[1])
pair = AutoTokenizer.from_pretrained(job["ours"], trust_remote_code=True)(*job["pair"], return_tensors="pt")
with torch.no_grad():
    model = AutoModelForMaskedLM.from_pretrained(job["ours"], trust_remote_code=True).eval()
    torch.save(model(**pair).logits, job["their_logits"])
config = ModelConfig(**job["config"])
torch.manual_seed(0)
model = BertForMaskedLM(config)
export_language_model(model, config, job["tokenizer"], job["theirs"])
torch.save(model.state_dict(), job["theirs_state"])
save_pretrained_fast(Tokenizer.from_file(job["tokenizer"] + "/tokenizer.json"), job["their_tokenizer"])
print(json.dumps({"transformers": transformers.__version__, "pair": {k: v.tolist()[0] for k, v in pair.items()}}))
"""


def run_deps(*args: str) -> subprocess.CompletedProcess:
    """requirements/deps.py in this venv, as the Makefile runs it."""
    return run_cli("requirements/deps.py", *args, timeout=300)


def test_current_stack_lifts_only_composers_torch_and_transformers_pins():
    listed = run_deps("test")
    assert listed.returncode == 0, listed.stderr
    requirements = [Requirement(line) for line in listed.stdout.split()]
    names = {requirement.name.lower().replace("_", "-") for requirement in requirements}
    # Composer's and streaming's own requirements (mosaicml-cli: `import composer` needs it), ours, our test extra.
    assert {"mosaicml-cli", "torchmetrics", "torchvision", "xxhash", "omegaconf", "pytest", "ruff"} <= names
    assert not names & {"mosaicml", "mosaicml-streaming"}  # those two are installed --no-deps
    for requirement in requirements:
        if requirement.name == "torch" and str(requirement.specifier).startswith("=="):
            assert requirement.specifier.contains(torch.__version__.split("+")[0])  # the installed torch stays
        elif requirement.name in ("torch", "torchvision", "transformers"):
            assert not any(spec.operator == "<" and spec.version in ("2.7.1", "0.22.1", "5") for spec in requirement.specifier)
    no_deps = run_deps("--no-deps")
    assert no_deps.stdout.split() == ["mosaicml-streaming==0.13.0", "mosaicml==0.32.1"]


def test_this_stack_has_no_broken_requirement_but_the_lifted_pins():
    checked = run_deps("--check")
    assert checked.returncode == 0, checked.stderr


def other_stack_python() -> Path | None:
    named = os.environ.get("COMPOSER_BERT_OTHER_PYTHON")
    if named:
        return Path(named)
    here = Path(sys.prefix).resolve()
    for venv in (REPO / ".venv", REPO / ".venv-current"):
        python = venv / "bin" / "python"
        if python.exists() and venv.resolve() != here:
            return python
    return None


def major(version: str) -> int:
    return int(version.split(".")[0])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """BERT's WordPiece setup over a fixed vocabulary, saved by this stack's transformers."""
    return save_bert_tokenizer(tmp_path_factory.mktemp("tokenizer"), WORDS)


@pytest.mark.slow
def test_exports_cross_between_transformers_majors(tokenizer_dir, tmp_path, capsys):
    other = other_stack_python()
    if other is None:
        missing_capability("the other stack's venv is missing: `make test` builds .venv and .venv-current (or set "
                           "COMPOSER_BERT_OTHER_PYTHON)")
    torch.manual_seed(1)
    ours_model = BertForMaskedLM(CONFIG).eval()
    ours = export_language_model(ours_model, CONFIG, tokenizer_dir, tmp_path / "ours")
    files = {name: str(tmp_path / name) for name in ("theirs", "theirs_state", "their_logits", "their_tokenizer")}
    job = {"ours": str(ours), "pair": PAIR, "config": dataclasses.asdict(CONFIG), "tokenizer": str(tokenizer_dir)}
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "mods")}
    ran = subprocess.run(
        [str(other), "-c", OTHER_SIDE, json.dumps({**job, **files})],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    reply = json.loads(ran.stdout.splitlines()[-1])
    if major(reply["transformers"]) == major(transformers.__version__):
        pytest.skip(f"both stacks have transformers {major(transformers.__version__)}.x: nothing crosses a major")

    # Our export, read there: the tokenizer encodes as here (ids and segment ids), the model computes our logits.
    encoded = AutoTokenizer.from_pretrained(str(ours), trust_remote_code=True)(*PAIR, return_tensors="pt")
    assert reply["pair"] == {key: value.tolist()[0] for key, value in encoded.items()}
    assert 1 in reply["pair"]["token_type_ids"]
    with torch.no_grad():
        expected = ours_model(encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    torch.testing.assert_close(torch.load(files["their_logits"]), expected, atol=1e-5, rtol=0)

    # Their export and data_prep tokenizer, read here: tokenizers (also as GLUE loads them), config and weights.
    for directory in (files["theirs"], files["their_tokenizer"]):
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
        assert {key: value.tolist()[0] for key, value in tokenizer(*PAIR, return_tensors="pt").items()} == reply["pair"]
        capsys.readouterr()
        glue_tokenizer = load_tokenizer(directory)
        assert "custom code" not in capsys.readouterr().out  # transformers 5 asks before running an export's code
        check_tokenizer(glue_tokenizer, CONFIG.vocab_size)
        assert list(glue_tokenizer(*PAIR, return_token_type_ids=True)["token_type_ids"]) == reply["pair"]["token_type_ids"]
    pretrained = load_exported(files["theirs"])
    assert pretrained.model_config == CONFIG
    for key, tensor in torch.load(files["theirs_state"]).items():
        torch.testing.assert_close(pretrained.state_dict[key], tensor, atol=0, rtol=0, msg=key)


MODERNBERT_READER = WITHOUT_COMPOSER_BERT + """
import torch, transformers
from transformers import AutoModelForMaskedLM
folder, inputs, out = sys.argv[1:4]
model = AutoModelForMaskedLM.from_pretrained(folder).eval()
with torch.no_grad():
    torch.save(model(**torch.load(inputs)).logits, out)
print(json.dumps({"transformers": transformers.__version__, "class": type(model).__name__}))
"""


def test_a_modernbert_export_reads_under_the_other_major_without_our_code(tokenizer_dir, tmp_path):
    """A plain ModernBertForMaskedLM written here (transformers 4 or 5) computes our logits there, composer_bert
    blocked: its config (layer pattern, rotary bases) means the same to both majors."""
    from composer_bert.hf.modernbert import MODERNBERT_SWITCHES

    other = other_stack_python()
    if other is None:
        missing_capability("the other stack's venv is missing: `make test` builds .venv and .venv-current")
    cfg = dataclasses.replace(
        CONFIG, **MODERNBERT_SWITCHES, num_layers=3, global_attn_every_n_layers=2, local_attention=4, rope_theta=1e5,
        sparse_prediction=False,
    )  # fmt: skip
    torch.manual_seed(2)
    model = BertForMaskedLM(cfg).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    folder = export_language_model(model, cfg, tokenizer_dir, tmp_path / "modernbert")
    inputs = {"input_ids": torch.randint(5, cfg.vocab_size, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    inputs["attention_mask"][1, 9:] = 0
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    ran = subprocess.run(
        [str(other), "-I", "-c", MODERNBERT_READER, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    reply = json.loads(ran.stdout.splitlines()[-1])
    assert reply["class"] == "ModernBertForMaskedLM"
    with torch.no_grad():
        expected = model(inputs["input_ids"], inputs["attention_mask"])
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(torch.load(tmp_path / "out.pt")[real], expected[real], atol=1e-5, rtol=1e-5)
