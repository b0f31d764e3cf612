"""Rows as an older revision of the schema left them, for the tests of what a migration keeps working."""

from __future__ import annotations

import sqlalchemy as sa

from meldbot.storage.db import Database


async def signal_at_0011(db: Database) -> None:
    """Signal 1 of bergeijk as revision 0011 leaves it (no partner_log column): passed to politie and nla on
    Wednesday 18 November 2026, 10:30, picked up by anna; then the database stays at 0011."""
    await db.migrate()
    await db.downgrade("0011")
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO signal (meldpunt_id, ref_year, ref_number, status, form, context, urgent, anonymous, "
            "content_sealed, created_at, updated_at, partners, forwarded_at, handler) VALUES ('bergeijk', 2026, 1, "
            "'doorgezet', 'arbeid', 'balie', false, false, '{}', '2026-11-18 09:30:00', '2026-11-18 09:30:00', "
            "'politie,nla', '2026-11-18 09:30:00', 'anna')"))
        signal_id = (await conn.execute(sa.text("SELECT id FROM signal"))).scalar_one()
        for kind, partner in [("ingediend", None), ("doorgezet", "politie"), ("doorgezet", "nla")]:
            data = '{"partner": "%s"}' % partner if partner else "{}"
            await conn.execute(sa.text(
                "INSERT INTO signal_event (signal_id, meldpunt_id, at, actor, kind, data_sealed) VALUES "
                "(:id, 'bergeijk', '2026-11-18 09:30:00', 'anna', :kind, :data)"),
                {"id": signal_id, "kind": kind, "data": data})
