"""`meldbot rotate-key` runs while the bot answers (docs/beheer.md, "Sleutel wisselen"): what a turn writes in
the meantime is not overwritten by the rotation's copy of the row from before it (PostgreSQL)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from meldbot.core.domain import RefQuery
from meldbot.storage.db import Database
from meldbot.storage.rotation import Rotation
from meldbot.storage.sealing import KeyringSealer, new_key
from meldbot.storage.uow import SqlUnitOfWork
from tests.support.matrix import until
from tests.support import until_async
from tests.support.privacy import seed

DEADLINE = 30.0


async def _done_or_waiting(task: asyncio.Task, db: Database) -> bool:
    """`task` finished, or a transaction of this database waits for a lock."""
    if task.done():
        return True
    async with db.engine.connect() as conn:
        return bool((await conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ))).scalar())


class HeldRotation:
    """A rotation held right after it read its first batch of signals (it patches AsyncSession.exec)."""

    def __init__(self, db: Database, sealer: KeyringSealer, monkeypatch) -> None:
        self.selected, self.go = asyncio.Event(), asyncio.Event()
        original = AsyncSession.exec
        selected, go = self.selected, self.go

        async def exec_(session, statement, *args, **kwargs):
            result = await original(session, statement, *args, **kwargs)
            text = str(statement)
            if "FROM signal" in text and "signal.content_sealed NOT LIKE" in text and not selected.is_set():
                selected.set()
                await go.wait()
            return result

        monkeypatch.setattr(AsyncSession, "exec", exec_)
        self.task = asyncio.create_task(Rotation(db, sealer, batch_size=10).run())

    async def read(self) -> None:
        await until(lambda: self.selected.is_set() or self.task.done(), "the rotation's read", DEADLINE)
        assert not self.task.done(), "the rotation ended without reading the signals"

    async def finish(self):
        self.go.set()
        return await asyncio.wait_for(self.task, DEADLINE)


async def test_reading_a_signal_while_the_rotation_holds_it_does_not_wait(postgres_database, clock, monkeypatch):
    """Review finding: with FOR UPDATE the batch also blocked the key-share lock an insert into a table that
    refers to the signal takes, so the audit line of `toon` or `lijst` waited for the whole batch."""
    old, new = new_key(), new_key()
    await seed(postgres_database, KeyringSealer(old), clock)
    both = KeyringSealer(new, [old])
    db = Database(postgres_database)
    rotation = HeldRotation(db, both, monkeypatch)
    try:
        await rotation.read()

        async def read_signal_1() -> None:
            async with SqlUnitOfWork(db, both) as uow:
                await uow.audit.append(meldpunt_id="bergeijk", signal_id=1, actor_kind="af", actor="af",
                                       action="gelezen", at=clock.now())
                await uow.commit()

        await asyncio.wait_for(read_signal_1(), 5.0)     # the batch is still held
        assert not rotation.task.done()
        assert (await rotation.finish()).done
    finally:
        rotation.go.set()
        await db.dispose()


async def test_a_signal_erased_by_retention_during_the_rotation_stays_erased(postgres_database, clock, monkeypatch):
    """Found by reading rotation.py: it read a batch of signals, sealed their content again and wrote it back,
    with their matching keys, without a lock. A signal that retention erased in between came back: its
    content, what it mentions and its keys, sealed under the new key."""
    old, new = new_key(), new_key()
    await seed(postgres_database, KeyringSealer(old), clock)
    both = KeyringSealer(new, [old])     # the bot restarted with both keys, as the docs say, before rotate-key
    async def erase_first_signal() -> None:
        async with SqlUnitOfWork(db, both) as uow:      # as the nightly retention job does it
            signal = await uow.signals.find(RefQuery(1), ["bergeijk"])
            await uow.signals.erase(signal.id, str(signal.reference), clock.now())
            await uow.commit()

    db = Database(postgres_database)
    rotation = HeldRotation(db, both, monkeypatch)
    try:
        await rotation.read()
        erasure = asyncio.create_task(erase_first_signal())
        # The erasure either commits at once (the rotation holds no lock on the row) or waits for the
        # rotation's lock; either way the rotation goes on after that.
        await until_async(lambda: _done_or_waiting(erasure, db), DEADLINE)
        assert (await rotation.finish()).done
        await asyncio.wait_for(erasure, DEADLINE)
        async with SqlUnitOfWork(db, KeyringSealer(new)) as uow:
            signal = await uow.signals.find(RefQuery(1), ["bergeijk"])
            content, mentions, keys, melders = (await uow.session.exec(sa.text(
                "SELECT content_sealed, mentions_sealed, (SELECT count(*) FROM signal_key WHERE signal_id = :id), "
                "(SELECT count(*) FROM melder WHERE signal_id = :id) FROM signal WHERE id = :id"
            ).bindparams(id=signal.id))).one()
        assert signal.erased_at is not None
        assert (KeyringSealer(new).open(content), mentions, keys, melders) == ("{}", None, 0, 0)
    finally:
        rotation.go.set()
        await db.dispose()
