""""Reeds bekend" for the AF's `toon`: other signals of the meldpunt that name the same address, person or
organisation, or one that looks alike, each with why.

The storage picks the candidates by keyed hashes (the exact keys and the coarse blocking keys of
meldbot.core.matching), at most CANDIDATES of them, and unseals only what their answers mention (kept sealed
since they were sent); meldbot.core.similar compares them here, in memory. Nothing of their content leaves this process except to the AF who asked (the AF may
see every signal of their meldpunt); nothing of it is logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from meldbot.core import similar
from meldbot.core.domain import EventKind, Signal
from meldbot.core.ports import UnitOfWork

# Candidates compared per `toon`: bounds the work at any size (benchmarks/growth.py); the exact matches share
# the most keys and come first.
CANDIDATES = 40


@dataclass(frozen=True)
class Known:
    reference: str
    kind: str                 # adres | persoon | organisatie
    like: str | None = None   # None: the same key ("zelfde adres"); else the other signal's words


def _tags(signal: Signal) -> list[tuple[str, str]]:
    return [(str(e.data.get("kind", "")), str(e.data.get("value", ""))) for e in signal.events
            if e.kind is EventKind.TAG]


async def known(uow: UnitOfWork, signal: Signal) -> list[Known]:
    """What is already known about `signal`'s address, persons and organisations, oldest signal first.
    `signal` should carry its events (its kenmerken)."""
    mine = similar.profile(signal.content.texts(), names=[signal.content.wie], tags=_tags(signal))
    found: list[tuple[tuple[int, int], Known]] = []
    for candidate in await uow.signals.similar_candidates(signal, CANDIDATES):
        theirs = similar.with_tags(candidate.mentions, candidate.tags)
        for reason in similar.compare(mine, theirs):
            ref = candidate.reference
            found.append(((ref.year, ref.number),
                          Known(str(ref), reason.kind, None if reason.same else reason.text)))
    return [k for _, k in sorted(found, key=lambda f: (f[0], f[1].kind))]
