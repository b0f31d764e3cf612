"""The cheapest part of the quick benchmark check (`python -m benchmarks.run --quick`), as a test.

Two ratios, each to a baseline measured in the same process and run, judged against the quick check's own
limits (benchmarks/run.py QUICK, about twice each target), so machine noise passes and a real regression
does not:

- the dialog engine per turn against botbuilder-dialogs' waterfall (target 0.5, limit 1.0);
- a Teams turn on SQLite, signed POST to the reply at a loopback connector, against an echo agent on the
  same SDK that commits one row per turn to the same database (target 1.2 for the p50, limit 2.4).

A ratio past its limit is measured once more and the better of the two counts: a moment of load from
elsewhere on the machine passes, a slower meldbot fails both. Each has a twin that makes meldbot slower on
purpose and expects the check to catch it. No Synapse, no PostgreSQL; about 20-25 s in all.
"""

from __future__ import annotations

import gc
import time

import pytest

from benchmarks.run import QUICK, quick_verdicts

pytestmark = pytest.mark.filterwarnings("ignore")


def limit(module: str, name: str) -> float:
    return dict(QUICK[module])[name]


PEER_RATIO = "dialog engine per turn, ratio meldbot/botbuilder"
TEAMS_RATIO = "p50 ratio meldbot/committing echo, SQLite"


async def peer_ratio() -> float:
    """meldbot's dialog engine per turn / botbuilder-dialogs' per turn: 40 scripted reports each, the best
    of three interleaved runs after a warm-up."""
    from benchmarks import peer

    unavailable = peer.botbuilder_available()
    assert unavailable is None, f"botbuilder-dialogs (in the test extra) is not installed: {unavailable}"
    from meldbot.dialogs.when import warm_up

    warm_up()
    engine = peer.MeldbotEngine()
    engine.run(peer.conversations(10, seed=99))
    await peer.run_peer(peer.conversations(10, seed=99))
    convs = peer.conversations(40)
    ours, theirs = [], []
    for _ in range(3):
        gc.collect()
        ours.append(engine.run(convs)[0])
        gc.collect()
        theirs.append((await peer.run_peer(convs))[0])
    return min(ours) / min(theirs)


async def teams_ratio() -> float:
    from benchmarks import teams_latency

    figures = await teams_latency.measure_on("sqlite", quick=True, dialogs=6)
    [verdict] = [v for v in quick_verdicts({"teams_latency": {"figures": [f.as_dict() for f in figures]}})
                 if v[1] == TEAMS_RATIO]
    return verdict[2]


async def best_of_two(measure, limit: float) -> float:
    ratio = await measure()
    return ratio if ratio <= limit else min(ratio, await measure())


async def test_the_dialog_engine_stays_well_under_botbuilder_per_turn():
    ratio = await best_of_two(peer_ratio, limit("peer", PEER_RATIO))
    assert ratio <= limit("peer", PEER_RATIO), f"meldbot/botbuilder per turn {ratio:.3f}"


async def test_the_peer_check_fails_when_the_dialog_engine_gets_slower(monkeypatch):
    """Each turn of meldbot's engine is slowed by twice the time of one botbuilder turn on this machine; the
    ratio must then exceed its limit (1.0). The delay is measured, not fixed: a fixed 2 ms was twice a botbuilder turn on the
    AMD EPYC of the earlier runs and less than one on a 2 GHz Xeon, where the check let it through."""
    from benchmarks import peer
    from meldbot.dialogs import report

    step = report.step
    calls = 0

    def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return step(*args, **kwargs)

    convs = peer.conversations(40)
    monkeypatch.setattr(report, "step", counted)
    peer.MeldbotEngine().run(convs)
    theirs = (await peer.run_peer(convs))[0]
    extra = 2 * theirs / calls                      # seconds per turn: twice botbuilder's whole turn

    def slower(*args, **kwargs):
        until = time.perf_counter() + extra
        while time.perf_counter() < until:
            pass
        return step(*args, **kwargs)

    monkeypatch.setattr(report, "step", slower)
    ratio = await peer_ratio()      # the delay is in every turn: a second measurement would only repeat it
    assert ratio > limit("peer", PEER_RATIO), (
        f"an engine {extra * 1000:.2f} ms slower per turn passed the check: {ratio:.3f}")


async def test_a_teams_turn_stays_near_an_echo_agent_that_commits_one_row(monkeypatch):
    monkeypatch.delenv("BENCH_INJECT_DELAY_MS", raising=False)
    ratio = await best_of_two(teams_ratio, limit("teams_latency", TEAMS_RATIO))
    assert ratio <= limit("teams_latency", TEAMS_RATIO), f"meldbot/committing echo p50 {ratio:.2f}"


async def test_the_teams_check_fails_when_the_turn_gets_slower(monkeypatch):
    """meldbot's Teams turn sleeps three committing-echo turns (p50, measured on this machine a moment
    before) first: the ratio must pass its limit (2.4). Measured, not fixed: a committing echo turn took
    2-3 ms on the AMD EPYC of the earlier runs and 8-9 ms on a 2 GHz Xeon."""
    from benchmarks import teams_latency

    monkeypatch.delenv("BENCH_INJECT_DELAY_MS", raising=False)
    figures = await teams_latency.measure_on("sqlite", quick=True, dialogs=3)
    [echo] = [f for f in figures if f.name == "committing echo POST -> reply at connector, SQLite"]
    delay_ms = 3 * echo.value
    monkeypatch.setenv("BENCH_INJECT_DELAY_MS", f"{delay_ms:.1f}")
    ratio = await teams_ratio()
    assert ratio > limit("teams_latency", TEAMS_RATIO), (
        f"a turn {delay_ms:.1f} ms slower passed the check: {ratio:.2f}")


def test_the_quick_check_flags_a_ratio_past_its_limit_and_a_missing_one():
    from benchmarks.common import Figure

    within = Figure("4 Peer", PEER_RATIO, 0.3, "×", target=0.5).as_dict()
    past = Figure("2 Teams", TEAMS_RATIO, 3.4, "x", target=1.2).as_dict()
    verdicts = {(m, n): ok for m, n, _v, _l, ok in quick_verdicts(
        {"peer": {"figures": [within]}, "teams_latency": {"figures": [past]}})}
    assert verdicts[("peer", PEER_RATIO)] is True
    assert verdicts[("teams_latency", TEAMS_RATIO)] is False
    assert verdicts[("teams_latency", "p50 ratio meldbot/committing echo, PostgreSQL")] is False   # missing


def test_figures_kept_from_an_older_results_md_come_back_as_they_were_written(tmp_path):
    from benchmarks.common import Figure
    from benchmarks.run import _parse_markdown, render

    figures = [Figure("7 Replicas", "1 process: turns per second", 47.6, "turns/s", detail="150 employees | x"),
               Figure("7 Replicas", "2 processes / 1 process", 1.32, "x")]
    results = {"replicas": {"seconds": 105.0, "load": "1 1 1", "figures": [f.as_dict() for f in figures]}}
    path = tmp_path / "RESULTS.md"
    path.write_text(render(results, quick=False, total=100.0, info=[("date", "2026-11-23 18:57 UTC")]))
    parsed = _parse_markdown(path)
    assert dict(parsed["machine"])["date"] == "2026-11-23 18:57 UTC"
    [kept] = parsed["results"]["replicas"]["figures"][:1]
    assert (kept["name"], kept["value"], kept["unit"], kept["detail"]) == (
        "1 process: turns per second", 47.6, "turns/s", "150 employees | x")
