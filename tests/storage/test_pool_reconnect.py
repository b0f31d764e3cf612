"""A pooled PostgreSQL connection the server has ended (a restart, pg_terminate_backend) is replaced before a
turn gets it: the next message is answered, not met with "try again" (meldbot.storage.db.make_engine)."""

from __future__ import annotations

import asyncpg

from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.run.app import build_app
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated


def _message(text: str) -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", "anna"), conversation_id="anna", text=text)


async def test_a_turn_after_the_server_ended_the_pooled_connections_is_answered(postgres_database, clock,
                                                                              monkeypatch):
    from meldbot.storage import db

    # Whether the server's goodbye has reached the socket yet or not (no sleep to wait for it): a connection
    # that lay idle is pinged before use. Here every connection counts as idle.
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", -1.0)
    await migrated(postgres_database)
    app = build_app(make_config(postgres_database), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.settled()
        first = await app.bot.handle(_message("melden"))
        admin = await asyncpg.connect(postgres_database.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await admin.close()
        assert ended >= 1
        second = await app.bot.handle(_message("Een man houdt paspoorten van vrouwen vast."))
    assert "Waar gebeurde het?" in " ".join(r.text for r in second), (first, second)
