"""The audit trail: who read or did what to a signal, and when."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core.ports import AuditEntry
from meldbot.storage.tables import AuditRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


_AUDIT_INSERT = sa.insert(AuditRow.__table__)   # a Core statement: no ORM object, no flush


class AuditRepository:
    """Append and read; there is deliberately no way to change or remove a single entry."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def append(self, *, meldpunt_id: str, signal_id: int | None, actor_kind: str, actor: str, action: str,
                     at: datetime, detail: str | None = None) -> None:
        sealer = self._uow.sealer
        await self._uow.write(_AUDIT_INSERT, dict(
            meldpunt_id=meldpunt_id, signal_id=signal_id, at=at, actor_kind=actor_kind, actor_sealed=sealer.seal(actor),
            action=action, detail_sealed=sealer.seal(detail) if detail is not None else None,
        ))

    async def of_signal(self, signal_id: int) -> list[AuditEntry]:
        rows = (await self._uow.session.exec(
            select(AuditRow).where(AuditRow.signal_id == signal_id).order_by(AuditRow.id))).all()
        opened = self._uow.sealer.open
        return [AuditEntry(r.at, r.actor_kind, opened(r.actor_sealed), r.action,
                           opened(r.detail_sealed) if r.detail_sealed is not None else None) for r in rows]
