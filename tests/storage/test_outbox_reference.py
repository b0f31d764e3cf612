"""The outbox keeps the reference of the signal a message is about (revision 0009): rows queued before it get
it from their keys, and a downgrade keeps every row."""

from __future__ import annotations

import sqlalchemy as sa

from meldbot.storage.db import Database

KEYS = {
    "inform:MH-2026-0001:anna:2026-11-18T09:30:00+00:00": "MH-2026-0001",
    "undelivered:7:MH-2026-0001:parked:1:anna:console": "MH-2026-0001",
    "new-signal:MH-2026-0012:anna:console": "MH-2026-0012",
    "reminder:oppakken:MH-2027-10001:0:anna:console": "MH-2027-10001",
    "undelivered:8:parked:1:anna:console": None,                 # an older notice names only the row
    "reminder:overzicht:bergeijk:anna:2026-W47:console": None,   # about no signal
    "alert:MH-2026-0003": None,                                  # not between colons: the LIKE missed it too
}


async def _outbox(db: Database) -> dict[str, str | None]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT idempotency_key, reference FROM outbox"))).all()
    return {key: reference for key, reference in rows}


async def test_an_upgrade_gives_queued_messages_the_reference_their_key_names_and_a_downgrade_keeps_them(
        database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        await db.downgrade("0008")
        async with db.engine.begin() as conn:
            for key in KEYS:
                await conn.execute(sa.text(
                    "INSERT INTO outbox (meldpunt_id, idempotency_key, kind, recipient_platform, recipient_sealed, "
                    "recipient_lookup, payload_sealed, created_at, next_attempt_at, attempts) VALUES ('bergeijk', "
                    ":key, 'inform', 'console', '[]', 'x', '{}', '2026-11-18 09:30:00', '2026-11-18 09:30:00', 0)"),
                    {"key": key})
        await db.migrate()
        assert await _outbox(db) == KEYS
        await db.downgrade("0008")
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: {col["name"] for col in sa.inspect(c).get_columns("outbox")})
            count = (await conn.execute(sa.text("SELECT count(*) FROM outbox"))).scalar_one()
        assert "reference" not in columns and count == len(KEYS)
        await db.migrate()
        assert await _outbox(db) == KEYS
    finally:
        await db.dispose()
