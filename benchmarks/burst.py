"""Benchmark 3: the burst after an awareness training, on SQLite and on PostgreSQL.

Through the in-process path every platform adapter uses (`app.bot.handle`) with the real storage,
encryption (AES-GCM sealing, HMAC keys) and outbox; the dispatcher delivers AF notifications to a
counting notifier while the burst runs.

(a) Throughput, closed loop: N employees each complete a full report as fast as replies come.
    Checked: exactly N signals, N distinct references, every AF notification delivered once.
(b) Latency, open loop: turns arrive at 100/s (Poisson, seeded) for 60 s whatever the bot does;
    latency counts from the scheduled arrival, so a bot that falls behind pays for the queue.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
from datetime import datetime, timezone

from benchmarks.common import Figure, bench_config, main, percentile, summary_ms

from meldbot.app import build_app
from meldbot.clock import ManualClock
from meldbot.messaging import Identity, IncomingMessage, RecipientAway
from storage.db import Database

POSTGRES = os.environ.get("MELDBOT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

STREETS = ["Kerkstraat", "Dorpsstraat", "Molenweg", "Stationsplein", "Industrieweg", "Hoofdstraat"]
WHAT = [
    "Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun paspoorten.",
    "In een kamer staan drie stapelbedden; de bewoners werken elke dag bij hetzelfde bedrijf.",
    "Een jonge vrouw komt elke week met een andere man langs en mag zelf niets zeggen.",
    "Uitzendkrachten slapen in een loods achter het bedrijf en krijgen geen loonstrook.",
]
WHEN = ["gisteren", "vorige week", "vandaag", "maandag", "12 november", "eergisteren"]


def script(n: int, rng: random.Random) -> list[str]:
    """One employee's full report; texts vary so that nothing is answered from a cache."""
    return [
        "melden",
        f"{rng.choice(WHAT)} (waarneming {n})",
        f"{rng.choice(STREETS)} {rng.randint(1, 400)}, Bergeijk",
        rng.choice(WHEN),
        rng.choice(["onbekend", f"een man van ongeveer {rng.randint(25, 60)} jaar"]),
        str(rng.randint(1, 4)),
        rng.choice(["balie", "huisbezoek", "controle"]),
        rng.choice(["nee", "ja"]),
        "versturen",
    ]


class CountingNotifier:
    """Like a platform: shows each idempotency key once, and counts every delivery attempt."""

    platform = "console"

    def __init__(self) -> None:
        self.shown: dict[str, int] = {}
        self.calls = 0

    async def send(self, recipient: Identity, reply, key: str) -> None:
        if key.startswith("reminder:"):
            return
        self.calls += 1
        self.shown[key] = self.shown.get(key, 0) + 1


def message(user: str, text: str) -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", user), conversation_id=user, text=text, sender_name=user)


def wednesday() -> ManualClock:
    return ManualClock(datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc))


class Store:
    """A fresh database for one measurement: an SQLite file, or a new PostgreSQL database."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._dir = None
        self._pg_name = None

    async def __aenter__(self) -> str:
        if self.kind == "sqlite":
            self._dir = tempfile.TemporaryDirectory(prefix="meldbot-bench-")
            self.url = f"sqlite+aiosqlite:///{self._dir.name}/meldbot.db"
        else:
            self._pg_name = f"meldbot_bench_{uuid.uuid4().hex[:10]}"
            await _pg_admin(f'CREATE DATABASE "{self._pg_name}"')
            self.url = POSTGRES.rsplit("/", 1)[0] + "/" + self._pg_name
        db = Database(self.url)
        await db.migrate()
        await db.dispose()
        return self.url

    async def __aexit__(self, *exc) -> None:
        if self._dir:
            self._dir.cleanup()
        if self._pg_name:
            await _pg_admin(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drained(app, notifier: CountingNotifier, expected: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
        if stats["pending"] == 0 or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


async def check_outcome(app, notifier: CountingNotifier, employees: int, finals: list[str]) -> str:
    """Raise unless every report became exactly one signal with its own reference, notified once."""
    stats = await drained(app, notifier, employees)
    async with app.uow() as uow:
        signals = await uow.signals.count()
    references = {w.rstrip(".") for text in finals for w in text.split() if w.startswith("MH-")}
    problems = []
    if signals != employees:
        problems.append(f"{signals} signals for {employees} reports")
    if len(references) != employees:
        problems.append(f"{len(references)} distinct references for {employees} reports")
    if len(notifier.shown) != employees or any(n != 1 for n in notifier.shown.values()):
        problems.append(f"{len(notifier.shown)} notifications shown, repeats {sum(n - 1 for n in notifier.shown.values())}")
    if stats != {"pending": 0, "parked": 0, "delivered": employees}:
        problems.append(f"outbox {stats}")
    if problems:
        raise AssertionError("; ".join(problems))
    return (f"{signals} signals, {len(references)} distinct references, {len(notifier.shown)} AF notifications "
            f"each delivered once ({notifier.calls} sends)")


async def closed_loop(url: str, employees: int) -> tuple[float, int, list[float], str]:
    notifier = CountingNotifier()
    app = build_app(bench_config(url), mode="chat", clock=wednesday(), notifiers={"console": notifier})
    rng = random.Random(3)
    scripts = [script(n, rng) for n in range(employees)]
    latencies: list[float] = []
    finals: list[str] = []

    async def employee(n: int) -> None:
        user = f"medewerker{n:04d}"
        replies = []
        for line in scripts[n]:
            started = time.perf_counter()
            replies = await app.bot.handle(message(user, line))
            latencies.append(time.perf_counter() - started)
        finals.append(replies[-1].text if replies else "")

    async with app:
        await app.settled()                     # start-up work (catch-up sweep, warm-up) out of the way
        started = time.perf_counter()
        await asyncio.gather(*(employee(n) for n in range(employees)))
        elapsed = time.perf_counter() - started
        outcome = await check_outcome(app, notifier, employees, finals)
    turns = sum(len(s) for s in scripts)
    return turns / elapsed, turns, latencies, outcome


async def open_loop(url: str, rate: float, seconds: float) -> tuple[list[float], str, float]:
    notifier = CountingNotifier()
    app = build_app(bench_config(url), mode="chat", clock=wednesday(), notifiers={"console": notifier})
    rng = random.Random(7)
    per_report = len(script(0, rng))
    employees = max(1, round(rate * seconds / per_report))
    scripts = [script(n, rng) for n in range(employees)]
    # Turn slot k belongs to employee k % employees: an employee's messages are `employees` slots apart
    # (about 6.7 s at the full size), far more than a turn takes, as people type.
    slots = [(k % employees, k // employees) for k in range(employees * per_report)]
    arrivals, t = [], 0.0
    for _ in slots:
        t += rng.expovariate(rate)
        arrivals.append(t)
    latencies: list[float] = []
    finals: list[str] = []
    lag: list[float] = []

    async def turn(n: int, step: int, due: float) -> None:
        replies = await app.bot.handle(message(f"medewerker{n:04d}", scripts[n][step]))
        latencies.append(time.perf_counter() - due)
        if step == per_report - 1:
            finals.append(replies[-1].text if replies else "")

    async with app:
        await app.settled()
        tasks = []
        start = time.perf_counter()
        for (n, step), at in zip(slots, arrivals):
            due = start + at
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            lag.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(turn(n, step, due)))
        await asyncio.gather(*tasks)
        outcome = await check_outcome(app, notifier, employees, finals)
    return latencies, outcome, percentile(lag, 99)


async def measure(quick: bool) -> list[Figure]:
    employees = 50 if quick else 1000
    rate, seconds = (100.0, 5.0) if quick else (100.0, 60.0)
    figures = []
    for kind in ("sqlite", "postgresql"):
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        async with Store(kind) as url:
            per_second, turns, latencies, outcome = await closed_loop(url, employees)
        figures.append(Figure(
            "3 Burst", f"(a) closed loop, {employees} employees, {label}: turns per second", per_second, "turns/s",
            target=1000.0 if kind == "postgresql" else None, at_least=True,
            detail=f"{turns} turns; per turn {summary_ms(latencies)}; {outcome}"))
        async with Store(kind) as url:
            latencies, outcome, lag99 = await open_loop(url, rate, seconds)
        figures.append(Figure(
            "3 Burst", f"(b) open loop {rate:g} turns/s for {seconds:g} s, {label}: p50 turn latency",
            percentile(latencies, 50) * 1000, "ms", detail=summary_ms(latencies)))
        figures.append(Figure(
            "3 Burst", f"(b) open loop {rate:g} turns/s for {seconds:g} s, {label}: p99 turn latency",
            percentile(latencies, 99) * 1000, "ms", target=25.0,
            detail=f"{outcome}; load generator's own p99 lag {lag99 * 1000:.2f} ms"))
    return figures


if __name__ == "__main__":
    main(measure)
