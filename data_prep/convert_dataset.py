"""Build mosaicml-streaming MDS shards of fixed-length token rows from a text source or a mixture of sources.

    python data_prep/convert_dataset.py --source SOURCE --tokenizer DIR --seq-len 128 --out DIR
    python data_prep/convert_dataset.py --mix 0.7 SOURCE_A --mix 0.3 SOURCE_B --tokenizer DIR --out DIR

writes DIR/train/, DIR/val/ (StreamingDataset splits) and DIR/manifest.json. See
composer_bert/data/prep/packing.py for the row format, filters and split, composer_bert/data/prep/sources.py
for SOURCE (in text files, documents are separated by one or more blank lines), and
composer_bert/data/prep/mixture.py for how --mix shares out the kept tokens.

`--out s3://bucket/prefix` (any Composer object-store URI) builds the shards in a local temp folder, then uploads
them with manifest.json last, so a reader never takes a half-uploaded prefix for a finished one. The bucket is
checked first: an existing output there is refused without --overwrite, as a local one is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from composer_bert.data.contract import MANIFEST_NAME
from composer_bert.data.prep.mixture import open_mixture
from composer_bert.data.prep.packing import (
    AUTO_RATIO,
    CRAMMING_MAX_TOKEN_RATIO,
    DEFAULT_MAX_TOKEN_RATIO,
    DEFAULT_MIN_TOKENS,
    DEFAULT_VAL_FRACTION,
    RELATIVE_RATIO_CUTOFF,
    ConvertOptions,
    convert_dataset,
    load_tokenizer,
)
from composer_bert.data.prep.sources import SOURCE_HELP, describe_skipped, open_source
from composer_bert.errors import ArgumentParser, UserError, cli_entry
from composer_bert.objectives import OBJECTIVES
from composer_bert.run.remote import RemoteFolder, is_remote


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = ConvertOptions()
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--source", help=SOURCE_HELP)
    inputs.add_argument(
        "--mix",
        nargs=2,
        action="append",
        metavar=("PROPORTION", "SOURCE"),
        help="a source and its share of the kept tokens; repeat it, shares summing to 1 (e.g. --mix 0.7 c4 "
        "--mix 0.3 'text:books/*.txt'); it stops when the first source runs out",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="a Hugging Face tokenizer folder (tokenizer.json; its tokenizer_config.json names the special tokens), "
        "e.g. one written by data_prep/train_tokenizer.py",
    )
    parser.add_argument(
        "--seq-len", type=int, default=defaults.seq_len, help="tokens per row, [CLS] included for mlm (default: %(default)s)"
    )
    parser.add_argument(
        "--out", required=True, help="output directory (train/, val/, manifest.json), or a bucket: s3://bucket/prefix"
    )
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="tokenizer processes (default: %(default)s)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (after success)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="share of documents for val, by hash (default: %(default)s)",
    )
    parser.add_argument(
        "--max-documents", type=int, default=None, help="read at most this many documents (of each source with --mix)"
    )
    parser.add_argument(
        "--text-field",
        default="text",
        help="field holding the text in jsonl, parquet, arrow, hf:, disk: and the named Hub sources, for every "
        "source (default: %(default)s)",
    )
    ratio = parser.add_mutually_exclusive_group()
    ratio.add_argument(
        "--max-token-ratio",
        type=_ratio,
        default=DEFAULT_MAX_TOKEN_RATIO,
        help=f"drop documents with more tokens per character than this; '{AUTO_RATIO}': {RELATIVE_RATIO_CUTOFF:g} x the "
        f"corpus's median ratio, which fits any tokenizer (Cramming's recipe passes {CRAMMING_MAX_TOKEN_RATIO}, its "
        "value for a 32k WordPiece vocabulary) (default: %(default)s)",
    )
    ratio.add_argument("--no-ratio-filter", action="store_true", help="keep documents whatever their token ratio")
    parser.add_argument(
        "--min-tokens",
        type=int,
        default=DEFAULT_MIN_TOKENS,
        help="drop documents with fewer tokens than this (default: %(default)s)",
    )
    parser.add_argument(
        "--shard-bytes",
        type=int,
        default=defaults.shard_bytes,
        help="shard size limit in bytes; smaller shards stream from a bucket in smaller steps (default: %(default)s)",
    )
    parser.add_argument("--no-dedup", action="store_true", help="keep exact duplicates (after normalization)")
    parser.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        default=defaults.objective,
        help="mlm: rows start with [CLS], documents end with [SEP]; causal: rows are the packed documents only, each "
        "ended by the end-of-text token (eos, else [SEP]) (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic source, >= 0 (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def _ratio(value: str) -> float | str:
    """--max-token-ratio: a number, or AUTO_RATIO (ConvertOptions.check checks the number's range)."""
    if value == AUTO_RATIO:
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is neither a number nor '{AUTO_RATIO}'") from None


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = ConvertOptions(
        seq_len=args.seq_len,
        val_fraction=args.val_fraction,
        max_token_ratio=None if args.no_ratio_filter else args.max_token_ratio,
        min_tokens=args.min_tokens,
        dedup=not args.no_dedup,
        workers=args.workers,
        max_documents=args.max_documents,
        seed=args.seed,
        progress=not args.no_progress,
        objective=args.objective,
        shard_bytes=args.shard_bytes,
    )
    options.check()  # before opening the source, so bad flags fail fast
    load_tokenizer(args.tokenizer, options.objective)  # and a tokenizer lacking a special token the rows need
    remote = _check_remote_out(args.out, args.overwrite) if is_remote(args.out) else None
    if args.mix:
        source = open_mixture(args.mix, text_field=args.text_field, seed=args.seed)
    else:
        source = open_source(args.source, text_field=args.text_field, seed=args.seed)
    if remote is None:
        manifest = convert_dataset(source, args.tokenizer, args.out, options, overwrite=args.overwrite)
    else:
        manifest = _convert_and_upload(source, args.tokenizer, remote, options)
    splits, filters = manifest["splits"], manifest["filters"]
    print(
        f"wrote {args.out}: train {splits['train']['rows']} rows / val {splits['val']['rows']} rows of "
        f"{manifest['seq_len']} tokens from {manifest['documents_read']} documents (dropped: "
        f"{filters['ratio_dropped']} token ratio, {filters['too_short_dropped']} too short, "
        f"{filters['duplicate_dropped']} duplicates; rows without text: {describe_skipped(manifest['skipped_rows'])})",
        file=sys.stderr,
    )
    if filters["ratio_dropped"] > manifest["documents_read"] / 2:
        advice = (
            f"leave --max-token-ratio out for {RELATIVE_RATIO_CUTOFF:g} x the median, pass a higher one"
            if filters["max_token_ratio"] != AUTO_RATIO
            else "pass --max-token-ratio with a higher cutoff"
        )
        print(
            f"warning: the token ratio filter dropped {filters['ratio_dropped']} of {manifest['documents_read']} "
            f"documents: its cutoff {filters['ratio_cutoff']} tokens per character against this corpus's median "
            f"{filters['median_token_ratio']} with this tokenizer; {advice}, or pass --no-ratio-filter",
            file=sys.stderr,
        )
    if args.mix:
        shares = ", ".join(f"{e['share']:.1%} {e['source']} (asked {e['proportion']:g})" for e in manifest["sources"])
        ran_out = [e["source"] for e in manifest["sources"] if e["exhausted"]]
        print(f"mixture of kept tokens: {shares}; it stopped when {ran_out[0]} ran out", file=sys.stderr)
    if options.val_fraction > 0 and splits["val"]["rows"] == 0:
        print("note: the val split is empty; use more documents or a larger --val-fraction", file=sys.stderr)


def _check_remote_out(out: str, overwrite: bool) -> tuple[RemoteFolder, list[str]]:
    """The bucket folder and what it holds now; refuses, before any work, what a local --out would refuse."""
    folder = RemoteFolder(out)
    existing = folder.names()  # also proves the endpoint and credentials
    if existing and not overwrite:
        raise UserError(
            f"output '{folder.uri}' already exists ({len(existing)} objects); "
            "pass --overwrite to replace it or choose another --out"
        )
    if existing and MANIFEST_NAME not in existing:
        raise UserError(
            f"'{folder.uri}' is not a previous output (it has no {MANIFEST_NAME}); refusing to replace it, "
            "choose another --out"
        )
    return folder, existing


def _convert_and_upload(source: Any, tokenizer: str, remote: tuple[RemoteFolder, list[str]], options: Any) -> dict:
    """Build locally, then upload with the manifest last; an old output's manifest goes first, its leftovers last."""
    folder, existing = remote
    with tempfile.TemporaryDirectory(prefix="composer_bert_shards_") as staging:
        local = Path(staging) / "out"
        manifest = convert_dataset(source, tokenizer, local, options)
        if existing:
            folder.delete([MANIFEST_NAME])  # a half-replaced output must not look complete
        uploaded = folder.upload_tree(local, last=[MANIFEST_NAME])
        folder.delete(sorted(set(existing) - set(uploaded)))
    return manifest


if __name__ == "__main__":
    main()
