"""Fast unit tests of the Matrix adapter's rules, without Synapse: AF trust by cross-signing identity
(meldbot/adapters/matrix/trust.py) and messages whose room key comes late (meldbot/adapters/matrix/sync.py).

The nio client is a small fake with only what the code under test touches; nio's own DeviceStore,
OlmDevice and event classes are used where that is easy. The `/keys/query` answers carry real signed
cross-signing chains (meldbot.adapters.matrix.cross_signing), so `device_trust` runs for real.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nio import (
    EncryptionError,
    KeysQueryError,
    KeysQueryResponse,
    MegolmEvent,
    RoomMessageText,
    ToDeviceEvent,
    UnknownToDeviceEvent,
)
from nio.crypto import DeviceStore, OlmDevice, TrustState

from meldbot.adapters.matrix import cross_signing
from meldbot.adapters.matrix.common import AddressBook, JsonFile, RoomGone
from meldbot.adapters.matrix.cross_signing import CrossSigningKeys, encode_base64, sign_json
from meldbot.adapters.matrix.sync import Inbound
from meldbot.adapters.matrix.trust import AfTrust, Devices, alert_key, is_unguarded_key
from meldbot.core.i18n import texts
from meldbot.core.messaging import DeliveryError, RecipientAway, Reply
from tests.support.matrix import until

BOT = "@meldbot:bergeijk.nl"
AF = "@anna:bergeijk.nl"
EMPLOYEE = "@piet:bergeijk.nl"
ROOM = "!af-dm:bergeijk.nl"
EMPLOYEE_ROOM = "!piet-dm:bergeijk.nl"


# --- the AF's side: an account with (or without) a cross-signing identity -----------------------------

def _public(key: Ed25519PrivateKey) -> str:
    return encode_base64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


class FakeAccount:
    """What the homeserver publishes for one user: device keys, and a cross-signing identity if any."""

    def __init__(self, user_id: str, *, cross_signing_identity: bool = True) -> None:
        self.user_id = user_id
        self.identity = CrossSigningKeys.generate() if cross_signing_identity else None
        self.device_keys: dict[str, dict] = {}

    def add_device(self, device_id: str, *, signed: bool = True, name: str | None = None) -> dict:
        """A device as a client uploads it (self-signed by its own ed25519 key), cross-signed if `signed`
        and the account has an identity."""
        own = Ed25519PrivateKey.generate()
        keys = {
            "user_id": self.user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device_id}": _public(own),
                     f"curve25519:{device_id}": _public(Ed25519PrivateKey.generate())},
        }
        keys = sign_json(keys, self.user_id, f"ed25519:{device_id}", own)
        keys["unsigned"] = {"device_display_name": name or device_id.lower()}
        self.device_keys[device_id] = keys
        if signed and self.identity is not None:
            self.verify(device_id)
        return keys

    def verify(self, device_id: str) -> None:
        """What Element does when the AF confirms a device: sign it with the self-signing key."""
        self.device_keys[device_id] = sign_json(self.device_keys[device_id], self.user_id,
                                                f"ed25519:{self.identity.self_signing_public}",
                                                self.identity.self_signing)

    def reset_identity(self, *, sign: tuple[str, ...] = ()) -> None:
        """A reset in Element: a new identity; only the devices in `sign` are signed by it."""
        self.identity = CrossSigningKeys.generate()
        for device_id in sign:
            self.verify(device_id)

    def ed25519(self, device_id: str) -> str:
        return self.device_keys[device_id]["keys"][f"ed25519:{device_id}"]

    def answer(self) -> dict:
        """This account's part of a /keys/query answer."""
        answer: dict = {"device_keys": {self.user_id: copy.deepcopy(self.device_keys)}}
        if self.identity is not None:
            objects = self.identity.upload_objects(self.user_id)
            answer["master_keys"] = {self.user_id: objects["master_key"]}
            answer["self_signing_keys"] = {self.user_id: objects["self_signing_key"]}
        return answer


class FakeHomeserver:
    """The `query` AfTrust is given: answers /keys/query from the accounts, and counts the questions."""

    def __init__(self, *accounts: FakeAccount) -> None:
        self.accounts = {a.user_id: a for a in accounts}
        self.queries: list[list[str]] = []
        self.down = False

    async def query(self, client, user_ids: list[str]) -> dict:
        self.queries.append(list(user_ids))
        if self.down:
            raise cross_signing.HomeserverError("homeserver unreachable: ClientConnectorError")
        merged: dict = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "failures": {}}
        for user_id in user_ids:
            if user_id in self.accounts:
                for part, values in self.accounts[user_id].answer().items():
                    merged[part].update(values)
        return merged


# --- the bot's side: a fake nio client, stores, the alert outbox ------------------------------------------

class FakeSessions:
    """nio's session store as far as trust.py reads it: every device has an Olm session unless listed."""

    def __init__(self) -> None:
        self.without: set[str] = set()  # curve25519 keys of devices without a session

    def get(self, curve25519: str) -> bool:
        return curve25519 not in self.without


class FakeOlm:
    def __init__(self) -> None:
        self.changed_users: set[str] = set()
        self.session_store = FakeSessions()

    def is_device_blacklisted(self, device: OlmDevice) -> bool:
        return device.trust_state == TrustState.blacklisted

    def add_changed_users(self, users) -> None:
        self.changed_users |= set(users)


class FakeClient:
    """Only what trust.py and sync.py touch of nio's AsyncClient."""

    def __init__(self, user_id: str = BOT) -> None:
        self.user_id = user_id
        self.device_id = "BOTDEVICE"
        self.device_store = DeviceStore()
        self.olm = FakeOlm()
        self.rooms: dict[str, SimpleNamespace] = {}
        self.invalidated: list[str] = []
        self.should_query_keys = False
        self.claimed: list[dict] = []
        self.no_one_time_keys: set[str] = set()
        # sync.py
        self.room_keys: set[str] = set()      # megolm sessions the bot holds the key of
        self.key_requests: list[str] = []
        self.to_device_sent: list = []
        self.decrypt_attempts = 0
        self._syncs: asyncio.Queue = asyncio.Queue()

    # device lists, as nio has them after its own /keys/query
    def learn_devices(self, account: FakeAccount, *device_ids: str, ed25519: dict[str, str] | None = None) -> None:
        for device_id in device_ids or tuple(account.device_keys):
            key = (ed25519 or {}).get(device_id) or account.ed25519(device_id)
            keys = {"ed25519": key, "curve25519": "c" + device_id}
            self.device_store.add(OlmDevice(account.user_id, device_id, keys))

    def device(self, user_id: str, device_id: str) -> OlmDevice:
        return self.device_store[user_id][device_id]

    def blacklisted(self, user_id: str) -> set[str]:
        return {d.id for d in self.device_store.active_user_devices(user_id) if self.olm.is_device_blacklisted(d)}

    def blacklist_device(self, device: OlmDevice) -> None:
        device.trust_state = TrustState.blacklisted

    def unblacklist_device(self, device: OlmDevice) -> None:
        device.trust_state = TrustState.unset

    def invalidate_outbound_session(self, room_id: str) -> None:
        self.invalidated.append(room_id)

    def add_room(self, room_id: str, *users: str, encrypted: bool = True) -> SimpleNamespace:
        room = SimpleNamespace(room_id=room_id, encrypted=encrypted, members_synced=True,
                               users={u: SimpleNamespace(display_name=None) for u in (self.user_id, *users)})
        self.rooms[room_id] = room
        return room

    async def joined_members(self, room_id: str):
        raise AssertionError("the fake rooms have their members synced")

    async def keys_query(self):
        raise AssertionError("should_query_keys is False")

    async def keys_claim(self, missing: dict[str, list[str]]) -> None:
        """One-time keys are claimable for every device except those in `no_one_time_keys`."""
        self.claimed.append({u: sorted(d) for u, d in missing.items()})
        for user_id, device_ids in missing.items():
            for device_id in device_ids:
                if device_id not in self.no_one_time_keys:
                    self.olm.session_store.without.discard(self.device(user_id, device_id).curve25519)

    # undecryptable messages
    async def request_room_key(self, event: MegolmEvent) -> None:
        self.key_requests.append(event.session_id)

    async def to_device(self, message) -> None:
        self.to_device_sent.append(message)

    def decrypt_event(self, event: MegolmEvent):
        self.decrypt_attempts += 1
        if event.session_id not in self.room_keys:
            raise EncryptionError("no such session")
        return RoomMessageText.from_dict({
            "type": "m.room.message", "event_id": event.event_id, "sender": event.sender,
            "origin_server_ts": event.server_timestamp,
            "content": {"msgtype": "m.text", "body": "hallo, een melding"}})

    async def sync(self, **kwargs):
        return await self._syncs.get()


class FakeTrustStore:
    """Stores a JSON copy, as the database does: the caller's dict is never shared."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.puts = 0

    async def get(self, af_id: str) -> dict | None:
        text = self.data.get(af_id)
        return json.loads(text) if text is not None else None

    async def put(self, af_id: str, state: dict, expected: dict | None = None) -> None:
        """With `expected`: only if the stored state is still that (an administrator's confirmation wins)."""
        self.puts += 1
        if expected is not None and json.loads(self.data.get(af_id, "null")) not in (expected, None):
            return
        self.data[af_id] = json.dumps(state)

    def confirm(self, af_id: str, master: str, devices) -> None:
        """What `meldbot matrix-trust` writes (meldbot/matrix_trust.py)."""
        state = json.loads(self.data.get(af_id, "{}"))
        state.update(master=master, confirmed=True, pending=None, alerted=None,
                     devices=sorted(set(state.get("devices", [])) | set(devices)))
        self.data[af_id] = json.dumps(state)


class Alerts:
    def __init__(self) -> None:
        self.sent: list[SimpleNamespace] = []

    async def __call__(self, af_id: str, text_key: str, params: dict, key: str, unguarded: bool) -> None:
        self.sent.append(SimpleNamespace(af_id=af_id, text=text_key, params=params, key=key, unguarded=unguarded))


def _book() -> AddressBook:
    af = SimpleNamespace(matrix=AF, name="anna")
    meldpunt = SimpleNamespace(af=[af], matrix_domains=["bergeijk.nl"])
    config = SimpleNamespace(
        meldpunten=[meldpunt],
        af_for=lambda platform, user_id: [(meldpunt, af)] if user_id == AF else [])
    return AddressBook(config)


class World:
    def __init__(self, policy: str = "tofu", *, cross_signing_identity: bool = True) -> None:
        self.af = FakeAccount(AF, cross_signing_identity=cross_signing_identity)
        self.server = FakeHomeserver(self.af)
        self.client = FakeClient()
        self.store = FakeTrustStore()
        self.alerts = Alerts()
        self.woken: list[str] = []
        self.spawned: list = []
        self.trust = AfTrust(self.client, policy, _book(), self.store, self.alerts, query=self.server.query)
        self.trust.grace = 0  # judged at once here; the grace itself has tests of its own
        self.devices = Devices(self.client, _book(), self.trust, self.woken.append, self.spawned.append)

    def add_af_device(self, device_id: str, *, signed: bool = True) -> None:
        """A device signs in: the homeserver and nio's device store both know it."""
        self.af.add_device(device_id, signed=signed)
        self.client.learn_devices(self.af, device_id)

    async def verdict(self):
        verdict = await self.trust.verdict(AF)
        self.trust.apply(AF, verdict)
        return verdict

    def state(self) -> dict:
        return json.loads(self.store.data[AF])

    async def run_spawned(self) -> None:
        """Run what Devices handed to `spawn` (the adapter runs it as a task)."""
        while self.spawned:
            await self.spawned.pop(0)


# --- AfTrust: tofu ---------------------------------------------------------------------------------------------

async def test_tofu_pins_the_first_identity_signed_devices_read_and_an_unsigned_one_is_alerted_once():
    world = World("tofu")
    world.add_af_device("PHONE")

    verdict = await world.verdict()
    assert not verdict.held and verdict.readers == {"PHONE"}
    assert world.state()["master"] == world.af.identity.master_public  # pinned on first use
    assert world.client.blacklisted(AF) == set()
    assert world.alerts.sent == []

    # A new device the AF did not verify: it gets nothing, the AF is told once.
    world.add_af_device("LAPTOP", signed=False)
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert not verdict.held and verdict.readers == {"PHONE"}
    assert world.client.blacklisted(AF) == {"LAPTOP"}
    [alert] = world.alerts.sent
    assert alert.af_id == AF and alert.text == "matrix.unsigned_device"
    assert alert.key == alert_key("unsigned", AF, "LAPTOP") and alert.unguarded is False
    assert not is_unguarded_key(alert.key)
    assert alert.params == {"device": "laptop", "device_id": "LAPTOP"}

    # Looked at again by another process (the same database): no second alert; still nothing for the laptop.
    world.trust = AfTrust(world.client, "tofu", _book(), world.store, world.alerts, query=world.server.query)
    world.trust.grace = 0
    verdict = await world.verdict()
    assert verdict.readers == {"PHONE"} and len(world.alerts.sent) == 1
    assert world.client.blacklisted(AF) == {"LAPTOP"}

    # Once the AF verifies it in Element, the laptop reads.
    world.af.verify("LAPTOP")
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert verdict.readers == {"PHONE", "LAPTOP"} and world.client.blacklisted(AF) == set()
    assert len(world.alerts.sent) == 1


async def test_a_verdict_is_kept_until_the_af_is_marked_stale():
    world = World("tofu")
    world.add_af_device("PHONE")
    await world.trust.verdict(AF)
    await world.trust.verdict(AF)
    assert world.server.queries == [[AF]]
    world.trust.stale(AF)
    await world.trust.verdict(AF)
    assert len(world.server.queries) == 2


async def test_tofu_an_unsigned_device_present_at_first_sight_is_alerted():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.add_af_device("LAPTOP", signed=False)
    verdict = await world.verdict()
    assert verdict.readers == {"PHONE"} and world.client.blacklisted(AF) == {"LAPTOP"}
    assert [a.text for a in world.alerts.sent] == ["matrix.unsigned_device"]


async def test_tofu_a_changed_identity_holds_everything_until_an_administrator_confirms_it():
    world = World("tofu")
    world.add_af_device("PHONE")
    first = world.af.identity.master_public
    assert (await world.verdict()).readers == {"PHONE"}

    # The AF resets their identity on a new tablet; the phone keeps its old signature only.
    world.add_af_device("TABLET", signed=False)
    world.af.reset_identity(sign=("TABLET",))
    second = world.af.identity.master_public
    world.trust.stale(AF)
    verdict = await world.trust.verdict(AF)
    assert verdict.held and verdict.readers == set()
    assert world.trust.apply(AF, verdict) is True  # the phone read before: taken away
    assert world.client.blacklisted(AF) == {"PHONE", "TABLET"}
    [alert] = world.alerts.sent
    assert alert.text == "matrix.identity_changed" and alert.unguarded is True
    assert alert.key == alert_key("identity", AF, second) and is_unguarded_key(alert.key)
    state = world.state()
    assert state["master"] == first and state["pending"] == second

    # The alert itself may go to every device (it holds no content).
    world.trust.apply(AF, verdict, everyone=True)
    assert world.client.blacklisted(AF) == set()

    # Held verdicts are not cached: each send asks again, and the AF is not alerted again.
    verdict = await world.verdict()
    assert verdict.held and len(world.server.queries) == 3 and len(world.alerts.sent) == 1
    assert world.client.blacklisted(AF) == {"PHONE", "TABLET"}

    # `meldbot matrix-trust` confirms the new identity: the next verdict (no stale() needed) lets it read.
    world.store.confirm(AF, second, world.af.device_keys)
    verdict = await world.verdict()
    assert not verdict.held and verdict.readers == {"TABLET"}
    assert world.client.blacklisted(AF) == {"PHONE"}
    assert len(world.alerts.sent) == 1
    assert world.state()["master"] == second


async def test_tofu_an_af_without_cross_signing_is_trusted_device_by_device_and_told_of_each_new_one():
    world = World("tofu", cross_signing_identity=False)
    world.add_af_device("PHONE")
    world.add_af_device("LAPTOP")
    verdict = await world.verdict()
    assert not verdict.held and verdict.readers == {"PHONE", "LAPTOP"}
    assert world.client.blacklisted(AF) == set() and world.alerts.sent == []
    assert world.state()["devices"] == ["LAPTOP", "PHONE"]

    world.add_af_device("TABLET")
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert verdict.readers == {"PHONE", "LAPTOP", "TABLET"} and world.client.blacklisted(AF) == set()
    [alert] = world.alerts.sent
    assert alert.text == "matrix.new_device" and alert.unguarded is False
    assert alert.key == alert_key("device", AF, "TABLET") and not is_unguarded_key(alert.key)
    assert alert.params == {"device": "tablet", "device_id": "TABLET"}

    world.trust.stale(AF)
    await world.verdict()
    assert len(world.alerts.sent) == 1


# --- AfTrust: signed -------------------------------------------------------------------------------------------

async def test_signed_policy_holds_until_confirmed_then_only_signed_devices_read():
    world = World("signed")
    world.add_af_device("PHONE")
    world.add_af_device("LAPTOP", signed=False)

    verdict = await world.verdict()
    assert verdict.held and verdict.readers == set()
    assert world.client.blacklisted(AF) == {"PHONE", "LAPTOP"}
    [alert] = world.alerts.sent
    assert alert.text == "matrix.identity_unconfirmed" and alert.unguarded is True
    assert is_unguarded_key(alert.key)
    assert world.state().get("master") is None  # nothing pinned without an administrator

    verdict = await world.verdict()
    assert verdict.held and len(world.alerts.sent) == 1

    world.store.confirm(AF, world.af.identity.master_public, world.af.device_keys)
    verdict = await world.verdict()
    assert not verdict.held and verdict.readers == {"PHONE"}
    assert world.client.blacklisted(AF) == {"LAPTOP"}
    assert len(world.alerts.sent) == 1


async def test_signed_policy_an_af_without_cross_signing_is_held():
    world = World("signed", cross_signing_identity=False)
    world.add_af_device("PHONE")
    verdict = await world.verdict()
    assert verdict.held and world.client.blacklisted(AF) == {"PHONE"}
    [alert] = world.alerts.sent
    assert alert.text == "matrix.identity_unconfirmed" and alert.unguarded is True
    assert alert.key == alert_key("unconfirmed", AF, "none")
    assert (await world.verdict()).held and len(world.alerts.sent) == 1


async def test_switching_from_tofu_to_signed_holds_an_identity_pinned_without_an_administrator():
    world = World("tofu")
    world.add_af_device("PHONE")
    assert not (await world.verdict()).held
    world.trust = AfTrust(world.client, "signed", _book(), world.store, world.alerts, query=world.server.query)
    world.trust.grace = 0
    verdict = await world.verdict()
    assert verdict.held and world.client.blacklisted(AF) == {"PHONE"}
    assert [a.text for a in world.alerts.sent] == ["matrix.identity_unconfirmed"]


async def test_signed_policy_an_af_confirmed_for_another_identity_stays_held():
    world = World("signed")
    world.add_af_device("PHONE")
    world.store.confirm(AF, CrossSigningKeys.generate().master_public, [])
    verdict = await world.verdict()
    assert verdict.held and world.client.blacklisted(AF) == {"PHONE"}
    assert [a.text for a in world.alerts.sent] == ["matrix.identity_changed"]


# --- AfTrust: device keys --------------------------------------------------------------------------------------

async def test_a_device_whose_key_in_nios_store_differs_from_the_answer_is_not_a_reader():
    world = World("tofu")
    world.af.add_device("PHONE")
    world.af.add_device("LAPTOP")
    world.client.learn_devices(world.af, "PHONE")
    world.client.learn_devices(world.af, "LAPTOP", ed25519={"LAPTOP": _public(Ed25519PrivateKey.generate())})

    verdict = await world.trust.verdict(AF)
    assert verdict.readers == {"PHONE", "LAPTOP"}  # the answer's chain holds for both
    assert world.trust.apply(AF, verdict) is True
    assert world.client.blacklisted(AF) == {"LAPTOP"}  # but nio would encrypt for another key
    # everyone=True (a content-free alert) is the only way past the check.
    world.trust.apply(AF, verdict, everyone=True)
    assert world.client.blacklisted(AF) == set()


async def test_a_homeserver_that_cannot_be_asked_is_a_delivery_error_and_nothing_is_kept():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.server.down = True
    with pytest.raises(DeliveryError):
        await world.trust.verdict(AF)
    assert world.store.puts == 0 and world.alerts.sent == []
    world.server.down = False
    assert (await world.trust.verdict(AF)).readers == {"PHONE"}


# --- Devices: before a send, and after nio's /keys/query ---------------------------------------------------------

async def test_prepare_holds_guarded_content_for_a_held_af_but_lets_an_unguarded_alert_through():
    world = World("tofu")
    world.add_af_device("PHONE")
    room = world.client.add_room(ROOM, AF)
    await world.devices.prepare(room, AF, False)  # pinned, the phone reads
    assert world.client.blacklisted(AF) == set()

    world.af.reset_identity(sign=("PHONE",))
    world.trust.stale(AF)
    with pytest.raises(RecipientAway):
        await world.devices.prepare(room, AF, False)
    assert world.client.blacklisted(AF) == {"PHONE"}

    world.client.invalidated.clear()
    await world.devices.prepare(room, AF, True)  # the identity alert: every device, a fresh room key
    assert world.client.blacklisted(AF) == set()
    assert set(world.client.invalidated) == {ROOM}


async def test_prepare_holds_guarded_content_for_an_af_without_a_reader():
    world = World("tofu")
    world.add_af_device("PHONE")
    room = world.client.add_room(ROOM, AF)
    await world.devices.prepare(room, AF, False)
    world.client.invalidated.clear()

    # The phone is signed out; a new laptop the AF did not verify is all there is.
    world.af.device_keys.pop("PHONE")
    world.client.device(AF, "PHONE").deleted = True
    world.add_af_device("LAPTOP", signed=False)
    world.trust.stale(AF)
    with pytest.raises(RecipientAway):
        await world.devices.prepare(room, AF, False)
    assert world.client.blacklisted(AF) == {"LAPTOP"}
    await world.devices.prepare(room, AF, True)
    assert world.client.blacklisted(AF) == set() and set(world.client.invalidated) == {ROOM}


async def test_prepare_claims_a_session_for_a_new_device_and_waits_for_one_without_one_time_keys():
    # Finding (CI, test_a_new_device_on_the_af_account_alerts_the_af): nio skips a device it has no Olm
    # session with and still counts the room key as shared, so a laptop signed in a moment ago could not
    # read the alert about itself nor anything after it with that key.
    world = World("tofu")
    world.add_af_device("PHONE")
    room = world.client.add_room(ROOM, AF)
    await world.devices.prepare(room, AF, False)
    assert world.client.claimed == []  # every device has a session: nothing to claim

    world.add_af_device("LAPTOP")
    world.client.olm.session_store.without.add(world.client.device(AF, "LAPTOP").curve25519)
    world.trust.stale(AF)
    await world.devices.prepare(room, AF, False)  # claimed now, so the laptop gets the room key
    assert world.client.claimed == [{AF: ["LAPTOP"]}]

    world.add_af_device("TABLET")  # its one-time keys are not on the server yet
    world.client.olm.session_store.without.add(world.client.device(AF, "TABLET").curve25519)
    world.client.no_one_time_keys.add("TABLET")
    world.trust.stale(AF)
    with pytest.raises(DeliveryError):  # the outbox tries again in a few seconds
        await world.devices.prepare(room, AF, False)
    world.devices.session_patience = 0  # a device that never gets a session does not block forever
    await world.devices.prepare(room, AF, False)


async def test_prepare_gives_a_fresh_room_key_only_when_a_device_was_taken_away():
    world = World("tofu")
    world.add_af_device("PHONE")
    room = world.client.add_room(ROOM, AF)
    await world.devices.prepare(room, AF, False)
    assert world.client.invalidated == []

    world.add_af_device("LAPTOP", signed=False)  # in nio's store, not yet blacklisted
    world.trust.stale(AF)
    await world.devices.prepare(room, AF, False)
    assert set(world.client.invalidated) == {ROOM} and world.client.blacklisted(AF) == {"LAPTOP"}
    renewed = len(world.client.invalidated)
    await world.devices.prepare(room, AF, False)  # nothing changed: the same room key
    assert len(world.client.invalidated) == renewed


@pytest.mark.parametrize("nio_store", ["another_key", "not_yet_known"])
async def test_prepare_holds_guarded_content_when_no_af_device_in_nios_store_may_read(nio_store):
    world = World("tofu")
    world.af.add_device("PHONE")
    if nio_store == "another_key":  # nio keeps the first key it saw for a device id
        world.client.learn_devices(world.af, "PHONE", ed25519={"PHONE": _public(Ed25519PrivateKey.generate())})
    else:  # the bot's own /keys/query saw the signed phone before nio's device list did
        world.add_af_device("LAPTOP", signed=False)
    room = world.client.add_room(ROOM, AF)
    with pytest.raises(RecipientAway):
        await world.devices.prepare(room, AF, False)


async def test_prepare_holds_a_message_for_someone_without_any_device_and_a_new_device_wakes_them():
    world = World("tofu")
    room = world.client.add_room(EMPLOYEE_ROOM, EMPLOYEE)
    with pytest.raises(RecipientAway):
        await world.devices.prepare(room, EMPLOYEE, False)
    assert world.client.olm.changed_users == {EMPLOYEE}  # nio is asked to look now
    assert world.server.queries == []  # an employee is no AF: no identity check

    # nio's /keys/query: nothing new for them yet.
    world.devices.after_keys_query(KeysQueryResponse({EMPLOYEE: {}}, {}))
    assert world.woken == [] and world.client.invalidated == []

    # They sign in: a device, a fresh room key for their rooms, and what waited is woken, once.
    employee = FakeAccount(EMPLOYEE, cross_signing_identity=False)
    employee.add_device("DESKTOP")
    world.client.learn_devices(employee)
    response = KeysQueryResponse({EMPLOYEE: copy.deepcopy(employee.device_keys)}, {})
    response.changed = {EMPLOYEE: {"DESKTOP": world.client.device(EMPLOYEE, "DESKTOP")}}
    world.devices.after_keys_query(response)
    assert world.woken == [EMPLOYEE] and set(world.client.invalidated) == {EMPLOYEE_ROOM}
    world.devices.after_keys_query(response)
    assert world.woken == [EMPLOYEE]
    await world.devices.prepare(room, EMPLOYEE, False)


async def test_after_keys_query_marks_afs_stale_and_announces_a_new_af_device_at_once():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.client.add_room(ROOM, AF)
    world.client.add_room(EMPLOYEE_ROOM, EMPLOYEE)
    await world.verdict()
    assert len(world.server.queries) == 1

    # Only cross-signing keys changed (no device): the AF is looked at again.
    world.devices.after_keys_query(KeysQueryResponse({AF: copy.deepcopy(world.af.device_keys)}, {}))
    await world.run_spawned()
    assert world.client.invalidated == []
    await world.trust.verdict(AF)
    assert len(world.server.queries) == 2

    # A new device: a fresh room key for the AF's rooms only, and the AF is alerted now, not at the next send.
    world.add_af_device("LAPTOP", signed=False)
    response = KeysQueryResponse({AF: copy.deepcopy(world.af.device_keys)}, {})
    response.changed = {AF: {"LAPTOP": world.client.device(AF, "LAPTOP")}}
    world.devices.after_keys_query(response)
    assert world.alerts.sent == [] and world.spawned  # the look happens in its own task
    await world.run_spawned()
    assert set(world.client.invalidated) == {ROOM}
    assert [a.text for a in world.alerts.sent] == ["matrix.unsigned_device"]
    assert world.client.blacklisted(AF) == {"LAPTOP"}

    # An error answer is no news.
    world.devices.after_keys_query(KeysQueryError("M_UNKNOWN"))
    assert world.spawned == []


async def test_a_look_at_the_af_waits_for_a_send_between_its_check_and_its_key_share():
    # Finding (Element, the AF signing in after the bot started): the AF's Element publishes its new identity a
    # moment before it signs its device. A look in that moment holds the AF and blacklists the device; when
    # that came while a send awaited the key claim for that very device, nio skipped the device and the
    # message (the weekly overview) was readable by nobody (MEGOLM_UNKNOWN_INBOUND_SESSION_ID, no withheld).
    world = World("tofu", cross_signing_identity=False)
    world.trust.grace = 60
    world.add_af_device("PHONE")
    room = world.client.add_room(ROOM, AF)
    await world.verdict()  # an AF without cross-signing: the phone reads
    world.client.olm.session_store.without.add(world.client.device(AF, "PHONE").curve25519)
    claiming, answer = asyncio.Event(), asyncio.Event()
    claim = world.client.keys_claim

    async def slow_claim(missing):
        claiming.set()
        await answer.wait()
        await claim(missing)

    world.client.keys_claim = slow_claim
    blacklisted_at_share: list[set[str]] = []

    async def send():  # as Sender.send does for a room with an AF: prepare, then nio shares the key
        async with world.devices.lock:
            await world.devices.prepare(room, AF, False)
            blacklisted_at_share.append(world.client.blacklisted(AF))

    sending = asyncio.create_task(send())
    await claiming.wait()
    world.af.reset_identity()  # Element's set-up: the identity first, the device's signature a moment later
    world.devices.after_keys_query(KeysQueryResponse({AF: copy.deepcopy(world.af.device_keys)}, {}))
    looking = [asyncio.create_task(coro) for coro in world.spawned]
    world.spawned.clear()
    await until(lambda: world.devices.lock._waiters, "the look to queue for the lock the send holds", timeout=5)
    assert world.client.blacklisted(AF) == set()  # and changed nothing meanwhile
    answer.set()
    await asyncio.gather(sending, *looking)
    assert blacklisted_at_share == [set()]  # the phone got the room key of that message
    assert world.client.blacklisted(AF) == {"PHONE"}  # and is held afterwards, until its signature comes
    assert ROOM in world.client.invalidated  # with a fresh room key for what comes next


async def test_looking_again_while_the_homeserver_is_away_is_quiet():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.server.down = True
    await world.devices._look_again(AF)  # logged, not raised: the send checks again
    assert world.alerts.sent == []


async def test_an_af_held_for_lack_of_a_signed_device_is_woken_when_they_verify_one():
    world = World("tofu")
    world.add_af_device("PHONE")
    room = world.client.add_room(ROOM, AF)
    await world.devices.prepare(room, AF, False)  # pinned
    world.af.device_keys.pop("PHONE")
    world.client.device(AF, "PHONE").deleted = True
    world.add_af_device("LAPTOP", signed=False)
    world.trust.stale(AF)
    with pytest.raises(RecipientAway):
        await world.devices.prepare(room, AF, False)

    world.af.verify("LAPTOP")  # Synapse announces the signature as a device list change; nio's keys are the same
    world.devices.after_keys_query(KeysQueryResponse({AF: copy.deepcopy(world.af.device_keys)}, {}))
    await world.run_spawned()
    assert world.woken == [AF]


# --- Inbound._await_key: messages whose room key is late ---------------------------------------------------------

def _megolm_event(session_id: str = "SESSION", event_id: str = "$melding") -> MegolmEvent:
    return MegolmEvent.from_dict({
        "type": "m.room.encrypted", "event_id": event_id, "sender": EMPLOYEE, "origin_server_ts": 1_700_000_000_000,
        "room_id": EMPLOYEE_ROOM,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnAC", "sender_key": "senderCurveKey",
                    "session_id": session_id, "device_id": "DESKTOP"}})


def _withheld(session_id: str, code: str = "m.unverified") -> UnknownToDeviceEvent:
    event = ToDeviceEvent.parse_event({
        "type": "m.room_key.withheld", "sender": EMPLOYEE,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "room_id": EMPLOYEE_ROOM, "session_id": session_id,
                    "sender_key": "senderCurveKey", "code": code, "reason": "not verified"}})
    assert isinstance(event, UnknownToDeviceEvent)
    return event


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send(self, room_id, reply, key, *, recipient=None, unguarded=False) -> None:
        self.sent.append((room_id, reply.text, key, unguarded))


class Receiving:
    """An Inbound with its real sync loop running on a fake client; `sync()` delivers one response."""

    def __init__(self, tmp_path, key_wait: float) -> None:
        self.client = FakeClient()
        self.client.add_room(EMPLOYEE_ROOM, EMPLOYEE)
        self.sender = FakeSender()
        self.t = texts("en")
        self.inbound = Inbound(
            self.client, handle=self._handle, sender=self.sender, direct=SimpleNamespace(forget=lambda r: None),
            devices=None, book=_book(), texts=self.t, token_file=JsonFile(tmp_path / "sync-token.json"),
            retry_cap=0.01, poll_ms=0, pointer_interval=600.0, key_wait=key_wait)
        self._count = 0
        self.loop: asyncio.Task | None = None

    async def _handle(self, message):
        raise AssertionError("_await_key does not hand messages on")

    async def __aenter__(self) -> "Receiving":
        async def housekeeping() -> None:
            pass

        self.loop = asyncio.create_task(self.inbound.run(housekeeping))
        await self.sync()  # the first sync: history, as after a fresh start
        return self

    async def __aexit__(self, *exc) -> None:
        self.loop.cancel()
        tasks = [t for t in (self.loop, self.inbound.token_tail) if t]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def sync(self, *to_device) -> None:
        self._count += 1
        synced = self.inbound._synced
        self.client._syncs.put_nowait(SimpleNamespace(
            next_batch=f"s{self._count}", to_device_events=list(to_device),
            rooms=SimpleNamespace(invite={}, join={}, leave={})))
        await asyncio.wait_for(synced.wait(), 1)
        for _ in range(20):  # let whoever waited on the sync look again
            await asyncio.sleep(0)


def test_af_ids_compare_exactly_and_staff_servers_in_any_case():
    book = _book()
    assert book.is_af(AF) and book.af_ids == {AF}
    # Matrix ids are case-sensitive: a server that allows capitals gives @Anna to someone else.
    assert not book.is_af("@Anna:bergeijk.nl") and not book.is_af("@ANNA:BERGEIJK.NL")
    # Server names are DNS names: staff of the meldpunt's server may still invite the bot.
    assert book.may_invite("@Anna:Bergeijk.NL") and not book.may_invite("@anna:elders.nl")


async def test_text_and_display_name_from_matrix_are_cleaned_before_anything_handles_them(tmp_path):
    client = FakeClient()
    client.add_room(EMPLOYEE_ROOM, EMPLOYEE, encrypted=False)
    client.rooms[EMPLOYEE_ROOM].users[EMPLOYEE].display_name = "Piet \u202eJansen\u202c \ud800"
    seen = []

    async def handle(message):
        seen.append(message)
        return []

    inbound = Inbound(client, handle=handle, sender=FakeSender(), direct=SimpleNamespace(forget=lambda r: None),
                      devices=None, book=_book(), texts=texts("nl"), token_file=JsonFile(tmp_path / "sync-token.json"),
                      retry_cap=0.01, poll_ms=0, pointer_interval=600.0, key_wait=1.0)
    # Valid JSON from a homeserver: "\ud800" is an escape any client may send.
    event = RoomMessageText.from_dict(json.loads(
        '{"type": "m.room.message", "event_id": "$x", "sender": "%s", "origin_server_ts": 1700000000000, '
        '"content": {"msgtype": "m.text", "body": "Kerk\\u200bstraat 3\\ud800\\r\\nMelder: \\u2066x\\u2069"}}'
        % EMPLOYEE))
    await inbound._on_event(EMPLOYEE_ROOM, event)
    [message] = seen
    assert message.text == "Kerkstraat 3\ufffd\nMelder: x"
    assert message.sender_name == "Piet Jansen \ufffd"
    message.text.encode("utf-8")


async def test_a_message_whose_key_arrives_with_a_later_sync_is_decrypted_and_counted_late(tmp_path):
    async with Receiving(tmp_path, key_wait=30.0) as rx:
        event = _megolm_event()
        waiting = asyncio.create_task(rx.inbound._await_key(EMPLOYEE_ROOM, event))
        await rx.sync()
        assert not waiting.done()
        assert rx.client.key_requests == ["SESSION"]
        assert rx.inbound.counts.waiting == 1 and rx.inbound.counts.late == 0

        rx.client.room_keys.add("SESSION")  # the forwarded key came with this sync
        await rx.sync()
        decrypted = await asyncio.wait_for(waiting, 1)
    assert isinstance(decrypted, RoomMessageText) and decrypted.body == "hallo, een melding"
    assert decrypted.room_id == EMPLOYEE_ROOM and decrypted.event_id == event.event_id
    counts = rx.inbound.counts
    assert (counts.waiting, counts.late, counts.unreadable) == (0, 1, 0)
    assert rx.sender.sent == []


async def test_a_withheld_session_ends_the_wait_at_once_and_asks_the_sender_to_resend(tmp_path):
    async with Receiving(tmp_path, key_wait=30.0) as rx:
        event = _megolm_event()
        started = time.monotonic()
        waiting = asyncio.create_task(rx.inbound._await_key(EMPLOYEE_ROOM, event))
        await rx.sync(_withheld("ANOTHER-SESSION"))
        assert not waiting.done()  # someone else's session is no news for this message

        await rx.sync(_withheld("SESSION"))
        assert await asyncio.wait_for(waiting, 1) is None
    assert time.monotonic() - started < 10   # not the key wait of 30 s (a loaded 2-core machine takes seconds)
    assert rx.sender.sent == [(EMPLOYEE_ROOM, rx.t("matrix.undecryptable"), f"undecryptable:{event.event_id}", False)]
    counts = rx.inbound.counts
    assert (counts.waiting, counts.late, counts.unreadable) == (0, 0, 1)


async def test_a_session_withheld_before_the_message_came_is_not_waited_for(tmp_path):
    async with Receiving(tmp_path, key_wait=30.0) as rx:
        await rx.sync(_withheld("SESSION", code="m.blacklisted"))
        event = _megolm_event()
        assert await asyncio.wait_for(rx.inbound._await_key(EMPLOYEE_ROOM, event), 1) is None
    assert [key for _, _, key, _ in rx.sender.sent] == [f"undecryptable:{event.event_id}"]


async def test_a_key_that_never_comes_is_given_up_after_key_wait(tmp_path):
    key_wait = 0.2
    async with Receiving(tmp_path, key_wait=key_wait) as rx:
        event = _megolm_event()
        started = time.monotonic()
        waiting = asyncio.create_task(rx.inbound._await_key(EMPLOYEE_ROOM, event))
        await rx.sync()
        await rx.sync()
        assert not waiting.done()  # syncs without the key: still waiting
        attempts = rx.client.decrypt_attempts
        assert attempts >= 3  # tried again after each sync
        assert await asyncio.wait_for(waiting, 1) is None
    elapsed = time.monotonic() - started
    assert key_wait <= elapsed < key_wait + 5   # given up at the key wait, not at some later look
    assert rx.sender.sent == [(EMPLOYEE_ROOM, rx.t("matrix.undecryptable"), f"undecryptable:{event.event_id}", False)]
    counts = rx.inbound.counts
    assert (counts.waiting, counts.late, counts.unreadable) == (0, 0, 1)
    assert rx.client.key_requests == ["SESSION"]


# --- after the review: the grace for Element's set-up, silent take-over, the bot's own devices, who speaks -------

async def test_an_unsigned_device_is_judged_only_after_the_grace_element_needs_to_sign_it():
    world = World("tofu")
    clock = [1000.0]
    rechecks: list[float] = []
    world.trust = AfTrust(world.client, "tofu", _book(), world.store, world.alerts, query=world.server.query,
                          recheck=lambda af_id, delay: rechecks.append(delay), clock=lambda: clock[0])
    world.trust.grace = 60
    world.add_af_device("PHONE")
    await world.verdict()
    world.add_af_device("LAPTOP", signed=False)  # just signed in; Element signs it a moment later
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert verdict.readers == {"PHONE"} and world.alerts.sent == [] and rechecks == [2]
    # Not signed yet: looked at again after as long as it has waited, never past the grace (a signature
    # that crossed the bot's key query is found in seconds, not after the whole minute).
    for waited, expected in ((2, 2), (4, 4), (8, 8), (16, 16), (32, 28)):
        clock[0] = 1000.0 + waited
        world.trust.stale(AF)
        await world.verdict()
        assert rechecks[-1] == expected and world.alerts.sent == []
    clock[0] = 1061.0  # still unsigned after the grace: now it is one, and the AF hears of it
    world.trust.stale(AF)
    await world.verdict()
    assert [a.text for a in world.alerts.sent] == ["matrix.unsigned_device"]
    # A device signed within the grace is never announced.
    world.add_af_device("TABLET", signed=False)
    world.trust.stale(AF)
    await world.verdict()
    world.af.verify("TABLET")
    clock[0] += 30
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert "TABLET" in verdict.readers and len(world.alerts.sent) == 1


async def test_an_identity_none_of_the_known_devices_carries_is_not_pinned_silently():
    # An AF trusted device by device (an old app); someone with the password makes an identity on a new device.
    world = World("tofu", cross_signing_identity=False)
    world.add_af_device("PHONE")
    verdict = await world.verdict()
    assert verdict.readers == {"PHONE"}
    world.af.identity = CrossSigningKeys.generate()
    world.af.add_device("INTRUDER")
    world.client.learn_devices(world.af, "INTRUDER")
    world.af.verify("INTRUDER")
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert verdict.held and verdict.readers == set()
    assert world.client.blacklisted(AF) == {"PHONE", "INTRUDER"}
    [alert] = world.alerts.sent
    assert alert.text == "matrix.identity_changed" and alert.unguarded
    assert world.state().get("master") is None  # nothing pinned without an administrator


async def test_a_known_device_that_sets_up_cross_signing_is_trusted_with_its_new_identity():
    world = World("tofu", cross_signing_identity=False)
    world.add_af_device("PHONE")
    await world.verdict()
    world.af.identity = CrossSigningKeys.generate()
    world.af.verify("PHONE")  # the AF's own phone made and signed the identity (Element at upgrade)
    world.trust.stale(AF)
    verdict = await world.verdict()
    assert not verdict.held and verdict.readers == {"PHONE"} and world.alerts.sent == []
    assert world.state()["master"] == world.af.identity.master_public


async def test_the_bots_other_devices_get_no_room_keys():
    world = World("tofu")
    world.add_af_device("PHONE")
    old = FakeAccount(BOT, cross_signing_identity=False)
    old.add_device("OLDSTORE")
    world.client.learn_devices(old, "OLDSTORE")
    room = world.client.add_room(ROOM, AF)
    await world.devices.prepare(room, AF, False)
    assert world.client.blacklisted(BOT) == {"OLDSTORE"}
    assert ROOM in world.client.invalidated  # a key the old device may hold is not used again


async def test_only_a_device_that_may_read_may_speak_for_the_af():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.add_af_device("LAPTOP", signed=False)
    await world.verdict()
    assert await world.devices.may_speak(AF, "cPHONE")
    assert not await world.devices.may_speak(AF, "cLAPTOP")
    assert not await world.devices.may_speak(AF, None)
    assert not await world.devices.may_speak(AF, "cUNKNOWN")


async def test_a_federated_af_whose_server_does_not_answer_is_not_an_identity_change():
    world = World("tofu")
    world.add_af_device("PHONE")
    await world.verdict()

    async def failing(client, user_ids):
        return {"device_keys": {}, "failures": {"bergeijk.nl": {"errcode": "M_UNREACHABLE"}}}

    world.trust._query = failing
    world.trust.stale(AF)
    with pytest.raises(DeliveryError):
        await world.trust.verdict(AF)
    assert world.alerts.sent == [] and world.state()["master"] == world.af.identity.master_public


class RefusingSender(FakeSender):
    """The homeserver refuses the first message for good (as M_TOO_LARGE would), then takes the rest."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__()
        self.error = error

    async def send(self, room_id, reply, key, *, recipient=None, unguarded=False) -> None:
        if not self.sent and self.error:
            error, self.error = self.error, None
            self.sent.append((room_id, "refused", key, unguarded))
            raise error
        await super().send(room_id, reply, key, recipient=recipient, unguarded=unguarded)


@pytest.mark.parametrize("error, told", [
    (DeliveryError("homeserver said M_TOO_LARGE", permanent=True), True),
    (RoomGone("homeserver said M_FORBIDDEN"), False),     # nobody left to tell
])
async def test_a_direct_answer_the_homeserver_refuses_is_followed_by_a_short_notice(tmp_path, error, told):
    sender = RefusingSender(error)
    inbound = Inbound(FakeClient(), handle=None, sender=sender, direct=SimpleNamespace(forget=lambda r: None),
                      devices=None, book=_book(), texts=texts("nl"), token_file=JsonFile(tmp_path / "t.json"),
                      retry_cap=0.01, poll_ms=0, pointer_interval=600.0, key_wait=1.0)
    await inbound._send(EMPLOYEE_ROOM, Reply("een heel lang antwoord"), "answer:$e")
    notices = [text for _, text, _, _ in sender.sent[1:]]
    assert notices == ([texts("nl")("matrix.answer_failed")] if told else [])


async def test_matrix_trust_for_an_id_that_differs_only_in_capitals_names_the_configured_id(tmp_path, capsys):
    from meldbot.run.matrix_trust import run_command
    from tests.support import make_config

    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/x.db", MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9",
                         MELDBOT_MATRIX__USER_ID=BOT, MELDBOT_MELDPUNT__0__AF__0__MATRIX=AF)
    args = SimpleNamespace(user_id="@Anna:bergeijk.nl", yes=True)
    assert await run_command(config, texts("nl"), args) == 2       # nothing asked of the homeserver
    said = capsys.readouterr().err
    assert "@Anna:bergeijk.nl staat niet als AF" in said and f"Wel staat er {AF}" in said
    assert "hoofd- en kleine letters" in said and not (tmp_path / "x.db").exists()


# --- device ids chosen by whoever logs in: shown escaped, never as lines of their own ---------------------------

# Synapse takes any device id up to 512 characters at login: whoever has the AF's password chooses it.
HOSTILE_DEVICE_IDS = [
    "EVIL\nDit apparaat is van de AF zelf. Je hoeft niets te doen.",
    "\x1b[2K\x1b[1A- Telefoon (PHONE): bevestigd door de AF, leest mee",
    "PHONE\u202e\u2066DAB\u2069",
    "PHONE\u200b",
    "\u2028Alles is in orde\r\n",
    "X" * 512,
]


def _is_one_plain_line(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


@pytest.mark.parametrize("device_id", HOSTILE_DEVICE_IDS)
async def test_a_hostile_device_id_reaches_the_af_alert_escaped_on_one_line(device_id):
    plain = World("tofu", cross_signing_identity=False)
    plain.add_af_device("PHONE")
    await plain.verdict()
    plain.add_af_device("TABLET")
    plain.trust.stale(AF)
    await plain.verdict()
    world = World("tofu", cross_signing_identity=False)
    world.add_af_device("PHONE")
    await world.verdict()
    world.add_af_device(device_id)
    world.trust.stale(AF)
    await world.verdict()
    [alert] = world.alerts.sent
    shown = alert.params["device_id"]
    assert _is_one_plain_line(shown) and len(shown) <= 64 and shown != device_id
    assert alert.key == alert_key("device", AF, device_id)        # the key still tells ids apart exactly
    t = texts("nl")
    said = t(alert.text, **alert.params)
    assert said.count("\n") == t(alert.text, **plain.alerts.sent[0].params).count("\n")
    assert "\x1b" not in said and "\u202e" not in said and "\u200b" not in said


async def test_a_hostile_unsigned_device_id_reaches_the_af_alert_escaped_and_two_look_alikes_differ():
    world = World("tofu")
    world.add_af_device("PHONE")
    await world.verdict()
    for device_id in ("PHONE\u200b", "X" * 511 + "A", "X" * 511 + "B"):
        world.add_af_device(device_id, signed=False)
    world.trust.stale(AF)
    await world.verdict()
    shown = [a.params["device_id"] for a in world.alerts.sent]
    assert [a.text for a in world.alerts.sent] == ["matrix.unsigned_device"] * 3
    assert all(_is_one_plain_line(s) and len(s) <= 64 for s in shown)
    assert len(set(shown)) == 3 and "PHONE" not in shown


def test_an_ordinary_device_id_is_shown_as_it_is():
    from meldbot.adapters.matrix.trust import shown_device_id

    assert shown_device_id("ABCDEFGHIJ") == "ABCDEFGHIJ"
    assert shown_device_id("my-laptop_2") == "my-laptop_2"
    assert shown_device_id("PHONE\ud800") == "'PHONE\\ud800'"     # a lone surrogate (valid JSON) too


async def test_matrix_trust_lists_hostile_device_ids_escaped_one_line_each(tmp_path, capsys, monkeypatch):
    import contextlib

    from meldbot.run import cli
    from meldbot.run.matrix_trust import run_command
    from tests.support import make_config

    world = World("tofu")
    world.add_af_device("PHONE")
    for device_id in HOSTILE_DEVICE_IDS:
        world.add_af_device(device_id, signed=False)

    @contextlib.asynccontextmanager
    async def admin_client(settings, password):
        yield None

    monkeypatch.setattr(cli, "_matrix_admin_client", admin_client)
    monkeypatch.setattr(cross_signing, "query_keys", world.server.query)
    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/x.db", MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9",
                         MELDBOT_MATRIX__USER_ID=BOT, MELDBOT_MATRIX__PASSWORD="geheim",
                         MELDBOT_MELDPUNT__0__AF__0__MATRIX=AF)
    args = SimpleNamespace(user_id=AF, yes=False)
    assert await run_command(config, texts("nl"), args) == 1          # stdin is no terminal: asks for --yes
    listing = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert len(listing) == 1 + len(HOSTILE_DEVICE_IDS)
    assert all(_is_one_plain_line(line) for line in listing)
    assert sum("bevestigd door de AF, leest mee" in line for line in listing) == 1


def test_matrix_trust_shows_a_master_key_that_is_no_ed25519_key_escaped_on_one_line():
    from meldbot.run.matrix_trust import fingerprint

    key = "A" * 43
    assert fingerprint(key) == " ".join(["AAAA"] * 10 + ["AAA"])
    shown = fingerprint("abc\n\x1b[1Aok\u202e")
    assert _is_one_plain_line(shown) and "\n" not in shown


# --- Devices.recheck: the look an AF's awaited signature needs ----------------------------------------------------

async def test_the_nearest_recheck_of_an_af_wins_and_a_further_one_is_dropped():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.devices.recheck(AF, 0.4)
    world.devices.recheck(AF, 0.1)       # a new device wants a look in 2 s while one is due in 28 s
    world.devices.recheck(AF, 5.0)       # further than the one due: dropped
    assert len(world.spawned) == 2
    await asyncio.gather(*world.spawned)
    world.spawned.clear()
    assert len(world.server.queries) == 1            # one look, the nearest; the replaced one did nothing
    world.devices.recheck(AF, 0.1)                   # after it, a new look can be planned
    assert len(world.spawned) == 1
    await world.run_spawned()
    assert len(world.server.queries) == 2


async def test_a_due_recheck_that_finds_the_homeserver_away_is_planned_again():
    world = World("tofu")
    world.add_af_device("PHONE")
    world.server.down = True
    world.devices.recheck(AF, 0.1)
    await world.spawned.pop(0)
    assert len(world.spawned) == 1 and AF in world.devices._rechecks      # tried again later, not dropped
    world.spawned.pop(0).close()


async def test_a_cancelled_recheck_leaves_room_for_the_next(monkeypatch):
    world = World("tofu")
    world.add_af_device("PHONE")
    world.devices.recheck(AF, 30.0)
    sleeping = asyncio.Event()
    real_sleep = asyncio.sleep

    async def noted_sleep(delay):
        sleeping.set()
        await real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", noted_sleep)
    task = asyncio.ensure_future(world.spawned.pop(0))
    await asyncio.wait_for(sleeping.wait(), 5)         # the look is waiting for its moment
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    world.devices.recheck(AF, 20.0)
    assert len(world.spawned) == 1
    world.spawned.pop(0).close()
