"""The outbox: messages queued in the transaction of the change they are about, delivered by the dispatcher."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core.messaging import Identity, Reply
from meldbot.core.ports import ClaimLost, OutboxItem, OutboxState
from meldbot.storage.repositories._sql import chunks, dialect_insert
from meldbot.storage.tables import OutboxRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


# Queued messages: a message already queued under its key is not queued again.
# On the table, not the ORM class: a Core statement on both databases (no flush of pending ORM changes first).
_INSERT = {dialect: dialect_insert(dialect)(OutboxRow.__table__).on_conflict_do_nothing(index_elements=["idempotency_key"])
           for dialect in ("postgresql", "sqlite")}


class OutboxRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def add(self, *, meldpunt_id: str, recipient: Identity, reply: Reply, key: str, kind: str, at: datetime,
                  reference: str | None = None) -> None:
        """Queue a message in this transaction. The same key twice queues it once. `reference`: the signal
        the message is about, kept beside the key so retention finds the row by it."""
        await self.add_many([dict(meldpunt_id=meldpunt_id, recipient=recipient, reply=reply, key=key, kind=kind,
                                  reference=reference)], at)

    async def add_many(self, messages: list[dict[str, Any]], at: datetime) -> None:
        """Queue several messages (each with the arguments of `add` but `at`; `reference` may be left out) in
        few statements."""
        sealer = self._uow.sealer
        rows = [
            dict(
                meldpunt_id=m["meldpunt_id"],
                idempotency_key=m["key"],
                reference=m.get("reference"),
                kind=m["kind"],
                recipient_platform=m["recipient"].platform,
                recipient_sealed=sealer.seal(json.dumps([m["recipient"].platform, m["recipient"].user_id])),
                recipient_lookup=self._uow.person_lookup(m["recipient"]),
                payload_sealed=sealer.seal(m["reply"].to_json()),
                created_at=at,
                next_attempt_at=at,
                attempts=0,
            )
            for m in messages
        ]
        if rows:
            await self._uow.write(_INSERT[self._uow.dialect], rows)
            self._uow.outbox_written = True

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta, platforms: list[str]) -> list[OutboxItem]:
        """Claim due rows for this process. Rows claimed by another live process are skipped."""
        pending = (
            select(OutboxRow.id)
            .where(
                OutboxRow.delivered_at.is_(None),
                OutboxRow.parked_at.is_(None),
                OutboxRow.next_attempt_at <= now,
                OutboxRow.recipient_platform.in_(platforms),
                sa.or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
            )
            .order_by(OutboxRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list((await self._uow.session.exec(pending)).all())
        if not ids:
            return []
        claimed_until = now + lease
        await self._uow.session.exec(
            sa.update(OutboxRow).where(OutboxRow.id.in_(ids)).values(claimed_until=claimed_until)
        )
        rows = (await self._uow.session.exec(select(OutboxRow).where(OutboxRow.id.in_(ids)).order_by(OutboxRow.id))).all()
        opened = self._uow.sealer.open
        return [
            OutboxItem(
                id=r.id,
                meldpunt_id=r.meldpunt_id,
                idempotency_key=r.idempotency_key,
                kind=r.kind,
                recipient=Identity(*json.loads(opened(r.recipient_sealed))),
                reply=Reply.from_json(opened(r.payload_sealed)),
                attempts=r.attempts,
                parts_done=r.parts_done,
                sending_since=r.sending_since,
                claimed_until=claimed_until,
            )
            for r in rows
        ]

    async def _update(self, row_id: int, **values: Any) -> None:
        await self._uow.session.exec(sa.update(OutboxRow).where(OutboxRow.id == row_id).values(**values))

    async def mark_delivered_many(self, row_ids: list[int], at: datetime) -> None:
        for chunk in chunks(row_ids):
            await self._uow.session.exec(sa.update(OutboxRow).where(OutboxRow.id.in_(chunk)).values(
                delivered_at=at, claimed_until=None, last_error=None, sending_since=None))

    async def hold(self, row_id: int, until: datetime) -> None:
        """The recipient is away: wait without counting an attempt."""
        await self._update(row_id, next_attempt_at=until, claimed_until=None, sending_since=None)

    async def retry(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None:
        # The send that failed ended with an answer (or a timeout): it is no longer under way.
        await self._update(row_id, attempts=attempts, next_attempt_at=at, claimed_until=None, last_error=error[:300],
                           sending_since=None)

    async def park(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None:
        await self._update(row_id, attempts=attempts, parked_at=at, claimed_until=None, last_error=error[:300],
                           sending_since=None)

    async def record_progress(self, row_id: int, *, claim: datetime | None, parts_done: int,
                              sending_since: datetime | None, claimed_until: datetime | None = None) -> None:
        """A message sent in parts: how many parts the platform accepted, and the send under way (None:
        none). `claimed_until` renews this process's claim on the row, so a long message keeps it.

        Only while the row is still this process's: its claim unchanged since `claim`. A slow batch can let a
        row's claim run out and another process claim (and send) it; then nothing is written and ClaimLost
        tells the sender to stop before its platform call."""
        values: dict[str, Any] = dict(parts_done=parts_done, sending_since=sending_since)
        if claimed_until is not None:
            values["claimed_until"] = claimed_until
        result = await self._uow.session.exec(sa.update(OutboxRow).where(
            OutboxRow.id == row_id, OutboxRow.claimed_until == claim).values(**values))
        if result.rowcount != 1:
            raise ClaimLost(row_id)

    async def wake(self, recipient: Identity, now: datetime) -> int:
        """Make waiting rows for `recipient` due now (e.g. they just came back)."""
        result = await self._uow.session.exec(
            sa.update(OutboxRow)
            .where(
                OutboxRow.recipient_lookup.in_(self._uow.person_lookups(recipient)),
                OutboxRow.delivered_at.is_(None),
                OutboxRow.parked_at.is_(None),
                OutboxRow.next_attempt_at > now,
            )
            .values(next_attempt_at=now)
        )
        return result.rowcount or 0

    async def forget_signal(self, reference: str) -> int:
        """Retention erases a signal: every message about it goes, delivered, waiting or parked (feedback
        to the melder holds text), and so do the notices that one of them could not be delivered.

        A row names its signal in the `reference` column. Rows queued without one (before revision 0009 every
        row, which that migration filled from the key; since then a message whose caller gave none) are found
        by their key, which names the reference too (`inform:MH-2026-0001:anna:...`). A notice's key names the
        row it is about (`undelivered:<row id>:...`, meldbot.service.deliveries) and, in newer rows, the reference."""
        s = self._uow.session
        about = sa.or_(OutboxRow.reference == reference,
                       sa.and_(OutboxRow.reference.is_(None),
                               OutboxRow.idempotency_key.like(f"%:{reference}:%")))
        ids = list((await s.exec(select(OutboxRow.id).where(about))).all())
        removed = 0
        for chunk in chunks(ids, 100):
            notices = sa.or_(*(OutboxRow.idempotency_key.startswith(f"undelivered:{i}:") for i in chunk))
            removed += (await s.exec(sa.delete(OutboxRow).where(notices))).rowcount or 0
        removed += (await s.exec(sa.delete(OutboxRow).where(about))).rowcount or 0
        return removed

    async def forget_delivered_before(self, moment: datetime) -> int:
        result = await self._uow.session.exec(
            sa.delete(OutboxRow).where(OutboxRow.delivered_at.is_not(None), OutboxRow.delivered_at < moment))
        return result.rowcount or 0

    async def stats(self, kind: str | None = None) -> dict[str, int]:
        s = self._uow.session
        only = [OutboxRow.kind == kind] if kind else []

        async def count(*where) -> int:
            return (await s.exec(select(sa.func.count()).select_from(OutboxRow).where(*where, *only))).one()

        return {
            "pending": await count(OutboxRow.delivered_at.is_(None), OutboxRow.parked_at.is_(None)),
            "parked": await count(OutboxRow.parked_at.is_not(None)),
            "delivered": await count(OutboxRow.delivered_at.is_not(None)),
        }

    async def parked_by_kind(self) -> dict[str, int]:
        rows = await self._uow.session.exec(
            select(OutboxRow.kind, sa.func.count()).where(OutboxRow.parked_at.is_not(None)).group_by(OutboxRow.kind))
        return {kind: n for kind, n in rows.all()}

    async def count_keyed(self, prefix: str) -> int:
        """How many rows have an idempotency key that starts with `prefix` (no LIKE wildcards in it)."""
        return (await self._uow.session.exec(select(sa.func.count()).select_from(OutboxRow).where(
            OutboxRow.idempotency_key.startswith(prefix, autoescape=True)))).one()

    async def troubled(self, *, every: bool = False, limit: int = 1000) -> list["OutboxState"]:
        """Undelivered rows that are parked or failed at least once (`every`: all undelivered rows),
        oldest first. Never the sealed recipient or payload: this is what the administrator sees."""
        where = [OutboxRow.delivered_at.is_(None)]
        if not every:
            where.append(sa.or_(OutboxRow.parked_at.is_not(None), OutboxRow.attempts > 0))
        rows = await self._uow.session.exec(select(*_STATE_COLUMNS).where(*where).order_by(OutboxRow.id).limit(limit))
        return [OutboxState(*r) for r in rows.all()]

    async def states(self, keys: list[str]) -> dict[str, "OutboxState"]:
        """The delivery state of the rows with these idempotency keys (rows forgotten after delivery are absent)."""
        found: dict[str, OutboxState] = {}
        for chunk in chunks(keys):
            rows = await self._uow.session.exec(select(*_STATE_COLUMNS).where(OutboxRow.idempotency_key.in_(chunk)))
            found.update((state.key, state) for state in (OutboxState(*r) for r in rows.all()))
        return found

    async def resend(self, row_ids: list[int] | None, now: datetime) -> list[int]:
        """Un-park rows (`None`: every parked row) and make them due at once, with a fresh series of attempts.
        Rows delivered, or claimed right now by a running dispatcher, are left alone. Returns the ids."""
        where = [OutboxRow.delivered_at.is_(None),
                 sa.or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now)]
        where.append(OutboxRow.parked_at.is_not(None) if row_ids is None else OutboxRow.id.in_(row_ids))
        ids = list((await self._uow.session.exec(select(OutboxRow.id).where(*where).order_by(OutboxRow.id))).all())
        for chunk in chunks(ids):
            # Due at once also for a bot whose clock is behind this machine's: the moment it was queued.
            await self._uow.session.exec(sa.update(OutboxRow).where(OutboxRow.id.in_(chunk)).values(
                parked_at=None, next_attempt_at=OutboxRow.created_at, attempts=0, claimed_until=None))
        if ids:
            self._uow.outbox_written = True
        return ids



_STATE_COLUMNS = (OutboxRow.id, OutboxRow.meldpunt_id, OutboxRow.idempotency_key, OutboxRow.kind, OutboxRow.attempts,
                  OutboxRow.created_at, OutboxRow.delivered_at, OutboxRow.parked_at, OutboxRow.next_attempt_at,
                  OutboxRow.last_error)


class RowProgress:
    """The outbox row's record of a message sent in parts (meldbot.core.messaging.SendProgress), each
    write in a transaction of its own so it holds whatever happens to the process next.

    Before each platform call: the send is under way (`sending_since`) and the claim is renewed for one
    more `lease`; after it: one more part done, nothing under way. A process that finds the row later
    continues after the parts done; a send under way that it finds was cut off by a dying process."""

    def __init__(self, uow_factory: Callable[[], Any], item: OutboxItem, now: Callable[[], datetime],
                 lease: timedelta) -> None:
        self._uow = uow_factory
        self._item = item
        self._now = now
        self._lease = lease
        self._done = item.parts_done
        self._claim = item.claimed_until     # this process's claim on the row, renewed before each part

    @property
    def parts_done(self) -> int:
        return self._item.parts_done

    async def _write(self, sending_since: datetime | None, claimed_until: datetime | None) -> None:
        """Raises ClaimLost when the row is no longer this process's (nothing written)."""
        async with self._uow() as uow:
            await uow.outbox.record_progress(self._item.id, claim=self._claim, parts_done=self._done,
                                             sending_since=sending_since, claimed_until=claimed_until)
            await uow.commit()
        if claimed_until is not None:
            self._claim = claimed_until

    async def sending(self, index: int) -> None:
        now = self._now()
        await self._write(now, now + self._lease)

    async def sent(self, index: int) -> None:
        self._done = max(self._done, index + 1)
        await self._write(None, None)
