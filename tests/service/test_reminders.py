"""Reminders at working-day moments in office hours, once each, stopping when settled; retention."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from meldbot.run.app import build_app
from meldbot.core.clock import ManualClock
from meldbot.core.messaging import Identity, IncomingMessage
from tests.support import FakeNotifier, make_config
from tests.support.cli import env_for
from tests.support.chat import migrated

AMS = ZoneInfo("Europe/Amsterdam")
SCRIPT = ["melden", "Een man houdt paspoorten vast", "Molenweg 8", "gisteren", "onbekend", "2", "balie", "nee",
          "versturen"]


def at(*args) -> datetime:
    return datetime(*args, tzinfo=AMS)


class Office:
    def __init__(self, app, notifier, clock):
        self.app, self.notifier, self.clock = app, notifier, clock

    async def say(self, user: str, text: str) -> str:
        replies = await self.app.bot.handle(IncomingMessage(sender=Identity("console", user), conversation_id=user,
                                                            text=text))
        return "\n".join(r.text for r in replies)

    async def report(self, user: str = "piet", urgent: bool = False) -> None:
        script = ["spoed", *SCRIPT[1:]] if urgent else SCRIPT
        for line in script:
            await self.say(user, line)

    async def sweep_at(self, moment: datetime, overview: bool = False) -> list[str]:
        """Move the clock, run the sweep, deliver; the reminder texts that went out (weekly overviews
        only when asked for)."""
        self.clock.set(moment)
        await self.app.dispatcher.deliver_pending()
        before = len(self.notifier.shown)
        await self.app.reminders.sweep()
        await self.app.dispatcher.deliver_pending()
        return [f"{who.user_id}: {r.text}" for who, r, key in self.notifier.shown[before:]
                if key.startswith("reminder:") and (overview or not key.startswith("reminder:overzicht"))]


@pytest.fixture
async def office(sqlite_url):
    await migrated(sqlite_url)
    clock = ManualClock(at(2026, 11, 18, 10, 30))    # Wednesday
    notifier = FakeNotifier()
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        office = Office(app, notifier, clock)
        await app.dispatcher.deliver_pending()
        yield office


async def test_pick_up_is_reminded_one_working_day_later_daily_and_escalates_to_the_backup(office):
    await office.report()
    await office.app.dispatcher.deliver_pending()
    assert await office.sweep_at(at(2026, 11, 19, 10, 29)) == []
    first = await office.sweep_at(at(2026, 11, 19, 10, 31))
    assert len(first) == 1 and first[0].startswith("af: Herinnering (1): melding MH-2026-0001")
    assert "toon 1" in first[0]
    assert await office.sweep_at(at(2026, 11, 19, 16, 0)) == []          # once per slot
    second = await office.sweep_at(at(2026, 11, 20, 10, 31))              # Friday
    assert [s.split(":")[0] for s in second] == ["af"]
    assert await office.sweep_at(at(2026, 11, 21, 12, 0)) == []           # Saturday
    assert await office.sweep_at(at(2026, 11, 22, 12, 0)) == []           # Sunday
    third = await office.sweep_at(at(2026, 11, 23, 10, 31))               # Monday
    assert sorted(s.split(":")[0] for s in third) == ["af", "af2"]          # escalated to the backup AF
    await office.say("af", "toon 1")
    assert await office.sweep_at(at(2026, 11, 24, 10, 31)) == []          # settled: stops


async def test_no_reminder_on_koningsdag_or_outside_office_hours(office):
    office.clock.set(at(2027, 4, 26, 10, 0))                              # Monday before Koningsdag
    await office.report()
    assert await office.sweep_at(at(2027, 4, 27, 10, 1)) == []            # Tuesday 27 April: closed
    assert await office.sweep_at(at(2027, 4, 28, 7, 59)) == []            # before office hours
    assert len(await office.sweep_at(at(2027, 4, 28, 10, 1))) == 1


async def test_a_configured_closing_day_counts_as_closed(office):
    office.clock.set(at(2027, 5, 4, 11, 0))                               # Tuesday; 5 May is configured
    await office.report()
    assert await office.sweep_at(at(2027, 5, 5, 11, 1)) == []
    assert await office.sweep_at(at(2027, 5, 6, 11, 1)) == []              # Ascension Day (library)
    assert len(await office.sweep_at(at(2027, 5, 7, 11, 1))) == 1


async def test_a_signal_sent_in_the_evening_is_reminded_at_the_next_office_opening(office):
    office.clock.set(at(2026, 11, 18, 18, 0))
    await office.report()
    assert await office.sweep_at(at(2026, 11, 19, 18, 1)) == []           # due time is outside office hours
    assert await office.sweep_at(at(2026, 11, 20, 8, 29)) == []
    assert len(await office.sweep_at(at(2026, 11, 20, 8, 31))) == 1


async def test_urgent_is_reminded_hourly_in_office_hours_until_picked_up(office):
    office.clock.set(at(2026, 11, 18, 15, 10))
    await office.report(urgent=True)
    assert await office.sweep_at(at(2026, 11, 18, 16, 9)) == []
    hourly = await office.sweep_at(at(2026, 11, 18, 16, 11))
    assert len(hourly) == 1 and "SPOED" in hourly[0]
    assert await office.sweep_at(at(2026, 11, 18, 16, 50)) == []
    assert await office.sweep_at(at(2026, 11, 18, 22, 0)) == []           # evening: nothing
    morning = await office.sweep_at(at(2026, 11, 19, 8, 31))
    assert len(morning) == 1
    await office.say("af", "oppakken 1")
    assert await office.sweep_at(at(2026, 11, 19, 10, 0)) == []


async def test_partner_feedback_is_chased_after_ten_working_days_then_weekly(office):
    await office.report()
    await office.say("af", "doorzetten 1 politie")
    assert [s for s in await office.sweep_at(at(2026, 12, 2, 10, 29)) if "doorgezet" in s] == []
    due = await office.sweep_at(at(2026, 12, 2, 10, 31))
    assert len(due) == 1 and "doorgezet naar politie" in due[0] and "feedback 1" in due[0]
    assert await office.sweep_at(at(2026, 12, 8, 12, 0)) == []
    assert len(await office.sweep_at(at(2026, 12, 9, 10, 31))) == 1
    await office.say("af", "feedback 1 politie Onderzoek gestart")
    chased = await office.sweep_at(at(2026, 12, 16, 10, 31))
    assert not any("doorgezet naar" in s for s in chased)


async def test_the_melder_must_be_told_three_working_days_after_feedback_also_after_closing(office):
    await office.report()
    await office.say("af", "doorzetten 1 politie")
    office.clock.set(at(2026, 11, 20, 9, 0))
    await office.say("af", "feedback 1 politie Onderzoek gestart")
    await office.say("af", "sluiten 1 afgerond")
    assert await office.sweep_at(at(2026, 11, 25, 8, 59)) == []
    told = await office.sweep_at(at(2026, 11, 25, 9, 1))
    assert len(told) == 1 and "de melder weet het nog niet" in told[0]
    assert len(await office.sweep_at(at(2026, 12, 2, 9, 1))) == 1        # weekly, also after closing
    await office.say("af", "terugkoppelen 1 Het is opgepakt door de politie")
    assert await office.sweep_at(at(2026, 12, 9, 9, 1)) == []


async def test_a_melder_who_heard_nothing_for_six_weeks_is_remembered(office):
    await office.report()
    await office.say("af", "toon 1")
    assert await office.sweep_at(at(2026, 12, 30, 10, 0)) == []
    silent = await office.sweep_at(at(2026, 12, 30, 10, 31))
    assert len(silent) == 1 and "nog niets gehoord" in silent[0]


async def test_the_weekly_overview_goes_on_the_first_working_day_at_nine_once(office):
    await office.report()
    await office.say("af", "toon 1")
    assert [s for s in await office.sweep_at(at(2026, 11, 23, 8, 59), True) if "Weekoverzicht" in s] == []
    monday = [s for s in await office.sweep_at(at(2026, 11, 23, 9, 1), True) if "Weekoverzicht" in s]
    assert sorted(s.split(":")[0] for s in monday) == ["af", "af2"]
    assert "1 open melding(en), waarvan 1 bij jou" in monday[0] or "waarvan 1 bij jou" in monday[1]
    assert [s for s in await office.sweep_at(at(2026, 11, 24, 9, 1), True) if "Weekoverzicht" in s] == []
    # Easter Monday 2027 (29 March) is closed: the overview comes on Tuesday.
    assert [s for s in await office.sweep_at(at(2027, 3, 29, 9, 30), True) if "Weekoverzicht" in s] == []
    assert len([s for s in await office.sweep_at(at(2027, 3, 30, 9, 30), True) if "Weekoverzicht" in s]) == 2


async def test_after_downtime_each_due_reminder_goes_out_once(sqlite_url):
    await migrated(sqlite_url)
    clock = ManualClock(at(2026, 11, 18, 10, 30))
    notifier = FakeNotifier()
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        office = Office(app, notifier, clock)
        await office.report("piet")
        await office.report("klaas")
        await office.say("af", "doorzetten 2 nla")
        await app.dispatcher.deliver_pending()
    # The bot is down for two and a half weeks: pick-up of 1 fell due 9 times, partner chase of 2 once.
    clock.set(at(2026, 12, 3, 11, 0))
    notifier2 = FakeNotifier()
    app2 = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier2}, mode="chat")
    async with app2:
        await app2.settled()                                              # the start-up catch-up task
        await app2.dispatcher.deliver_pending()
        texts = [r.text for who, r, key in notifier2.shown if who.user_id == "af" and key.startswith("reminder:")]
        assert sum("MH-2026-0001" in t and "opgepakt" in t for t in texts) == 1
        assert sum("MH-2026-0002" in t and "doorgezet" in t for t in texts) == 1
        await app2.reminders.sweep()
        await app2.dispatcher.deliver_pending()
        again = [r.text for who, r, key in notifier2.shown if who.user_id == "af" and key.startswith("reminder:")]
        assert again == texts


def _seed_many(url: str, count: int) -> None:
    async def seed():
        await migrated(url)
        clock = ManualClock(at(2026, 11, 18, 10, 30))
        app = build_app(make_config(url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
        async with app:
            office = Office(app, app.notifiers["console"], clock)
            await asyncio.gather(*(office.report(f"m{i}") for i in range(count)))
    from tests.support import run_sync

    run_sync(seed())


async def _claimed(url: str) -> int:
    from meldbot.storage.db import Database

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return (await conn.execute(sa.text(
                "SELECT count(*) FROM reminder_sent WHERE key LIKE 'oppakken:%' OR key LIKE 'overzicht:%'"))).scalar_one()
    finally:
        await db.dispose()


@pytest.mark.slow
def test_two_bot_processes_on_postgresql_send_each_reminder_once(postgres_database, tmp_path):
    from tests.support import run_sync

    _seed_many(postgres_database, 40)
    env = env_for(tmp_path, MELDBOT_STORAGE__URL=postgres_database, MELDBOT_TEST_CLOCK="2026-11-19T11:00:00+01:00",
                  MELDBOT_REMINDERS__SWEEP_SECONDS="0.2", MELDBOT_HTTP__LISTEN="127.0.0.1:0")
    # Two terminal-mode bots (the console is a platform there; no one at the keyboard is an AF, so the
    # reminders wait in the outbox, where they can be counted).
    procs = [subprocess.Popen([sys.executable, "-m", "meldbot", "chat"], env=env, cwd=tmp_path, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        # Both run until every reminder is claimed (a deadline, not a fixed wait: a loaded machine is slower).
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for p in procs:
                assert p.poll() is None, p.stderr.read()
            if run_sync(_claimed(postgres_database)) >= 42:
                break
            time.sleep(0.2)
        for p in procs:
            assert p.poll() is None, p.stderr.read()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)

    async def counts():
        from meldbot.storage.db import Database

        db = Database(postgres_database)
        async with db.engine.connect() as conn:
            sent = (await conn.execute(sa.text("SELECT key, count(*) FROM reminder_sent GROUP BY key"))).all()
            rows = (await conn.execute(sa.text(
                "SELECT idempotency_key, count(*) FROM outbox WHERE kind = 'reminder' GROUP BY idempotency_key"))).all()
        await db.dispose()
        return sent, rows
    from tests.support import run_sync

    sent, rows = run_sync(counts())
    assert all(n == 1 for _, n in sent)
    assert len([k for k, _ in sent if k.startswith("oppakken:")]) == 40
    assert len([k for k, _ in sent if k.startswith("overzicht:")]) == 2     # this week's overview, per AF
    assert len(rows) == 40 and all(n == 1 for _, n in rows)


async def test_retention_erases_content_and_keeps_the_figures(sqlite_url):
    await migrated(sqlite_url)
    clock = ManualClock(at(2026, 11, 18, 10, 30))
    notifier = FakeNotifier()
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    secrets = ["Gerritje Zandbergen", "Wielewaalstraat", "Zonnebloemkwekerij", "acht slaapzakken"]
    async with app:
        office = Office(app, notifier, clock)
        for line in ["melden", "acht slaapzakken in de schuur van de Zonnebloemkwekerij B.V.",
                     "Wielewaalstraat 4", "gisteren", "Gerritje Zandbergen", "2", "toezicht", "nee", "versturen"]:
            await office.say("gerritje.zandbergen", line)
        await office.report("klaas")
        await office.say("af", "notitie 1 Gerritje Zandbergen is bekend bij de Wielewaalstraat")
        await office.say("af", "kenmerk 1 persoon Gerritje Zandbergen")
        await office.say("af", "doorzetten 1 nla")
        await office.say("af", "feedback 1 nla Controle bij Zonnebloemkwekerij gedaan")
        await office.say("af", "terugkoppelen 1 Dank, de Wielewaalstraat is gecontroleerd")
        await office.say("af", "sluiten 1 afgerond")
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            before = sorted(await uow.signals.facts(["bergeijk"]), key=lambda f: f.created_at)
        clock.set(at(2028, 11, 19, 4, 0))
        assert await app.apply_retention() == 1
        async with app.uow() as uow:
            after = sorted(await uow.signals.facts(["bergeijk"]), key=lambda f: f.created_at)
        text = await office.say("af", "toon 1")
    assert before == after
    assert "gewist omdat de bewaartermijn voorbij was" in text
    raw = b"".join(p.read_bytes() for p in Path(sqlite_url.split("///", 1)[1]).parent.glob("meldbot.db*"))

    async def dump():
        from meldbot.storage.db import Database
        db = Database(sqlite_url)
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            out = []
            for table in tables:
                out += [str(tuple(r)) for r in (await conn.execute(sa.text(f"SELECT * FROM {table}"))).all()]
        await db.dispose()
        return "\n".join(out)
    rows = await dump()
    assert [s for s in secrets if s in rows] == []
    assert "Molenweg" in rows       # the other, still open signal is untouched
    assert [s for s in secrets if s.encode() in raw] == []


@pytest.mark.slow
def test_meldbot_reminders_lists_what_is_due_when_and_for_whom(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"

    async def seed():
        await migrated(url)
        clock = ManualClock(at(2026, 11, 18, 10, 30))
        app = build_app(make_config(url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
        async with app:
            office = Office(app, app.notifiers["console"], clock)
            await office.report("piet")
            await office.report("klaas")
            await office.say("af", "doorzetten 2 politie")
    asyncio.run(seed())
    env = env_for(tmp_path, MELDBOT_STORAGE__URL=url, MELDBOT_TEST_CLOCK="2026-11-18T12:00:00+01:00")
    out = subprocess.run([sys.executable, "-m", "meldbot", "reminders"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Herinneringen (4)")   # pick-up of 1, partner chase of 2, melder silence of both
    assert any("2026-11-19 10:30  MH-2026-0001  oppakken" in line and "alle AF's" in line for line in lines)
    assert any("2026-12-02 10:30  MH-2026-0002  partner" in line and "anna" in line for line in lines)
    assert any("2026-12-30 10:30  MH-2026-0002  melder" in line for line in lines)
    assert any("2026-12-30 10:30  MH-2026-0001  melder" in line for line in lines)
    assert [line[:16] for line in lines[1:]] == sorted(line[:16] for line in lines[1:])
