"""Export a Composer checkpoint (pretrained MLM or finetuned classifier) as a Hugging Face directory.

    python recipes/export_hf.py --checkpoint runs/crammed-bert/latest-rank0.pt --out exports/crammed-bert

Load it without composer-bert installed:

    AutoModelForMaskedLM.from_pretrained(DIR, trust_remote_code=True)
    pipeline("fill-mask", model=DIR, trust_remote_code=True)

A GLUE-finetuned classifier (saved by recipes/finetune_glue.py with save_models=true) exports the same way,
with its task's label names as id2label:

    python recipes/export_hf.py --checkpoint runs/glue/runs/SST-2/seed0.model.pt --out exports/sst2
    pipeline("text-classification", model=DIR, trust_remote_code=True)

A plain original-BERT config exports as transformers' own BertForMaskedLM / BertForSequenceClassification
(no trust_remote_code needed).
"""

from __future__ import annotations

import argparse
import sys

from composer_bert.errors import ArgumentParser, cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Composer .pt (local, s3://, gs://, https://)")
    parser.add_argument("--out", required=True, help="output directory for the Hugging Face model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (after success)")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer directory; default: the one the checkpoint carries"
    )
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from composer_bert.hf.export import export_checkpoint  # torch and transformers load after argument errors

    out_dir, kind = export_checkpoint(args.checkpoint, args.out, args.overwrite, args.tokenizer)
    print(f"exported {kind} to {out_dir}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
