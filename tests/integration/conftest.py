"""Fixtures of the integration tests: a real Synapse per module and a Matrix world (tests/support/matrix.py),
and the Teams rig (test_teams.py, test_large_views.py; it is driven by tests/support/teams.py)."""

from __future__ import annotations

import shutil
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from meldbot.core.clock import ManualClock
from tests.support import run_sync
from tests.support.chat import migrated
from tests.support.matrix import World
from tests.support.teams_fakes import ANNA, FakeMicrosoft, new_key

AMS = ZoneInfo("Europe/Amsterdam")


# --- fixtures: one RSA key pair and one migrated database per session, copied per test ----------------

@pytest.fixture(scope="session")
def rsa_keys():
    return new_key(), new_key()     # the loopback signing key, and a stranger's


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("teams-db") / "template.db"
    run_sync(migrated(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def db_url(template_db, tmp_path) -> str:
    target = tmp_path / "meldbot.db"
    shutil.copy(template_db, target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def early() -> ManualClock:
    # Wednesday 18 November 2026, 07:00 in Amsterdam: before office hours, so no reminder or weekly
    # overview joins the conversation unasked.
    return ManualClock(datetime(2026, 11, 18, 7, 0, tzinfo=AMS))


@pytest.fixture
async def microsoft(rsa_keys):
    fake = FakeMicrosoft(rsa_keys[0], installed={ANNA.aad})
    await fake.start()
    yield fake
    await fake.stop()


# --- Matrix: one real Synapse per test module, and a world of people and a bot on it -------------------

@pytest.fixture(scope="module")
def synapse(tmp_path_factory):
    # matrix-synapse comes with the test extras (make test): without it these tests fail, never skip.
    from tests.support.synapse import Synapse

    server = Synapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def world(synapse, tmp_path):
    world = World(synapse, tmp_path)
    await migrated(world.db_url)
    yield world
    await world.close()
