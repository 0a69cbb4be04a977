"""The boundary with `safetensors`: the one place where its failures on a weights file become one `UserError` line.

Our own reads of `.safetensors` files go through `read_safetensors` (called by `hf/load.py`'s weights reader, which
reads exported folders for generation, GLUE, `model.init_from` and the export round trip); transformers' own reads
(`checkpoint=hf:FOLDER` in GLUE, `glue/hf_model.py`) run inside `safetensors_errors`. A file cut short by a full disk or an interrupted
copy is then named, with what to do, instead of `SafetensorError: invalid header length`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from composer_bert.errors import UserError

if TYPE_CHECKING:
    from torch import Tensor

EXPORT_AGAIN = "export again (recipes/export_hf.py)"


@contextmanager
def safetensors_errors(where: str, advice: str = EXPORT_AGAIN) -> Iterator[None]:
    """A damaged safetensors file read in the body, as one line naming `where` (the file, or the folder whose
    files a library reads) and `advice`."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as err:
        reason = str(err).removeprefix("Error while deserializing header: ")
        raise UserError(f"damaged weights in {where} ({reason}); {advice}") from None


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """Every tensor of one safetensors file, on the CPU."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file '{path}' is missing; {EXPORT_AGAIN}")
    with safetensors_errors(f"'{path}'"):
        try:
            return load_file(path)
        except OSError as err:
            raise UserError(f"cannot read weights file '{path}' ({err.strerror or err}); check the file or {EXPORT_AGAIN}") from None
