"""How many SQL statements a melder's turn runs: each is a round trip to the database, and round trips are
most of a turn's cost under a burst (benchmarks/README.md). A new statement in every turn should be a choice,
so this fails when the count grows; raise the bound with the reason in the commit."""

from __future__ import annotations

from contextvars import ContextVar

import aiosqlite

import pytest
from sqlalchemy import event

from meldbot.storage import fast
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.run.app import build_app
from tests.support import FakeNotifier, make_config
from tests.support.chat import SCRIPT, migrated

# PostgreSQL: the conversation and the person in one read + the conversation's lock (with the transaction's
# lock_timeout) + the check that the conversation is as read (an optimistic turn: the lock and the check go
# with the turn's write, see ConversationRepository.lock) + the conversation's update; SQLite has no lock
# statement. BEGIN, SAVEPOINT, RELEASE (of the savepoint around the check) and COMMIT are not counted.
ORDINARY_TURN = {"postgresql": 4, "sqlite": 2}
# A message with a platform event id (Teams, Matrix): the event is looked up in the same read as the
# conversation, and recorded with the turn's replies: one statement more on SQLite; on PostgreSQL the record
# and the conversation's update are one statement (a data-modifying WITH), so none more.
ORDINARY_EVENT_TURN = {"postgresql": 4, "sqlite": 3}
# `versturen`: lock, reads, the AFs' languages, reference number, signal; then melder, events, keys, audit,
# the AFs' notification and the conversation's removal, on PostgreSQL in one statement (SqlUnitOfWork.write;
# 11 before), on SQLite one by one. On PostgreSQL also the check that goes with the lock.
SUBMISSION = {"postgresql": 7, "sqlite": 10}


@pytest.mark.parametrize("with_event", [False, True], ids=["console", "event-id"])
async def test_a_melder_turn_runs_few_statements(database_url, clock, with_event):
    await migrated(database_url)
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.settled()
        dialect = app.db.engine.dialect.name
        counted: list[str] = []
        in_turn: ContextVar[bool] = ContextVar("in_turn", default=False)

        def count(conn, cursor, statement, parameters, context, executemany):
            # Only the turn's own (the dispatcher runs beside it), and not the check of a keyless test database
            # at each commit (meldbot.storage.canary.PlaintextGuard): production runs with a data key.
            if in_turn.get() and "key_canary" not in statement:
                counted.append(statement)

        def count_fast(statement):   # the turn's statements sent straight to asyncpg (meldbot/storage/fast.py)
            count(None, None, statement, None, None, False)

        event.listen(app.db.engine.sync_engine, "before_cursor_execute", count)
        fast.listeners.append(count_fast)
        per_turn = []
        try:
            for n, line in enumerate(SCRIPT):
                counted.clear()
                in_turn.set(True)
                replies = await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"),
                                                               conversation_id="anna", text=line,
                                                               event_id=f"$event{n}" if with_event else None))
                assert replies
                in_turn.set(False)
                per_turn.append(len([s for s in counted
                                     if not s.lstrip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]))
        finally:
            event.remove(app.db.engine.sync_engine, "before_cursor_execute", count)
            fast.listeners.remove(count_fast)
    ordinary = (ORDINARY_EVENT_TURN if with_event else ORDINARY_TURN)[dialect]
    assert max(per_turn[:-1]) <= ordinary, (per_turn, counted)   # `melden` in a new chat too
    # With an event id the submission also records the event with its replies, and links it to the new signal.
    assert per_turn[-1] <= SUBMISSION[dialect] + 2 * with_event, per_turn


async def _calls_per_turn(url: str, clock, cls, names: tuple[str, ...],
                          with_event: bool = True) -> tuple[list[int], list[str]]:
    """The report dialog with an event id per message (as Teams and Matrix send), with a data key as in
    production (a keyless test database checks its canary at every commit); per turn, how often the turn
    itself called `names` of the driver class `cls`; and the last turn's calls."""
    from meldbot.storage.sealing import KeyringSealer, new_key

    await migrated(url)
    app = build_app(make_config(url), clock=clock, sealer=KeyringSealer(new_key()),
                    notifiers={"console": FakeNotifier()}, mode="chat")
    calls: list[str] = []
    in_turn: ContextVar[bool] = ContextVar("in_turn", default=False)
    real = {name: getattr(cls, name) for name in names}

    def counted(name):
        async def call(self, *args, **kwargs):
            if in_turn.get():
                first = args[0] if args else None
                calls.append(f"{name} {getattr(first, '__name__', str(first))[:40]}")
            return await real[name](self, *args, **kwargs)
        return call

    per_turn = []
    async with app:
        await app.settled()
        for name in names:
            setattr(cls, name, counted(name))
        try:
            for n, line in enumerate(SCRIPT):
                calls.clear()
                in_turn.set(True)
                assert await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"),
                                                            conversation_id="anna", text=line,
                                                            event_id=f"$e{n}" if with_event else None))
                in_turn.set(False)
                per_turn.append(len(calls))
        finally:
            for name, method in real.items():
                setattr(cls, name, method)
    return per_turn, calls


# SQLite: calls into aiosqlite's thread per ordinary turn with an event id: BEGIN IMMEDIATE, the read of the
# conversation, person and event, the conversation's update, the event's record, COMMIT. Each call is a hop
# between threads; through SQLAlchemy's cursor a statement took four (15 per turn before).
ORDINARY_SQLITE_CALLS = 5


async def test_a_melder_turn_on_sqlite_makes_few_calls_into_the_driver_thread(sqlite_url, clock):
    per_turn, calls = await _calls_per_turn(sqlite_url, clock, aiosqlite.Connection, ("_execute",))
    assert max(per_turn[1:-1]) <= ORDINARY_SQLITE_CALLS, (per_turn, calls)


# PostgreSQL: round trips per ordinary turn with an event id. The first turn of a conversation in a process:
# the read of conversation, person and event (before the transaction begins: an optimistic turn,
# ConversationRepository.lock); then BEGIN, the conversation's lock, the check that it is as read, the
# update with the event's record and the COMMIT in one (FastStatements.commit_with). (Before: BEGIN and the
# lock; the read; the write with the COMMIT, and before that BEGIN and the COMMIT on their own.) Every later
# turn there takes what it would read from the process's memory of its last turn (TurnMemory), checked in
# the same round trip: one. The committing echo bot needs three.
FIRST_POSTGRES_ROUND_TRIPS = 2
ORDINARY_POSTGRES_ROUND_TRIPS = 1


@pytest.mark.parametrize("with_event", [False, True], ids=["console", "event-id"])
async def test_a_melder_turn_on_postgresql_makes_few_round_trips(postgres_database, clock, with_event):
    import asyncpg

    per_turn, calls = await _calls_per_turn(postgres_database, clock, asyncpg.Connection,
                                            ("execute", "fetch", "executemany", "fetchrow"), with_event)
    # The first turn too: `melden` in a new chat inserts the conversation with the COMMIT (4 round trips before).
    assert per_turn[0] <= FIRST_POSTGRES_ROUND_TRIPS, (per_turn, calls)
    assert max(per_turn[1:-1]) <= ORDINARY_POSTGRES_ROUND_TRIPS, (per_turn, calls)
