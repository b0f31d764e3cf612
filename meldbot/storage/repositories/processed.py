"""Platform events already handled, with their replies for a short while: a redelivery is not handled twice."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from meldbot.core.messaging import Reply
from meldbot.core.ports import AlreadyHandled, Earlier
from meldbot.storage.repositories.conversations import CONVERSATION_UPDATE
from meldbot.storage.tables import ProcessedEventRow, ProcessedEventSignalRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


# The statements of every turn, built once: constructing a statement costs more than running it.
_PROCESSED = ProcessedEventRow.__table__
_PROCESSED_BY_KEYS = sa.select(_PROCESSED.c.replies_sealed, _PROCESSED.c.at).where(
    _PROCESSED.c.key.in_(sa.bindparam("keys", expanding=True)))
_PROCESSED_INSERT = sa.insert(_PROCESSED)
# PostgreSQL: the turn's conversation update (deferred by ConversationRepository.save) and the record of its
# event in one statement, the update as a data-modifying WITH.
_UPDATE_AND_INSERT = sa.insert(_PROCESSED).values(
    key=sa.bindparam("event_key"), at=sa.bindparam("event_at", type_=_PROCESSED.c.at.type),
    replies_sealed=sa.bindparam("replies")).add_cte(CONVERSATION_UPDATE.cte("conversation_update"))
_PROCESSED_SIGNAL = ProcessedEventSignalRow.__table__
_PROCESSED_SIGNAL_INSERT = sa.insert(_PROCESSED_SIGNAL)


class ProcessedEventRepository:
    """Redelivered platform events: the same answer within a short window, never a second handling.

    The replies can show signals (a `toon` view); the signals a turn read are linked to its row, and
    erasing a signal erases those replies with it. The row itself stays, content-free, until it ages out:
    a redelivery of the event is still recognised, and never handled a second time."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow
        # Events read with the turn's first statement (ConversationRepository.prefetch): their row, or None.
        self._read: dict[tuple[str, str], tuple[str | None, datetime] | None] = {}

    def forget_read(self) -> None:
        self._read.clear()

    def keys_for(self, platform: str, event_id: str) -> list[str]:
        return self._uow.sealer.lookups("event", f"{platform}:{event_id}")

    def keep(self, platform: str, event_id: str, row: tuple[str | None, datetime] | None) -> None:
        """An event's row (replies_sealed, at), or None, read together with something else in this unit of work."""
        self._read[(platform, event_id)] = row

    async def replies_for(self, platform: str, event_id: str, since: datetime | None = None) -> Earlier | None:
        """None if the event is new; else what was answered, unless that was before `since`."""
        if (platform, event_id) in self._read:
            row = self._read[(platform, event_id)]
        else:
            row = (await self._uow.run(_PROCESSED_BY_KEYS, {"keys": self.keys_for(platform, event_id)})).first()
        if row is None:
            return None
        sealed, at = row
        if sealed is None or (since is not None and at < since):
            return Earlier(None)
        return Earlier([Reply.from_json(json.dumps(r)) for r in json.loads(self._uow.sealer.open(sealed))])

    async def remember(self, platform: str, event_id: str, replies: list[Reply], at: datetime) -> None:
        """Record the event with its replies and the signals this unit of work read for them; AlreadyHandled
        (and the transaction is lost) if another unit of work recorded it first: here, or on PostgreSQL from
        the commit that sends it."""
        payload = json.dumps([r.to_data() for r in replies], ensure_ascii=False)
        key = self._uow.sealer.lookup("event", f"{platform}:{event_id}")
        self._read.pop((platform, event_id), None)
        sealed = self._uow.sealer.seal(payload)
        conversation = self._uow.take_deferred(CONVERSATION_UPDATE)
        if conversation is not None:
            stmt, values = _UPDATE_AND_INSERT, {**conversation, "event_key": key, "event_at": at, "replies": sealed}
        else:
            stmt, values = _PROCESSED_INSERT, dict(key=key, at=at, replies_sealed=sealed)
        links = [dict(event_key=key, signal_id=i) for i in sorted(self._uow.signals_seen)]
        if self._uow.dialect == "postgresql" and not links:
            # Waits for the commit, and goes with it in one round trip (SqlUnitOfWork.commit), with what else
            # waits (a new conversation's INSERT) in one statement. The key is the only constraint: a unique
            # violation on this table there is another unit of work that recorded it first; one on another
            # table stays what it is (the conflict names the table).
            self._uow.defer(stmt, values, conflict=(_PROCESSED.name, AlreadyHandled))
            return
        # Other writes that wait go first, outside the `try`: their failure is no sign of another turn.
        await self._uow.send_deferred()
        try:
            await self._uow.run(stmt, values)
        except sa.exc.IntegrityError as taken:
            # The key is the only constraint: another unit of work recorded this event first (the turn's
            # conversation lock should prevent it; this stays a clear answer, not a failed database).
            raise AlreadyHandled() from taken
        if links:
            await self._uow.run(_PROCESSED_SIGNAL_INSERT, links)

    async def forget_signal(self, signal_id: int) -> int:
        """Erase the replies that showed this signal (retention erases the signal), and their links. The
        rows stay as markers without content: deleting them would let a redelivery be handled again."""
        self._read.clear()
        keys = sa.select(_PROCESSED_SIGNAL.c.event_key).where(_PROCESSED_SIGNAL.c.signal_id == signal_id)
        result = await self._uow.session.exec(sa.update(_PROCESSED).where(
            _PROCESSED.c.key.in_(keys), _PROCESSED.c.replies_sealed.is_not(None)).values(replies_sealed=None))
        # All links of those events: with no replies left they name no signal any more. (An alias: a
        # subquery on the table a DELETE deletes from would be correlated with it.)
        linked = _PROCESSED_SIGNAL.alias("linked")
        await self._uow.session.exec(sa.delete(_PROCESSED_SIGNAL).where(_PROCESSED_SIGNAL.c.event_key.in_(
            sa.select(linked.c.event_key).where(linked.c.signal_id == signal_id))))
        return result.rowcount or 0

    async def forget_replies_before(self, moment: datetime) -> int:
        """Drop the replies of events handled before `moment`; the rows stay to recognise a redelivery."""
        self._read.clear()
        result = await self._uow.session.exec(sa.update(_PROCESSED).where(
            _PROCESSED.c.at < moment, _PROCESSED.c.replies_sealed.is_not(None)).values(replies_sealed=None))
        await self._uow.session.exec(sa.delete(_PROCESSED_SIGNAL).where(_PROCESSED_SIGNAL.c.event_key.in_(
            sa.select(_PROCESSED.c.key).where(_PROCESSED.c.replies_sealed.is_(None)))))
        return result.rowcount or 0

    async def forget_before(self, moment: datetime) -> int:
        self._read.clear()
        old = sa.select(_PROCESSED.c.key).where(_PROCESSED.c.at < moment)
        await self._uow.session.exec(sa.delete(_PROCESSED_SIGNAL).where(_PROCESSED_SIGNAL.c.event_key.in_(old)))
        result = await self._uow.session.exec(sa.delete(ProcessedEventRow).where(ProcessedEventRow.at < moment))
        return result.rowcount or 0
