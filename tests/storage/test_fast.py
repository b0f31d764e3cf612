"""The turn's statements sent straight to the driver (asyncpg, aiosqlite; meldbot/storage/fast.py) give what
SQLAlchemy gives: the same rows with the column types' processing, defaults for left-out columns, SQLAlchemy's
exceptions, and the unit of work's transaction (nothing kept after a rollback, everything after a commit)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from meldbot.storage.db import Database
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.tables import CounterRow, ProcessedEventRow, SignalRow
from meldbot.storage.uow import SqlUnitOfWork
from tests.support.chat import migrated

_PROCESSED = ProcessedEventRow.__table__
_INSERT = sa.insert(_PROCESSED)
_BY_KEYS = sa.select(_PROCESSED.c.key, _PROCESSED.c.at, _PROCESSED.c.replies_sealed).where(
    _PROCESSED.c.key.in_(sa.bindparam("keys", expanding=True))).order_by(_PROCESSED.c.key)
_SIGNAL_INSERT = sa.insert(SignalRow.__table__).returning(
    SignalRow.__table__.c.id, SignalRow.__table__.c.urgent, SignalRow.__table__.c.partners)
_COUNTER = sa.select(CounterRow.__table__.c.last).where(CounterRow.__table__.c.year == sa.bindparam("year"))

AT = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
async def db(database_url):
    await migrated(database_url)
    database = Database(database_url)
    yield database
    await database.dispose()


async def test_rows_come_back_as_sqlalchemy_gives_them(db):
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        # Straight to the driver on both databases.
        assert uow.fast._driver == ("asyncpg" if db.is_postgres else "aiosqlite")
        await uow.run(_INSERT, [dict(key=f"k{i}", at=AT + timedelta(minutes=i), replies_sealed=None) for i in range(3)])
        fast = (await uow.run(_BY_KEYS, {"keys": ["k0", "k2", "nope"]})).all()
        slow = (await uow.session.exec(_BY_KEYS, params={"keys": ["k0", "k2", "nope"]})).all()
        assert [tuple(r) for r in slow] == fast == [("k0", AT, None), ("k2", AT + timedelta(minutes=2), None)]
        assert fast[0][1].tzinfo == timezone.utc             # UTCDateTime's result processing
        # Another number of keys is another statement (the IN list is expanded).
        assert (await uow.run(_BY_KEYS, {"keys": ["k1"]})).first()[0] == "k1"
        await uow.commit()
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        assert len((await uow.run(_BY_KEYS, {"keys": ["k0", "k1", "k2"]})).all()) == 3


async def test_left_out_columns_get_their_defaults_and_naive_times_are_refused(db):
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        row = (await uow.run(_SIGNAL_INSERT, dict(
            meldpunt_id="m", ref_year=2026, ref_number=1, status="nieuw", form="onbekend", context="onbekend",
            content_sealed="{}", created_at=AT, updated_at=AT))).first()
        assert row[1:] == (False, "")                        # urgent, partners: the columns' defaults
        with pytest.raises(Exception) as naive:
            await uow.run(_INSERT, dict(key="x", at=AT.replace(tzinfo=None), replies_sealed=None))
        assert isinstance(naive.value, (ValueError, sa.exc.StatementError))


async def committed(db, key: str) -> None:
    """An event row committed before the test's own unit of work."""
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.run(_INSERT, dict(key=key, at=AT, replies_sealed=None))
        await uow.commit()


async def test_errors_are_sqlalchemys_and_a_rollback_keeps_nothing(db):
    await committed(db, "same")
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.run(_INSERT, dict(key="other", at=AT, replies_sealed=None))
        with pytest.raises(sa.exc.IntegrityError):
            await uow.run(_INSERT, dict(key="same", at=AT, replies_sealed=None))
    async with SqlUnitOfWork(db, PlainSealer()) as uow:   # rolled back: "other" is not there
        assert [r[0] for r in (await uow.run(_BY_KEYS, {"keys": ["same", "other"]})).all()] == ["same"]


async def test_a_unit_of_work_goes_on_after_its_commit_in_a_new_transaction(db):
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.run(_INSERT, dict(key="first", at=AT, replies_sealed=None))
        await uow.commit()
        await uow.run(_INSERT, dict(key="second", at=AT, replies_sealed=None))
        # rolled back at the end: only the first was committed
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        assert [r[0] for r in (await uow.run(_BY_KEYS, {"keys": ["first", "second"]})).all()] == ["first"]


# A list parameter whose name SQLAlchemy also gives a literal ("key_1"): each value is mapped by the name
# SQLAlchemy gave it, never guessed, and a second call with other values of the same shape gets its own.
_CLASH = sa.select(_PROCESSED.c.key).where(
    _PROCESSED.c.key.in_(sa.bindparam("key", expanding=True)), _PROCESSED.c.key != "").order_by(_PROCESSED.c.key)


async def test_a_plan_is_reused_with_each_calls_own_values(db):
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.run(_INSERT, [dict(key=k, at=AT, replies_sealed=None) for k in ("a", "b", "c", "d")])
        assert (await uow.run(_CLASH, {"key": ["a", "b"]})).all() == [("a",), ("b",)]
        assert (await uow.run(_CLASH, {"key": ["c", "d"]})).all() == [("c",), ("d",)]
        assert (await uow.run(_CLASH, {"key": ["d"]})).all() == [("d",)]


async def test_after_a_failed_flush_the_unit_of_work_goes_no_further(db):
    await committed(db, "taken")
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        await uow.run(_INSERT, dict(key="mine", at=AT, replies_sealed=None))
        uow.session.add(ProcessedEventRow(key="taken", at=AT))
        with pytest.raises(sa.exc.IntegrityError):
            await uow.flush()             # the session rolls its transaction back
        with pytest.raises(sa.exc.PendingRollbackError):
            await uow.run(_INSERT, dict(key="later", at=AT, replies_sealed=None))
    async with SqlUnitOfWork(db, PlainSealer()) as uow:
        assert (await uow.run(_BY_KEYS, {"keys": ["mine", "later"]})).all() == []


async def test_one_statement_on_both_databases_in_one_process(tmp_path, postgres_database):
    """Plans are kept per driver: a statement first run on SQLite must not send SQLite's SQL (`?`) to asyncpg
    later, as a process with a test database of each kind did (every PostgreSQL turn failed)."""
    databases = []
    for url in (f"sqlite+aiosqlite:///{tmp_path}/one.db", postgres_database):
        await migrated(url)
        databases.append(Database(url))
    try:
        for database in databases + databases:
            async with SqlUnitOfWork(database, PlainSealer()) as uow:
                key = "k"   # rolled back each time
                await uow.run(_INSERT, dict(key=key, at=AT, replies_sealed=None))
                assert (await uow.run(_BY_KEYS, {"keys": [key]})).first()[0] == key
    finally:
        for database in databases:
            await database.dispose()


async def test_a_protocol_error_of_the_driver_is_a_database_error_and_the_person_is_asked_to_resend(database_url):
    """asyncpg raises InternalClientError when its protocol meets a server that went away mid-message (a
    PostgreSQL restart under traffic, tests/integration/test_resilience.py): a failed database like any other
    (StorageUnavailable: "stuur het nog een keer"), not a failed turn whose message is silently lost."""
    import asyncpg

    from meldbot.core.ports import StorageUnavailable
    from meldbot.storage.fast import _translated

    dbapi = sa.create_engine("postgresql+asyncpg://x@127.0.0.1/x").dialect.loaded_dbapi
    translated = _translated(dbapi, None, "SELECT 1", asyncpg.exceptions.InternalClientError("unexpected message"))
    assert isinstance(translated, sa.exc.OperationalError)
    await migrated(database_url)
    db = Database(database_url)
    with pytest.raises(StorageUnavailable):
        async with SqlUnitOfWork(db, PlainSealer()):
            raise asyncpg.exceptions.InternalClientError("unexpected message")   # as the session's path passes it
    await db.dispose()
