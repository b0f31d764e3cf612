"""meldbot's SQLite engine (meldbot.storage.db.make_engine) talks to aiosqlite's thread as little as it can:
BEGIN IMMEDIATE is one call, and a connection handed back after a commit is not rolled back again. What that
must not cost: a connection handed back inside a transaction is still rolled back (else it would hold SQLite's
write lock and every later turn would wait), and a BEGIN that cannot get the lock is SQLAlchemy's
OperationalError, which the unit of work reports as the database being unavailable."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

import pytest
import sqlalchemy as sa

from meldbot.core.messaging import Identity
from meldbot.core.ports import StorageUnavailable
from meldbot.storage.db import Database, make_engine
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.uow import SqlUnitOfWork
from tests.support.chat import migrated
from tests.support.matrix import until


async def test_a_connection_handed_back_inside_a_transaction_is_rolled_back(tmp_path):
    path = tmp_path / "reset.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        async with engine.connect() as conn:
            # A transaction SQLAlchemy does not know of, as a driver-level statement can leave behind.
            raw = (await conn.get_raw_connection()).dbapi_connection.driver_connection
            await raw.execute("BEGIN IMMEDIATE")
            await raw.execute("INSERT INTO t VALUES (1)")
        # The pool's reset rolled it back: the row is gone and the write lock is free for another connection.
        other = sqlite3.connect(path, timeout=0.1)
        try:
            other.execute("INSERT INTO t VALUES (2)")
            other.commit()
        finally:
            other.close()
        async with engine.begin() as conn:   # and the pooled connection begins again
            assert (await conn.exec_driver_sql("SELECT x FROM t")).scalars().all() == [2]
    finally:
        await engine.dispose()


async def test_after_a_commit_the_connection_goes_back_without_another_call(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/calls.db")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).dbapi_connection.driver_connection
        calls: list[str] = []
        real = type(driver)._execute

        async def counted(self, fn, *args, **kwargs):
            calls.append(getattr(fn, "__name__", repr(fn)))
            return await real(self, fn, *args, **kwargs)

        type(driver)._execute = counted
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("SELECT 1")
        finally:
            type(driver)._execute = real
        # BEGIN IMMEDIATE (one call), the statement (SQLAlchemy's cursor: open, execute, fetch, close), COMMIT;
        # no rollback at check-in. Before: BEGIN took three calls and a rollback followed the commit (9).
        assert calls == ["execute", "cursor", "execute", "fetchall", "close", "commit"], calls
    finally:
        await engine.dispose()


async def test_a_begin_that_cannot_get_the_write_lock_is_a_database_error(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/locked.db"
    await migrated(url)
    db = Database(url)
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        async with db.engine.connect() as conn:   # wait 50 ms for the lock instead of 30 s
            raw = (await conn.get_raw_connection()).dbapi_connection.driver_connection
            await raw.execute("PRAGMA busy_timeout=50")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sa.exc.OperationalError):
            async with db.engine.begin():
                pass
        with pytest.raises(StorageUnavailable):
            async with SqlUnitOfWork(db, PlainSealer()) as uow:
                await uow.people.get(Identity("console", "a"))
        holder.execute("ROLLBACK")
        async with db.engine.begin() as conn:      # free again: the same pooled connection goes on
            assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
    finally:
        holder.close()
        await db.dispose()


async def test_a_begin_given_up_while_it_waits_for_the_lock_does_not_keep_the_lock(tmp_path):
    """/healthz gives its database check 5 s; a BEGIN IMMEDIATE may wait 30 s for the write lock. The BEGIN given up
    still runs in aiosqlite's thread and takes the lock once it is free: the connection's reset must roll it
    back, or the pool's only connection would sit on SQLite's write lock and the next turn would fail."""
    path = tmp_path / "given-up.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            driver = (await conn.get_raw_connection()).dbapi_connection.driver_connection
        holder.execute("BEGIN IMMEDIATE")

        async def check() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    async with engine.begin():
                        pass

        checking = asyncio.create_task(check())
        # The given-up BEGIN is still in aiosqlite's thread; the reset's rollback waits in its queue behind it.
        await until(lambda: driver._tx.qsize() > 0, "a rollback queued behind the BEGIN", timeout=10)
        holder.execute("ROLLBACK")            # the lock is free: the BEGIN takes it, the rollback frees it
        await asyncio.wait_for(checking, 30)
        other = sqlite3.connect(path, timeout=5)
        try:
            other.execute("INSERT INTO t VALUES (1)")
            other.commit()
        finally:
            other.close()
    finally:
        holder.close()
        await engine.dispose()


async def test_a_closed_driver_connection_is_a_database_error_and_the_next_unit_of_work_gets_a_new_one(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/closed.db"
    await migrated(url)
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).dbapi_connection.driver_connection
        await driver.close()                  # aiosqlite's connection ends under the pool
        with pytest.raises(StorageUnavailable):
            async with SqlUnitOfWork(db, PlainSealer()) as uow:
                await uow.people.get(Identity("console", "a"))
        async with SqlUnitOfWork(db, PlainSealer()) as uow:
            assert (await uow.people.get(Identity("console", "a"))).language is None
    finally:
        await db.dispose()
