"""Platform addresses of people, sealed, so proactive messages survive restarts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from meldbot.core.messaging import Identity
from meldbot.storage.tables import ConversationReferenceRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


class ReferenceRepository:
    """Platform addresses of people (a Teams conversation reference, a Matrix DM room id)."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def _row(self, identity: Identity) -> ConversationReferenceRow | None:
        keys = self._uow.sealer.lookups("reference", f"{identity.platform}:{identity.user_id}")
        stmt = select(ConversationReferenceRow).where(ConversationReferenceRow.key.in_(keys))
        return (await self._uow.session.exec(stmt)).first()

    async def get(self, identity: Identity) -> dict[str, Any] | None:
        row = await self._row(identity)
        return json.loads(self._uow.sealer.open(row.reference_sealed)) if row else None

    async def put(self, identity: Identity, reference: dict[str, Any], at: datetime) -> None:
        sealer = self._uow.sealer
        key = sealer.lookup("reference", f"{identity.platform}:{identity.user_id}")
        row = await self._row(identity)
        if row is not None and row.key != key:
            await self._uow.session.delete(row)
            await self._uow.session.flush()
            row = None
        row = row or ConversationReferenceRow(key=key, identity_sealed=sealer.seal(
            json.dumps([identity.platform, identity.user_id])), reference_sealed="", updated_at=at)
        # ASCII-escaped: a platform's reference carries strings nobody cleaned (a Teams conversation name,
        # locale, the bot's own name); a lone surrogate in one, valid JSON, could not be sealed or stored.
        row.reference_sealed = sealer.seal(json.dumps(reference))
        row.updated_at = at
        self._uow.session.add(row)
