"""meldbot with Element's own crypto stack as the other side: employees and AFs on a current Element.

Element (Web, Desktop, X) uses the Rust matrix-sdk-crypto; tests/support/element.py drives the same stack through
npm's matrix-js-sdk. Every user bootstraps cross-signing as Element does at first login. In "signed" mode
(Element's "exclude insecure devices") a bot device that is not cross-signed gets no room keys and its
messages do not decrypt; in "all" mode they carry a red shield. These tests show neither happens.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
from pathlib import Path

import pytest

from meldbot.core import logs
from meldbot.core.messaging import Identity, RecipientAway, Reply
from tests.support.element import WAIT, ElementClient
from tests.support import EXAMPLE
from tests.support.matrix import PASSWORD, SCRIPT, Bot, World, needs_synapse, wednesday
from tests.support.chat import migrated

pytestmark = pytest.mark.slow


@pytest.fixture
async def world(synapse, tmp_path):
    world = World(synapse, tmp_path)
    await migrated(world.db_url)
    clients: list[ElementClient] = []

    async def element(user_id: str, isolation: str = "signed", device: str = "Element", **options) -> ElementClient:
        client = ElementClient(tmp_path / f"element-{len(clients)}.log", name=f"{user_id}/{device}")
        clients.append(client)
        return await client.start(synapse.url, user_id, PASSWORD, device_name=device, isolation=isolation, **options)

    world.element = element
    yield world
    for client in clients:
        await client.stop()
    await world.close()


def from_bot(client: ElementClient, bot_id: str, part: str):
    return lambda: next((m for m in client.messages(sender=bot_id) if m.body and part in m.body), None)


def assert_clean(client: ElementClient, bot_id: str) -> int:
    """Every message of the bot decrypted and without a shield; returns how many there were."""
    messages = client.messages(sender=bot_id)
    bad = [m.summary() for m in messages if not m.decrypted or m.shield]
    assert not bad, bad
    return len(messages)


@needs_synapse
@pytest.mark.parametrize("isolation", ["signed", "all"])
async def test_element_users_report_and_handle_a_signal_with_every_message_readable_and_no_shield(world, isolation):
    # meldbot's own log set-up, as `meldbot run` makes it, at its most talkative level.
    log_stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("meldbot").level)
    logs.setup(level="DEBUG", json_lines=True, stream=log_stream)
    try:
        # Both sign in (and set up cross-signing, as Element does at first login) before the bot starts: this
        # test is about Element once it is set up. The window while the AF's Element sets itself up, with AF
        # content waiting, has tests of its own: the first message unreadable (fixed, see
        # test_an_af_signing_in_on_element_while_af_content_waits_reads_the_first_message) and the AF
        # notification later than 30 s (fixed: meldbot.adapters.matrix.common.keys_query, the quick looks in
        # trust.py). Still open there, seen once in 12 rounds under load in "signed" mode: Element tries the
        # first message before it has downloaded the bot's device (UNKNOWN_SENDER_DEVICE) and does not try again.
        employee = await world.element(world.employee_id, isolation)
        af = await world.element(world.af_id, isolation)
        async with Bot(world.config(), clock=wednesday()) as bot:
            room = await employee.open_direct(world.bot_id)
            for line in SCRIPT:
                answers = await employee.ask(room, line, world.bot_id)
                assert all(m.decrypted for m in answers), [m.summary() for m in answers]
            await employee.wait_for(from_bot(employee, world.bot_id, "MH-2026-0001"), "the reference number")

            notice = await af.wait_for(from_bot(af, world.bot_id, "MH-2026-0001"), "the AF notification")
            assert "paspoorten" not in notice.body
            shown = await af.ask(notice.room_id, "toon 1", world.bot_id)
            assert any(m.body and "paspoorten" in m.body for m in shown), [m.summary() for m in shown]
            await af.ask(notice.room_id, "doorzetten 1 politie", world.bot_id)
            await af.ask(notice.room_id, "terugkoppelen 1 Dank je, we hebben het doorgegeven.", world.bot_id)
            feedback = await employee.wait_for(from_bot(employee, world.bot_id, "we hebben het doorgegeven"),
                                               "the feedback at the employee")
            assert feedback.room_id == room

            assert assert_clean(employee, world.bot_id) >= len(SCRIPT)
            assert assert_clean(af, world.bot_id) >= 4
            for client in (employee, af):
                identity = await client.user_status(world.bot_id)
                assert identity["needsUserApproval"] is False, identity
                device = await client.device_status(world.bot_id, bot.adapter.device_id)
                assert device["signedByOwner"] is True, device
            ids = [world.employee_id, world.af_id, employee.device_id, af.device_id, bot.adapter.device_id, room,
                   notice.room_id]
    except BaseException:
        print("meldbot's log (the end):\n" + log_stream.getvalue()[-12_000:])  # shown by pytest on failure
        raise
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("meldbot").setLevel(saved[2])
    # meldbot's log of the whole run (every library included, at DEBUG) names no user, device or room.
    written = log_stream.getvalue()
    assert "cross-signing identity" in written and len(written.splitlines()) >= 5
    leaked = [i for i in ids if i and i in written]
    assert not leaked, [line for line in written.splitlines() if any(i in line for i in leaked)][:8]
    assert "paspoorten" not in written


@needs_synapse
@pytest.mark.parametrize("attempt", [1, 2])
async def test_an_af_signing_in_on_element_while_af_content_waits_reads_the_first_message(world, monkeypatch,
                                                                                          attempt):
    """Finding (once on a slow machine, then 17 of 20 times with the window widened as here): the bot has AF
    content waiting from its first moment (the weekly overview) when the AF signs in on a new Element. Element
    publishes its new identity a moment before it signs its device; a look at the AF's keys in that moment
    took the device's right to read away while a send awaited the one-time key claim for that very device,
    and nio then left the device out of the room key without a word: MEGOLM_UNKNOWN_INBOUND_SESSION_ID, for
    good. Looks and sends now take turns (trust.Devices.lock). Widened: the homeserver's claim answer comes
    0.6 s late, Element's signature 1 s after its identity."""
    from nio import AsyncClient

    claim = AsyncClient.keys_claim

    async def slow_claim(self, users):
        answer = await claim(self, users)
        await asyncio.sleep(0.6)   # a slow homeserver (not a wait for something)
        return answer

    monkeypatch.setattr(AsyncClient, "keys_claim", slow_claim)
    async with Bot(world.config(), clock=wednesday()):
        af = await world.element(world.af_id, "all", signature_delay_ms=1000)
        first = await af.wait_for(lambda: next(iter(af.messages(sender=world.bot_id)), None),
                                  "the bot's first message", timeout=60)
        await af.wait_for(lambda: next((m for m in af.messages(sender=world.bot_id)
                                        if m.event_id == first.event_id and m.decrypted), None),
                          f"the bot's first message readable (was: {first.summary()})", timeout=20)


@needs_synapse
async def test_a_fresh_store_is_a_new_device_signed_by_the_same_identity(world):
    async with Bot(world.config(), clock=wednesday()) as bot:
        employee = await world.element(world.employee_id, "signed")
        room = await employee.open_direct(world.bot_id)
        await employee.ask(room, "help", world.bot_id)
        first_device = bot.adapter.device_id
        first = await employee.user_status(world.bot_id)
    shutil.rmtree(world.folder / "bot-store")  # a new machine, a second replica, a restore without the store
    async with Bot(world.config(), clock=wednesday()) as bot:
        assert bot.adapter.device_id != first_device
        await asyncio.wait_for(_until(lambda: bot.adapter.identity_status == "present"), WAIT)
        answers = await employee.ask(room, "help", world.bot_id)
        assert all(m.decrypted and not m.shield for m in answers), [m.summary() for m in answers]
        device = await employee.device_status(world.bot_id, bot.adapter.device_id)
        assert device["signedByOwner"] is True, device
        identity = await employee.user_status(world.bot_id)
        assert identity["needsUserApproval"] is False and identity == first, (first, identity)
    assert_clean(employee, world.bot_id)


@needs_synapse
async def test_an_af_device_nobody_confirmed_gets_nothing_and_a_new_af_identity_waits_for_the_administrator(
        world, monkeypatch):
    from meldbot.run.cli import main

    async with Bot(world.config()) as bot:  # the real clock: the command below wakes the outbox by it
        notifier, to_af = bot.adapter.notifier, Identity("matrix", world.af_id)
        bot.adapter.trust.grace = 3  # seconds before an unsigned device counts as one (Element signs at set-up)
        phone = await world.element(world.af_id, "signed", device="phone")
        # The phone has the bot's device before the first message: matrix-js-sdk in "exclude insecure devices"
        # mode leaves a message unreadable for good when it comes in before that download (UNKNOWN_SENDER_DEVICE;
        # seen once in a full run on a loaded machine). This test is about the AF's devices, not that race.
        assert await phone.devices(world.bot_id)
        await notifier.send(to_af, Reply("Goedemorgen"), "hello-1")  # the AF's identity is pinned now
        await phone.wait_for(from_bot(phone, world.bot_id, "Goedemorgen"), "the first message")

        # A new device that the AF did not confirm (not signed by their identity): the AF is warned on the
        # phone, and the new device cannot read what the bot sends next.
        # (Element's older mode: in "exclude insecure devices" mode an unconfirmed device cannot even send.)
        laptop = await world.element(world.af_id, "all", device="laptop", cross_signing=False)
        alert = await phone.wait_for(from_bot(phone, world.bot_id, laptop.device_id), "the alert on the phone")
        assert "niet bevestigd" in alert.body
        await notifier.send(to_af, Reply("Alleen voor de telefoon"), "hello-2")
        message = await phone.wait_for(from_bot(phone, world.bot_id, "Alleen voor de telefoon"), "the message")
        on_laptop = await laptop.wait_for(
            lambda: next((m for m in laptop.messages(message.room_id) if m.event_id == message.event_id), None),
            "the message at the laptop")
        assert on_laptop.body is None and on_laptop.decryption_error, on_laptop.summary()
        # Nor may the laptop act as the AF: its command is not handled; the answer says why, readable there.
        refused = await laptop.ask(message.room_id, "lijst", world.bot_id)
        assert refused[0].body and "nog niet bevestigd" in refused[0].body, [m.summary() for m in refused]

        # The AF sets up new keys (a reset in Element): everything for this AF waits for the administrator.
        # (The tablet runs Element's older mode: after a reset without key backup, matrix-js-sdk 37.5 does not
        # trust its own new identity and refuses to send in "exclude insecure devices" mode.)
        tablet = await world.element(world.af_id, "all", device="tablet", reset_cross_signing=True)
        # The bot notices the new identity from its own sync and warns on every device of the AF.
        warned = await tablet.wait_for(from_bot(tablet, world.bot_id, "sleutels van je Matrix-account zijn nieuw"),
                                       "the identity alert on the new device")
        assert warned.decrypted
        with pytest.raises(RecipientAway):
            await notifier.send(to_af, Reply("Wacht op de beheerder"), "held-1")
        assert not from_bot(tablet, world.bot_id, "Wacht op de beheerder")()
        # The AF asks something in chat: the answer says why, and no content leaves.
        asked = await tablet.ask(warned.room_id, "lijst", world.bot_id)
        assert any(m.body and "beheerder" in m.body for m in asked), [m.summary() for m in asked]

        # The administrator confirms the new identity; the held message goes out by the outbox.
        async with bot.app.uow() as uow:
            await uow.outbox.add(meldpunt_id=bot.app.config.meldpunten[0].id, recipient=to_af,
                                 reply=Reply("Wacht op de beheerder"), key="held-2", kind="test",
                                 at=bot.app.clock.now())
            await uow.commit()
        await asyncio.wait_for(_until_async(lambda: _held_until(bot, "held-2")), WAIT)
        for key, value in world.environment().items():
            monkeypatch.setenv(key, value)
        code = await asyncio.to_thread(main, ["--config", str(EXAMPLE), "matrix-trust", world.af_id, "--yes"])
        assert code == 0
        await tablet.wait_for(from_bot(tablet, world.bot_id, "Wacht op de beheerder"), "the held message", timeout=60)
        # Once the tablet had its new identity, every message of the bot was readable on it (what came
        # before was meant for the old identity's devices, or sent before the tablet signed in).
        since = [m.event_id for m in tablet.messages()].index(warned.event_id)
        later = [m for m in tablet.messages()[since:] if m.sender == world.bot_id]
        assert len(later) >= 3 and all(m.decrypted and not m.shield for m in later), [m.summary() for m in later]
        # The phone (signed by the old identity) gets it, but cannot read it.
        held = from_bot(tablet, world.bot_id, "Wacht op de beheerder")()
        on_phone = await phone.wait_for(
            lambda: next((m for m in phone.messages(held.room_id) if m.event_id == held.event_id), None),
            "the released message at the phone")
        assert on_phone.body is None and on_phone.decryption_error, on_phone.summary()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.05)


async def _held_until(bot, key: str):
    """The outbox row `key` once the dispatcher has put it on hold (its next attempt an hour away)."""
    from sqlalchemy import text

    async with bot.app.db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT next_attempt_at, delivered_at FROM outbox WHERE idempotency_key = :k"),
                                  {"k": key})).first()
    return row is not None and row[1] is None and str(row[0]) > str(bot.app.clock.now().replace(tzinfo=None))


async def _until_async(condition) -> None:
    while not await condition():
        await asyncio.sleep(0.1)
