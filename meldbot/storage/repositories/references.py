"""Platform addresses of people, sealed, so proactive messages survive restarts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core.messaging import Identity
from meldbot.storage.repositories._sql import dialect_insert
from meldbot.storage.tables import ConversationReferenceRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


_REFERENCE = ConversationReferenceRow.__table__


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
        """Insert or update in one statement: two processes (or two requests of one) that both see a person or a
        tenant for the first time each store it, and neither fails on the other's row."""
        sealer = self._uow.sealer
        value = f"{identity.platform}:{identity.user_id}"
        key = sealer.lookup("reference", value)
        stale = [k for k in sealer.lookups("reference", value) if k != key]
        if stale:   # written under a key being rotated away
            await self._uow.session.exec(sa.delete(_REFERENCE).where(_REFERENCE.c.key.in_(stale)))
        # ASCII-escaped: a platform's reference carries strings nobody cleaned (a Teams conversation name,
        # locale, the bot's own name); a lone surrogate in one, valid JSON, could not be sealed or stored.
        values = {"identity_sealed": sealer.seal(json.dumps([identity.platform, identity.user_id])),
                  "reference_sealed": sealer.seal(json.dumps(reference)), "updated_at": at}
        insert = dialect_insert(self._uow.dialect)(_REFERENCE).values(key=key, **values)
        await self._uow.session.exec(insert.on_conflict_do_update(index_elements=[_REFERENCE.c.key], set_=values))
