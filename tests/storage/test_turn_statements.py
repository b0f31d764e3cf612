"""How many SQL statements a melder's turn runs: each is a round trip to the database, and round trips are
most of a turn's cost under a burst (benchmarks/README.md). A new statement in every turn should be a choice,
so this fails when the count grows; raise the bound with the reason in the commit."""

from __future__ import annotations

from contextvars import ContextVar

from sqlalchemy import event

from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.run.app import build_app
from tests.support import FakeNotifier, make_config
from tests.support.chat import SCRIPT, migrated

# PostgreSQL: the conversation's lock (with the transaction's lock_timeout) + the conversation and the person
# in one read + the conversation's update; SQLite has no lock statement. BEGIN and COMMIT are not counted.
ORDINARY_TURN = {"postgresql": 3, "sqlite": 2}
# `versturen`: lock, reads, reference number, signal, melder, events, keys, audit, the AFs' languages,
# their notification, the conversation's removal.
SUBMISSION = {"postgresql": 11, "sqlite": 10}


async def test_a_melder_turn_runs_few_statements(database_url, clock):
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

        event.listen(app.db.engine.sync_engine, "before_cursor_execute", count)
        per_turn = []
        try:
            for line in SCRIPT:
                counted.clear()
                in_turn.set(True)
                replies = await app.bot.handle(IncomingMessage(sender=Identity("console", "anna"),
                                                               conversation_id="anna", text=line))
                assert replies
                in_turn.set(False)
                per_turn.append(len([s for s in counted if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]))
        finally:
            event.remove(app.db.engine.sync_engine, "before_cursor_execute", count)
    assert max(per_turn[1:-1]) <= ORDINARY_TURN[dialect], (per_turn, counted)
    assert per_turn[-1] <= SUBMISSION[dialect], per_turn
