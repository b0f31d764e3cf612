"""The sync stream and what comes in: invites, messages in order per room, undecryptable messages."""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nio import (
    AsyncClient,
    BadEvent,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    LocalProtocolError,
    MegolmEvent,
    MessageDirection,
    RoomEncryptedMedia,
    RoomMemberEvent,
    RoomMessageEmote,
    RoomMessageMedia,
    RoomMessagesError,
    RoomMessageText,
    RoomMessageUnknown,
    StickerEvent,
    SyncError,
    ToDeviceMessage,
    UnknownToDeviceEvent,
)

from meldbot.adapters.matrix.common import (
    NETWORK_ERRORS, PERMANENT, PLATFORM, ROOM_GONE, AddressBook, JsonFile, RoomGone, backoff, domain_of, log,
)
from meldbot.adapters.matrix.direct import DirectRooms
from meldbot.adapters.matrix.outbound import Sender
from meldbot.adapters.matrix.trust import Devices
from meldbot.core.answer_first import answer_first
from meldbot.core.messaging import DeliveryError, Identity, IncomingMessage, RecipientAway, Reply

MEDIA = (RoomMessageMedia, RoomEncryptedMedia, StickerEvent)
MEDIA_TYPES = {"m.image", "m.file", "m.audio", "m.video", "m.location"}

Handle = Callable[[IncomingMessage], Awaitable[list[Reply]]]

# A standby's sync: only what is sent to its own device (room keys), nothing of rooms, presence or account data.
LIGHT_FILTER = {"room": {"rooms": [], "account_data": {"not_types": ["*"]}}, "presence": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]}}
CATCH_UP_AT_ONCE = 8  # rooms caught up at the same time after a take-over
CATCH_UP_PAGES = 500  # pages of 100 events per room at most: a room that never ends is logged, not paged forever


@dataclass
class Counts:
    """What happened to messages the bot could not decrypt at first (for /metrics and `meldbot doctor`)."""

    waiting: int = 0          # now waiting for their key
    late: int = 0             # decrypted when the key came later
    unreadable: int = 0       # stayed undecryptable: the sender was asked to send again
    on_change: list[Callable[["Counts"], None]] = field(default_factory=list)

    def changed(self) -> None:
        for callback in self.on_change:
            callback(self)


class Inbound:
    def __init__(self, client: AsyncClient, *, handle: Handle, sender: Sender, direct: DirectRooms,
                 devices: Devices, book: AddressBook, texts, token_file: JsonFile, retry_cap: float,
                 poll_ms: int, pointer_interval: float, key_wait: float,
                 handled: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.client = client
        self._handled = handled
        self._on_position: Callable[[str], Awaitable[None]] | None = None
        self._catching_up = asyncio.Semaphore(CATCH_UP_AT_ONCE)
        self._handle = handle
        self._sender = sender
        self._direct = direct
        self._devices = devices
        self._book = book
        self._t = texts
        self._token_file = token_file
        self._retry_cap = retry_cap
        self._poll_ms = poll_ms
        self._pointer_interval = pointer_interval
        self.key_wait = key_wait
        self.timeline_limit = 50
        self.counts = Counts()
        self.ready = asyncio.Event()
        self._synced = asyncio.Event()
        self.last_sync: float | None = None
        self.tasks: set[asyncio.Task] = set()
        self._room_tail: dict[str, asyncio.Task] = {}
        self.token_tail: asyncio.Task | None = None
        self._pointer_at: dict[str, float] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        # (sender key, megolm session id) -> the code the sender's device gave for withholding the key
        self._withheld: OrderedDict[tuple[str, str], str] = OrderedDict()

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self, housekeeping: Callable[[], Awaitable[None]], *, light: bool = False,
                  catch_up_from: str | None = None, on_position: Callable[[str], Awaitable[None]] | None = None) -> None:
        """The sync loop of this device, from its own token (so no message to this device is lost).

        `light`: a standby's loop: to-device messages and key housekeeping only. `catch_up_from`: the shared
        position the previous holder fully handled; the first answer's rooms are then read from there on
        instead (GET /messages), so what came while nobody held the stream is answered once. `on_position`
        gets each position once everything up to it was handled."""
        saved = self._token_file.load()
        position = saved.get("next_batch") if saved else None
        if catch_up_from is not None and catch_up_from == position:
            catch_up_from = None  # this device was the last holder: its own token is where things stand
        self._on_position = on_position
        first, failures = True, 0
        while True:
            try:
                response = await self.client.sync(
                    timeout=0 if first else self._poll_ms, sync_filter=LIGHT_FILTER if light else self._sync_filter(),
                    since=position,
                    # After a restart nio knows no rooms: the first sync brings their whole state.
                    full_state=True if first and not light else None,
                )
            except NETWORK_ERRORS as exc:
                failures += 1
                log.warning("matrix sync failed, will retry", extra={"error": type(exc).__name__, "attempt": failures})
                await asyncio.sleep(backoff(failures, self._retry_cap))
                continue
            if isinstance(response, SyncError):
                if response.status_code == "M_UNKNOWN_TOKEN":
                    log.error("matrix access token no longer valid; remove credentials.json and log in again")
                    return
                failures += 1
                log.warning("matrix sync refused, will retry",
                            extra={"error": response.status_code, "attempt": failures})
                await asyncio.sleep(backoff(failures, self._retry_cap))
                continue
            failures = 0
            try:
                if light:
                    self._process_to_device(response)
                    self._save_token_after_light(response.next_batch)
                else:
                    # Without a stored token the first answer is history: it is looked at, never answered.
                    self._process(response, history=position is None, since=position,
                                  catch_up=catch_up_from if first else None)
            except Exception as exc:  # a bug must not end the sync loop; this response is fetched again
                log.error("matrix sync response not processed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._retry_cap)
                continue
            position, first = response.next_batch, False
            try:
                await housekeeping()
            except NETWORK_ERRORS as exc:
                log.warning("matrix key maintenance failed, will retry", extra={"error": type(exc).__name__})
            except Exception as exc:
                log.error("matrix key maintenance failed", extra={"error": type(exc).__name__})
            self.last_sync = time.monotonic()
            if not light:
                self.ready.set()
            self._synced.set()
            self._synced = asyncio.Event()

    def _sync_filter(self) -> dict:
        return {"room": {"timeline": {"limit": self.timeline_limit}, "state": {"lazy_load_members": False}},
                "presence": {"not_types": ["*"]}}

    async def wait_synced(self, timeout: float) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _save_token_after_light(self, token: str) -> None:
        try:
            self._token_file.save({"next_batch": token})
        except OSError as exc:
            log.error("matrix sync token not saved", extra={"error": type(exc).__name__})

    def _process(self, response, *, history: bool, since: str | None, catch_up: str | None = None) -> None:
        """One sync response; no awaits, so it is never cut in half. Work goes to per-room tasks."""
        self._process_to_device(response)
        batch: list[asyncio.Task] = []
        for room_id, info in response.rooms.invite.items():
            batch.append(self._queue(room_id, lambda r=room_id, i=info: self._answer_invite(r, i)))
        for room_id, info in response.rooms.join.items():
            if catch_up is not None:
                # After a take-over: everything since the previous holder's position, this answer included.
                batch.append(self._queue(room_id, lambda r=room_id: self._catch_up(r, catch_up)))
                continue
            if history:
                continue
            timeline = info.timeline
            gap = (timeline.prev_batch, since) if timeline.limited and since and timeline.prev_batch else None
            events = list(timeline.events)
            if events or gap:
                batch.append(self._queue(room_id, lambda r=room_id, e=events, g=gap: self._room_events(r, e, g)))
        for room_id in response.rooms.leave:
            self._direct.forget(room_id)
            self._pointer_at.pop(room_id, None)
        self.token_tail = asyncio.create_task(self._save_token_after(self.token_tail, batch, response.next_batch))

    def _process_to_device(self, response) -> None:
        for event in response.to_device_events:
            if isinstance(event, UnknownToDeviceEvent) and event.type == "m.room_key.withheld":
                content = event.source.get("content") or {}
                if isinstance(content.get("session_id"), str) and isinstance(content.get("sender_key"), str):
                    key = (content["sender_key"], content["session_id"])
                    self._withheld[key] = str(content.get("code") or "m.unavailable")
                    while len(self._withheld) > 1000:
                        self._withheld.popitem(last=False)

    def _queue(self, room_id: str, work: Callable[[], Awaitable[None]]) -> asyncio.Task:
        """Run `work` after everything queued before for this room: messages keep their order."""
        previous = self._room_tail.get(room_id)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the error boundary of one room's events: no content, no ids in logs
                log.error("matrix event handling failed", extra={"error": type(exc).__name__})

        task = asyncio.create_task(run())
        self._room_tail[room_id] = task
        self.tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            if self._room_tail.get(room_id) is t:
                del self._room_tail[room_id]

        task.add_done_callback(done)
        return task

    async def _save_token_after(self, previous: asyncio.Task | None, batch: list[asyncio.Task], token: str) -> bool:
        """Store the token only once this response and every earlier one were fully handled.

        A crash before that makes the homeserver send the events again; the core answers a known
        event_id with the replies it gave before, and the transaction ids make the homeserver show
        them once.
        """
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() or not previous.result():
                return False
        if batch:
            await asyncio.wait(batch)
            if any(t.cancelled() for t in batch):
                return False
        try:
            self._token_file.save({"next_batch": token})
        except OSError as exc:
            log.error("matrix sync token not saved", extra={"error": type(exc).__name__})
            return False
        if self._on_position is not None:
            try:
                await self._on_position(token)
            except Exception as exc:  # the next position is saved all the same; a take-over reads a bit more
                log.warning("matrix shared sync position not saved", extra={"error": type(exc).__name__})
        return True

    # --- invites ------------------------------------------------------------------------------------

    async def _answer_invite(self, room_id: str, info) -> None:
        me = self.client.user_id
        invite = next((e for e in info.invite_state if isinstance(e, InviteMemberEvent)
                       and e.state_key == me and e.membership == "invite"), None)
        inviter = invite.sender if invite else ""
        if not self._book.may_invite(inviter):
            log.warning("matrix invite declined", extra={"inviter_domain": domain_of(inviter)})
            await self._retrying(lambda: self.client.room_leave(room_id), "decline invite")
            return
        response = await self._retrying(lambda: self.client.join(room_id), "join")
        if isinstance(response, JoinResponse):
            log.info("matrix invite accepted")
            if invite and invite.content.get("is_direct"):
                self._direct.invited_to(inviter, room_id)

    async def _retrying(self, call: Callable[[], Awaitable], what: str, attempts: int = 6):
        response = None
        for attempt in range(attempts):
            try:
                response = await call()
            except NETWORK_ERRORS as exc:
                response = exc
            else:
                if not isinstance(response, ErrorResponse) or response.status_code in PERMANENT | ROOM_GONE:
                    break
            await asyncio.sleep(backoff(attempt + 1, self._retry_cap))
        if isinstance(response, (ErrorResponse, Exception)):
            error = getattr(response, "status_code", None) or type(response).__name__
            log.warning("matrix request failed", extra={"what": what, "error": error})
        return response

    # --- messages -----------------------------------------------------------------------------------

    async def _catch_up(self, room_id: str, position: str) -> None:
        """A new holder: this room's events since the shared position, oldest first (GET /messages dir=f;
        the spec allows a sync token as `from`). Handled already by the previous holder is skipped."""
        found: list = []
        token = position
        complete = False
        async with self._catching_up:
            # Page up to the end of the room; the bound only stops a homeserver that never ends.
            for _ in range(CATCH_UP_PAGES):
                response = await self._retrying(
                    lambda t=token: self.client.room_messages(room_id, start=t, direction=MessageDirection.front,
                                                              limit=100), "catch up")
                if isinstance(response, (RoomMessagesError, Exception)):
                    break
                found.extend(response.chunk)
                if not response.chunk or not response.end or response.end == token:
                    complete = True
                    break
                token = response.end
        if not complete:
            log.error("matrix catch-up after a take-over stopped early; events may be missing",
                      extra={"events": len(found)})
        if found:
            log.info("matrix room caught up after a take-over", extra={"events": len(found)})
        await self._room_events(room_id, found, None, caught_up=True)

    async def _room_events(self, room_id: str, events: list, gap: tuple[str, str] | None,
                           caught_up: bool = False) -> None:
        if gap:
            events = await self._fetch_gap(room_id, *gap) + events
        me = self.client.user_id
        # Nothing from before the bot was invited is answered: a room can come with old history. What
        # was written between the invite and the join was meant for the bot (Element sends the first
        # message of a new direct chat before the invitee joined).
        start, invited_at = 0, None
        for index, event in enumerate(events):
            if isinstance(event, RoomMemberEvent) and event.state_key == me:
                if event.membership == "invite":
                    invited_at = index + 1
                elif event.membership == "join" and event.prev_membership != "join":
                    start, invited_at = (invited_at if invited_at is not None else index + 1), None
        if invited_at is not None:
            start = invited_at
        for index in range(start, len(events)):
            event = events[index]
            if getattr(event, "sender", me) == me or not self._first_time(event.event_id):
                continue
            if caught_up and await self._answered_before(event, events[index + 1:]):
                continue
            await self._on_event(room_id, event)

    async def _answered_before(self, event, later: list) -> bool:
        """Caught up after a take-over: an event the previous holder handled and answered (its answer is
        in the room after it) is not answered again; handled but not answered (it died in between) gets its
        stored answer, as after a restart."""
        if self._handled is None:
            return False
        me = self.client.user_id
        if not any(getattr(e, "sender", None) == me for e in later):
            return False
        try:
            return await self._handled(event.event_id)
        except Exception as exc:  # not known: handle it; the core answers a known event with its stored answer
            log.warning("matrix handled-event check failed", extra={"error": type(exc).__name__})
            return False

    def _first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        while len(self._seen) > 5000:
            self._seen.popitem(last=False)
        return True

    async def _fetch_gap(self, room_id: str, start: str, until: str) -> list:
        """The events a limited timeline left out, oldest first."""
        found: list = []
        token = start
        for _ in range(20):
            response = await self._retrying(
                lambda t=token: self.client.room_messages(room_id, start=t, end=until, limit=100), "fetch gap")
            if isinstance(response, (RoomMessagesError, Exception)) or not response.chunk:
                break
            found.extend(response.chunk)
            if not response.end or response.end == token:
                break
            token = response.end
        found.reverse()
        if found:
            log.info("matrix timeline gap fetched", extra={"events": len(found)})
        return found

    async def _on_event(self, room_id: str, event) -> None:
        room = self.client.rooms.get(room_id)
        if room is None:
            return
        if isinstance(event, MegolmEvent):
            event = await self._await_key(room_id, event)
            if event is None:
                return
        content = event.source.get("content", {})
        relation = content.get("m.relates_to") or {}
        if isinstance(event, (RoomMessageText, RoomMessageEmote)):
            text, attachment = without_reply_fallback(event.body, relation), False
        elif (isinstance(event, MEDIA) or (isinstance(event, RoomMessageUnknown) and event.msgtype in MEDIA_TYPES)
              or (isinstance(event, BadEvent) and event.type == "m.room.message"
                  and content.get("msgtype") in MEDIA_TYPES)):
            # A caption (body differing from the file name) is kept as text; the file never is. A
            # malformed file message still gets its answer: nothing a person sends vanishes silently.
            body, filename = content.get("body", ""), content.get("filename")
            text = body if isinstance(body, str) and filename and body and body != filename else ""
            attachment = True
        elif (isinstance(event, BadEvent) and event.type == "m.room.message"
              and content.get("msgtype") in ("m.text", "m.emote") and isinstance(content.get("body"), str)):
            text, attachment = content["body"], False
        else:
            return  # notices of other bots, reactions, state, calls: nothing to answer
        if room.encrypted and not getattr(event, "decrypted", False):
            # Plain text in an encrypted room did not come from a client: only a server could put it there.
            log.warning("matrix unencrypted message in an encrypted room ignored")
            return
        if relation.get("rel_type") == "m.replace":
            # An edit would answer a question already passed; say so instead of guessing.
            await self._send(room_id, Reply(self._t("matrix.edit_ignored")), f"edit:{event.event_id}")
            return
        others = set(room.users) - {self.client.user_id}
        private = others == {event.sender}
        if not private:
            # A larger room: only a pointer to a direct chat, not after every line of a conversation.
            now = time.monotonic()
            if now - self._pointer_at.get(room_id, -1e9) < self._pointer_interval:
                return
            self._pointer_at[room_id] = now
        elif self._book.is_af(event.sender):
            refusal = await self._af_refusal(event)
            if refusal:
                # Content-free, so every device of the AF may read why nothing else comes.
                await self._send(room_id, Reply(self._t(refusal)), f"refused:{event.event_id}", unguarded=True)
                return
        member = room.users.get(event.sender)
        message = IncomingMessage(
            sender=Identity(PLATFORM, event.sender), conversation_id=room_id, text=text, event_id=event.event_id,
            is_private=private, has_attachment=attachment, sender_name=member.display_name if member else None,
        )
        with answer_first():   # the outbox's work this turn started waits for its answer
            replies = await self._handle(message)
            for index, reply in enumerate(replies):
                await self._send(room_id, reply, f"{event.event_id}:{index}")

    async def _af_refusal(self, event) -> str | None:
        """Why a message from an AF's account is not taken as the AF's, or None when it is: the AF's identity
        waits for an administrator, or the device that sent it is not confirmed by the AF (someone with the
        password on a new device may not act as the AF), or the keys cannot be checked now (fail closed)."""
        try:
            if await self._devices.is_held(event.sender):
                return "matrix.identity_held"
            if not await self._devices.may_speak(event.sender, getattr(event, "sender_key", None)):
                log.warning("message from an AF device that is not confirmed: not handled")
                return "matrix.device_unconfirmed"
        except DeliveryError as exc:
            log.warning("AF keys not checkable; message not handled", extra={"reason": exc.reason})
            return "matrix.keys_unavailable"
        return None

    async def _await_key(self, room_id: str, event: MegolmEvent):
        """A message the bot cannot read yet: ask for its key and wait for it (a late to-device message,
        an answered key request) while this room's later messages wait behind it, in order. Only when
        the key cannot come (withheld, or not within `key_wait`) is the sender asked to send again."""
        await self._request_key(event)
        self.counts.waiting += 1
        self.counts.changed()
        deadline = time.monotonic() + self.key_wait
        try:
            while True:
                decrypted = self._try_decrypt(event)
                if decrypted is not None:
                    self.counts.late += 1
                    log.info("matrix message decrypted after its key arrived late")
                    return decrypted
                withheld = self._withheld.get((event.sender_key, event.session_id))
                remaining = deadline - time.monotonic()
                if withheld or remaining <= 0:
                    break
                try:
                    await self.wait_synced(min(remaining, 5.0))
                except TimeoutError:
                    pass
        finally:
            self.counts.waiting -= 1
            self.counts.changed()
        self.counts.unreadable += 1
        self.counts.changed()
        log.warning("matrix message could not be decrypted; sender asked to resend",
                    extra={"reason": withheld or "no key in time"})
        await self._send(room_id, Reply(self._t("matrix.undecryptable")), f"undecryptable:{event.event_id}")
        return None

    async def _request_key(self, event: MegolmEvent) -> None:
        """nio asks only the bot's own devices; the spec's key request also goes to the sender's device,
        which may share the key again (e.g. once it trusts the bot)."""
        try:
            await self.client.request_room_key(event)
        except LocalProtocolError:
            pass  # already requested for this session
        except NETWORK_ERRORS as exc:
            log.warning("matrix room key request failed", extra={"error": type(exc).__name__})
        request = {"action": "request", "requesting_device_id": self.client.device_id,
                   "request_id": f"mb{event.session_id[:16]}",
                   "body": {"algorithm": event.algorithm, "room_id": event.room_id,
                            "sender_key": event.sender_key, "session_id": event.session_id}}
        try:
            await self.client.to_device(ToDeviceMessage("m.room_key_request", event.sender, event.device_id, request))
        except NETWORK_ERRORS as exc:
            log.warning("matrix room key request to the sender failed", extra={"error": type(exc).__name__})

    def _try_decrypt(self, event: MegolmEvent):
        try:
            decrypted = self.client.decrypt_event(event)
        except Exception:  # nio raises EncryptionError (and others) while the session is unknown
            return None
        if decrypted is None or isinstance(decrypted, MegolmEvent):
            return None
        decrypted.room_id = event.room_id
        return decrypted

    async def _send(self, room_id: str, reply: Reply, key: str, *, unguarded: bool = False) -> None:
        """A direct answer in the room it belongs to; retried while the homeserver is away.

        If the bot stops first, the sync token of this event is not saved and the event comes again.
        """
        failures = 0
        while True:
            try:
                await self._sender.send(room_id, reply, key, unguarded=unguarded)
                return
            except RecipientAway:
                log.warning("matrix reply held: the AF's identity is not confirmed")
                return
            except DeliveryError as exc:
                if exc.permanent or isinstance(exc, RoomGone):
                    log.warning("matrix reply not deliverable", extra={"reason": exc.reason})
                    if not isinstance(exc, RoomGone) and not key.startswith("failed:"):
                        # Never silent: the person hears that an answer did not arrive (once).
                        await self._send(room_id, Reply(self._t("matrix.answer_failed")), f"failed:{key}",
                                         unguarded=unguarded)
                    return
                failures += 1
                log.info("matrix reply failed, will retry", extra={"reason": exc.reason})
                await asyncio.sleep(backoff(failures, self._retry_cap))


_FALLBACK = re.compile(r"\A(?:>[^\n]*\n)+\n?")


def without_reply_fallback(body: str, relation: dict) -> str:
    """Replies quote the earlier message in their body ("> <@x> ..."); only the new text counts."""
    if "m.in_reply_to" in relation:
        return _FALLBACK.sub("", body, count=1)
    return body
