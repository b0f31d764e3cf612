"""The database: engine per URL, Alembic migrations, and the schema check at start-up."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only
from sqlmodel.ext.asyncio.session import AsyncSession


class DatabaseUnavailable(Exception):
    """The configured database is missing or cannot be reached, found before anything else is done.

    `reason`: no_folder | no_file | unreadable (SQLite), no_database | login_refused | refused |
    unknown_host | timeout | unreachable (PostgreSQL). `place` names the database for a message (file,
    or server, database and user) and never holds a password."""

    def __init__(self, reason: str, url: str, error: str = "") -> None:
        self.reason = reason
        self.place = {**where(url), "error": error, "seconds": str(CONNECT_SECONDS)}
        super().__init__(f"database {reason}: {self.place}")


def where(url: str) -> dict[str, str]:
    """The database of `url` for people: SQLite file and folder, or PostgreSQL server, database and user."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").absolute() if parsed.database not in (None, "", ":memory:") else None
        return {"database": str(path or ":memory:"), "folder": str(path.parent) if path else "", "server": ""}
    host = parsed.host or str(parsed.query.get("host") or "") or "localhost"
    return {"database": parsed.database or "?", "host": host, "server": f"{host}:{parsed.port or 5432}",
            "user": parsed.username or "?", "folder": ""}


CONNECT_SECONDS = 30   # a server that drops packets: say so after this long


def unavailable(exc: BaseException, url: str) -> DatabaseUnavailable | None:
    """What `exc`, raised while connecting, says about the database; None when it is something else."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen) or len(seen) > 20:
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "orig", None)]
    names = {base.__name__ for e in seen for base in type(e).__mro__}
    if "DatabaseUnavailable" in names:
        return next(e for e in seen if isinstance(e, DatabaseUnavailable))
    if "InvalidCatalogNameError" in names:
        return DatabaseUnavailable("no_database", url)
    if "InvalidAuthorizationSpecificationError" in names or "InvalidPasswordError" in names:
        return DatabaseUnavailable("login_refused", url)
    if "gaierror" in names:
        return DatabaseUnavailable("unknown_host", url)
    if "ConnectionRefusedError" in names:
        return DatabaseUnavailable("refused", url)
    if "TimeoutError" in names:
        return DatabaseUnavailable("timeout", url)
    sqlite = make_url(url).get_backend_name() == "sqlite"
    for name in ("CannotConnectNowError", "TooManyConnectionsError", "ConnectionError", "OSError"):
        found = next((e for e in reversed(seen) if name in {b.__name__ for b in type(e).__mro__}), None)
        if found is not None:
            return DatabaseUnavailable("unreadable" if sqlite else "unreachable", url, type(found).__name__)
    sqlite_failure = next((e for e in seen if type(e).__module__ == "sqlite3"), None)
    if sqlite_failure is not None and "unable to open" in str(sqlite_failure):
        return DatabaseUnavailable("unreadable", url, type(sqlite_failure).__name__)
    return None


async def probe(url: str, *, create: bool = False) -> None:
    """Make sure the database is there before a command starts; raises DatabaseUnavailable.

    SQLite: the folder must exist, and the file too unless `create` (`meldbot migrate` makes it); nothing
    is created here. PostgreSQL: one connection, within CONNECT_SECONDS."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return
        path = Path(parsed.database)
        if not path.parent.is_dir():
            raise DatabaseUnavailable("no_folder", url)
        if not create and not path.exists():
            raise DatabaseUnavailable("no_file", url)
        return
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with asyncio.timeout(CONNECT_SECONDS), engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        problem = unavailable(exc, url)
        if problem is None:
            raise
        raise problem from exc
    finally:
        await engine.dispose()


class SchemaOutdated(Exception):
    def __init__(self, current: str | None, head: str) -> None:
        super().__init__(f"schema at {current}, code needs {head}")
        self.current = current
        self.head = head


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("meldbot.storage") / "migrations"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def revisions() -> list[str]:
    """Every schema revision, oldest first (the history is one line: each revision revises the one before)."""
    return [script.revision for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))]


# Revisions whose downgrade keeps every piece of information: what they drop is an index, or derived again
# from what stays (0009's outbox reference from the keys, by its upgrade; 0011's mentions from the content,
# by the code when the column is empty). Not 0012: its partner log is the only record of the per-partner dates
# of an erased signal, whose history is gone. A downgrade through any other revision deletes data, so
# `meldbot migrate --to` asks for --yes; a new revision counts as one that deletes data until listed here.
DOWNGRADE_KEEPS_DATA = frozenset({"0005", "0009", "0011", "0013"})


class UnknownRevision(Exception):
    """`meldbot migrate --to` named a revision this code does not have; `known` lists the ones it has."""

    def __init__(self, revision: str, known: list[str]) -> None:
        super().__init__(f"unknown revision {revision!r}")
        self.revision, self.known = revision, known


def resolve(revision: str) -> str | None:
    """The revision `revision` names: an id, "head" (the newest) or "base" (None: no schema at all)."""
    known = revisions()
    if revision == "head":
        return known[-1]
    if revision == "base":
        return None
    if revision not in known:
        raise UnknownRevision(revision, known)
    return revision


def downgrades_between(current: str | None, target: str | None) -> list[str]:
    """The revisions whose downgrade runs when going from `current` back to `target`, newest first; empty
    when `target` is not older. A `current` this code does not know raises UnknownRevision."""
    known = revisions()
    if current is not None and current not in known:
        raise UnknownRevision(current, known)
    upper = known.index(current) + 1 if current is not None else 0
    lower = known.index(target) + 1 if target is not None else 0
    return list(reversed(known[lower:upper]))


POOL_SIZE = 10   # PostgreSQL connections kept open; up to 20 more under load
# A pooled PostgreSQL connection idle for longer than this is pinged before use (see make_engine).
IDLE_PING_SECONDS = 10.0


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Every transaction takes SQLite's write lock at BEGIN (below), so they run one at a time anyway.
        # One pooled connection makes them queue in order here; several would collide in SQLite's busy
        # handler, which polls with sleeps of up to 100 ms (seen as 150 ms p99 turns under a burst).
        # The pool's reset at check-in is the `reset` event below (pool_reset_on_return=None).
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0,
                                     pool_timeout=60, pool_reset_on_return=None)

        # Take the write lock at BEGIN: with deferred transactions two writers that both read
        # first would deadlock on the upgrade. The SQLAlchemy-documented recipe for aiosqlite.
        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # Erased data must not linger in free pages of the file.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        # Sent to aiosqlite directly: one call into its thread, where SQLAlchemy's cursor takes four
        # (meldbot/storage/fast.py). A failure comes out as SQLAlchemy's OperationalError, as before. A BEGIN
        # that did not come back (cancelled while it waited for the write lock: /healthz gives up after 5 s,
        # the BEGIN may wait 30) may still take the lock in aiosqlite's thread after the connection went
        # back to the pool: the connection is marked, and its reset rolls back behind that BEGIN.
        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):
            fairy = conn.connection
            fairy.info["begin_unsure"] = True
            try:
                await_only(fairy.dbapi_connection.driver_connection.execute("BEGIN IMMEDIATE"))
            except ValueError as error:   # aiosqlite's connection is closed: a new one for the next use
                conn.invalidate(error)
                raise OperationalError("BEGIN IMMEDIATE", None, error, hide_parameters=True,
                                       connection_invalidated=True) from error
            except sqlite3.Error as error:
                raise OperationalError("BEGIN IMMEDIATE", None, error, hide_parameters=True) from error
            fairy.info.pop("begin_unsure", None)

        # A connection handed back to the pool is rolled back only when a transaction is open (sqlite3's own
        # flag) or a BEGIN may still be running; after a commit (every turn) the pool's unconditional
        # rollback was one more call into aiosqlite's thread for nothing.
        @event.listens_for(engine.sync_engine, "reset")
        def _reset(dbapi_connection, record, reset_state):
            if reset_state.terminate_only:
                return
            unsure = record.info.pop("begin_unsure", False)
            if unsure or dbapi_connection.driver_connection.in_transaction:
                dbapi_connection.rollback()

        return engine
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=20)

    # A pooled connection the server has closed (a restart, pg_terminate_backend, an idle timeout) is replaced
    # before a turn gets it. asyncpg notices a closed socket as it happens, so that check costs no round trip;
    # SQLAlchemy's pool_pre_ping asks the server at every checkout instead, three round trips on asyncpg
    # (BEGIN, a ping, ROLLBACK), about a third of an ordinary turn's. A connection that lay idle for a while
    # may have been cut without a word (a firewall or NAT dropping idle flows): that one is pinged first, so
    # a busy pool pays nothing and a quiet one's first turn still never fails on a dead connection.
    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection, record, _proxy):
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("connection closed by the server")
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) > IDLE_PING_SECONDS:
            try:
                dbapi_connection.ping()
            except Exception as exc:
                raise DisconnectionError("idle connection no longer answers") from exc

    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @property
    def turn_slots(self) -> int:
        """How many chat turns may hold a connection at once; more wait in line (see Bot)."""
        return POOL_SIZE if self.engine.dialect.name == "postgresql" else 1

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())

    async def check_schema(self) -> None:
        current, head = await self.current_revision(), head_revision()
        if current != head:
            raise SchemaOutdated(current, head)

    async def migrate(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Apply migrations; returns (before, after)."""
        before = await self.current_revision()
        cfg = alembic_config()

        def upgrade(sync_conn) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, revision)

        await self._change_schema(upgrade)
        return before, await self.current_revision()

    async def move_to(self, revision: str) -> tuple[str | None, str | None]:
        """Upgrade or downgrade to `revision` (an id, "head" or "base"); returns (before, after). The caller
        decides whether a downgrade may delete data (downgrades_between, DOWNGRADE_KEEPS_DATA)."""
        target = resolve(revision)
        before = await self.current_revision()
        if downgrades_between(before, target):
            await self.downgrade(target or "base")
            return before, await self.current_revision()
        if target is None or target == before:
            return before, before
        return await self.migrate(target)

    async def downgrade(self, revision: str) -> None:
        cfg = alembic_config()

        def down(sync_conn) -> None:
            cfg.attributes["connection"] = sync_conn
            command.downgrade(cfg, revision)

        await self._change_schema(down)

    async def _change_schema(self, work) -> None:
        """Run `work` (Alembic on a sync connection) in one transaction.

        SQLite changes a column by copying the table and dropping the old one (Alembic's batch mode); with
        foreign keys on, dropping `signal` would delete every row that cascades from it (events, audit,
        keys), so they are off while the schema changes and checked before the commit. The pragma only
        takes effect outside a transaction, hence on the driver's connection before BEGIN."""
        async with self.engine.connect() as conn:
            sqlite = self.engine.dialect.name == "sqlite"
            if sqlite:
                raw = await conn.get_raw_connection()
                await raw.driver_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                async with conn.begin():
                    await conn.run_sync(work)
                    if sqlite:
                        broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                        if broken:
                            raise RuntimeError(f"schema change left rows without their parent: {broken[:5]}")
            finally:
                if sqlite:
                    await raw.driver_connection.execute("PRAGMA foreign_keys=ON")

    async def compact_log(self) -> None:
        """SQLite: fold the write-ahead log into the file, so erased pages leave the WAL as well."""
        if self.engine.dialect.name == "sqlite":
            # Outside any transaction (a checkpoint inside BEGIN fails): on the driver's connection.
            async with self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                await raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(5), self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
