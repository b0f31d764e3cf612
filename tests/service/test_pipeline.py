"""The pipe end to end: dialog -> service -> outbox -> dispatcher -> adapter, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from meldbot.run.app import build_app
from meldbot.core.messaging import Identity, IncomingMessage
from tests.support import FakeNotifier, make_config
from tests.support.chat import SCRIPT, migrated, report_as, say


async def test_a_report_is_stored_and_the_af_is_notified(database_url, clock):
    await migrated(database_url)
    notifier = FakeNotifier()
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        last = await report_as(app, "medewerker")
        assert "MH-2026-0001" in last[-1].text
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            assert await uow.signals.count() == 1
            signals = await uow.signals.of_melder(Identity("console", "medewerker"))
            stats = await uow.outbox.stats("new_signal")
    assert [str(s.reference) for s in signals] == ["MH-2026-0001"]
    assert signals[0].content.waar == "Kerkstraat 3, Bergeijk"
    to_af = notifier.to("af")
    assert len(to_af) == 1 and "MH-2026-0001" in to_af[0].text
    # The notification shows on locked screens: no content in it.
    assert "paspoort" not in to_af[0].text and "Kerkstraat" not in to_af[0].text
    assert "toon 1" in to_af[0].text
    # The backup AF gets escalations, not every new signal.
    assert notifier.to("af2") == []
    assert stats == {"pending": 0, "parked": 0, "delivered": 1}


async def test_fifty_simultaneous_submissions_get_distinct_references_and_one_notification_each(database_url, clock):
    await migrated(database_url)
    notifier = FakeNotifier()
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        users = [f"medewerker{i}" for i in range(50)]
        for line in SCRIPT[:-1]:
            await asyncio.gather(*(app.bot.handle(say(u, line)) for u in users))
        finals = await asyncio.gather(*(app.bot.handle(say(u, "versturen")) for u in users))
        await app.dispatcher.deliver_pending()
    references = set()
    for replies in finals:
        found = [w.rstrip(".") for w in replies[-1].text.split() if w.startswith("MH-2026-")]
        assert len(found) == 1, replies[-1].text
        references.add(found[0])
    assert len(references) == 50
    assert references == {f"MH-2026-{n:04d}" for n in range(1, 51)}
    notified = [r.text for r in notifier.to("af")]
    assert len(notified) == 50
    assert {next(w.rstrip(".") for w in t.split() if w.startswith("MH-")) for t in notified} == references
    # Delivered once each: no idempotency key was sent twice.
    assert notifier.calls == 50


async def test_a_failed_delivery_is_retried_with_backoff_and_delivered_once(sqlite_url, clock):
    from datetime import timedelta

    await migrated(sqlite_url)
    notifier = FakeNotifier()
    notifier.fail_next = 2
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        await report_as(app, "medewerker")
        await app.dispatcher.deliver_pending()
        assert notifier.to("af") == []
        await app.dispatcher.deliver_pending()          # not due yet: backoff holds
        assert notifier.calls == 1
        clock.advance(timedelta(seconds=3))
        await app.dispatcher.deliver_pending()
        assert notifier.calls == 2 and notifier.to("af") == []
        clock.advance(timedelta(seconds=5))
        await app.dispatcher.deliver_pending()
        clock.advance(timedelta(minutes=30))
        await app.dispatcher.deliver_pending()
    assert len(notifier.to("af")) == 1
    assert notifier.calls == 3


async def test_a_message_for_someone_away_waits_until_they_are_back(sqlite_url, clock):
    await migrated(sqlite_url)
    notifier = FakeNotifier()
    notifier.away.add("af")
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        await report_as(app, "medewerker")
        await app.dispatcher.deliver_pending()
        assert notifier.to("af") == []
        notifier.away.clear()
        await app.dispatcher.wake(Identity("console", "af"))
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
    assert len(notifier.to("af")) == 1
    assert stats["delivered"] == 1 and stats["parked"] == 0


async def test_a_permanent_refusal_parks_the_row_without_losing_it(sqlite_url, clock):
    from meldbot.core.messaging import DeliveryError

    class Refusing(FakeNotifier):
        async def send(self, recipient, reply, key):
            if key.startswith("reminder:"):
                return await super().send(recipient, reply, key)
            raise DeliveryError("app not installed for user", permanent=True)

    await migrated(sqlite_url)
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": Refusing()}, mode="chat")
    async with app:
        await report_as(app, "medewerker")
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
    assert stats == {"pending": 0, "parked": 1, "delivered": 0}


async def test_the_same_outbox_key_twice_queues_one_message(sqlite_url, clock):
    from meldbot.core.messaging import Reply

    await migrated(sqlite_url)
    notifier = FakeNotifier()
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        for _ in range(2):
            async with app.uow() as uow:
                await uow.outbox.add(meldpunt_id="bergeijk", recipient=Identity("console", "af"),
                                     reply=Reply("x"), key="k-1", kind="test", at=clock.now())
                await uow.commit()
        await app.dispatcher.deliver_pending()
    assert notifier.calls == 1


async def test_a_redelivered_event_is_handled_once_and_answered_the_same(database_url, clock):
    await migrated(database_url)
    notifier = FakeNotifier()
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        for i, line in enumerate(SCRIPT[:-1]):
            await app.bot.handle(IncomingMessage(sender=Identity("console", "piet"), conversation_id="piet",
                                                 text=line, event_id=f"$e{i}"))
        send = IncomingMessage(sender=Identity("console", "piet"), conversation_id="piet", text="versturen",
                               event_id="$send")
        first = await app.bot.handle(send)
        again = await app.bot.handle(send)
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            count = await uow.signals.count()
    assert count == 1
    assert [r.text for r in again] == [r.text for r in first] and "MH-2026-0001" in first[-1].text
    assert len(notifier.to("af")) == 1


def test_run_mode_wires_matrix_when_it_is_enabled(sqlite_url):
    config = make_config(sqlite_url, MELDBOT_MATRIX__ENABLED="true", MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9",
                         MELDBOT_MATRIX__USER_ID="@meldbot:localhost", MELDBOT_MATRIX__PASSWORD="x")
    app = build_app(config, mode="run")
    assert "matrix" in app.notifiers and app.bot.platforms == ("matrix",) and len(app.adapters) == 1
    assert build_app(config, mode="chat").adapters == []


async def test_stopping_lets_a_delivery_under_way_finish_and_records_it(sqlite_url, clock):
    await migrated(sqlite_url)
    sending, release = asyncio.Event(), asyncio.Event()

    class Slow(FakeNotifier):
        async def send(self, recipient, reply, key):
            if not key.startswith("reminder:"):
                sending.set()
                await release.wait()
            await super().send(recipient, reply, key)

    notifier = Slow()
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        await report_as(app, "medewerker")
        await asyncio.wait_for(sending.wait(), 10)
        asyncio.get_running_loop().call_later(0.2, release.set)
    # The app stopped while the AF's notification was on its way: it arrived, and the outbox knows.
    again = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with again:
        async with again.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
    assert len(notifier.to("af")) == 1
    assert stats["delivered"] == 1 and stats["pending"] == 0
