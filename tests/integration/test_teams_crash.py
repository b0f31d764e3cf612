"""A process that dies while it sends a long message to Teams: any other process continues after the parts
Teams accepted, and only the one part whose connector call was cut off may be shown twice.

The Bot Connector cannot be asked whether an activity was shown, so the outbox row records each part's send
(before and after the call, meldbot.storage.repositories.outbox.RowProgress)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from meldbot.adapters.teams_render import render_parts
from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity, Reply
from meldbot.run.app import build_app
from meldbot.storage.tables import OutboxRow
from tests.support import EXAMPLE, ROOT, make_config
from tests.support.chat import migrated
from tests.support.teams import running, seen, teams_env
from tests.support.teams_fakes import ANNA

NL = texts("nl")
# About 90 KB of text: four activities of at most 24 KB each.
LONG = Reply("\n".join(f"regel {i:04d} " + "x" * 200 for i in range(420)))
MARK = re.compile(r"\((\d)/4\)$")


def shown_parts(microsoft) -> Counter:
    """How often Teams accepted each part of LONG (1..4), from the part mark under its text."""
    parts: Counter = Counter()
    for posted in microsoft.posts():
        text = seen(posted).rstrip()
        found = MARK.search(text)
        if "regel 0" in text and found:
            parts[int(found.group(1))] += 1
    return parts


async def queue_long(app, key: str = "test:long") -> None:
    async with app.uow() as uow:
        await uow.outbox.add(meldpunt_id="bergeijk", recipient=Identity("teams", ANNA.aad), reply=LONG, key=key,
                             kind="overview", at=app.clock.now())
        await uow.commit()


async def row_of(app, key: str = "test:long"):
    async with app.db.engine.connect() as conn:
        return (await conn.execute(sa.select(OutboxRow.parts_done, OutboxRow.sending_since, OutboxRow.delivered_at)
                                   .where(OutboxRow.idempotency_key == key))).one()


def test_the_long_message_goes_as_four_parts_with_a_mark_each():
    parts = render_parts(LONG, NL)
    assert len(parts) == 4 and all(f"({n}/4)" in p.text for n, p in enumerate(parts, 1))


async def test_a_sender_dying_during_part_3_of_4_leaves_parts_1_and_2_to_no_one_and_3_is_sent_once_more(
        postgres_database, microsoft, early):
    await migrated(postgres_database)
    microsoft.hang_on = "(3/4)"
    async with running(postgres_database, microsoft, early) as one:
        await one.say(ANNA, "lijst")             # the AF's conversation is known
        await queue_long(one.app)
        async with asyncio.timeout(20):
            await microsoft.hung.wait()          # parts 1 and 2 taken, part 3 taken and its answer never comes
        # The process dies here: its dispatcher stops in the middle of the call, nothing more is recorded.
        [dispatcher] = [t for t in one.app._tasks if getattr(t, "get_name", str)() == "outbox-dispatcher"]
        dispatcher.cancel()
        await asyncio.wait([dispatcher])
        parts_done, sending_since, delivered = await row_of(one.app)
        assert (parts_done, delivered) == (2, None) and sending_since is not None
        microsoft.release()
        async with running(postgres_database, microsoft, early) as two:
            # Another process on the same database; the first one's claim runs out after the lease.
            assert await two.app.dispatcher.deliver_pending() == 0
            early.advance(two.app.dispatcher.policy.lease + timedelta(seconds=1))
            await two.app.dispatcher.deliver_pending()
            parts_done, sending_since, delivered = await row_of(two.app)
            in_doubt = two.app.dispatcher.in_doubt
            metric = two.app.metrics.in_doubt.labels("teams")._value.get()
    assert shown_parts(microsoft) == {1: 1, 2: 1, 3: 2, 4: 1}       # only the part in doubt twice
    assert (parts_done, sending_since) == (4, None) and delivered is not None
    assert in_doubt == 1 and metric == 1


async def test_a_sender_refused_after_part_2_of_4_is_continued_by_another_process_from_part_3(
        postgres_database, microsoft, early):
    """Not a crash: the connector refuses part 3 (500). The retry may come from any process; it sends
    parts 3 and 4 only, and nothing is in doubt."""
    await migrated(postgres_database)
    calls = 0

    async with running(postgres_database, microsoft, early) as one:
        one.app.dispatcher.stop()               # only the calls below deliver
        await asyncio.wait([t for t in one.app._tasks if getattr(t, "get_name", str)() == "outbox-dispatcher"])
        one.app.dispatcher.start()
        original = one.adapter._deliver_one

        async def third_fails(identity, activity, stored):
            nonlocal calls
            calls += 1
            if calls == 3:
                microsoft.fail("/activities", (500, {}))
            return await original(identity, activity, stored)

        one.adapter._deliver_one = third_fails
        await one.say(ANNA, "lijst")
        await queue_long(one.app)
        await one.app.dispatcher.deliver_pending()
        assert (await row_of(one.app))[:2] == (2, None)
        async with running(postgres_database, microsoft, early) as two:
            early.advance(timedelta(minutes=1))
            await two.app.dispatcher.deliver_pending()
            row = await row_of(two.app)
            in_doubt = two.app.dispatcher.in_doubt
    assert shown_parts(microsoft) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert row[:2] == (4, None) and row[2] is not None and in_doubt == 0


# The processes' outbox lease: long enough for the second process to start while the first one is still
# hanging in its call (so the row is the first's when it dies), short enough not to wait the default 120 s.
LEASE = 30


def _run_env(url: str, microsoft) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
    env.update(MELDBOT_CONFIG=str(EXAMPLE), MELDBOT_STORAGE__URL=url, MELDBOT_HTTP__LISTEN="127.0.0.1:0",
               PYTHONPATH=str(ROOT), MELDBOT_TEST_OUTBOX_LEASE=str(LEASE), **teams_env(microsoft))
    return env


def _start(url: str, microsoft, tmp_path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "meldbot", "run"], env=_run_env(url, microsoft), cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)


async def test_kill_9_of_meldbot_run_during_a_connector_call_shows_only_that_part_again(
        postgres_database, microsoft, early, tmp_path, capsys):
    await migrated(postgres_database)
    async with running(postgres_database, microsoft, early) as bot:
        await bot.say(ANNA, "lijst")             # the AF's conversation is known
    microsoft.hang_on = "(3/4)"
    queuer = build_app(make_config(postgres_database, **teams_env(microsoft)), clock=early, notifiers={},
                       mode="chat")
    first = _start(postgres_database, microsoft, tmp_path, "first")
    second = None
    try:
        async with queuer:
            from meldbot.core.clock import SystemClock

            queuer.clock = SystemClock()         # the processes run on the real clock
            await queue_long(queuer)
            async with asyncio.timeout(60):
                await microsoft.hung.wait()
            # A second process on the same database, up before the first dies; the row is the first's.
            second = _start(postgres_database, microsoft, tmp_path, "second")
            await microsoft.wait_for(lambda: (tmp_path / "second.log").read_text().count("http server listening"),
                                     timeout=60)
            row = await row_of(queuer)
            first.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            first.wait(10)
            assert row[0] == 2 and row[1] is not None        # parts 1-2 recorded, part 3 under way
            # Part 3 was taken (Teams shows it) and its answer never came; the process died in that call.
            microsoft.release()
            await microsoft.wait_for(lambda: shown_parts(microsoft)[4], timeout=LEASE + 60)
            window = time.monotonic() - killed
            async with asyncio.timeout(30):     # and recorded
                while (row := await row_of(queuer))[2] is None:
                    await asyncio.sleep(0.05)
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert shown_parts(microsoft) == {1: 1, 2: 1, 3: 2, 4: 1}
    assert row[0] == 4 and row[1] is None and row[2] is not None
    log = (tmp_path / "second.log").read_text()
    assert "outbox row in doubt" in log and "regel" not in log
    assert window < LEASE + 15, window        # the dead process's claim ran out after its lease, not later
    with capsys.disabled():
        print(f"\n[teams crash] the other process delivered the rest {window:.1f} s after the kill")


async def test_a_row_whose_claim_ran_out_mid_batch_and_was_sent_by_another_process_is_not_sent_again(
        postgres_database, microsoft, early):
    """Review M3: a batch is claimed once; while the first row goes slowly, the second row's claim runs out,
    another process claims and sends it. The first process must not send its stale copy, nor record an
    outcome or a failure for it."""
    await migrated(postgres_database)
    short = Reply("Een kort bericht voor Anna")
    calls = 0

    async with running(postgres_database, microsoft, early) as one, \
            running(postgres_database, microsoft, early) as two:
        for bot in (one, two):                  # only the calls below deliver
            bot.app.dispatcher.stop()
            await asyncio.wait([t for t in bot.app._tasks if getattr(t, "get_name", str)() == "outbox-dispatcher"])
            bot.app.dispatcher.start()
        await one.say(ANNA, "lijst")
        await one.app.dispatcher.deliver_pending()
        await queue_long(one.app)               # row A: four parts, each renewing A's claim
        async with one.app.uow() as uow:        # row B, claimed in the same batch
            await uow.outbox.add(meldpunt_id="bergeijk", recipient=Identity("teams", ANNA.aad), reply=short,
                                 key="test:short", kind="overview", at=early.now())
            await uow.commit()
        original = one.adapter._deliver_one
        lease = one.app.dispatcher.policy.lease

        async def slow(identity, activity, stored):
            nonlocal calls
            calls += 1
            if calls == 1:
                early.advance(lease / 2)
            elif calls == 2:                    # B's claim has run out, A's (renewed for part 2) has not
                early.advance(lease / 2 + timedelta(seconds=5))
                assert await two.app.dispatcher.deliver_pending() == 1
            return await original(identity, activity, stored)

        one.adapter._deliver_one = slow
        await one.app.dispatcher.deliver_pending()
        async with one.app.db.engine.connect() as conn:
            b = (await conn.execute(sa.select(OutboxRow.delivered_at, OutboxRow.attempts, OutboxRow.last_error)
                                    .where(OutboxRow.idempotency_key == "test:short"))).one()
        a = await row_of(one.app)
        failures = one.app.metrics.delivery_failures.labels("teams")._value.get()
    assert sum(short.text in seen(p) for p in microsoft.posts()) == 1
    assert shown_parts(microsoft) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert b[0] is not None and b[1:] == (0, None) and failures == 0
    assert a[:2] == (4, None) and a[2] is not None
