"""The composition root: `build_app(config)` wires storage, bot, outbox, scheduler and platforms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from meldbot.dialogs.when import warm_up
from meldbot.core.logs import where
from meldbot.service.bot import Bot
from meldbot.service.reminders import Reminders
from meldbot.service.retention import PROCESSED_REPLIES_KEPT, erase_expired
from meldbot.core.clock import Clock, SystemClock
from meldbot.core.config import ListenFailed, config_warnings
from meldbot.core.messaging import Identity, IncomingMessage, Notifier, Reply
from meldbot.core import ports
from meldbot.run.metrics import CONTENT_TYPE, Metrics
from meldbot.service.outbox import Dispatcher, RetryPolicy
from meldbot.service.services import expire_drafts, release_removed_afs
from meldbot.storage import canary
from meldbot.storage.canary import DataKeyRefused
from meldbot.storage.db import Database
from meldbot.storage.repositories.outbox import RowProgress
from meldbot.storage.sealing import PlainSealer, Sealer, sealer_for
from meldbot.storage.uow import UnitOfWorkFactory

log = logging.getLogger("meldbot.run.app")


@dataclass
class App:
    config: object
    clock: Clock
    db: Database
    uow: UnitOfWorkFactory
    bot: Bot
    dispatcher: Dispatcher
    notifiers: dict[str, Notifier]
    serve_http: bool
    reminders: Reminders
    scheduler: AsyncIOScheduler = field(init=False)
    sweep_seconds: float = 60.0
    metrics: Metrics | None = None
    # Platform adapters with a life of their own (a Matrix sync loop): started after the dispatcher.
    adapters: list = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _http: web.AppRunner | None = None
    http_port: int | None = None
    _metrics_http: web.AppRunner | None = None
    metrics_port: int | None = None     # the port of `http.metrics_listen`, when set
    # Set when this keyless process may no longer write (the database was sealed while it ran): the CLI stops.
    refusal: DataKeyRefused | None = None
    refused: asyncio.Event = field(default_factory=asyncio.Event)
    # Matrix with several processes (issue 17): who holds the sync stream (meldbot.storage.leader), this
    # process's name, and the shared row that names the holder.
    leader: Any = None
    instance: str | None = None
    matrix_sync: Any = None

    async def __aenter__(self) -> "App":
        await self.db.check_schema()
        # A missing or wrong data key is refused here, before anything is read or written in clear.
        await canary.ensure(self.db, self.uow.sealer)
        async with self.uow() as uow:
            released = await release_removed_afs(uow, self.config, self.clock, tuple(self.notifiers))
            await uow.commit()
        if released:
            log.warning("signals of removed AFs made unassigned", extra={"count": released})
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        # Retries and held messages become due by time; the sweep makes sure they are seen.
        self.scheduler.add_job(self.dispatcher.kick, "interval", seconds=15, id="outbox-sweep", coalesce=True)
        self.scheduler.add_job(self.expire_drafts, "interval", minutes=15, id="draft-expiry", coalesce=True)
        # The database says what is due; the sweep only looks. Run once now: what fell due while the
        # bot was down goes out once, not once per missed run.
        self.scheduler.add_job(self.send_reminders, "interval", seconds=self.sweep_seconds, id="reminders",
                               coalesce=True, max_instances=1)
        self.scheduler.add_job(self.apply_retention, "cron", hour=3, minute=17, id="retention", coalesce=True)
        self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._catch_up(), name="catch-up"))
        self.dispatcher.start()
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="outbox-dispatcher"))
        # dateparser loads its language data lazily (~0.3 s); do it now, off the event loop.
        self._tasks.append(asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(None, warm_up)))
        try:
            if self.serve_http:
                await self._start_http()
            if self.leader is not None:
                await self.leader.start()
            for adapter in self.adapters:
                await adapter.start()
        except BaseException:   # e.g. a port in use, a refused Matrix login: stop what already runs, then report it
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        # The dispatcher ends its round while the platforms are still up, so what it sent is recorded.
        self.dispatcher.stop()
        running = [t for t in self._tasks if isinstance(t, asyncio.Task) and t.get_name() == "outbox-dispatcher"]
        if running:
            await asyncio.wait(running, timeout=10)
        for adapter in reversed(self.adapters):
            with contextlib.suppress(Exception):
                await adapter.stop()
        if self.leader is not None:
            with contextlib.suppress(Exception):
                await self.leader.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._http:
            await self._http.cleanup()
        if self._metrics_http:
            await self._metrics_http.cleanup()
        await self.db.dispose()

    def refuse(self, refusal: DataKeyRefused) -> None:
        """A write of this keyless process was refused (meldbot.storage.canary.PlaintextGuard): stop, and say why."""
        if self.refusal is None:
            log.error("database sealed while this process runs without MELDBOT_DATA_KEY; stopping")
            self.refusal = refusal
        self.refused.set()

    async def settled(self) -> None:
        """Wait until the start-up work (catch-up sweep, language data warm-up) is done."""
        for task in self._tasks:
            if getattr(task, "get_name", lambda: "")() != "outbox-dispatcher":
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)

    async def _catch_up(self) -> None:
        await self.send_reminders()
        await self.apply_retention()

    async def send_reminders(self) -> int:
        """Scheduled job with its own error boundary (no content in logs)."""
        try:
            sent = await self.reminders.sweep()
        except Exception as exc:
            log.error("reminder sweep failed", extra={"error": type(exc).__name__, "where": where(exc)})
            return 0
        if sent:
            log.info("reminders queued", extra={"count": sent})
        return sent

    async def apply_retention(self) -> int:
        try:
            async with self.uow() as uow:
                erased = await erase_expired(uow, self.config, self.clock)
                await uow.commit()
            if erased:
                await self.db.compact_log()
        except Exception as exc:
            log.error("retention failed", extra={"error": type(exc).__name__, "where": where(exc)})
            return 0
        if erased:
            log.info("signals erased by retention", extra={"count": erased})
        return erased

    async def expire_drafts(self) -> int:
        """Scheduled job; its own error boundary: log (no content) and try again next run."""
        try:
            async with self.uow() as uow:
                erased = await expire_drafts(uow, self.config, self.clock)
                # Answers to platform events are kept only for redeliveries within a short window.
                await uow.processed.forget_replies_before(self.clock.now() - PROCESSED_REPLIES_KEPT)
                await uow.commit()
        except Exception as exc:
            log.error("draft expiry failed", extra={"error": type(exc).__name__})
            return 0
        if erased:
            log.info("drafts erased", extra={"count": erased})
        return erased

    async def _start_http(self) -> None:
        web_app = web.Application()
        web_app.router.add_get("/healthz", self._healthz)
        metrics_address = self.config.http.metrics_address
        if metrics_address is None:
            web_app.router.add_get("/metrics", self._metrics)
        for adapter in self.adapters:       # platforms that receive over HTTP (Teams: /api/messages)
            if hasattr(adapter, "routes"):
                web_app.add_routes(adapter.routes())
        self._http = web.AppRunner(web_app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.config.http.host, self.config.http.port)
        await _listen(site, "http.listen", self.config.http.listen)
        self.http_port = site._server.sockets[0].getsockname()[1]
        log.info("http server listening", extra={"port": self.http_port})
        if metrics_address is not None:
            # Its own listener, so /metrics need not be reachable where Teams reaches /api/messages.
            metrics_app = web.Application()
            metrics_app.router.add_get("/metrics", self._metrics)
            self._metrics_http = web.AppRunner(metrics_app, access_log=None)
            await self._metrics_http.setup()
            site = web.TCPSite(self._metrics_http, *metrics_address)
            await _listen(site, "http.metrics_listen", self.config.http.metrics_listen)
            self.metrics_port = site._server.sockets[0].getsockname()[1]
            log.info("metrics server listening", extra={"port": self.metrics_port})

    async def _healthz(self, request: web.Request) -> web.Response:
        database = await self.db.ping()
        platforms = {}
        for name, notifier in self.notifiers.items():
            check = getattr(notifier, "healthy", None)
            platforms[name] = bool(await check()) if check else True
        healthy = database and all(platforms.values())
        body = {"status": "ok" if healthy else "error", "database": database, "platforms": platforms}
        if self.leader is not None:
            # A standby is as healthy as the holder when its database and its lock connection are fine.
            body["matrix"] = await self.matrix_role()
            healthy = healthy and bool(self.leader.connected)
            body["status"] = "ok" if healthy else "error"
        return web.json_response(body, status=200 if healthy else 503)

    async def matrix_role(self) -> dict[str, Any]:
        """Which process holds the Matrix sync stream, and whether it is this one."""
        holding = bool(self.leader.holding)
        holder = self.instance if holding else None
        if not holding and self.matrix_sync is not None:
            try:
                async with asyncio.timeout(5):
                    holder = await self.matrix_sync.holder()
            except Exception:
                holder = None
        return {"role": "holder" if holding else "standby", "holder": holder, "instance": self.instance,
                "lock": bool(self.leader.connected)}

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            await self.metrics.refresh(self)
        except Exception as exc:   # still serve the counters when the database is away
            log.warning("metrics refresh failed", extra={"error": type(exc).__name__})
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def _listen(site: web.TCPSite, setting: str, address: str) -> None:
    """Open a listener; a port in use or a foreign address is the administrator's to fix in `setting`
    (before, the CLI took the OSError for an unreachable database)."""
    try:
        await site.start()
    except OSError as exc:
        raise ListenFailed(setting, address, exc) from exc


INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InstanceNameInvalid(ValueError):
    """`--instance` / MELDBOT_INSTANCE names a folder: letters, digits, dot, dash and underscore only."""


def instance_name(given: str | None) -> str | None:
    """The process name given (`meldbot run --instance`, else MELDBOT_INSTANCE), checked; None when none is."""
    name = given if given is not None else os.environ.get("MELDBOT_INSTANCE") or None
    if name is not None and not INSTANCE_NAME.fullmatch(name):
        raise InstanceNameInvalid(name)
    return name


class InstanceWithAccessToken(ValueError):
    """`--instance` / MELDBOT_INSTANCE with matrix.access_token: a token belongs to one device, so every
    process would share it (and Matrix's resend protection and E2EE keys with it). Several processes log in
    with a password, each with a device of its own."""


def refuse_shared_device(config, instance: str | None) -> None:
    if instance and config.matrix.enabled and config.matrix.access_token.get_secret_value():
        raise InstanceWithAccessToken(instance)


class HolderOnly(Mapping):
    """The dispatcher's notifiers: Matrix only while this process holds the sync stream (a standby has no
    rooms to send into; the holder's dispatcher takes those rows)."""

    def __init__(self, notifiers: Mapping[str, Notifier], platform: str, leader) -> None:
        self._notifiers, self._platform, self._leader = dict(notifiers), platform, leader

    def _shown(self, name: str) -> bool:
        return name != self._platform or bool(self._leader.holding)

    def __getitem__(self, name: str) -> Notifier:
        if not self._shown(name):
            raise KeyError(name)
        return self._notifiers[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._notifiers if self._shown(name))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _matrix_leader(config, db: Database, uow: UnitOfWorkFactory, clock: Clock, name: str):
    """Who holds the bot account's sync stream: an advisory lock on PostgreSQL, this process on SQLite."""
    from meldbot.storage.leader import AdvisoryLeader, SoleHolder, lock_key
    from meldbot.storage.matrix import MatrixSyncState

    state = MatrixSyncState(uow, config.matrix.user_id, clock.now)

    async def record(holding: bool) -> None:
        await state.set_holder(name, holding)

    if not db.is_postgres:
        return SoleHolder(on_change=record), state

    key = lock_key("matrix-sync", config.matrix.user_id.casefold())
    return AdvisoryLeader(config.storage.url, key, on_change=record), state


def _matrix_adapter(config, uow: UnitOfWorkFactory, clock: Clock, later, *, instance: str | None = None,
                    leader=None, state=None, name: str = ""):
    """The Matrix adapter with narrow dependencies: the turn, the outbox's wake and alert, two stores, and for
    several processes the leader, the shared sync position and the processed events.
    `later()` gives the bot and the dispatcher, which are made after the notifiers they need."""
    from meldbot.adapters.matrix import MatrixAdapter
    from meldbot.adapters.matrix.cross_signing import SecretIdentityStore
    from meldbot.core.messaging import Identity
    from meldbot.service.services import alert_person
    from meldbot.storage.matrix import MatrixIdentitySecrets

    async def handle(message):
        return await later()[0].handle(message)

    async def wake(identity):
        await later()[1].wake(identity)

    async def alert(af_id: str, text_key: str, params: dict, key: str, unguarded: bool) -> None:
        async with uow() as work:
            await alert_person(work, config, Identity("matrix", af_id), text_key, params, key, clock.now())
            await work.commit()

    bot_id = config.matrix.user_id

    class TrustStore:
        async def get(self, af_id: str) -> dict | None:
            async with uow() as work:
                return await work.matrix_trust.get(bot_id, af_id)

        async def put(self, af_id: str, state: dict, expected: dict | None = None) -> None:
            async with uow() as work:
                # An administrator's `meldbot matrix-trust` in between wins over what this process saw.
                if (await work.matrix_trust.get(bot_id, af_id) or {}) != (expected or {}):
                    return
                await work.matrix_trust.put(bot_id, af_id, state, clock.now())
                await work.commit()

    async def handled(event_id: str) -> bool:
        async with uow() as work:
            return await work.processed.replies_for("matrix", event_id) is not None

    async def save_position(position: str) -> None:
        if (leader is None or leader.holding) and not await state.save_position(position, name):
            # Another process is recorded as holder (the leader records this one again at its next look).
            log.warning("matrix sync position not saved: another process is recorded as holder")

    # With an instance name each process has its own device: <store_path>/<name>.
    folder = Path(config.matrix.store_path) / instance if instance else None
    return MatrixAdapter(config, handle=handle, wake=wake, alert=alert,
                         identity_store=SecretIdentityStore(MatrixIdentitySecrets(uow, bot_id, clock.now)),
                         trust_store=TrustStore(), store_folder=folder, leadership=leader, handled=handled,
                         read_position=state.position if state else None,
                         save_position=save_position if state else None)


class DatabaseAddressBook:
    """The Teams adapter's AddressBook over the unit of work: conversation references in their (sealed)
    table, the chosen language from the person's settings."""

    def __init__(self, uow: ports.UnitOfWorkFactory) -> None:
        self._uow = uow

    async def reference(self, key: Identity) -> dict[str, Any] | None:
        async with self._uow() as work:
            return await work.references.get(key)

    async def addressee(self, person: Identity) -> tuple[dict[str, Any] | None, str | None]:
        async with self._uow() as work:
            return await work.references.get(person), (await work.people.get(person)).language

    async def keep(self, entries: Mapping[Identity, dict[str, Any]], at: datetime) -> None:
        async with self._uow() as work:
            for key, data in entries.items():
                await work.references.put(key, data, at)
            await work.commit()


def teams_adapter(config, uow: ports.UnitOfWorkFactory, clock: Clock, later, **options):
    """The Teams adapter with narrow dependencies: the turn, the outbox's wake, the clock, the address book.
    `later()` gives the bot and the dispatcher, which are made after the notifiers they need; `options`
    go to the adapter as they are (tests: a recorded sleep, a short connector timeout)."""
    from sqlalchemy.engine import make_url

    from meldbot.adapters.teams import TeamsAdapter

    async def handle(message: IncomingMessage) -> list[Reply]:
        return await later()[0].handle(message)

    async def wake(identity: Identity) -> None:
        await later()[1].wake(identity)

    options.setdefault("early_turns", make_url(config.storage.url).get_backend_name() == "postgresql")
    return TeamsAdapter(config, handle=handle, wake=wake, clock=clock, addresses=DatabaseAddressBook(uow), **options)


def build_app(
    config,
    *,
    mode: str = "run",
    clock: Clock | None = None,
    sealer: Sealer | None = None,
    notifiers: dict[str, Notifier] | None = None,
    console_out=None,
    poll_interval: float = 5.0,
    instance: str | None = None,
    outbox_policy: RetryPolicy | None = None,
) -> App:
    """Create everything; nothing starts until `async with app:`."""
    clock = clock or SystemClock()
    db = Database(config.storage.url)
    sealer = sealer or sealer_for(config)
    if isinstance(sealer, PlainSealer):
        log.warning("storing data WITHOUT encryption (storage.allow_plaintext = true); use only for local testing")
        if mode == "run" and (config.matrix.enabled or config.teams.enabled):
            log.warning("Matrix or Teams enabled with UNENCRYPTED storage "
                        "(storage.allow_plaintext_with_platforms = true); for tests only")
    if mode == "run":
        for warning in config_warnings(config):
            log.warning("configuration looks wrong; see meldbot check-config", extra={"key": warning.key})
    # Without a key every commit first checks that the database is still kept in clear (meldbot.storage.canary).
    uow = canary.PlaintextGuard(db, sealer) if isinstance(sealer, PlainSealer) else UnitOfWorkFactory(db, sealer)
    if notifiers is None:
        notifiers = {}
        if mode == "chat":
            import sys

            from meldbot.adapters.console import ConsoleNotifier

            notifiers["console"] = ConsoleNotifier(console_out or sys.stdout, Path("var/afbeeldingen"))
    adapters = []
    leader = matrix_sync = None
    instance = instance_name(instance) if mode == "run" else None
    refuse_shared_device(config, instance)
    name = instance or f"{socket.gethostname()}-{os.getpid()}"
    if mode == "run" and config.matrix.enabled and "matrix" not in notifiers:
        leader, matrix_sync = _matrix_leader(config, db, uow, clock, name)
        matrix = _matrix_adapter(config, uow, clock, lambda: (bot, dispatcher), instance=instance, leader=leader,
                                 state=matrix_sync, name=name)
        notifiers["matrix"] = matrix.notifier
        adapters.append(matrix)
    if mode == "run" and config.teams.enabled and "teams" not in notifiers:
        teams = teams_adapter(config, uow, clock, lambda: (bot, dispatcher))
        notifiers["teams"] = teams.notifier
        adapters.append(teams)
    platforms = tuple(notifiers)
    metrics = Metrics()
    for adapter in adapters:
        if hasattr(adapter, "on_counts"):
            adapter.on_counts.append(metrics.matrix_counts_hook())
    from meldbot.service.deliveries import DeliveryTrouble

    dispatcher = Dispatcher(uow, notifiers, clock, policy=outbox_policy or RetryPolicy(), poll_interval=poll_interval,
                            metrics=metrics,
                            on_trouble=DeliveryTrouble(config, platforms), switched_off=config.platforms_off,
                            progress=lambda item, lease: RowProgress(uow, item, clock.now, lease))
    if leader is not None:
        dispatcher.notifiers = HolderOnly(dispatcher.notifiers, "matrix", leader)  # type: ignore[assignment]
    uow.on_outbox = dispatcher.kick
    bot = Bot(config, uow, clock, platforms, metrics=metrics, slots=db.turn_slots)
    reminders = Reminders(uow, config, clock, platforms)
    app = App(config, clock, db, uow, bot, dispatcher, notifiers, serve_http=(mode == "run"), reminders=reminders,
              sweep_seconds=config.reminders.sweep_seconds, metrics=metrics, adapters=adapters, leader=leader,
              instance=name, matrix_sync=matrix_sync)
    if isinstance(uow, canary.PlaintextGuard):
        uow.on_refused = app.refuse
    return app
