"""`lijst`, `toon` and the reminder sweep use indexes: no sequential scan of the signal table with
10,000 signals (PostgreSQL)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy import event

from meldbot.run.app import build_app
from meldbot.core.messaging import Identity, IncomingMessage
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated

SEED = """
INSERT INTO signal (meldpunt_id, ref_year, ref_number, status, form, context, urgent, anonymous, handler,
                    content_sealed, created_at, updated_at, partners, closed_at, melder_last_informed_at)
SELECT CASE WHEN n % 10 = 0 THEN 'elders' ELSE 'bergeijk' END, 2020 + n / 2000, n,
       CASE WHEN n % 50 = 0 THEN 'ontvangen' WHEN n % 50 = 1 THEN 'in_behandeling' ELSE 'afgesloten' END,
       'arbeid', 'balie', false, false, NULL, '{"wat": "x"}', now() - (n || ' hours')::interval, now(), '',
       -- closed signals were closed after a day and the melder told the outcome the day after
       CASE WHEN n % 50 > 1 THEN now() - (n || ' hours')::interval + interval '1 day' END,
       CASE WHEN n % 50 > 1 THEN now() - (n || ' hours')::interval + interval '2 days' END
FROM generate_series(1, 10000) AS n
"""


async def test_lijst_toon_and_the_reminder_sweep_do_not_scan_the_signal_table(postgres_database, clock):
    await migrated(postgres_database)
    app = build_app(make_config(postgres_database), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        async with app.db.engine.begin() as conn:
            await conn.execute(sa.text(SEED))
            await conn.execute(sa.text(
                "INSERT INTO melder (signal_id, meldpunt_id, lookup, identity_sealed) "
                "SELECT id, meldpunt_id, md5(id::text), :identity FROM signal"),
                {"identity": '{"platform": "console", "user_id": "x"}'})
            await conn.execute(sa.text("ANALYZE"))
        captured: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT") and "FROM signal" in statement:
                captured.append((statement, parameters))

        event.listen(app.db.engine.sync_engine, "before_cursor_execute", capture)
        for text in ("lijst", "toon 7001", "toon MH-2023-7001"):
            replies = await app.bot.handle(IncomingMessage(sender=Identity("console", "af"), conversation_id="af",
                                                           text=text))
            assert "iets mis" not in replies[0].text
        await app.reminders.sweep()
        event.remove(app.db.engine.sync_engine, "before_cursor_execute", capture)
        assert len(captured) >= 4
        assert any("melder_last_informed_at" in statement for statement, _ in captured)   # the sweep's query
        plans = []
        async with app.db.engine.connect() as conn:
            for statement, parameters in captured:
                rows = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plans.append("\n".join(r[0] for r in rows))
    scanned = [plan for plan in plans if re.search(r"Seq Scan on signal\s", plan)]
    assert scanned == []
    assert any("Index" in plan for plan in plans)
    # The sweep reads only open signals and closed ones not yet told: the partial index, not the table.
    [sweep] = [plan for (statement, _), plan in zip(captured, plans) if "melder_last_informed_at <" in statement]
    assert "ix_signal_reminder_candidates" in sweep, sweep


def test_the_reminder_index_condition_names_the_closed_status_the_domain_uses():
    """The condition is SQL text (the planner needs the literal): a renamed status must not slip past it."""
    from meldbot.core.domain import Status
    from meldbot.storage.tables import REMINDER_CANDIDATE_SQL

    assert f"status <> '{Status.CLOSED}'" in REMINDER_CANDIDATE_SQL
