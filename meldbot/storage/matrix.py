"""Matrix-specific storage: the bot account's cross-signing keys and what it trusts of each AF.

Both are found by keyed hashes (the bot's and the AF's Matrix ids never stand in clear) and sealed.
Reads try every key the sealer knows; a write under an old key moves the row to the current one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from meldbot.core.messaging import Identity
from meldbot.storage.tables import MatrixIdentityRow, MatrixSyncRow, MatrixTrustRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork

PLATFORM = "matrix"


def _identity(user_id: str) -> Identity:
    return Identity(PLATFORM, user_id)


class MatrixIdentityRepository:
    """The private cross-signing keys (as the secret JSON the adapter gives) per bot account."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def _row(self, bot_user_id: str) -> MatrixIdentityRow | None:
        lookups = self._uow.person_lookups(_identity(bot_user_id))
        stmt = select(MatrixIdentityRow).where(MatrixIdentityRow.account_lookup.in_(lookups))
        return (await self._uow.session.exec(stmt)).first()

    async def get(self, bot_user_id: str) -> str | None:
        row = await self._row(bot_user_id)
        return self._uow.sealer.open(row.keys_sealed) if row else None

    async def put(self, bot_user_id: str, secret_json: str, at: datetime) -> None:
        """Store the keys, replacing any stored before."""
        sealer, session = self._uow.sealer, self._uow.session
        lookup = self._uow.person_lookup(_identity(bot_user_id))
        row = await self._row(bot_user_id)
        created = at
        if row is not None and row.account_lookup != lookup:   # written under a key being rotated away
            created = row.created_at
            await session.delete(row)
            await session.flush()
            row = None
        row = row or MatrixIdentityRow(account_lookup=lookup, account_sealed=sealer.seal(bot_user_id),
                                       keys_sealed="", created_at=created, updated_at=at)
        row.keys_sealed = sealer.seal(secret_json)
        row.updated_at = at
        session.add(row)

    async def add(self, bot_user_id: str, secret_json: str, at: datetime) -> bool:
        """Store the keys unless some are stored already; True when these were stored.

        Two processes adding at once: one wins (the primary key), the other gets False after commit
        at the latest, and reads the winner's keys.
        """
        if await self._row(bot_user_id) is not None:
            return False
        sealer = self._uow.sealer
        insert = postgresql.insert if self._uow.dialect == "postgresql" else sqlite.insert
        stmt = insert(MatrixIdentityRow).values(
            account_lookup=self._uow.person_lookup(_identity(bot_user_id)), account_sealed=sealer.seal(bot_user_id),
            keys_sealed=sealer.seal(secret_json), created_at=at, updated_at=at,
        ).on_conflict_do_nothing(index_elements=["account_lookup"]).returning(MatrixIdentityRow.account_lookup)
        return (await self._uow.session.exec(stmt)).first() is not None


class MatrixTrustRepository:
    """Per (bot account, AF): one JSON state the adapter owns (pinned master key, known devices, ...)."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def _row(self, bot_user_id: str, af_id: str) -> MatrixTrustRow | None:
        stmt = select(MatrixTrustRow).where(
            MatrixTrustRow.account_lookup.in_(self._uow.person_lookups(_identity(bot_user_id))),
            MatrixTrustRow.person_lookup.in_(self._uow.person_lookups(_identity(af_id))))
        return (await self._uow.session.exec(stmt)).first()

    async def get(self, bot_user_id: str, af_id: str) -> dict[str, Any] | None:
        row = await self._row(bot_user_id, af_id)
        return json.loads(self._uow.sealer.open(row.state_sealed)) if row else None

    async def put(self, bot_user_id: str, af_id: str, state: dict[str, Any], at: datetime) -> None:
        sealer, session = self._uow.sealer, self._uow.session
        account = self._uow.person_lookup(_identity(bot_user_id))
        person = self._uow.person_lookup(_identity(af_id))
        row = await self._row(bot_user_id, af_id)
        if row is not None and (row.account_lookup, row.person_lookup) != (account, person):
            await session.delete(row)
            await session.flush()
            row = None
        row = row or MatrixTrustRow(account_lookup=account, person_lookup=person,
                                    identity_sealed=sealer.seal(json.dumps([bot_user_id, af_id])),
                                    state_sealed="", updated_at=at)
        row.state_sealed = sealer.seal(json.dumps(state, ensure_ascii=False))
        row.updated_at = at
        session.add(row)

    async def all(self, bot_user_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(AF Matrix id, state) for every AF this bot account keeps a state for."""
        stmt = select(MatrixTrustRow).where(
            MatrixTrustRow.account_lookup.in_(self._uow.person_lookups(_identity(bot_user_id))))
        opened = self._uow.sealer.open
        return [(json.loads(opened(row.identity_sealed))[1], json.loads(opened(row.state_sealed)))
                for row in (await self._uow.session.exec(stmt)).all()]

    async def delete(self, bot_user_id: str, af_id: str) -> None:
        row = await self._row(bot_user_id, af_id)
        if row is not None:
            await self._uow.session.delete(row)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class MatrixIdentitySecrets:
    """The bot's cross-signing secret in the database, one unit of work per call.

    What `adapters.matrix.cross_signing.SecretIdentityStore` wraps: it turns the secret JSON into keys,
    so the adapter needs no SQL and storage needs no cryptography of Matrix.
    """

    def __init__(self, uow_factory: Callable[[], "SqlUnitOfWork"], bot_user_id: str,
                 now: Callable[[], datetime] = _utcnow) -> None:
        self._uow_factory = uow_factory
        self._bot_user_id = bot_user_id
        self._now = now

    async def load(self) -> str | None:
        async with self._uow_factory() as uow:
            return await uow.matrix_identity.get(self._bot_user_id)

    async def save(self, secret_json: str, *, replace: bool = False) -> None:
        """Store the secret; without `replace`, a secret stored already (by another replica) is kept."""
        async with self._uow_factory() as uow:
            if replace:
                await uow.matrix_identity.put(self._bot_user_id, secret_json, self._now())
            else:
                await uow.matrix_identity.add(self._bot_user_id, secret_json, self._now())
            await uow.commit()


class MatrixSyncState:
    """The shared row of the bot account's sync stream (matrix_sync): the position the holder fully handled,
    and which process holds the stream. One unit of work per call; found by the same keyed hash as the
    identity, so a row written under a key being rotated away is still found (and moved on the next write)."""

    def __init__(self, uow_factory: Callable[[], "SqlUnitOfWork"], bot_user_id: str,
                 now: Callable[[], datetime] = _utcnow) -> None:
        self._uow_factory = uow_factory
        self._bot_user_id = bot_user_id
        self._now = now

    async def _row(self, uow: "SqlUnitOfWork") -> MatrixSyncRow | None:
        lookups = uow.person_lookups(_identity(self._bot_user_id))
        stmt = select(MatrixSyncRow).where(MatrixSyncRow.account_lookup.in_(lookups))
        return (await uow.session.exec(stmt)).first()

    async def _current(self, uow: "SqlUnitOfWork") -> MatrixSyncRow:
        """The row under the current key, made or moved there when needed."""
        lookup = uow.person_lookup(_identity(self._bot_user_id))
        row = await self._row(uow)
        if row is not None and row.account_lookup != lookup:
            moved = MatrixSyncRow(account_lookup=lookup, position=row.position, holder=row.holder,
                                  holder_since=row.holder_since, updated_at=row.updated_at)
            await uow.session.delete(row)
            await uow.session.flush()
            row = moved
        return row or MatrixSyncRow(account_lookup=lookup, updated_at=self._now())

    async def get(self) -> tuple[str | None, str | None, datetime | None]:
        """(position, holder, holder since); all None when nothing was recorded yet."""
        async with self._uow_factory() as uow:
            row = await self._row(uow)
            return (row.position, row.holder, row.holder_since) if row else (None, None, None)

    async def position(self) -> str | None:
        return (await self.get())[0]

    async def holder(self) -> str | None:
        return (await self.get())[1]

    async def save_position(self, position: str, holder: str) -> bool:
        """Record what `holder` fully handled; only while it is the recorded holder (a process that lost the
        stream moments ago does not write over its successor). One statement: the holder is checked under
        the row lock, so a successor's `set_holder` in between always wins."""
        async with self._uow_factory() as uow:
            lookups = uow.person_lookups(_identity(self._bot_user_id))
            stmt = (sa.update(MatrixSyncRow)
                    .where(MatrixSyncRow.account_lookup.in_(lookups), MatrixSyncRow.holder == holder)
                    .values(position=position, updated_at=self._now()))
            written = (await uow.session.exec(stmt)).rowcount   # type: ignore[call-overload]
            await uow.commit()
        return bool(written)

    async def set_holder(self, holder: str, holding: bool) -> None:
        """`holder` took the stream (holding: it is recorded whoever was recorded before, the lock says it
        holds) or gave it up (then the row names nobody, if it still named it)."""
        async with self._uow_factory() as uow:
            now = self._now()
            if not holding:
                lookups = uow.person_lookups(_identity(self._bot_user_id))
                await uow.session.exec(sa.update(MatrixSyncRow)   # type: ignore[call-overload]
                                       .where(MatrixSyncRow.account_lookup.in_(lookups),
                                              MatrixSyncRow.holder == holder)
                                       .values(holder=None, holder_since=None, updated_at=now))
                await uow.commit()
                return
            row = await self._current(uow)    # moves a row written under a key being rotated away
            insert = postgresql.insert if uow.dialect == "postgresql" else sqlite.insert
            stmt = insert(MatrixSyncRow).values(account_lookup=row.account_lookup, position=row.position,
                                                holder=holder, holder_since=now, updated_at=now)
            stmt = stmt.on_conflict_do_update(index_elements=["account_lookup"],
                                              set_=dict(holder=holder, holder_since=now, updated_at=now))
            await uow.session.exec(stmt)   # type: ignore[call-overload]
            await uow.commit()
