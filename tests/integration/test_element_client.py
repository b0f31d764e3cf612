"""The Element test client (tests/support/element.py) against a real Synapse: it must tell right from wrong.

Two cross-signed Element users talk without a shield; a matrix-nio device, which is not cross-signed (like
the bot today), is refused by Element's "exclude insecure devices" mode and carries a shield in the older mode.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.element import ElementClient, ElementClientError, node_command
from tests.support.matrix import PASSWORD, Person, until

pytestmark = pytest.mark.slow
_names = itertools.count(1)


class People:
    """Element and matrix-nio users with fresh accounts on the shared homeserver."""

    def __init__(self, synapse, folder) -> None:
        self.synapse, self.folder = synapse, folder
        self.started: list[ElementClient | Person] = []

    def register(self, name: str) -> tuple[str, str]:
        local = f"{name}{next(_names)}"
        return local, self.synapse.register(local, PASSWORD)

    async def element(self, name: str, isolation: str = "signed", cross_signing: bool = True) -> ElementClient:
        local = f"{name}{next(_names)}"
        client = ElementClient(self.folder / f"{local}-element.log", name=local)
        self.started.append(client)
        await client.launch()  # Node loads matrix-js-sdk while Synapse hashes the password
        self.synapse.register(local, PASSWORD)
        return await client.start(self.synapse.url, local, PASSWORD, device_name=f"{name} (Element)",
                                  isolation=isolation, cross_signing=cross_signing)

    async def nio(self, name: str) -> Person:
        """A matrix-nio E2EE device as the bot has one: not cross-signed by its account."""
        local, user_id = self.register(name)
        person = Person(self.synapse, user_id, self.folder / f"{local}-nio")
        self.started.append(person)
        return await person.start("nio")

    async def close(self) -> None:
        for client in reversed(self.started):
            await client.stop()


@pytest.fixture
async def people(synapse, tmp_path):
    group = People(synapse, tmp_path)
    yield group
    await group.close()


async def open_direct_with(element: ElementClient, person: Person) -> str:
    """Element opens the DM; returns once the nio client has joined and synced the room (so it can send)."""
    room = await element.open_direct(person.user_id)
    await until(lambda: room in person.client.rooms and person.client.rooms[room].encrypted, "the nio client in the DM")
    return room


def event_in(person: Person, room_id: str, event_id: str):
    return next((e for r, e in person.events if r == room_id and e.event_id == event_id), None)


def test_the_node_side_is_installed():
    """Without node or tests/element/node_modules this fails (never skips) and says how to install it."""
    assert node_command()[-1].endswith("client.mjs")


async def test_two_cross_signed_element_users_read_each_other_without_a_shield(people):
    alice, bob = await asyncio.gather(people.element("alice"), people.element("bob"))
    assert await alice.devices(bob.user_id) == [bob.device_id]

    room = await alice.open_direct(bob.user_id)
    sent = await alice.say(room, "Hallo Bob, alles goed?")
    hello = await bob.message(room, alice.user_id, "Hallo Bob")
    assert hello.event_id == sent and hello.decrypted and hello.shield is None, hello.summary()

    async def bob_answers():
        await bob.message(room, alice.user_id, "Een vraag")
        await bob.say(room, "Een antwoord")
        await bob.say(room, "En nog een")

    answering = asyncio.create_task(bob_answers())
    answers = await alice.ask(room, "Een vraag", bob.user_id, count=2)
    await answering
    assert [a.body for a in answers] == ["Een antwoord", "En nog een"]
    assert all(a.decrypted and a.shield is None for a in answers), [a.summary() for a in answers]

    # Each device is signed by its owner's self-signing key; neither user verified the other (trust on first use).
    for viewer, other in ((alice, bob), (bob, alice)):
        status = await viewer.device_status(other.user_id, other.device_id)
        assert status["signedByOwner"] and not status["crossSigningVerified"] and not status["localVerified"], status
        user = await viewer.user_status(other.user_id)
        assert not user["isCrossSigningVerified"] and not user["needsUserApproval"], user


async def test_exclude_insecure_devices_refuses_a_device_that_is_not_cross_signed(people):
    from nio import MegolmEvent, RoomMessageText

    element, bot = await asyncio.gather(people.element("medewerker", isolation="signed"), people.nio("bot"))
    room = await open_direct_with(element, bot)
    assert await element.devices(bot.user_id) == [bot.client.device_id]
    status = await element.device_status(bot.user_id, bot.client.device_id)
    assert not status["signedByOwner"] and not status["isVerified"], status

    # The nio device's message: Element refuses to decrypt it.
    from_bot = await bot.say(room, "Welkom bij het meldpunt")
    seen = await element.message(room, bot.user_id)
    assert seen.event_id == from_bot and seen.body is None, seen.summary()
    assert seen.decryption_error == "UNSIGNED_SENDER_DEVICE", seen.summary()

    # Element's message: the nio device gets no room key, only a withheld notice (m.unverified).
    from_element = await element.say(room, "Ik wil iets melden")
    await until(lambda: event_in(bot, room, from_element), "Element's message at the nio client")
    assert isinstance(event_in(bot, room, from_element), MegolmEvent)
    await until(lambda: any(e.source.get("type") == "m.room_key.withheld" for e in bot.to_device), "withheld notice")
    [withheld] = [e.source["content"] for e in bot.to_device if e.source.get("type") == "m.room_key.withheld"]
    assert withheld["code"] == "m.unverified" and withheld["room_id"] == room, withheld

    # Switched to the older mode, the same client reads the nio device's next message, with a shield.
    await element.set_isolation("all")
    again = await bot.say(room, "Nog een keer")
    seen = await element.message(room, bot.user_id, "Nog een keer")
    assert seen.event_id == again and seen.shield == {"colour": "RED", "reason": "UNSIGNED_DEVICE"}, seen.summary()
    # ... and shares its keys with it again.
    shared = await element.say(room, "Nu wel")
    await until(lambda: isinstance(event_in(bot, room, shared), RoomMessageText), "the nio client decrypting")


async def test_all_devices_mode_reads_an_unsigned_device_but_shows_a_shield(people):
    from nio import RoomMessageText

    element, bot = await asyncio.gather(people.element("medewerker", isolation="all"), people.nio("bot"))
    room = await open_direct_with(element, bot)

    from_bot = await bot.say(room, "Welkom bij het meldpunt")
    seen = await element.message(room, bot.user_id)
    assert seen.event_id == from_bot and seen.body == "Welkom bij het meldpunt", seen.summary()
    assert seen.shield == {"colour": "RED", "reason": "UNSIGNED_DEVICE"}, seen.summary()

    from_element = await element.say(room, "Ik wil iets melden")
    await until(lambda: event_in(bot, room, from_element), "Element's message at the nio client")
    assert isinstance(event_in(bot, room, from_element), RoomMessageText)

    # A message whose room key comes later: first reported undecryptable, then once more with its body.
    late = await send_before_sharing_the_key(bot, room, "De sleutel komt later")
    first = await element.wait_for(lambda: next((m for m in element.lines if m.event_id == late), None), "late")
    assert first.body is None and first.decryption_error == "MEGOLM_UNKNOWN_INBOUND_SESSION_ID", first.summary()
    await bot.client.share_group_session(room, ignore_unverified_devices=True)
    seen = await element.message(room, bot.user_id, "De sleutel komt later")
    assert seen.event_id == late and seen.shield == {"colour": "RED", "reason": "UNSIGNED_DEVICE"}, seen.summary()
    assert [m.body for m in element.lines if m.event_id == late] == [None, "De sleutel komt later"]


async def send_before_sharing_the_key(person: Person, room_id: str, body: str) -> str:
    """A message in a new Megolm session whose key is not shared yet (nio's share_group_session shares it)."""
    from uuid import uuid4

    from nio import Api
    from nio.crypto import OutboundGroupSession

    olm = person.client.olm
    olm.rotate_outbound_group_session(room_id)
    session = olm.outbound_group_sessions[room_id]
    # Encrypt with a copy (nio encrypts only with a shared session), so the session nio shares afterwards still
    # starts at message index 0: the key then opens this message.
    copy = OutboundGroupSession.from_pickle(session.pickle())
    copy.shared = True
    olm.outbound_group_sessions[room_id] = copy
    try:
        message_type, content = person.client.encrypt(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    finally:
        olm.outbound_group_sessions[room_id] = session
    method, path, data = Api.room_send(person.client.access_token, room_id, message_type, content, str(uuid4()))
    response = await person.client.send(method, path, data, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    return (await response.json())["event_id"]


async def test_an_element_device_without_cross_signing_is_refused_too_and_a_failing_wait_says_so(people):
    alice, bob = await asyncio.gather(people.element("alice", isolation="signed"),
                                      people.element("bob", isolation="all", cross_signing=False))
    room = await alice.open_direct(bob.user_id)
    await bob.say(room, "Zonder cross-signing")
    seen = await alice.message(room, bob.user_id)
    assert seen.body is None and seen.decryption_error == "UNSIGNED_SENDER_DEVICE", seen.summary()
    with pytest.raises(AssertionError, match=r"timed out after 0.5 s waiting for .*<undecryptable> "
                                             r"error=UNSIGNED_SENDER_DEVICE"):
        await alice.message(room, bob.user_id, "Zonder", timeout=0.5)
    # A user who never joins: the command fails at its deadline instead of hanging.
    _, absent = people.register("afwezig")
    with pytest.raises(ElementClientError, match=f"open_direct: timed out after 3 s waiting for {absent} to join"):
        await alice.open_direct(absent, timeout=3)
