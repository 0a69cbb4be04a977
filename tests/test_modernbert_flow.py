"""ModernBERT end to end on CPU, through the real scripts: a tiny random ModernBERT folder with a BPE tokenizer ->
shards built with that tokenizer -> continued pretraining from the folder (loss falls; SIGKILL, then the same
command resumes bit-exactly) -> plain ModernBertForMaskedLM export, loaded by transformers without our code ->
GLUE on the export through transformers' own ModernBertForSequenceClassification."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import transformers

from tests.glue.glue_helpers import RECIPE, RECIPE_CLI, sentence, write_tsv
from tests.helpers import PROBED_RECIPE, REPO, run_cli, train_losses
from tests.hf.hf_helpers import WITHOUT_COMPOSER_BERT
from tests.models.model_helpers import randomized
from tests.tokenizer_helpers import modernbert_tokenizer

pytestmark = pytest.mark.slow
SHAPE = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96, local_attention=16)
# The tiny recipe with ModernBERT's switches; the shape keys must equal the folder's (init_from checks each).
MODERNBERT_KEYS = [
    "model.hidden_size=64", "model.num_layers=4", "model.num_heads=4", "model.intermediate_size=96",
    "model.max_position_embeddings=128", "model.position_embedding=rotary", "model.rope_theta=160000",
    "model.local_rope_theta=10000", "model.global_attn_every_n_layers=3", "model.local_attention=16",
    "model.first_attn_norm=false", "model.type_vocab_size=0", "model.pad_token_id=400", "model.norm_eps=1e-5",
    "model.init_std=0.02",
]  # fmt: skip
EXPORT_LOADER = WITHOUT_COMPOSER_BERT + """
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline
folder, out = sys.argv[1], sys.argv[2]
model = AutoModelForMaskedLM.from_pretrained(folder).eval()
batch = AutoTokenizer.from_pretrained(folder)(["the cat sat on the mat", "a dog"], padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
fill = pipeline("fill-mask", model=folder)("the cat [MASK] on the mat", top_k=2)
torch.save({"class": type(model).__name__, "batch": dict(batch), "logits": logits, "fill": fill}, out)
"""


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Path:
    """The HF folder, its shards, and a pretraining run killed at batch 15 (checkpoint at 10) then resumed to 20."""
    root = tmp_path_factory.mktemp("modernbert")
    folder = modernbert_tokenizer(root / "hf")
    vocab = len(transformers.PreTrainedTokenizerFast.from_pretrained(str(folder)))
    config = transformers.ModernBertConfig(
        vocab_size=vocab, max_position_embeddings=128, pad_token_id=400, cls_token_id=402, sep_token_id=403,
        bos_token_id=402, eos_token_id=403, **SHAPE,
    )  # fmt: skip
    torch.manual_seed(0)
    randomized(transformers.ModernBertForMaskedLM(config)).save_pretrained(folder)
    shards = root / "shards"
    built = run_cli(
        "data_prep/convert_dataset.py", "--source", "synthetic:3000", "--tokenizer", folder, "--seq-len", 64,
        "--out", shards, "--val-fraction", "0.05", "--no-ratio-filter", "--no-progress", timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return root


def _pretrain_args(root: Path, run: str = "run") -> list[str]:
    return [
        "yamls/pretrain/tiny.yaml", f"data.local={root / 'shards'}", f"save_folder={root / run}",
        f"model.init_from=hf:{root / 'hf'}", *MODERNBERT_KEYS, "max_duration=20ba", "save_interval=10ba",
        "eval_interval=20ba", "global_train_batch_size=16", "device_train_microbatch_size=16",
        "eval_subset_num_batches=2", "loggers.progress_bar=false", "run_name=continue",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(flow) -> dict:
    args = _pretrain_args(flow)
    killed = run_cli("-c", PROBED_RECIPE, *args, env={"KILL_AT_BATCH": "15", "REPO": str(REPO)}, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run_cli("recipes/pretrain.py", *args, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = run_cli("recipes/pretrain.py", *_pretrain_args(flow, "straight"), timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    return {
        "straight": train_losses(flow / "straight"), "resumed": train_losses(flow / "run"), "first": killed,
        "second": resumed,
    }  # fmt: skip


def test_continued_pretraining_learns_and_resumes_bit_exactly(flow, pretrained):
    straight, resumed = pretrained["straight"], pretrained["resumed"]
    assert f"initialized the model from hf:{flow / 'hf'}" in pretrained["first"].stderr
    assert "initialized the model" not in pretrained["second"].stderr  # a resume keeps its own weights
    assert sorted(resumed) == sorted(straight) == list(range(20))
    assert [resumed[b] for b in range(10, 20)] == [straight[b] for b in range(10, 20)]  # from the batch-10 checkpoint
    assert sum(resumed[b] for b in range(15, 20)) < sum(resumed[b] for b in range(5))


def test_export_is_a_plain_modernbert_that_transformers_loads_without_our_code(flow, pretrained):
    out = flow / "export"
    exported = run_cli("recipes/export_hf.py", "--checkpoint", flow / "run" / "latest-rank0.pt", "--out", out)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "as transformers ModernBertForMaskedLM" in exported.stdout + exported.stderr
    assert not list(out.glob("*.py")) and json.loads((out / "config.json").read_text())["model_type"] == "modernbert"
    results = flow / "results.pt"
    loaded = run_cli("-I", "-c", EXPORT_LOADER, out, results, env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    got = torch.load(results, weights_only=False)
    assert got["class"] == "ModernBertForMaskedLM" and len(got["fill"]) == 2

    from composer_bert.hf.load import load_pretrained
    from composer_bert.models.bert import BertForMaskedLM

    checkpoint = load_pretrained(str(flow / "run" / "latest-rank0.pt"))
    ours = BertForMaskedLM(checkpoint.model_config).eval()
    ours.load_state_dict(checkpoint.state_dict)
    batch = got["batch"]
    with torch.no_grad():
        expected = ours(batch["input_ids"], batch["attention_mask"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got["logits"][real], expected[real], atol=1e-5, rtol=1e-5)

    glue = flow / "glue"
    rng = random.Random(0)
    for split, size in (("train", 32), ("dev", 16)):
        rows = [[text, str(int("good" in text))] for text in (sentence(rng) for _ in range(size))]
        write_tsv(glue / "SST-2" / f"{split}.tsv", rows, ["sentence", "label"])
    finetuned = run_cli(
        RECIPE_CLI, RECIPE, f"checkpoint=hf:{out}", f"save_folder={flow / 'glue-runs'}", "data.source=glue_dir",
        f"data.path={glue}", "tasks=[SST-2]", "seeds=[0]", "epochs=1", "max_seq_length=32", "progress_bar=false",
        env={"HF_HUB_OFFLINE": "1"}, timeout=600,
    )  # fmt: skip
    assert finetuned.returncode == 0, finetuned.stderr[-3000:]
    run = json.loads((flow / "glue-runs" / "runs" / "SST-2" / "seed0.json").read_text())
    assert 0.0 <= run["metrics"]["SST-2"]["accuracy"] <= 100.0 and "GLUE average:" in finetuned.stdout
