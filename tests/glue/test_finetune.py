"""End-to-end GLUE finetuning on CPU: a tiny pretrained checkpoint and tiny GLUE-layout tasks (conftest.py),
two seeds, one epoch; then the reports, the skip-on-rerun logic, MNLI m/mm with start_from_mnli, the CLI,
and a saved SST-2 model exported to Hugging Face."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from composer.optim import CosineAnnealingScheduler, CosineAnnealingWithWarmupScheduler
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from composer_bert.errors import UserError
from composer_bert.glue import runner, train
from composer_bert.glue.results import mnli_weights_path, model_path
from composer_bert.models import ComposerClassifier
from composer_bert.run.checkpoint import ClassifierInfo, load_composer_checkpoint
from tests.glue.glue_helpers import RECIPE, RECIPE_CLI, tiny_run
from tests.helpers import cli_error, load_script_main, run_cli


def test_finetune_two_tasks_two_seeds_then_rerun_skips(checkpoint, glue_dir, tmp_path, monkeypatch, capsys):
    save = tmp_path / "glue"
    summary = tiny_run(checkpoint, glue_dir, save, "tasks=[SST-2,STSB]", "seeds=[0,1]")
    printed = capsys.readouterr().out
    assert "GLUE average:" in printed and "STS-B" in printed and "partial" in printed

    results = json.loads((save / "glue_results.json").read_text())
    assert results["checkpoint"] == str(checkpoint)
    assert set(results["tasks"]) == {"SST-2", "STS-B"}
    assert set(results["tasks"]["STS-B"]) == {"pearson", "spearman"}
    assert set(results["per_seed"]["SST-2"]) == {"0", "1"}
    assert 0 <= results["tasks"]["SST-2"]["accuracy"] <= 100
    assert all(-100 <= value <= 100 for value in results["tasks"]["STS-B"].values())
    assert results["glue_average_partial"] is True and results["glue_average_over"] == ["SST-2", "STS-B"]
    expected_average = (results["tasks"]["SST-2"]["accuracy"] + results["tasks"]["STS-B"]["pearson"]) / 2
    assert results["glue_average"] == pytest.approx(expected_average)
    assert summary.glue_average == pytest.approx(expected_average)
    assert "| SST-2 | STS-B | GLUE avg |" in (save / "glue_results.md").read_text()
    for task in ("SST-2", "STS-B"):
        for seed in (0, 1):
            assert json.loads((save / "runs" / task / f"seed{seed}.json").read_text())["seed"] == seed
            assert model_path(save, task, seed) == save / "runs" / task / f"seed{seed}.model.pt"
            assert model_path(save, task, seed).is_file()  # save_models defaults to true

    trained = []

    def no_training(task, seed, *args, **kwargs):
        trained.append((task.name, seed))
        raise AssertionError(f"{task.name} seed {seed} was finished and should have been skipped")

    monkeypatch.setattr(runner, "train_and_evaluate", no_training)
    again = tiny_run(checkpoint, glue_dir, save, "tasks=[SST-2,STSB]", "seeds=[0,1]")
    assert trained == [] and again.medians == summary.medians

    # A lost model file re-runs its run, unless models are not kept.
    model_path(save, "STS-B", 1).unlink()
    tiny_run(checkpoint, glue_dir, save, "tasks=[SST-2,STSB]", "seeds=[0,1]", "save_models=false")
    assert trained == []
    with pytest.raises(AssertionError, match="STS-B seed 1"):
        tiny_run(checkpoint, glue_dir, save, "tasks=[SST-2,STSB]", "seeds=[0,1]")
    assert trained == [("STS-B", 1)]
    trained.clear()

    # A changed hyperparameter for one task re-runs only that task's runs.
    with pytest.raises(AssertionError, match="STS-B seed 0"):
        tiny_run(checkpoint, glue_dir, save, "tasks=[SST-2,STSB]", "seeds=[0,1]", "task_overrides.STS-B.lr=1e-4")
    assert trained == [("STS-B", 0)]


def test_mnli_trains_once_scores_both_dev_sets_and_seeds_rte(checkpoint, glue_dir, tmp_path):
    save = tmp_path / "glue"
    summary = tiny_run(
        checkpoint, glue_dir, save, "tasks=[RTE,MNLI]", "seeds=[3]", "start_from_mnli=[RTE]", "save_models=false"
    )
    assert list(summary.medians) == ["MNLI-m", "MNLI-mm", "RTE"]
    assert mnli_weights_path(save, 3).is_file()  # RTE starts from it, so it is kept despite save_models=false
    assert not model_path(save, "RTE", 3).exists()
    mnli_run = json.loads((save / "runs/MNLI/seed3.json").read_text())
    assert set(mnli_run["metrics"]) == {"MNLI-m", "MNLI-mm"}
    assert json.loads((save / "runs/RTE/seed3.json").read_text())["hparams"]["start_from_mnli_seed"] == 3


def test_tokenizer_without_cls_and_segments_is_refused(checkpoint, glue_dir, tmp_path):
    plain = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3}, unk_token="[UNK]"))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=plain, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(
        str(tmp_path / "tok")
    )
    with pytest.raises(UserError, match=r"does not start sequences with \[CLS\]"):
        tiny_run(checkpoint, glue_dir, tmp_path / "out", "tasks=[SST-2]", f"tokenizer={tmp_path / 'tok'}")


def test_warmup_is_counted_in_batches():
    scheduler = train.cosine_with_warmup(0.1, total_batches=250)
    assert isinstance(scheduler, CosineAnnealingWithWarmupScheduler) and scheduler.t_warmup == "25ba"
    assert isinstance(train.cosine_with_warmup(0.1, total_batches=5), CosineAnnealingScheduler)


def test_cli_stops_on_bad_data_before_any_training(checkpoint, glue_dir, tmp_path, capsys, monkeypatch):
    cli_main = load_script_main(RECIPE_CLI)
    shutil.copytree(glue_dir / "SST-2", tmp_path / "SST-2")
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE/train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tbroken\n")
    monkeypatch.setattr(runner, "train_and_evaluate", lambda *args, **kwargs: pytest.fail("trained despite bad data"))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                str(RECIPE),
                f"checkpoint={checkpoint}",
                "tasks=[SST-2,RTE]",
                "data.source=glue_dir",
                f"data.path={tmp_path}",
                f"save_folder={tmp_path / 'out'}",
                "max_seq_length=32",
            ]
        )
    assert exit_info.value.code == 2
    bad_line = f"{tmp_path / 'RTE/train.tsv'}:3"
    assert (
        capsys.readouterr().err
        == f"error: {bad_line}: expected 4 tab-separated columns, found 2; fix or remove this line\n"
    )


def test_train_tsv_that_is_not_utf8_names_file_and_line_and_leaves_nothing(checkpoint, glue_dir, tmp_path, capsys):
    shutil.copytree(glue_dir / "SST-2", tmp_path / "SST-2")
    train = tmp_path / "SST-2" / "train.tsv"
    lines = train.read_bytes().splitlines(keepends=True)
    lines[4] = b"caf\xe9 au lait was great\t1\n"  # Latin-1, as a spreadsheet may save it
    train.write_bytes(b"".join(lines))
    save = tmp_path / "out"
    args = [str(RECIPE), f"checkpoint={checkpoint}", "tasks=[SST-2]", "data.source=glue_dir", f"data.path={tmp_path}"]
    with pytest.raises(SystemExit) as exit_info:
        load_script_main(RECIPE_CLI)([*args, f"save_folder={save}", "max_seq_length=32"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {train}:5 is not UTF-8 (byte 0xe9 at column 4); save the file as UTF-8 text\n"
    assert not save.exists(), "the save folder it proved writable is removed again"


def test_save_folder_under_a_file_stops_the_cli_before_any_training(checkpoint, glue_dir, tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    save = blocker / "glue"
    expected = f"error: config key 'save_folder' is '{save}', but '{blocker}' is a file; choose another save_folder\n"
    args = [str(RECIPE), "tasks=[SST-2]", "seeds=[0]", "data.source=glue_dir", f"save_folder={save}", "epochs=1"]
    # nothing on stdout, not even the "[glue] SST-2 seed 0: finetuning ..." line: nothing trained
    assert cli_error(capsys, "recipes/finetune_glue.py", *args, f"checkpoint={checkpoint}", f"data.path={glue_dir}") == expected
    assert blocker.read_text() == "not a folder"
    # Checked before the checkpoint or any data is read: with neither there, the save folder is still what fails.
    missing = tmp_path / "missing"
    assert cli_error(capsys, "recipes/finetune_glue.py", *args, f"checkpoint={missing}.pt", f"data.path={missing}") == expected


def test_progress_bar_names_the_run_and_shows_its_loss(checkpoint, glue_dir, tmp_path, capsys):
    tiny_run(checkpoint, glue_dir, tmp_path / "glue", "tasks=[SST-2]", "seeds=[0]", "progress_bar=true")
    bars = capsys.readouterr().err
    # 64 training examples in batches of 16 for one epoch: one bar of 4 batches, its final loss in the postfix.
    assert re.search(r"SST-2 seed 0: 100%\|.*\| 4/4 \[.*, loss=\d+\.\d{4}\]", bars), bars


# Loads the export in a fresh, offline interpreter with its own module cache; saves logits and id2label.
HF_LOADER = """
import sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
export, sentences, results = sys.argv[1], sys.argv[2].split("|"), sys.argv[3]
tokenizer = AutoTokenizer.from_pretrained(export)
inputs = dict(tokenizer(sentences, padding=True, return_tensors="pt"))
model = AutoModelForSequenceClassification.from_pretrained(export, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(**inputs).logits
torch.save({"inputs": inputs, "logits": logits, "id2label": model.config.id2label}, results)
"""


@pytest.mark.slow
def test_finetuned_sst2_model_exports_to_transformers(checkpoint, glue_dir, tmp_path):
    save = tmp_path / "glue"
    tiny_run(checkpoint, glue_dir, save, "tasks=[SST-2]", "seeds=[0]")
    model_file = save / "runs/SST-2/seed0.model.pt"
    metadata = torch.load(model_file, weights_only=True)["state"]["callbacks"]["RunMetadata"]
    assert metadata["task"] == "SST-2" and metadata["num_labels"] == 2
    assert metadata["label_names"] == ["negative", "positive"]

    out = tmp_path / "sst2-hf"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    export = run_cli("recipes/export_hf.py", "--checkpoint", str(model_file), "--out", str(out), env=env)
    assert export.returncode == 0, export.stderr[-3000:]
    assert export.stdout == f"exported classifier with 2 labels (negative, positive) to {out}\n"
    assert "auto_map" in json.loads((out / "config.json").read_text())  # crammed config: remote code

    results = tmp_path / "results.pt"
    sentences = "a good film|the dull movie was boring on the mat"  # unequal lengths: the batch is padded
    load = run_cli("-c", HF_LOADER, str(out), sentences, str(results), cwd=tmp_path, env=env, timeout=300)
    assert load.returncode == 0, load.stderr[-3000:]
    hf = torch.load(results, weights_only=False)
    assert hf["id2label"] == {0: "negative", 1: "positive"}
    assert not hf["inputs"]["attention_mask"].all()

    pretrained = load_composer_checkpoint(str(model_file))  # the file still reads as a Composer checkpoint
    assert pretrained.classifier == ClassifierInfo("SST-2", 2, ("negative", "positive"))
    ours = ComposerClassifier(pretrained.model_config, num_labels=2)
    ours.model.load_state_dict(pretrained.state_dict, strict=True)
    with torch.no_grad():
        expected = ours.eval()(hf["inputs"])
    assert hf["logits"].shape == expected.shape == (2, 2)
    torch.testing.assert_close(hf["logits"], expected, atol=1e-5, rtol=0)
