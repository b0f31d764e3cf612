"""The database: engine per URL, Alembic migrations, and the schema check at start-up."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


class SchemaOutdated(Exception):
    def __init__(self, current: str | None, head: str) -> None:
        super().__init__(f"schema at {current}, code needs {head}")
        self.current = current
        self.head = head


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("storage") / "migrations"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


POOL_SIZE = 10   # PostgreSQL connections kept open; up to 20 more under load


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Every transaction takes SQLite's write lock at BEGIN (below), so they run one at a time anyway.
        # One pooled connection makes them queue in order here; several would collide in SQLite's busy
        # handler, which polls with sleeps of up to 100 ms (seen as 150 ms p99 turns under a burst).
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0,
                                     pool_timeout=60)

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

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=POOL_SIZE, max_overflow=20, pool_pre_ping=True)


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

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)
        return before, await self.current_revision()

    async def downgrade(self, revision: str) -> None:
        cfg = alembic_config()

        def down(sync_conn) -> None:
            cfg.attributes["connection"] = sync_conn
            command.downgrade(cfg, revision)

        async with self.engine.begin() as conn:
            await conn.run_sync(down)

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
