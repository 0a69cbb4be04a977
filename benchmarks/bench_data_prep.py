"""How fast is convert_dataset, next to its ceiling and to the common way of doing the same job?

One corpus (synthetic, written to a text file), one tokenizer trained on it, three ways to tokenize:

(a) raw   `tokenizers.Tokenizer.encode_batch` on the in-memory documents: the ceiling, nothing else done.
(b) common  the llm-foundry ConcatTokensDataset pattern: the transformers tokenizer called once per
          document, a Python token buffer cut into rows, rows written with a stock MDSWriter.
(c) ours  `composer_bert.data.prep.packing.convert_dataset` end to end from the text file (reading,
          filters, dedup, split, packing, MDS, manifest), with 2 and 1 workers.

Rates are document tokens (no special tokens) per second of wall time, best of --repeats runs. The
machine's load average is printed before and after: on a shared box, other processes take CPU from
(a)'s threads and (c)'s processes unequally, so compare ratios only from quiet runs.

    python benchmarks/bench_data_prep.py [--documents 8000] [--seq-len 128] [--vocab-size 4096]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from streaming import MDSWriter  # imported up front so no timed run pays for torch's import
from transformers import AutoTokenizer

from composer_bert.data.prep.packing import ConvertOptions, convert_dataset
from composer_bert.data.prep.sources import open_source
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.data.prep.tokenizer_training import save_pretrained_fast, train_tokenizer


def best_seconds(run: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def common_pattern(documents: Sequence[str], tokenizer_dir: Path, out: Path, seq_len: int) -> None:
    """ConcatTokensDataset's loop, with BERT's [CLS]-led rows and [SEP] after each document."""
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    body = seq_len - 1
    buffer: list[int] = []
    shutil.rmtree(out, ignore_errors=True)
    with MDSWriter(out=str(out), columns={"input_ids": "ndarray:uint16"}, compression=None) as writer:
        for text in documents:
            ids = tokenizer(text, truncation=False, padding=False, add_special_tokens=False)["input_ids"]
            buffer = buffer + ids + [sep_id]
            while len(buffer) >= body:
                row, buffer = buffer[:body], buffer[body:]
                writer.write({"input_ids": np.asarray([cls_id] + row, dtype=np.uint16)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=8000, help="synthetic documents (~540 characters each)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")

    with tempfile.TemporaryDirectory(prefix="bench_data_prep_") as tmp_name:
        tmp = Path(tmp_name)
        documents = list(synthetic_documents(args.documents, seed=0))
        corpus = tmp / "corpus.txt"
        corpus.write_text("\n\n".join(documents) + "\n")
        tokenizer = train_tokenizer(documents, args.vocab_size, progress=False)
        save_pretrained_fast(tokenizer, tmp / "tokenizer")
        num_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(documents, add_special_tokens=False))
        megabytes = corpus.stat().st_size / 1e6
        print(f"corpus: {len(documents)} documents, {megabytes:.1f} MB, {num_tokens} tokens, seq_len {args.seq_len}")

        def ours(workers: int) -> Callable[[], None]:
            options = ConvertOptions(seq_len=args.seq_len, workers=workers, progress=False)
            source = open_source(f"text:{corpus}")
            return lambda: convert_dataset(source, tmp / "tokenizer", tmp / "ours", options, overwrite=True)

        seconds = {
            "(a) raw Tokenizer.encode_batch": best_seconds(
                lambda: tokenizer.encode_batch(documents, add_special_tokens=False), args.repeats
            ),
            "(b) common: per-doc HF call + list buffer": best_seconds(
                lambda: common_pattern(documents, tmp / "tokenizer", tmp / "common", args.seq_len), args.repeats
            ),
            "(c) ours, 2 workers": best_seconds(ours(2), args.repeats),
            "(c) ours, 1 worker": best_seconds(ours(1), args.repeats),
        }

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    raw = seconds["(a) raw Tokenizer.encode_batch"]
    common = seconds["(b) common: per-doc HF call + list buffer"]
    print(f"{'method':<44}{'seconds':>9}{'Mtok/s':>9}{'vs raw':>9}{'vs common':>11}")
    for name, sec in seconds.items():
        print(f"{name:<44}{sec:>9.2f}{num_tokens / sec / 1e6:>9.3f}{raw / sec:>9.2f}{common / sec:>11.2f}")


if __name__ == "__main__":
    main()
