"""In-memory fakes of the core's storage ports (meldbot.core.ports) for the service layer's unit tests.

`FakeStorage` plays the database and, called, makes a `FakeUnitOfWork` (as UnitOfWorkFactory does).
A unit of work sees what was committed when it began and writes to its own copy of that: its writes are
visible to its own reads at once (as in one SQL transaction), to other units of work only after
`commit()`; leaving `async with` without a commit, or `rollback()`, drops them. Units of work that overlap
and both write are refused at the second commit (FakeConflict), not merged: the fake is not for
concurrency tests.

Values go through JSON where storage seals them (contents, event data, replies, dialog state), so a test
sees what a real database would give back (no images in outbox replies, tuples as lists)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from meldbot.core import matching, similar
from meldbot.core.domain import Content, Event, EventKind, Reference, RefQuery, Signal, Status
from meldbot.core.matching import Mention
from meldbot.core.messaging import Identity, Reply
from meldbot.core.ports import (
    AlreadyHandled,
    AuditEntry,
    Earlier,
    Melder,
    OutboxItem,
    OutboxState,
    PersonSettings,
    SignalFacts,
    SimilarCandidate,
    UnitOfWork,
)

_OPEN = (Status.RECEIVED, Status.IN_PROGRESS, Status.FORWARDED)


def _person(identity: Identity) -> tuple[str, str]:
    """People are found by (platform, user id) ignoring case, as the storage's person lookup does."""
    return identity.platform, identity.user_id.casefold()


def _json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


# --- what the fake database holds --------------------------------------------------------------------

@dataclass
class SignalRecord:
    signal: Signal                                   # without its events (they are in `events`)
    melder: Melder | None
    events: list[Event] = field(default_factory=list)
    keys: list[tuple[str, str, str]] = field(default_factory=list)   # (kind, value, source)


@dataclass
class OutboxRecord:
    id: int
    meldpunt_id: str
    key: str
    kind: str
    recipient: Identity
    payload: str                                     # Reply.to_json(), as the outbox stores it
    reference: str | None
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    claimed_until: datetime | None = None
    delivered_at: datetime | None = None
    parked_at: datetime | None = None
    last_error: str | None = None

    @property
    def reply(self) -> Reply:
        return Reply.from_json(self.payload)

    def state(self) -> OutboxState:
        return OutboxState(self.id, self.meldpunt_id, self.key, self.kind, self.attempts, self.created_at,
                           self.delivered_at, self.parked_at, self.next_attempt_at, self.last_error)


@dataclass
class AuditRecord:
    meldpunt_id: str
    signal_id: int | None
    entry: AuditEntry


@dataclass
class ConversationRecord:
    state: str                                       # JSON
    updated_at: datetime
    meldpunt_id: str | None


@dataclass
class ProcessedRecord:
    at: datetime
    replies: str | None                              # JSON; None once dropped (the marker stays)
    signal_ids: set[int] = field(default_factory=set)


@dataclass
class ReminderRecord:
    meldpunt_id: str
    signal_id: int | None
    kind: str
    slot: int
    due_at: datetime
    sent_at: datetime


@dataclass
class FakeData:
    """Everything the fake database holds; a unit of work works on a deep copy of it."""

    last_ids: dict[str, int] = field(default_factory=dict)
    counters: dict[int, int] = field(default_factory=dict)
    signals: dict[int, SignalRecord] = field(default_factory=dict)
    outbox: list[OutboxRecord] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    people: dict[tuple[str, str], PersonSettings] = field(default_factory=dict)
    conversations: dict[tuple[str, str], ConversationRecord] = field(default_factory=dict)
    processed: dict[tuple[str, str], ProcessedRecord] = field(default_factory=dict)
    references: dict[tuple[str, str], str] = field(default_factory=dict)
    reminders: dict[str, ReminderRecord] = field(default_factory=dict)

    def next_id(self, table: str) -> int:
        self.last_ids[table] = self.last_ids.get(table, 0) + 1
        return self.last_ids[table]


class FakeConflict(Exception):
    """Two units of work that overlapped both wrote; the second commit is refused."""


class FakeStorage:
    """The fake database. `storage()` is a new unit of work; `storage.data` is what was committed."""

    def __init__(self) -> None:
        self.data = FakeData()      # never changed in place: a commit replaces it
        self.version = 0            # one more per commit that wrote something
        self.commits = 0
        self.on_outbox: Callable[[], None] | None = None
        # The conversations' locks, like PostgreSQL's transaction-scoped advisory locks: held until the
        # unit of work ends, waiters served in arrival order (asyncio.Lock is fair).
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


# --- the unit of work --------------------------------------------------------------------------------

class FakeUnitOfWork:
    """`async with uow:` sees the data committed when it began; its first write makes a copy of that, and
    `commit()` makes the copy the committed data."""

    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage
        self.data = storage.data
        self._version = storage.version
        self.wrote = False
        self.outbox_written = False
        self.signals_seen: set[int] = set()   # ids of the signals read or added in this unit of work
        self.held: list[asyncio.Lock] = []    # conversation locks, released when the transaction ends
        self.signals = FakeSignalRepository(self)
        self.outbox = FakeOutboxRepository(self)
        self.conversations = FakeConversationRepository(self)
        self.people = FakePersonRepository(self)
        self.audit = FakeAuditRepository(self)
        self.processed = FakeProcessedEventRepository(self)
        self.reminders = FakeReminderRepository(self)
        self.references = FakeReferenceRepository(self)

    async def __aenter__(self) -> FakeUnitOfWork:
        self.signals_seen = set()
        await self.rollback()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rollback()

    def write(self) -> FakeData:
        """The data to change: this unit of work's own copy, made at its first write (reads share the
        committed data, and hand out copies of what they find)."""
        if not self.wrote:
            self.data = copy.deepcopy(self.data)
            self.wrote = True
        return self.data

    def restart(self) -> bool:
        return False   # its lock is never taken late (FakeConversationRepository.lock): no ConversationChanged

    async def flush(self) -> None:
        """Nothing to do: this unit of work's reads see its writes at once."""

    async def commit(self) -> None:
        storage = self._storage
        if self.wrote:
            if storage.version != self._version:
                raise FakeConflict("another unit of work committed since this one began")
            storage.data = self.data
            storage.version += 1
        storage.commits += 1
        if self.outbox_written and storage.on_outbox:
            storage.on_outbox()
        await self.rollback()

    async def rollback(self) -> None:
        for lock in self.held:
            lock.release()
        self.held = []
        self.data = self._storage.data
        self._version = self._storage.version
        self.wrote = False
        self.outbox_written = False


# --- repositories ------------------------------------------------------------------------------------

class FakeSignalRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _records(self) -> dict[int, SignalRecord]:
        return self._uow.data.signals

    def _to_domain(self, record: SignalRecord, *, with_events: bool = False) -> Signal:
        signal = copy.deepcopy(record.signal)
        assert signal.id is not None
        self._uow.signals_seen.add(signal.id)
        signal.events = copy.deepcopy(record.events) if with_events else []
        signal.new_events = []
        return signal

    def _keep_events(self, record: SignalRecord, signal: Signal) -> None:
        record.events.extend(replace(e, data=_json_copy(e.data)) for e in signal.new_events)
        signal.new_events.clear()

    async def next_reference(self, year: int) -> Reference:
        counters = self._uow.write().counters
        counters[year] = counters.get(year, 0) + 1
        return Reference(year, counters[year])

    async def add(self, signal: Signal, melder: Melder, mentions: tuple[Mention, ...] | None = None) -> Signal:
        data = self._uow.write()
        signal.id = data.next_id("signal")
        stored = replace(signal, content=Content.from_dict(_json_copy(signal.content.to_dict())), events=[],
                         new_events=[])
        record = data.signals[signal.id] = SignalRecord(stored, melder)
        self._keep_events(record, signal)
        self._uow.signals_seen.add(signal.id)
        return signal

    async def save(self, signal: Signal, at: datetime) -> None:
        assert signal.id is not None
        record = self._uow.write().signals[signal.id]
        # The fields the storage writes on a save; the others do not change after submission.
        record.signal = replace(
            record.signal, status=signal.status, handler=signal.handler, outcome=signal.outcome,
            closed_at=signal.closed_at, urgent=signal.urgent, partners=tuple(signal.partners),
            forwarded_at=signal.forwarded_at, partner_feedback_at=signal.partner_feedback_at,
            melder_informed_at=signal.melder_informed_at, melder_last_informed_at=signal.melder_last_informed_at,
            merged_into=signal.merged_into, content=Content.from_dict(_json_copy(signal.content.to_dict())),
            partner_log=dict(signal.partner_log))
        self._keep_events(record, signal)

    def _matching(self, query: RefQuery, records: Iterable[SignalRecord]) -> SignalRecord | None:
        found = [r for r in records if r.signal.reference.number == query.number
                 and (query.year is None or r.signal.reference.year == query.year)]
        return max(found, key=lambda r: r.signal.reference.year, default=None)

    async def find(self, query: RefQuery, meldpunt_ids: list[str], *, with_events: bool = False) -> Signal | None:
        record = self._matching(query, (r for r in self._records.values() if r.signal.meldpunt_id in meldpunt_ids))
        return self._to_domain(record, with_events=with_events) if record else None

    async def melder_of(self, signal: Signal) -> Melder:
        assert signal.id is not None
        melder = self._records[signal.id].melder
        if melder is None:
            raise KeyError(f"signal {signal.id} has no melder (erased)")
        return melder

    def _of(self, identity: Identity) -> list[SignalRecord]:
        return [r for _, r in sorted(self._records.items())
                if r.melder is not None and _person(r.melder.identity) == _person(identity)]

    async def of_melder(self, identity: Identity) -> list[Signal]:
        return [self._to_domain(r) for r in self._of(identity)]

    async def find_for_melder(self, query: RefQuery, identity: Identity) -> Signal | None:
        """One of the melder's own signals; another person's reference finds nothing."""
        record = self._matching(query, self._of(identity))
        return self._to_domain(record) if record else None

    async def events_of(self, signal_ids: list[int], kinds: list[EventKind]) -> dict[int, list[Event]]:
        found: dict[int, list[Event]] = {}
        for signal_id in sorted(set(signal_ids) & set(self._records)):
            events = [copy.deepcopy(e) for e in self._records[signal_id].events if e.kind in kinds]
            if events:
                found[signal_id] = events
        return found

    async def set_keys(self, signal: Signal, keys: Iterable[Any], source: str, *, new: bool = False) -> None:
        assert signal.id is not None
        record = self._uow.write().signals[signal.id]
        if source == "auto" and not new:
            record.keys = [k for k in record.keys if k[2] != "auto"]
        keys = set(keys)
        record.keys.extend((key.kind, key.value, source) for key in sorted(keys | matching.blocks(keys)))

    async def matches(self, signal: Signal) -> list[tuple[Reference, str]]:
        """Other signals of the meldpunt sharing a key with `signal`: (reference, kind), oldest first."""
        assert signal.id is not None
        mine = {value for _, value, _ in self._records[signal.id].keys}
        found = {(r.signal.reference, kind) for signal_id, r in self._records.items()
                 if signal_id != signal.id and r.signal.meldpunt_id == signal.meldpunt_id
                 for kind, value, _ in r.keys if value in mine and kind != matching.BLOCK}
        return sorted(found, key=lambda m: (m[0].year, m[0].number, m[1]))

    async def similar_candidates(self, signal: Signal, limit: int) -> list[SimilarCandidate]:
        assert signal.id is not None
        mine = {value for _, value, _ in self._records[signal.id].keys}
        same_meldpunt = {i: r for i, r in self._records.items() if r.signal.meldpunt_id == signal.meldpunt_id}
        holders = {value: sum(value in {v for _, v, _ in r.keys} for r in same_meldpunt.values()) for value in mine}
        # As the SQL storage: each shared key weighs 1 / the number of signals holding it.
        shared = sorted(((sum(1.0 / holders[v] for v in {v for _, v, _ in r.keys} & mine), signal_id)
                         for signal_id, r in same_meldpunt.items() if signal_id != signal.id), reverse=True)
        found = []
        for count, signal_id in shared[:limit]:
            if count:
                r = self._records[signal_id]
                tags = tuple((str(e.data.get("kind", "")), str(e.data.get("value", ""))) for e in r.events
                             if e.kind is EventKind.TAG)
                content = Content.from_dict(_json_copy(r.signal.content.to_dict()))
                found.append(SimilarCandidate(r.signal.reference, similar.content_mentions(content), tags))
        return found

    async def merged_into(self, signal: Signal) -> list[Signal]:
        """Duplicates merged into `signal`: their melders are told too."""
        return [self._to_domain(r) for _, r in sorted(self._records.items())
                if r.signal.merged_into == str(signal.reference) and r.signal.meldpunt_id == signal.meldpunt_id]

    async def facts(self, meldpunt_ids: list[str]) -> list[SignalFacts]:
        return [SignalFacts(meldpunt_id=s.meldpunt_id, created_at=s.created_at, form=str(s.form),
                            context=str(s.context), partners=tuple(s.partners), forwarded_at=s.forwarded_at,
                            partner_feedback_at=s.partner_feedback_at, melder_informed_at=s.melder_informed_at)
                for s in (r.signal for r in self._records.values())
                if s.meldpunt_id in meldpunt_ids and s.merged_into is None]

    async def handled_by_others(self, meldpunt_id: str, names: list[str]) -> list[Signal]:
        """Open signals whose handler is not one of `names` (an AF removed from the configuration)."""
        return [self._to_domain(r) for _, r in sorted(self._records.items())
                if r.signal.meldpunt_id == meldpunt_id and r.signal.status is not Status.CLOSED
                and r.signal.handler is not None and r.signal.handler not in names]

    async def reminder_candidates(self, meldpunt_id: str, *, lock: bool = False) -> list[Signal]:
        """Open signals, and closed ones whose melder was not told yet (storage's REMINDER_CANDIDATE_SQL)."""
        def candidate(s: Signal) -> bool:
            if s.status is not Status.CLOSED:
                return True
            told = s.melder_last_informed_at
            return s.erased_at is None and s.merged_into is None and (
                told is None or (s.closed_at is not None and told < s.closed_at))

        return [self._to_domain(r) for _, r in sorted(self._records.items())
                if r.signal.meldpunt_id == meldpunt_id and candidate(r.signal)]

    async def closed_before(self, meldpunt_id: str, cutoff: datetime) -> list[tuple[int, str]]:
        return [(i, str(r.signal.reference)) for i, r in sorted(self._records.items())
                if r.signal.meldpunt_id == meldpunt_id and r.signal.status is Status.CLOSED
                and r.signal.closed_at is not None and r.signal.closed_at < cutoff and r.signal.erased_at is None]

    async def erase(self, signal_id: int, reference: str, at: datetime) -> None:
        """Retention: everything personal about one signal goes; its row stays, content-free."""
        data = self._uow.write()
        record = data.signals[signal_id]
        data.audit = [a for a in data.audit if a.signal_id != signal_id]
        await self._uow.processed.forget_signal(signal_id)
        await self._uow.outbox.forget_signal(reference)
        record.signal = replace(record.signal, content=Content(), pseudonym=None, erased_at=at)
        record.melder, record.keys = None, []
        record.events = [Event(EventKind.ERASED, at, "systeem", {})]

    async def open_signals(self, meldpunt_ids: list[str]) -> list[Signal]:
        return [self._to_domain(r) for _, r in sorted(self._records.items())
                if r.signal.meldpunt_id in meldpunt_ids and r.signal.status in _OPEN]

    async def count(self) -> int:
        return len(self._records)

    async def pseudonyms_taken(self, meldpunt_id: str, pseudonyms: list[str]) -> set[str]:
        return {p for r in self._records.values() if r.signal.meldpunt_id == meldpunt_id
                and (p := r.signal.pseudonym) is not None and p in pseudonyms}


class FakeOutboxRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _rows(self) -> list[OutboxRecord]:
        return self._uow.data.outbox

    async def add(self, *, meldpunt_id: str, recipient: Identity, reply: Reply, key: str, kind: str,
                  at: datetime, reference: str | None = None) -> None:
        """Queue a message in this transaction. The same key twice queues it once."""
        await self.add_many([dict(meldpunt_id=meldpunt_id, recipient=recipient, reply=reply, key=key, kind=kind,
                                  reference=reference)], at)

    async def add_many(self, messages: list[dict[str, Any]], at: datetime) -> None:
        if not messages:
            return
        data = self._uow.write()
        keys = {row.key for row in data.outbox}
        for m in messages:
            if m["key"] in keys:
                continue
            keys.add(m["key"])
            data.outbox.append(OutboxRecord(
                id=data.next_id("outbox"), meldpunt_id=m["meldpunt_id"], key=m["key"], kind=m["kind"],
                recipient=m["recipient"], payload=m["reply"].to_json(), reference=m.get("reference"),
                created_at=at, next_attempt_at=at))
        self._uow.outbox_written = True

    def _by_id(self, row_id: int) -> OutboxRecord:
        return next(r for r in self._uow.write().outbox if r.id == row_id)

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta,
                        platforms: list[str]) -> list[OutboxItem]:
        due = [r for r in self._rows if r.delivered_at is None and r.parked_at is None and r.next_attempt_at <= now
               and r.recipient.platform in platforms and (r.claimed_until is None or r.claimed_until < now)]
        items = []
        for row in sorted(due, key=lambda r: r.id)[:limit]:
            self._by_id(row.id).claimed_until = now + lease
            items.append(OutboxItem(id=row.id, meldpunt_id=row.meldpunt_id, idempotency_key=row.key, kind=row.kind,
                                    recipient=row.recipient, reply=row.reply, attempts=row.attempts,
                                    claimed_until=now + lease))
        return items

    async def mark_delivered_many(self, row_ids: list[int], at: datetime) -> None:
        for row_id in row_ids:
            row = self._by_id(row_id)
            row.delivered_at, row.claimed_until, row.last_error = at, None, None

    async def hold(self, row_id: int, until: datetime) -> None:
        row = self._by_id(row_id)
        row.next_attempt_at, row.claimed_until = until, None

    async def retry(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None:
        row = self._by_id(row_id)
        row.attempts, row.next_attempt_at, row.claimed_until, row.last_error = attempts, at, None, error[:300]

    async def park(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None:
        row = self._by_id(row_id)
        row.attempts, row.parked_at, row.claimed_until, row.last_error = attempts, at, None, error[:300]

    async def wake(self, recipient: Identity, now: datetime) -> int:
        waiting = [r for r in self._rows if _person(r.recipient) == _person(recipient) and r.delivered_at is None
                   and r.parked_at is None and r.next_attempt_at > now]
        for row in waiting:
            self._by_id(row.id).next_attempt_at = now
        return len(waiting)

    async def forget_signal(self, reference: str) -> int:
        """Every message about the signal (by its reference column; by its key for rows without one) and the
        notices about those messages (`undelivered:<row id>:...`)."""
        def about(r: OutboxRecord) -> bool:
            return r.reference == reference if r.reference is not None else f":{reference}:" in r.key

        data = self._uow.write()
        ids = {r.id for r in data.outbox if about(r)}
        kept = [r for r in data.outbox
                if not about(r) and not any(r.key.startswith(f"undelivered:{i}:") for i in ids)]
        removed, data.outbox = len(data.outbox) - len(kept), kept
        return removed

    async def forget_delivered_before(self, moment: datetime) -> int:
        data = self._uow.write()
        kept = [r for r in data.outbox if r.delivered_at is None or r.delivered_at >= moment]
        removed, data.outbox = len(data.outbox) - len(kept), kept
        return removed

    async def stats(self, kind: str | None = None) -> dict[str, int]:
        rows = [r for r in self._rows if kind is None or r.kind == kind]
        return {"pending": sum(r.delivered_at is None and r.parked_at is None for r in rows),
                "parked": sum(r.parked_at is not None for r in rows),
                "delivered": sum(r.delivered_at is not None for r in rows)}

    async def parked_by_kind(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for row in self._rows:
            if row.parked_at is not None:
                found[row.kind] = found.get(row.kind, 0) + 1
        return found

    async def count_keyed(self, prefix: str) -> int:
        return sum(r.key.startswith(prefix) for r in self._rows)

    async def troubled(self, *, every: bool = False, limit: int = 1000) -> list[OutboxState]:
        rows = [r for r in self._rows if r.delivered_at is None and (every or r.parked_at is not None or r.attempts > 0)]
        return [r.state() for r in sorted(rows, key=lambda r: r.id)[:limit]]

    async def states(self, keys: list[str]) -> dict[str, OutboxState]:
        return {r.key: r.state() for r in self._rows if r.key in keys}

    async def resend(self, row_ids: list[int] | None, now: datetime) -> list[int]:
        chosen = [r for r in self._rows if r.delivered_at is None and (r.claimed_until is None or r.claimed_until < now)
                  and (r.parked_at is not None if row_ids is None else r.id in row_ids)]
        for r in chosen:
            row = self._by_id(r.id)
            row.parked_at, row.next_attempt_at, row.attempts, row.claimed_until = None, row.created_at, 0, None
        if chosen:
            self._uow.outbox_written = True
        return sorted(r.id for r in chosen)


class FakeConversationRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def prefetch(self, platform: str, conversation_id: str, reader: Identity, event_id: str | None = None) -> None:
        """Nothing to do: reads here cost nothing."""

    async def lock(self, platform: str, conversation_id: str, optimistic: bool = False) -> None:
        # Always at once: the fake's reads cost nothing, so nothing is gained by waiting later.
        lock = self._uow._storage.locks.setdefault((platform, conversation_id), asyncio.Lock())
        if lock not in self._uow.held:      # held already by this transaction: as in PostgreSQL, no wait
            await lock.acquire()
            self._uow.held.append(lock)
            # Seen from here on: what the previous holder committed.
            if not self._uow.wrote:
                self._uow.data, self._uow._version = self._uow._storage.data, self._uow._storage.version

    async def load(self, platform: str, conversation_id: str) -> tuple[dict[str, Any], datetime] | None:
        record = self._uow.data.conversations.get((platform, conversation_id))
        return (json.loads(record.state), record.updated_at) if record else None

    async def save(self, platform: str, conversation_id: str, state: dict[str, Any], at: datetime,
                   meldpunt_id: str | None = None) -> None:
        conversations = self._uow.write().conversations
        earlier = conversations.get((platform, conversation_id))
        conversations[(platform, conversation_id)] = ConversationRecord(
            json.dumps(state, ensure_ascii=False), at, meldpunt_id or (earlier.meldpunt_id if earlier else None))

    async def delete(self, platform: str, conversation_id: str) -> None:
        self._uow.write().conversations.pop((platform, conversation_id), None)

    async def forget_markers_before(self, moment: datetime) -> int:
        data = self._uow.write()
        old = [k for k, r in data.conversations.items() if r.updated_at < moment]
        for key in old:
            del data.conversations[key]
        return len(old)

    async def untouched_since(self, moment: datetime,
                              limit: int = 500) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        old = sorted(((k, r) for k, r in self._uow.data.conversations.items() if r.updated_at < moment),
                     key=lambda kr: kr[1].updated_at)
        return [(platform, cid, r.meldpunt_id, json.loads(r.state)) for (platform, cid), r in old[:limit]]


class FakePersonRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def get(self, identity: Identity) -> PersonSettings:
        return copy.copy(self._uow.data.people.get(_person(identity), PersonSettings()))

    async def update(self, identity: Identity, **values: Any) -> None:
        people = self._uow.write().people
        settings = people.setdefault(_person(identity), PersonSettings())
        for name, value in values.items():
            if not hasattr(settings, name):
                raise TypeError(f"a person has no setting {name!r}")
            setattr(settings, name, value)


class FakeAuditRepository:
    """Append and read; there is deliberately no way to change or remove a single entry."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def append(self, *, meldpunt_id: str, signal_id: int | None, actor_kind: str, actor: str, action: str,
                     at: datetime, detail: str | None = None) -> None:
        self._uow.write().audit.append(AuditRecord(meldpunt_id, signal_id, AuditEntry(at, actor_kind, actor, action,
                                                                                      detail)))

    async def of_signal(self, signal_id: int) -> list[AuditEntry]:
        return [a.entry for a in self._uow.data.audit if a.signal_id == signal_id]


class FakeReminderRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, key: str, meldpunt_id: str, signal_id: int | None, due: Any, now: datetime) -> bool:
        """True for exactly one caller per key."""
        return key in await self.claim_many([(key, meldpunt_id, signal_id, due)], now)

    async def claim_many(self, items: list[tuple[str, str, int | None, Any]], now: datetime) -> set[str]:
        claimed: set[str] = set()
        if not items:
            return claimed
        reminders = self._uow.write().reminders
        for key, meldpunt_id, signal_id, due in items:
            if key not in reminders:
                reminders[key] = ReminderRecord(meldpunt_id, signal_id, due.kind.partition(":")[0], due.slot,
                                                due.due_at, now)
                claimed.add(key)
        return claimed

    async def joint_partner_due(self, signal_ids: list[int]) -> dict[int, datetime]:
        found: dict[int, datetime] = {}
        wanted = set(signal_ids)
        for key, r in self._uow.data.reminders.items():
            if r.signal_id in wanted and r.kind == "partner" and key.startswith("partner:MH-"):
                found[r.signal_id] = max(found.get(r.signal_id, r.due_at), r.due_at)
        return found

    async def count(self) -> int:
        return len(self._uow.data.reminders)


class FakeReferenceRepository:
    """Platform addresses of people (a Teams conversation reference, a Matrix DM room id)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def get(self, identity: Identity) -> dict[str, Any] | None:
        found = self._uow.data.references.get((identity.platform, identity.user_id))
        return json.loads(found) if found is not None else None

    async def put(self, identity: Identity, reference: dict[str, Any], at: datetime) -> None:
        self._uow.write().references[(identity.platform, identity.user_id)] = json.dumps(reference)


class FakeProcessedEventRepository:
    """Redelivered platform events: the same answer within a short window, never a second handling."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def replies_for(self, platform: str, event_id: str, since: datetime | None = None) -> Earlier | None:
        record = self._uow.data.processed.get((platform, event_id))
        if record is None:
            return None
        if record.replies is None or (since is not None and record.at < since):
            return Earlier(None)
        return Earlier([Reply.from_json(json.dumps(r)) for r in json.loads(record.replies)])

    async def remember(self, platform: str, event_id: str, replies: list[Reply], at: datetime) -> None:
        """Record the event with its replies and the signals this unit of work read for them."""
        processed = self._uow.write().processed
        if (platform, event_id) in processed:
            # The key is unique: the database refuses the second row, and the storage says so in the core's words.
            raise AlreadyHandled()
        payload = json.dumps([json.loads(r.to_json()) for r in replies], ensure_ascii=False)
        processed[(platform, event_id)] = ProcessedRecord(at, payload, set(self._uow.signals_seen))

    async def forget_signal(self, signal_id: int) -> int:
        """Erase the replies that showed this signal; the records stay as markers without content."""
        changed = 0
        for record in self._uow.write().processed.values():
            if signal_id in record.signal_ids:
                changed += record.replies is not None
                record.replies, record.signal_ids = None, set()
        return changed

    async def forget_replies_before(self, moment: datetime) -> int:
        changed = 0
        for record in self._uow.write().processed.values():
            if record.at < moment and record.replies is not None:
                record.replies, record.signal_ids = None, set()
                changed += 1
        return changed

    async def forget_before(self, moment: datetime) -> int:
        data = self._uow.write()
        old = [k for k, r in data.processed.items() if r.at < moment]
        for key in old:
            del data.processed[key]
        return len(old)


def _conforms(storage: FakeStorage) -> Callable[[], UnitOfWork]:
    """For the type checker: the fake is a unit-of-work factory as the service layer sees one."""
    return storage
