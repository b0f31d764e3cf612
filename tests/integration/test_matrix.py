"""The Matrix adapter against a real Synapse, with real end-to-end encryption on every side."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from meldbot.adapters.matrix import ENCRYPTION_STATE, MatrixAdapter
from meldbot.adapters.matrix.render import render
from meldbot.core.messaging import Choice, DeliveryError, Identity, RecipientAway, Reply
from tests.support import EXAMPLE, ROOT
from tests.support.matrix import (PASSWORD, SCRIPT, WAIT, Bot, Person, World, needs_synapse, until,
                                  wednesday)


# --- rendering (no homeserver needed) -------------------------------------------------------------------

INJECTION = ('<a href="https://evil.example/x">klik</a> <img src=x onerror="alert(1)"> '
             '<script>alert(2)</script> <b onclick="x()">vet</b> @room @ROOM')


def test_rendering_escapes_markup_and_neutralises_room_pings():
    content = render(Reply(f"Wat: {INJECTION}\nregel twee", choices=(Choice(1, "nee", "<i>nee</i>"),)))
    html = content["formatted_body"]
    for tag in ("<a", "<img", "<script", "<b ", "<i>"):
        assert tag not in html
    assert "&lt;script&gt;" in html and "<br>" in html and "<ol" in html
    assert "@room" not in content["body"].lower() and "@room" not in html.lower()
    assert content["m.mentions"] == {}
    assert "1. nee — <i>nee</i>" in content["body"]  # the plain body is plain text: nothing to escape


def test_choices_with_gaps_keep_their_numbers():
    content = render(Reply("Kies", choices=(Choice(1, "a", "A"), Choice(3, "c", "C"))))
    assert "3. c — C" in content["body"] and "<ol" not in content["formatted_body"]
    assert "3. <strong>c</strong>" in content["formatted_body"]


def test_a_reply_counts_only_its_new_text():
    from meldbot.adapters.matrix import without_reply_fallback as _without_reply_fallback

    quoted = "> <@af:localhost> Wat zag of hoorde je?\n> (vraag 1)\n\nDrie mannen in een busje"
    assert _without_reply_fallback(quoted, {"m.in_reply_to": {"event_id": "$x"}}) == "Drie mannen in een busje"
    assert _without_reply_fallback("> geen citaat", {}) == "> geen citaat"


# --- a Synapse for this module --------------------------------------------------------------------------

async def report(employee: Person, room_id: str, bot_id: str, script=SCRIPT) -> list[str]:
    answers = []
    for line in script:
        answers = await employee.ask(room_id, line, bot_id)
    await employee.message_containing("MH-2026-", bot_id)
    return answers


# --- the whole route over Matrix -----------------------------------------------------------------------

@needs_synapse
async def test_an_employee_reports_in_an_encrypted_dm_and_the_af_handles_it(world):
    from nio import RoomEncryptedImage
    from nio.crypto import decrypt_attachment

    async with Bot(world.config(), clock=wednesday()) as bot:
        employee = await world.person(world.employee_id)
        af = await world.person(world.af_id)
        room = await employee.open_direct(world.bot_id)
        await report(employee, room, world.bot_id)

        # The AF is told in a direct chat the bot opened: invited as direct, encrypted from the start.
        af_room, notice = await af.message_containing("MH-2026-0001", world.bot_id)
        assert notice.decrypted and "paspoorten" not in notice.body
        assert af.invites and af.invites[0].content.get("is_direct") is True
        assert af.client.rooms[af_room].encrypted and set(af.client.rooms[af_room].users) == {world.af_id,
                                                                                              world.bot_id}
        direct = await bot.adapter.client.list_direct_rooms()
        assert af_room in direct.rooms[world.af_id]

        shown = await af.ask(af_room, "toon 1", world.bot_id)
        assert any("paspoorten" in body for body in shown)
        forwarded = await af.ask(af_room, "doorzetten 1 politie", world.bot_id)
        assert any("MH-2026-0001" in body for body in forwarded)
        await af.ask(af_room, "terugkoppelen 1 Dank je, we hebben het doorgegeven aan de politie.", world.bot_id)

        # The melder hears it privately, decrypted, in the chat they opened themselves.
        melder_room, feedback = await employee.message_containing("we hebben het doorgegeven", world.bot_id)
        assert melder_room == room and feedback.decrypted

        # The monitoring chart arrives as an encrypted image the AF's device can open.
        event_id = await af.say(af_room, "rapport")
        await until(lambda: any(isinstance(e, RoomEncryptedImage) for e in af.after(af_room, event_id, world.bot_id)),
                    "the chart")
        image = next(e for e in af.after(af_room, event_id, world.bot_id) if isinstance(e, RoomEncryptedImage))
        download = await af.client.download(image.url)
        png = decrypt_attachment(download.body, image.key["k"], image.hashes["sha256"], image.iv)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


@needs_synapse
async def test_in_a_group_room_the_bot_only_points_to_a_dm_and_stores_nothing(world):
    from nio import RoomPreset

    async with Bot(world.config(), clock=wednesday()):
        employee = await world.person(world.employee_id)
        colleague = await world.person(world.colleague_id)
        response = await employee.client.room_create(preset=RoomPreset.private_chat, name="Team toezicht",
                                                     invite=[world.bot_id, world.colleague_id],
                                                     initial_state=[ENCRYPTION_STATE])
        room = response.room_id
        await until(lambda: room in employee.client.rooms and all(
            u in employee.client.rooms[room].users and not employee.client.rooms[room].users[u].invited
            for u in (world.bot_id, world.colleague_id)), "everyone joined")
        answers = await employee.ask(room, "melden", world.bot_id)
        assert "privégesprek" in answers[0]
        last = await employee.say(room, "Een man houdt de paspoorten van zes vrouwen")
        await colleague.say(room, "Zullen we dat niet hier bespreken?")
        # A room's messages are handled in order and an edit is always answered: once that answer is
        # here, the two lines before it were handled too, and got no pointer of their own.
        edit = await employee.client.room_send(room, "m.room.message", {
            "msgtype": "m.text", "body": "* Een man", "m.new_content": {"msgtype": "m.text", "body": "Een man"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": last}}, ignore_unverified_devices=True)
        await until(lambda: employee.after(room, edit.event_id, world.bot_id), "the answer to the edit")
        after_last = [e.body for e in employee.after(room, last, world.bot_id)]
        assert len(after_last) == 1 and "aangepast" in after_last[0], after_last  # one pointer, not one per line
    for table in ("conversation", "processed_event", "person", "signal", "melder", "audit"):
        assert await world.count(table) == 0, table
    assert await world.count("outbox WHERE kind != 'overview'") == 0  # the weekly overview goes out at start


@needs_synapse
async def test_a_slow_turn_does_not_hold_up_anyone_else(world):
    employee = await world.person(world.employee_id)
    colleague = await world.person(world.colleague_id)
    async with Bot(world.config(), clock=wednesday()) as bot:
        handle, release = bot.app.bot.handle, asyncio.Event()

        async def slow(msg):
            if msg.text == "traag":
                await asyncio.wait_for(release.wait(), WAIT)
            return await handle(msg)

        bot.app.bot.handle = slow
        slow_room = await employee.open_direct(world.bot_id)
        quick_room = await colleague.open_direct(world.bot_id)
        stuck = await employee.say(slow_room, "traag")
        answers = await colleague.ask(quick_room, "help", world.bot_id)  # answered while the other turn hangs
        assert "Dit kan ik" in answers[0] and employee.after(slow_room, stuck, world.bot_id) == []
        release.set()
        await until(lambda: employee.after(slow_room, stuck, world.bot_id), "the slow answer")


@needs_synapse
async def test_a_restart_between_two_questions_continues_the_dialog_and_replays_nothing(world):
    config = world.config()
    async with Bot(config, clock=wednesday()) as bot:
        employee = await world.person(world.employee_id)
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, "melden", world.bot_id)
        await employee.ask(room, SCRIPT[1], world.bot_id)
        device = bot.adapter.device_id
    # Written while the bot is away: must be answered once after the restart, and nothing before it.
    waar = await employee.say(room, SCRIPT[2])
    before = len(employee.after(room, None, world.bot_id))
    async with Bot(config, clock=wednesday()) as bot:
        assert bot.adapter.device_id == device  # the same device, from the store
        await until(lambda: len(employee.after(room, waar, world.bot_id)) >= 1, "answer after restart")
        assert "Wanneer" in employee.after(room, waar, world.bot_id)[0].body
        answers = await employee.ask(room, SCRIPT[3], world.bot_id)
        assert "Wie" in answers[0]
        # The answer to one more line comes after anything replayed or repeated before it.
        await employee.ask(room, SCRIPT[4], world.bot_id)
    assert len(employee.after(room, None, world.bot_id)) == before + 3
    async with Bot(config, clock=wednesday()) as bot:
        async with bot.app.uow() as uow:
            state, _ = await uow.conversations.load("matrix", room)
    assert state["draft"]["answers"]["waar"] == SCRIPT[2]


@needs_synapse
async def test_more_messages_than_a_sync_shows_while_the_bot_is_away_are_all_answered_in_order(world, caplog):
    caplog.set_level(logging.INFO, logger="meldbot.matrix")
    employee = await world.person(world.employee_id)
    async with Bot(world.config(), clock=wednesday()):
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, "help", world.bot_id)
    lines = ["melden", "Een busje met twaalf mensen", "Molenweg 8", "vanochtend", "onbekend", "help", "arbeid"]
    sent = [await employee.say(room, line) for line in lines]
    bot = Bot(world.config(), clock=wednesday())
    bot.adapter.timeline_limit = 3  # the restart sync shows the last 3: the first 4 must come from the gap
    async with bot:
        # All replies come after the last line (nothing was answered while the bot was away).
        await until(lambda: any("In welk werk kwam je het tegen" in e.body
                                for e in employee.after(room, sent[-1], world.bot_id)), "the last question")
        async with bot.app.uow() as uow:
            state, _ = await uow.conversations.load("matrix", room)
    assert state["draft"]["answers"]["wat"] == lines[1] and state["draft"]["answers"]["soort"] == "arbeid"
    assert state["draft"]["answers"]["wie"] == "onbekend"
    assert any(r.getMessage() == "matrix timeline gap fetched" and r.events >= 4 for r in caplog.records)
    questions = [e.body for e in employee.after(room, sent[-1], world.bot_id) if e.body.startswith("Vraag")]
    assert [q.split("\n")[0] for q in questions] == [f"Vraag {n} van 7" for n in (1, 2, 3, 4, 5, 5, 6)]


@needs_synapse
async def test_markup_in_a_report_arrives_at_the_af_inert(world):
    async with Bot(world.config(), clock=wednesday()):
        employee = await world.person(world.employee_id)
        af = await world.person(world.af_id)
        room = await employee.open_direct(world.bot_id)
        script = list(SCRIPT)
        script[1] = f"Zag dit: {INJECTION}"
        script[4] = "<img src=x onerror=alert(3)> @room"
        await report(employee, room, world.bot_id, script)
        af_room, _ = await af.message_containing("MH-2026-0001", world.bot_id)
        event_id = await af.say(af_room, "toon 1")
        await until(lambda: any("evil.example" in e.body for e in af.after(af_room, event_id, world.bot_id)),
                    "the signal")
        shown = next(e for e in af.after(af_room, event_id, world.bot_id) if "evil.example" in e.body)
    content = shown.source["content"]
    html = content["formatted_body"]
    for tag in ("<a", "<img", "<script", "<b "):
        assert tag not in html
    assert "&lt;script&gt;" in html and "&lt;img" in html
    assert "@room" not in content["body"].lower() and "@room" not in html.lower()
    assert content["m.mentions"] == {}


@needs_synapse
async def test_an_undecryptable_message_asks_to_resend_and_is_logged_without_content(world, caplog):
    caplog.set_level(logging.INFO, logger="meldbot.matrix")
    async with Bot(world.config(), clock=wednesday()) as bot:
        bot.adapter.inbound.key_wait = 2  # the key never comes: nio sends no withheld notice
        employee = await world.person(world.employee_id)
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, "help", world.bot_id)
        # The employee's device stops sharing keys with the bot: the next message is unreadable for it.
        bot_device = employee.client.device_store[world.bot_id][bot.adapter.device_id]
        employee.client.blacklist_device(bot_device)
        employee.client.olm.outbound_group_sessions.pop(room, None)
        answers = await employee.ask(room, "Geheim: Kerkstraat 12a", world.bot_id)
        assert "niet lezen" in answers[0] and "nog een keer" in answers[0]
        employee.client.unblacklist_device(bot_device)
        employee.client.olm.outbound_group_sessions.pop(room, None)
        event_id = await employee.say(room, "melden")
        await until(lambda: any("Wat zag of hoorde je?" in e.body
                                for e in employee.after(room, event_id, world.bot_id)), "the first question")
        # A picture is never stored: the bot asks to describe it in words. Also when the message is
        # malformed (an E2EE client must send `file`, not `url`).
        for photo in ({"msgtype": "m.image", "body": "foto.jpg", "file": {
                           "url": "mxc://localhost/nietbewaard", "v": "v2", "iv": "AAAAAAAAAAAAAAAAAAAAAA",
                           "hashes": {"sha256": "x"}, "key": {"kty": "oct", "alg": "A256CTR", "ext": True,
                                                              "k": "x", "key_ops": ["decrypt"]}}},
                      {"msgtype": "m.image", "body": "foto.jpg", "url": "mxc://localhost/nietbewaard"}):
            sent = await employee.client.room_send(room, "m.room.message", photo, ignore_unverified_devices=True)
            await until(lambda sent=sent: employee.after(room, sent.event_id, world.bot_id), "the answer to the photo")
            assert "bewaar ik niet" in employee.after(room, sent.event_id, world.bot_id)[0].body
        # An edit is not taken as the answer to whatever question comes next.
        edit = await employee.client.room_send(room, "m.room.message", {
            "msgtype": "m.text", "body": "* Kerkstraat 14",
            "m.new_content": {"msgtype": "m.text", "body": "Kerkstraat 14"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}}, ignore_unverified_devices=True)
        await until(lambda: employee.after(room, edit.event_id, world.bot_id), "the answer to the edit")
        assert "aangepast" in employee.after(room, edit.event_id, world.bot_id)[0].body
    records = [r for r in caplog.records if r.name == "meldbot.matrix" and "decrypted" in r.getMessage()]
    assert records and records[0].reason == "no key in time"
    assert bot.adapter.inbound.counts.unreadable == 1 and bot.adapter.inbound.counts.late == 0
    metrics = bot.app.metrics.render().decode()
    assert "meldbot_matrix_undecryptable_total 1.0" in metrics
    assert json.loads((world.folder / "bot-store" / "status.json").read_text())["undecryptable"] == 1
    assert "Kerkstraat" not in caplog.text and "Geheim" not in caplog.text
    assert world.employee_id not in caplog.text and room not in caplog.text


@needs_synapse
async def test_a_message_whose_room_key_comes_late_is_handled_once_when_the_key_arrives(world):
    from nio import ToDeviceMessage

    async with Bot(world.config(), clock=wednesday()) as bot:
        bot.adapter.inbound.key_wait = WAIT
        employee = await world.person(world.employee_id)
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, "help", world.bot_id)  # an Olm session between the two devices now exists
        olm, bot_device = employee.client.olm, employee.client.device_store[world.bot_id][bot.adapter.device_id]
        # A new room key that the bot's device does not get with the message...
        olm.outbound_group_sessions.pop(room, None)
        employee.client.blacklist_device(bot_device)
        olm.create_outbound_group_session(room)
        session = olm.outbound_group_sessions[room]
        key = {"algorithm": "m.megolm.v1.aes-sha2", "room_id": room, "session_id": session.id,
               "session_key": session.session_key}
        event_id = await employee.say(room, "melden")
        await until(lambda: bot.adapter.inbound.counts.waiting == 1, "the bot waiting for the key")
        assert not employee.after(room, event_id, world.bot_id)
        # ...but a moment later, as a to-device message of its own (as a slow or offline sender's would).
        encrypted = olm._olm_encrypt(olm.session_store.get(bot_device.curve25519), bot_device, "m.room_key", key)
        await employee.client.to_device(ToDeviceMessage("m.room.encrypted", world.bot_id, bot_device.id, encrypted))
        await until(lambda: employee.after(room, event_id, world.bot_id), "the answer once the key came")
        employee.client.unblacklist_device(bot_device)
        olm.outbound_group_sessions.pop(room, None)
        answers = await employee.ask(room, "Drie mannen in een busje", world.bot_id)
        assert "Waar" in answers[0]
        bodies = [getattr(e, "body", "") for e in employee.after(room, event_id, world.bot_id)]
        assert sum("Wat zag of hoorde je?" in b for b in bodies) == 1
        assert not any("niet lezen" in b for b in bodies)
        counts = bot.adapter.inbound.counts
        assert (counts.late, counts.unreadable, counts.waiting) == (1, 0, 0)
        assert "meldbot_matrix_decrypted_late_total 1.0" in bot.app.metrics.render().decode()


@needs_synapse
async def test_a_new_device_on_the_af_account_alerts_the_af(world, caplog):
    caplog.set_level(logging.INFO, logger="meldbot.matrix")
    af = await world.person(world.af_id)
    async with Bot(world.config(), clock=wednesday()) as bot:
        await bot.adapter.notifier.send(Identity("matrix", world.af_id), Reply("Goedemorgen"), "hello-1")
        await af.message_containing("Goedemorgen", world.bot_id)
        assert not [r for r in caplog.records if r.getMessage().startswith("new device")]
        laptop = await world.person(world.af_id, device="laptop")
        _, alert = await af.message_containing(laptop.client.device_id, world.bot_id)
        assert "nieuw apparaat" in alert.body
        # A fresh room key after the device list changed: the new device reads what comes next.
        await laptop.message_containing(laptop.client.device_id, world.bot_id)
        # The alert went through the outbox, once, although a restart would look at the devices again.
        await bot.adapter.trust._evaluate(world.af_id)
        assert await world.count("outbox WHERE kind = 'platform_alert'") == 1
        alerts = [e for _, e in af.events if laptop.client.device_id in getattr(e, "body", "")]
        assert len(alerts) == 1
        async with bot.app.uow() as uow:
            state = await uow.matrix_trust.get(world.bot_id, world.af_id)
        assert sorted(state["devices"]) == sorted([af.client.device_id, laptop.client.device_id])
    assert any(r.getMessage().startswith("new device on an AF account") and r.levelno == logging.WARNING
               for r in caplog.records)
    assert laptop.client.device_id not in caplog.text and world.af_id not in caplog.text


@needs_synapse
async def test_with_the_signed_policy_an_af_without_a_confirmed_identity_gets_only_the_reason(world):
    phone = await world.person(world.af_id)  # a nio client: no cross-signing identity at all
    async with Bot(world.config(MELDBOT_MATRIX__AF_DEVICE_POLICY="signed"), clock=wednesday()) as bot:
        notifier, to_af = bot.adapter.notifier, Identity("matrix", world.af_id)
        with pytest.raises(RecipientAway):  # nothing with content until an administrator confirmed the AF
            await notifier.send(to_af, Reply("Nog niet"), "early")
        # The AF learns why, on every device (the alert holds no content).
        _, alert = await phone.message_containing("nog niet bevestigd", world.bot_id)
        assert "beheerder" in alert.body
        assert not phone._find("Nog niet", world.bot_id)


@needs_synapse
async def test_first_login_by_access_token_keeps_that_device_and_a_wrong_password_is_refused(world):
    from nio import AsyncClient

    from meldbot.adapters.matrix import MatrixLoginError

    wrong = MatrixAdapter(world.config(MELDBOT_MATRIX__PASSWORD="fout", MELDBOT_MATRIX__STORE_PATH=str(
        world.folder / "wrong-store")))
    with pytest.raises(MatrixLoginError):
        await wrong.start()
    await wrong.stop()

    login = AsyncClient(world.synapse.url, world.bot_id)
    token = await login.login(PASSWORD, device_name="meldbot-token")
    await login.close()
    config = world.config(MELDBOT_MATRIX__PASSWORD="", MELDBOT_MATRIX__ACCESS_TOKEN=token.access_token)
    async with Bot(config, clock=wednesday()) as bot:
        assert bot.adapter.device_id == token.device_id
    saved = json.loads((world.folder / "bot-store" / "credentials.json").read_text())
    assert saved["device_id"] == token.device_id
    assert (world.folder / "bot-store" / "credentials.json").stat().st_mode & 0o077 == 0
    async with Bot(world.config(MELDBOT_MATRIX__ACCESS_TOKEN="", MELDBOT_MATRIX__PASSWORD="x"),
                   clock=wednesday()) as bot:
        assert bot.adapter.device_id == token.device_id  # the store, not the configured secret, is the device


@needs_synapse
async def test_invites_from_other_servers_are_declined(world):
    config = world.config(MELDBOT_MELDPUNT__0__MATRIX_DOMAINS="bergeijk.nl")
    async with Bot(config, clock=wednesday()):
        employee = await world.person(world.employee_id)
        response = await employee.client.room_create(is_direct=True, invite=[world.bot_id],
                                                     initial_state=[ENCRYPTION_STATE])
        room = response.room_id
        await until(lambda: room in employee.client.rooms and world.bot_id not in employee.client.rooms[room].users,
                    "invite declined")
        # The AF is always welcome, whatever server they are on.
        af = await world.person(world.af_id)
        af_room = await af.open_direct(world.bot_id)
        assert af_room


# --- delivery: rate limits, unknown users, a homeserver that goes away ---------------------------------

class LimitingProxy:
    """Between the bot and Synapse: answers the next message sends with 429 M_LIMIT_EXCEEDED."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.limit_next = 0
        self.retry_after_ms = 0
        self.limited = 0

    async def start(self) -> str:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # long polls may hang
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def _forward(self, request):
        from aiohttp import web

        if request.method == "PUT" and "/send/" in request.path and self.limit_next:
            self.limit_next -= 1
            self.limited += 1
            return web.json_response({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests",
                                      "retry_after_ms": self.retry_after_ms}, status=429)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read()) as upstream:
            body = await upstream.read()
            return web.Response(body=body, status=upstream.status,
                                headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")})

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()


@needs_synapse
async def test_rate_limits_are_waited_out_or_handed_back_and_unknown_users_are_permanent(world):
    proxy = LimitingProxy(world.synapse.url)
    url = await proxy.start()
    try:
        async with Bot(world.config(homeserver=url), clock=wednesday()) as bot:
            notifier, to_af = bot.adapter.notifier, Identity("matrix", world.af_id)
            with pytest.raises(RecipientAway):  # signed in nowhere yet: nobody could read it, so it waits
                await notifier.send(to_af, Reply("Eerste bericht"), "first")
            af = await world.person(world.af_id)
            # The weekly overview, queued at start, waited in the outbox for the same reason and is
            # woken as soon as the AF's first device shows up.
            await af.message_containing("Weekoverzicht", world.bot_id)
            await notifier.send(to_af, Reply("Eerste bericht"), "first")
            await af.message_containing("Eerste bericht", world.bot_id)

            proxy.limit_next, proxy.retry_after_ms = 1, 400  # short: waited out inside the send
            started = time.monotonic()
            await notifier.send(to_af, Reply("Tweede bericht"), "second")
            assert time.monotonic() - started >= 0.4 and proxy.limited == 1

            proxy.limit_next, proxy.retry_after_ms = 1, 60_000  # long: back to the outbox, which retries
            started = time.monotonic()
            with pytest.raises(DeliveryError) as caught:
                await notifier.send(to_af, Reply("Derde bericht"), "third")
            assert not caught.value.permanent and "60000" in caught.value.reason
            assert time.monotonic() - started < 5
            await notifier.send(to_af, Reply("Derde bericht"), "third")
            await notifier.send(to_af, Reply("Derde bericht"), "third")  # a redelivery: shown once

            with pytest.raises(DeliveryError) as caught:
                await notifier.send(Identity("matrix", "@niemand:localhost"), Reply("x"), "nobody")
            assert caught.value.permanent

            # A last message, sent after all the others: a repeat of one of them would show before it.
            await notifier.send(to_af, Reply("Vierde bericht"), "fourth")
            await af.message_containing("Vierde bericht", world.bot_id)
            bodies = [getattr(e, "body", "") for _, e in af.events if e.sender == world.bot_id]
            assert [b for b in bodies if "bericht" in b] == ["Eerste bericht", "Tweede bericht", "Derde bericht",
                                                             "Vierde bericht"]
    finally:
        await proxy.stop()


# --- kill -9 in the middle of a turn ----------------------------------------------------------------------

class BotProcess:
    """The bot as its own process: the test hook bot_process in tests/support/matrix.py (paused=True), or the
    real `meldbot run`."""

    def __init__(self, world: World, paused: bool = False, **env: str) -> None:
        self.world, self.paused, self.env = world, paused, env
        self.marker = world.folder / "marker"
        self.log_path = world.folder / "bot-process.log"

    async def __aenter__(self) -> "BotProcess":
        ready = self.marker.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        self.marker.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
        env.update(self.world.environment(), PYTHONPATH=str(ROOT), MELDBOT_CONFIG=str(EXAMPLE),
                   MELDBOT_TEST_MARKER=str(self.marker), **self.env)
        command = (["-c", "from tests.support.matrix import bot_process; bot_process()"] if self.paused
                   else ["-m", "meldbot", "run"])
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, *command], cwd=self.world.folder, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)

        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the bot process ended: {self.log_path.read_text()[-2000:]}")
            return ready.exists() if self.paused else "meldbot draait" in self.log_path.read_text()

        await until(started, "the bot process to start")
        return self

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()

    async def stop(self) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        await until(lambda: self.process.poll() is not None, "the bot process to stop")
        self.log.close()
        return self.process.returncode

    async def __aexit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.kill()


@needs_synapse
@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
async def test_a_bot_killed_mid_turn_handles_the_message_exactly_once_after_restart(world, when):
    employee = await world.person(world.employee_id)
    wat = SCRIPT[1]
    async with BotProcess(world, paused=True, MELDBOT_TEST_PAUSE_TEXT=wat, MELDBOT_TEST_PAUSE_WHEN=when) as bot:
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, "melden", world.bot_id)
        event_id = await employee.say(room, wat)
        before = len(employee.after(room, None, world.bot_id))
        await until(bot.marker.exists, "the bot to reach the kill point")
        bot.kill()
    assert employee.after(room, event_id, world.bot_id) == []
    async with BotProcess(world) as bot:  # restarted as in production: `meldbot run`
        await until(lambda: employee.after(room, event_id, world.bot_id), "the answer after the restart")
        answers = await employee.ask(room, SCRIPT[2], world.bot_id)
        assert "Wanneer" in answers[0]
        # The answer to one more line comes after anything replayed or repeated before it.
        await employee.ask(room, SCRIPT[3], world.bot_id)
        assert await bot.stop() == 0 and "meldbot is gestopt" in bot.log_path.read_text()
    after_wat = [e.body for e in employee.after(room, event_id, world.bot_id)]
    assert len(after_wat) == 3 and "Waar" in after_wat[0], after_wat  # once each for wat, waar and wanneer
    assert len(employee.after(room, None, world.bot_id)) == before + 3  # `melden` was not answered again
    assert await world.count("signal") == 0 and await world.count("processed_event") == 4


# --- last: stops the module's homeserver -----------------------------------------------------------------

@needs_synapse
async def test_a_notification_due_while_the_homeserver_is_down_is_delivered_once_when_it_returns(world):
    clock = wednesday()
    employee = await world.person(world.employee_id)
    af = await world.person(world.af_id)
    async with Bot(world.config(), clock=clock) as bot:
        room = await employee.open_direct(world.bot_id)
        await report(employee, room, world.bot_id)
        af_room, _ = await af.message_containing("MH-2026-0001", world.bot_id)
        world.synapse.stop()
        try:
            clock.advance(timedelta(days=1, minutes=5))  # Thursday: nobody picked it up, a reminder is due
            assert await bot.app.send_reminders() == 1
            await bot.app.dispatcher.deliver_pending()
            async with bot.app.uow() as uow:
                stats = await uow.outbox.stats()
            assert stats.get("pending", 0) + stats.get("retry", 0) >= 1, stats
        finally:
            world.synapse.start()
        clock.advance(timedelta(minutes=1))
        await until(lambda: len([e for e in af.after(af_room, None, world.bot_id)
                                 if "MH-2026-0001" in getattr(e, "body", "")]) >= 2, "the reminder")
        await bot.app.dispatcher.deliver_pending()
        # A last message in the same room after that: a second copy of either would show before it.
        await bot.adapter.notifier.send(Identity("matrix", world.af_id), Reply("Einde van de test"), "end-marker")
        await until(lambda: any("Einde van de test" in getattr(e, "body", "")
                                for e in af.after(af_room, None, world.bot_id)), "the last message")
        bodies = [getattr(e, "body", "") for e in af.after(af_room, None, world.bot_id)]
        assert len([b for b in bodies if "MH-2026-0001" in b]) == 2, bodies  # the notification, the reminder
