"""Nothing fails silently: an undelivered message is told to the AF it concerns, shown in `toon`, in
`meldbot doctor`, in the metric, and listed and re-sent with `meldbot outbox` — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from meldbot.run.app import build_app
from meldbot.run.doctor import examine
from meldbot.core.i18n import texts
from meldbot.core.messaging import DeliveryError, Identity
from tests.support import FakeNotifier, make_config
from tests.support.chat import NAMED, Chat, migrated, run_cli

FEEDBACK = "terugkoppelen 1 Dank je, het is doorgezet naar de politie."
NOT_INSTALLED = "teams: recipient has not installed the app (403 on create)"


class Refusing(FakeNotifier):
    """Refuses messages to the people in `refuse` (permanently, or not), like a platform would."""

    def __init__(self, *refuse: str, permanent: bool = True, reason: str = NOT_INSTALLED) -> None:
        super().__init__()
        self.refuse, self.permanent, self.reason = set(refuse), permanent, reason
        self.refused = 0

    async def send(self, recipient, reply, key):
        if recipient.user_id in self.refuse and not key.startswith("reminder:"):
            self.refused += 1
            raise DeliveryError(self.reason, permanent=self.permanent)
        return await super().send(recipient, reply, key)


@pytest.fixture
async def office(database_url, clock):
    await migrated(database_url)
    notifier = Refusing("piet")
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        yield Chat(app, notifier)


def failure_notices(chat: Chat, user: str) -> list[str]:
    return [m for m in chat.inbox(user) if "kon niet worden bezorgd" in m]


async def parked_rows(chat: Chat):
    async with chat.app.uow() as uow:
        return [r for r in await uow.outbox.troubled() if r.parked_at is not None]


async def test_a_parked_terugkoppelen_reaches_the_af_as_a_failure_notice_once(office, clock):
    await office.report("piet", name="Piet de Melder")
    await office.say("af", "toon 1")
    answer = await office.say("af", FEEDBACK)
    assert "verstuurd" not in answer and "wordt bezorgd" in answer and "toon 1" in answer
    assert office.inbox("piet") == []
    [notice] = failure_notices(office, "af")
    assert notice.startswith("Je terugkoppeling aan de melder van MH-2026-0001 kon niet worden bezorgd: "
                             "de ontvanger heeft de meldbot-app niet (meer) in Teams.")
    [row] = await parked_rows(office)
    assert "Wat je kunt doen:" in notice and f"meldbot outbox resend {row.id}" in notice
    # Content-free: no melder name, no text of the feedback, no ids.
    assert "Piet" not in notice and "doorgezet" not in notice and "console:piet" not in notice
    # Once: more rounds and hours later, no second notice; the backup AF is not bothered.
    for _ in range(3):
        clock.advance(timedelta(hours=2))
        await office.app.dispatcher.deliver_pending()
    assert len(failure_notices(office, "af")) == 1 and failure_notices(office, "af2") == []
    assert office.notifier.refused == 1
    # The history says it did not arrive, and why.
    assert "teruggekoppeld aan melder (niet bezorgd: de ontvanger heeft de meldbot-app niet" in \
        await office.say("af", "toon 1")


async def test_toon_shows_when_terugkoppelen_was_delivered(database_url, clock):
    await migrated(database_url)
    notifier = FakeNotifier()
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.report("piet")
        await chat.say("af", "toon 1")
        notifier.away.add("piet")                              # queued, not delivered yet
        answer = await chat.say("af", FEEDBACK)
        assert "verstuurd" not in answer and "wordt bezorgd" in answer
        assert "teruggekoppeld aan melder (wordt bezorgd): Dank je" in await chat.say("af", "toon 1")
        clock.advance(timedelta(minutes=2))
        notifier.away.clear()
        await app.dispatcher.wake(Identity("console", "piet"))
        await app.dispatcher.deliver_pending()
        assert len(chat.inbox("piet")) == 1
        assert "teruggekoppeld aan melder (bezorgd om 10:32): Dank je" in await chat.say("af", "toon 1")
        # Delivered on a later day than it was written: the date too.
        notifier.away.add("piet")
        await chat.say("af", "terugkoppelen 1 Nog een bericht.")
        clock.advance(timedelta(days=1))
        notifier.away.clear()
        await app.dispatcher.wake(Identity("console", "piet"))
        await app.dispatcher.deliver_pending()
        assert "teruggekoppeld aan melder (bezorgd op 19-11-2026 om 10:32): Nog een" in await chat.say("af", "toon 1")


async def test_a_message_that_keeps_failing_is_told_as_late_then_as_undelivered(sqlite_url, clock):
    await migrated(sqlite_url)
    notifier = Refusing("piet", permanent=False, reason="homeserver unreachable (ClientConnectorError)")
    app = build_app(make_config(sqlite_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.report("piet")
        await chat.say("af", "toon 1")
        await chat.say("af", FEEDBACK)
        for _ in range(30):
            clock.advance(timedelta(minutes=16))
            await app.dispatcher.deliver_pending()
        late = [m for m in chat.inbox("af") if "nog niet bezorgd" in m]
        assert late == ["Je terugkoppeling aan de melder van MH-2026-0001 is nog niet bezorgd: het chatplatform was "
                        "niet bereikbaar. De bot blijft het nog een paar uur proberen. Lukt het niet, dan hoor je "
                        "het hier."]
        assert len(failure_notices(chat, "af")) == 1
        assert notifier.refused == app.dispatcher.policy.max_attempts


async def test_a_failed_message_to_an_af_is_told_to_the_other_af_and_notices_do_not_cascade(database_url, clock):
    await migrated(database_url)
    notifier = Refusing("af")
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.report("piet")
        [notice] = failure_notices(chat, "af2")
        assert notice.startswith("Een bericht van de bot aan anna over MH-2026-0001 (nieuwe melding) kon niet worden "
                                 "bezorgd: de ontvanger heeft de meldbot-app niet (meer) in Teams.")
        assert "Piet" not in notice and "paspoorten" not in notice
        # When the colleague cannot be reached either, the notice is parked and nothing more is queued.
        notifier.refuse.add("af2")
        await chat.report("klaas")
        clock.advance(timedelta(hours=4))
        await app.dispatcher.deliver_pending()
        async with app.uow() as uow:
            parked = await uow.outbox.parked_by_kind()
            stats = await uow.outbox.stats()
        assert parked == {"new_signal": 2, "delivery_notice": 1} and stats["pending"] == 0
        await app.metrics.refresh(app)
        rendered = app.metrics.render().decode()
        assert "meldbot_outbox_parked 3.0" in rendered
        assert 'meldbot_outbox_parked_by_kind{kind="delivery_notice"} 1.0' in rendered


async def test_meldbot_outbox_lists_and_resends_a_parked_terugkoppelen(office, database_url, clock, monkeypatch,
                                                                      capsys):
    await office.report("piet", name="Piet de Melder")
    await office.say("af", "toon 1")
    await office.say("af", FEEDBACK)
    [row] = await parked_rows(office)
    capsys.readouterr()

    assert await run_cli(monkeypatch, database_url, "outbox", "list") == 0
    listed = capsys.readouterr().out
    [line] = [x for x in listed.splitlines() if x.startswith(f"{row.id} ")]
    assert "inform" in line and "MH-2026-0001" in line and "melder" in line and "staat stil" in line
    assert "meldbot-app niet (meer) in Teams" in line and "403 on create" in line
    assert "Piet" not in listed and "doorgezet" not in listed and "console:piet" not in listed
    assert "meldbot outbox resend" in listed

    office.notifier.refuse.clear()          # the melder added the app again
    assert await run_cli(monkeypatch, database_url, "outbox", "resend", str(row.id)) == 0
    assert f"nummer {row.id}" in capsys.readouterr().out
    await office.app.dispatcher.deliver_pending()
    await office.app.dispatcher.deliver_pending()
    assert office.inbox("piet") == ["Terugkoppeling over je melding MH-2026-0001: Dank je, het is doorgezet naar "
                                    "de politie."]
    assert len(failure_notices(office, "af")) == 1       # the earlier one; the re-send went through
    assert "teruggekoppeld aan melder (bezorgd om 10:30)" in await office.say("af", "toon 1")

    # Nothing parked any more: a second re-send is refused, --all-parked finds nothing, the list is empty.
    assert await run_cli(monkeypatch, database_url, "outbox", "resend", str(row.id)) == 1
    assert "al bezorgd" in capsys.readouterr().err
    assert await run_cli(monkeypatch, database_url, "outbox", "resend", "--all-parked") == 0
    assert "niets stil" in capsys.readouterr().out
    assert await run_cli(monkeypatch, database_url, "outbox", "list") == 0
    assert "Geen berichten" in capsys.readouterr().out
    assert len(office.inbox("piet")) == 1


async def test_resend_all_parked_and_a_new_failure_is_told_again(office, database_url, clock, monkeypatch, capsys):
    await office.report("piet")
    await office.say("af", "toon 1")
    await office.say("af", FEEDBACK)
    clock.advance(timedelta(minutes=1))
    await office.say("af", "terugkoppelen 1 Nog een bericht.")
    assert len(await parked_rows(office)) == 2
    assert await run_cli(monkeypatch, database_url, "outbox", "resend") == 1
    assert await run_cli(monkeypatch, database_url, "outbox", "resend", "--all-parked") == 0
    assert "2 bericht(en)" in capsys.readouterr().out
    await office.app.dispatcher.deliver_pending()        # still refused: parked again, and told again
    assert len(await parked_rows(office)) == 2
    assert len(failure_notices(office, "af")) == 4


async def test_doctor_names_the_parked_rows_and_what_to_do(office, database_url):
    await office.report("piet")
    await office.say("af", "toon 1")
    await office.say("af", FEEDBACK)
    [row] = await parked_rows(office)
    findings = await examine(make_config(database_url), texts("nl"))
    [parked] = [f for f in findings if "staan stil" in f.text]
    assert not parked.ok
    assert f"nummer {row.id}: inform over MH-2026-0001, 1 poging(en)" in parked.text
    assert "de ontvanger heeft de meldbot-app niet (meer) in Teams" in parked.text
    assert "meldbot outbox resend" in parked.text
    assert "Piet" not in parked.text and "doorgezet" not in parked.text


async def test_retention_erases_a_signals_parked_messages_and_the_notices_about_them(database_url, clock):
    await migrated(database_url)
    notifier = Refusing("piet", "af")     # the feedback to the melder parks, and so does the notice to the AF
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")

    async def outbox() -> str:
        async with app.db.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT idempotency_key, kind, payload_sealed FROM outbox"))).all()
        return "\n".join(str(tuple(r)) for r in rows)

    async with app:
        chat = Chat(app, notifier)
        await chat.report("piet")
        await chat.report("piet")
        for number, place in [(1, "Kolibriehof"), (2, "Reigersbek")]:
            await chat.say("af", f"toon {number}")
            await chat.say("af", f"terugkoppelen {number} Bij de {place} is gecontroleerd.")
        await chat.say("af", "sluiten 1 afgerond")
        before = await outbox()
        assert "Kolibriehof" in before and "undelivered:" in before and "delivery_notice" in before
        clock.advance(timedelta(days=25 * 31))                 # past the 24 months after closing
        assert await app.apply_retention() == 1
        after = await outbox()
    assert "MH-2026-0001" not in after and "Kolibriehof" not in after
    # The open signal's parked feedback and the parked notice about it stay, to be re-sent.
    assert "Reigersbek" in after and after.count("MH-2026-0002") >= 2 and "delivery_notice" in after


async def test_a_parked_notice_goes_with_its_signal_after_the_message_it_was_about_is_gone(database_url, clock):
    await migrated(database_url)
    notifier = Refusing("piet", "af")
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.report("piet")
        await chat.say("af", "toon 1")
        await chat.say("af", "terugkoppelen 1 Bij de Kolibriehof is gecontroleerd.")
        await chat.say("af", "sluiten 1 afgerond")
        notifier.refuse.discard("piet")                        # the melder is back: re-sent and delivered
        async with app.uow() as uow:
            [feedback] = [r.id for r in await uow.outbox.troubled() if r.kind == "inform"]
            await uow.outbox.resend([feedback], clock.now())
            await uow.commit()
        await app.dispatcher.deliver_pending()
        clock.advance(timedelta(days=40))                      # delivered rows are forgotten after 30 days
        assert await app.apply_retention() == 0
        async with app.uow() as uow:
            left = await uow.outbox.troubled(every=True)
        # The feedback is gone; the AF's notice about it is still parked (and the AF's own new-signal message).
        assert sorted(r.kind for r in left) == ["delivery_notice", "new_signal"]
        clock.advance(timedelta(days=25 * 31))
        assert await app.apply_retention() == 1
        async with app.uow() as uow:
            assert await uow.outbox.troubled(every=True) == []


TEAMS_ON = {"MELDBOT_TEAMS__ENABLED": "true", "MELDBOT_TEAMS__APP_ID": "app", "MELDBOT_TEAMS__APP_PASSWORD": "x",
            "MELDBOT_TEAMS__TENANT_ID": "t", "MELDBOT_MELDPUNT__0__TEAMS_TENANTS": "t"}


async def a_teams_melder_reported(url: str, clock) -> None:
    """A melder reports on Teams while it is on (a Teams notifier in this process)."""
    from meldbot.core.messaging import IncomingMessage

    await migrated(url)
    app = build_app(make_config(url, **TEAMS_ON), clock=clock, mode="chat",
                    notifiers={"console": FakeNotifier(), "teams": FakeNotifier("teams")})
    async with app:
        for line in ["melden", "Zes mensen slapen in een schuur", "Hoofdstraat 3, Bergeijk", "gisteren", "onbekend",
                     "arbeid", "balie", "nee", "versturen"]:
            await app.bot.handle(IncomingMessage(sender=Identity("teams", "aad-melder"), conversation_id="c-1",
                                                 text=line, sender_name="Melder", tenant="t"))


async def test_feedback_for_a_platform_switched_off_in_the_configuration_is_parked_and_told(database_url, clock):
    await a_teams_melder_reported(database_url, clock)
    # Teams is switched off in the configuration; the AF answers the Teams melder from the console.
    notifier = FakeNotifier()
    app = build_app(make_config(database_url), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.say("af", "toon 1")
        assert "wordt bezorgd" in await chat.say("af", FEEDBACK)
        clock.advance(timedelta(minutes=30))
        await app.dispatcher.deliver_pending()
        assert failure_notices(chat, "af") == []              # not yet: it may be a moment's change
        clock.advance(timedelta(hours=1))
        await app.dispatcher.deliver_pending()
        await app.dispatcher.deliver_pending()
        # Before: "wordt bezorgd" for ever, and nobody heard of it.
        [notice] = failure_notices(chat, "af")
        assert notice.startswith("Je terugkoppeling aan de melder van MH-2026-0001 kon niet worden bezorgd")
        assert "staat uit in de configuratie" in notice       # the cause named, not "een onbekende fout"
        [row] = await parked_rows(chat)
        assert row.kind == "inform" and "switched off in the configuration" in row.last_error
        assert "teruggekoppeld aan melder (niet bezorgd" in await chat.say("af", "toon 1")


async def test_a_process_without_the_notifier_never_parks_rows_of_a_platform_that_is_on(database_url, clock,
                                                                                        monkeypatch, capsys):
    await a_teams_melder_reported(database_url, clock)
    # `meldbot chat` beside a `meldbot run` that has Teams: this process cannot send them, and must not park them.
    notifier = FakeNotifier()
    app = build_app(make_config(database_url, **TEAMS_ON), clock=clock, notifiers={"console": notifier}, mode="chat")
    async with app:
        chat = Chat(app, notifier)
        await chat.say("af", "toon 1")
        await chat.say("af", FEEDBACK)
        clock.advance(timedelta(hours=5))
        await app.dispatcher.deliver_pending()
        assert await parked_rows(chat) == [] and failure_notices(chat, "af") == []
    # But doctor and `meldbot outbox list` show what has waited so long (no `meldbot run` with Teams is sending).
    monkeypatch.setenv("MELDBOT_TEST_CLOCK", clock.now().isoformat())
    findings = await examine(make_config(database_url, **TEAMS_ON), texts("nl"), now=clock.now())
    [waiting] = [f for f in findings if "wacht" in f.text and "uur" in f.text]
    assert not waiting.ok and "teams" in waiting.text and "inform over MH-2026-0001" in waiting.text
    capsys.readouterr()
    assert await run_cli(monkeypatch, database_url, "outbox", "list") == 0
    listed = capsys.readouterr().out
    [line] = [x for x in listed.splitlines() if "MH-2026-0001" in x and "inform" in x]
    assert "teams" in line and "wacht al" in line
