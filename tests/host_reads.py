"""A CPU stand-in for CUDA's sync debug mode: records every operation that, on a GPU, would make the host
wait for a tensor's value (one host-device synchronisation each).

Those are the scalar reads (`.item()`, `bool()`, `int()`, `float()`: aten._local_scalar_dense), the ops
whose output size depends on values (nonzero, boolean-mask indexing, masked_select, unique, bincount,
repeat_interleave without an output size), and `.tolist()` / `.numpy()`, which torch does not dispatch and
which are therefore watched by wrapping them. Each record names the innermost composer_bert function on the
stack, so a test can tell our reads from Composer's.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
PACKAGE = Path(__file__).resolve().parent.parent / "composer_bert"

READ_OPS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,
    aten.repeat_interleave.Tensor,
}
INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


@dataclass(frozen=True)
class HostRead:
    op: str
    where: str  # "module.function" of the innermost composer_bert frame, or "" outside our package


def _where() -> str:
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename).resolve()
        if PACKAGE in path.parents:
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            return f"{module}.{frame.name}"
    return ""


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class HostReads(TorchDispatchMode):
    """`with HostReads() as reads:` ... then `reads.records` lists what would have synchronised a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[HostRead] = []
        self._saved: dict[str, object] = {}

    def ours(self, prefix: str = "composer_bert") -> list[HostRead]:
        return [r for r in self.records if r.where.startswith(prefix)]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in READ_OPS or (func in INDEX_OPS and _has_bool_index(args)):
            self.records.append(HostRead(str(func), _where()))
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> HostReads:
        for name in ("tolist", "numpy"):
            self._saved[name] = torch.Tensor.__dict__.get(name)
            original = getattr(torch.Tensor, name)

            def watched(tensor, *args, _original=original, _name=name, **kwargs):
                self.records.append(HostRead(f"Tensor.{_name}", _where()))
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, watched)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        for name, saved in self._saved.items():
            if saved is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, saved)
        return super().__exit__(*exc)
