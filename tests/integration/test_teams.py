"""Teams on the real Agents SDK HTTP stack, offline: a loopback Bot Connector that records what the bot
sends and refuses chats with people who did not install the app, and tokens signed by a loopback key."""

from __future__ import annotations

import asyncio
import dataclasses
import base64
import io
import json
import logging
import time
import zipfile
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from meldbot.adapters.teams import SERVICE_URL_KEY, TeamsAdapter, retry_after_seconds
from meldbot.adapters.teams_auth import EntraToken, TokenUnavailable, service_url_allowed
from meldbot.adapters.teams_render import render
from meldbot.run.app import build_app
from meldbot.core.i18n import texts
from meldbot.core.messaging import Action, Choice, Identity, IncomingMessage, Reply
from tests.support import EXAMPLE, make_config
from tests.support.chat import SCRIPT, migrated
from tests.support.teams import TeamsBot, running, seen, stored_rows, teams_env, texts_of, with_text
from tests.support.teams_fakes import (
    ANNA,
    APP_ID,
    OTHER_TENANT,
    OUTBOUND_TOKEN,
    PIET,
    TENANT,
    FakeAddressBook,
    activity,
    buttons,
    card_of,
    installation,
    press,
)

AMS = ZoneInfo("Europe/Amsterdam")
NL = texts("nl")


# --- the adapter alone: narrow dependencies, no App, no database ----------------------------------------

async def _serve(adapter: TeamsAdapter) -> tuple[web.AppRunner, str]:
    """The adapter on a server of its own (attach: started and stopped with it); the runner and its URL."""
    web_app = web.Application()
    adapter.attach(web_app)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/api/messages"


async def test_the_adapter_runs_a_turn_and_a_proactive_message_with_fakes_for_all_it_depends_on(
        microsoft, early, tmp_path):
    database = tmp_path / "never-created.db"
    config = make_config(f"sqlite+aiosqlite:///{database}", **teams_env(microsoft))
    heard: list[IncomingMessage] = []
    woken: list[Identity] = []
    book = FakeAddressBook(languages={Identity("teams", ANNA.aad): "en"})

    async def handle(message: IncomingMessage) -> list[Reply]:
        heard.append(message)
        return [Reply("Wat wil je melden?")]

    async def wake(identity: Identity) -> None:
        woken.append(identity)

    adapter = TeamsAdapter(config, handle=handle, wake=wake, clock=early, addresses=book, connector_timeout=5)
    runner, url = await _serve(adapter)
    token = {"Authorization": "Bearer " + microsoft.token()}
    body = activity(microsoft, PIET, "melden")
    try:
        async with asyncio.timeout(30), aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(url, json=body, headers=token) as response:
                turn = response.status
            async with http.post(url, json=installation(microsoft, ANNA), headers=token) as response:
                install = response.status
            # The outbox's way out: ANNA's reference as the install left it, her language from the book.
            await adapter.notifier.send(Identity("teams", ANNA.aad), Reply(
                "Herinnering", choices=(Choice(1, "toon", "MH-2026-0001"),)), "k-1")
    finally:
        await runner.cleanup()
    assert turn in (200, 202) and install in (200, 202)
    [message] = heard
    assert (message.sender, message.text, message.tenant, message.is_private) == (
        Identity("teams", PIET.aad), "melden", TENANT, True)
    assert [p["text"] for p in microsoft.replies_to(body["id"])] == ["Wat wil je melden?"]
    piet = book.entries[Identity("teams", PIET.aad)]
    assert piet["reference"]["conversation"]["id"] == PIET.conversation and piet["tenant"] == TENANT
    assert book.entries[Identity("teams", SERVICE_URL_KEY + TENANT)] == {"service_url": microsoft.service_url}
    assert {at for _, at in book.writes} == {early.now()}
    assert woken == [Identity("teams", ANNA.aad)]          # installing the app: what waits for her is due
    [sent] = microsoft.proactive(ANNA.conversation)
    assert card_of(sent)["body"][-1]["text"] == texts("en")("teams.card.choose")
    assert microsoft.creates() == [] and not database.exists()
    assert adapter.ready is False                           # stopped with the server


class _SlowThenFailingBook(FakeAddressBook):
    """An address book whose first write fails, and that records what had reached the connector by then."""

    def __init__(self, microsoft) -> None:
        super().__init__()
        self.microsoft = microsoft
        self.replies_at_write: list[int] = []

    async def keep(self, entries, at) -> None:
        self.replies_at_write.append(len([r for r in self.microsoft.requests if "/activities/" in r.path]))
        if len(self.replies_at_write) == 1:
            raise OSError("database gone for a moment")
        await super().keep(entries, at)


async def _posting_to(microsoft, early, tmp_path, book, messages, *, on_status=None, after_each=None) -> None:
    """An adapter alone (a fixed answer, `book` as its address book) that gets `messages` ((text, locale)) from
    PIET one after the other."""
    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/unused.db", **teams_env(microsoft))

    async def handle(message: IncomingMessage) -> list[Reply]:
        return [Reply("Wat wil je melden?")]

    async def wake(identity: Identity) -> None:
        pass

    adapter = TeamsAdapter(config, handle=handle, wake=wake, clock=early, addresses=book, connector_timeout=5)
    runner, url = await _serve(adapter)
    token = {"Authorization": "Bearer " + microsoft.token()}
    try:
        async with asyncio.timeout(30), aiohttp.ClientSession() as http:
            for text, locale in messages:
                async with http.post(url, json=activity(microsoft, PIET, text, locale=locale),
                                     headers=token) as response:
                    if on_status:
                        on_status(response.status)
                if after_each:
                    after_each()
    finally:
        await runner.cleanup()


async def test_the_reference_is_kept_after_the_answer_and_a_failed_write_is_tried_again(
        microsoft, early, tmp_path, caplog):
    """The person's conversation reference is written after the answer is sent: the first message of a chat
    no longer waits for that transaction. A write that fails then does not take the answer back (no 503, no
    second answer from a Teams retry); the person's next message writes it."""
    book = _SlowThenFailingBook(microsoft)
    statuses = []
    await _posting_to(microsoft, early, tmp_path, book, [("melden", "nl-NL"), ("Een man houdt paspoorten", "nl-NL")],
                      on_status=statuses.append)
    assert set(statuses) <= {200, 202}, statuses     # before: 503 for the first, and Teams sent it again
    assert book.replies_at_write == [1, 2]           # each write after that message's answer was sent
    assert book.entries[Identity("teams", PIET.aad)]["reference"]["conversation"]["id"] == PIET.conversation
    warned = [r for r in caplog.records if r.getMessage() == "teams conversation reference not kept"]
    assert len(warned) == 1 and PIET.aad not in str(warned[0].__dict__)


async def test_an_unchanged_chat_reference_is_neither_built_nor_written_again(microsoft, early, tmp_path, monkeypatch):
    """After the answer the adapter compares the chat's reference with the one it stored: first the plain fields
    it is made of, so an unchanged chat costs no reference built and dumped (about 0.1 ms, before the person's
    next message is served). A changed field (here the locale) still builds it and writes it."""
    from meldbot.adapters import teams

    book = FakeAddressBook()
    built = []
    real = teams._reference_data
    monkeypatch.setattr(teams, "_reference_data", lambda *args: built.append(1) or real(*args))
    statuses, counts = [], []
    await _posting_to(microsoft, early, tmp_path, book,
                      [("melden", "nl-NL"), ("Een man houdt paspoorten", "nl-NL"), ("Kerkstraat 3", "en-US")],
                      on_status=statuses.append, after_each=lambda: counts.append((len(built), len(book.writes))))
    assert set(statuses) <= {200, 202}, statuses
    assert counts[0][1] == 1                       # the first message of the chat: kept
    assert counts[1] == counts[0]                  # the same chat again: nothing built, nothing written
    assert counts[2][0] > counts[1][0] and counts[2][1] == counts[1][1] + 1   # changed: built and written
    assert book.entries[Identity("teams", PIET.aad)]["reference"]["locale"] == "en-US"


# --- a report, typed and by buttons -------------------------------------------------------------------

async def test_a_report_typed_in_a_personal_chat_reaches_the_af_in_a_new_one_to_one_chat(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        first = await bot.say(PIET, SCRIPT[0])
        for line in SCRIPT[1:]:
            last = await bot.say(PIET, line)
        created = f"a:created-{ANNA.aad}"
        notice = await microsoft.wait_for(with_text(microsoft, created, "MH-2026-0001"))
        async with bot.app.uow() as uow:
            reference = await uow.references.get(Identity("teams", PIET.aad))
            signals = await uow.signals.of_melder(Identity("teams", PIET.aad))
    assert NL("question.wat") in "\n".join(texts_of(first)) and first[0]["textFormat"] == "markdown"
    assert "MH-2026-0001" in seen(last[-1])
    assert signals[0].content.waar == "Kerkstraat 3, Bergeijk"
    assert reference["reference"]["conversation"]["id"] == PIET.conversation and reference["tenant"] == TENANT
    # Teams needs the tenant and the person to create a 1:1 chat; the bot is the app.
    [create] = microsoft.creates()
    assert create.body["tenantId"] == TENANT and create.body["isGroup"] is False
    assert create.body["members"] == [{"id": ANNA.aad}] and create.body["bot"]["id"] == f"28:{APP_ID}"
    # The notification shows on locked screens: reference and command, no content; a button to read it.
    [message] = notice
    assert "toon 1" in card_of(message)["fallbackText"]
    assert "paspoort" not in json.dumps(message) and "Kerkstraat" not in json.dumps(message)
    assert press(message, "toon 1") == {"meldbot": "toon 1"}
    # Every connector call carried the bot's token.
    assert {r.authorization for r in microsoft.requests} == {f"Bearer {OUTBOUND_TOKEN}"}


async def test_replies_and_notices_reuse_kept_alive_connections_to_the_connector(db_url, microsoft, early):
    """The SDK closes a turn's connector client when the turn ends; with a connection pool of its own that
    closed the TCP connection too, so each reply opened a new one (in production a TLS handshake with the
    Bot Connector per message). The pool is shared and outlives the turns."""
    async with running(db_url, microsoft, early) as bot:
        for line in SCRIPT:
            await bot.say(PIET, line)
        await microsoft.wait_for(with_text(microsoft, f"a:created-{ANNA.aad}", "MH-2026-0001"))
    calls = [r for r in microsoft.requests if r.path.startswith("/v3/")]
    connections = {r.peer for r in calls}
    assert len(calls) >= len(SCRIPT) + 2 and None not in connections
    # The turns one after another over one connection; the outbox's notice beside them may need a second.
    assert len(connections) <= 2, (len(calls), len(connections))


async def test_a_turn_opens_one_http_session_for_its_replies_and_none_for_user_sign_in(
        db_url, microsoft, early, monkeypatch):
    """The SDK asks for a user token client on every turn; its own opened and closed an HTTP session for it, a
    tenth of a millisecond per message, for sign-in flows meldbot does not have. The connector client's
    session (closed with the turn, its connection kept alive) is the one left."""
    from microsoft_agents.hosting.core.connector import UserTokenClientBase

    from meldbot.adapters.teams import NO_USER_SIGN_IN

    async with running(db_url, microsoft, early) as bot:
        await bot.say(PIET, "help")
        made = []
        real = aiohttp.ClientSession.__init__

        def counting(self, *args, **kwargs):
            made.append(kwargs.get("base_url"))
            real(self, *args, **kwargs)

        monkeypatch.setattr(aiohttp.ClientSession, "__init__", counting)
        answer = await bot.say(PIET, "melden")
        monkeypatch.undo()
    assert "Wat zag of hoorde je?" in "\n".join(texts_of(answer))
    assert len(made) == 1 and str(made[0]).startswith(microsoft.url), made
    assert isinstance(NO_USER_SIGN_IN, UserTokenClientBase)   # the SDK's protocol, checkable at run time
    with pytest.raises(NotImplementedError, match="no user sign-in"):
        await NO_USER_SIGN_IN.get_user_token("user", "connection", "msteams")
    await NO_USER_SIGN_IN.close()   # the SDK closes it after every turn: it stays usable


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_a_message_turn_reads_the_database_before_the_sdk_builds_the_turns_clients(
        database, request, microsoft, early, monkeypatch):
    """The SDK spends about a fifth of a turn making the turn's context and clients before it calls the agent.
    On PostgreSQL a personal message's turn starts as its request comes in, so its first read runs meanwhile;
    the answer is the same. Not on SQLite: its calls run in a thread that waits for the interpreter lock the
    SDK's work holds (paired runs: 5 % slower), so there the SDK goes first as before."""
    from meldbot.storage import fast

    url = request.getfixturevalue("db_url" if database == "sqlite" else "postgres_database")
    if database == "postgres":
        await migrated(url)
    events: list[str] = []
    async with running(url, microsoft, early) as bot:
        await bot.say(PIET, "help")
        factory = bot.adapter._factory
        made = factory.create_connector_client

        async def recorded(*args, **kwargs):
            events.append("sdk: connector client")
            return await made(*args, **kwargs)

        monkeypatch.setattr(factory, "create_connector_client", recorded)
        monkeypatch.setattr(fast, "listeners", [*fast.listeners, lambda sql: events.append("sql")])
        answer = await bot.say(PIET, "melden")
    assert "Wat zag of hoorde je?" in "\n".join(texts_of(answer))
    assert "sdk: connector client" in events and "sql" in events, events
    assert events[0] == ("sql" if database == "postgres" else "sdk: connector client"), events


@pytest.mark.parametrize("how", ["stopped", "no token"])
async def test_a_turn_started_early_that_the_sdk_does_not_reach_is_kept_and_answered_on_redelivery(
        how, postgres_database, microsoft, early, monkeypatch):
    """Should the SDK stop an activity after its turn has started (it never has: the checks before it are the
    SDK's own), or fail before it reaches the agent (no token for the connector to be had), the turn still
    ends before the 503 and is kept; Teams delivers the activity again, and that delivery gets the stored
    answer, not a second turn."""
    from meldbot.adapters.teams_auth import TokenUnavailable

    await migrated(postgres_database)
    async with running(postgres_database, microsoft, early) as bot:
        await bot.say(PIET, "melden")
        body = activity(microsoft, PIET, "Een man houdt de paspoorten van vrouwen")

        async def stopped(context):
            return None

        async def no_token(*args, **kwargs):
            raise TokenUnavailable("Entra ID unreachable")

        if how == "stopped":
            monkeypatch.setattr(bot.adapter, "on_turn", stopped)
        else:
            monkeypatch.setattr(bot.adapter._factory, "create_connector_client", no_token)
        assert await bot.post(body) == 503
        assert microsoft.replies_to(body["id"]) == [] and not bot.adapter._early_turns
        monkeypatch.undo()
        assert await bot.post(body) in (200, 202)
        again = texts_of(microsoft.replies_to(body["id"]))
        following = texts_of(await bot.say(PIET, "Kerkstraat 3, Bergeijk"))
    assert "Waar gebeurde het?" in "\n".join(again)
    assert "Wanneer was het?" in "\n".join(following)   # one step per message: the first was not handled twice


async def test_an_activity_the_sdks_model_refuses_with_a_plain_exception_gets_503_not_a_traceback(
        db_url, microsoft, early, caplog):
    """The SDK's Activity validator raises a bare Exception (no ValidationError) when the channel's sub-channel
    and the productInfo entity disagree. Validated in the request's error boundary: a 503 and a log line of
    type and place, as any failed turn (a review finding: it was a 500 with a traceback)."""
    async with running(db_url, microsoft, early) as bot:
        body = activity(microsoft, PIET, "melden")
        body["channelId"] = "msteams:one"
        body["entities"] = [{"type": "ProductInfo", "id": "other"}]
        status = await bot.post(body)
    assert status == 503
    failed = [r for r in caplog.records if r.getMessage() == "teams turn failed"]
    assert failed and failed[0].exc_info is None and failed[0].error == "Exception"


async def test_versturen_is_answered_before_the_outbox_starts_on_the_afs_notice(db_url, microsoft, early):
    """The commit of `versturen` queues the AF's notice; the outbox is woken once the melder's answer is out
    (meldbot.core.answer_first), not while it is being sent. Before, it was woken at the commit."""
    async with running(db_url, microsoft, early) as bot:
        for line in SCRIPT[:-1]:
            await bot.say(PIET, line)
        wakeup = bot.app.dispatcher._wakeup
        real, answered = wakeup.set, []

        def spied() -> None:
            answered.append(any("MH-2026-0001" in json.dumps(r.body) for r in microsoft.requests
                                if PIET.conversation in r.path))
            real()

        wakeup.set = spied
        done = await bot.say(PIET, SCRIPT[-1])
        await microsoft.wait_for(with_text(microsoft, f"a:created-{ANNA.aad}", "MH-2026-0001"))
    assert "MH-2026-0001" in seen(done[-1])
    assert answered and answered[0] is True, answered


async def test_a_report_by_card_buttons_is_handled_like_typing_and_the_af_reads_it_with_a_button(
        db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        for line in SCRIPT[:4]:
            await bot.say(PIET, line)
        [question] = await bot.say(PIET, "onbekend")              # who -> which form: a choice
        assert "2. arbeid — arbeidsuitbuiting" in card_of(question)["fallbackText"]     # the text fallback
        assert "2. arbeidsuitbuiting" in buttons(question)
        [question] = await bot.say(PIET, value=press(question, "arbeid"))
        [question] = await bot.say(PIET, value=press(question, "toezicht"))
        [summary] = await bot.say(PIET, value=press(question, "nee"))
        assert "Soort: arbeidsuitbuiting" in seen(summary) and "controle of toezicht" in seen(summary)
        done = await bot.say(PIET, value={"meldbot": "versturen"})
        assert "MH-2026-0001" in seen(done[-1])
        [notice] = await microsoft.wait_for(with_text(microsoft, f"a:created-{ANNA.aad}", "MH-2026-0001"))
        shown = await bot.say(ANNA, value=press(notice, "toon 1"))
        async with bot.app.uow() as uow:
            [signal] = await uow.signals.of_melder(Identity("teams", PIET.aad))
    assert str(signal.form) == "arbeid" and str(signal.context) == "toezicht"
    text = "\n".join(texts_of(shown))
    assert "paspoorten" in text and "Kerkstraat 3" in text


async def test_a_teams_retry_of_the_same_activity_is_handled_once_and_answered_the_same(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        body = activity(microsoft, PIET, "melden", activity_id="1700000000001")
        assert await bot.post(body) in (200, 202)
        assert await bot.post(body) in (200, 202)
        async with bot.app.uow() as uow:
            state = await uow.conversations.load("teams", PIET.conversation)
    replies = texts_of(microsoft.replies_to("1700000000001"))
    half = len(replies) // 2
    assert half and replies[:half] == replies[half:]
    assert state[0]["draft"]["step"] == "wat"    # asked once, not advanced by the retry


async def test_a_reply_that_fails_in_the_turn_is_not_swallowed_and_a_teams_retry_gets_it(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        body = activity(microsoft, PIET, "melden", activity_id="1700000000002")
        microsoft.fail(f"/v3/conversations/{PIET.conversation}/activities/1700000000002", (500, {}))
        assert await bot.post(body) == 503            # Teams sees the failure and delivers again
        assert await bot.post(body) in (200, 202)
    posted = texts_of(microsoft.posts(PIET.conversation, accepted=False))
    assert not [t for t in posted if "Exception" in t]     # the SDK's default handler would post one
    assert NL("question.wat") in "\n".join(texts_of(microsoft.replies_to("1700000000002")))


async def test_installing_the_app_keeps_the_address_so_the_af_is_reached_without_a_new_chat(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        assert await bot.post(installation(microsoft, ANNA)) in (200, 202)
        for line in SCRIPT:
            await bot.say(PIET, line)
        [notice] = await microsoft.wait_for(
            lambda: [p for p in microsoft.proactive(ANNA.conversation) if "MH-2026-0001" in seen(p)])
    assert microsoft.creates() == [] and "toon 1" in card_of(notice)["fallbackText"]


async def test_an_unreachable_connector_is_retried_not_parked(db_url, microsoft, early):
    from meldbot.core.messaging import DeliveryError

    dead = "http://127.0.0.1:9/"      # the discard port: nothing listens
    async with running(db_url, microsoft, early, env={"MELDBOT_TEAMS__ALLOWED_SERVICE_URLS":
                                                     f"{microsoft.service_url},{dead}"}) as bot:
        async with bot.app.uow() as uow:
            reference = {"conversation": {"id": ANNA.conversation, "conversationType": "personal"},
                         "serviceUrl": dead, "channelId": "msteams", "bot": {"id": f"28:{APP_ID}"},
                         "user": {"id": ANNA.teams_id}}
            await uow.references.put(Identity("teams", ANNA.aad), {"reference": reference, "tenant": TENANT},
                                     early.now())
            await uow.commit()
        with pytest.raises(DeliveryError) as caught:
            await bot.adapter.notifier.send(Identity("teams", ANNA.aad.upper()), Reply("Herinnering"), "k-1")
    assert not caught.value.permanent and "unreachable" in caught.value.reason


# --- proactive messages after a restart ---------------------------------------------------------------

async def test_a_reminder_and_feedback_reach_people_after_a_restart_through_stored_references(
        db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        await bot.say(ANNA, "lijst")                   # the AF has written before: her chat is known
        for line in SCRIPT:
            await bot.say(PIET, line)
        await microsoft.wait_for(with_text(microsoft, ANNA.conversation, "MH-2026-0001"))
    before = len(microsoft.requests)
    early.set(datetime(2026, 11, 19, 10, 31, tzinfo=AMS))    # one working day later: pick-up reminder due
    async with running(db_url, microsoft, early) as bot:     # a new process: nothing in memory
        [reminder] = await microsoft.wait_for(
            lambda: [p for p in microsoft.proactive(ANNA.conversation) if seen(p).startswith("Herinnering")])
        await bot.say(ANNA, value=press(reminder, "toon 1"))
        await bot.say(ANNA, "terugkoppelen 1 Dank je wel. We hebben het doorgezet naar de politie.")
        [feedback] = await microsoft.wait_for(
            lambda: [p for p in microsoft.proactive(PIET.conversation) if "doorgezet naar de politie" in seen(p)])
    after = microsoft.requests[before:]
    assert not [r for r in after if r.path == "/v3/conversations"]     # no new chats: references from the db
    assert "MH-2026-0001" in seen(reminder)
    assert feedback["recipient"]["id"] == PIET.teams_id and feedback["conversation"]["id"] == PIET.conversation
    assert "replyToId" not in feedback


# --- authentication -----------------------------------------------------------------------------------

async def test_every_bad_or_missing_token_gets_401_and_nothing_is_processed(db_url, microsoft, early, rsa_keys):
    stranger = rsa_keys[1]
    now = int(time.time())
    fake = microsoft
    body = activity(fake, PIET, "melden")
    cases = {
        "no header": None,
        "garbage": "Bearer garbage",
        "not bearer": "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "two tokens": f"Bearer {fake.token()} {fake.token()}",
        "wrong audience": "Bearer " + fake.token(aud="11111111-0000-0000-0000-000000000000"),
        "wrong issuer": "Bearer " + fake.token(iss="https://sts.example.org/"),
        "expired": "Bearer " + fake.token(exp=now - 3600, nbf=now - 7200, iat=now - 7200),
        "no expiry": "Bearer " + fake.token(exp=None),
        "wrong key": "Bearer " + fake.token(key=stranger),
        "unknown key id": "Bearer " + fake.token(key=stranger, kid="elsewhere"),
        "other tenant": "Bearer " + fake.token(tid=OTHER_TENANT),
        "other serviceUrl in token": "Bearer " + fake.token(serviceurl="https://smba.trafficmanager.net/emea/"),
    }
    async with running(db_url, fake, early, af=False) as bot:
        async with bot.http.get(bot.url + "/healthz") as response:     # /healthz needs no token
            assert response.status == 200
        statuses = {name: await bot.post(body, auth=header) for name, header in cases.items()}
        # A serviceUrl outside Microsoft's hosts and teams.allowed_service_urls, with a matching token.
        rogue = activity(fake, PIET, "melden", service_url="http://127.0.0.2:9/")
        statuses["serviceUrl not allowed"] = await bot.post(
            rogue, auth="Bearer " + fake.token(serviceurl="http://127.0.0.2:9/"))
        stored = await stored_rows(bot.app)
        requests = list(fake.requests)
        assert await bot.post(body) in (200, 202)            # the same message with a good token
    assert statuses == {name: 401 for name in statuses}
    assert requests == []
    assert stored == {t: 0 for t in stored}
    assert fake.key_fetches <= 2      # one at the first token, at most one refresh for the unknown key id
    assert fake.replies_to(body["id"])


async def test_anonymous_mode_is_for_local_testing_warns_and_still_refuses_foreign_service_urls(
        db_url, microsoft, early, caplog):
    caplog.set_level(logging.WARNING, logger="meldbot.teams")
    async with running(db_url, microsoft, early, anonymous=True, af=False) as bot:
        body = activity(microsoft, PIET, "melden")
        assert await bot.post(body, auth=None) in (200, 202)
        rogue = activity(microsoft, PIET, "melden", service_url="https://evil.example/")
        assert await bot.post(rogue, auth=None) == 401
    assert any("NOT authenticated" in r.getMessage() for r in caplog.records)
    replies = microsoft.replies_to(body["id"])
    assert NL("question.wat") in seen(replies[-1])
    assert all(r.authorization is None for r in microsoft.requests)     # no token to send, none sent


# --- who may use it -----------------------------------------------------------------------------------

async def test_a_group_chat_gets_a_pointer_to_the_private_chat_and_nothing_is_stored(db_url, microsoft, early):
    async with running(db_url, microsoft, early, af=False) as bot:
        group = await bot.say(PIET, "melden Er werken daar mensen zonder papieren", conversation_type="groupChat")
        channel = await bot.say(PIET, "melden", conversation_type="channel")
        stored = await stored_rows(bot.app)
    assert texts_of(group) == [NL("group_chat")] and texts_of(channel) == [NL("group_chat")]
    assert stored == {t: 0 for t in stored}
    assert microsoft.creates() == []


async def test_users_of_a_tenant_of_no_meldpunt_are_refused_in_dutch_and_nothing_is_stored(db_url, microsoft, early):
    async with running(db_url, microsoft, early, af=False) as bot:
        refused = await bot.say(PIET, "melden", tenant=OTHER_TENANT)
        stored = await stored_rows(bot.app)
    assert texts_of(refused) == [NL("teams.tenant_refused")]
    assert stored == {t: 0 for t in stored}


# --- delivery: rate limits, outages, refusals ---------------------------------------------------------

async def _report_with_known_af(bot: TeamsBot) -> None:
    await bot.say(ANNA, "lijst")
    for line in SCRIPT[:-1]:
        await bot.say(PIET, line)


async def test_a_short_429_is_waited_out_and_the_message_is_sent_once(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        await _report_with_known_af(bot)
        microsoft.fail(f"/v3/conversations/{ANNA.conversation}/activities", (429, {"Retry-After": "1"}))
        await bot.say(PIET, SCRIPT[-1])
        await microsoft.wait_for(with_text(microsoft, ANNA.conversation, "MH-2026-0001"))
        await bot.app.dispatcher.deliver_pending()
        async with bot.app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
    attempts = [b for b in microsoft.posts(ANNA.conversation, accepted=False) if "MH-2026-0001" in seen(b)]
    assert len(attempts) == 2 and len(microsoft.posts(ANNA.conversation)) == 2   # "lijst" answer + notice
    assert bot.sleeps == [1.0]
    assert stats == {"pending": 0, "parked": 0, "delivered": 1}


async def test_a_long_429_is_honoured_before_trying_again_and_the_message_is_sent_once(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        await _report_with_known_af(bot)
        microsoft.fail(f"/v3/conversations/{ANNA.conversation}/activities", (429, {"Retry-After": "120"}))
        await bot.say(PIET, SCRIPT[-1])
        def notice_attempts():
            return [b for b in microsoft.posts(ANNA.conversation, accepted=False) if "MH-2026-0001" in seen(b)]
        await microsoft.wait_for(notice_attempts)
        early.advance(timedelta(seconds=30))            # due again for the outbox, but Teams asked for 120 s
        await bot.app.dispatcher.deliver_pending()
        assert len(notice_attempts()) == 1
        early.advance(timedelta(seconds=120))
        await bot.app.dispatcher.deliver_pending()
        async with bot.app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
    assert len(notice_attempts()) == 2 and bot.sleeps == []
    assert len(with_text(microsoft, ANNA.conversation, "MH-2026-0001")()) == 1
    assert stats == {"pending": 0, "parked": 0, "delivered": 1}


async def test_a_connector_failing_with_500_for_a_while_loses_nothing_and_sends_once(db_url, microsoft, early):
    async with running(db_url, microsoft, early) as bot:
        await _report_with_known_af(bot)
        microsoft.fail(f"/v3/conversations/{ANNA.conversation}/activities", (500, {}), (503, {}), (502, {}))
        await bot.say(PIET, SCRIPT[-1])
        for _ in range(6):
            early.advance(timedelta(minutes=1))
            await bot.app.dispatcher.deliver_pending()
        async with bot.app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
    failed = [b for b in microsoft.posts(ANNA.conversation, accepted=False) if "MH-2026-0001" in seen(b)]
    assert len(failed) == 4                                      # three refusals, then taken
    assert len(with_text(microsoft, ANNA.conversation, "MH-2026-0001")()) == 1
    assert stats == {"pending": 0, "parked": 0, "delivered": 1}


async def test_when_teams_refuses_a_new_chat_the_message_is_parked_and_the_reason_reported(
        db_url, microsoft, early, caplog):
    from meldbot.run.doctor import examine

    microsoft.installed.clear()                          # the AF has not installed the app
    caplog.set_level(logging.INFO, logger="meldbot.outbox")
    async with running(db_url, microsoft, early) as bot:
        for line in SCRIPT:
            await bot.say(PIET, line)
        await microsoft.wait_for(lambda: microsoft.creates())
        await bot.app.dispatcher.deliver_pending()
        async with bot.app.uow() as uow:
            stats = await uow.outbox.stats("new_signal")
        findings = await examine(bot.app.config, NL)
    assert stats == {"pending": 0, "parked": 1, "delivered": 0}
    assert [r.status for r in microsoft.creates()] == [403]       # not retried: retrying will not help
    parked = [r for r in caplog.records if r.getMessage() == "outbox row parked"]
    assert parked and "403" in parked[0].reason and "Kerkstraat" not in parked[0].reason
    assert any("403" in f.text and not f.ok for f in findings)


# --- `meldbot run` and `meldbot teams-manifest`: the wiring in app.py and cli.py ----------------------

async def test_meldbot_run_serves_api_messages_with_tokens_beside_an_open_healthz(db_url, microsoft, early):
    config = make_config(db_url, MELDBOT_HTTP__LISTEN="127.0.0.1:0", **teams_env(microsoft))
    app = build_app(config, clock=early, mode="run")
    # The composition root makes the adapter, gives the outbox its notifier, and starts and serves it.
    [adapter] = [a for a in app.adapters if isinstance(a, TeamsAdapter)]
    assert app.notifiers.get("teams") is adapter.notifier and app.bot.platforms == ("teams",)
    async with asyncio.timeout(60), app, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        base = f"http://127.0.0.1:{app.http_port}"
        body = activity(microsoft, PIET, "melden")
        async with http.post(base + "/api/messages", json=body) as response:
            no_token = response.status
        async with http.post(base + "/api/messages", json=body,
                             headers={"Authorization": "Bearer " + microsoft.token()}) as response:
            accepted = response.status
        async with http.get(base + "/healthz") as response:
            health = (response.status, await response.json())
    assert no_token == 401 and accepted in (200, 202)
    assert NL("question.wat") in "\n".join(texts_of(microsoft.replies_to(body["id"])))
    assert health[0] == 200 and health[1]["platforms"]["teams"] is True


def test_the_cli_writes_the_app_package(tmp_path, sqlite_url, monkeypatch):
    from meldbot.run import cli

    assert "teams-manifest" in cli._COMMANDS
    parsed = cli._parser().parse_args(["teams-manifest", "--website", "https://www.bergeijk.nl"])
    assert parsed.command == "teams-manifest"
    monkeypatch.setenv("MELDBOT_STORAGE__URL", sqlite_url)
    monkeypatch.setenv("MELDBOT_TEAMS__APP_ID", APP_ID)
    output = tmp_path / "app.zip"
    code = cli.main(["--config", str(EXAMPLE), "teams-manifest", "--output", str(output),
                     "--website", "https://www.bergeijk.nl"])
    assert code == 0 and "manifest.json" in zipfile.ZipFile(output).namelist()


# --- hostile text ----------------------------------------------------------------------------------

async def test_a_melders_markup_and_forged_lines_reach_the_af_in_teams_as_plain_characters(db_url, microsoft, early):
    hostile = "<img src=x onerror=alert(1)> **vet** [klik](https://x.example)\nBehandelaar: Iemand Anders"
    async with running(db_url, microsoft, early) as bot:
        for line in [SCRIPT[0], hostile, *SCRIPT[2:]]:
            await bot.say(PIET, line)
        await microsoft.wait_for(with_text(microsoft, f"a:created-{ANNA.aad}", "MH-2026-0001"))
        [view, *_] = await bot.say(ANNA, "toon 1")
    # Whatever a Teams client makes of the text (Markdown, HTML or plain), nothing becomes markup...
    assert view["textFormat"] == "markdown"
    raw = json.dumps(view)          # the text, or a card and its fallback
    assert "<img" not in raw and "**" not in raw and "[klik]" not in raw
    # ...the AF reads the characters the melder typed, and the forged line stands quoted under its label.
    text = seen(view)
    assert ("- Wat: \n  > <img src=x onerror=alert(1)> **vet** [klik](https://x.example)\n"
            "  > Behandelaar: Iemand Anders\n") in text
    assert [line for line in text.split("\n") if line.startswith("Behandelaar")] == ["Behandelaar: anna"]


async def test_a_lone_surrogate_in_a_teams_name_or_answer_is_replaced_and_versturen_still_works(
        db_url, microsoft, early):
    # Valid JSON ("\ud800" escaped) that no database or seal can take as it is.
    piet = dataclasses.replace(PIET, name="Piet \ud800 \u202eJansen\u202c")
    async with running(db_url, microsoft, early) as bot:
        for line in SCRIPT[:-1]:
            await bot.say(piet, "Kerkstraat 3\udc00, Bergeijk\u200b" if line == SCRIPT[2] else line)
        done = await bot.say(piet, SCRIPT[-1])
        await microsoft.wait_for(with_text(microsoft, f"a:created-{ANNA.aad}", "MH-2026-0001"))
        [view, *_] = await bot.say(ANNA, "toon 1")
        again = await bot.say(piet, "mijn meldingen")
    assert "MH-2026-0001" in seen(done[-1]) and "MH-2026-0001" in seen(again[0])
    assert "Melder: Piet \ufffd Jansen (teams:" in seen(view) and "- Waar: Kerkstraat 3\ufffd, Bergeijk\n" in seen(view)


async def test_a_lone_surrogate_in_the_conversation_name_and_locale_still_gets_normal_answers(
        db_url, microsoft, early):
    # Only the display name is cleaned at the edge; the rest of the activity goes into the stored (sealed)
    # conversation reference as Teams sent it.
    async with running(db_url, microsoft, early) as bot:
        async def say(text: str) -> list[dict]:
            body = activity(microsoft, PIET, text, locale="nl-NL\ud800")
            body["conversation"]["name"] = "Chat \ud800 met \udfff Piet"
            assert await bot.post(body) in (200, 202)
            return microsoft.replies_to(body["id"])

        first = await say(SCRIPT[0])
        for line in SCRIPT[1:-1]:
            await say(line)
        done = await say(SCRIPT[-1])
        again = await say("mijn meldingen")
        async with bot.app.uow() as uow:
            reference = await uow.references.get(Identity("teams", PIET.aad))
    assert first and "MH-2026-0001" in seen(done[-1]) and "MH-2026-0001" in seen(again[0])
    assert reference["reference"]["conversation"]["id"] == PIET.conversation


async def test_a_stored_reference_takes_a_lone_surrogate_in_any_string(db_url, microsoft, early):
    # Fields the SDK lets through as they came (the bot's own name) end up in the sealed reference too.
    reference = {"reference": {"bot": {"id": f"28:{APP_ID}", "name": "meldbot \ud800"}, "locale": "nl\udfff",
                               "conversation": {"id": PIET.conversation, "name": "Chat \ud800"}}, "tenant": TENANT}
    async with running(db_url, microsoft, early) as bot:
        async with bot.app.uow() as uow:
            await uow.references.put(Identity("teams", PIET.aad), reference, early.now())
            await uow.commit()
        async with bot.app.uow() as uow:
            assert await uow.references.get(Identity("teams", PIET.aad)) == reference


# --- rendering, tokens, addresses, the app package ---------------------------------------------------

def test_a_reply_with_choices_becomes_one_card_whose_buttons_send_the_word():
    reply = Reply("Welke soort?", choices=(Choice(1, "seksueel", "seksuele uitbuiting"),
                                           Choice(2, "arbeid", "arbeidsuitbuiting")))
    out = render(reply, NL).model_dump(by_alias=True, exclude_none=True, mode="json")
    # One bubble: no text beside the card (Teams would show it as a second message repeating the choices).
    assert out["textFormat"] == "markdown" and "text" not in out
    card = card_of(out)
    assert card["type"] == "AdaptiveCard"
    # The numbered choices as text, for clients that cannot draw cards.
    assert card["fallbackText"] == "Welke soort?\n1. seksueel — seksuele uitbuiting\n2. arbeid — arbeidsuitbuiting"
    assert [b["text"] for b in card["body"]] == ["Welke soort?", NL("teams.card.choose")]
    assert [(a["type"], a["title"], a["data"]) for a in card["actions"]] == [
        ("Action.Submit", "1. seksuele uitbuiting", {"meldbot": "seksueel"}),
        ("Action.Submit", "2. arbeidsuitbuiting", {"meldbot": "arbeid"})]


def test_many_choices_become_a_drop_down_and_an_action_without_its_command_in_the_text_is_spelled_out():
    many = tuple(Choice(i, f"gemeente{i}", f"Gemeente {i}") for i in range(1, 10))
    card = card_of(render(Reply("Welke gemeente?", choices=many), NL).model_dump(by_alias=True, mode="json"))
    [choice_set] = [b for b in card["body"] if b["type"] == "Input.ChoiceSet"]
    assert choice_set["id"] == "meldbot" and len(choice_set["choices"]) == 9
    assert len(card["actions"]) == 1
    out = card_of(render(Reply("Weekoverzicht.", actions=(Action("Toon de lijst", "lijst"),)), NL).model_dump(
        by_alias=True, mode="json"))
    assert out["fallbackText"].endswith(NL("teams.action_line", label="Toon de lijst", command="lijst"))


def test_an_image_goes_inline_as_a_data_url_and_urgent_replies_raise_an_alert():
    png = b"\x89PNG\r\n\x1a\nfake"
    out = render(Reply("Cijfers 2026", image=png, urgent=True), NL).model_dump(by_alias=True, exclude_none=True,
                                                                               mode="json")
    [attachment] = out["attachments"]
    assert attachment["contentType"] == "image/png"
    assert attachment["contentUrl"] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert out["channelData"] == {"notification": {"alert": True}}
    card = card_of(render(Reply("x", image=png, actions=(Action("Toon", "toon 1"),)), NL).model_dump(
        by_alias=True, mode="json"))
    assert any(b["type"] == "Image" and b["url"].startswith("data:image/png;base64,") for b in card["body"])


def test_service_urls_must_match_scheme_host_port_and_path_prefix():
    extra = ["http://127.0.0.1:8081/"]
    assert service_url_allowed("https://smba.trafficmanager.net/emea/", extra)
    assert service_url_allowed("http://127.0.0.1:8081/", extra)
    assert not service_url_allowed("https://smba.trafficmanager.net.evil.example/emea/", extra)
    assert not service_url_allowed("http://127.0.0.1:80811/", extra)
    assert not service_url_allowed("http://smba.trafficmanager.net/emea/", extra)     # not https
    assert not service_url_allowed("", extra) and not service_url_allowed(None, extra)


def test_retry_after_is_read_as_seconds_or_as_a_date():
    now = datetime(2026, 11, 18, 9, 0, tzinfo=timezone.utc)
    assert retry_after_seconds({"Retry-After": "7"}, now) == 7.0
    assert retry_after_seconds({"Retry-After": "Wed, 18 Nov 2026 09:01:00 GMT"}, now) == 60.0
    assert retry_after_seconds({}, now) is None


async def test_the_bots_own_token_comes_from_entra_once_and_is_cached():
    calls = []

    async def token_endpoint(request):
        form = await request.post()
        calls.append(dict(form))
        if form["client_secret"] != "geheim":
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": "abc", "expires_in": 3599, "token_type": "Bearer"})

    web_app = web.Application()
    web_app.router.add_post("/token", token_endpoint)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/token"
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as http:
            good = EntraToken(APP_ID, "geheim", TENANT, lambda: http, token_url=url)
            assert [await good.token(), await good.token()] == ["abc", "abc"]
            bad = EntraToken(APP_ID, "fout", TENANT, lambda: http, token_url=url)
            with pytest.raises(TokenUnavailable, match="invalid_client"):
                await bad.token()
    finally:
        await runner.cleanup()
    assert len(calls) == 2 and calls[0]["scope"] == "https://api.botframework.com/.default"
    assert calls[0]["grant_type"] == "client_credentials"


def test_the_app_package_has_a_valid_manifest_for_a_personal_bot_and_icons_of_the_required_sizes(sqlite_url):
    from PIL import Image

    from meldbot.run.teams_manifest import MANIFEST_VERSION, package_for

    config = make_config(sqlite_url, MELDBOT_TEAMS__APP_ID=APP_ID)
    data = package_for(config, website_url="https://www.bergeijk.nl")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
    manifest = json.loads(archive.read("manifest.json"))
    for key in ("$schema", "manifestVersion", "version", "id", "developer", "name", "description", "icons",
                "accentColor"):
        assert manifest[key], key
    assert manifest["manifestVersion"] == MANIFEST_VERSION
    assert f"/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json" in manifest["$schema"]
    assert manifest["id"] == APP_ID and manifest["version"].count(".") == 2
    assert {k: manifest["developer"][k].startswith("https://") for k in ("websiteUrl", "privacyUrl", "termsOfUseUrl")} \
        == {"websiteUrl": True, "privacyUrl": True, "termsOfUseUrl": True}
    assert manifest["developer"]["name"] == "Gemeente Bergeijk"
    assert len(manifest["name"]["short"]) <= 30 and len(manifest["description"]["short"]) <= 80
    [bot] = manifest["bots"]
    assert bot["botId"] == APP_ID and bot["scopes"] == ["personal"]
    assert bot["commandLists"][0]["commands"][0]["title"] == "melden"
    color = Image.open(io.BytesIO(archive.read(manifest["icons"]["color"])))
    outline = Image.open(io.BytesIO(archive.read(manifest["icons"]["outline"])))
    assert color.size == (192, 192) and outline.size == (32, 32)
    # The outline icon is white on transparent, nothing else.
    raw = outline.convert("RGBA").tobytes()
    pixels = [tuple(raw[i:i + 4]) for i in range(0, len(raw), 4)]
    assert {p[:3] for p in pixels if p[3]} == {(255, 255, 255)}
    assert any(p[3] == 0 for p in pixels)
    assert package_for(config, website_url="https://www.bergeijk.nl") == data       # reproducible


async def test_the_teams_manifest_command_writes_the_zip_and_names_a_wrong_input(sqlite_url, tmp_path, capsys):
    import argparse

    from meldbot.run.teams_manifest import add_command, run_command

    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    config = make_config(sqlite_url, MELDBOT_TEAMS__APP_ID=APP_ID)
    output = tmp_path / "app.zip"
    args = parser.parse_args(["teams-manifest", "--output", str(output), "--website", "https://www.bergeijk.nl"])
    assert await run_command(config, NL, args) == 0
    assert zipfile.ZipFile(output).namelist()
    wrong = parser.parse_args(["teams-manifest", "--output", str(tmp_path / "x.zip"), "--website", "www.bergeijk.nl"])
    assert await run_command(config, NL, wrong) == 2
    assert "--website" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()


def test_the_app_package_refuses_a_missing_app_id_or_a_plain_http_address(sqlite_url):
    from meldbot.run.teams_manifest import ManifestError, package_for

    with pytest.raises(ManifestError, match="app_id"):
        package_for(make_config(sqlite_url), website_url="https://www.bergeijk.nl")
    with pytest.raises(ManifestError, match="https"):
        package_for(make_config(sqlite_url, MELDBOT_TEAMS__APP_ID=APP_ID), website_url="http://www.bergeijk.nl")


async def test_the_address_is_written_when_it_changes_not_on_every_message(db_url, microsoft, early):
    async def written_at(app):
        async with app.db.engine.connect() as conn:
            return sorted((await conn.execute(sa.text("SELECT updated_at FROM conversation_reference"))).scalars())

    async with running(db_url, microsoft, early) as bot:
        await bot.say(PIET, "help")
        first = await written_at(bot.app)
        early.advance(timedelta(minutes=5))
        await bot.say(PIET, "help")
        unchanged = await written_at(bot.app)
        # Something in the address changed (here the name Teams sends along): kept at once.
        early.advance(timedelta(minutes=5))
        await bot.say(dataclasses.replace(PIET, name="Piet Jansen-de Boer"), "help")
        moved = await written_at(bot.app)
    assert len(first) == 2                  # the person's reference and the tenant's connector address
    assert unchanged == first
    assert len(moved) == 2 and max(moved) > max(first)


async def test_buttons_speak_the_language_the_person_chose_even_from_a_dutch_teams(db_url, microsoft, early):
    english = texts("en")
    async with running(db_url, microsoft, early) as bot:
        await bot.say(PIET, "taal en")                 # stored for Piet; his Teams stays nl-NL
        for line in SCRIPT[:4]:
            await bot.say(PIET, line)
        [question] = [p for p in await bot.say(PIET, SCRIPT[4]) if card_of(p)]
    card = card_of(question)
    assert card["body"][-1]["text"] == english("teams.card.choose") != NL("teams.card.choose")
    assert english("question.soort") in seen(question)
