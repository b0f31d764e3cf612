"""Outbox rows for the dispatcher's tests."""

from __future__ import annotations

from meldbot.core.messaging import Identity, Reply
from meldbot.storage.db import Database
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.uow import UnitOfWorkFactory


async def queued(url: str, clock, count: int) -> UnitOfWorkFactory:
    db = Database(url)
    await db.migrate()
    uow = UnitOfWorkFactory(db, PlainSealer())
    async with uow() as work:
        for n in range(count):
            await work.outbox.add(meldpunt_id="MH-2026-0001", recipient=Identity("matrix", f"@af{n}:example.org"),
                                  reply=Reply(f"bericht {n}"), key=f"k{n}", kind="inform", at=clock.now())
        await work.commit()
    return uow
