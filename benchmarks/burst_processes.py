"""Benchmark 3b: the closed-loop burst of benchmark 3 (a) on 1, 2 and 3 processes sharing one PostgreSQL.

The same burst as burst.py's (a), with the same scripts: N employees (1,000) each complete a full report
(9 turns) as fast as replies come, through the in-process path every platform adapter uses
(`app.bot.handle`) with the real storage, encryption (AES-GCM sealing, HMAC keys; one data key shared
by all processes, as a deployment would) and outbox. Here the employees are split over P = 1, 2 and 3 OS
processes (employee n in process n mod P), each with its own app (`build_app(..., mode="chat")`), engine,
pool, turn line and outbox dispatcher, on one fresh PostgreSQL database per P. What the processes share
is what a deployment's processes share: the reference counter, the outbox and the tables.

The processes are started with multiprocessing's "spawn" (no event loop or connection inherited), each
enters its app and waits for `app.settled()`, then says it is ready; start-up is not timed. The parent
then sets one start signal. Each process reports its turns, its per-turn latencies (from the call to
`handle` until its replies) and when it finished (CLOCK_MONOTONIC, the same clock in every process of
the machine). turns/s = all turns / (the latest finish - the moment the parent gave the signal).

Every process's dispatcher delivers AF notifications to its own counting notifier while the burst runs
(the outbox has no leader: each dispatcher claims due rows with FOR UPDATE SKIP LOCKED and a lease). Once
every process has finished its employees, all of them drain the outbox together until nothing is pending.
Checked, over all processes: exactly N signals in the database with N distinct references, N distinct
references (MH-...) in the employees' final replies, every new-signal row delivered (none pending or
parked), and each AF notification's key shown exactly once by exactly one process, the same keys as the
delivered rows.

Where it departs from production: no platform, no HTTP, no network between the processes and the
database (loopback); every conversation stays in its process (a load balancer may move them, see
replicas.py, which measures that lock); and the processes and PostgreSQL share this machine's cores
(on 2 cores a second or third process adds an event loop and a pool, not CPU), so the figures show that
nothing serialises across processes and what the shared counter and outbox cost, not the ceiling of a
deployment with a core per process. The clock stands still (a ManualClock at the same moment in each
process), like burst.py's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import time
import traceback

from benchmarks.common import Figure, bench_config, main, summary_ms

import asyncpg  # noqa: E402  (benchmarks.common puts the repo root on sys.path first)

from benchmarks.burst import CountingNotifier, Store, drained, reports, script, wednesday  # noqa: E402
from meldbot.run.app import build_app  # noqa: E402
from meldbot.storage.sealing import new_key  # noqa: E402

SECTION = "3b Burst on processes"
READY_TIMEOUT = 120.0      # spawn, imports, app entered and settled
BURST_TIMEOUT = 480.0      # one process's share of the burst
DRAIN_TIMEOUT = 120.0


# ---- the child process ------------------------------------------------------------------------------

def _child(index: int, processes: int, employees: int, url: str, key: str, conn, start) -> None:
    """One process's share of the burst (entry point of a spawned process)."""
    try:
        asyncio.run(_child_burst(index, processes, employees, url, key, conn, start))
    except BaseException:
        try:
            conn.send(("error", f"process {index}:\n{traceback.format_exc()}"))
        finally:
            raise SystemExit(1)


async def _child_burst(index: int, processes: int, employees: int, url: str, key: str, conn, start) -> None:
    notifier = CountingNotifier()
    app = build_app(bench_config(url, MELDBOT_DATA_KEY=key), mode="chat", clock=wednesday(),
                    notifiers={"console": notifier})
    rng = random.Random(3)                        # the same scripts as burst.py's closed loop
    scripts = [script(n, rng) for n in range(employees)]
    mine = range(index, employees, processes)
    latencies: list[float] = []
    finals: list[str] = []

    async with app:
        await app.settled()                       # start-up work (catch-up sweep, warm-up) out of the way
        conn.send(("ready", os.getpid()))
        await asyncio.to_thread(start.wait)
        began = time.monotonic()
        cpu = time.process_time()
        await asyncio.gather(*(reports(app.bot.handle, n, scripts[n], latencies, finals) for n in mine))
        finished = time.monotonic()
        cpu = time.process_time() - cpu
        conn.send(("done", {"turns": sum(len(scripts[n]) for n in mine), "began": began, "finished": finished,
                            "latencies": latencies, "finals": finals, "cpu": cpu}))
        order = await asyncio.to_thread(conn.recv)
        if order != "drain":
            raise RuntimeError(f"unexpected order {order!r}")
        # Every process delivers until nothing is pending anywhere (rows another process claimed included).
        stats = await drained(app, notifier, employees, timeout=DRAIN_TIMEOUT)
    conn.send(("drained", {"shown": notifier.shown, "calls": notifier.calls, "stats": stats}))


# ---- the parent ---------------------------------------------------------------------------------------

async def _receive(conn, proc, what: str, timeout: float):
    """The next message of one child, which must be `what`; fails on a child's error, death or silence."""
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if not proc.is_alive() and not conn.poll():
            raise AssertionError(f"process {proc.name} ended (exit code {proc.exitcode}) before '{what}'")
        if time.monotonic() > deadline:
            raise AssertionError(f"process {proc.name}: no '{what}' within {timeout:.0f} s")
        await asyncio.sleep(0.01)
    kind, data = conn.recv()
    if kind == "error":
        raise AssertionError(f"a child failed: {data}")
    if kind != what:
        raise AssertionError(f"process {proc.name}: '{kind}' where '{what}' was expected")
    return data


async def _database(url: str) -> dict:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT (ref_year, ref_number)) FROM signal")
        outbox = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE delivered_at IS NULL AND parked_at IS NULL) AS pending, "
            "count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked, "
            "count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered FROM outbox WHERE kind = 'new_signal'")
        keys = await conn.fetch("SELECT idempotency_key FROM outbox WHERE kind = 'new_signal' AND delivered_at IS NOT NULL")
        return {"signals": row[0], "distinct": row[1], "outbox": dict(outbox), "keys": {r[0] for r in keys}}
    finally:
        await conn.close()


async def burst_on(processes: int, employees: int) -> dict:
    """The closed-loop burst on `processes` processes and one fresh PostgreSQL database."""
    ctx = multiprocessing.get_context("spawn")
    key = new_key()
    async with Store("postgresql") as url:
        start = ctx.Event()
        children = []
        try:
            for index in range(processes):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=_child, args=(index, processes, employees, url, key, theirs, start),
                                   name=f"burst-{index}", daemon=True)
                proc.start()
                theirs.close()
                children.append((proc, mine))
            for proc, conn in children:
                await _receive(conn, proc, "ready", READY_TIMEOUT)
            began = time.monotonic()
            start.set()
            done = [await _receive(conn, proc, "done", BURST_TIMEOUT) for proc, conn in children]
            for _proc, conn in children:
                conn.send("drain")
            drains = [await _receive(conn, proc, "drained", DRAIN_TIMEOUT + 30) for proc, conn in children]
            for proc, _conn in children:
                await asyncio.to_thread(proc.join, 30)
        finally:
            for proc, conn in children:
                if proc.is_alive():
                    proc.terminate()
                    await asyncio.to_thread(proc.join, 10)
                conn.close()
        database = await _database(url)
    seconds = max(d["finished"] for d in done) - began
    turns = sum(d["turns"] for d in done)
    latencies = [x for d in done for x in d["latencies"]]
    finals = [text for d in done for text in d["finals"]]
    references = {w.rstrip(".") for text in finals for w in text.split() if w.startswith("MH-")}
    shown: dict[str, int] = {}
    for d in drains:
        for k, n in d["shown"].items():
            shown[k] = shown.get(k, 0) + n
    calls = sum(d["calls"] for d in drains)
    problems = []
    if database["signals"] != employees or database["distinct"] != employees:
        problems.append(f"{database['signals']} signals ({database['distinct']} distinct references in the "
                        f"database) for {employees} reports")
    if len(finals) != employees or len(references) != employees:
        problems.append(f"{len(references)} distinct references in {len(finals)} final replies for {employees} reports")
    if database["outbox"] != {"pending": 0, "parked": 0, "delivered": employees}:
        problems.append(f"outbox {database['outbox']}")
    repeats = sum(n - 1 for n in shown.values())
    if len(shown) != employees or repeats:
        problems.append(f"{len(shown)} notifications shown, repeats {repeats} "
                        f"(per process {[len(d['shown']) for d in drains]})")
    if set(shown) != database["keys"]:
        problems.append(f"{len(set(shown) ^ database['keys'])} notification keys shown but not delivered or the reverse")
    if problems:
        raise AssertionError(f"{processes} process(es): " + "; ".join(problems))
    outcome = (f"{database['signals']} signals, {database['distinct']} distinct references in the database and "
               f"{len(references)} in the replies, {len(shown)} AF notifications each delivered once "
               f"({calls} sends; per process {' + '.join(str(len(d['shown'])) for d in drains)}), outbox pending 0")
    return {"rate": turns / seconds, "turns": turns, "seconds": seconds, "latencies": latencies, "outcome": outcome,
            "per_process": [(d["turns"], d["finished"] - d["began"], d["cpu"]) for d in done],
            "lag": max(d["began"] for d in done) - began}


async def measure(quick: bool) -> list[Figure]:
    employees = 60 if quick else 1000
    figures = []
    base = None
    for processes in (1, 2, 3):
        run = await burst_on(processes, employees)
        each = "; ".join(f"{t} turns in {s:.2f} s, CPU {c:.1f} s" for t, s, c in run["per_process"])
        detail = (f"{run['turns']} turns in {run['seconds']:.2f} s from the common start; per turn "
                  f"{summary_ms(run['latencies'])}; per process: {each}; last process started "
                  f"{run['lag'] * 1000:.1f} ms after the signal; {run['outcome']}")
        if base is None:
            base = run["rate"]
        else:
            detail = f"{run['rate'] / base:.2f}x 1 process ({run['rate']:.0f} vs {base:.0f} turns/s, same run); " + detail
        plural = "es" if processes > 1 else ""
        figures.append(Figure(
            SECTION, f"closed loop, {employees} employees, {processes} process{plural}, one PostgreSQL: turns per second",
            run["rate"], "turns/s", target=1000.0 if processes == 1 else None, at_least=True, detail=detail))
        print(f"  {processes} process{plural}: {run['rate']:.0f} turns/s", flush=True)
    return figures


if __name__ == "__main__":
    main(measure)
