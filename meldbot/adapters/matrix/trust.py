"""Devices and trust: who gets the room key of what the bot sends.

Employees: every device they have (their own messages, their own risk). AFs read signal content, so
their devices are trusted by their cross-signing identity, not one by one:

- `tofu` (the default): the AF's identity (master key) is pinned the first time the bot sees it.
  Devices signed by it read what the bot sends; a new unsigned device gets nothing and the AF is
  alerted (they verify it in Element, which signs it). A changed identity holds all AF content for
  that AF until an administrator confirms it (`meldbot matrix-trust`); the AF is alerted. An AF who
  never set up cross-signing (an old client) is trusted device by device, alerted on every new one.
- `signed`: nothing goes to an AF until an administrator confirmed their identity with
  `meldbot matrix-trust`; then only devices signed by it read.

The state per AF (pinned key, key waiting for confirmation, devices already seen) lives in the
database, so every process and every new device of the bot agrees on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from nio import AsyncClient, KeysQueryResponse, LocalProtocolError

from meldbot.adapters.matrix import cross_signing
from meldbot.adapters.matrix.common import NETWORK_ERRORS, AddressBook, keys_query, log
from meldbot.core.messaging import DeliveryError, RecipientAway
from meldbot.core.text import clean_name


class TrustStore(Protocol):
    async def get(self, af_id: str) -> dict | None: ...

    async def put(self, af_id: str, state: dict, expected: dict | None = None) -> None:
        """Store `state` unless the stored state is no longer `expected` (an administrator's confirmation
        in between wins; the next look starts from it)."""
        ...


# alert(af_id, text_key, params, key, unguarded): queue a content-free message for the AF (the outbox).
Alert = Callable[[str, str, dict, str, bool], Awaitable[None]]


@dataclass
class Verdict:
    held: bool
    readers: set[str] = field(default_factory=set)
    ed25519: dict[str, str | None] = field(default_factory=dict)  # the device keys the readers were checked with


UNGUARDED_KINDS = ("identity", "unconfirmed")

# How long a send waits (by failing and being retried by the outbox) for a reader's device that has no
# Olm session yet, e.g. one that signed in a moment ago; after that it is left out of the room key.
SESSION_PATIENCE = 60.0


def is_unguarded_key(key: str) -> bool:
    """Alerts about the AF's identity go to every device of theirs: the held ones are the ones to warn."""
    return key.startswith("matrix-trust:") and key.split(":")[1] in UNGUARDED_KINDS


def alert_key(kind: str, *parts: str) -> str:
    """An outbox key without ids in it: the same alert twice (another process, a restart) is queued once."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    return f"matrix-trust:{kind}:{digest}"


# Element signs a new device a moment after it uploads its keys (and makes a new identity before its
# devices carry it). What looks unsigned is judged only after this grace, so the AF gets no false alarm.
UNSIGNED_GRACE_SECONDS = 60.0
# Meanwhile the bot looks again after 2, 4, 8, ... seconds (at most until the grace ends): a signature is
# normally announced as a device change, but one that crossed the bot's key query, or came while the AF
# shared no room with the bot, is not; the AF's first notice then waits seconds, not the whole grace.
FIRST_LOOK_SECONDS = 2.0
# A look that was due but found the homeserver away is tried again after this long.
RECHECK_RETRY_SECONDS = 10.0


class AfTrust:
    def __init__(self, client: AsyncClient, policy: str, book: AddressBook, store: TrustStore, alert: Alert,
                 query=cross_signing.query_keys, recheck: Callable[[str, float], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.grace = UNSIGNED_GRACE_SECONDS
        self._recheck = recheck or (lambda af_id, delay: None)
        self._clock = clock
        self.client = client
        self.policy = policy
        self._book = book
        self._store = store
        self._alert = alert
        self._query = query
        self._verdicts: dict[str, Verdict] = {}

    def stale(self, user_id: str) -> None:
        """The AF's devices or keys changed: look again before the next send."""
        self._verdicts.pop(user_id, None)

    def _look_soon(self, af_id: str, waited: float) -> None:
        """Something of the AF's may be signed in a moment (within the grace): look again after as long as it
        has waited so far (at least FIRST_LOOK_SECONDS), at the latest when the grace ends."""
        self._recheck(af_id, min(self.grace - waited, max(FIRST_LOOK_SECONDS, waited)))

    async def verdict(self, af_id: str) -> Verdict:
        known = self._verdicts.get(af_id)
        if known and not known.held:
            return known  # a held AF is looked at every time: an administrator may have confirmed them
        verdict = await self._evaluate(af_id)
        self._verdicts[af_id] = verdict
        return verdict

    async def _evaluate(self, af_id: str) -> Verdict:
        try:
            answer = await self._query(self.client, [af_id])
        except cross_signing.CrossSigningError as exc:
            raise DeliveryError(f"keys of the AF not readable ({exc.reason})") from None
        failures = answer.get("failures") or {}
        if af_id not in (answer.get("device_keys") or {}) or _domain(af_id) in failures:
            # The AF's server did not answer (federation): not knowing is not "the identity changed".
            raise DeliveryError("keys of the AF not available from their homeserver now")
        master = cross_signing.master_public_of(answer, af_id)
        devices = (answer.get("device_keys") or {}).get(af_id) or {}
        state = dict(await self._store.get(af_id) or {})
        before = dict(state)
        pinned = state.get("master")
        seen = set(state.get("devices", []))
        now = self._clock()
        waiting = False
        if master and pinned is None and self.policy == "tofu":
            signed = {d for d in devices if cross_signing.device_trust(answer, af_id, d).signed_by_owner}
            since = state.get("first_master", [None, now])
            if since[0] != master:
                since = [master, now]
            if not seen or signed & seen:
                # First use: nothing known yet, or a device the bot already trusted set up this identity.
                # Devices it does not sign are not "seen": the AF hears about each of them.
                state.update(master=master, pending=None, devices=sorted(seen | signed))
                state.pop("first_master", None)
                pinned, seen = master, seen | signed
                log.info("AF identity trusted on first use")
            elif now - since[1] < self.grace:
                # A known device may be about to sign itself with the new identity (Element does so at
                # set-up). Nothing goes out meanwhile, and nobody is alarmed yet.
                state["first_master"] = since
                waiting = True
                self._look_soon(af_id, now - since[1])
            # Otherwise an identity none of the AF's known devices carries: someone with the password
            # may have made it on a new device. Held below, as a changed identity, until confirmed.
        reason = None
        if (master or pinned) and master != pinned:
            reason = "identity" if pinned or seen else "unconfirmed"
        elif self.policy == "signed" and not state.get("confirmed"):
            reason = "unconfirmed"
        if reason and not waiting and state.get("alerted") != [reason, master]:
            state.update(pending=master, alerted=[reason, master])
            log.warning("AF identity not confirmed; AF content held until an administrator confirms it",
                        extra={"policy": self.policy, "reason": reason})
            text = "matrix.identity_changed" if reason == "identity" else "matrix.identity_unconfirmed"
            await self._alert(af_id, text, {}, alert_key(reason, af_id, master or "none"), True)
        held = reason is not None or waiting
        readers: set[str] = set()
        alerts: list[tuple[str, dict, str, str]] = []
        if not held and master is None and self.policy == "tofu":
            # An AF without cross-signing: every device reads, every new one is announced.
            if not seen:
                log.info("AF devices trusted on first use", extra={"count": len(devices)})
            else:
                for device_id in sorted(set(devices) - seen):
                    log.warning("new device on an AF account; AF alerted")
                    alerts.append(("matrix.new_device", {"device": _label(devices[device_id]), "device_id": shown_device_id(device_id)},
                                   alert_key("device", af_id, device_id), device_id))
            readers = set(devices)
        elif not held:
            unsigned = dict(state.get("unsigned_since", {}))
            for device_id, keys in devices.items():
                if cross_signing.device_trust(answer, af_id, device_id).signed_by_owner:
                    readers.add(device_id)
                elif device_id not in seen:
                    first = unsigned.setdefault(device_id, now)
                    if now - first < self.grace:
                        self._look_soon(af_id, now - first)
                        continue  # it may be signed in a moment; no reader meanwhile, and no alert yet
                    log.warning("unsigned device on an AF account gets nothing; AF alerted")
                    alerts.append(("matrix.unsigned_device", {"device": _label(keys), "device_id": shown_device_id(device_id)},
                                   alert_key("unsigned", af_id, device_id), device_id))
        for text, params, key, _ in alerts:
            # With no device that may read, the (content-free) alert goes to every device: it must arrive.
            await self._alert(af_id, text, params, key, not readers)
        if not held:
            alerted = {device_id for *_, device_id in alerts}
            if master is None:
                state["devices"] = sorted(seen | set(devices))
            else:  # signed devices, and unsigned ones the AF was told about
                state["devices"] = sorted(seen | readers | alerted)
                state["unsigned_since"] = {d: t for d, t in unsigned.items()
                                           if d in devices and d not in readers and d not in alerted}
                if not state["unsigned_since"]:
                    state.pop("unsigned_since")
        if not held and not readers:
            log.warning("AF has no device that may read; AF content waits")
        if state != before:
            await self._store.put(af_id, state, before)
        return Verdict(held=held, readers=readers,
                       ed25519={d: (k.get("keys") or {}).get(f"ed25519:{d}") for d, k in devices.items()})

    def apply(self, af_id: str, verdict: Verdict, *, everyone: bool = False) -> bool:
        """Blacklist in nio every AF device that may not read, unblacklist those that may; returns True when
        that changed anything (the room key must then be renewed: one already shared stays readable by a
        device taken away, and nio never gives an already shared key to a device it skipped)."""
        olm = self.client.olm
        changed = False
        for device in self.client.device_store.active_user_devices(af_id):
            expected = verdict.ed25519.get(device.id)
            may_read = everyone or (device.id in verdict.readers and expected == device.ed25519)
            blacklisted = olm.is_device_blacklisted(device)
            if may_read and blacklisted:
                self.client.unblacklist_device(device)
                changed = True
            elif not may_read and not blacklisted:
                self.client.blacklist_device(device)
                changed = True
        return changed

    def may_speak(self, af_id: str, verdict: Verdict, device) -> bool:
        """Whether a message from this device of the AF counts as the AF's: a device that may not read
        (not confirmed by the AF) may not act as the AF either."""
        return (device is not None and not verdict.held and device.id in verdict.readers
                and verdict.ed25519.get(device.id) == device.ed25519)


def _domain(user_id: str) -> str:
    return user_id.partition(":")[2]


def _label(device_keys: dict) -> str:
    # Whoever holds the account names the device: shown to the AF as their words, on one line.
    unsigned = device_keys.get("unsigned") or {}
    name = clean_name(str(unsigned.get("device_display_name") or ""))
    return name or shown_device_id(device_keys.get("device_id") or "?")


# What homeservers give out themselves (Synapse: ten capitals). Anything else was chosen by whoever
# logged in, and Synapse takes up to 512 characters of anything at login.
_PLAIN_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHOWN_DEVICE_ID_MAX = 48


def shown_device_id(device_id: object) -> str:
    """A device id as the AF's alert and the administrator's `matrix-trust` listing show it: as is when it
    looks like one a homeserver gives out; otherwise escaped (ASCII, quoted, one line: no newline, terminal
    escape or bidi override can forge a line or reorder one) and, when long, shortened with a digest of the
    whole, so that two different ids never look the same. Not cleaned away: a hidden character is the very
    difference between a look-alike and the real device, and the reader should see it."""
    text = str(device_id)
    if _PLAIN_DEVICE_ID.fullmatch(text):
        return text
    shown = ascii(text)
    if len(shown) > SHOWN_DEVICE_ID_MAX:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        shown = f"{shown[:SHOWN_DEVICE_ID_MAX - 3]}... #{digest}"
    return shown


class Devices:
    """Device lists before each send, and what a change in them means."""

    def __init__(self, client: AsyncClient, book: AddressBook, trust: AfTrust,
                 wake: Callable[[str], None], spawn: Callable[[Awaitable], object]) -> None:
        self.client = client
        self._book = book
        self.trust = trust
        self._wake = wake
        self._spawn = spawn
        self._rechecks: dict[str, float] = {}  # AF -> when the next look is due (time.monotonic)
        self._away: set[str] = set()  # recipients without any device; the outbox holds their messages
        self._no_session_since: dict[tuple[str, str], float] = {}  # (user, device) -> first seen without one
        self.session_patience = SESSION_PATIENCE
        # Held by every send to a room with an AF (the Sender's shared lock) and by every look at an AF's
        # devices: a look that blacklists a device while a send is between its check and nio's key share
        # (e.g. awaiting the key claim for that very device) would leave that message readable by nobody,
        # nio skipping the blacklisted device without a word; one that unblacklists mid-share is undone by
        # nio (it does not renew a key that is not marked shared yet).
        self.lock = asyncio.Lock()

    def devices_of(self, user_id: str) -> list:
        return list(self.client.device_store.active_user_devices(user_id))

    def after_keys_query(self, response) -> None:
        """Someone's devices changed: a fresh room key for their rooms, so a new device can read what
        comes next and a removed one cannot; the AF trust is looked at again; someone away is back."""
        if not isinstance(response, KeysQueryResponse):
            return
        changed = {user for user, devices in (response.changed or {}).items() if devices}
        # Cross-signing keys change without a device change: every AF that was asked about is looked at.
        for user_id in response.device_keys or {}:
            if self._book.is_af(user_id):
                # Also when only signatures changed (a device verified, a new identity): nio's `changed`
                # lists new and removed devices only. Announced now, not at the next message.
                self.trust.stale(user_id)
                self._spawn(self._look_again(user_id))
        if not changed:
            return
        for room in self.client.rooms.values():
            if room.encrypted and not changed.isdisjoint(room.users):
                self.client.invalidate_outbound_session(room.room_id)
        for user_id in changed:
            if user_id in self._away and self.devices_of(user_id):
                self._away.discard(user_id)
                self._wake(user_id)

    async def _look_again(self, af_id: str, *, retry: bool = False) -> None:
        async with self.lock:  # never between a send's check and its key share (see __init__)
            try:
                verdict = await self.trust.verdict(af_id)
            except DeliveryError as exc:
                log.info("AF keys not checked now; again before the next message", extra={"reason": exc.reason})
                if retry:   # a look that was due (a signature awaited): not dropped while the homeserver is away
                    self.recheck(af_id, RECHECK_RETRY_SECONDS)
                return
            if self.trust.apply(af_id, verdict):
                self._renew_rooms_of(af_id)
        if af_id in self._away and not verdict.held and verdict.readers:
            self._away.discard(af_id)
            self._wake(af_id)  # what waited for a readable device goes out now

    def recheck(self, af_id: str, delay: float) -> None:
        """Look at the AF's keys again after `delay` seconds. One look per AF is due at a time: the earliest
        asked for (a look further away is dropped; one nearer replaces it, and that look asks again for
        what still waits)."""
        due = time.monotonic() + max(delay, 0.1)
        planned = self._rechecks.get(af_id)
        if planned is not None and planned <= due:
            return
        self._rechecks[af_id] = due

        async def later() -> None:
            try:
                await asyncio.sleep(max(due - time.monotonic(), 0.0))
            except BaseException:
                if self._rechecks.get(af_id) == due:
                    del self._rechecks[af_id]
                raise
            if self._rechecks.get(af_id) != due:
                return  # replaced by a nearer look
            del self._rechecks[af_id]
            self.trust.stale(af_id)
            await self._look_again(af_id, retry=True)

        self._spawn(later())

    def _renew_rooms_of(self, user_id: str) -> None:
        for room in self.client.rooms.values():
            if room.encrypted and user_id in room.users:
                self.client.invalidate_outbound_session(room.room_id)

    def _only_this_device_of_the_bot(self) -> bool:
        """The bot's other devices (an old store folder, a restore) get no room keys: whoever holds such a
        folder would read what the bot sends. Returns True when that changed anything."""
        changed = False
        for device in self.client.device_store.active_user_devices(self.client.user_id):
            if device.id != self.client.device_id and not self.client.olm.is_device_blacklisted(device):
                self.client.blacklist_device(device)
                changed = True
        return changed

    async def refresh(self, room) -> None:
        try:
            if not room.members_synced:
                await self.client.joined_members(room.room_id)
            # No known device may just mean the news of a new login is still on its way: ask now.
            unknown = {u for u in room.users if u != self.client.user_id and not self.devices_of(u)}
            if unknown:
                self.client.olm.add_changed_users(unknown)
            if self.client.should_query_keys:
                self.after_keys_query(await keys_query(self.client))
        except LocalProtocolError:
            pass
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None

    async def prepare(self, room, recipient: str | None, unguarded: bool) -> None:
        """Before encrypting for a room: fresh lists, then only the devices that may read get the key."""
        if not room.encrypted:
            return
        await self.refresh(room)
        changed = self._only_this_device_of_the_bot()
        if changed:
            for other in self.client.rooms.values():
                if other.encrypted:
                    self.client.invalidate_outbound_session(other.room_id)
        for user_id in room.users:
            if user_id == self.client.user_id or not self._book.is_af(user_id):
                continue
            verdict = await self.trust.verdict(user_id)
            if self.trust.apply(user_id, verdict, everyone=unguarded):
                self._renew_rooms_of(user_id)
            # Decided by what nio will really encrypt for: a reader nio does not know (yet), or knows
            # with another key, reads nothing, and the message would count as delivered to nobody.
            readable = [d for d in self.devices_of(user_id) if not self.client.olm.is_device_blacklisted(d)]
            if not unguarded and (verdict.held or not readable):
                # Held: the outbox keeps it until an administrator confirms the AF's identity (or the AF
                # verifies a device); a direct answer is dropped by the caller, which says why. A device
                # that shows up wakes what waits.
                self._away.add(user_id)
                raise RecipientAway(user_id)
        if unguarded:
            self.client.invalidate_outbound_session(room.room_id)
        if recipient and not self.devices_of(recipient):
            # Sent now, it could never be read: the room key would go to no device of theirs. The outbox
            # holds it until they sign in somewhere (see after_keys_query).
            self._away.add(recipient)
            raise RecipientAway(recipient)
        await self._sessions_for_readers(room)

    async def _sessions_for_readers(self, room) -> None:
        """nio hands the room key only to devices it has an Olm session with; one without is skipped
        and the key still counts as shared, so that device could never read this message nor the next
        ones with the same key (a device that appeared a moment ago, whose one-time keys were not yet
        claimable). Claim now; a device that still has no session makes this attempt fail, and the
        outbox tries again in a few seconds. After SESSION_PATIENCE seconds such a device is left out."""
        missing = self._missing_sessions(room)
        if missing:
            try:
                await self.client.keys_claim(missing)
            except LocalProtocolError:
                pass
            except NETWORK_ERRORS as exc:
                raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
            missing = self._missing_sessions(room)
        now = time.monotonic()
        waiting = False
        for user_id, devices in missing.items():
            for device_id in devices:
                first = self._no_session_since.setdefault((user_id, device_id), now)
                waiting = waiting or now - first < self.session_patience
        if waiting:
            log.info("a reader's device has no encryption session yet; trying again soon")
            raise DeliveryError("a device of a reader has no encryption session yet")

    def _missing_sessions(self, room) -> dict[str, list[str]]:
        olm = self.client.olm
        missing: dict[str, list[str]] = {}
        for user_id in room.users:
            for device in self.devices_of(user_id):
                if device.id == self.client.device_id or olm.is_device_blacklisted(device):
                    continue
                if not olm.session_store.get(device.curve25519):
                    missing.setdefault(user_id, []).append(device.id)
        return missing

    def has_af(self, room) -> bool:
        return any(self._book.is_af(u) for u in room.users if u != self.client.user_id)

    async def is_held(self, af_id: str) -> bool:
        return (await self.trust.verdict(af_id)).held

    async def may_speak(self, af_id: str, sender_key: str | None) -> bool:
        """A message from an AF counts only from a device that may read (raises DeliveryError when the
        keys cannot be checked now)."""
        verdict = await self.trust.verdict(af_id)
        device = self.client.device_store.device_from_sender_key(af_id, sender_key) if sender_key else None
        return self.trust.may_speak(af_id, verdict, device)
