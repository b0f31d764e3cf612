"""Benchmark 3: the burst after an awareness training, on SQLite and on PostgreSQL.

Through the in-process path every platform adapter uses (`app.bot.handle`) with the real storage,
encryption (AES-GCM sealing, HMAC keys) and outbox; the dispatcher delivers AF notifications to a
counting notifier while the burst runs.

(a) Throughput, closed loop: N employees each complete a full report as fast as replies come.
    Checked: exactly N signals, N distinct references, every AF notification delivered once.
(b) Latency, open loop: about 1,170 employees start reporting at random moments and type their
    answers 2-8 s apart, so that turns arrive at 100/s; 60 s of that steady state are measured. The
    arrival times are fixed in advance: latency counts from the scheduled arrival, so a bot that
    falls behind pays for the queue.

Baseline, same run, same database kind, same employees and messages: the committing echo bot, the least
a durable bot does per message (one INSERT of the message and a commit, on an engine made as meldbot makes
its own, with as many turns at once as meldbot's turn line allows), then it answers with the text it got.
Checked: one row per message.
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

import sqlalchemy as sa

from meldbot.run.app import build_app
from meldbot.core.clock import ManualClock
from meldbot.core.messaging import Identity, IncomingMessage, Reply
from meldbot.storage.db import POOL_SIZE, Database, make_engine

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


ECHO_TURNS = sa.Table("bench_echo_turns", sa.MetaData(),
                      sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("conversation", sa.String(64), nullable=False),
                      sa.Column("text", sa.Text, nullable=False))


class CommittingEcho:
    """The baseline bot: commits one row per message, then answers with the message's text. Its engine is
    made as meldbot makes its own (meldbot.storage.db.make_engine), and it lets as many turns at once hold
    a connection as meldbot's turn line does (Database.turn_slots)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # As Database.turn_slots: the pool's size on PostgreSQL, one at a time on SQLite.
        self.slots = asyncio.Semaphore(POOL_SIZE if self.engine.dialect.name == "postgresql" else 1)
        self.insert = ECHO_TURNS.insert()

    async def __aenter__(self) -> "CommittingEcho":
        async with self.engine.begin() as conn:
            await conn.run_sync(ECHO_TURNS.metadata.create_all)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.engine.dispose()

    async def handle(self, msg: IncomingMessage) -> list[Reply]:
        async with self.slots:
            async with self.engine.begin() as conn:
                await conn.execute(self.insert, {"conversation": msg.conversation_id, "text": msg.text})
        return [Reply(msg.text)]

    async def check(self, turns: int) -> str:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(sa.func.count()).select_from(ECHO_TURNS))).scalar_one()
        if rows != turns:
            raise AssertionError(f"the committing echo stored {rows} rows for {turns} messages")
        return f"{rows} rows committed, one per message"


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


async def reports(handle, n: int, lines: list[str], latencies: list[float], finals: list[str]) -> None:
    """Employee n types their report as fast as the replies come: each turn's latency, and the last reply."""
    user = f"medewerker{n:04d}"
    replies = []
    for line in lines:
        started = time.perf_counter()
        replies = await handle(message(user, line))
        latencies.append(time.perf_counter() - started)
    finals.append(replies[-1].text if replies else "")


async def closed_loop(url: str, employees: int) -> tuple[float, int, list[float], str]:
    notifier = CountingNotifier()
    app = build_app(bench_config(url), mode="chat", clock=wednesday(), notifiers={"console": notifier})
    rng = random.Random(3)
    scripts = [script(n, rng) for n in range(employees)]
    latencies: list[float] = []
    finals: list[str] = []

    async with app:
        await app.settled()                     # start-up work (catch-up sweep, warm-up) out of the way
        started = time.perf_counter()
        await asyncio.gather(*(reports(app.bot.handle, n, scripts[n], latencies, finals) for n in range(employees)))
        elapsed = time.perf_counter() - started
        outcome = await check_outcome(app, notifier, employees, finals)
    turns = sum(len(s) for s in scripts)
    return turns / elapsed, turns, latencies, outcome


async def echo_closed_loop(url: str, employees: int) -> tuple[float, int, list[float], str]:
    """The same closed loop against the committing echo bot: the same employees, scripts and concurrency."""
    rng = random.Random(3)
    scripts = [script(n, rng) for n in range(employees)]
    latencies: list[float] = []
    finals: list[str] = []
    async with CommittingEcho(url) as echo:
        started = time.perf_counter()
        await asyncio.gather(*(reports(echo.handle, n, scripts[n], latencies, finals) for n in range(employees)))
        elapsed = time.perf_counter() - started
        turns = sum(len(s) for s in scripts)
        outcome = await echo.check(turns)
    if sorted(finals) != sorted(message("", s[-1]).text for s in scripts):
        raise AssertionError("the echo answered something else")
    return turns / elapsed, turns, latencies, outcome


async def open_loop(url: str, rate: float, seconds: float, think: tuple[float, float], echo: bool = False) -> dict:
    """Employees start at random moments and type their answers with a pause of `think` seconds
    (uniform) between them. Their number is chosen so that, once the first have reached the end of
    their report, turns arrive at `rate` per second; the `seconds` after that are measured. Arrival
    times are fixed in advance: a slow bot does not slow the arrivals down (open loop). With `echo`, the
    same arrivals go to the committing echo bot (the baseline)."""
    notifier = CountingNotifier()
    app = (CommittingEcho(url) if echo else
           build_app(bench_config(url), mode="chat", clock=wednesday(), notifiers={"console": notifier}))
    bot = app if echo else app.bot
    rng = random.Random(7)
    per_report = len(script(0, rng))
    ramp = (per_report - 1) * sum(think) / 2          # the mean time one report takes
    employees = max(1, round(rate * (ramp + seconds) / per_report))
    scripts = [script(n, rng) for n in range(employees)]
    events = []                                        # (arrival, employee, step)
    for n in range(employees):
        t = rng.uniform(0, ramp + seconds)
        for step in range(per_report):
            events.append((t, n, step))
            t += rng.uniform(*think)
    events.sort()
    window = (ramp, ramp + seconds)
    measured: list[float] = []
    finals: list[str] = []
    lag: list[float] = []

    async def turn(n: int, step: int, due: float, counted: bool) -> None:
        replies = await bot.handle(message(f"medewerker{n:04d}", scripts[n][step]))
        if counted:
            measured.append(time.perf_counter() - due)
        if step == per_report - 1:
            finals.append(replies[-1].text if replies else "")

    async with app:
        if not echo:
            await app.settled()
        tasks = []
        start = time.perf_counter()
        for at, n, step in events:
            due = start + at
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            counted = window[0] <= at < window[1]
            if counted:
                lag.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(turn(n, step, due, counted)))
        await asyncio.gather(*tasks)
        outcome = await (app.check(len(events)) if echo else check_outcome(app, notifier, employees, finals))
    arrivals = sum(1 for at, _, _ in events if window[0] <= at < window[1])
    return {"latencies": measured, "outcome": outcome, "lag99": percentile(lag, 99), "employees": employees,
            "rate": arrivals / seconds, "ramp": ramp}


async def measure(quick: bool) -> list[Figure]:
    employees = 50 if quick else 1000
    rate, seconds, think = (100.0, 5.0, (0.2, 0.8)) if quick else (100.0, 60.0, (2.0, 8.0))
    figures = []
    for kind in ("sqlite", "postgresql"):
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        async with Store(kind) as url:
            per_second, turns, latencies, outcome = await closed_loop(url, employees)
        async with Store(kind) as url:
            echo_per_second, echo_turns, echo_latencies, echo_outcome = await echo_closed_loop(url, employees)
        what = f"(a) closed loop, {employees} employees, {label}"
        figures.append(Figure(
            "3 Burst", f"{what}: turns per second", per_second, "turns/s",
            target=1000.0 if kind == "postgresql" else None, at_least=True,
            detail=f"{turns} turns; per turn {summary_ms(latencies)}; {outcome}"))
        figures.append(Figure(
            "3 Burst", f"{what}: baseline, committing echo: turns per second", echo_per_second, "turns/s",
            detail=f"{echo_turns} turns; per turn {summary_ms(echo_latencies)}; {echo_outcome}"))
        figures.append(Figure(
            "3 Burst", f"{what}: meldbot / committing echo", per_second / echo_per_second, "x",
            detail=f"{per_second:.0f} / {echo_per_second:.0f} turns/s, same run"))
        async with Store(kind) as url:
            run = await open_loop(url, rate, seconds, think)
        async with Store(kind) as url:
            echo_run = await open_loop(url, rate, seconds, think, echo=True)
        latencies, echo_latencies = run["latencies"], echo_run["latencies"]
        what = f"(b) open loop {rate:g} turns/s for {seconds:g} s, {label}"
        figures.append(Figure("3 Burst", f"{what}: p50 turn latency", percentile(latencies, 50) * 1000, "ms",
                              detail=summary_ms(latencies)))
        figures.append(Figure(
            "3 Burst", f"{what}: p99 turn latency", percentile(latencies, 99) * 1000, "ms", target=25.0,
            detail=(f"{run['employees']} employees starting at random, {think[0]:g}-{think[1]:g} s between "
                    f"their messages; measured after a {run['ramp']:.0f} s ramp: {len(latencies)} turns "
                    f"({run['rate']:.1f}/s); {run['outcome']}; load generator's own p99 lag "
                    f"{run['lag99'] * 1000:.2f} ms")))
        figures.append(Figure(
            "3 Burst", f"{what}: baseline, committing echo: p99 turn latency",
            percentile(echo_latencies, 99) * 1000, "ms",
            detail=f"the same arrivals; {summary_ms(echo_latencies)}; {echo_run['outcome']}"))
        figures.append(Figure(
            "3 Burst", f"{what}: p99 meldbot / committing echo",
            percentile(latencies, 99) / percentile(echo_latencies, 99), "x",
            detail=f"{percentile(latencies, 99) * 1000:.2f} / {percentile(echo_latencies, 99) * 1000:.2f} ms, same run"))
    return figures


if __name__ == "__main__":
    main(measure)
