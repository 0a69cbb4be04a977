"""What release 0.1.0 wrote still works with today's code (tests/fixtures/README.md says how it was made, before
the package layout moved): its shards load through the one shard contract, its checkpoints load, export and
generate, and its half-finished run resumes where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from composer_bert.data.load.config import DataConfig
from composer_bert.data.load.loader import build_dataloader
from composer_bert.data.load.shard_set import open_shards
from composer_bert.run.checkpoint import load_composer_checkpoint
from tests.helpers import REPO

RELEASE = REPO / "tests" / "fixtures" / "release-0.1.0"


def test_old_shards_open_through_the_contract_and_load():
    for name, objective, keys in [("shards", "mlm", {"input_ids", "labels", "masked_positions"}),
                                  ("causal_shards", "causal", {"input_ids", "labels"})]:  # fmt: skip
        cfg = DataConfig(local=str(RELEASE / name), num_workers=0)
        shards = open_shards(cfg)
        assert (shards.contract.objective, shards.contract.seq_len, shards.contract.vocab_size) == (objective, 32, 400)
        batch = next(iter(build_dataloader(cfg, shards, split="train", device_batch_size=4, seed=0)))
        assert set(batch) == keys and batch["input_ids"].shape == (4, 32)


def test_old_checkpoints_load_and_export(tmp_path):
    from transformers import AutoModelForCausalLM

    from composer_bert.generation.sampling import load_causal_lm
    from composer_bert.hf.export import export_checkpoint

    mlm = load_composer_checkpoint(str(RELEASE / "runs" / "mlm" / "latest-rank0.pt"))
    assert mlm.model_config.objective == "mlm" and mlm.tokenizer_dir is not None
    out, kind = export_checkpoint(str(RELEASE / "runs" / "mlm" / "latest-rank0.pt"), tmp_path / "mlm")
    assert kind == "masked LM" and (out / "config.json").is_file()

    checkpoint = str(RELEASE / "runs" / "causal" / "latest-rank0.pt")
    out, kind = export_checkpoint(checkpoint, tmp_path / "causal")
    assert kind == "causal LM as transformers LlamaForCausalLM"
    loaded = load_causal_lm(checkpoint)
    ids = torch.tensor([[5, 6, 7, 8]])
    ours = loaded.model(ids)
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_an_old_run_resumes_where_it_stopped(tmp_path):
    """The 4-batch run of release 0.1.0 continues to batch 6 from its own checkpoint: the rows of the batches it
    trained stay byte for byte (row 4, which the next step completes, aside), and each step is logged once."""
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.pretrain.run import run_pretraining
    from composer_bert.run.config import load_config

    run = tmp_path / "mlm"
    shutil.copytree(RELEASE / "runs" / "mlm", run, symlinks=True)
    old_rows = (run / "metrics.jsonl").read_text().splitlines()
    cfg = load_config(
        PretrainConfig,
        run / "config.yaml",
        [f"save_folder={run}", f"data.local={RELEASE / 'shards'}", "max_duration=6ba"],
    )
    result = run_pretraining(cfg)
    assert result is not None and result.batches == 6
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert rows[:4] == old_rows[:4]
    assert [json.loads(row)["batch"] for row in rows] == list(range(7))
    assert (Path(run) / "ep0-ba6-rank0.pt").is_file()
