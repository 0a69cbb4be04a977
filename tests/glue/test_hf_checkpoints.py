"""`checkpoint=hf:NAME_OR_PATH`: tiny random BERT and RoBERTa classifiers, and GPT-2 and Llama ones (decoders: no
padding token, the head reads the last token), with locally built tokenizers, saved with save_pretrained, scored
on two GLUE tasks through the real CLI; a rerun skips the finished runs; hub names that are not cached offline and
folders that are not models stop with one line."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from composer_bert.errors import UserError
from tests.helpers import REPO, run_cli

WORDS = "the a cat dog sat ran on under mat rug good bad film movie great dull fun boring red blue big small".split()
RECIPE = REPO / "yamls/finetune/glue.yaml"
CLI = REPO / "recipes/finetune_glue.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TASKS = ("SST-2", "RTE")
# Wider than BERT's 0.02: at 0.02 a random tiny model gives every input nearly the same logits.
INIT_STD = 0.5
# A learning rate too small to move any weight (Adam's step is about the learning rate): the scores are then
# those of the checkpoint itself, which the tests compute with transformers alone.
UNCHANGED = ("optimizer.lr=1e-30",)


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]))


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    """SST-2 (single sentences) and RTE (pairs) in the GLUE download layout."""
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(0)
    for split, size in (("train", 32), ("dev", 16)):
        rows = [[text, str(int("good" in text))] for text in (_sentence(rng) for _ in range(size))]
        _write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], rows)
        rows = [
            [str(i), _sentence(rng), _sentence(rng), rng.choice(["entailment", "not_entailment"])] for i in range(size)
        ]
        _write_tsv(root / "RTE" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"], rows)
    return root


def _bert_checkpoint(folder: Path) -> None:
    """A random BertForSequenceClassification with a WordPiece tokenizer trained here."""
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=100, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    wordpiece.train_from_iterator([" ".join(WORDS)] * 8, trainer)
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=0, initializer_range=INIT_STD,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _roberta_checkpoint(folder: Path) -> None:
    """A random RobertaForSequenceClassification with a byte-level BPE tokenizer trained here."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(
        [" ".join(WORDS)] * 8,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))  # (sep, cls): keywords differ across tokenizers
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>",
    )  # fmt: skip
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, initializer_range=INIT_STD,
    )  # fmt: skip
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _decoder_checkpoint(folder: Path, family: str, seed: int) -> None:
    """A random GPT-2 or Llama sequence classifier with a byte-level BPE tokenizer that has no padding token (as
    theirs have none) and no pad_token_id in the model config: the recipe must pad with end-of-text."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([" ".join(WORDS)] * 8, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    shape = dict(vocab_size=len(tokenizer), initializer_range=INIT_STD, eos_token_id=0, bos_token_id=0)
    torch.manual_seed(seed)
    if family == "gpt2":
        model = GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, **shape))
    else:
        model = LlamaForSequenceClassification(LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
            max_position_embeddings=64, **shape))  # fmt: skip
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _dev_rows(glue_dir: Path, task: str) -> tuple[list[str], list[list[str]]]:
    header, *rows = ((glue_dir / task / "dev.tsv").read_text().splitlines())
    return header.split("\t"), [line.split("\t") for line in rows]


def _labelled_by_the_model(model_dir: Path, glue_dir: Path, out: Path) -> Path:
    """`glue_dir` copied to `out` with each dev label replaced by what the transformers model in `model_dir`
    predicts for that row, computed here with transformers alone (its tokenizer's own call on the sentence or
    pair with segment ids, padded, and a forward in eval mode). The model's head bias is first shifted (and saved) so that half
    of the dev rows fall on each side. Scored with its weights unchanged, the model must then reach exactly 100
    on each task; wrong weights, a fresh head, or a pair read without its second sentence or segment ids would
    give some rows another class."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if tokenizer.pad_token is None:  # a decoder: padded with end-of-text, its last token before the padding read
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    segments = getattr(model.config, "type_vocab_size", 0) > 1
    texts = {task: [row[1:-1] if task == "RTE" else row[:1] for row in _dev_rows(glue_dir, task)[1]] for task in TASKS}

    def margins() -> dict[str, torch.Tensor]:
        found = {}
        for task, rows in texts.items():
            inputs = tokenizer(
                *zip(*rows, strict=True), padding=True, truncation=True, max_length=32, return_tensors="pt",
                return_token_type_ids=segments,  # a pair's segment ids, which transformers 5 leaves out unless asked
            )  # fmt: skip
            with torch.no_grad():
                logits = model(**inputs).logits
            found[task] = logits[:, 1] - logits[:, 0]
        return found

    head = [module for module in getattr(model, "classifier", model).modules() if isinstance(module, torch.nn.Linear)][-1]
    if head.bias is not None:  # GPT-2's and Llama's score layers have none: their margins are left as they come
        with torch.no_grad():
            head.bias[1] -= torch.cat(list(margins().values())).median()
        model.save_pretrained(model_dir)
    for task, margin in margins().items():
        predicted = (margin > 0).long().tolist()
        assert 0 < sum(predicted) < len(predicted), f"{task}: the model predicts one class for every dev row"
        header, rows = _dev_rows(glue_dir, task)
        names = ("0", "1") if task == "SST-2" else ("entailment", "not_entailment")
        _write_tsv(out / task / "dev.tsv", header, [[*row[:-1], names[label]] for row, label in zip(rows, predicted, strict=True)])
        (out / task / "train.tsv").write_text((glue_dir / task / "train.tsv").read_text())
    return out


def _finetune(checkpoint: str, glue_dir: Path, save: Path, *extra: str):
    args = [
        str(CLI), str(RECIPE), f"checkpoint={checkpoint}", f"save_folder={save}", "data.source=glue_dir",
        f"data.path={glue_dir}", "tasks=[SST-2,RTE]", "seeds=[0]", "epochs=1", "max_seq_length=32",
        "device_eval_batch_size=16", "progress_bar=false", *extra,
    ]  # fmt: skip
    return run_cli(*args, env=OFFLINE, timeout=600)


@pytest.fixture(scope="module")
def hf_bert_glue(glue_dir, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A transformers BERT folder, finetuned on SST-2 and RTE through the CLI into `hf-bert/`: the tests that
    read it share it (its rerun test proves a rerun changes nothing)."""
    root = tmp_path_factory.mktemp("hf")
    _bert_checkpoint(root / "model")
    labelled = _labelled_by_the_model(root / "model", glue_dir, root / "glue")
    return root / "model", root / "hf-bert", _finetune(f"hf:{root / 'model'}", labelled, root / "hf-bert", *UNCHANGED)


def _scores_two_tasks_then_rerun_skips(model_dir: Path, save: Path, done, glue_dir: Path, rerun: bool = True) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((save / "glue_results.json").read_text())
    assert f"hf:{model_dir}" in json.dumps(results)
    assert "GLUE average:" in done.stdout
    for task in TASKS:  # the dev labels are the model's own predictions, made by transformers outside the CLI
        run = json.loads((save / "runs" / task / "seed0.json").read_text())
        assert run["metrics"][task]["accuracy"] == pytest.approx(100.0), run["metrics"]
    assert not list(save.rglob("*.model.pt"))  # our classifier files need our model config; hf runs write none
    if not rerun:  # the BERT and RoBERTa tests prove the rerun; the decoders share that code
        return
    stamps = {path: path.stat().st_mtime_ns for path in (save / "runs").rglob("seed0.json")}

    again = _finetune(f"hf:{model_dir}", glue_dir, save, *UNCHANGED)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already finished") == 2, again.stdout[-3000:]
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


@pytest.mark.slow
def test_hf_bert_checkpoint_scores_two_tasks_then_rerun_skips(hf_bert_glue):
    _scores_two_tasks_then_rerun_skips(*hf_bert_glue, hf_bert_glue[0].parent / "glue")


@pytest.mark.slow
def test_hf_roberta_checkpoint_scores_two_tasks_then_rerun_skips(glue_dir, tmp_path):
    _roberta_checkpoint(tmp_path / "model")
    labelled = _labelled_by_the_model(tmp_path / "model", glue_dir, tmp_path / "labelled")
    save = tmp_path / "glue"
    done = _finetune(f"hf:{tmp_path / 'model'}", labelled, save, *UNCHANGED)
    _scores_two_tasks_then_rerun_skips(tmp_path / "model", save, done, labelled)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_hf_decoder_checkpoint_pads_with_end_of_text_and_reads_the_last_token(glue_dir, tmp_path, family):
    for seed in range(20):  # the first initialisation that does not give one class to every dev row of a task
        _decoder_checkpoint(tmp_path / "model", family, seed)  # (a bias-free head cannot be re-centred)
        try:
            labelled = _labelled_by_the_model(tmp_path / "model", glue_dir, tmp_path / "labelled")
            break
        except AssertionError:
            continue
    else:
        pytest.fail(f"no {family} initialisation out of 20 splits the dev rows of both tasks")
    assert json.loads((tmp_path / "model" / "config.json").read_text()).get("pad_token_id") is None
    save = tmp_path / "glue"
    done = _finetune(f"hf:{tmp_path / 'model'}", labelled, save, *UNCHANGED)
    _scores_two_tasks_then_rerun_skips(tmp_path / "model", save, done, labelled, rerun=False)


def test_an_uncached_hub_name_a_folder_that_is_no_model_and_one_without_tokenizer_are_one_line(tmp_path):
    """What `checkpoint=hf:` refuses before any data is read (glue/hf_model.load_hf_source; the CLI turns each
    UserError into its one line, as test_finetune.py's CLI tests show)."""
    from composer_bert.glue.hf_model import load_hf_source

    (tmp_path / "empty").mkdir()
    _bert_checkpoint(tmp_path / "model")
    for path in (tmp_path / "model").glob("*token*"):
        path.unlink()
    refused = {
        "nobody-here/not-a-model": r"hf:nobody-here/not-a-model is not a local folder and not in the offline Hugging Face cache",
        str(tmp_path / "empty"): "not a transformers model folder",
        str(tmp_path / "model"): "has no tokenizer AutoTokenizer can load",
    }
    for name, words in refused.items():
        with pytest.raises(UserError, match=words):
            load_hf_source(name)


def test_model_folder_with_weights_cut_short_is_one_line(tmp_path):
    """transformers reads the weights itself here; the safetensors boundary (run/weights_files.py) still names them."""
    from composer_bert.glue.config import DropoutConfig
    from composer_bert.glue.hf_model import HFClassifier, load_hf_source

    _bert_checkpoint(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(UserError) as caught:
        HFClassifier(load_hf_source(str(tmp_path / "model")), 2, DropoutConfig())
    assert str(caught.value) == (
        f"damaged weights in the .safetensors of checkpoint=hf:{tmp_path / 'model'} (invalid header length); "
        "save or download the model again"
    )


@pytest.mark.slow
def test_compare_runs_puts_an_hf_checkpoint_beside_a_crammed_one(checkpoint, hf_bert_glue, tmp_path):
    """Both scored by the same recipe on the same tasks and seeds, then one table and one chart of the two."""
    model_dir, hf_save, _ = hf_bert_glue
    folders = {"hf-bert": f"hf:{model_dir}", "crammed": str(checkpoint)}
    saves = {"hf-bert": hf_save, "crammed": tmp_path / "crammed"}
    done = _finetune(str(checkpoint), model_dir.parent / "glue", saves["crammed"])  # the data the hf model had
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "compare"
    result = run_cli("recipes/compare_runs.py", *map(str, saves.values()), "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    with Image.open(out / "compare_glue.png") as image:
        assert image.format == "PNG" and image.size[0] > 400
    assert not (out / "compare_runs.png").exists()  # no pretraining folder was given
    table = (out / "compare_runs.md").read_text()
    for name, source in folders.items():
        results = json.loads((saves[name] / "glue_results.json").read_text())
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} (measured)"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        scores = [f"{results['tasks'][task]['accuracy']:.1f}" for task in ("SST-2", "RTE")]
        assert cells[1:4] == [*scores, f"{results['glue_average']:.1f}*"], row  # two of nine dev sets: partial
        assert cells[4] == f"`{source}`"
    assert "published, not measured" in table and "* partial" in table
    assert "| hf-bert (measured)" in result.stdout


