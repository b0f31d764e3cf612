"""Who holds the Matrix sync stream: one process per bot account, chosen by a PostgreSQL advisory lock.

The lock is session-level (`pg_try_advisory_lock`) on a connection of its own, never one of the pool: it
lives as long as that connection. A process killed with -9 loses its session, so the lock frees at once; a
holder whose lock session the server ends (pg_terminate_backend, a restart) steps down the moment asyncpg
reports it; one that merely cannot reach its lock connection any more stops at its next check (every few
seconds, with a deadline), and the server may free the lock before that. So a new holder waits one check
and its deadline (`settle`) before its first full sync: for those seconds two processes may both believe
they hold the stream, but only one syncs. Standby processes try to take it every few seconds.
On SQLite there is one process: it simply holds the stream (SoleHolder).

Both kinds have what the Matrix adapter needs: `holding`, and `watch()`, an event set at the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import make_url

log = logging.getLogger("meldbot.storage.leader")


def lock_key(scope: str, account: str) -> int:
    """The advisory lock's number for one bot account: a hash, so pg_locks shows no Matrix id."""
    digest = hashlib.sha256(f"meldbot:{scope}:{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL (postgresql+asyncpg://...) as asyncpg's own DSN."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class _Watched:
    def __init__(self) -> None:
        self.holding = False
        self._change = asyncio.Event()

    def watch(self) -> asyncio.Event:
        """An event that is set at the next change of `holding` (take it before awaiting anything)."""
        return self._change

    def _set(self, holding: bool) -> None:
        if holding != self.holding:
            self.holding = holding
            change, self._change = self._change, asyncio.Event()
            change.set()


class SoleHolder(_Watched):
    """SQLite: one process, which holds the stream."""

    connected = True
    settle = 0.0

    def __init__(self, on_change: Callable[[bool], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self.holding = True
        self._on_change = on_change

    async def start(self) -> None:
        """Records this process as the holder (the shared position is saved only by the recorded holder)."""
        if self._on_change is not None:
            try:
                await self._on_change(True)
            except Exception as exc:
                log.warning("matrix sync holder not recorded", extra={"error": type(exc).__name__})

    async def stop(self) -> None:
        pass


class AdvisoryLeader(_Watched):
    """Holds or waits for one advisory lock on a dedicated asyncpg connection.

    `on_change(holding)` is awaited after each change (e.g. to record the holder); its failure is logged,
    and a take-over not recorded is recorded again at each look until that succeeds. `connected` says whether the lock connection answered at the last look."""

    def __init__(self, url: str, key: int, *, poll: float = 5.0, check: float = 5.0, timeout: float = 3.0,
                 on_change: Callable[[bool], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self._dsn = asyncpg_dsn(url)
        self.key = key
        self.poll, self.check, self.timeout = poll, check, timeout
        self._on_change = on_change
        self._recorded: bool | None = None   # what on_change last recorded (None: not yet, or it failed)
        self._stepping_down: asyncio.Future | None = None
        self._hold_off = 0.0    # loop time before which a holder that just stepped down does not take it again
        # A new holder waits this long before its first full sync: a holder that lost its lock connection
        # without hearing of it stops within one check (with its deadline).
        self.settle = check + timeout
        self._conn = None
        self._task: asyncio.Task | None = None
        self.connected = False
        self.first_look = asyncio.Event()    # set once the first attempt to take the lock is done

    async def start(self) -> None:
        """Try once now (so a lone process holds the stream from the start), then keep looking."""
        await self._look()
        self._task = asyncio.create_task(self._run(), name="matrix-leader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        was = self.holding
        self._set(False)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await conn.close()   # closing the session releases the lock
            if not conn.is_closed():
                conn.terminate()
        if was:
            await self._changed(False)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check if self.holding else self.poll)
            await self._look()

    async def _look(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                if self.holding and (self._conn is None or self._conn.is_closed()):
                    # The lock lived in that session: a new connection would not hold it.
                    raise ConnectionError("the lock connection closed")
                if self._conn is None or self._conn.is_closed():
                    import asyncpg

                    # The server, too, must notice a holder that is cut off (not only killed) within seconds:
                    # keepalives on this session, so the lock frees well within the 30 s of a take-over.
                    self._conn = await asyncpg.connect(self._dsn, timeout=self.timeout, server_settings={
                        "application_name": "meldbot-matrix-leader", "tcp_keepalives_idle": "5",
                        "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3", "tcp_user_timeout": "10000"})
                    # The lock frees the moment the server ends the session: step down at that moment too.
                    self._conn.add_termination_listener(self._terminated)
                if self.holding:
                    await self._conn.fetchval("SELECT 1")
                    got = True
                elif asyncio.get_running_loop().time() < self._hold_off:
                    await self._conn.fetchval("SELECT 1")   # just stepped down: a standby takes it first
                    got = False
                else:
                    got = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
            self.connected = True
        except Exception as exc:  # the lock connection is gone or hangs: stop holding at once
            self.connected = False
            if self.holding:
                log.error("matrix sync lock connection lost; stepping down", extra={"error": type(exc).__name__})
                self._hold_off = asyncio.get_running_loop().time() + 2 * self.poll
            else:
                log.warning("matrix sync lock not checkable", extra={"error": type(exc).__name__})
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.terminate()
            got = False
        self.first_look.set()
        if got != self.holding:
            self._set(got)
            log.info("matrix sync stream " + ("taken" if got else "given up"))
            await self._changed(got)
        elif got and self._recorded is not True:
            await self._changed(True)   # recording the take-over failed: again at each look until it is done

    def _terminated(self, conn) -> None:
        """asyncpg: the lock connection ended (pg_terminate_backend, a server restart, a cut connection)."""
        if conn is not self._conn or not self.holding:
            return   # an old connection, or this process closed it itself
        self._conn = None
        self.connected = False
        self._hold_off = asyncio.get_running_loop().time() + 2 * self.poll
        log.error("matrix sync lock connection ended; stepping down")
        self._set(False)
        self._stepping_down = asyncio.ensure_future(self._changed(False))

    async def _changed(self, holding: bool) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change(holding)
        except Exception as exc:
            self._recorded = None
            log.warning("matrix sync holder not recorded; trying again", extra={"error": type(exc).__name__})
        else:
            self._recorded = holding
