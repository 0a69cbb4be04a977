"""The one markdown formatter of `gpu_check.py`'s report: tables, blocks of paragraphs, and the number formats the
speed tables share. Every section and the parent's render write through it.

No torch here (nor anything else heavy): the parent process imports it to render the report, and it must render
even when a broken install makes every section fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpu_check_steps import Throughput

Block = str | list[str] | None


def _row(cells: Sequence[str]) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """`header`, its rule and `rows`, a line each. A row shorter than the header is a note: the cells it has (e.g. a
    model's name and why it has no numbers), then empty ones to the table's width."""
    width = len(header)
    if any(len(row) > width for row in rows):
        raise ValueError(f"a row has more cells than the header's {width}: {max(rows, key=len)}")
    return [_row(header), "|" + "---|" * width, *(_row([*row, *[""] * (width - len(row))]) for row in rows)]


def blocks(*parts: Block) -> list[str]:
    """Markdown blocks one blank line apart: a str is a line (a paragraph, a heading), a list the lines of one block
    (a table, bullets, a report of its own); empty parts and None are left out."""
    lines: list[str] = []
    for part in parts:
        part_lines = [part] if isinstance(part, str) else list(part or [])
        while part_lines and not part_lines[0]:
            part_lines.pop(0)
        while part_lines and not part_lines[-1]:
            part_lines.pop()
        if part_lines:
            lines += [""] * bool(lines) + part_lines
    return lines


def fmt_mfu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def fmt_gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def speed_cells(result: Throughput) -> list[str]:
    """The columns every speed table has, in this order: tokens/s, MFU, step ms."""
    return [f"{result.tokens_per_s:,.0f}", fmt_mfu(result.mfu), f"{result.step_s * 1e3:.1f}"]
