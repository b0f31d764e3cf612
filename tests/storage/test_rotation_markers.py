"""Key rotation and the duplicate-delivery table: replies still kept are re-sealed, content-free markers
are kept, and both are found through the previous key while it is configured (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from meldbot.core.messaging import Reply
from meldbot.storage.db import Database
from meldbot.storage.rotation import Rotation
from meldbot.storage.sealing import KeyringSealer, new_key
from meldbot.storage.uow import SqlUnitOfWork
from tests.support.chat import migrated

AT = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


async def _remember(db: Database, sealer, event_id: str, text: str) -> None:
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.processed.remember("matrix", event_id, [Reply(text)], AT)
        await uow.commit()


async def _earlier(db: Database, sealer, event_id: str):
    async with SqlUnitOfWork(db, sealer) as uow:
        return await uow.processed.replies_for("matrix", event_id)


async def test_rotation_keeps_processed_events_recognisable_through_the_previous_key(database_url):
    await migrated(database_url)
    old, new = new_key(), new_key()
    db = Database(database_url)
    try:
        await _remember(db, KeyringSealer(old), "$answered", "Notitie opgeslagen")
        await _remember(db, KeyringSealer(old), "$marker", "Melding verstuurd")
        async with SqlUnitOfWork(db, KeyringSealer(old)) as uow:      # an hour later: only the marker stays
            await uow.session.exec(sa.text("UPDATE processed_event SET replies_sealed = NULL WHERE key = :k"),
                                   params={"k": KeyringSealer(old).lookup("event", "matrix:$marker")})
            await uow.commit()

        both = KeyringSealer(new, [old])
        progress = await Rotation(db, both, batch_size=1).run()
        assert progress.done and progress.counts.get("processed_event") == 1   # the replies, re-sealed

        async with db.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT replies_sealed FROM processed_event"))).all()
        assert len(rows) == 2                                                 # no row dropped
        assert [both.is_current(r) for (r,) in rows if r is not None] == [True]

        answered = await _earlier(db, both, "$answered")
        marker = await _earlier(db, both, "$marker")
        assert answered is not None and [r.text for r in answered.replies] == ["Notitie opgeslagen"]
        assert marker is not None and marker.replies is None                  # recognised: not handled again
        assert await _earlier(db, both, "$new") is None

        # Without the previous key the old lookups no longer match (the event id is not stored, so the rows
        # cannot be re-keyed): they age out like any marker.
        only_new = KeyringSealer(new)
        assert await _earlier(db, only_new, "$marker") is None
        async with SqlUnitOfWork(db, only_new) as uow:
            assert await uow.processed.forget_before(AT + timedelta(days=8)) == 2
            await uow.commit()
    finally:
        await db.dispose()


async def test_rotation_moves_the_shared_matrix_sync_position_to_the_current_key(database_url):
    from meldbot.storage.matrix import MatrixIdentitySecrets, MatrixSyncState
    from meldbot.storage.uow import UnitOfWorkFactory

    await migrated(database_url)
    old, new = new_key(), new_key()
    db = Database(database_url)
    bot = "@meldbot:gemeente.example"
    try:
        before = UnitOfWorkFactory(db, KeyringSealer(old))
        await MatrixIdentitySecrets(before, bot, lambda: AT).save('{"master": "x"}')
        state = MatrixSyncState(before, bot, lambda: AT)
        await state.set_holder("meldbot-1", True)
        assert await state.save_position("s72_1_0", "meldbot-1")

        both = KeyringSealer(new, [old])
        progress = await Rotation(db, both, batch_size=1).run()
        assert progress.done and progress.counts.get("matrix_sync") == 1
        async with db.engine.connect() as conn:
            [(lookup,)] = (await conn.execute(sa.text("SELECT account_lookup FROM matrix_sync"))).all()
        assert lookup == KeyringSealer(new).lookup("person", f"matrix:{bot}")
        # Found under the new key alone, position and holder kept; another holder may not write over it.
        after = MatrixSyncState(UnitOfWorkFactory(db, KeyringSealer(new)), bot, lambda: AT)
        assert await after.get() == ("s72_1_0", "meldbot-1", AT)
        assert not await after.save_position("s80_1_0", "meldbot-2")
        assert await after.position() == "s72_1_0"
        assert (await Rotation(db, both).run()).counts.get("matrix_sync") is None   # nothing left to move
    finally:
        await db.dispose()
