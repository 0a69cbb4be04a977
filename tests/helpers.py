"""Helpers the tests of several packages share (fixtures live in conftest.py): running the repo's scripts and
Composer's launcher, checking that a failure is the one clear line every CLI promises, the tiny pretraining
run's arguments and losses, a tiny BERT tokenizer, and a tiny pretraining checkpoint."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from composer_bert.callbacks.metrics_file import LOSS_KEY, read_metrics

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from composer_bert.models import ComposerMLM, ModelConfig

REPO = Path(__file__).resolve().parent.parent
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def run_cli(*args: str | bytes | Path | int, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 600):
    """Run a repo script with this interpreter; return the CompletedProcess (never raises on exit code).

    A `bytes` argument goes to the process as those bytes (e.g. ones that are not UTF-8)."""
    return _run([sys.executable, *(arg if isinstance(arg, bytes) else str(arg) for arg in args)], cwd, env, timeout)


def launch_two_ranks(script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600):
    """`composer -n 2 script args` (Composer's launcher: two CPU processes on gloo, on a free rendezvous port)."""
    composer = str(Path(sys.executable).parent / "composer")
    return _run([composer, "-n", "2", "--master_port", str(free_port()), str(script), *args], REPO, env, timeout)


def _run(command: list[str | bytes], cwd: Path, env: dict[str, str] | None, timeout: int) -> subprocess.CompletedProcess:
    """`command` with `env` added to ours, its output captured as text; bounded by `timeout` seconds."""
    env = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def load_script_main(path: Path) -> Callable:
    """`main` of a script under data_prep/ or recipes/ (scripts, not package modules), to call in-process."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def cli_error(capsys, script: str, *args: str | Path) -> str:
    """A repo script's `main` run in this process on input it refuses: exit status 2, nothing on stdout, one
    `error:` line on stderr, which it returns. What `assert_one_error_line` checks of a subprocess, without the
    seconds a fresh interpreter costs: the subprocess tests are for what only a process shows (signals, exit
    codes of the launcher, import-time failures, files left behind by a killed run)."""
    import pytest

    main = load_script_main(REPO / script)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    printed = capsys.readouterr()
    assert exit_info.value.code == 2 and printed.out == "", printed
    assert printed.err.count("\n") == 1 and printed.err.startswith("error: "), printed.err
    return printed.err


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str, after_other_output: bool = False) -> None:
    """Exit status 2, no traceback, and one `error:` line holding `words`.

    By default stderr holds that line alone; `after_other_output` allows log lines before it (training runs
    log warnings), as long as the error is the last line and the only one.
    """
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if after_other_output:
        assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr[-3000:]
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[-1], lines[-1]


def missing_capability(reason: str) -> None:
    """Skip a test this machine cannot run (no `unshare`, no other venv, ...), but fail it under `make test`, which
    sets COMPOSER_BERT_REQUIRE_CAPABILITIES=1: CI must not pass by skipping what it promises to check."""
    import pytest

    if os.environ.get("COMPOSER_BERT_REQUIRE_CAPABILITIES") == "1":
        pytest.fail(f"{reason} (make test requires it; plain pytest skips)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (for a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A test server in a subprocess (`process`, logging to `_log`) that a test can pause: SIGSTOP keeps its port
    and state but it answers nothing, as a hung endpoint; SIGCONT resumes it."""

    process: subprocess.Popen
    _log: IO[str]

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self._log.close()


# ---------------------------------------------------------------- the tiny pretraining run


def tiny_args(shards: Path, save_folder: Path, *extra: str, objective: str = "mlm") -> list[str]:
    """recipes/pretrain.py's arguments for a tiny CPU run on `shards` (the session's `tiny_shards`, or with
    objective="causal" the gpt-tiny recipe on `tiny_causal_shards`)."""
    return [
        "yamls/pretrain/gpt-tiny.yaml" if objective == "causal" else "yamls/pretrain/tiny.yaml",
        f"data.local={shards}",
        f"save_folder={save_folder}",
        "model.hidden_size=64",
        "model.intermediate_size=128",
        "model.max_position_embeddings=64",
        "global_train_batch_size=16",
        "device_train_microbatch_size=16",
        "eval_subset_num_batches=2",
        "loggers.progress_bar=false",
        *extra,
    ]


def train_losses(save_folder: Path) -> dict[int, float]:
    """Batch -> training loss, from a run's metrics.jsonl."""
    return {row["batch"]: row[LOSS_KEY] for row in read_metrics(save_folder / "metrics.jsonl") if LOSS_KEY in row}


BEFORE_RERUN = "test/written_before_the_rerun"


def mark_rows_before_rerun(save_folder: Path) -> None:
    """Tag every row of a run's metrics.jsonl, so that after a rerun the rows it kept can be told from the rows it
    wrote. A resumed run keeps the rows before the batch of the checkpoint it loaded and writes the rest; a run
    started over keeps none, one that trains nothing writes none."""
    path = save_folder / "metrics.jsonl"
    rows = [{**json.loads(line), BEFORE_RERUN: True} for line in path.read_text().splitlines() if line]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def kept_and_rewritten(save_folder: Path) -> tuple[list[int], list[int]]:
    """The batches of the training losses a rerun kept from before it (see `mark_rows_before_rerun`), and of those
    it wrote."""
    rows = [row for row in read_metrics(save_folder / "metrics.jsonl") if LOSS_KEY in row]
    return [row["batch"] for row in rows if row.get(BEFORE_RERUN)], [row["batch"] for row in rows if not row.get(BEFORE_RERUN)]


# ---------------------------------------------------------------- the pretraining recipe, probed

# recipes/pretrain.py with test callbacks switched on by environment variables (run it as a script, under the
# launcher too): KILL_AT_BATCH=N SIGKILLs each rank at the end of batch N; RECORD_DIR=D appends, per rank, each
# batch's row digests (input ids and labels, so the masks too) to D/rank{global rank}.jsonl; NAN_AT_BATCH=N (with
# NAN_RANK=R, default every rank) makes that rank's loss NaN in batch index N, before the NaN guard sees it;
# PAUSE_SERVER_AT_BATCH=N SIGSTOPs the process SERVER_PID at the end of batch N (writing the time to PAUSED_FILE)
# and makes every later batch SLOW_BATCH_S longer, so the run is still training when the paused server is missed.
PROBED_RECIPE = """
import hashlib, json, os, runpy, signal, sys, time
from composer.core import Callback
from composer.utils import dist
import composer_bert.pretrain.trainer as pretrain

class KillAt(Callback):
    def batch_end(self, state, logger):
        if int(state.timestamp.batch) == int(os.environ["KILL_AT_BATCH"]):
            os.kill(os.getpid(), signal.SIGKILL)

class RecordSamples(Callback):
    def after_dataloader(self, state, logger):
        rows = zip(state.batch["input_ids"].tolist(), state.batch["labels"].tolist())
        digests = [hashlib.sha1(json.dumps(row).encode()).hexdigest() for row in rows]
        path = os.path.join(os.environ["RECORD_DIR"], f"rank{dist.get_global_rank()}.jsonl")
        with open(path, "a") as out:
            out.write(json.dumps({"batch": int(state.timestamp.batch), "rows": digests}) + "\\n")

class NaNLossAt(Callback):
    def after_loss(self, state, logger):
        rank = os.environ.get("NAN_RANK")
        if int(state.timestamp.batch) == int(os.environ["NAN_AT_BATCH"]) and rank in (None, str(dist.get_global_rank())):
            state.loss = state.loss * float("nan")

class PauseServerAt(Callback):
    def batch_end(self, state, logger):
        batch, at = int(state.timestamp.batch), int(os.environ["PAUSE_SERVER_AT_BATCH"])
        if batch > at:
            time.sleep(float(os.environ["SLOW_BATCH_S"]))
        elif batch == at:
            os.kill(int(os.environ["SERVER_PID"]), signal.SIGSTOP)
            with open(os.environ["PAUSED_FILE"], "w") as handle:
                handle.write(repr(time.time()))

build = pretrain.build_training_controls
def probed(cfg):
    controls = build(cfg)
    if "PAUSE_SERVER_AT_BATCH" in os.environ:
        controls.callbacks.append(PauseServerAt())
    if "KILL_AT_BATCH" in os.environ:
        controls.callbacks.append(KillAt())
    if "RECORD_DIR" in os.environ:
        controls.callbacks.append(RecordSamples())
    if "NAN_AT_BATCH" in os.environ:
        controls.callbacks.insert(0, NaNLossAt())
    return controls
pretrain.build_training_controls = probed
sys.argv = [sys.argv[0], *sys.argv[1:]]
runpy.run_path(os.path.join(os.environ["REPO"], "recipes/pretrain.py"), run_name="__main__")
"""


def recorded_batches(record_dir: Path, rank: int | None = None) -> dict[int, list[str]]:
    """Global batch index -> sorted row digests of a PROBED_RECIPE run, merged over every rank's record file
    (or only `rank`'s)."""
    batches: dict[int, list[str]] = {}
    for path in sorted(record_dir.glob("rank*.jsonl" if rank is None else f"rank{rank}.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            batches.setdefault(row["batch"], []).extend(row["rows"])
    return {batch: sorted(rows) for batch, rows in batches.items()}


# ---------------------------------------------------------------- a tiny model config, tokenizer and checkpoint


def tiny_model_config(vocab_size: int, **overrides) -> ModelConfig:
    """A tiny crammed-BERT config (the default architecture): 2 layers of 32, 2 heads, 64 positions, the vocabulary
    padded to a multiple of 8; `overrides` on top."""
    from composer_bert.models import ModelConfig

    tiny = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=64)
    return ModelConfig(**{"vocab_size": vocab_size, **tiny, "pad_vocab_multiple": 8, **overrides})


def save_bert_tokenizer(out: Path, *args, **kwargs) -> Path:
    """`bert_tokenizer(*args, **kwargs)`, saved to the folder `out` as transformers saves it; returns `out`."""
    bert_tokenizer(*args, **kwargs).save_pretrained(str(out))
    return out


def bert_tokenizer(
    words: Sequence[str] = (), *, trained_on: Sequence[str] = (), vocab_size: int = 0
) -> PreTrainedTokenizerFast:
    """A tiny BERT-style WordPiece tokenizer: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, BERT's normalizer and
    pre-tokenizer, `[CLS] A [SEP] B [SEP]` with segment ids. Its vocabulary is the specials then `words`
    (fixed: nothing trained), or, given `trained_on`, `vocab_size` entries trained on those texts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    vocab = None if trained_on else {token: index for index, token in enumerate([*BERT_SPECIALS, *words])}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    if trained_on:
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIALS)
        wordpiece.train_from_iterator(list(trained_on), trainer)
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def save_mlm_checkpoint(
    model: ComposerMLM,
    model_config: ModelConfig,
    tokenizer_dir: Path,
    samples: list[dict],
    save_folder: Path,
    *,
    batch_size: int,
    batches: int,
) -> Path:
    """`batches` real Composer Trainer steps of `model` on `samples` (one row each), checkpointed at the end with
    RunMetadata attached, in the format recipes/pretrain.py writes; returns `save_folder`."""
    from composer import Trainer
    from torch.utils.data import DataLoader

    from composer_bert.run.checkpoint import RunMetadata

    trainer = Trainer(
        model=model,
        train_dataloader=DataLoader(samples, batch_size=batch_size),
        max_duration=f"{batches}ba",
        callbacks=[RunMetadata(model_config, tokenizer_dir)],
        save_folder=str(save_folder),
        save_interval=f"{batches}ba",
        progress_bar=False,
        log_to_console=False,
        device="cpu",
    )
    trainer.fit()
    trainer.close()
    return save_folder
