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
        # The kind column holds the series' kind without the partner ("partner", not "partner:<key>"): a partner
        # key has no length limit, and the claim key names the partner already.
        rows = [dict(key=key, meldpunt_id=meldpunt_id, signal_id=signal_id, kind=due.kind.partition(":")[0],
                     slot=due.slot, due_at=due.due_at, sent_at=now) for key, meldpunt_id, signal_id, due in items]
        for chunk in chunks(rows):
            stmt = (insert(ReminderSentRow).values(chunk).on_conflict_do_nothing(index_elements=["key"])
                    .returning(ReminderSentRow.key))
            claimed.update((await self._uow.session.exec(stmt)).scalars())
        return claimed

    async def joint_partner_due(self, signal_ids: list[int]) -> dict[int, datetime]:
        """Per signal: the due time of the last slot claimed in its joint partner series, the one an older row
        was chased under before its partner log was stored (keys partner:MH-...:<slot>; a per-partner key,
        partner:<key>:MH-...:<slot>, never has "MH-" there, as partner keys are lower case)."""
        found: dict[int, datetime] = {}
        for chunk in chunks(sorted(set(signal_ids))):
            stmt = (select(ReminderSentRow.signal_id, sa.func.max(ReminderSentRow.due_at))
                    .where(ReminderSentRow.signal_id.in_(chunk), ReminderSentRow.kind == "partner",
                           ReminderSentRow.key.like("partner:MH-%"))
                    .group_by(ReminderSentRow.signal_id))
            found.update({signal_id: due_at for signal_id, due_at in (await self._uow.session.exec(stmt)).all()})
        return found

    async def count(self) -> int:
        return (await self._uow.session.exec(select(sa.func.count()).select_from(ReminderSentRow))).one()
