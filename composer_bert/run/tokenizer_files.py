"""The boundary with `tokenizers` when transformers reads a tokenizer folder: the one place where its failures on a
damaged `tokenizer.json` become one `UserError` line.

The Rust library raises a bare `Exception` ("stream did not contain valid UTF-8", "expected value at line 1")
that names no file; a tokenizer folder is read by generation, GLUE, zero-shot scoring and the export, each inside
`tokenizer_errors`. (Data prep reads `tokenizer.json` through `tokenizers` itself: `data/prep/rows.load_tokenizer`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from composer_bert.errors import UserError


@contextmanager
def tokenizer_errors(folder: str | Path, advice: str = "save it again (data_prep/train_tokenizer.py)") -> Iterator[None]:
    """A tokenizer the body cannot read, as one line naming its folder and what to do."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # tokenizers' bare Exception, a JSON or Unicode error, transformers' ValueError
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"the tokenizer in '{folder}' cannot be read ({reason}); {advice}") from None
