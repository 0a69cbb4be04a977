"""Prep-time mixtures: several sources, each with a share of the kept tokens, packed into one shard set.

`--mix 0.7 hf:allenai/c4:en --mix 0.3 'text:books/*.txt'` builds one train/val shard set in which 70% of
the kept tokens ([SEP] included) come from C4 and 30% from the books. Each source is cut into chunks and
encoded on its own; the main process always takes the next chunk from the source furthest below its share
(ties: the one listed first), filters it and packs it. The mixture stops when that source runs out, so every
source ends within about one chunk (~64k characters) of its share, and the scarcest source sets the size
(cap the big ones with --max-documents, which applies to each source). The choice depends only on chunk
contents, never on timing or the worker count, so the same inputs give byte-identical shards.
De-duplication spans the mixture: a document already kept from one source is a duplicate in the next.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from composer_bert.data.prep.sources import SKIP_REASONS, DocumentSource, open_source
from composer_bert.errors import UserError

PROPORTION_TOLERANCE = 1e-6
T = TypeVar("T")


@dataclass
class MixPart:
    source: DocumentSource
    proportion: float


@dataclass
class Mixture:
    """Sources and their shares of the kept tokens (one source: share 1)."""

    parts: list[MixPart]

    @property
    def spec(self) -> str:
        if len(self.parts) == 1:
            return self.parts[0].source.spec
        return " + ".join(f"{part.proportion:g} {part.source.spec}" for part in self.parts)


@dataclass
class SourceTally:
    """What became of one source's documents: the manifest's `sources` entry, less its names."""

    documents_read: int = 0
    ratio_dropped: int = 0
    too_short_dropped: int = 0
    duplicate_dropped: int = 0
    documents: int = 0  # kept
    tokens: int = 0  # of the kept documents, one [SEP] each included
    invalid_utf8_replaced: int = 0
    skipped_rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))  # no text: not read
    exhausted: bool = False  # the source ran out (its every document was read)

    def take_counts(self, counts: dict[str, Any]) -> None:
        """Take the source's read counts (`DocumentSource.read_counts`) as of the chunk just packed."""
        for name, value in counts.items():
            setattr(self, name, value)


def check_proportions(proportions: Sequence[float]) -> None:
    """Each share positive and finite, and together 1 (within PROPORTION_TOLERANCE)."""
    for value in proportions:
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--mix proportion {value:g} must be a positive share, e.g. --mix 0.7 SOURCE")
    total = math.fsum(proportions)
    if abs(total - 1.0) > PROPORTION_TOLERANCE:
        terms = " + ".join(f"{value:g}" for value in proportions)
        raise UserError(f"--mix proportions sum to {total:g} ({terms}), not 1; make them add up to 1")


def open_mixture(pairs: Sequence[Sequence[str]], text_field: str = "text", seed: int = 0) -> Mixture:
    """Parse `--mix PROPORTION SOURCE` pairs, check the shares, then open every source (nothing read yet)."""
    proportions = []
    for proportion, spec in pairs:
        try:
            proportions.append(float(proportion))
        except ValueError:
            raise UserError(
                f"--mix '{proportion}' '{spec}': the proportion comes first and must be a number, e.g. --mix 0.7 {spec}"
            ) from None
    check_proportions(proportions)
    specs = [spec for _, spec in pairs]
    for spec in specs:
        if specs.count(spec) > 1:
            raise UserError(f"source '{spec}' is listed twice in --mix; list it once with its whole share")
    return Mixture([MixPart(open_source(spec, text_field, seed), p) for spec, p in zip(specs, proportions, strict=True)])


def interleave(streams: Sequence[Iterator[T]], proportions: Sequence[float], tallies: Sequence[SourceTally]) -> Iterator[tuple[int, T]]:
    """(source index, item) pairs, each from the source whose kept tokens are furthest below its share.

    Reads `tallies[i].tokens`, which the caller updates for each item before asking for the next; stops
    when the source to take from has run out (and marks it exhausted).
    """
    while True:
        index = min(range(len(streams)), key=lambda i: (tallies[i].tokens / proportions[i], i))
        item = next(streams[index], None)
        if item is None:
            tallies[index].exhausted = True
            return
        yield index, item


def source_entries(mixture: Mixture, tallies: Sequence[SourceTally]) -> list[dict[str, Any]]:
    """The manifest's per-source records: names, target proportion, the share reached, and every count."""
    total = sum(tally.tokens for tally in tallies)
    entries = []
    for part, tally in zip(mixture.parts, tallies, strict=True):
        counts = asdict(tally)
        filters = {name: counts.pop(name) for name in ("ratio_dropped", "too_short_dropped", "duplicate_dropped")}
        entries.append(
            {
                "source": part.source.spec,
                "resolved": part.source.resolved,
                "proportion": part.proportion,
                "share": round(tally.tokens / total, 6) if total else 0.0,
                **counts,
                "filters": filters,
            }
        )
    return entries
