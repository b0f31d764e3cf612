"""The Matrix adapter: composes session, sync, sending, direct chats, trust and the bot's identity."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nio import LocalProtocolError

from meldbot.adapters.matrix import cross_signing
from meldbot.adapters.matrix.common import (
    ENCRYPTION_STATE, NETWORK_ERRORS, PLATFORM, AddressBook, JsonFile, MatrixLoginError, MatrixStoreInUse,
    MatrixStoreLocked, RoomGone, SoleHolder, backoff, keys_query, log,
)
from meldbot.adapters.matrix.direct import DirectRooms
from meldbot.adapters.matrix.outbound import Sender
from meldbot.adapters.matrix.session import Session, StoreKeys, new_client
from meldbot.adapters.matrix.sync import Inbound, without_reply_fallback
from meldbot.adapters.matrix.trust import AfTrust, Alert, Devices, TrustStore, is_unguarded_key
from meldbot.core.i18n import texts
from meldbot.core.logs import quiet_libraries
from meldbot.core.messaging import DeliveryError, Identity, IncomingMessage, NotSendingHere, RecipientAway, Reply

IDENTITY_RETRY_SECONDS = 300.0

__all__ = ["ENCRYPTION_STATE", "MatrixAdapter", "MatrixLoginError", "MatrixNotifier", "MatrixStoreInUse",
           "MatrixStoreLocked", "without_reply_fallback"]


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


class _NoStore:
    """Without a database (unit tests of the adapter alone): state lives as long as the process."""

    def __init__(self) -> None:
        self.data: dict = {}

    async def get(self, key):
        return self.data.get(key)

    async def put(self, key, value, expected=None):
        self.data[key] = value

    async def load(self):
        return self.data.get("identity")

    async def save(self, keys, *, replace: bool = False):
        self.data["identity"] = keys


class MatrixAdapter:
    """One bot account, one device, one sync stream.

    Narrow dependencies, all injected: `handle(message) -> replies` (the core's turn), `wake(identity)`
    (the outbox: someone who was away is back), `alert(af_id, text_key, params, key, unguarded)` (queue
    a content-free message to an AF through the outbox), the stores for the bot's cross-signing keys and
    the AF trust state (both in the database), and `new_client` (a nio client; a fake in unit tests).
    """

    def __init__(self, config, *, handle: Callable[[IncomingMessage], Awaitable[list[Reply]]] | None = None,
                 wake: Callable[[Identity], Awaitable[None]] | None = None, alert: Alert | None = None,
                 identity_store: cross_signing.IdentityStore | None = None, trust_store: TrustStore | None = None,
                 client_factory=new_client, retry_cap: float = 30.0, send_timeout: float = 60.0,
                 poll_ms: int = 30_000, inline_rate_limit_ms: int = 5_000, pointer_interval: float = 600.0,
                 key_wait: float = 60.0, store_folder: Path | None = None, leadership=None,
                 handled: Callable[[str], Awaitable[bool]] | None = None,
                 read_position: Callable[[], Awaitable[str | None]] | None = None,
                 save_position: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Several processes (issue 17): `store_folder` is this process's device (default `matrix.store_path`);
        `leadership` says whether this process holds the sync stream (`holding`, `watch()`: an event set at the
        next change; default: always); `read_position`/`save_position` the shared position the holder fully
        handled, from which a new holder catches up; `handled(event_id)` whether an event was handled already
        (by any process), so a catch-up does not answer it again."""
        quiet_libraries()  # matrix-nio's messages name users, devices and rooms
        self._config = config
        self._settings = config.matrix
        self._t = texts(config.language)
        self._handle = handle
        self._wake = wake
        self._alert = alert
        self._identity_store = identity_store or _NoStore()
        self._trust_store = trust_store or _NoStore()
        self._client_factory = client_factory
        self._retry_cap = retry_cap
        self._send_timeout = send_timeout
        self._poll_ms = poll_ms
        self._inline_rate_limit_ms = inline_rate_limit_ms
        self._pointer_interval = pointer_interval
        self._key_wait = key_wait
        self.notifier = MatrixNotifier(self)
        self.folder = Path(store_folder) if store_folder is not None else Path(self._settings.store_path)
        self.leadership = leadership if leadership is not None else SoleHolder()
        self._handled = handled
        self._read_position = read_position
        self._save_position = save_position
        self._folder_lock: int | None = None
        self.book = AddressBook(config)
        self.status_file = JsonFile(self.folder / "status.json")
        self.identity_status: str | None = None
        self._identity_retry_at = 0.0  # after a failure: not at every sync, but every few minutes
        # A generous timeline, so a short outage leaves no gap to fetch; a gap is fetched all the same.
        self.timeline_limit = 50
        self.client = None
        self.inbound: Inbound | None = None
        self.ready = asyncio.Event()
        self._runner: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.on_counts: list[Callable] = []   # metrics hooks: called with sync.Counts when they change

    # --- life cycle ---------------------------------------------------------------------------------

    @property
    def user_id(self) -> str:
        return self.client.user_id if self.client else self._settings.user_id

    @property
    def device_id(self) -> str | None:
        return self.client.device_id if self.client else None

    async def start(self) -> None:
        """Log in or restore; a refused login raises MatrixLoginError, an unreachable server is retried."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_folder()
        keys = StoreKeys.for_config(self._config)   # the store's secrets under a key from MELDBOT_DATA_KEY
        client = self.client = self._client_factory(self._settings, self.folder, self._send_timeout,
                                                    pickle_key=keys.current)
        session = Session(self._settings, self.folder, keys)
        self.trust = AfTrust(client, self._settings.af_device_policy, self.book, self._trust_store, self._queue_alert,
                             recheck=lambda af_id, delay: self.devices.recheck(af_id, delay))
        self.devices = Devices(client, self.book, self.trust, self._person_back, self._spawn)
        self.direct = DirectRooms(client, self.wait_synced)
        self.sender = Sender(client, self.devices.prepare, self._t("matrix.image_name"), send_timeout=self._send_timeout,
                             inline_rate_limit_ms=self._inline_rate_limit_ms, shared=self.devices.has_af,
                             shared_lock=self.devices.lock)
        self.inbound = Inbound(client, handle=self._handle_message, sender=self.sender, direct=self.direct,
                               devices=self.devices, book=self.book, texts=self._t,
                               token_file=JsonFile(self.folder / "sync-token.json"), retry_cap=self._retry_cap,
                               poll_ms=self._poll_ms, pointer_interval=self._pointer_interval, key_wait=self._key_wait,
                               handled=self._handled)
        self.inbound.timeline_limit = self.timeline_limit
        self.inbound.counts.on_change.append(self._counts_changed)
        saved = self.status_file.load({}) or {}  # the counts of earlier runs, for `meldbot doctor`
        self._counted_before = (int(saved.get("undecryptable") or 0), int(saved.get("decrypted_late") or 0))
        self._unreadable_seen = 0
        self.ready = self.inbound.ready
        try:
            await session.login(client)
            logged_in = True
        except (MatrixLoginError, MatrixStoreLocked):
            await client.close()
            self._unlock_folder()
            raise
        except NETWORK_ERRORS as exc:
            log.warning("matrix homeserver unreachable at start; will retry", extra={"error": type(exc).__name__})
            logged_in = False
        self._runner = asyncio.create_task(self._run(session, logged_in), name="matrix-sync")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop syncing, let running turns finish (so their sync token is saved), then close."""
        if self._runner:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        inbound = self.inbound
        tasks = set(self._tasks) | (inbound.tasks if inbound else set())
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace)
        tail = inbound.token_tail if inbound else None
        if tail:
            await asyncio.wait([tail], timeout=grace)
        leftovers = [t for t in (*tasks, tail) if t and not t.done()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        if self.client:
            await self.client.close()
        self.ready.clear()
        self._unlock_folder()

    def _lock_folder(self) -> None:
        """The store folder is the device: one process at a time (an exclusive lock, freed when the process
        ends in any way)."""
        if self._folder_lock is not None:
            return
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MatrixStoreInUse(str(self.folder)) from None
        self._folder_lock = fd

    def _unlock_folder(self) -> None:
        fd, self._folder_lock = self._folder_lock, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def holding(self) -> bool:
        return bool(self.leadership.holding)

    def healthy(self) -> bool:
        running = self._runner is not None and not self._runner.done()
        last = self.inbound.last_sync if self.inbound else None
        recent = last is not None and time.monotonic() - last < self._poll_ms / 1000 + 60
        return running and recent

    async def _run(self, session: Session, logged_in: bool) -> None:
        failures = 0
        while not logged_in:
            try:
                await session.login(self.client)
                logged_in = True
            except MatrixLoginError as exc:
                log.error("matrix login refused; fix the credentials", extra={"error": str(exc)})
                return
            except MatrixStoreLocked as exc:
                log.error("matrix store not opened: no key this process has fits it", extra={"error": exc.reason})
                return
            except NETWORK_ERRORS as exc:
                failures += 1
                log.warning("matrix login failed, will retry", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff(failures, self._retry_cap))
        await self.direct.load()
        leadership = self.leadership
        while True:
            holding = leadership.holding
            change = asyncio.ensure_future(leadership.watch().wait())
            if holding:
                work = asyncio.ensure_future(self._hold())
            else:
                work = asyncio.ensure_future(self.inbound.run(self._standby_housekeeping, light=True))
            try:
                await asyncio.wait({work, change}, return_when=asyncio.FIRST_COMPLETED)
                # Read before the cancelling below: a cancelled task counts as done too.
                ended_by_itself, changed = work.done() and not work.cancelled(), change.done()
            finally:
                for task in (work, change):
                    task.cancel()
                await asyncio.gather(work, change, return_exceptions=True)
            if ended_by_itself and not changed:
                # The sync loop ended by itself (the access token is no longer valid). Holding the stream
                # now would keep every other process from reading Matrix: give it up, so one can take over.
                if holding and hasattr(leadership, "stop"):
                    log.error("matrix sync ended in the process that holds the stream; giving the stream up")
                    await leadership.stop()
                return
            if holding:
                await self._step_down()

    async def _hold(self) -> None:
        """The full sync stream; after a take-over first every room from the shared position on."""
        position = None
        if self._read_position is not None:
            try:
                position = await self._read_position()
            except Exception as exc:
                log.error("matrix shared sync position not read", extra={"error": type(exc).__name__})
        # A holder that lost its lock without hearing of it stops within `settle` seconds: only then sync.
        await asyncio.sleep(getattr(self.leadership, "settle", 0.0))
        log.info("matrix sync stream held by this process")
        await self.inbound.run(self._housekeeping, catch_up_from=position, on_position=self._save_position)

    async def _step_down(self) -> None:
        """Another process may hold the stream now: stop at once what this one was doing with it."""
        log.warning("matrix sync stream no longer held by this process; standing by")
        self.ready.clear()
        inbound = self.inbound
        pending = [t for t in (*inbound.tasks, inbound.token_tail) if t and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        inbound.token_tail = None

    async def _standby_housekeeping(self) -> None:
        """A standby's E2EE work: its one-time keys on the server, others' devices known, its device
        cross-signed. AF trust stays with the holder (it alerts AFs)."""
        await self._key_dance(holder=False)

    async def _housekeeping(self) -> None:
        """What sync_forever does between syncs: to-device messages and the key dance of E2EE; then the
        bot's own cross-signing identity, once the device keys are on the server."""
        await self._key_dance(holder=True)

    async def _key_dance(self, *, holder: bool) -> None:
        """The holder also tells its device tracking what the key query found and claims one-time keys
        (it sends into rooms); a standby only keeps its own device known and its keys on the server."""
        client = self.client
        if client.outgoing_to_device_messages:
            await client.send_to_device_messages()
        try:
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                queried = await keys_query(client)
                if holder:
                    self.devices.after_keys_query(queried)
            if holder and client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except LocalProtocolError:
            pass  # another task did it a moment ago
        if (self.identity_status is None and not client.should_upload_keys
                and time.monotonic() >= self._identity_retry_at):
            await self._ensure_identity()

    async def _ensure_identity(self) -> None:
        password = self._settings.password.get_secret_value() or None
        try:
            result = await cross_signing.ensure_identity(self.client, self._identity_store, password)
        except (cross_signing.CrossSigningError, *NETWORK_ERRORS) as exc:
            status = "error"
            log.error("matrix cross-signing identity not set up; Element users cannot read the bot",
                      extra={"error": str(exc) or type(exc).__name__})
        else:
            status = result.outcome.value if result.device_signed or result.outcome.value == "mismatch" else None
            if status is None:
                return  # the device keys are not on the server yet: again after the next sync
            if status == "mismatch":
                log.error("matrix cross-signing keys missing: the account has an identity whose private keys "
                          "this database does not hold; run `meldbot matrix-reset-identity`")
            else:
                log.info("matrix cross-signing identity ready", extra={"status": status})
        self.identity_status = status if status != "error" else None
        if status == "error":
            self._identity_retry_at = time.monotonic() + IDENTITY_RETRY_SECONDS
        self._save_status(identity=status)

    def _save_status(self, **values) -> None:
        """For `meldbot doctor` (another process): what this process knows about its Matrix side."""
        data = self.status_file.load({}) or {}
        data.update(values)
        try:
            self.status_file.save(data)
        except OSError as exc:
            log.warning("matrix status not saved", extra={"error": type(exc).__name__})

    def _counts_changed(self, counts) -> None:
        for hook in self.on_counts:
            hook(counts)
        before_unreadable, before_late = self._counted_before
        recent = [t for t in (self.status_file.load({}) or {}).get("undecryptable_times", []) if isinstance(t, (int, float))]
        if counts.unreadable > self._unreadable_seen:
            recent = (recent + [time.time()] * (counts.unreadable - self._unreadable_seen))[-100:]
            self._unreadable_seen = counts.unreadable
        self._save_status(undecryptable=before_unreadable + counts.unreadable, decrypted_late=before_late + counts.late,
                          undecryptable_times=recent)

    async def wait_synced(self, timeout: float) -> None:
        await self.inbound.wait_synced(timeout)

    # --- what the adapter needs from the rest -------------------------------------------------------

    async def _handle_message(self, message: IncomingMessage) -> list[Reply]:
        if self._handle is None:
            raise RuntimeError("the Matrix adapter was built without a handle callable")
        return await self._handle(message)

    def _person_back(self, user_id: str) -> None:
        if self._wake is not None:
            self._spawn(self._wake(Identity(PLATFORM, user_id)))

    async def _queue_alert(self, af_id: str, text_key: str, params: dict, key: str, unguarded: bool) -> None:
        if self._alert is not None:
            await self._alert(af_id, text_key, params, key, unguarded)
            return
        # Without an outbox (the adapter alone): send it now, once; a failure is logged without ids.
        self._spawn(self._deliver_quietly(af_id, Reply(self._t(text_key, **params), urgent=True), key))

    async def _deliver_quietly(self, user_id: str, reply: Reply, key: str) -> None:
        try:
            await self.deliver(user_id, reply, key)
        except (DeliveryError, RecipientAway, NotSendingHere) as exc:
            log.warning("matrix alert not delivered", extra={"error": type(exc).__name__})

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- outgoing -----------------------------------------------------------------------------------

    async def deliver(self, user_id: str, reply: Reply, key: str) -> None:
        """The Notifier's work: one message to one person, in a private encrypted chat."""
        if not self.holding:   # not a failed attempt: the outbox gives the row back for the holder
            raise NotSendingHere("matrix sync stream held by another process")
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), 10 + getattr(self.leadership, "settle", 0.0))
            except TimeoutError:
                if not self.holding:
                    raise NotSendingHere("matrix sync stream held by another process") from None
                raise DeliveryError("matrix not connected") from None
        room_id = await self.direct.room_for(user_id)
        try:
            await self.sender.send(room_id, reply, key, recipient=user_id, unguarded=is_unguarded_key(key))
        except RoomGone as exc:
            self.direct.forget(room_id)  # the next attempt opens a new direct chat
            raise DeliveryError(exc.reason) from None

    # --- configuration --------------------------------------------------------------------------------

    def reconfigure(self, config) -> None:
        """A reloaded configuration (meldbot.run.reload): who is an AF and which servers staff come from.
        The account and the sync settings ([matrix]) stay as at start. The AddressBook is shared with the
        trust rules, the devices and the inbound path, so it is renewed in place."""
        self._config = config
        self.book.__init__(config)
