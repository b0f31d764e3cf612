"""The duplicate-delivery table: a redelivered event gets its answer within a short window, is never
handled twice, and what the answers showed goes when retention erases the signal (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from meldbot.run.app import build_app
from meldbot.core.clock import ManualClock
from meldbot.core.domain import EventKind, RefQuery
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.service.retention import PROCESSED_REPLIES_KEPT
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated

AMS = ZoneInfo("Europe/Amsterdam")
# Words of the melder that a `toon` view shows; the example configuration stores in clear, so a search
# of the raw rows finds them wherever they are kept.
ERASED = ["Kolibriehof", "tweeëntwintig paspoorten"]
KEPT = ["Reigersbek", "naaiatelier"]


def report(text: str, address: str) -> list[str]:
    return ["melden", text, address, "gisteren", "onbekend", "1", "balie", "nee", "versturen"]


class Chat:
    def __init__(self, app) -> None:
        self.app = app

    async def say(self, user: str, text: str, event_id: str | None = None) -> str:
        replies = await self.app.bot.handle(IncomingMessage(
            sender=Identity("console", user), conversation_id=user, text=text, event_id=event_id))
        return "\n".join(r.text for r in replies)

    async def rows(self, sql: str) -> list[tuple]:
        async with self.app.db.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(sa.text(sql))).all()]

    async def table_text(self, table: str) -> str:
        return "\n".join(str(r) for r in await self.rows(f"SELECT * FROM {table}"))


async def test_retention_erases_the_replies_that_showed_an_erased_signal(database_url):
    await migrated(database_url)
    clock = ManualClock(datetime(2026, 11, 18, 10, 30, tzinfo=AMS))
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.settled()                                    # the start-up retention run is behind us
        chat = Chat(app)
        for line in report("In het pand aan de Kolibriehof liggen tweeëntwintig paspoorten", "Kolibriehof 2"):
            await chat.say("melder1", line)
        assert "afgesloten" in await chat.say("af", "sluiten 1 afgerond")
        clock.set(datetime(2028, 12, 1, 10, 0, tzinfo=AMS))      # past the 24 months, retention not yet run
        for line in report("Een naaiatelier aan de Reigersbek waar mensen slapen", "Reigersbek 5"):
            await chat.say("melder2", line)
        shown = await chat.say("af", "toon MH-2026-0001", event_id="$toon-1")
        other = await chat.say("af", "toon MH-2028-0001", event_id="$toon-2")
        listed = await chat.say("af", "lijst", event_id="$lijst")
        assert "Kolibriehof" in shown and "Reigersbek" in other and "MH-2028-0001" in listed
        held = await chat.table_text("processed_event")
        assert all(word in held for word in ERASED + KEPT)     # the answers are kept, for a redelivery

        assert await app.apply_retention() == 1

        held = await chat.table_text("processed_event")
        links = await chat.rows("SELECT signal_id FROM processed_event_signal")
        again = await chat.say("af", "toon MH-2028-0001", event_id="$toon-2")
        first_again = await chat.say("af", "toon MH-2026-0001", event_id="$toon-1")
    assert [word for word in ERASED if word in held] == []
    assert all(word in held for word in KEPT)
    assert again == other                                     # the other signal's event still answered the same
    assert 1 not in {signal_id for (signal_id,) in links}
    assert "Kolibriehof" not in first_again and "al eerder gekregen" in first_again   # recognised, not shown


async def test_a_redelivery_after_retention_erased_the_signal_is_recognised_and_not_handled_again(database_url):
    await migrated(database_url)
    clock = ManualClock(datetime(2026, 11, 18, 10, 30, tzinfo=AMS))
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.settled()
        chat = Chat(app)
        for line in report("In het pand aan de Kolibriehof liggen tweeëntwintig paspoorten", "Kolibriehof 2"):
            await chat.say("melder1", line)
        assert "afgesloten" in await chat.say("af", "sluiten 1 afgerond")
        clock.set(datetime(2028, 12, 1, 10, 0, tzinfo=AMS))      # past the 24 months, retention not yet run
        shown = await chat.say("af", "toon MH-2026-0001", event_id="$toon")
        told = await chat.say("af", "terugkoppelen MH-2026-0001 Dank je, we hebben het opgepakt", event_id="$terug")
        assert "Kolibriehof" in shown and "al eerder gekregen" not in told

        assert await app.apply_retention() == 1

        markers = await chat.rows("SELECT replies_sealed FROM processed_event")
        links = await chat.rows("SELECT * FROM processed_event_signal")
        held = await chat.table_text("processed_event")
        shown_again = await chat.say("af", "toon MH-2026-0001", event_id="$toon")
        told_again = await chat.say("af", "terugkoppelen MH-2026-0001 Dank je, we hebben het opgepakt",
                                    event_id="$terug")
    assert len(markers) == 2 and all(replies is None for (replies,) in markers)   # kept, without content
    assert links == [] and [word for word in ERASED if word in held] == []
    assert "al eerder gekregen" in shown_again and "Kolibriehof" not in shown_again
    assert "al eerder gekregen" in told_again                 # not handled a second time


async def test_a_redelivery_gets_its_answer_within_the_window_and_is_never_handled_twice(database_url):
    await migrated(database_url)
    clock = ManualClock(datetime(2026, 11, 18, 10, 30, tzinfo=AMS))
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        await app.settled()                                    # the start-up retention run is behind us
        chat = Chat(app)
        for line in report("In het pand aan de Kolibriehof liggen tweeëntwintig paspoorten", "Kolibriehof 2"):
            await chat.say("melder1", line)
        first = await chat.say("af", "notitie 1 buren gesproken", event_id="$note")
        clock.advance(PROCESSED_REPLIES_KEPT - timedelta(minutes=1))
        await app.expire_drafts()                              # the scheduled clean-up runs in between
        within = await chat.say("af", "notitie 1 buren gesproken", event_id="$note")
        clock.advance(timedelta(minutes=2))
        later = await chat.say("af", "notitie 1 buren gesproken", event_id="$note")
        await app.expire_drafts()
        kept = await chat.rows("SELECT replies_sealed FROM processed_event")
        links = await chat.rows("SELECT * FROM processed_event_signal")
        async with app.uow() as uow:
            signal = await uow.signals.find(RefQuery.parse("1"), ["bergeijk"], with_events=True)
    assert "Notitie opgeslagen" in first and within == first
    assert "al eerder gekregen" in later and "Notitie opgeslagen" not in later
    assert len([e for e in signal.events if e.kind == EventKind.NOTE]) == 1   # handled once
    assert kept and all(replies is None for (replies,) in kept)   # rows stay to recognise it, answers go
    assert links == []
