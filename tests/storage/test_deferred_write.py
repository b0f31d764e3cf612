"""The conversation's update waits for the turn's next statement on PostgreSQL, and goes in one statement with
the record of the platform event (SqlUnitOfWork.defer, ConversationRepository.save, ProcessedEventRepository.
remember). Whatever comes next, the database sees the writes in the order they were asked for, and a unit of
work that is not committed keeps nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from meldbot.core.messaging import Identity, Reply
from meldbot.core.ports import AlreadyHandled
from meldbot.storage import fast
from meldbot.storage.db import Database
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.tables import ConversationRow, ProcessedEventRow
from meldbot.storage.uow import SqlUnitOfWork
from tests.support.chat import migrated

AT = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


async def _with_conversation(url: str) -> Database:
    await migrated(url)
    db = Database(url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wat"}, AT)
        await uow.commit()
    return db


async def _state(db: Database) -> dict | None:
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        loaded = await uow.conversations.load("teams", "c1")
        return loaded[0] if loaded else None


async def test_the_update_and_the_event_record_are_one_statement_and_both_are_kept(database_url):
    db = await _with_conversation(database_url)
    sent: list[str] = []
    fast.listeners.append(sent.append)
    try:
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.conversations.prefetch("teams", "c1", Identity("teams", "p"), "$e1")
            sent.clear()
            await uow.conversations.save("teams", "c1", {"step": "waar"}, AT)
            await uow.processed.remember("teams", "$e1", [Reply("Waar was het?")], AT)
            written = list(sent)
            await uow.commit()
    finally:
        fast.listeners.remove(sent.append)
    assert len(written) == (1 if db.is_postgres else 2), written
    assert await _state(db) == {"step": "waar"}
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        earlier = await uow.processed.replies_for("teams", "$e1")
    assert earlier is not None and [r.text for r in earlier.replies] == ["Waar was het?"]
    await db.dispose()


async def test_a_session_query_or_flush_after_the_update_sees_it(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wanneer"}, AT.replace(hour=11))
        # Straight through the session (as the reminder sweep reads conversations), not the repository.
        touched = [row[0] for row in (await uow.session.exec(sa.select(ConversationRow.updated_at))).all()]
        assert touched == [AT.replace(hour=11)]
        await uow.conversations.save("teams", "c1", {"step": "wie"}, AT.replace(hour=12))
        await uow.flush()
        await uow.commit()
    assert await _state(db) == {"step": "wie"}
    await db.dispose()


async def test_an_update_not_committed_is_not_kept(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "vergeten"}, AT)
    assert await _state(db) == {"step": "wat"}
    await db.dispose()


async def test_an_orm_flush_after_the_update_sends_it_first(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.conversations.save("teams", "c1", {"step": "wie"}, AT)
        uow.session.add(ProcessedEventRow(key="added-by-the-orm", at=AT))
        await uow.session.flush()             # the session's own flush, not the unit of work's
        assert uow._deferred is None
        await uow.commit()
    assert await _state(db) == {"step": "wie"}
    await db.dispose()


async def test_an_event_recorded_before_fails_the_combined_statement_and_keeps_nothing(database_url):
    db = await _with_conversation(database_url)
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.processed.remember("teams", "$e1", [Reply("eerder")], AT)
        await uow.commit()
    with pytest.raises(AlreadyHandled):
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            await uow.conversations.save("teams", "c1", {"step": "dubbel"}, AT)
            await uow.processed.remember("teams", "$e1", [Reply("nog eens")], AT)
    assert await _state(db) == {"step": "wat"}
    await db.dispose()
