"""Per-person settings (reply language, chosen meldpunt), found by a keyed hash of the identity."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core.messaging import Identity
from meldbot.core.ports import PersonSettings
from meldbot.storage.tables import PersonRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


# The statements of every turn, built once: constructing a statement costs more than running it.
_PERSON = PersonRow.__table__
_PERSON_BY_LOOKUPS = sa.select(_PERSON.c.language, _PERSON.c.meldpunt_id).where(
    _PERSON.c.lookup.in_(sa.bindparam("keys", expanding=True)))


class PersonRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow
        self._read: dict[Identity, PersonSettings] = {}   # within this unit of work
        self.written = False   # a person's row was written in this unit of work

    async def _row(self, identity: Identity) -> PersonRow | None:
        stmt = select(PersonRow).where(PersonRow.lookup.in_(self._uow.person_lookups(identity)))
        return (await self._uow.session.exec(stmt)).first()

    async def get(self, identity: Identity) -> PersonSettings:
        if identity in self._read:
            return self._read[identity]
        result = await self._uow.run(_PERSON_BY_LOOKUPS, {"keys": self._uow.person_lookups(identity)})
        row = result.first()
        self._read[identity] = settings = PersonSettings(row[0], row[1]) if row else PersonSettings()
        return settings

    def keep(self, identity: Identity, settings: PersonSettings) -> None:
        """Settings read together with something else in this unit of work (ConversationRepository.lock)."""
        self._read[identity] = settings

    def read(self, identity: Identity) -> PersonSettings | None:
        """The settings read (or kept) in this unit of work, without reading."""
        return self._read.get(identity)

    async def update(self, identity: Identity, **values: Any) -> None:
        self.written = True
        self._read.pop(identity, None)
        key = self._uow.person_lookup(identity)
        row = await self._row(identity)
        if row is not None and row.lookup != key:   # written under a key being rotated away
            values = {"language": row.language, "meldpunt_id": row.meldpunt_id, **values}
            await self._uow.session.delete(row)
            await self._uow.session.flush()
            row = None
        if row is None:
            row = PersonRow(lookup=key, identity_sealed=self._uow.sealer.seal(json.dumps([identity.platform, identity.user_id])))
        for name, value in values.items():
            setattr(row, name, value)
        self._uow.session.add(row)
