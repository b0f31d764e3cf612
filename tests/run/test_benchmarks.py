"""The benchmark machinery: targets judged right, RESULTS.md complete, the burst's checks able to fail.

No timing is asserted here: speed figures live in benchmarks/RESULTS.md."""

from __future__ import annotations

import math

import pytest

from benchmarks.burst import CountingNotifier, Store, closed_loop
from benchmarks.common import Figure, cpu_reference_ms, percentile
from benchmarks.run import render


def test_targets_are_judged_in_the_right_direction():
    assert Figure("3", "p99", 24.0, "ms", target=25.0).met is True
    assert Figure("3", "p99", 26.0, "ms", target=25.0).met is False
    assert Figure("3", "rate", 999.0, "turns/s", target=1000.0, at_least=True).met is False
    assert Figure("3", "rate", 1000.0, "turns/s", target=1000.0, at_least=True).met is True
    assert Figure("4", "ratio", math.nan, target=0.5).met is None   # unavailable is not "met"
    assert Figure("6", "rss", 120.0, "MB").met is None               # no target, nothing judged


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_results_name_every_missed_target_and_every_benchmark_that_failed():
    results = {
        "burst": {"seconds": 12.0, "load": "0.5 0.4 0.3", "figures": [
            Figure("3 Burst", "turns per second", 640.0, "turns/s", target=1000.0, at_least=True).as_dict(),
            Figure("3 Burst", "p99 turn latency", 12.5, "ms", target=25.0, detail="a | b").as_dict(),
        ]},
        "growth": {"seconds": 3.0, "load": "1 1 1", "error": "exit code 1:\nConnectionRefusedError"},
    }
    text = render(results, quick=False, total=15.0, info=[("cores", "2")])
    assert "**1 of 2 targets met**" in text and "growth" in text.split("did not finish:")[1]
    assert "| 3 Burst | turns per second | 640 turns/s | ≥ 1000 turns/s | **not met** |" in text
    assert "a \\| b" in text                     # a pipe in a detail does not break the table
    assert "## Targets not met" in text and "- 3 Burst: turns per second: 640 turns/s, target ≥ 1000 turns/s" in text
    assert "ConnectionRefusedError" in text
    assert "Quick run" in render(results, quick=True, total=1.0, info=[])


def test_results_show_how_fast_the_machine_was_before_each_benchmark():
    """Absolute figures depend on the machine: each benchmark's row says how fast it was when it started."""
    results = {
        "burst": {"seconds": 12.0, "load": "0.5 0.4 0.3", "cpu_reference_ms": 11.04, "figures": []},
        "peer": {"seconds": 3.0, "load": "1 1 1", "cpu_reference_ms": 29.46, "figures": []},
        "growth": {"seconds": 3.0, "load": "1 1 1", "cpu_reference_ms": 50.0, "figures": [],
                   "kept": "2026-11-01 at commit abc"},
        "footprint": {"seconds": 3.0, "load": "1 1 1", "figures": []},      # from before the reference
    }
    text = render(results, quick=False, total=15.0, info=[("cores", "2")])
    assert "| burst | 12 | 0.5 0.4 0.3 | 11.0 ms | ok |" in text
    assert "| footprint | 3 | 1 1 1 | – | ok |" in text
    # the machine's range over this run: a figure kept from an earlier run does not count
    assert "| CPU reference | 11.0–29.5 ms before the benchmarks of this run" in text


def test_the_cpu_reference_is_a_positive_duration():
    assert 0 < cpu_reference_ms(repeat=1) < 10_000


async def test_a_small_burst_ends_in_one_signal_and_one_notification_per_report():
    async with Store("sqlite") as url:
        per_second, turns, latencies, outcome = await closed_loop(url, 4)
    assert turns == 36 and len(latencies) == 36 and per_second > 0
    assert outcome.startswith("4 signals, 4 distinct references, 4 AF notifications each delivered once")


async def test_the_burst_check_fails_when_a_notification_shows_twice(monkeypatch):
    original = CountingNotifier.send

    async def twice(self, recipient, reply, key):
        await original(self, recipient, reply, key)
        if not key.startswith("reminder:"):
            self.shown[key] += 1

    monkeypatch.setattr(CountingNotifier, "send", twice)
    async with Store("sqlite") as url:
        with pytest.raises(AssertionError, match="repeats 2"):
            await closed_loop(url, 2)
