"""End to end: the pretraining recipe trains, logs, plots, resumes bit-exactly after SIGKILL, and scales to 2 ranks,
for both objectives (the MLM `tiny` and the causal `gpt-tiny` recipes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from composer_bert.callbacks.metrics_file import LOSS_KEY, read_metrics
from tests.helpers import (
    PROBED_RECIPE,
    REPO,
    assert_one_error_line,
    kept_and_rewritten,
    launch_two_ranks,
    mark_rows_before_rerun,
    recorded_batches,
    run_cli,
    tiny_args,
    train_losses,
)

OBJECTIVES = ["mlm", "causal"]


def shards_for(request: pytest.FixtureRequest, objective: str) -> Path:
    """The session's shards built for `objective`."""
    return request.getfixturevalue("tiny_causal_shards" if objective == "causal" else "tiny_shards")



@pytest.mark.slow
def test_tiny_pretrain_learns_and_reports(tiny_run):
    out, printed = tiny_run
    assert "eval masked accuracy" in printed and "tokens/s" in printed
    rows = read_metrics(out / "metrics.jsonl")
    keys = set().union(*rows)
    for key in (LOSS_KEY, "throughput/tokens_per_sec", "l2_norm/grad/global", "metrics/eval/MaskedAccuracy"):
        assert key in keys, f"{key} missing from metrics.jsonl (has {sorted(keys)})"
    assert all("batch" in row for row in rows)
    losses = list(train_losses(out).values())
    early, late = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert late < early - 0.5, f"MLM loss did not fall on the synthetic corpus ({early:.2f} -> {late:.2f})"
    assert (out / "loss_curve.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batches"] == 120 and len(rows) == len({row["batch"] for row in rows}) and summary["eval_masked_accuracy"] > 0.0


@pytest.mark.slow
def test_reading_a_checkpoints_tokenizer_leaves_no_temporary_folder(tiny_run, tmp_path):
    """The tokenizer files a checkpoint carries are written to a temporary folder to be read; it is gone when
    the command ends (export_hf.py here; finetune_glue.py and a bucket checkpoint in tests/run/test_object_store.py)."""
    out, _ = tiny_run
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1"}
    exported = run_cli("recipes/export_hf.py", "--checkpoint", out / "latest-rank0.pt", "--out", tmp_path / "hf", env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "hf" / "tokenizer.json").is_file()  # the checkpoint's tokenizer was read and exported
    assert not list(scratch.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_sigkill_then_rerun_resumes_bit_exactly(request, objective, tmp_path):
    shards = shards_for(request, objective)
    common = ("max_duration=24ba", "save_interval=6ba", "eval_interval=24ba", "run_name=resume")
    straight = tmp_path / "straight"
    result = run_cli("recipes/pretrain.py", *tiny_args(shards, straight, *common, objective=objective))
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    args = tiny_args(shards, killed, *common, objective=objective)
    first = run_cli("-c", PROBED_RECIPE, *args, env={"KILL_AT_BATCH": "15", "REPO": str(REPO)})
    assert first.returncode == -9, first.stderr[-3000:]
    assert max(train_losses(killed)) < 24
    mark_rows_before_rerun(killed)
    second = run_cli("recipes/pretrain.py", *args)  # the same command again
    assert second.returncode == 0, second.stderr[-3000:]
    # resumed from the batch-12 checkpoint: the killed run's rows before it stay, batches 12-23 are trained again
    # (a deterministic run started over would give the same losses, but keep none of the killed run's rows)
    assert kept_and_rewritten(killed) == (list(range(12)), list(range(12, 24)))

    expected, resumed = train_losses(straight), train_losses(killed)
    assert sorted(resumed) == sorted(expected) == list(range(24))
    assert [resumed[b] for b in range(12, 24)] == [expected[b] for b in range(12, 24)]

    if objective == "mlm":  # once more after the run ended (a scheduler's retry): it says so and changes nothing
        outputs = {name: (killed / name).read_bytes() for name in ("metrics.jsonl", "summary.json")}
        third = run_cli("recipes/pretrain.py", *args)
        assert third.returncode == 0, third.stderr[-3000:]
        assert "run 'resume' already finished after 24 batches, having reached max_duration 24ba" in third.stderr
        assert "Traceback" not in third.stderr and "train loss (last 5 logged)" in third.stdout
        assert {name: (killed / name).read_bytes() for name in outputs} == outputs


@pytest.mark.slow
def test_tiny_causal_pretrain_learns_reports_perplexity_and_refuses_mlm_shards(
    tiny_shards, tiny_causal_shards, tiny_causal_run, tmp_path
):
    out, printed = tiny_causal_run
    assert "eval perplexity" in printed and "masked accuracy" not in printed
    rows = read_metrics(out / "metrics.jsonl")
    keys = set().union(*rows)
    for key in (LOSS_KEY, "throughput/tokens_per_sec", "l2_norm/grad/global", "metrics/eval/LanguagePerplexity"):
        assert key in keys, f"{key} missing from metrics.jsonl (has {sorted(keys)})"
    losses = list(train_losses(out).values())
    early, late = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert late < early - 1.0, f"causal loss did not fall on the synthetic corpus ({early:.2f} -> {late:.2f})"
    summary = json.loads((out / "summary.json").read_text())
    eval_rows = [row for row in rows if "metrics/eval/LanguagePerplexity" in row]
    assert summary["eval_perplexity"] == pytest.approx(eval_rows[-1]["metrics/eval/LanguagePerplexity"], rel=1e-4)
    assert (out / "loss_curve.png").stat().st_size > 1000

    for objective, shards in (("causal", tiny_shards), ("mlm", tiny_causal_shards)):
        refused = tmp_path / f"refused-{objective}"
        result = run_cli("recipes/pretrain.py", *tiny_args(shards, refused, objective=objective), timeout=300)
        other = "mlm" if objective == "causal" else "causal"
        words = (f"built for objective '{other}' but model.objective is '{objective}'", f"--objective {objective}")
        assert_one_error_line(result, *words, after_other_output=True)
        assert not refused.exists()  # nothing written
    # refused after save_folder was proved writable (so created): the empty folder is removed again
    short = tmp_path / "refused-short" / "run"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, short, "model.max_position_embeddings=16"))
    assert_one_error_line(result, "raise model.max_position_embeddings", after_other_output=True)
    assert not (tmp_path / "refused-short").exists()


@pytest.mark.slow
def test_rerun_of_a_run_that_spent_its_budget_changes_nothing(tiny_shards, tmp_path):
    """Composer does not checkpoint max_duration, so a budgeted run (the flagship recipes end on `budget`) is
    finished when its restored clock says so; a rerun, even with another eval setting, leaves every file alone."""
    out = tmp_path / "run"
    args = tiny_args(tiny_shards, out, "budget=3s", "max_duration=100000ba", "eval_interval=100000ba", "run_name=b")
    first = run_cli("recipes/pretrain.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    outputs = {name: (out / name).read_bytes() for name in ("metrics.jsonl", "summary.json", "config.yaml")}
    assert json.loads(outputs["summary.json"])["budget_used"] >= 1.0
    again = run_cli("recipes/pretrain.py", *args, "eval_subset_num_batches=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "run 'b' already finished after" in again.stderr and "having reached its budget 3s" in again.stderr
    assert {name: (out / name).read_bytes() for name in outputs} == outputs


@pytest.mark.slow
@pytest.mark.scaleout
def test_two_ranks_train_then_resume_on_one_without_repeats_or_skips(tiny_shards, tmp_path):
    """Checkpointed on 2 processes (gloo), resumed on 1: every global batch holds exactly the samples and masks of
    an uninterrupted 1-process run. Losses can't be compared exactly: DDP averages per-rank means. (The causal
    loader is the same dataset with a collate that draws nothing: the sample order proved here is its order.)"""
    shards, objective = tiny_shards, "mlm"

    def args(save_folder: Path, *extra: str) -> list[str]:
        return tiny_args(shards, save_folder, *extra, *common, objective=objective)

    script = tmp_path / "probed_pretrain.py"
    script.write_text(PROBED_RECIPE)
    common = ("save_interval=10ba", "eval_interval=20ba", "run_name=elastic")

    straight, straight_record = tmp_path / "one", tmp_path / "one-record"
    straight_record.mkdir()
    env = {"REPO": str(REPO), "RECORD_DIR": str(straight_record)}
    result = run_cli(str(script), *args(straight, "max_duration=20ba"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    elastic, elastic_record = tmp_path / "two", tmp_path / "two-record"
    elastic_record.mkdir()
    env = {"REPO": str(REPO), "RECORD_DIR": str(elastic_record)}
    ran = launch_two_ranks(script, *args(elastic, "max_duration=10ba"), env=env)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    assert sorted(recorded_batches(elastic_record)) == list(range(10))
    resumed = run_cli(str(script), *args(elastic, "max_duration=20ba"), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = recorded_batches(straight_record), recorded_batches(elastic_record)
    assert sorted(expected) == list(range(20))
    assert got == expected
    assert sorted(train_losses(elastic)) == list(range(20))


def test_trainer_wiring_follows_the_config(tiny_shards, tmp_path, monkeypatch):
    """The built Trainer masks eval at eval_mlm_probability, train at mlm_probability, with the manifest's vocab;
    the manifest is read once for both splits (the one ShardContract)."""
    from composer_bert.data import contract
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.pretrain.trainer import build_trainer
    from composer_bert.run.config import load_config

    overrides = tiny_args(tiny_shards, tmp_path / "wired", "data.mlm_probability=0.3", "data.eval_mlm_probability=0.15")
    cfg = load_config(PretrainConfig, REPO / overrides[0], overrides[1:])
    reads = []
    read_manifest = contract.read_manifest
    monkeypatch.setattr(contract, "read_manifest", lambda root: reads.append(root) or read_manifest(root))
    trainer = build_trainer(cfg)
    try:
        assert list(map(str, reads)) == [str(tiny_shards)] and trainer.state.evaluators  # both splits, one read
        train_masker = trainer.state.train_dataloader.collate_fn.masker
        eval_masker = trainer.state.evaluators[0].dataloader.dataloader.collate_fn.masker
        assert (train_masker.mlm_probability, eval_masker.mlm_probability) == (0.3, 0.15)
        assert trainer.state.model.config.vocab_size == 1024  # vocab_size: null -> the shards' manifest
    finally:
        trainer.close()


def test_sequence_length_warmup_grows_rows_with_progress(tiny_shards, tmp_path):
    from composer.core import Callback

    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.pretrain.trainer import build_trainer
    from composer_bert.run.config import load_config

    class RecordLengths(Callback):
        def __init__(self) -> None:
            self.lengths: list[int] = []

        def before_forward(self, state, logger) -> None:
            self.lengths.append(state.batch["input_ids"].shape[1])
            assert state.batch["labels"].shape == state.batch["input_ids"].shape

    extra = ("max_duration=8ba", "seq_length_warmup.fraction=0.5", "seq_length_warmup.min_length=16", "autoresume=false")
    overrides = tiny_args(tiny_shards, tmp_path / "warmup", *extra)
    trainer = build_trainer(load_config(PretrainConfig, REPO / overrides[0], overrides[1:]))
    record = RecordLengths()
    trainer.state.callbacks.append(record)
    trainer.fit()
    trainer.close()
    # p = batch / 8; length = 16 + 48 * p / 0.5, rounded down to a multiple of 8, full from p = 0.5 on.
    assert record.lengths == [16, 24, 40, 48, 64, 64, 64, 64]


@pytest.mark.slow
def test_compare_a_masked_and_a_causal_run(tiny_run, tiny_causal_run, tmp_path):
    """recipes/compare_runs.py on the session's two finished runs (MLM `tiny` and causal `gpt-tiny`) side by side:
    one PNG, one table. Here rather than in tests/test_compare_runs.py so that it runs in the pytest-xdist worker
    that builds those runs (a file runs in one worker; the other worker would train both again, ~30 s)."""
    runs = {"tiny-mlm": tiny_run[0], "tiny-causal": tiny_causal_run[0]}
    out = tmp_path / "compare"
    result = run_cli("recipes/compare_runs.py", *map(str, runs.values()), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]

    with Image.open(out / "compare_runs.png") as image:
        image.verify()
    with Image.open(out / "compare_runs.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 300  # two panels side by side

    table = (out / "compare_runs.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| tiny-")}
    assert set(rows) == set(runs)
    for name, cells in rows.items():
        summary = json.loads((runs[name] / "summary.json").read_text())
        assert cells[1] == f"{summary['tokens']:,}"
        accuracy = summary["eval_masked_accuracy"]
        assert cells[3] == f"{summary['eval_loss']:.4f}" and cells[4] == ("n/a" if accuracy is None else f"{accuracy:.4f}")
        assert cells[6:8] == ["n/a", "n/a"]  # no MFU on the CPU, no budget set
        assert cells[8].endswith("GiB (CPU, peak RSS)")
    assert rows["tiny-mlm"][4] != "n/a" and rows["tiny-causal"][4] == "n/a"  # a causal run has no masked accuracy
    assert all(f"| {name} |" in result.stdout for name in runs)
