"""Matrix as a chat platform: matrix-nio with end-to-end encryption, translating events to and from the core."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    BadEvent,
    DirectRoomsResponse,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    KeysQueryResponse,
    LocalProtocolError,
    LoginResponse,
    MegolmEvent,
    ProfileGetError,
    RoomCreateError,
    RoomEncryptedMedia,
    RoomMemberEvent,
    RoomMessageEmote,
    RoomMessageMedia,
    RoomMessagesError,
    RoomMessageText,
    RoomMessageUnknown,
    RoomPreset,
    RoomSendError,
    SendRetryError,
    StickerEvent,
    SyncError,
    UploadError,
    UploadResponse,
    WhoamiResponse,
)
from nio.api import Api

from adapters.matrix.render import image_content, render
from meldbot.i18n import texts
from meldbot.messaging import DeliveryError, Identity, IncomingMessage, RecipientAway, Reply

PLATFORM = "matrix"
log = logging.getLogger("meldbot.matrix")

ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
MEDIA = (RoomMessageMedia, RoomEncryptedMedia, StickerEvent)
MEDIA_TYPES = {"m.image", "m.file", "m.audio", "m.video", "m.location"}
# Errors about the message itself, which no retry mends. A bad token or a lost room is the bot's
# problem, not the message's: those are retried (after a fix, or in a new direct chat).
PERMANENT = {"M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE", "M_INVALID_PARAM"}
ROOM_GONE = {"M_FORBIDDEN", "M_NOT_FOUND"}
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)

# Set while this adapter sends for the outbox, so a long rate limit ends the attempt instead of waiting.
_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("meldbot_matrix_sending", default=False)


class MatrixLoginError(Exception):
    """The homeserver refused the configured credentials; retrying will not help."""


class RoomGone(DeliveryError):
    """The bot cannot write in that room any more (left, kicked, room gone)."""


class RateLimited(Exception):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"rate limited for {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


def transaction_id(key: str, part: int = 0) -> str:
    """Deterministic per message: a re-send after a crash reuses it and the homeserver shows it once."""
    return "mb" + hashlib.sha256(f"{key}\x00{part}".encode()).hexdigest()[:40]


def domain_of(user_id: str) -> str:
    return user_id.partition(":")[2].casefold()


class _JsonFile:
    """A small file in the store folder, replaced atomically; readable by the bot's user only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, default=None):
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default

    def save(self, data) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)


class MatrixNotifier:
    """The outbox's way to Matrix: finds or opens an encrypted direct chat with the recipient."""

    platform = PLATFORM

    def __init__(self, adapter: "MatrixAdapter") -> None:
        self._adapter = adapter

    async def send(self, recipient: Identity, reply: Reply, idempotency_key: str) -> None:
        await self._adapter.deliver(recipient.user_id, reply, idempotency_key)

    async def healthy(self) -> bool:
        """For /healthz: the sync loop runs and the homeserver answered lately."""
        return self._adapter.healthy()


class MatrixAdapter:
    """One bot account, one device, one sync stream.

    `start(app)` logs in (or restores the device from the store folder) and runs the sync loop in the
    background; `stop()` lets handlers finish and saves the sync token. `app` needs `.bot.handle()`.
    """

    def __init__(self, config, *, retry_cap: float = 30.0, send_timeout: float = 60.0, poll_ms: int = 30_000,
                 inline_rate_limit_ms: int = 5_000, pointer_interval: float = 600.0) -> None:
        self._config = config
        self._settings = config.matrix
        self._t = texts(config.language)
        self.notifier = MatrixNotifier(self)
        self.folder = Path(self._settings.store_path)
        self._credentials = _JsonFile(self.folder / "credentials.json")
        self._token_file = _JsonFile(self.folder / "sync-token.json")
        self._devices_file = _JsonFile(self.folder / "af-devices.json")
        self._retry_cap = retry_cap
        self._send_timeout = send_timeout
        self._poll_ms = poll_ms
        self._inline_rate_limit_ms = inline_rate_limit_ms
        self._pointer_interval = pointer_interval
        # A generous timeline, so a short outage leaves no gap to fetch; a gap is fetched all the same.
        self.timeline_limit = 50
        self.client: AsyncClient | None = None
        self._app = None
        self._runner: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._room_tail: dict[str, asyncio.Task] = {}
        self._token_tail: asyncio.Task | None = None
        self.ready = asyncio.Event()
        self._synced = asyncio.Event()
        self._last_sync: float | None = None
        self._af_ids = {af.matrix.casefold(): af.matrix for m in config.meldpunten for af in m.af if af.matrix}
        # m.direct as stored in the account data (the direct chats the bot opened), and every direct
        # chat known in this run (also those others opened with the bot).
        self._account_direct: dict[str, list[str]] = {}
        self._direct: dict[str, list[str]] = {}
        self._direct_lock = asyncio.Lock()
        self._dm_locks: dict[str, asyncio.Lock] = {}
        self._created: dict[str, str] = {}
        self._pointer_at: dict[str, float] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._known_devices: dict[str, list[str]] = {}
        self._alerting: set[tuple[str, str]] = set()
        self._away: set[str] = set()  # recipients without any device; the outbox holds their messages

    # --- life cycle ---------------------------------------------------------------------------------

    @property
    def user_id(self) -> str:
        return self.client.user_id if self.client else self._settings.user_id

    @property
    def device_id(self) -> str | None:
        return self.client.device_id if self.client else None

    async def start(self, app) -> None:
        """Log in or restore; a refused login raises MatrixLoginError, an unreachable server is retried."""
        self._app = app
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._known_devices = self._devices_file.load({})
        self.client = AsyncClient(
            self._settings.homeserver, self._settings.user_id, store_path=str(self.folder),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=0,
                                     request_timeout=self._send_timeout),
        )
        self.client.add_response_callback(self._on_rate_limit, ErrorResponse)
        try:
            await self._login()
            logged_in = True
        except MatrixLoginError:
            await self.client.close()
            raise
        except NETWORK_ERRORS as exc:
            log.warning("matrix homeserver unreachable at start; will retry", extra={"error": type(exc).__name__})
            logged_in = False
        self._runner = asyncio.create_task(self._run(logged_in), name="matrix-sync")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop syncing, let running turns finish (so their sync token is saved), then close."""
        if self._runner:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        if self._token_tail:
            await asyncio.wait([self._token_tail], timeout=grace)
        leftovers = [t for t in (*self._tasks, self._token_tail) if t and not t.done()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        if self.client:
            await self.client.close()
        self.ready.clear()

    def healthy(self) -> bool:
        running = self._runner is not None and not self._runner.done()
        recent = self._last_sync is not None and time.monotonic() - self._last_sync < self._poll_ms / 1000 + 60
        return running and recent

    async def _login(self) -> None:
        client = self.client
        saved = self._credentials.load()
        if saved and saved.get("user_id") == self._settings.user_id and saved.get("homeserver") == client.homeserver:
            client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            log.info("matrix device restored from the store", extra={"device_id": saved["device_id"]})
            return
        token = self._settings.access_token.get_secret_value()
        if token:
            client.access_token = token
            who = await client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise MatrixLoginError(f"access token refused: {getattr(who, 'status_code', '?')}")
            if not who.device_id:
                raise MatrixLoginError("the access token belongs to no device")
            client.restore_login(who.user_id, who.device_id, token)
        else:
            response = await client.login(self._settings.password.get_secret_value(),
                                           device_name=self._settings.device_name)
            if not isinstance(response, LoginResponse):
                raise MatrixLoginError(f"login refused: {getattr(response, 'status_code', '?')}")
        # From now on the store folder is the device: a new login would be a new device that cannot read
        # anything sent before.
        self._credentials.save({"homeserver": client.homeserver, "user_id": client.user_id,
                                "device_id": client.device_id, "access_token": client.access_token})
        log.info("matrix device created", extra={"device_id": client.device_id})

    def _backoff(self, failures: int) -> float:
        return min(0.5 * 2 ** min(failures, 10), self._retry_cap)

    async def _run(self, logged_in: bool) -> None:
        failures = 0
        while not logged_in:
            try:
                await self._login()
                logged_in = True
            except MatrixLoginError as exc:
                log.error("matrix login refused; fix the credentials", extra={"error": str(exc)})
                return
            except NETWORK_ERRORS as exc:
                failures += 1
                log.warning("matrix login failed, will retry", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._backoff(failures))
        await self._load_direct()
        saved = self._token_file.load()
        position = saved.get("next_batch") if saved else None
        first, failures = True, 0
        while True:
            try:
                response = await self.client.sync(
                    timeout=0 if first else self._poll_ms, sync_filter=self._sync_filter(), since=position,
                    # After a restart nio knows no rooms: the first sync brings their whole state.
                    full_state=True if first else None,
                )
            except NETWORK_ERRORS as exc:
                failures += 1
                log.warning("matrix sync failed, will retry", extra={"error": type(exc).__name__, "attempt": failures})
                await asyncio.sleep(self._backoff(failures))
                continue
            if isinstance(response, SyncError):
                if response.status_code == "M_UNKNOWN_TOKEN":
                    log.error("matrix access token no longer valid; remove credentials.json and log in again")
                    return
                failures += 1
                log.warning("matrix sync refused, will retry",
                            extra={"error": response.status_code, "attempt": failures})
                await asyncio.sleep(self._backoff(failures))
                continue
            failures = 0
            try:
                # Without a stored token the first answer is history: it is looked at, never answered.
                self._process(response, history=position is None, since=position)
            except Exception as exc:  # a bug must not end the sync loop; this response is fetched again
                log.error("matrix sync response not processed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._retry_cap)
                continue
            position, first = response.next_batch, False
            try:
                await self._housekeeping()
            except NETWORK_ERRORS as exc:
                log.warning("matrix key maintenance failed, will retry", extra={"error": type(exc).__name__})
            except Exception as exc:
                log.error("matrix key maintenance failed", extra={"error": type(exc).__name__})
            self._last_sync = time.monotonic()
            self.ready.set()
            self._synced.set()
            self._synced = asyncio.Event()

    def _sync_filter(self) -> dict:
        return {"room": {"timeline": {"limit": self.timeline_limit}, "state": {"lazy_load_members": False}},
                "presence": {"not_types": ["*"]}}

    async def _housekeeping(self) -> None:
        """What sync_forever does between syncs: to-device messages and the key dance of E2EE."""
        client = self.client
        if client.outgoing_to_device_messages:
            await client.send_to_device_messages()
        try:
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                self._after_keys_query(await client.keys_query())
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except LocalProtocolError:
            pass  # another task did it a moment ago

    async def wait_synced(self, timeout: float) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    # --- incoming -----------------------------------------------------------------------------------

    def _process(self, response, *, history: bool, since: str | None) -> None:
        """One sync response; no awaits, so it is never cut in half. Work goes to per-room tasks."""
        batch: list[asyncio.Task] = []
        for room_id, info in response.rooms.invite.items():
            batch.append(self._queue(room_id, lambda r=room_id, i=info: self._answer_invite(r, i)))
        for room_id, info in response.rooms.join.items():
            if history:
                continue
            timeline = info.timeline
            gap = (timeline.prev_batch, since) if timeline.limited and since and timeline.prev_batch else None
            events = list(timeline.events)
            if events or gap:
                batch.append(self._queue(room_id, lambda r=room_id, e=events, g=gap: self._room_events(r, e, g)))
        for room_id in response.rooms.leave:
            self._forget_room(room_id)
        self._token_tail = asyncio.create_task(self._save_token_after(self._token_tail, batch, response.next_batch))

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
            except Exception as exc:  # the error boundary of one room's events: no content in logs
                log.error("matrix event handling failed", extra={"error": type(exc).__name__, "room_id": room_id})

        task = asyncio.create_task(run())
        self._room_tail[room_id] = task
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
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
        return True

    async def _answer_invite(self, room_id: str, info) -> None:
        me = self.user_id
        invite = next((e for e in info.invite_state if isinstance(e, InviteMemberEvent)
                       and e.state_key == me and e.membership == "invite"), None)
        inviter = invite.sender if invite else ""
        if not self._may_invite(inviter):
            log.warning("matrix invite declined", extra={"room_id": room_id, "inviter_domain": domain_of(inviter)})
            await self._retrying(lambda: self.client.room_leave(room_id), "decline invite")
            return
        response = await self._retrying(lambda: self.client.join(room_id), "join")
        if isinstance(response, JoinResponse):
            log.info("matrix invite accepted", extra={"room_id": room_id})
            if invite and invite.content.get("is_direct"):
                self._direct.setdefault(inviter, []).append(room_id)

    def _may_invite(self, user_id: str) -> bool:
        domain = domain_of(user_id)
        if not domain:
            return False
        if self._config.af_for(PLATFORM, user_id):
            return True
        return any(domain in {d.casefold() for d in m.matrix_domains} for m in self._config.meldpunten)

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
            await asyncio.sleep(self._backoff(attempt + 1))
        if isinstance(response, (ErrorResponse, Exception)):
            error = getattr(response, "status_code", None) or type(response).__name__
            log.warning("matrix request failed", extra={"what": what, "error": error})
        return response

    async def _room_events(self, room_id: str, events: list, gap: tuple[str, str] | None) -> None:
        if gap:
            events = await self._fetch_gap(room_id, *gap) + events
        me = self.user_id
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
        for event in events[start:]:
            if getattr(event, "sender", me) == me or not self._first_time(event.event_id):
                continue
            await self._on_event(room_id, event)

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
            log.info("matrix timeline gap fetched", extra={"room_id": room_id, "events": len(found)})
        return found

    async def _on_event(self, room_id: str, event) -> None:
        room = self.client.rooms.get(room_id)
        if room is None:
            return
        if isinstance(event, MegolmEvent):
            await self._undecryptable(room_id, event)
            return
        content = event.source.get("content", {})
        relation = content.get("m.relates_to") or {}
        if isinstance(event, (RoomMessageText, RoomMessageEmote)):
            text, attachment = _without_reply_fallback(event.body, relation), False
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
            log.warning("matrix unencrypted message in an encrypted room ignored",
                        extra={"room_id": room_id, "event_id": event.event_id})
            return
        if relation.get("rel_type") == "m.replace":
            # An edit would answer a question already passed; say so instead of guessing.
            await self._send_reply(room_id, Reply(self._t("matrix.edit_ignored")), f"edit:{event.event_id}")
            return
        others = set(room.users) - {self.user_id}
        private = others == {event.sender}
        if not private:
            # A larger room: only a pointer to a direct chat, not after every line of a conversation.
            now = time.monotonic()
            if now - self._pointer_at.get(room_id, -1e9) < self._pointer_interval:
                return
            self._pointer_at[room_id] = now
        member = room.users.get(event.sender)
        message = IncomingMessage(
            sender=Identity(PLATFORM, event.sender), conversation_id=room_id, text=text, event_id=event.event_id,
            is_private=private, has_attachment=attachment, sender_name=member.display_name if member else None,
        )
        replies = await self._app.bot.handle(message)
        for index, reply in enumerate(replies):
            await self._send_reply(room_id, reply, f"{event.event_id}:{index}")

    async def _undecryptable(self, room_id: str, event: MegolmEvent) -> None:
        """A signal must never vanish silently: ask to resend, ask the sender's devices for the key."""
        log.warning("matrix message could not be decrypted; sender asked to resend",
                    extra={"room_id": room_id, "event_id": event.event_id, "session_id": event.session_id,
                           "sender_device": event.device_id})
        try:
            await self.client.request_room_key(event)
        except LocalProtocolError:
            pass  # already requested for this session
        except NETWORK_ERRORS as exc:
            log.warning("matrix room key request failed", extra={"error": type(exc).__name__})
        await self._send_reply(room_id, Reply(self._t("matrix.undecryptable")), f"undecryptable:{event.event_id}")

    async def _send_reply(self, room_id: str, reply: Reply, key: str) -> None:
        """A direct answer in the room it belongs to; retried while the homeserver is away.

        If the bot stops first, the sync token of this event is not saved and the event comes again.
        """
        failures = 0
        while True:
            try:
                await self._send_to_room(room_id, reply, key)
                return
            except DeliveryError as exc:
                if exc.permanent or isinstance(exc, RoomGone):
                    log.warning("matrix reply not deliverable", extra={"room_id": room_id, "reason": exc.reason})
                    return
                failures += 1
                log.info("matrix reply failed, will retry", extra={"room_id": room_id, "reason": exc.reason})
                await asyncio.sleep(self._backoff(failures))

    # --- outgoing -----------------------------------------------------------------------------------

    async def deliver(self, user_id: str, reply: Reply, key: str) -> None:
        """The Notifier's work: one message to one person, in a private encrypted chat."""
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), 10)
            except TimeoutError:
                raise DeliveryError("matrix not connected") from None
        room_id = await self._direct_room(user_id)
        try:
            await self._send_to_room(room_id, reply, key, recipient=user_id)
        except RoomGone as exc:
            self._forget_room(room_id)  # the next attempt opens a new direct chat
            raise DeliveryError(exc.reason) from None

    async def _send_to_room(self, room_id: str, reply: Reply, key: str, recipient: str | None = None) -> None:
        room = self.client.rooms.get(room_id)
        if room is None:
            raise RoomGone("room not known")
        await self._prepare(room)
        if recipient and room.encrypted and not self._devices_of(recipient):
            # Sent now, it could never be read: the room key would go to no device of theirs. The outbox
            # holds it until they sign in somewhere (see _after_keys_query).
            self._away.add(recipient)
            raise RecipientAway(recipient)
        await self._room_send(room_id, render(reply), transaction_id(key, 0))
        if reply.image:
            name = self._t("matrix.image_name")
            if room.encrypted:
                upload, keys = await self._upload(reply.image, name, encrypt=True)
                content = image_content(reply, name, file={**keys, "url": upload.content_uri})
            else:
                upload, _ = await self._upload(reply.image, name, encrypt=False)
                content = image_content(reply, name, url=upload.content_uri)
            await self._room_send(room_id, content, transaction_id(key, 1))

    async def _upload(self, data: bytes, name: str, *, encrypt: bool):
        marker = _sending.set(True)
        try:
            response, keys = await self.client.upload(io.BytesIO(data), content_type="image/png", filename=name,
                                                       encrypt=encrypt, filesize=len(data))
        except RateLimited as exc:
            raise DeliveryError(f"rate limited for {exc.retry_after_ms} ms") from None
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        finally:
            _sending.reset(marker)
        if not isinstance(response, UploadResponse):
            raise _delivery_error(response)
        return response, keys

    async def _room_send(self, room_id: str, content: dict, txn_id: str) -> None:
        marker = _sending.set(True)
        try:
            async with asyncio.timeout(self._send_timeout):
                response = await self.client.room_send(room_id, "m.room.message", content, tx_id=txn_id,
                                                       ignore_unverified_devices=True)
        except RateLimited as exc:
            error = DeliveryError(f"rate limited for {exc.retry_after_ms} ms")
        except NETWORK_ERRORS as exc:
            error = DeliveryError(f"homeserver unreachable ({type(exc).__name__})")
        except (SendRetryError, LocalProtocolError) as exc:
            error = DeliveryError(f"not sendable yet ({type(exc).__name__})")
        else:
            if not isinstance(response, RoomSendError):
                return
            error = _delivery_error(response)
        finally:
            _sending.reset(marker)
        # nio marks a room key as shared even when handing it out failed half-way; a fresh key on the
        # next attempt makes sure every device of the recipient can read the message.
        if self.client.olm and room_id in self.client.olm.outbound_group_sessions:
            self.client.invalidate_outbound_session(room_id)
        raise error

    async def _on_rate_limit(self, response) -> None:
        """nio waits out a 429 itself; a long wait while sending ends the attempt and the outbox retries."""
        if not isinstance(response, (RoomSendError, UploadError)) or not _sending.get():
            return  # sync and key traffic: nio waits; an aborted key share would leave devices without keys
        if response.status_code != "M_LIMIT_EXCEEDED":
            return
        retry_after = response.retry_after_ms or 5000
        if retry_after > self._inline_rate_limit_ms:
            raise RateLimited(retry_after)
        log.info("matrix rate limited; waiting", extra={"retry_after_ms": retry_after})

    async def _direct_room(self, user_id: str) -> str:
        lock = self._dm_locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            room_id = self._find_direct(user_id)
            if room_id is None:
                room_id = self._created.get(user_id) or await self._create_direct(user_id)
            deadline = time.monotonic() + 20
            # A room can be sent to only after it was synced, and only with the invite in it: the room
            # key goes to the members nio knows, and a sync can come between createRoom's events.
            while room_id not in self.client.rooms or user_id not in self.client.rooms[room_id].users:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeliveryError("new direct chat not synced yet")
                try:
                    await self.wait_synced(remaining)
                except TimeoutError:
                    pass
            self._created.pop(user_id, None)
            return room_id

    def _fits_direct(self, room_id: str, user_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return bool(room and room.encrypted and set(room.users) == {self.user_id, user_id})

    def _find_direct(self, user_id: str) -> str | None:
        """An encrypted room with only the bot and this person; one they joined, and the newest, first."""
        known = [r for r in self._direct.get(user_id, ()) if self._fits_direct(r, user_id)]
        if not known:  # e.g. after a restart: a direct chat someone else opened; look through all rooms
            known = [r for r in self.client.rooms if self._fits_direct(r, user_id)]
        joined = [r for r in known if not self.client.rooms[r].users[user_id].invited]
        return (joined or known or [None])[-1]

    async def _create_direct(self, user_id: str) -> str:
        try:
            profile = await self.client.get_profile(user_id)
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        if isinstance(profile, ProfileGetError):
            status = getattr(profile.transport_response, "status", None)
            # Synapse answers an unknown local user with 404 (the errcode varies); createRoom would not mind.
            if status == 404:
                raise DeliveryError(f"no such matrix user ({profile.status_code})", permanent=True)
            raise DeliveryError(f"profile lookup failed ({status} {profile.status_code})")
        try:
            response = await self.client.room_create(
                is_direct=True, preset=RoomPreset.trusted_private_chat, invite=[user_id],
                initial_state=[ENCRYPTION_STATE],
            )
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        if isinstance(response, RoomCreateError):
            raise DeliveryError(f"homeserver said {response.status_code}")
        self._created[user_id] = response.room_id
        self._direct.setdefault(user_id, []).append(response.room_id)
        log.info("matrix direct chat opened", extra={"room_id": response.room_id})
        await self._remember_direct(user_id, response.room_id)
        return response.room_id

    async def _load_direct(self) -> None:
        try:
            response = await self.client.list_direct_rooms()
        except NETWORK_ERRORS:
            return
        if isinstance(response, DirectRoomsResponse):
            self._account_direct = {user: list(rooms) for user, rooms in response.rooms.items()}
            for user, rooms in self._account_direct.items():
                self._direct.setdefault(user, []).extend(r for r in rooms if r not in self._direct.get(user, ()))

    async def _remember_direct(self, user_id: str, room_id: str) -> None:
        """m.direct in the bot's account data: the direct chats the bot opened, for clients and restarts."""
        async with self._direct_lock:
            rooms = self._account_direct.setdefault(user_id, [])
            if room_id in rooms:
                return
            rooms.append(room_id)
            path = Api._build_path(["user", self.user_id, "account_data", "m.direct"])
            headers = {"Authorization": f"Bearer {self.client.access_token}", "Content-Type": "application/json"}
            try:
                response = await self.client.send("PUT", path, json.dumps(self._account_direct), headers)
                response.release()
            except NETWORK_ERRORS as exc:
                log.warning("matrix m.direct not updated", extra={"error": type(exc).__name__})

    def _forget_room(self, room_id: str) -> None:
        for rooms in self._direct.values():
            if room_id in rooms:
                rooms.remove(room_id)
        self._pointer_at.pop(room_id, None)

    # --- devices ------------------------------------------------------------------------------------

    def _after_keys_query(self, response) -> None:
        """Someone's devices changed: a fresh room key for their rooms, so a new device can read what
        comes next and a removed one cannot; then the AF device policy."""
        if not isinstance(response, KeysQueryResponse):
            return
        changed = {user for user, devices in (response.changed or {}).items() if devices}
        if not changed:
            return
        for room in self.client.rooms.values():
            if room.encrypted and not changed.isdisjoint(room.users):
                self.client.invalidate_outbound_session(room.room_id)
        for user_id in changed:
            if user_id.casefold() in self._af_ids:
                self._apply_device_policy(user_id)
            if user_id in self._away and self._devices_of(user_id) and self._app is not None:
                self._away.discard(user_id)
                self._spawn(self._app.dispatcher.wake(Identity(PLATFORM, user_id)))

    async def _prepare(self, room) -> None:
        """Before encrypting for a room: fresh member and device lists, then the AF device policy."""
        if not room.encrypted:
            return
        try:
            if not room.members_synced:
                await self.client.joined_members(room.room_id)
            # No known device may just mean the news of a new login is still on its way: ask now.
            unknown = {u for u in room.users if u != self.user_id and not self._devices_of(u)}
            if unknown:
                self.client.olm.add_changed_users(unknown)
            if self.client.should_query_keys:
                self._after_keys_query(await self.client.keys_query())
        except LocalProtocolError:
            pass
        except NETWORK_ERRORS as exc:
            raise DeliveryError(f"homeserver unreachable ({type(exc).__name__})") from None
        for user_id in room.users:
            if user_id != self.user_id and user_id.casefold() in self._af_ids:
                if self._apply_device_policy(user_id) == 0 and self._settings.af_device_policy == "verified":
                    raise DeliveryError("the AF has no verified device")

    def _devices_of(self, user_id: str) -> list:
        return list(self.client.device_store.active_user_devices(user_id))

    def _apply_device_policy(self, user_id: str) -> int:
        """Returns how many of the AF's devices may read what the bot sends."""
        olm = self.client.olm
        devices = list(self.client.device_store.active_user_devices(user_id))
        if self._settings.af_device_policy == "verified":
            readers = 0
            for device in devices:
                if olm.is_device_verified(device):
                    readers += 1
                elif not olm.is_device_blacklisted(device):
                    self.client.blacklist_device(device)
                    log.warning("unverified AF device gets no keys",
                                extra={"af": self._af_name(user_id), "device_id": device.id})
            return readers
        for device in devices:  # tofu: an earlier `verified` policy may have left devices blacklisted
            if olm.is_device_blacklisted(device):
                self.client.unblacklist_device(device)
        if not devices:
            return 0
        known = self._known_devices.get(user_id)
        if known is None:
            self._known_devices[user_id] = sorted(d.id for d in devices)
            self._devices_file.save(self._known_devices)
            log.info("AF devices trusted on first use", extra={"af": self._af_name(user_id), "count": len(devices)})
            return len(devices)
        for device in devices:
            if device.id not in known and (user_id, device.id) not in self._alerting:
                self._alerting.add((user_id, device.id))
                log.warning("new device on an AF account; AF alerted",
                            extra={"af": self._af_name(user_id), "device_id": device.id})
                self._spawn(self._alert_new_device(user_id, device))
        return len(devices)

    async def _alert_new_device(self, user_id: str, device) -> None:
        reply = Reply(self._t("matrix.new_device", device=device.display_name or device.id, device_id=device.id),
                      urgent=True)
        failures = 0
        while True:
            try:
                await self.deliver(user_id, reply, f"new-device:{user_id}:{device.id}")
                break
            except DeliveryError as exc:
                if exc.permanent:
                    break
                failures += 1
                await asyncio.sleep(self._backoff(failures))
        # Only now: a crash before this sends the alert again, with the same transaction id.
        known = self._known_devices.setdefault(user_id, [])
        if device.id not in known:
            known.append(device.id)
            self._devices_file.save(self._known_devices)
        self._alerting.discard((user_id, device.id))

    def _af_name(self, user_id: str) -> str:
        """The AF's short name from the configuration, for the administrator's log."""
        return ",".join(sorted({af.name for _, af in self._config.af_for(PLATFORM, user_id)}))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def verify_device(self, user_id: str, device_id: str, ed25519: str) -> bool:
        """Mark a device verified after an out-of-band check of its fingerprint (for `verified`)."""
        device = self.client.device_store[user_id].get(device_id)
        if device is None or device.ed25519.replace(" ", "") != ed25519.replace(" ", ""):
            return False
        self.client.verify_device(device)
        return True


def _delivery_error(response) -> DeliveryError:
    code = getattr(response, "status_code", None) or "unknown"
    if code in ROOM_GONE:
        return RoomGone(f"homeserver said {code}")
    return DeliveryError(f"homeserver said {code}", permanent=code in PERMANENT)


_FALLBACK = re.compile(r"\A(?:>[^\n]*\n)+\n?")


def _without_reply_fallback(body: str, relation: dict) -> str:
    """Replies quote the earlier message in their body ("> <@x> ..."); only the new text counts."""
    if "m.in_reply_to" in relation:
        return _FALLBACK.sub("", body, count=1)
    return body
