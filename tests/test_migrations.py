"""Schema changes only through Alembic; start-up refuses an outdated schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from meldbot.app import build_app
from storage.db import Database, SchemaOutdated, head_revision
from tests.conftest import make_config


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
