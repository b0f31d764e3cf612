"""The service layer's tests: use cases driven on a unit of work, no bot, no adapters, no scheduler.

Each test runs on the in-memory FakeUnitOfWork (tests/support/fakes.py) and, with the same assertions, on the real
SqlUnitOfWork over SQLite: the fake stays honest, and the two timings show what the fake saves. Tests read
back only through the ports (meldbot.core.ports), never through one implementation's insides."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meldbot.core.clock import ManualClock
from meldbot.core.ports import UnitOfWorkFactory
from tests.support import make_config, run_sync
from tests.support.fakes import FakeStorage
from tests.service.office import Office


@pytest.fixture(scope="session")
def config() -> Any:
    # The storage URL is never opened: the units of work come from the `storage` fixture.
    return make_config("sqlite+aiosqlite:///unused.db")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the head revision, made once; each test works on a copy of it."""
    from meldbot.storage.db import Database

    path = tmp_path_factory.mktemp("service") / "template.db"

    async def migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await db.migrate()
        await db.dispose()

    run_sync(migrate())
    return path


@pytest.fixture(params=["fake", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    """A unit-of-work factory: the fake, or the real one on a fresh SQLite."""
    if request.param == "fake":
        yield FakeStorage()
        return
    from meldbot.storage.db import Database
    from meldbot.storage.sealing import KeyringSealer, new_key
    from meldbot.storage.uow import UnitOfWorkFactory as SqlUnitOfWorkFactory

    path = tmp_path / "meldbot.db"
    shutil.copy(request.getfixturevalue("migrated_sqlite"), path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        yield SqlUnitOfWorkFactory(db, KeyringSealer(new_key()))
    finally:
        await db.dispose()


@pytest.fixture
def office(storage: UnitOfWorkFactory, config: Any, clock: ManualClock) -> Office:
    return Office(storage, config, clock)


@pytest.fixture
async def chat(database_url: str, clock: ManualClock) -> AsyncIterator[Any]:
    """The whole app in chat mode on SQLite and on PostgreSQL, typed to as people do (tests.support.chat.Chat)."""
    from meldbot.run.app import build_app
    from tests.support import FakeNotifier
    from tests.support.chat import Chat, migrated

    await migrated(database_url)
    notifier = FakeNotifier()
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        yield Chat(app, notifier)
