"""The partner log (revision 0012): a signal stored before it keeps being chased as before (one series under
its old claim keys), its exact log comes from its history once read with it, and a downgrade keeps every row."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from meldbot.core.domain import PartnerLog, RefQuery
from meldbot.service.reminders import upcoming
from meldbot.service.services import work_calendar
from meldbot.storage.db import Database
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.uow import SqlUnitOfWork
from tests.support import make_config
from tests.support.older_rows import signal_at_0011

FORWARDED = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


async def test_an_older_signal_is_chased_as_before_until_its_history_gives_the_partner_log(database_url: str) -> None:
    db = Database(database_url)
    config = make_config(database_url)
    cal, settings = work_calendar(config, "bergeijk"), config.reminders_for("bergeijk")
    now = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
    try:
        await signal_at_0011(db)
        await db.migrate()
        async with db.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT partner_log FROM signal"))).scalar_one() is None
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            guessed = await uow.signals.find(RefQuery(1), ["bergeijk"])
            assert guessed is not None and not guessed.partner_log_exact
            assert [d.kind for d in upcoming(guessed, settings, cal, now) if d.kind.startswith("partner")] == ["partner"]
            read = await uow.signals.find(RefQuery(1), ["bergeijk"], with_events=True)
            assert read is not None and read.partner_log_exact
            assert read.partner_log == {"politie": PartnerLog(forwarded_at=FORWARDED),
                                        "nla": PartnerLog(forwarded_at=FORWARDED)}
            read.partner_feedback("anna", "politie", "Onderzoek gestart", now)
            await uow.signals.save(read, now)
            await uow.commit()
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            stored = await uow.signals.find(RefQuery(1), ["bergeijk"])
            assert stored is not None and stored.partner_log_exact
            assert [d.kind for d in upcoming(stored, settings, cal, now)
                    if d.kind.startswith("partner")] == ["partner:nla"]
        await db.downgrade("0011")
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: {col["name"] for col in sa.inspect(c).get_columns("signal")})
            row = (await conn.execute(sa.text("SELECT partners, partner_feedback_at FROM signal"))).one()
        assert "partner_log" not in columns and row[0] == "politie,nla" and row[1] is not None
        await db.migrate()
    finally:
        await db.dispose()

