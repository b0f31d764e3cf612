"""The ports: what the service layer needs from storage, as Protocols and plain data.

`meldbot.storage` implements them on SQLModel/SQLAlchemy (SqlUnitOfWork); tests of the service layer use
an in-memory fake. Nothing here knows a database: a failing database reaches the service as
StorageUnavailable, never as a driver's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol

from meldbot.core.domain import Content, Event, EventKind, Reference, RefQuery, Signal
from meldbot.core.matching import Mention
from meldbot.core.messaging import Identity, Reply


class StorageUnavailable(Exception):
    """The database (or the way to it) failed; nothing of the unit of work was kept.

    `cause` names the underlying error's type for the logs (never its message: it can carry content)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class AlreadyHandled(Exception):
    """The platform event was recorded by another unit of work first: a redelivery that raced this one (say,
    on another process) past the processed-event check. Nothing of this unit of work was kept; the event's
    stored replies are the answer."""


class ConversationChanged(Exception):
    """The conversation (or the person writing in it) changed after this turn read it without waiting for the
    conversation's lock (an optimistic turn, see ConversationRepository.lock): another turn committed in
    between, on another process or a job of this one. Nothing the turn wrote goes to the database.
    `holds_lock`: the unit of work still holds the conversation's lock in the same transaction, and the turn
    can be handled again in it (UnitOfWork.restart); otherwise it is handled again in a new unit of work,
    waiting for the lock first."""

    def __init__(self, holds_lock: bool = False) -> None:
        super().__init__("holds the lock" if holds_lock else "lock lost")
        self.holds_lock = holds_lock


class ClaimLost(Exception):
    """This process's claim on an outbox row ran out and the row is no longer its own (another process claimed
    it, or delivered it). The sender stops before the platform call; the row's outcome is not this process's
    to record."""


# --- plain data the repositories hand out ------------------------------------------------------------

@dataclass(frozen=True)
class Melder:
    identity: Identity
    display_name: str | None


@dataclass(frozen=True)
class OutboxItem:
    id: int
    meldpunt_id: str
    idempotency_key: str
    kind: str
    recipient: Identity
    reply: Reply
    attempts: int
    # A message sent in parts: how many the platform accepted, and, when set, the moment a send began
    # that was never recorded (its process died during the platform call: the next part is in doubt).
    parts_done: int = 0
    sending_since: datetime | None = None
    # The claim this process took (claim_due): the row stays this process's only while it is unchanged.
    claimed_until: datetime | None = None


@dataclass(frozen=True)
class OutboxState:
    """One outbox row as the administrator and the AF's history may see it: no recipient, no content."""

    id: int
    meldpunt_id: str
    key: str
    kind: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    parked_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None


@dataclass
class PersonSettings:
    language: str | None = None
    meldpunt_id: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor_kind: str
    actor: str
    action: str
    detail: str | None


@dataclass(frozen=True)
class Earlier:
    """A platform event handled before. `replies` is None once they are no longer kept (the row stays a
    few days longer, so the event is still not handled twice)."""

    replies: list[Reply] | None


@dataclass(frozen=True)
class SignalFacts:
    """What monitoring may know of one signal: no content, no names, no reference."""
    meldpunt_id: str
    created_at: datetime                    # aware
    form: str                               # one of FORMS
    context: str                            # one of CONTEXTS
    partners: tuple[str, ...]               # partner keys it was passed on to, possibly empty
    forwarded_at: datetime | None           # first passing on
    partner_feedback_at: datetime | None    # first partner feedback
    melder_informed_at: datetime | None     # first feedback to the melder


@dataclass(frozen=True)
class SimilarCandidate:
    """Another signal that may be "reeds bekend": what its answers mention and the AF's kenmerken (kind, value)."""
    reference: Reference
    mentions: tuple[Mention, ...]
    tags: tuple[tuple[str, str], ...]


# --- repositories ------------------------------------------------------------------------------------

class SignalRepository(Protocol):
    async def next_reference(self, year: int) -> Reference: ...
    async def add(self, signal: Signal, melder: Melder, mentions: tuple[Mention, ...] | None = None) -> Signal: ...
    async def save(self, signal: Signal, at: datetime) -> None: ...
    async def find(self, query: RefQuery, meldpunt_ids: list[str], *, with_events: bool = False) -> Signal | None: ...
    async def melder_of(self, signal: Signal) -> Melder: ...
    async def of_melder(self, identity: Identity) -> list[Signal]: ...
    async def find_for_melder(self, query: RefQuery, identity: Identity) -> Signal | None: ...
    async def events_of(self, signal_ids: list[int], kinds: list[EventKind]) -> dict[int, list[Event]]: ...
    async def set_keys(self, signal: Signal, keys: Iterable[Any], source: str, *, new: bool = False) -> None: ...
    async def matches(self, signal: Signal) -> list[tuple[Reference, str]]: ...
    async def similar_candidates(self, signal: Signal, limit: int) -> list[SimilarCandidate]: ...
    async def merged_into(self, signal: Signal) -> list[Signal]: ...
    async def facts(self, meldpunt_ids: list[str]) -> list[SignalFacts]: ...
    async def handled_by_others(self, meldpunt_id: str, names: list[str]) -> list[Signal]: ...
    async def reminder_candidates(self, meldpunt_id: str, *, lock: bool = False) -> list[Signal]: ...
    async def closed_before(self, meldpunt_id: str, cutoff: datetime) -> list[tuple[int, str]]: ...
    async def erase(self, signal_id: int, reference: str, at: datetime) -> None: ...
    async def open_signals(self, meldpunt_ids: list[str]) -> list[Signal]: ...
    async def count(self) -> int: ...
    async def pseudonyms_taken(self, meldpunt_id: str, pseudonyms: list[str]) -> set[str]:
        """Which of `pseudonyms` a signal of the meldpunt has (erased signals have none)."""
        ...


class OutboxRepository(Protocol):
    async def add(self, *, meldpunt_id: str, recipient: Identity, reply: Reply, key: str, kind: str,
                  at: datetime, reference: str | None = None) -> None:
        """Queue a message in this transaction; the same key twice queues it once. `reference`: the signal
        it is about ("MH-2026-0007"), so retention finds it without reading keys."""
        ...
    async def add_many(self, messages: list[dict[str, Any]], at: datetime) -> None:
        """Several messages, each a dict of `add`'s arguments but `at` (`reference` may be left out)."""
        ...
    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta,
                        platforms: list[str]) -> list[OutboxItem]: ...
    async def mark_delivered_many(self, row_ids: list[int], at: datetime) -> None: ...
    async def hold(self, row_id: int, until: datetime) -> None: ...
    async def retry(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None: ...
    async def park(self, row_id: int, *, attempts: int, at: datetime, error: str) -> None: ...
    async def wake(self, recipient: Identity, now: datetime) -> int: ...
    async def forget_signal(self, reference: str) -> int: ...
    async def forget_delivered_before(self, moment: datetime) -> int: ...
    async def stats(self, kind: str | None = None) -> dict[str, int]: ...
    async def parked_by_kind(self) -> dict[str, int]: ...
    async def count_keyed(self, prefix: str) -> int: ...
    async def troubled(self, *, every: bool = False, limit: int = 1000) -> list[OutboxState]: ...
    async def states(self, keys: list[str]) -> dict[str, OutboxState]: ...
    async def resend(self, row_ids: list[int] | None, now: datetime) -> list[int]: ...


class ConversationRepository(Protocol):
    async def lock(self, platform: str, conversation_id: str, optimistic: bool = False) -> None:
        """One turn at a time per conversation, across processes: wait until no other unit of work holds the
        conversation, then hold it until this one ends (commit or rollback). Waiters are served in arrival
        order. Asked for first in a turn, before anything of the conversation is read.

        `optimistic`: a storage may read first and take the lock later, with the turn's first write or its
        commit, provided it then checks that what it read did not change meanwhile; if it did, nothing is
        kept and ConversationChanged is raised (the caller handles the turn again without `optimistic`)."""
        ...

    async def prefetch(self, platform: str, conversation_id: str, reader: Identity, event_id: str | None = None) -> None:
        """Read now what a turn reads first, the conversation, `reader`'s settings and the platform event (a
        storage may do it in one statement); `load`, `people.get(reader)` and `processed.replies_for` in this
        unit of work then give what was read."""
        ...
    async def load(self, platform: str, conversation_id: str) -> tuple[dict[str, Any], datetime] | None: ...
    async def save(self, platform: str, conversation_id: str, state: dict[str, Any], at: datetime,
                   meldpunt_id: str | None = None) -> None: ...
    async def delete(self, platform: str, conversation_id: str) -> None: ...
    async def forget_markers_before(self, moment: datetime) -> int: ...
    async def untouched_since(self, moment: datetime,
                              limit: int = 500) -> list[tuple[str, str, str | None, dict[str, Any]]]: ...


class PersonRepository(Protocol):
    async def get(self, identity: Identity) -> PersonSettings: ...
    async def update(self, identity: Identity, **values: Any) -> None: ...


class AuditRepository(Protocol):
    async def append(self, *, meldpunt_id: str, signal_id: int | None, actor_kind: str, actor: str, action: str,
                     at: datetime, detail: str | None = None) -> None: ...
    async def of_signal(self, signal_id: int) -> list[AuditEntry]: ...


class ReminderRepository(Protocol):
    async def claim(self, key: str, meldpunt_id: str, signal_id: int | None, due: Any, now: datetime) -> bool: ...
    async def claim_many(self, items: list[tuple[str, str, int | None, Any]], now: datetime) -> set[str]: ...
    async def joint_partner_due(self, signal_ids: list[int]) -> dict[int, datetime]:
        """Per signal: the due time of the last slot sent in the joint partner series (before the partner log)."""
        ...
    async def count(self) -> int: ...


class ReferenceRepository(Protocol):
    async def get(self, identity: Identity) -> dict[str, Any] | None: ...
    async def put(self, identity: Identity, reference: dict[str, Any], at: datetime) -> None: ...


class ProcessedEventRepository(Protocol):
    async def replies_for(self, platform: str, event_id: str, since: datetime | None = None) -> Earlier | None: ...
    async def remember(self, platform: str, event_id: str, replies: list[Reply], at: datetime) -> None:
        """Record the event with its replies; AlreadyHandled if another unit of work recorded it first (raised
        here or by the commit that sends the record)."""
        ...
    async def forget_signal(self, signal_id: int) -> int: ...
    async def forget_replies_before(self, moment: datetime) -> int: ...
    async def forget_before(self, moment: datetime) -> int: ...


class UnitOfWork(Protocol):
    """`async with uow:` is one transaction; it is rolled back unless `commit()` was called."""

    # Read-only members: an implementation may hold its own repository classes (SqlUnitOfWork's, the tests'
    # fakes), which a plain attribute here would refuse (mypy keeps settable protocol members invariant).
    @property
    def signals(self) -> SignalRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def conversations(self) -> ConversationRepository: ...
    @property
    def people(self) -> PersonRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def processed(self) -> ProcessedEventRepository: ...
    @property
    def reminders(self) -> ReminderRepository: ...
    @property
    def references(self) -> ReferenceRepository: ...

    async def __aenter__(self) -> "UnitOfWork": ...
    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...
    async def commit(self) -> None: ...
    async def flush(self) -> None:
        """Make what was written so far visible to the reads of this unit of work."""
        ...
    def restart(self) -> bool:
        """After ConversationChanged(kept=True): start the turn over in the same transaction, which still holds
        the conversation; what this unit of work read and wrote so far is forgotten. False when it cannot."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
