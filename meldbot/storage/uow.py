"""Unit of work and repositories: one transaction per use case; maps rows to domain objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from meldbot.core.domain import (
    Content,
    Context,
    Event,
    EventKind,
    Form,
    Outcome,
    Reference,
    RefQuery,
    Signal,
    Status,
)
from meldbot.core.messaging import Identity, Reply
from meldbot.core.ports import (
    AuditEntry,
    Earlier,
    Melder,
    OutboxItem,
    OutboxState,
    PersonSettings,
    SignalFacts,
    StorageUnavailable,
)
from meldbot.storage.db import Database
from meldbot.storage.matrix import MatrixIdentityRepository, MatrixTrustRepository
from meldbot.storage.sealing import Sealer
from meldbot.storage.tables import (
    REMINDER_CANDIDATE_SQL,
    AuditRow,
    ConversationReferenceRow,
    ConversationRow,
    CounterRow,
    EventRow,
    MelderRow,
    OutboxRow,
    PersonRow,
    ProcessedEventRow,
    ProcessedEventSignalRow,
    ReminderSentRow,
    SignalKeyRow,
    SignalRow,
)


# What a failing database or connection raises through SQLAlchemy and the drivers.
DATABASE_ERRORS = (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, ConnectionError, TimeoutError)


def _insert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert




def _chunks(rows: list, size: int = 500):
    """Multi-row statements in slices that stay below the drivers' bound-parameter limits."""
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class SignalRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    @property
    def _s(self):
        return self._uow.session

    async def next_reference(self, year: int) -> Reference:
        """The next number for `year`, unique across the deployment even under concurrency.

        The UPDATE takes a row lock on PostgreSQL (and the write lock on SQLite), so concurrent
        submitters queue here for the rest of their short transaction.
        """
        insert = _insert(self._uow.dialect)
        stmt = insert(CounterRow).values(year=year, last=1)
        stmt = stmt.on_conflict_do_update(index_elements=[CounterRow.year], set_={"last": CounterRow.last + 1})
        result = await self._s.exec(stmt.returning(CounterRow.last))
        return Reference(year, result.scalar_one())

    async def add(self, signal: Signal, melder: Melder) -> Signal:
        sealer, now = self._uow.sealer, signal.created_at
        row = SignalRow(
            meldpunt_id=signal.meldpunt_id,
            ref_year=signal.reference.year,
            ref_number=signal.reference.number,
            status=str(signal.status),
            form=str(signal.form),
            context=str(signal.context),
            urgent=signal.urgent,
            anonymous=signal.anonymous,
            pseudonym=signal.pseudonym,
            handler=signal.handler,
            content_sealed=sealer.seal(json.dumps(signal.content.to_dict(), ensure_ascii=False)),
            created_at=now,
            updated_at=now,
        )
        self._s.add(row)
        await self._s.flush()
        signal.id = row.id
        self._uow.signals_seen.add(row.id)
        self._s.add(
            MelderRow(
                signal_id=row.id,
                meldpunt_id=signal.meldpunt_id,
                lookup=self._uow.person_lookup(melder.identity),
                identity_sealed=sealer.seal(
                    json.dumps(
                        {"platform": melder.identity.platform, "user_id": melder.identity.user_id, "name": melder.display_name},
                        ensure_ascii=False,
                    )
                ),
            )
        )
        self._add_events(signal)
        return signal

    def _add_events(self, signal: Signal) -> None:
        for event in signal.new_events:
            self._s.add(
                EventRow(
                    signal_id=signal.id,
                    meldpunt_id=signal.meldpunt_id,
                    at=event.at,
                    actor=event.actor,
                    kind=str(event.kind),
                    data_sealed=self._uow.sealer.seal(json.dumps(event.data, ensure_ascii=False)),
                )
            )
        signal.new_events.clear()

    async def save(self, signal: Signal, at: datetime) -> None:
        row = await self._s.get(SignalRow, signal.id)
        row.status = str(signal.status)
        row.handler = signal.handler
        row.outcome = str(signal.outcome) if signal.outcome else None
        row.closed_at = signal.closed_at
        row.urgent = signal.urgent
        row.partners = ",".join(signal.partners)
        row.forwarded_at = signal.forwarded_at
        row.partner_feedback_at = signal.partner_feedback_at
        row.melder_informed_at = signal.melder_informed_at
        row.melder_last_informed_at = signal.melder_last_informed_at
        row.merged_into = signal.merged_into
        row.content_sealed = self._uow.sealer.seal(json.dumps(signal.content.to_dict(), ensure_ascii=False))
        row.updated_at = at
        self._s.add(row)
        self._add_events(signal)

    def _to_domain(self, row: SignalRow, events: list[EventRow] | None = None) -> Signal:
        self._uow.signals_seen.add(row.id)   # a reply of this turn may show it (see ProcessedEventRepository)
        opened = self._uow.sealer.open
        return Signal(
            id=row.id,
            meldpunt_id=row.meldpunt_id,
            reference=Reference(row.ref_year, row.ref_number),
            status=Status(row.status),
            form=Form(row.form),
            context=Context(row.context),
            urgent=row.urgent,
            anonymous=row.anonymous,
            pseudonym=row.pseudonym,
            content=Content.from_dict(json.loads(opened(row.content_sealed))),
            created_at=row.created_at,
            handler=row.handler,
            outcome=Outcome(row.outcome) if row.outcome else None,
            closed_at=row.closed_at,
            partners=tuple(p for p in row.partners.split(",") if p),
            forwarded_at=row.forwarded_at,
            partner_feedback_at=row.partner_feedback_at,
            melder_informed_at=row.melder_informed_at,
            melder_last_informed_at=row.melder_last_informed_at,
            merged_into=row.merged_into,
            erased_at=row.erased_at,
            events=[
                Event(EventKind(e.kind), e.at, e.actor, json.loads(opened(e.data_sealed))) for e in (events or [])
            ],
        )

    async def find(self, query: RefQuery, meldpunt_ids: list[str], *, with_events: bool = False) -> Signal | None:
        stmt = select(SignalRow).where(SignalRow.ref_number == query.number, SignalRow.meldpunt_id.in_(meldpunt_ids))
        if query.year is not None:
            stmt = stmt.where(SignalRow.ref_year == query.year)
        row = (await self._s.exec(stmt.order_by(SignalRow.ref_year.desc()).limit(1))).first()
        if row is None:
            return None
        events = None
        if with_events:
            events = list(
                (await self._s.exec(select(EventRow).where(EventRow.signal_id == row.id).order_by(EventRow.id))).all()
            )
        return self._to_domain(row, events)

    async def melder_of(self, signal: Signal) -> Melder:
        row = await self._s.get(MelderRow, signal.id)
        data = json.loads(self._uow.sealer.open(row.identity_sealed))
        return Melder(Identity(data["platform"], data["user_id"]), data.get("name"))

    async def of_melder(self, identity: Identity) -> list[Signal]:
        stmt = (
            select(SignalRow)
            .join(MelderRow, MelderRow.signal_id == SignalRow.id)
            .where(MelderRow.lookup.in_(self._uow.person_lookups(identity)))
            .order_by(SignalRow.id)
        )
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def find_for_melder(self, query: RefQuery, identity: Identity) -> Signal | None:
        """One of the melder's own signals; another person's reference finds nothing."""
        stmt = (
            select(SignalRow)
            .join(MelderRow, MelderRow.signal_id == SignalRow.id)
            .where(MelderRow.lookup.in_(self._uow.person_lookups(identity)), SignalRow.ref_number == query.number)
        )
        if query.year is not None:
            stmt = stmt.where(SignalRow.ref_year == query.year)
        row = (await self._s.exec(stmt.order_by(SignalRow.ref_year.desc()).limit(1))).first()
        return self._to_domain(row) if row else None

    async def events_of(self, signal_ids: list[int], kinds: list[EventKind]) -> dict[int, list[Event]]:
        if not signal_ids:
            return {}
        stmt = (
            select(EventRow)
            .where(EventRow.signal_id.in_(signal_ids), EventRow.kind.in_([str(k) for k in kinds]))
            .order_by(EventRow.id)
        )
        found: dict[int, list[Event]] = {}
        opened = self._uow.sealer.open
        for e in (await self._s.exec(stmt)).all():
            found.setdefault(e.signal_id, []).append(Event(EventKind(e.kind), e.at, e.actor, json.loads(opened(e.data_sealed))))
        return found

    async def set_keys(self, signal: Signal, keys, source: str, *, new: bool = False) -> None:
        """Store matching keys for `signal` as keyed hashes; `auto` keys are replaced as a set."""
        if source == "auto" and not new:
            await self._s.exec(
                sa.delete(SignalKeyRow).where(SignalKeyRow.signal_id == signal.id, SignalKeyRow.source == "auto")
            )
        for key in sorted(keys):
            self._s.add(SignalKeyRow(signal_id=signal.id, meldpunt_id=signal.meldpunt_id, kind=key.kind,
                                     digest=self._uow.sealer.lookup("match", key.value), source=source))

    async def matches(self, signal: Signal) -> list[tuple[Reference, str]]:
        """Other signals of the meldpunt sharing a key with `signal`: (reference, kind), oldest first."""
        mine = select(SignalKeyRow.digest).where(SignalKeyRow.signal_id == signal.id)
        stmt = (
            select(SignalRow.ref_year, SignalRow.ref_number, SignalKeyRow.kind)
            .join(SignalKeyRow, SignalKeyRow.signal_id == SignalRow.id)
            .where(SignalKeyRow.meldpunt_id == signal.meldpunt_id, SignalKeyRow.digest.in_(mine),
                   SignalKeyRow.signal_id != signal.id)
            .distinct()
            .order_by(SignalRow.ref_year, SignalRow.ref_number, SignalKeyRow.kind)
        )
        return [(Reference(y, n), kind) for y, n, kind in (await self._s.exec(stmt)).all()]

    async def merged_into(self, signal: Signal) -> list[Signal]:
        """Duplicates merged into `signal`: their melders are told too."""
        stmt = select(SignalRow).where(SignalRow.merged_into == str(signal.reference),
                                       SignalRow.meldpunt_id == signal.meldpunt_id).order_by(SignalRow.id)
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def facts(self, meldpunt_ids: list[str]):
        """Content-free monitoring facts; reads no sealed column."""
        stmt = select(SignalRow.meldpunt_id, SignalRow.created_at, SignalRow.form, SignalRow.context,
                      SignalRow.partners, SignalRow.forwarded_at, SignalRow.partner_feedback_at,
                      SignalRow.melder_informed_at).where(SignalRow.meldpunt_id.in_(meldpunt_ids),
                                                          SignalRow.merged_into.is_(None))
        return [
            SignalFacts(meldpunt_id=m, created_at=c, form=f, context=x,
                        partners=tuple(p for p in (ps or "").split(",") if p), forwarded_at=fa,
                        partner_feedback_at=pf, melder_informed_at=mi)
            for m, c, f, x, ps, fa, pf, mi in (await self._s.exec(stmt)).all()
        ]

    async def handled_by_others(self, meldpunt_id: str, names: list[str]) -> list[Signal]:
        """Open signals whose handler is not one of `names` (an AF removed from the configuration)."""
        stmt = select(SignalRow).where(SignalRow.meldpunt_id == meldpunt_id, SignalRow.status != str(Status.CLOSED),
                                       SignalRow.handler.is_not(None), SignalRow.handler.not_in(names))
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def reminder_candidates(self, meldpunt_id: str, *, lock: bool = False) -> list[Signal]:
        """Signals a reminder may be about: open ones, and closed ones whose melder was not told yet.

        With `lock`, rows another bot process is working on are skipped (PostgreSQL)."""
        # The same condition as the partial index ix_signal_reminder_candidates, with the status as a
        # literal (a bound parameter would hide from the planner that the index applies).
        stmt = select(SignalRow).where(SignalRow.meldpunt_id == meldpunt_id,
                                       sa.text(f"({REMINDER_CANDIDATE_SQL})")).order_by(SignalRow.id)
        if lock:
            stmt = stmt.with_for_update(skip_locked=True)
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def closed_before(self, meldpunt_id: str, cutoff: datetime) -> list[tuple[int, str]]:
        stmt = select(SignalRow.id, SignalRow.ref_year, SignalRow.ref_number).where(
            SignalRow.meldpunt_id == meldpunt_id, SignalRow.status == str(Status.CLOSED),
            SignalRow.closed_at < cutoff, SignalRow.erased_at.is_(None))
        return [(i, str(Reference(y, n))) for i, y, n in (await self._s.exec(stmt)).all()]

    async def erase(self, signal_id: int, reference: str, at: datetime) -> None:
        """Retention: everything personal about one signal goes; its row stays, content-free."""
        s = self._s
        for table in (EventRow, MelderRow, SignalKeyRow, AuditRow):
            await s.exec(sa.delete(table).where(table.signal_id == signal_id))
        await self._uow.processed.forget_signal(signal_id)   # replies that showed it
        await self._uow.outbox.forget_signal(reference)        # messages about it, delivered or not
        await s.exec(sa.update(SignalRow).where(SignalRow.id == signal_id).values(
            content_sealed=self._uow.sealer.seal("{}"), pseudonym=None, erased_at=at, updated_at=at))
        s.add(EventRow(signal_id=signal_id, meldpunt_id=(await s.get(SignalRow, signal_id)).meldpunt_id, at=at,
                       actor="systeem", kind="gewist", data_sealed=self._uow.sealer.seal("{}")))

    async def open_signals(self, meldpunt_ids: list[str]) -> list[Signal]:
        stmt = (
            select(SignalRow)
            .where(SignalRow.meldpunt_id.in_(meldpunt_ids),
                   SignalRow.status.in_([str(Status.RECEIVED), str(Status.IN_PROGRESS), str(Status.FORWARDED)]))
            .order_by(SignalRow.id)
        )
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def count(self) -> int:
        return (await self._s.exec(select(sa.func.count()).select_from(SignalRow))).one()


class OutboxRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def add(self, *, meldpunt_id: str, recipient: Identity, reply: Reply, key: str, kind: str, at: datetime) -> None:
        """Queue a message in this transaction. The same key twice queues it once."""
        await self.add_many([dict(meldpunt_id=meldpunt_id, recipient=recipient, reply=reply, key=key, kind=kind)], at)

    async def add_many(self, messages: list[dict[str, Any]], at: datetime) -> None:
        """Queue several messages (each with the arguments of `add` but `at`) in few statements."""
        sealer = self._uow.sealer
        insert = _insert(self._uow.dialect)
        rows = [
            dict(
                meldpunt_id=m["meldpunt_id"],
                idempotency_key=m["key"],
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
        for chunk in _chunks(rows):
            stmt = insert(OutboxRow).values(chunk).on_conflict_do_nothing(index_elements=["idempotency_key"])
            await self._uow.session.exec(stmt)
        if rows:
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
        await self._uow.session.exec(
            sa.update(OutboxRow).where(OutboxRow.id.in_(ids)).values(claimed_until=now + lease)
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
            )
            for r in rows
        ]

    async def _update(self, row_id: int, **values: Any) -> None:
        await self._uow.session.exec(sa.update(OutboxRow).where(OutboxRow.id == row_id).values(**values))

    async def mark_delivered_many(self, row_ids: list[int], at: datetime) -> None:
        for chunk in _chunks(row_ids):
            await self._uow.session.exec(sa.update(OutboxRow).where(OutboxRow.id.in_(chunk)).values(
                delivered_at=at, claimed_until=None, last_error=None))

    async def hold(self, row_id: int, until: datetime) -> None:
        """The recipient is away: wait without counting an attempt."""
        await self._update(row_id, next_attempt_at=until, claimed_until=None)

    async def retry(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None:
        await self._update(row_id, attempts=attempts, next_attempt_at=at, claimed_until=None, last_error=error[:300])

    async def park(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None:
        await self._update(row_id, attempts=attempts, parked_at=at, claimed_until=None, last_error=error[:300])

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

        Message keys name the signal's reference (`inform:MH-2026-0001:anna:...`); a notice's key names the
        row it is about (`undelivered:<row id>:...`, meldbot.service.deliveries) and, in newer rows, the reference."""
        s = self._uow.session
        about = OutboxRow.idempotency_key.like(f"%:{reference}:%")
        ids = list((await s.exec(select(OutboxRow.id).where(about))).all())
        removed = 0
        for chunk in _chunks(ids, 100):
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
        for chunk in _chunks(keys):
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
        for chunk in _chunks(ids):
            # Due at once also for a bot whose clock is behind this machine's: the moment it was queued.
            await self._uow.session.exec(sa.update(OutboxRow).where(OutboxRow.id.in_(chunk)).values(
                parked_at=None, next_attempt_at=OutboxRow.created_at, attempts=0, claimed_until=None))
        if ids:
            self._uow.outbox_written = True
        return ids



_STATE_COLUMNS = (OutboxRow.id, OutboxRow.meldpunt_id, OutboxRow.idempotency_key, OutboxRow.kind, OutboxRow.attempts,
                  OutboxRow.created_at, OutboxRow.delivered_at, OutboxRow.parked_at, OutboxRow.next_attempt_at,
                  OutboxRow.last_error)


# The statements of every turn, built once: constructing a statement costs more than running it.
_CONVERSATION = ConversationRow.__table__
_CONVERSATION_BY_KEYS = sa.select(
    _CONVERSATION.c.key, _CONVERSATION.c.updated_at, _CONVERSATION.c.meldpunt_id, _CONVERSATION.c.state_sealed,
).where(_CONVERSATION.c.key.in_(sa.bindparam("keys", expanding=True)))
_CONVERSATION_UPDATE = sa.update(_CONVERSATION).where(_CONVERSATION.c.key == sa.bindparam("k")).values(
    state_sealed=sa.bindparam("state"), updated_at=sa.bindparam("at", type_=_CONVERSATION.c.updated_at.type),
    meldpunt_id=sa.bindparam("meldpunt"))
_CONVERSATION_DELETE = sa.delete(_CONVERSATION).where(_CONVERSATION.c.key.in_(sa.bindparam("keys", expanding=True)))
_PROCESSED = ProcessedEventRow.__table__
_PROCESSED_BY_KEYS = sa.select(_PROCESSED.c.replies_sealed, _PROCESSED.c.at).where(
    _PROCESSED.c.key.in_(sa.bindparam("keys", expanding=True)))
_PROCESSED_SIGNAL = ProcessedEventSignalRow.__table__
_PERSON = PersonRow.__table__
_PERSON_BY_LOOKUPS = sa.select(_PERSON.c.language, _PERSON.c.meldpunt_id).where(
    _PERSON.c.lookup.in_(sa.bindparam("keys", expanding=True)))


@dataclass(frozen=True)
class _Conversation:
    key: str
    updated_at: datetime
    meldpunt_id: str | None
    state_sealed: str


class ConversationRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow
        # Rows read in this unit of work: a turn loads its conversation and saves it again, one SELECT.
        self._rows: dict[tuple[str, str], _Conversation | None] = {}

    def _keys(self, platform: str, conversation_id: str) -> list[str]:
        return self._uow.sealer.lookups("conversation", f"{platform}:{conversation_id}")

    async def _row(self, platform: str, conversation_id: str) -> _Conversation | None:
        if (platform, conversation_id) in self._rows:
            return self._rows[(platform, conversation_id)]
        result = await self._uow.session.exec(_CONVERSATION_BY_KEYS,
                                              params={"keys": self._keys(platform, conversation_id)})
        found = result.first()
        row = _Conversation(*found) if found else None
        self._rows[(platform, conversation_id)] = row
        return row

    async def load(self, platform: str, conversation_id: str) -> tuple[dict[str, Any], datetime] | None:
        row = await self._row(platform, conversation_id)
        if row is None:
            return None
        return json.loads(self._uow.sealer.open(row.state_sealed)), row.updated_at

    async def save(
        self, platform: str, conversation_id: str, state: dict[str, Any], at: datetime, meldpunt_id: str | None = None
    ) -> None:
        sealer = self._uow.sealer
        session = self._uow.session
        row = await self._row(platform, conversation_id)
        key = sealer.lookup("conversation", f"{platform}:{conversation_id}")
        state_sealed = sealer.seal(json.dumps(state, ensure_ascii=False))
        meldpunt_id = meldpunt_id or (row.meldpunt_id if row else None)
        if row is not None and row.key == key:
            await session.exec(_CONVERSATION_UPDATE,
                               params={"k": key, "state": state_sealed, "at": at, "meldpunt": meldpunt_id})
        else:
            if row is not None:   # written under a key being rotated away
                await session.exec(_CONVERSATION_DELETE, params={"keys": [row.key]})
            await session.exec(sa.insert(_CONVERSATION).values(
                key=key, conversation_sealed=sealer.seal(json.dumps([platform, conversation_id])),
                state_sealed=state_sealed, updated_at=at, meldpunt_id=meldpunt_id))
        self._rows[(platform, conversation_id)] = _Conversation(key, at, meldpunt_id, state_sealed)

    async def delete(self, platform: str, conversation_id: str) -> None:
        self._rows.pop((platform, conversation_id), None)
        await self._uow.session.exec(_CONVERSATION_DELETE, params={"keys": self._keys(platform, conversation_id)})

    async def forget_markers_before(self, moment: datetime) -> int:
        """Drop rows untouched for long (an expired-draft marker nobody came back to)."""
        self._rows.clear()
        result = await self._uow.session.exec(sa.delete(ConversationRow).where(ConversationRow.updated_at < moment))
        return result.rowcount or 0

    async def untouched_since(self, moment: datetime, limit: int = 500) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        stmt = select(ConversationRow).where(ConversationRow.updated_at < moment).order_by(ConversationRow.updated_at).limit(limit)
        rows = (await self._uow.session.exec(stmt)).all()
        opened = self._uow.sealer.open
        return [
            (*json.loads(opened(r.conversation_sealed)), r.meldpunt_id, json.loads(opened(r.state_sealed)))
            for r in rows
        ]



class PersonRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow
        self._read: dict[Identity, PersonSettings] = {}   # within this unit of work

    async def _row(self, identity: Identity) -> PersonRow | None:
        stmt = select(PersonRow).where(PersonRow.lookup.in_(self._uow.person_lookups(identity)))
        return (await self._uow.session.exec(stmt)).first()

    async def get(self, identity: Identity) -> PersonSettings:
        if identity in self._read:
            return self._read[identity]
        result = await self._uow.session.exec(_PERSON_BY_LOOKUPS, params={"keys": self._uow.person_lookups(identity)})
        row = result.first()
        self._read[identity] = settings = PersonSettings(row[0], row[1]) if row else PersonSettings()
        return settings

    async def update(self, identity: Identity, **values: Any) -> None:
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



class AuditRepository:
    """Append and read; there is deliberately no way to change or remove a single entry."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def append(self, *, meldpunt_id: str, signal_id: int | None, actor_kind: str, actor: str, action: str,
                     at: datetime, detail: str | None = None) -> None:
        sealer = self._uow.sealer
        self._uow.session.add(AuditRow(
            meldpunt_id=meldpunt_id, signal_id=signal_id, at=at, actor_kind=actor_kind, actor_sealed=sealer.seal(actor),
            action=action, detail_sealed=sealer.seal(detail) if detail is not None else None,
        ))

    async def of_signal(self, signal_id: int) -> list[AuditEntry]:
        rows = (await self._uow.session.exec(
            select(AuditRow).where(AuditRow.signal_id == signal_id).order_by(AuditRow.id))).all()
        opened = self._uow.sealer.open
        return [AuditEntry(r.at, r.actor_kind, opened(r.actor_sealed), r.action,
                           opened(r.detail_sealed) if r.detail_sealed is not None else None) for r in rows]


class ReminderRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    async def claim(self, key: str, meldpunt_id: str, signal_id: int | None, due, now: datetime) -> bool:
        """True for exactly one caller per key, whatever the number of processes."""
        return key in await self.claim_many([(key, meldpunt_id, signal_id, due)], now)

    async def claim_many(self, items: list[tuple[str, str, int | None, Any]], now: datetime) -> set[str]:
        """The keys of (key, meldpunt_id, signal_id, due) this caller got; others were claimed before."""
        insert = _insert(self._uow.dialect)
        claimed: set[str] = set()
        rows = [dict(key=key, meldpunt_id=meldpunt_id, signal_id=signal_id, kind=due.kind, slot=due.slot,
                     due_at=due.due_at, sent_at=now) for key, meldpunt_id, signal_id, due in items]
        for chunk in _chunks(rows):
            stmt = (insert(ReminderSentRow).values(chunk).on_conflict_do_nothing(index_elements=["key"])
                    .returning(ReminderSentRow.key))
            claimed.update((await self._uow.session.exec(stmt)).scalars())
        return claimed

    async def count(self) -> int:
        return (await self._uow.session.exec(select(sa.func.count()).select_from(ReminderSentRow))).one()


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



class ProcessedEventRepository:
    """Redelivered platform events: the same answer within a short window, never a second handling.

    The replies can show signals (a `toon` view); the signals a turn read are linked to its row, and
    erasing a signal erases those replies with it. The row itself stays, content-free, until it ages out:
    a redelivery of the event is still recognised, and never handled a second time."""

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    def _key(self, platform: str, event_id: str) -> list[str]:
        return self._uow.sealer.lookups("event", f"{platform}:{event_id}")

    async def replies_for(self, platform: str, event_id: str, since: datetime | None = None) -> Earlier | None:
        """None if the event is new; else what was answered, unless that was before `since`."""
        result = await self._uow.session.exec(_PROCESSED_BY_KEYS, params={"keys": self._key(platform, event_id)})
        row = result.first()
        if row is None:
            return None
        sealed, at = row
        if sealed is None or (since is not None and at < since):
            return Earlier(None)
        return Earlier([Reply.from_json(json.dumps(r)) for r in json.loads(self._uow.sealer.open(sealed))])

    async def remember(self, platform: str, event_id: str, replies: list[Reply], at: datetime) -> None:
        """Record the event with its replies and the signals this unit of work read for them."""
        payload = json.dumps([json.loads(r.to_json()) for r in replies], ensure_ascii=False)
        key = self._uow.sealer.lookup("event", f"{platform}:{event_id}")
        await self._uow.session.exec(sa.insert(_PROCESSED).values(
            key=key, at=at, replies_sealed=self._uow.sealer.seal(payload)))
        links = [dict(event_key=key, signal_id=i) for i in sorted(self._uow.signals_seen)]
        for chunk in _chunks(links):
            await self._uow.session.exec(sa.insert(_PROCESSED_SIGNAL).values(chunk))

    async def forget_signal(self, signal_id: int) -> int:
        """Erase the replies that showed this signal (retention erases the signal), and their links. The
        rows stay as markers without content: deleting them would let a redelivery be handled again."""
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
        result = await self._uow.session.exec(sa.update(_PROCESSED).where(
            _PROCESSED.c.at < moment, _PROCESSED.c.replies_sealed.is_not(None)).values(replies_sealed=None))
        await self._uow.session.exec(sa.delete(_PROCESSED_SIGNAL).where(_PROCESSED_SIGNAL.c.event_key.in_(
            sa.select(_PROCESSED.c.key).where(_PROCESSED.c.replies_sealed.is_(None)))))
        return result.rowcount or 0

    async def forget_before(self, moment: datetime) -> int:
        old = sa.select(_PROCESSED.c.key).where(_PROCESSED.c.at < moment)
        await self._uow.session.exec(sa.delete(_PROCESSED_SIGNAL).where(_PROCESSED_SIGNAL.c.event_key.in_(old)))
        result = await self._uow.session.exec(sa.delete(ProcessedEventRow).where(ProcessedEventRow.at < moment))
        return result.rowcount or 0


class SqlUnitOfWork:
    """`async with uow:` opens a transaction; it rolls back unless `commit()` was called."""

    def __init__(self, db: Database, sealer: Sealer, on_outbox: Callable[[], None] | None = None) -> None:
        self._db = db
        self.sealer = sealer
        self.dialect = db.engine.dialect.name
        self._on_outbox = on_outbox
        self.outbox_written = False
        self.signals_seen: set[int] = set()   # ids of the signals read or added in this unit of work
        self.signals = SignalRepository(self)
        self.outbox = OutboxRepository(self)
        self.conversations = ConversationRepository(self)
        self.people = PersonRepository(self)
        self.audit = AuditRepository(self)
        self.processed = ProcessedEventRepository(self)
        self.reminders = ReminderRepository(self)
        self.references = ReferenceRepository(self)
        self.matrix_identity = MatrixIdentityRepository(self)
        self.matrix_trust = MatrixTrustRepository(self)

    def person_lookup(self, identity: Identity) -> str:
        return self.sealer.lookup("person", f"{identity.platform}:{identity.user_id.casefold()}")

    def person_lookups(self, identity: Identity) -> list[str]:
        return self.sealer.lookups("person", f"{identity.platform}:{identity.user_id.casefold()}")

    async def __aenter__(self) -> "SqlUnitOfWork":
        self.session = self._db.sessions()
        self.outbox_written = False
        self.signals_seen = set()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            try:
                await self.session.rollback()
            finally:
                await self.session.close()
        except DATABASE_ERRORS as failed:
            if exc is None or not isinstance(exc, DATABASE_ERRORS):
                raise StorageUnavailable(type(failed).__name__) from failed
        if isinstance(exc, DATABASE_ERRORS):
            # The service sees the core's exception; the driver's stays attached as the cause.
            raise StorageUnavailable(type(exc).__name__) from exc

    async def flush(self) -> None:
        await self.session.flush()

    async def commit(self) -> None:
        await self.session.commit()
        if self.outbox_written and self._on_outbox:
            self._on_outbox()
        self.outbox_written = False


class UnitOfWorkFactory:
    """Creates a fresh unit of work per use case."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer
        self.on_outbox: Callable[[], None] | None = None

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, self.sealer, self.on_outbox)
