"""pretrain/trainer.py wiring the console cares about: the evaluator asks for no more batches than the eval split
has (Composer would warn and clamp), and the progress bar prints the config as one line, not every key."""

from __future__ import annotations

from composer_bert.callbacks.progress import TrainProgressBar
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.pretrain.trainer import build_trainer
from composer_bert.run.config import load_config
from tests.helpers import REPO, tiny_args


def test_eval_subset_is_clamped_to_the_split(tiny_shards, tmp_path):
    args = tiny_args(tiny_shards, tmp_path / "run", "max_duration=1ba", "eval_subset_num_batches=1000")
    trainer = build_trainer(load_config(PretrainConfig, REPO / args[0], args[1:]))
    try:
        (evaluator,) = trainer.state.evaluators
        assert evaluator.subset_num_batches == len(evaluator.dataloader.dataloader) < 1000
    finally:
        trainer.close()


def test_progress_bar_prints_the_config_as_one_line(capsys):
    bar = TrainProgressBar(stream="stdout")
    bar.log_hyperparameters({"run_name": "r", "model.objective": "mlm", "model.num_layers": 2, "model.hidden_size": 64,
                             "model.max_position_embeddings": 128, "max_duration": "20ba",
                             "global_train_batch_size": 32, "optimizer.lr": 0.002, "save_folder": "runs/r"})
    bar._log_hparams_to_console()
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert printed == ["run 'r': mlm 2×64, seq 128; 20ba of 32 rows, lr 0.002; full config: runs/r/config.yaml"]
