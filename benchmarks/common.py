"""Shared pieces of the benchmarks: figures with targets, percentiles, and the module entry point.

Every benchmark module exposes `async def measure(quick: bool) -> list[Figure]` and ends with
`if __name__ == "__main__": main(measure)`. `python -m benchmarks.<module>` prints its figures;
`benchmarks/run.py` runs every module in its own process and writes RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Figure:
    """One measured number. With `target` set it is checked: `value <= target` (or `>=` when `at_least`)."""

    section: str                 # e.g. "1 Matrix"
    name: str                    # what was measured, in a few words
    value: float
    unit: str = ""
    target: float | None = None
    at_least: bool = False
    detail: str = ""             # the absolute figures beside a ratio, counts, checks

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return None
        return self.value >= self.target if self.at_least else self.value <= self.target

    def as_dict(self) -> dict:
        data = asdict(self)
        data["met"] = self.met
        return data


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_s) -> str:
    """'p50 1.23 ms, p95 …, p99 …, n=…' for samples in seconds."""
    ms = [s * 1000 for s in samples_s]
    return (f"p50 {percentile(ms, 50):.2f} ms, p95 {percentile(ms, 95):.2f} ms, "
            f"p99 {percentile(ms, 99):.2f} ms, mean {statistics.fmean(ms):.2f} ms, n={len(ms)}")


def _reference_work() -> int:
    """A fixed piece of pure-Python work of the kinds a turn does: dict and string handling, JSON, a little
    arithmetic. No I/O, no library that could change between runs."""
    counts: dict[str, int] = {}
    for i in range(20_000):
        key = f"k{i % 500}"
        counts[key] = counts.get(key, 0) + i
    data = json.loads(json.dumps(counts))
    return sum(len(str(n).split("0")) for n in range(20_000)) + len(data)


def cpu_reference_ms(repeat: int = 5) -> float:
    """How fast this machine runs Python right now: the median of `repeat` runs of a fixed workload, in ms.

    The absolute figures (turns/s, ms at 1M signals) depend on the machine; this, measured before each
    benchmark and written beside it in RESULTS.md, shows how fast the machine was at that moment: a run on a
    slower (or busier) machine shows a larger number here."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        _reference_work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


class Stopwatch:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def main(measure) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it works")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    figures = asyncio.run(measure(args.quick))
    elapsed = time.perf_counter() - started
    for f in figures:
        mark = {True: "met", False: "NOT MET", None: ""}[f.met]
        target = "" if f.target is None else f" (target {'>=' if f.at_least else '<='} {f.target:g})"
        print(f"[{f.section}] {f.name}: {f.value:.4g} {f.unit}{target} {mark}  {f.detail}")
    print(f"({elapsed:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"seconds": elapsed, "figures": [f.as_dict() for f in figures]}, indent=1))


_BENCH_KEY: str | None = None


def bench_config(url: str, **env: str):
    """The example configuration with real encryption: a production-like data key, no plaintext.

    (config.example.toml allows plaintext for `make chat`; benchmarks must pay for sealing.)"""
    global _BENCH_KEY
    from meldbot.core.config import load_config
    from meldbot.storage.sealing import new_key

    if _BENCH_KEY is None:
        _BENCH_KEY = new_key()
    environ = {"MELDBOT_STORAGE__URL": url, "MELDBOT_STORAGE__ALLOW_PLAINTEXT": "false",
               "MELDBOT_DATA_KEY": _BENCH_KEY, **env}
    return load_config(ROOT / "config.example.toml", environ)
