"""Issue 17, H2: the shared Matrix sync row on a real PostgreSQL. A new holder's set_holder always wins, and
an old holder's save that was under way at the take-over writes nothing over its successor."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from meldbot.storage.db import Database
from meldbot.storage.matrix import MatrixSyncState
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.uow import UnitOfWorkFactory

pytestmark = pytest.mark.postgres

BOT = "@meldbot:test.example"
AT = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


async def test_an_old_holders_save_under_way_at_a_take_over_does_not_write_over_the_new_holder(postgres_database):
    db = Database(postgres_database)
    await db.migrate()
    uow = UnitOfWorkFactory(db, PlainSealer())
    old, new = MatrixSyncState(uow, BOT, lambda: AT), MatrixSyncState(uow, BOT, lambda: AT)
    try:
        await old.set_holder("A", True)
        assert await old.save_position("s1", "A")
        # A's save is under way (it may have read the row: A is holder) when B takes the stream and saves.
        read, taken = asyncio.Event(), asyncio.Event()
        real = old._current

        async def slow_current(work):
            row = await real(work)
            read.set()
            await asyncio.wait_for(taken.wait(), 10)
            return row

        old._current = slow_current
        saving = asyncio.create_task(old.save_position("s2-old", "A"))
        await asyncio.wait([saving, asyncio.ensure_future(read.wait())], timeout=10,
                           return_when=asyncio.FIRST_COMPLETED)
        await new.set_holder("B", True)
        assert await new.save_position("s3", "B")
        taken.set()
        await asyncio.wait_for(saving, 10)
        assert (await new.get())[:2] == ("s3", "B")       # not A's older position over B's
        assert not await old.save_position("s4-old", "A")
        # A stepping down late clears nothing of B's; B taking the stream again when it is recorded already is fine.
        await old.set_holder("A", False)
        await new.set_holder("B", True)
        assert (await new.get())[:2] == ("s3", "B")
    finally:
        await db.dispose()
