"""Reminder slots sent: a unique key per slot, claimed by exactly one process."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import select

from meldbot.storage.repositories._sql import chunks, dialect_insert
from meldbot.storage.tables import ReminderSentRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


class ReminderRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def claim(self, key: str, meldpunt_id: str, signal_id: int | None, due, now: datetime) -> bool:
        """True for exactly one caller per key, whatever the number of processes."""
        return key in await self.claim_many([(key, meldpunt_id, signal_id, due)], now)

    async def claim_many(self, items: list[tuple[str, str, int | None, Any]], now: datetime) -> set[str]:
        """The keys of (key, meldpunt_id, signal_id, due) this caller got; others were claimed before."""
        insert = dialect_insert(self._uow.dialect)
        claimed: set[str] = set()
        rows = [dict(key=key, meldpunt_id=meldpunt_id, signal_id=signal_id, kind=due.kind, slot=due.slot,
                     due_at=due.due_at, sent_at=now) for key, meldpunt_id, signal_id, due in items]
        for chunk in chunks(rows):
            stmt = (insert(ReminderSentRow).values(chunk).on_conflict_do_nothing(index_elements=["key"])
                    .returning(ReminderSentRow.key))
            claimed.update((await self._uow.session.exec(stmt)).scalars())
        return claimed

    async def count(self) -> int:
        return (await self._uow.session.exec(select(sa.func.count()).select_from(ReminderSentRow))).one()
