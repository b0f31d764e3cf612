"""Schema changes only through Alembic; start-up refuses an outdated schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meldbot.run.app import build_app
from meldbot.storage.db import Database, SchemaOutdated, head_revision
from tests.support import make_config


async def test_migrate_builds_an_empty_database_and_is_idempotent(database_url):
    db = Database(database_url)
    try:
        assert await db.current_revision() is None
        before, after = await db.migrate()
        assert (before, after) == (None, head_revision())
        assert await db.migrate() == (head_revision(), head_revision())
        await db.check_schema()
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    finally:
        await db.dispose()
    assert {"signal", "melder", "signal_event", "outbox", "conversation", "person", "reference_counter"} <= tables


async def test_startup_refuses_an_empty_database(database_url):
    app = build_app(make_config(database_url), notifiers={})
    with pytest.raises(SchemaOutdated) as info:
        async with app:
            pass
    assert info.value.current is None


async def test_startup_refuses_a_database_at_an_older_revision(database_url):
    db = Database(database_url)
    await db.migrate()
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    await db.dispose()
    app = build_app(make_config(database_url), notifiers={})
    with pytest.raises(SchemaOutdated) as info:
        async with app:
            pass
    assert info.value.current == "0000" and info.value.head == head_revision()


async def test_downgrade_to_nothing_and_back(database_url):
    db = Database(database_url)
    try:
        await db.migrate()
        await db.downgrade("base")
        assert await db.current_revision() is None
        await db.migrate()
        assert await db.current_revision() == head_revision()
    finally:
        await db.dispose()


async def test_an_upgrade_keeps_existing_signals(database_url, clock):
    """A database with data at revision 0001 upgrades to head without losing a row."""
    from tests.support.chat import report_as
    from tests.support import FakeNotifier

    db = Database(database_url)
    await db.migrate()
    await db.downgrade("0001")
    async with db.engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO signal (meldpunt_id, ref_year, ref_number, status, form, context, urgent, anonymous, "
            "content_sealed, created_at, updated_at) VALUES ('bergeijk', 2026, 1, 'ontvangen', 'arbeid', 'balie', "
            "false, false, '{}', '2026-11-18 09:30:00', '2026-11-18 09:30:00')"))
        await conn.execute(sa.text("INSERT INTO reference_counter (year, last) VALUES (2026, 1)"))
    await db.migrate()
    async with db.engine.connect() as conn:
        partners = (await conn.execute(sa.text("SELECT partners FROM signal"))).scalar_one()
    await db.dispose()
    assert partners == ""
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        last = await report_as(app, "piet")
    assert "MH-2026-0002" in last[-1].text


async def test_references_are_kept_sealed_and_found_again(sqlite_url, clock):
    from meldbot.core.messaging import Identity
    from meldbot.storage.sealing import KeyringSealer, new_key
    from meldbot.storage.uow import SqlUnitOfWork

    db = Database(sqlite_url)
    await db.migrate()
    sealer = KeyringSealer(new_key())
    person = Identity("teams", "aad-object-id-123")
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.references.put(person, {"conversation": {"id": "a:1"}, "serviceUrl": "http://x"}, clock.now())
        await uow.commit()
    async with SqlUnitOfWork(db, sealer) as uow:
        await uow.references.put(person, {"conversation": {"id": "a:2"}}, clock.now())
        await uow.commit()
    async with SqlUnitOfWork(db, sealer) as uow:
        found = await uow.references.get(person)
        missing = await uow.references.get(Identity("teams", "someone-else"))
        raw = (await uow.session.exec(sa.text("SELECT reference_sealed FROM conversation_reference"))).all()
    await db.dispose()
    assert found == {"conversation": {"id": "a:2"}} and missing is None
    assert len(raw) == 1 and "a:2" not in raw[0][0]
