"""The signal and its lifecycle: statuses, the allowed moves between them, and its event history."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    RECEIVED = "ontvangen"
    IN_PROGRESS = "in_behandeling"
    FORWARDED = "doorgezet"
    CLOSED = "afgesloten"


class Form(StrEnum):
    """Form of exploitation (soort)."""

    SEXUAL = "seksueel"
    LABOUR = "arbeid"
    CRIMINAL = "crimineel"
    ORGAN = "orgaan"
    UNKNOWN = "onbekend"


class Context(StrEnum):
    """Where the employee met the signal."""

    DESK = "balie"
    HOME_VISIT = "huisbezoek"
    INSPECTION = "toezicht"
    PERMIT = "vergunning"
    OTHER = "anders"


class Outcome(StrEnum):
    DONE = "afgerond"
    NO_TRAFFICKING = "geen-mensenhandel"
    OTHER_PHENOMENON = "ander-fenomeen"
    INSUFFICIENT = "onvoldoende-info"


class EventKind(StrEnum):
    SUBMITTED = "ingediend"
    PICKED_UP = "opgepakt"
    NOTE = "notitie"
    TAG = "kenmerk"
    CONSULTED = "overlegd"
    FORWARDED = "doorgezet"
    PARTNER_FEEDBACK = "feedback"
    MELDER_INFORMED = "teruggekoppeld"
    SUPPLEMENTED = "aangevuld"
    QUESTION_ASKED = "gevraagd"
    QUESTION_ANSWERED = "beantwoord"
    CLOSED = "gesloten"
    REOPENED = "heropend"
    MERGED = "samengevoegd"
    HANDED_OVER = "overgedragen"
    ERASED = "gewist"


ALLOWED: dict[Status, frozenset[Status]] = {
    Status.RECEIVED: frozenset({Status.IN_PROGRESS, Status.CLOSED}),
    Status.IN_PROGRESS: frozenset({Status.FORWARDED, Status.CLOSED}),
    Status.FORWARDED: frozenset({Status.CLOSED}),
    Status.CLOSED: frozenset({Status.IN_PROGRESS}),
}


class InvalidTransition(Exception):
    def __init__(self, current: Status, wanted: Status) -> None:
        super().__init__(f"{current} -> {wanted}")
        self.current = current
        self.wanted = wanted


class SignalClosed(Exception):
    """A closed signal is read-only except for informing the melder and reopening. `merged_into`: the signal
    it was merged into, which is where the work goes on (a merged duplicate cannot be reopened)."""

    def __init__(self, reference: str, merged_into: str | None = None) -> None:
        super().__init__(reference)
        self.merged_into = merged_into


REF_PATTERN = re.compile(r"^(?:MH-?)?(?:(\d{4})-)?0*(\d{1,9})$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Reference:
    year: int
    number: int

    def __str__(self) -> str:
        return f"MH-{self.year}-{self.number:04d}"


@dataclass(frozen=True)
class RefQuery:
    """A reference as typed: in full (`MH-2026-0007`) or as a bare number (`7`)."""

    number: int
    year: int | None = None

    @classmethod
    def parse(cls, text: str) -> "RefQuery | None":
        match = REF_PATTERN.match(text.strip())
        if not match:
            return None
        year, number = match.groups()
        if int(number) == 0:
            return None
        return cls(int(number), int(year) if year else None)


@dataclass(frozen=True)
class Content:
    """What the melder told: the answers of the report dialog. Personal data; encrypted at rest."""

    wat: str = ""
    waar: str = ""
    wanneer: str = ""                 # the raw answer, always kept
    wanneer_iso: str | None = None     # the understood moment, if any
    wie: str = ""

    def texts(self) -> list[str]:
        """The free-text answers, where addresses and organisations are looked for."""
        return [self.wat, self.waar, self.wie]

    def to_dict(self) -> dict[str, Any]:
        return {
            "wat": self.wat,
            "waar": self.waar,
            "wanneer": self.wanneer,
            "wanneer_iso": self.wanneer_iso,
            "wie": self.wie,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Content":
        return cls(**{k: data.get(k, cls.__dataclass_fields__[k].default) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Event:
    kind: EventKind
    at: datetime
    actor: str                         # "melder", an AF's short name, or "systeem"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PartnerLog:
    """One partner's part in a signal: when it was passed to them, discussed with them, and when they gave
    feedback (the first time each). Content-free: partner keys come from configuration."""

    forwarded_at: datetime | None = None
    consulted_at: datetime | None = None
    feedback_at: datetime | None = None

    def to_dict(self) -> dict[str, str]:
        moments = {"forwarded": self.forwarded_at, "consulted": self.consulted_at, "feedback": self.feedback_at}
        return {name: at.isoformat() for name, at in moments.items() if at is not None}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> "PartnerLog":
        def moment(name: str) -> datetime | None:
            return datetime.fromisoformat(data[name]) if data.get(name) else None
        return cls(moment("forwarded"), moment("consulted"), moment("feedback"))


def derive_partner_log(partners: tuple[str, ...], forwarded_at: datetime | None,
                       partner_feedback_at: datetime | None,
                       events: list[Event] | None) -> tuple[dict[str, PartnerLog], bool]:
    """The partner log of a signal stored before it had one: exact from its history when that was read
    (True), else guessed from the monitoring facts (False): every partner passed to at the first passing on,
    and answered when any feedback came, as reminders worked then."""
    if events:
        log: dict[str, PartnerLog] = {}
        for e in events:
            partner = e.data.get("partner")
            if not partner:
                continue
            old = log.get(partner, PartnerLog())
            if e.kind is EventKind.FORWARDED:
                log[partner] = PartnerLog(old.forwarded_at or e.at, old.consulted_at, old.feedback_at)
            elif e.kind is EventKind.CONSULTED:
                log[partner] = PartnerLog(old.forwarded_at, old.consulted_at or e.at, old.feedback_at)
            elif e.kind is EventKind.PARTNER_FEEDBACK:
                log[partner] = PartnerLog(old.forwarded_at, old.consulted_at, old.feedback_at or e.at)
        return log, True
    return {p: PartnerLog(forwarded_at=forwarded_at, feedback_at=partner_feedback_at) for p in partners}, False


class PartnerNotInvolved(Exception):
    """Feedback from a partner the signal was neither passed to nor discussed with."""

    def __init__(self, partner: str, involved: tuple[str, ...]) -> None:
        super().__init__(partner)
        self.partner = partner
        self.involved = involved


@dataclass
class Signal:
    """A submitted signal. Drafts are dialog state, never a Signal."""

    meldpunt_id: str
    reference: Reference
    status: Status
    form: Form
    context: Context
    urgent: bool
    anonymous: bool
    pseudonym: str | None
    content: Content
    created_at: datetime
    handler: str | None = None
    outcome: Outcome | None = None
    closed_at: datetime | None = None
    # Content-free facts kept for monitoring (they survive retention).
    partners: tuple[str, ...] = ()
    forwarded_at: datetime | None = None
    partner_feedback_at: datetime | None = None
    melder_informed_at: datetime | None = None
    melder_last_informed_at: datetime | None = None
    merged_into: str | None = None
    erased_at: datetime | None = None
    # Per partner key: passed on, consulted, feedback. `partner_log_exact` is False for a signal stored before
    # the log existed and read without its history: the log is then guessed (derive_partner_log) and not stored.
    partner_log: dict[str, PartnerLog] = field(default_factory=dict)
    partner_log_exact: bool = True
    id: int | None = None
    events: list[Event] = field(default_factory=list)
    new_events: list[Event] = field(default_factory=list)

    @property
    def stored_id(self) -> int:
        """The id storage gave it: every signal the service reads has one, a newly submitted one once added."""
        if self.id is None:
            raise ValueError(f"{self.reference} is not stored yet")
        return self.id

    def _record(self, event_kind: EventKind, at: datetime, actor: str, /, **data: Any) -> Event:
        event = Event(event_kind, at, actor, data)
        self.events.append(event)
        self.new_events.append(event)
        return event

    def _move(self, to: Status) -> None:
        if to not in ALLOWED[self.status]:
            raise InvalidTransition(self.status, to)
        self.status = to

    def _require_open(self) -> None:
        if self.status is Status.CLOSED:
            raise SignalClosed(str(self.reference), self.merged_into)

    @classmethod
    def submit(
        cls,
        *,
        meldpunt_id: str,
        reference: Reference,
        content: Content,
        form: Form,
        context: Context,
        urgent: bool,
        anonymous: bool,
        pseudonym: str | None,
        at: datetime,
    ) -> "Signal":
        signal = cls(
            meldpunt_id=meldpunt_id,
            reference=reference,
            status=Status.RECEIVED,
            form=form,
            context=context,
            urgent=urgent,
            anonymous=anonymous,
            pseudonym=pseudonym,
            content=content,
            created_at=at,
        )
        signal._record(EventKind.SUBMITTED, at, "melder", urgent=urgent)
        return signal

    def pick_up(self, af: str, at: datetime) -> str | None:
        """Make `af` the handler; returns the previous handler when taken over."""
        self._require_open()
        previous = self.handler
        if self.status is Status.RECEIVED:
            self._move(Status.IN_PROGRESS)
        self.handler = af
        self._record(EventKind.PICKED_UP, at, af, previous=previous)
        return previous

    def _handle(self, af: str, at: datetime) -> None:
        """Acting on a signal nobody handles makes you the handler."""
        self._require_open()
        if self.handler is None:
            self.pick_up(af, at)

    def forward(self, af: str, partner: str, at: datetime) -> None:
        self._handle(af, at)
        if self.status is Status.IN_PROGRESS:
            self._move(Status.FORWARDED)
        if partner not in self.partners:
            self.partners = (*self.partners, partner)
        self.forwarded_at = self.forwarded_at or at
        old = self.partner_log.get(partner, PartnerLog())
        self.partner_log[partner] = PartnerLog(old.forwarded_at or at, old.consulted_at, old.feedback_at)
        self._record(EventKind.FORWARDED, at, af, partner=partner)

    def consult(self, af: str, partner: str, at: datetime) -> None:
        self._handle(af, at)
        old = self.partner_log.get(partner, PartnerLog())
        self.partner_log[partner] = PartnerLog(old.forwarded_at, old.consulted_at or at, old.feedback_at)
        self._record(EventKind.CONSULTED, at, af, partner=partner)

    def involved_partners(self) -> tuple[str, ...]:
        """The partners the signal was passed to or discussed with, in the order they were first involved."""
        found = [p for p, log in self.partner_log.items() if log.forwarded_at or log.consulted_at]
        found += [p for p in self.partners if p not in found]
        found += [str(e.data["partner"]) for e in self.events
                  if e.kind in (EventKind.FORWARDED, EventKind.CONSULTED) and e.data.get("partner")
                  and e.data["partner"] not in found]
        return tuple(dict.fromkeys(found))

    def waiting_partners(self) -> dict[str, datetime]:
        """The partners the signal was passed to who gave no feedback yet, with when it was passed to them."""
        return {p: log.forwarded_at for p, log in self.partner_log.items()
                if log.forwarded_at is not None and log.feedback_at is None}

    @property
    def last_partner_feedback_at(self) -> datetime | None:
        """The latest first feedback of any partner: news for the melder."""
        moments = [log.feedback_at for log in self.partner_log.values() if log.feedback_at is not None]
        return max(moments, default=self.partner_feedback_at)

    def note(self, af: str, text: str, at: datetime) -> None:
        self._require_open()
        self._record(EventKind.NOTE, at, af, text=text)

    def tag(self, af: str, kind: str, value: str, at: datetime) -> None:
        self._require_open()
        self._record(EventKind.TAG, at, af, kind=kind, value=value)

    def partner_feedback(self, af: str, partner: str, text: str, at: datetime) -> None:
        self._require_open()
        involved = self.involved_partners()
        if partner not in involved:
            raise PartnerNotInvolved(partner, involved)
        self.partner_feedback_at = self.partner_feedback_at or at
        old = self.partner_log.get(partner, PartnerLog())
        self.partner_log[partner] = PartnerLog(old.forwarded_at, old.consulted_at, old.feedback_at or at)
        self._record(EventKind.PARTNER_FEEDBACK, at, af, partner=partner, text=text)

    def hand_over(self, af: str, to: str | None, at: datetime) -> None:
        """Give the signal to another AF (None: unassigned, e.g. when an AF is removed)."""
        previous = self.handler
        self.handler = to
        self._record(EventKind.HANDED_OVER, at, af, previous=previous, to=to)

    def absorb(self, af: str, duplicate: "Signal", at: datetime) -> None:
        """Merge `duplicate` into this signal; the duplicate is closed and points here."""
        self._handle(af, at)
        if duplicate is self or duplicate.reference == self.reference:
            raise ValueError("a signal cannot be merged into itself")
        duplicate._require_open()
        duplicate._move(Status.CLOSED)
        duplicate.closed_at = at
        duplicate.merged_into = str(self.reference)
        duplicate._record(EventKind.MERGED, at, af, into=str(self.reference))
        self._record(EventKind.MERGED, at, af, absorbed=str(duplicate.reference))

    def close(self, af: str, outcome: Outcome, at: datetime) -> None:
        self._move(Status.CLOSED)
        self.outcome = outcome
        self.closed_at = at
        self._record(EventKind.CLOSED, at, af, outcome=str(outcome))

    def reopen(self, af: str, at: datetime) -> None:
        if self.merged_into:
            raise SignalClosed(str(self.reference), self.merged_into)
        self._move(Status.IN_PROGRESS)
        self.outcome = None
        self.closed_at = None
        self.handler = self.handler or af
        self._record(EventKind.REOPENED, at, af)

    def inform_melder(self, af: str, text: str, at: datetime, outbox: list[str] | None = None) -> None:
        # Allowed after closing: feedback keeps staff reporting. `outbox`: the keys of the messages that carry
        # it, so the history can say whether (and when) each was delivered.
        self.melder_informed_at = self.melder_informed_at or at
        self.melder_last_informed_at = at
        extra = {"outbox": list(outbox)} if outbox else {}
        self._record(EventKind.MELDER_INFORMED, at, af, text=text, **extra)

    def ask_melder(self, af: str, text: str, at: datetime, outbox: list[str] | None = None) -> None:
        """The AF asks the melder a follow-up question through the bot. Not on a closed signal: it is
        read-only, and a question there would wait for an answer nobody acts on (reopen it first)."""
        self._handle(af, at)
        extra = {"outbox": list(outbox)} if outbox else {}
        self._record(EventKind.QUESTION_ASKED, at, af, text=text, **extra)

    @property
    def open_question(self) -> Event | None:
        """The AF's question the melder has not answered yet (the last one asked; an answer closes all
        asked before it). Needs the events loaded."""
        for event in reversed(self.events):
            if event.kind is EventKind.QUESTION_ANSWERED:
                return None
            if event.kind is EventKind.QUESTION_ASKED:
                return event
        return None

    def answer_question(self, text: str, at: datetime) -> Event:
        """The melder answers the open question; kept in every status, like a supplement (an answer that
        comes after closing is still information the AF may need)."""
        question = self.open_question
        if question is None:
            raise ValueError(f"{self.reference} has no open question")
        return self._record(EventKind.QUESTION_ANSWERED, at, "melder", text=text, asked_by=question.actor)

    def supplement(self, text: str, at: datetime) -> None:
        """The melder adds information later; allowed in every status, the AF decides what follows."""
        self._record(EventKind.SUPPLEMENTED, at, "melder", text=text)
