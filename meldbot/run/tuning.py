"""The garbage collector of a long-running meldbot process (`meldbot run`).

A chat turn makes a few thousand short-lived Python objects (the activity's models, the SQL parameters,
the replies). With CPython's default threshold the youngest generation is collected every 700 allocations,
so several times in every turn, and each of those collections also walks what is still young; with every
tenth one the next generation too, which holds what start-up made (modules, the configuration, compiled
statements): measured as about a sixth of a Teams turn (benchmarks/README.md). After start-up that is
frozen (`gc.freeze`: kept out of every collection, as it lives as long as the process), and the youngest
generation is collected every 10,000 allocations: reference cycles still go, a little later; memory stays
as it was (RSS per process, benchmarks/footprint.py).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Call once, after start-up."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
