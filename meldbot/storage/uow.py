"""The unit of work: one transaction per use case, with the repositories (meldbot/storage/repositories/,
one per file) that map its rows to domain objects."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import sqlalchemy as sa
import sqlalchemy.orm  # noqa: F401  (sa.orm.Session for the events below)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import await_only, greenlet_spawn

from meldbot.core.messaging import Identity
from meldbot.core.ports import ConversationChanged, StorageUnavailable
from meldbot.storage.db import Database
from meldbot.storage.fast import FastStatements, combined_writes, _returns, _table
from meldbot.storage.matrix import MatrixIdentityRepository, MatrixTrustRepository
from meldbot.storage.repositories.audit import AuditRepository
from meldbot.storage.repositories.conversations import ConversationRepository, TurnMemory
from meldbot.storage.repositories.outbox import OutboxRepository
from meldbot.storage.repositories.people import PersonRepository
from meldbot.storage.repositories.processed import ProcessedEventRepository
from meldbot.storage.repositories.references import ReferenceRepository
from meldbot.storage.repositories.reminders import ReminderRepository
from meldbot.storage.repositories.signals import SignalRepository
from meldbot.storage.sealing import Sealer

__all__ = [
    "DATABASE_ERRORS", "SqlUnitOfWork", "UnitOfWorkFactory",
    "AuditRepository", "ConversationRepository", "OutboxRepository", "PersonRepository",
    "ProcessedEventRepository", "ReferenceRepository", "ReminderRepository", "SignalRepository",
]


# What a failing database or connection raises through SQLAlchemy and the drivers. asyncpg's InternalClientError
# is its protocol meeting a server that went away mid-message (seen when PostgreSQL restarts under traffic);
# SQLAlchemy's adapter passes it through as it is.
DATABASE_ERRORS = (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, ConnectionError, TimeoutError,
                   asyncpg.exceptions.InternalClientError)


def _deferred_first(session) -> None:
    """Before anything the session sends (a query, an ORM flush): the BEGIN with what waits for it (the
    conversation's lock and check, FastStatements.begin_later) and the unit of work's deferred write, so
    statements reach the database in the order they were asked for. Runs inside SQLAlchemy's greenlet."""
    uow = session.info.get("meldbot_uow")
    if uow is None:
        return
    if uow.fast.waiting_for_begin:
        await_only(uow.fast.begin_now())
    if uow._deferred:
        await_only(uow.send_deferred())


@sa.event.listens_for(sa.orm.Session, "do_orm_execute")
def _before_execute(state) -> None:
    _deferred_first(state.session)


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _before_flush(session, _context, _instances) -> None:
    _deferred_first(session)


def _open(engine) -> tuple[AsyncConnection, object]:
    """A pooled connection with its transaction begun, and the driver's connection under it (SQLAlchemy's
    adapter): what `engine.connect()`, `begin()` and `get_raw_connection()` give, in one greenlet switch
    instead of three (pool events, SQLite's BEGIN IMMEDIATE and the reset at check-in apply as always)."""
    sync = engine.sync_engine.connect()
    try:
        sync.begin()
        raw = sync.connection.dbapi_connection
    except BaseException:
        sync.close()
        raise
    return AsyncConnection(engine, sync), raw


def _close(sync) -> None:
    """Roll back what is still open, and hand the connection back to the pool: one greenlet switch."""
    try:
        sync.rollback()
    finally:
        sync.close()


def _raise_conflict(error: sa.exc.IntegrityError, conflict: tuple[str, type[Exception]] | None) -> None:
    """Raise `conflict`'s exception when `error` is a unique violation on its table (asyncpg names the table)."""
    if conflict is None:
        return
    cause = getattr(error.orig, "__cause__", None) or error.orig
    if getattr(cause, "sqlstate", None) == "23505" and getattr(cause, "table_name", None) == conflict[0]:
        raise conflict[1]() from error


class SqlUnitOfWork:
    """`async with uow:` opens a transaction; it rolls back unless `commit()` was called."""

    def __init__(self, db: Database, sealer: Sealer, on_outbox: Callable[[], None] | None = None,
                 memory: TurnMemory | None = None) -> None:
        self._db = db
        self.sealer = sealer
        self.dialect = db.engine.dialect.name
        # The process's TurnMemory (PostgreSQL, with a data key; see ConversationRepository.prefetch), or None.
        self.memory = memory if self.dialect == "postgresql" and sealer.key_id != "plain" else None
        self._on_outbox = on_outbox
        self.outbox_written = False
        self.signals_seen: set[int] = set()   # ids of the signals read or added in this unit of work
        self._session = None
        self._conn = None
        self._raw = None   # the driver's connection under _conn, while it is this unit of work's own
        self._repositories()

    def _repositories(self) -> None:
        self.signals = SignalRepository(self)
        self.outbox = OutboxRepository(self)
        self.conversations = ConversationRepository(self)
        self.people = PersonRepository(self)
        self.audit = AuditRepository(self)
        self.processed = ProcessedEventRepository(self)
        self.reminders = ReminderRepository(self)
        self.references = ReferenceRepository(self)
        self.matrix_identity = MatrixIdentityRepository(self)
        self.matrix_trust = MatrixTrustRepository(self)

    def person_lookup(self, identity: Identity) -> str:
        return self.sealer.lookup("person", f"{identity.platform}:{identity.user_id.casefold()}")

    def person_lookups(self, identity: Identity) -> list[str]:
        return self.sealer.lookups("person", f"{identity.platform}:{identity.user_id.casefold()}")

    @property
    def session(self):
        """The ORM session, made when first asked for: a chat turn's statements go straight to the driver on a
        connection of the unit of work's own (`connection`), and most turns need no session. One made after
        that connection joins its transaction and takes charge of it (commit, rollback), so the session and
        the prebuilt statements stay in one transaction."""
        if self._session is None:
            if self._conn is not None:
                self._session = self._db.sessions(bind=self._conn, join_transaction_mode="control_fully")
            else:
                self._session = self._db.sessions()
            self._session.sync_session.info["meldbot_uow"] = self
        return self._session

    async def _connection(self):
        """For FastStatements only (it sends the waiting writes first): the AsyncConnection of this unit of work's transaction (begun): the session's when it has one, else
        one taken from the pool for the unit of work (SQLAlchemy's own, so pool events, the SQLite BEGIN
        IMMEDIATE and the reset at check-in all apply)."""
        if self._session is not None:
            return await self._session.connection()
        if self._conn is None:
            self._conn, self._raw = await greenlet_spawn(_open, self._db.engine)
        elif not self._conn.in_transaction():
            self._raw = None   # a BEGIN may reconnect an invalidated connection: ask for the driver's again
            await self._conn.begin()
        return self._conn

    async def _adapter(self):
        """For FastStatements: the driver's connection (SQLAlchemy's adapter of it) under `_connection`'s
        transaction."""
        connection = await self._connection()
        if connection is not self._conn:
            return (await connection.get_raw_connection()).dbapi_connection
        if self._raw is None:
            self._raw = (await connection.get_raw_connection()).dbapi_connection
        return self._raw

    def transaction(self):
        """SQLAlchemy's object for the transaction `connection` gave (its `is_active` says whether it goes on)."""
        if self._conn is not None:
            return self._conn.sync_connection.get_transaction()
        return self._session.sync_session.get_transaction() if self._session is not None else None

    def _is_clean(self) -> bool:
        return self._session is None or self._session.sync_session._is_clean()

    async def __aenter__(self) -> "SqlUnitOfWork":
        self._session = None
        self._conn = None
        self._raw = None
        self._deferred = []
        self._pending_first = False
        self._conflict = None
        # The turn's prebuilt statements: straight to the driver (meldbot/storage/fast.py).
        self.fast = FastStatements(self, self._db.engine.dialect)
        self.outbox_written = False
        self.signals_seen = set()
        self.processed.forget_read()   # what an earlier use of this unit of work read is not this one's
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        self._deferred = []   # not committed: nothing of it is kept
        self._pending_first = False
        self._conflict = None
        session, conn, self._session, self._conn, self._raw = self._session, self._conn, None, None, None
        try:
            try:
                self.fast.released()
                if session is not None:
                    await session.rollback()
            finally:
                try:
                    if session is not None:
                        await session.close()
                finally:
                    if conn is not None:
                        await greenlet_spawn(_close, conn.sync_connection)
        except DATABASE_ERRORS as failed:
            if exc is None or not isinstance(exc, DATABASE_ERRORS):
                raise StorageUnavailable(type(failed).__name__) from failed
        if isinstance(exc, DATABASE_ERRORS):
            # The service sees the core's exception; the driver's stays attached as the cause.
            raise StorageUnavailable(type(exc).__name__) from exc

    async def run(self, stmt, params=None):
        """A prebuilt Core statement (a module constant with bind parameters) with `params`: see FastStatements.
        ORM changes not yet flushed go first (after `taal en` the next read must see the new language)."""
        if self._session is not None and not self._session.sync_session._is_clean():
            await self._session.flush()
        if self._deferred:
            await self.send_deferred()
        return await self.fast.run(stmt, params)

    async def read_before_begin(self, stmt, params, timeout: float):
        """A prebuilt read sent before the transaction begins, while the conversation's lock waits for the BEGIN
        (FastStatements.read_before_begin), bounded by `timeout` seconds; None when that cannot be."""
        if self._deferred or not self._is_clean():
            return None
        return await self.fast.read_before_begin(stmt, params, timeout)

    async def begin_with(self, sql: str) -> None:
        """A literal statement (no parameters) first in this unit of work's transaction: on PostgreSQL in one
        round trip with BEGIN when the transaction has not begun (see FastStatements.begin_with)."""
        if self._deferred:
            await self.send_deferred()
        await self.fast.begin_with(sql)

    async def write(self, stmt, params) -> None:
        """A write whose outcome nobody reads (no RETURNING, no row count): on PostgreSQL it waits for this
        unit of work's next statement, and the writes that wait go with each other in one statement (a
        data-modifying WITH; see combined_writes): a submission's melder, events, keys, audit line and AF
        notifications are one round trip. On SQLite (no round trips) it runs at once."""
        if self.dialect != "postgresql":
            await self.fast.run(stmt, params)
            return
        self.defer(stmt, params)

    def defer(self, stmt, params, conflict: tuple[str, type[Exception]] | None = None) -> None:
        """A write that may wait for this unit of work's next statement: sent before it (run, a session
        query, a flush, the commit), or with it in one statement when the next one asks (take_deferred).
        The statements of one WITH see the same snapshot and none sees another's rows: a second write to a
        table that one waits for sends what waits first, so writes to one table keep their order.
        `conflict`: (table, exception): a unique violation on that table, when the writes are sent, raises
        the exception instead (with the database's error as its cause).
        A row for the INSERT that waits last (the same prebuilt statement, the same columns) joins it: one
        INSERT of several rows, in the order asked (`lijst` writes an audit line for each open signal), up to
        JOINED_ROWS, so that the statements combined_writes builds and keeps stay few and small."""
        if _returns(stmt):
            raise ValueError("a deferred write gives nothing back")
        if isinstance(params, (list, tuple)) and not params:
            raise ValueError("a deferred write of no rows")
        if self._deferred and conflict is None and _joins(self._deferred[-1], stmt, params):
            waiting = self._deferred[-1][1]
            if not isinstance(waiting, _Joined):
                self._deferred[-1] = (stmt, waiting := _Joined([waiting]))
            waiting.append(params)
            return
        if any(_table(waiting) is _table(stmt) for waiting, _ in self._deferred):
            self._pending_first = True
        self._deferred.append((stmt, params))
        if conflict is not None:
            self._conflict = conflict

    @property
    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def take_deferred(self, stmt) -> dict | None:
        """The parameters of the deferred write when it is `stmt` and waits alone (the caller sends it with its
        own), else None."""
        if len(self._deferred) == 1 and not self._pending_first and self._deferred[0][0] is stmt:
            params = self._deferred[0][1]
            self._deferred = []
            return params
        return None

    async def send_deferred(self) -> None:
        pending, self._deferred = self._deferred, []
        split, self._pending_first = self._pending_first, False
        conflict, self._conflict = self._conflict, None
        if not pending:
            return
        try:
            combined = combined_writes(pending) if len(pending) > 1 and not split else None
            if combined is not None:
                await self.fast.run(*combined)
                return
            for stmt, params in pending:   # one, or writes that cannot go in one statement: one by one, in order
                await self.fast.run(stmt, params)
        except sa.exc.IntegrityError as error:
            _raise_conflict(error, conflict)
            raise

    def restart(self) -> bool:
        """After ConversationChanged(kept=True): the turn starts over in the same transaction, which still holds
        the conversation (the database rolled back to the savepoint after its lock). What this unit of work
        read, and the writes that wait, are forgotten: the repositories are new. False when an ORM session
        was used (its objects would be stale): the caller starts over in a new unit of work."""
        if self._session is not None:
            return False
        self.fast.restarted()
        self._deferred = []
        self._pending_first = False
        self._conflict = None
        self.outbox_written = False
        self.signals_seen = set()
        self._repositories()
        return True

    async def flush(self) -> None:
        await self.send_deferred()
        if self._session is not None:
            await self._session.flush()

    async def commit(self) -> None:
        if self.fast.changed:
            raise ConversationChanged(holds_lock=True)   # what the turn read changed: nothing of it is kept
        if self.conversations.remembered and self.fast.waiting_for_begin and not self._deferred:
            # A turn that took what it read from the process's memory and writes nothing: its answer rests on
            # that memory, so the check goes now (ConversationChanged when it fails), with the COMMIT below.
            await self.fast.begin_now()
        if self.fast.waiting_for_begin and not self._is_clean():
            # The ORM session's changes go at its commit below; the lock and the check first.
            await self.fast.begin_now()
        if self._deferred and not self._pending_first and self._is_clean() and self.sealer.key_id != "plain":
            # The waiting writes with the COMMIT in one round trip where FastStatements.commit_with can (on
            # PostgreSQL, a turn's conversation update and the record of its event: 4 -> 3 round trips).
            alone = len(self._deferred) == 1 and not isinstance(self._deferred[0][1], (list, tuple))
            write = self._deferred[0] if alone else combined_writes(self._deferred)   # rows: one INSERT
            try:
                if write is not None and await self.fast.commit_with(*write):
                    self._deferred, self._conflict = [], None
            except sa.exc.IntegrityError as error:
                _raise_conflict(error, self._conflict)
                raise
        await self.send_deferred()
        self.fast.released()
        if self._session is not None:
            await self._session.commit()     # the connection's transaction too, when it joined one
        if self._conn is not None and self._conn.in_transaction():
            # A session made after the connection takes its transaction over only with its first statement.
            await self._conn.commit()
        self.conversations.committed()
        if self.outbox_written and self._on_outbox:
            self._on_outbox()
        self.outbox_written = False


class UnitOfWorkFactory:
    """Creates a fresh unit of work per use case."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer
        self.on_outbox: Callable[[], None] | None = None
        self.memory = TurnMemory()   # shared by this process's units of work

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, self.sealer, self.on_outbox, self.memory)


# Rows joined into one waiting INSERT at most: combined_writes keeps a statement per number of rows, and builds
# it the first time (about 20 ms for 60 rows, 150 ms for 1,000).
JOINED_ROWS = 32


class _Joined(list):
    """The rows joined into one waiting INSERT (a caller's own list of rows is never appended to)."""


def _joins(waiting: tuple, stmt, params) -> bool:
    """`params` is one more row for the INSERT `waiting` (SqlUnitOfWork.defer), which has room for it."""
    previous, rows = waiting
    if previous is not stmt or not isinstance(stmt, sa.sql.dml.Insert) or stmt._values or stmt._multi_values:
        return False
    if isinstance(rows, _Joined):
        if len(rows) >= JOINED_ROWS:
            return False
        rows = rows[0]
    return isinstance(params, dict) and isinstance(rows, dict) and tuple(rows) == tuple(params)
