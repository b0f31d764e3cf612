"""Shared fixtures for every folder of tests/: databases (SQLite always, PostgreSQL when enabled), the clock.
The helpers that test modules import (configs, the fake notifier, paths) are in tests/support/."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from meldbot.core.clock import ManualClock
from tests.support import PG_ENV, postgres_url, run_sync, skip_or_fail


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(postgres_url().replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_database():
    """A fresh, empty PostgreSQL database for one test; yields its URL."""
    base = postgres_url()
    if not base:
        skip_or_fail(f"PostgreSQL tests need {PG_ENV}, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    name = f"meldbot_t_{uuid.uuid4().hex[:12]}"
    try:
        run_sync(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # depends on the machine
        skip_or_fail(f"PostgreSQL at {PG_ENV} is not reachable: {type(exc).__name__}: {exc}")
    yield base.rsplit("/", 1)[0] + "/" + name
    run_sync(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def private_postgres():
    """A PostgreSQL server of this test session's own, for tests that stop, restart or crash it; the
    machine's cluster is never touched (tests/support/postgres_server.py). It runs when the other PostgreSQL tests
    do; where they are required (MELDBOT_TEST_REQUIRE_POSTGRES), missing server binaries fail the test."""
    if not postgres_url():
        skip_or_fail(f"PostgreSQL tests need {PG_ENV}, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    from tests.support.postgres_server import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        skip_or_fail(f"a private PostgreSQL server cannot be started: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_postgres_database(private_postgres):
    """A fresh, empty database on the private server; yields its URL. The server runs when the test
    starts and again after it, whatever the test did to it."""
    if not private_postgres.running():
        private_postgres.start()
    yield run_sync(private_postgres.create_database(f"meldbot_t_{uuid.uuid4().hex[:12]}"))
    if not private_postgres.running():
        private_postgres.start()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """Each test using this runs against SQLite and against real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"


@pytest.fixture
def clock() -> ManualClock:
    # Wednesday 18 November 2026, 10:30 in Amsterdam.
    return ManualClock(datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc))
