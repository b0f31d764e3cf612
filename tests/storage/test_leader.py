"""The Matrix sync stream's leader lock (meldbot/storage/leader.py) on a real PostgreSQL: one holder at a time,
and a holder that dies or loses its lock connection is replaced within the deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import pytest

from meldbot.storage.leader import AdvisoryLeader, SoleHolder, asyncpg_dsn, lock_key
from tests.support import ROOT

pytestmark = pytest.mark.postgres

KEY = lock_key("matrix-sync", "@meldbot:test.example")
FAST = dict(poll=0.3, check=0.3, timeout=2.0)


async def until(condition, what: str, timeout: float = 30.0) -> float:
    """Wait for `condition()` with a deadline; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_of_two_processes_one_holds_the_stream_and_the_other_takes_over_when_it_stops(postgres_database):
    seen: list[tuple[str, bool]] = []

    def recorder(name):
        async def record(holding: bool) -> None:
            seen.append((name, holding))
        return record

    first = AdvisoryLeader(postgres_database, KEY, on_change=recorder("first"), **FAST)
    second = AdvisoryLeader(postgres_database, KEY, on_change=recorder("second"), **FAST)
    await first.start()
    await second.start()
    try:
        assert first.holding and not second.holding and first.connected and second.connected
        change = second.watch()
        await asyncio.sleep(1.0)   # several polls of the standby: it does not get the lock meanwhile
        assert first.holding and not second.holding and not change.is_set()
        # Another bot account is another lock.
        other = AdvisoryLeader(postgres_database, lock_key("matrix-sync", "@other:test.example"), **FAST)
        await other.start()
        assert other.holding
        await other.stop()
        await first.stop()          # a clean stop closes the session: the lock is free at once
        await asyncio.wait_for(change.wait(), 5)
        assert second.holding and not first.holding
        assert seen == [("first", True), ("second", False)] or seen[:1] == [("first", True)]
        assert ("first", False) in seen and ("second", True) in seen
    finally:
        await first.stop()
        await second.stop()


async def test_a_holder_whose_lock_connection_is_terminated_steps_down_and_the_other_takes_over(
        private_postgres_database):
    url = private_postgres_database
    first = AdvisoryLeader(url, KEY, **FAST)
    second = AdvisoryLeader(url, KEY, **FAST)
    await first.start()
    await second.start()
    try:
        assert first.holding and not second.holding
        stepped_down = first.watch()
        admin = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
        try:
            # The backend that holds the advisory lock: that is the holder's dedicated connection.
            # The backend that holds the advisory lock (the only one in this database): the holder's own connection.
            pid = await admin.fetchval("SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                                       "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()")
            assert pid is not None
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        killed = time.monotonic()
        await asyncio.wait_for(stepped_down.wait(), 10)
        assert not first.holding
        await until(lambda: second.holding, "the other to take over", timeout=30)
        print(f"\ntake-over after pg_terminate_backend: {time.monotonic() - killed:.1f} s")
        # The one that stepped down reconnects and stands by; it does not take the lock back.
        await until(lambda: first.connected, "the stepped-down one to reconnect", timeout=10)
        await asyncio.sleep(1.0)
        assert second.holding and not first.holding
    finally:
        await first.stop()
        await second.stop()


HOLDER = """
import asyncio, sys
from meldbot.storage.leader import AdvisoryLeader

async def main():
    leader = AdvisoryLeader(sys.argv[1], int(sys.argv[2]), poll=0.3, check=0.3)
    await leader.start()
    print("holding" if leader.holding else "standby", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_holder_killed_with_9_is_replaced_within_the_deadline(postgres_database):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_database, str(KEY)], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    standby = AdvisoryLeader(postgres_database, KEY, poll=1.0, check=1.0)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        assert line.strip() == "holding"
        await standby.start()
        assert not standby.holding
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        seconds = await until(lambda: standby.holding, "the standby to take over", timeout=30)
        print(f"\ntake-over after kill -9 of the lock holder: {seconds:.1f} s")
        assert seconds < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await standby.stop()


async def test_sqlite_has_one_process_which_holds_the_stream():
    sole = SoleHolder()
    await sole.start()
    assert sole.holding and sole.connected and not sole.watch().is_set()
    await sole.stop()


async def test_a_take_over_that_could_not_be_recorded_is_recorded_again_until_it_is(postgres_database):
    calls: list[bool] = []

    async def record(holding: bool) -> None:
        calls.append(holding)
        if len(calls) <= 2:
            raise ConnectionError("database away for a moment")

    leader = AdvisoryLeader(postgres_database, KEY, on_change=record, **FAST)
    await leader.start()
    try:
        assert leader.holding
        await until(lambda: len(calls) >= 3, "the holder to be recorded after two failures", timeout=15)
        assert calls[:3] == [True, True, True]
    finally:
        await leader.stop()


async def test_a_holder_steps_down_the_moment_the_server_ends_its_lock_session(postgres_database):
    # Checks far apart: only the termination listener can make it step down within the deadline below.
    first = AdvisoryLeader(postgres_database, KEY, poll=0.3, check=60.0, timeout=2.0)
    await first.start()
    try:
        assert first.holding and first.settle == 62.0
        stepped_down = first.watch()
        admin = await asyncpg.connect(asyncpg_dsn(postgres_database), timeout=10)
        try:
            pid = await admin.fetchval("SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                                       "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()")
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.wait_for(stepped_down.wait(), 5)
        assert not first.holding and not first.connected
    finally:
        await first.stop()
    assert SoleHolder.settle == 0.0
