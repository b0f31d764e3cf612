"""The key canary: one row that says whether a database is sealed, and with which key, checked at every start.

Without it a process with no key (or the wrong one) found out only when a value failed to open, and a
process without a key happily wrote plaintext next to sealed values. The row holds a known text sealed
with the data key, or the marker "plaintext" for a database kept in clear (`storage.allow_plaintext`).
It is written by `meldbot migrate` or the first start; a database made before it existed is judged by
what its rows hold. A process without a key writes through `PlaintextGuard`, so it stops writing as soon as
`meldbot seal-plaintext` (or a first start with a key) has marked the database sealed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlmodel import select

from meldbot.storage.db import Database
from meldbot.storage.sealing import PREFIX, KeyringSealer, PlainSealer, Sealer
from meldbot.storage.tables import KeyCanaryRow
from meldbot.storage.uow import SqlUnitOfWork, UnitOfWorkFactory

log = logging.getLogger("meldbot.storage.canary")

CANARY_TEXT = "meldbot key canary"
PLAINTEXT = "plaintext"

# One sealed column per table: enough to tell sealed, plaintext and mixed databases apart. A NULL is neither
# (LIKE and NOT LIKE are never true for it): processed_event.replies_sealed keeps the replies for 1 hour,
# then is NULL while the row stays 7 days as a content-free marker; the row goes at once when retention
# erases a signal the replies showed.
SEALED_COLUMNS = (
    ("signal", "content_sealed"), ("melder", "identity_sealed"), ("signal_event", "data_sealed"),
    ("audit", "actor_sealed"), ("conversation", "state_sealed"), ("outbox", "payload_sealed"),
    ("person", "identity_sealed"), ("processed_event", "replies_sealed"),
    ("conversation_reference", "reference_sealed"), ("matrix_identity", "keys_sealed"),
    ("matrix_trust", "state_sealed"),
)


class KeyState(enum.Enum):
    NEW = "new"                    # no canary and no data yet: the first start decides
    SEALED = "sealed"              # the key opens the canary
    PLAINTEXT = "plaintext"        # kept in clear, and this process has no key
    NO_KEY = "no_key"              # sealed values, but this process has no key
    WRONG_KEY = "wrong_key"        # sealed values this process's keys do not open
    NEEDS_SEALING = "needs_sealing"   # plaintext values (alone or beside sealed ones) and a key: seal-plaintext

    @property
    def usable(self) -> bool:
        return self in (KeyState.NEW, KeyState.SEALED, KeyState.PLAINTEXT)


class DataKeyRefused(Exception):
    """This process may not read or write the database with its key (or lack of one)."""

    def __init__(self, state: KeyState, key_id: str = "", sealed_with: str = "") -> None:
        super().__init__(f"data key refused: {state.value}")
        self.state = state
        self.key_id = key_id
        self.sealed_with = sealed_with

    @property
    def text_key(self) -> str:
        return f"cli.key.{self.state.value}"

    @property
    def params(self) -> dict[str, str]:
        return {"key_id": self.key_id or "-", "sealed_with": self.sealed_with or "?"}


def _key_id_of(sealed: str) -> str:
    return sealed[len(PREFIX):].partition(".")[0] if sealed.startswith(PREFIX) else ""


def _opened(sealer: Sealer, sealed: str) -> str | None:
    try:
        return sealer.open(sealed)
    except Exception:   # UnknownKey, InvalidTag, bad base64: all mean "not this key"
        return None


_READ = sa.text("SELECT value FROM key_canary WHERE id = 1")


async def read(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return (await conn.execute(_READ)).scalar()


async def _plain_in(conn, table: str, column: str) -> bool:
    return (await conn.execute(sa.text(f"SELECT 1 FROM {table} WHERE {column} NOT LIKE :p LIMIT 1"),
                               {"p": PREFIX + "%"})).first() is not None


async def survey(db: Database) -> tuple[list[str], bool]:
    """One sealed value per table that has any, and whether any value is stored in clear."""
    sealed, plain = [], False
    async with db.engine.connect() as conn:
        for table, column in SEALED_COLUMNS:
            found = (await conn.execute(sa.text(
                f"SELECT {column} FROM {table} WHERE {column} LIKE :p LIMIT 1"), {"p": PREFIX + "%"})).scalar()
            if found is not None:
                sealed.append(found)
            plain = plain or await _plain_in(conn, table, column)
    return sealed, plain


async def plaintext_found(db: Database) -> bool:
    """Whether any sealed column holds a value in clear: one LIMIT 1 query per table, stopping at the first."""
    async with db.engine.connect() as conn:
        for table, column in SEALED_COLUMNS:
            if await _plain_in(conn, table, column):
                return True
    return False


async def empty(db: Database) -> bool:
    """No row at all in any table that holds sealed values (whatever else the database holds)."""
    async with db.engine.connect() as conn:
        return await _empty(conn)


async def _empty(conn) -> bool:
    for table, _ in SEALED_COLUMNS:
        if (await conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1"))).first() is not None:
            return False
    return True


class Verdict:
    """What `examine` found: the state, and the key ids to name in the message."""

    def __init__(self, state: KeyState, canary: str | None, key_id: str = "", sealed_with: str = "") -> None:
        self.state, self.canary, self.key_id, self.sealed_with = state, canary, key_id, sealed_with

    def refusal(self) -> DataKeyRefused:
        return DataKeyRefused(self.state, self.key_id, self.sealed_with)


async def examine(db: Database, sealer: Sealer, *, thorough: bool = False) -> Verdict:
    """Judge the database against this process's sealer without writing anything. `thorough` also opens a
    sealed value of every table when the canary says plaintext (doctor, seal-plaintext): a wrong key is
    then named as such rather than as plaintext to seal."""
    has_key = isinstance(sealer, KeyringSealer)
    key_id = sealer.key_id if has_key else ""
    canary = await read(db)
    if canary is not None and canary != PLAINTEXT:
        if not has_key:
            return Verdict(KeyState.NO_KEY, canary, sealed_with=_key_id_of(canary))
        if _opened(sealer, canary) != CANARY_TEXT:
            return Verdict(KeyState.WRONG_KEY, canary, key_id, _key_id_of(canary))
        # Looked at every time, not only by doctor: a keyless process that kept running through
        # seal-plaintext can have written in clear since, and reading that fails deep in a command.
        if await plaintext_found(db):
            return Verdict(KeyState.NEEDS_SEALING, canary, key_id)
        return Verdict(KeyState.SEALED, canary, key_id)
    if canary == PLAINTEXT and has_key and await empty(db):
        # Migrated without a key (the example configuration allows it) and nothing written yet: nothing
        # to seal; `ensure` marks it sealed with this key.
        return Verdict(KeyState.NEW, canary, key_id)
    if canary == PLAINTEXT and not thorough:
        return Verdict(KeyState.NEEDS_SEALING if has_key else KeyState.PLAINTEXT, canary, key_id)
    # No canary (a database from before it existed) or a plaintext one: judge by the rows.
    sealed, plain = await survey(db)
    if sealed and not has_key:
        return Verdict(KeyState.NO_KEY, canary, sealed_with=_key_id_of(sealed[0]))
    if sealed:
        wrong = next((s for s in sealed if _opened(sealer, s) is None), None)
        if wrong is not None:
            return Verdict(KeyState.WRONG_KEY, canary, key_id, _key_id_of(wrong))
    if plain or canary == PLAINTEXT:
        return Verdict(KeyState.NEEDS_SEALING if has_key else KeyState.PLAINTEXT, canary, key_id)
    if sealed:
        return Verdict(KeyState.SEALED, canary, key_id)
    return Verdict(KeyState.NEW, canary, key_id)


async def write(db: Database, sealer: Sealer) -> None:
    """Mark the database as sealed with this key, or as plaintext; replaces what was there."""
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM key_canary WHERE id = 1"))
        await _insert(conn, _value_for(sealer))


async def ensure(db: Database, sealer: Sealer) -> KeyState:
    """At every start and before every command that touches data: refuse (DataKeyRefused) a key that
    does not fit, and write the canary when there is none yet."""
    verdict = await examine(db, sealer)
    if not verdict.state.usable:
        raise verdict.refusal()
    if verdict.canary == PLAINTEXT and verdict.state is KeyState.NEW:
        if await _seal_empty(db, sealer):
            log.info("empty database made without a key now marked as sealed with this key",
                     extra={"key_id": verdict.key_id})
            return KeyState.SEALED
        verdict = await examine(db, sealer)    # something was written meanwhile: judge again
        if not verdict.state.usable:
            raise verdict.refusal()
    if verdict.canary is None:
        try:
            async with db.engine.begin() as conn:
                await _insert(conn, _value_for(sealer))
        except sa.exc.IntegrityError:   # another process wrote it first: judge again by its canary
            verdict = await examine(db, sealer)
            if not verdict.state.usable:
                raise verdict.refusal() from None
    return verdict.state


async def _seal_empty(db: Database, sealer: Sealer) -> bool:
    """Replace a plaintext canary by this key's, in one transaction with a last look that nothing was written."""
    async with db.engine.begin() as conn:
        if not await _empty(conn):
            return False
        changed = await conn.execute(
            sa.text("UPDATE key_canary SET value = :v, updated_at = :at WHERE id = 1 AND value = :plain"),
            {"v": _value_for(sealer), "plain": PLAINTEXT, "at": _now()})
        return changed.rowcount == 1


class PlaintextGuard(UnitOfWorkFactory):
    """Units of work for a process without a key. Each commit first reads the canary in the transaction it
    commits: once `meldbot seal-plaintext` (or a start with a key) has marked the database sealed, nothing more is
    written in clear; the commit is refused (DataKeyRefused, rolled back) and `on_refused` is told, so the
    process can stop. A database without a canary (made before it existed) is left as it was."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        super().__init__(db, sealer)
        self.on_refused: Callable[[DataKeyRefused], None] | None = None

    def __call__(self) -> SqlUnitOfWork:
        return _GuardedUnitOfWork(self.db, self.sealer, self.on_outbox, self)


_VALUE = select(KeyCanaryRow.value).where(KeyCanaryRow.id == 1)


class _GuardedUnitOfWork(SqlUnitOfWork):
    def __init__(self, db: Database, sealer: Sealer, on_outbox, guard: PlaintextGuard) -> None:
        super().__init__(db, sealer, on_outbox)
        self._guard = guard

    async def commit(self) -> None:
        value = (await self.session.exec(_VALUE)).first()
        if value is not None and value != PLAINTEXT:
            refusal = DataKeyRefused(KeyState.NO_KEY, sealed_with=_key_id_of(value))
            if self._guard.on_refused is not None:
                self._guard.on_refused(refusal)
            raise refusal
        await super().commit()


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _value_for(sealer: Sealer) -> str:
    return PLAINTEXT if isinstance(sealer, PlainSealer) else sealer.seal(CANARY_TEXT)


async def _insert(conn, value: str) -> None:
    await conn.execute(sa.text("INSERT INTO key_canary (id, value, updated_at) VALUES (1, :v, :at)"),
                       {"v": value, "at": _now()})
