"""Train a tokenizer from scratch (BERT's WordPiece by default; BPE, or GPT-2's byte-level BPE) and save it.

    python data_prep/train_tokenizer.py --source SOURCE --vocab-size N --out DIR

DIR loads with `AutoTokenizer.from_pretrained(DIR)` offline; special ids are fixed:
[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4. See composer_bert/data/prep/tokenizer_training.py.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from composer_bert.data.prep.sources import (
    SOURCE_HELP,
    CountingIterator,
    checked_documents,
    limit_documents,
    open_source,
)
from composer_bert.data.prep.tokenizer_training import (
    DEFAULT_VOCAB_SIZE,
    TOKENIZER_MODELS,
    check_vocab_size,
    save_pretrained_fast,
    train_tokenizer,
)
from composer_bert.errors import ArgumentParser, UserError, cli_entry
from composer_bert.run.files import atomic_output_dir, write_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help=SOURCE_HELP)
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCAB_SIZE,
        help="target vocabulary size; Cramming uses 32768 = 2^15 (default: %(default)s)",
    )
    parser.add_argument("--out", required=True, help="output directory (a transformers tokenizer directory)")
    parser.add_argument("--model", choices=TOKENIZER_MODELS, default="wordpiece", help="(default: %(default)s)")
    parser.add_argument("--max-documents", type=int, default=None, help="read at most this many documents")
    parser.add_argument("--max-bytes", type=int, default=None, help="read at most about this many bytes of text")
    parser.add_argument(
        "--text-field",
        default="text",
        help="field holding the text in jsonl, parquet, arrow, hf:, disk: and the named Hub sources "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic source (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (after success)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for flag, value in (("--max-documents", args.max_documents), ("--max-bytes", args.max_bytes)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value} must be at least 1")
    check_vocab_size(args.vocab_size, args.model)
    source = open_source(args.source, text_field=args.text_field, seed=args.seed)
    documents = CountingIterator(checked_documents(source, limit_documents(source, args.max_documents, args.max_bytes)))
    progress = tqdm(documents, desc="reading documents", unit="doc", unit_scale=True, disable=args.no_progress)
    with atomic_output_dir(args.out, args.overwrite, marker="tokenizer.json") as tmp, progress:  # closed on Ctrl-C too
        tokenizer = train_tokenizer(progress, args.vocab_size, args.model, progress=not args.no_progress)
        with write_errors(f"the tokenizer to '{args.out}'"):
            save_pretrained_fast(tokenizer, tmp)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    print(
        f"wrote {args.out}: {args.model} tokenizer, vocab_size {vocab_size}, from {documents.count} documents "
        f"(rows without text: {source.skipped_summary()})",
        file=sys.stderr,
    )
    if vocab_size < args.vocab_size:
        print(
            f"note: the corpus yielded only {vocab_size} of the {args.vocab_size} tokens asked for; shards record "
            f"{vocab_size} (model.vocab_size: null takes it from them), and more documents give a fuller vocabulary",
            file=sys.stderr,
        )
    if source.invalid_utf8_replaced:
        print(f"note: replaced {source.invalid_utf8_replaced} invalid UTF-8 sequences with U+FFFD", file=sys.stderr)


if __name__ == "__main__":
    main()
