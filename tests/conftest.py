"""Shared fixtures: configs, databases (SQLite always, PostgreSQL when enabled), fakes."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from meldbot.core.clock import ManualClock
from meldbot.core.config import load_config
from meldbot.core.messaging import Identity, RecipientAway, Reply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"
PG_ENV = "MELDBOT_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    return os.environ.get(PG_ENV)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("MELDBOT_TEST_REQUIRE_POSTGRES"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_sync(coro):
    """Run a coroutine to completion from sync code, even inside a running loop's thread."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


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
        _skip_or_fail(f"PostgreSQL tests need {PG_ENV}, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    name = f"meldbot_t_{uuid.uuid4().hex[:12]}"
    try:
        run_sync(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # depends on the machine
        _skip_or_fail(f"PostgreSQL at {PG_ENV} is not reachable: {type(exc).__name__}: {exc}")
    yield base.rsplit("/", 1)[0] + "/" + name
    run_sync(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def private_postgres():
    """A PostgreSQL server of this test session's own, for tests that stop, restart or crash it; the
    machine's cluster is never touched (tests/postgres_server.py). It runs when the other PostgreSQL tests
    do; where they are required (MELDBOT_TEST_REQUIRE_POSTGRES), missing server binaries fail the test."""
    if not postgres_url():
        _skip_or_fail(f"PostgreSQL tests need {PG_ENV}, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    from tests.postgres_server import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        _skip_or_fail(f"a private PostgreSQL server cannot be started: {exc}")
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


def make_config(url: str, **env: str):
    # Tests run Matrix and Teams without a data key; production refuses that (see config.example.toml).
    environ = {"MELDBOT_STORAGE__URL": url, "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true", **env}
    return load_config(EXAMPLE, environ)


@pytest.fixture
def clock() -> ManualClock:
    # Wednesday 18 November 2026, 10:30 in Amsterdam.
    return ManualClock(datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc))


REMINDER_KEY_PREFIX = "reminder:"


def is_reminder(idempotency_key: str) -> bool:
    """A message of the reminder sweep (reminders and the weekly overview): meldbot/service/reminders.py
    gives their outbox rows keys that start with "reminder:". The Notifier port sees nothing but the key."""
    return idempotency_key.startswith(REMINDER_KEY_PREFIX)


class FakeNotifier:
    """Records deliveries; like real platforms, shows a message once per idempotency key.

    Two streams, kept apart on purpose. The reminder sweep runs at every start and sends the weekly
    overview from Monday 09:00 on, so almost any test gets messages it did not cause. Those are recorded
    in `reminders`, everything else in `messages`; `shown` holds both, in the order they were shown.
    `calls`, `fail_next` and `to()` concern `messages` only, so tests of those stay exact; a test about
    reminders reads `reminders` or `reminders_to()`. Someone `away` gets neither."""

    def __init__(self, platform: str = "console") -> None:
        self.platform = platform
        self.shown: list[tuple[Identity, Reply, str]] = []
        self.messages: list[tuple[Identity, Reply, str]] = []
        self.reminders: list[tuple[Identity, Reply, str]] = []
        self.calls = 0          # send() calls for messages, failed and repeated ones included
        self.away: set[str] = set()
        self.fail_next = 0      # how many of the next messages fail with a (temporary) DeliveryError
        self._keys: set[str] = set()

    async def send(self, recipient: Identity, reply: Reply, idempotency_key: str) -> None:
        reminder = is_reminder(idempotency_key)
        if not reminder:
            self.calls += 1
        if recipient.user_id in self.away:
            raise RecipientAway(recipient.user_id)
        if self.fail_next and not reminder:
            self.fail_next -= 1
            from meldbot.core.messaging import DeliveryError

            raise DeliveryError("connection refused")
        if idempotency_key in self._keys:
            return
        self._keys.add(idempotency_key)
        entry = (recipient, reply, idempotency_key)
        self.shown.append(entry)
        (self.reminders if reminder else self.messages).append(entry)

    def to(self, user_id: str) -> list[Reply]:
        """The messages (not the reminders) shown to `user_id`."""
        return [r for who, r, _ in self.messages if who.user_id == user_id]

    def reminders_to(self, user_id: str) -> list[Reply]:
        return [r for who, r, _ in self.reminders if who.user_id == user_id]
