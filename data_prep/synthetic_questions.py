"""Write two-choice questions about the built-in synthetic corpus's kind of text, in SuperGLUE's COPA layout.

    python data_prep/synthetic_questions.py --out demo_out/questions
    python recipes/zero_shot.py yamls/zeroshot/synthetic.yaml checkpoint=demo_out/runs/gpt-tiny/latest-rank0.pt

The offline demo has no SuperGLUE download, so `make demo-gpt` scores its model on these instead: each question
is a new document (`--source synthetic`'s generator, another seed) ending in a restarted sentence, and two
endings, one right. Recall questions ('Ann Pell is a' -> 'baker from X.' or another person's job; the age
question) can only be told apart by reading the document; agreement questions ('The old dogs' -> 'see the
boats.' or 'sees the boats.') by the grammar the corpus keeps. Chance is 50 %. The folder holds
COPA/train.jsonl (the few-shot pool), COPA/val.jsonl (the scored questions) and questions.json (how they were
made); the zero-shot prompt is `{premise} {answer}` (yamls/zeroshot/synthetic.yaml).
"""

from __future__ import annotations

import json
import sys

from composer_bert.data.prep.synthetic import synthetic_questions
from composer_bert.errors import ArgumentParser, UserError, cli_entry
from composer_bert.run.files import atomic_output_dir

MARKER = "questions.json"
SPLITS = ("train", "val")


def write_questions(out: str, counts: dict[str, int], seed: int, overwrite: bool) -> None:
    """COPA/{split}.jsonl for each split (`counts[split]` questions, their own random stream), then the marker."""
    with atomic_output_dir(out, overwrite, MARKER) as staging:
        (staging / "COPA").mkdir()
        for offset, split in enumerate(SPLITS):  # the splits share no document: one stream each
            rows = synthetic_questions(counts[split], seed=seed * len(SPLITS) + offset + 1)  # never the corpus's 0
            (staging / "COPA" / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        made = {"generator": "composer_bert.data.prep.synthetic.synthetic_questions", "seed": seed, "layout": "COPA",
                "questions": counts, "prompt": "{premise} {answer}"}  # fmt: skip
        (staging / MARKER).write_text(json.dumps(made, indent=2) + "\n")


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (COPA/train.jsonl, COPA/val.jsonl)")
    parser.add_argument("--train", type=int, default=64, help="questions in the few-shot pool (default 64)")
    parser.add_argument("--val", type=int, default=200, help="questions scored (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="which questions (default 7; the corpus uses 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier --out of this script")
    args = parser.parse_args(argv)
    for name in SPLITS:
        if getattr(args, name) < 1:
            raise UserError(f"--{name} is {getattr(args, name)}; pass a positive number of questions")
    if args.seed < 0:
        raise UserError(f"--seed is {args.seed}; pass 0 or a positive seed")
    write_questions(args.out, {name: getattr(args, name) for name in SPLITS}, args.seed, args.overwrite)
    print(f"wrote {args.train} + {args.val} questions (train + val) to {args.out}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
