"""Outbox idempotency keys and reminder claim keys: how they are built and how they are read back.

A key is the only readable part of an outbox row (the recipient and the message are sealed), so it says
what the message is about: its kind, the signal's reference, the AF and platform it goes to, and for a
message that may be sent again later, the moment. Stored rows carry these strings: the builders here make
exactly the strings earlier versions made, or a message queued before an upgrade would be queued twice.

    new-signal:MH-2026-0001:anna:matrix                     a new signal, to one AF on one platform
    supplement:MH-2026-0001:<moment>:anna:teams             the melder added to it
    supplement-refused:MH-2026-0001:2026-11-30:anna:teams   the melder tried to, once a day
    released:MH-2026-0001:<removed AF>:anna:matrix          its AF left the configuration
    taken-over:MH-2026-0001:anna:matrix:<moment>            another AF took it (also handover)
    reminder:oppakken:MH-2026-0001:0:anna:matrix            a reminder, claimed as oppakken:MH-2026-0001:0
    reminder:overzicht:bergeijk:anna:2026-W48:matrix        the weekly overview, claimed without the platform
    undelivered:<row id>:MH-2026-0001:parked:1:anna:teams   a row could not be delivered (round 1)
    inform:MH-2026-0001:anna:<moment>                       feedback to the melder, naming the AF who sent it
    ask:MH-2026-0001:anna:<moment>                          a question to the melder, naming the AF who asked
    answered:MH-2026-0001:<moment>:anna:matrix              the melder answered it
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from meldbot.core.domain import Reference

_REFERENCE = re.compile(r"MH-\d{4}-\d{4,}")


@dataclass(frozen=True)
class OutboxKey:
    """The keys of one message to AFs: one row per AF and platform (`for_af`), so the same message queued
    twice, by a repeated transaction or a second process, is still one row each."""

    head: str                     # what the message is about: "new-signal:MH-2026-0001"
    reference: str | None = None  # the signal it is about; the outbox keeps it beside the key
    tail: str | None = None       # after the platform: the moment, for a message that may come again
    names_af: bool = True         # False: `head` names the AF already (the weekly overview)

    def for_af(self, af: str, platform: str) -> str:
        parts = [self.head, af, platform] if self.names_af else [self.head, platform]
        if self.tail is not None:
            parts.append(self.tail)
        return ":".join(parts)


def new_signal(reference: Reference) -> OutboxKey:
    return OutboxKey(f"new-signal:{reference}", str(reference))


def supplemented(reference: Reference, at: datetime) -> OutboxKey:
    return OutboxKey(f"supplement:{reference}:{at.isoformat()}", str(reference))


def supplement_refused(reference: Reference, day: date) -> OutboxKey:
    return OutboxKey(f"supplement-refused:{reference}:{day.isoformat()}", str(reference))


def released(reference: Reference, removed: str | None) -> OutboxKey:
    return OutboxKey(f"released:{reference}:{removed}", str(reference))


def told(kind: str, reference: Reference, at: datetime) -> OutboxKey:
    """A message from one AF's action to another AF (`taken-over`, `handover`)."""
    return OutboxKey(f"{kind}:{reference}", str(reference), tail=at.isoformat())


def reminder_claim(kind: str, reference: Reference, slot: int) -> str:
    """The claim of one reminder slot (reminder_sent.key): the same slot is claimed once."""
    return f"{kind}:{reference}:{slot}"


def reminder(claim: str, reference: Reference) -> OutboxKey:
    return OutboxKey(f"reminder:{claim}", str(reference))


def overview_claim(meldpunt_id: str, af: str, year: int, week: int) -> str:
    return f"overzicht:{meldpunt_id}:{af}:{year}-W{week:02d}"


def overview(claim: str) -> OutboxKey:
    return OutboxKey(f"reminder:{claim}", None, names_af=False)


def notice_prefix(row_id: int, reference: str | None, parked: bool) -> str:
    """What every notice about one failing row (in one state) starts with; the notices counted by it give
    the round, so a repeated transaction makes the same keys. The reference lets retention erase a notice
    with its signal even after the row it is about was delivered and forgotten."""
    about = f"{reference}:" if reference else ""
    return f"undelivered:{row_id}:{about}{'parked' if parked else 'late'}:"


def notice(prefix: str, round_: int, reference: str | None) -> OutboxKey:
    return OutboxKey(f"{prefix}{round_}", reference)


def notices_about_row(row_id: int) -> str:
    """What the key of every notice about outbox row `row_id` starts with."""
    return f"undelivered:{row_id}:"


def inform(reference: Reference, af: str, at: datetime) -> str:
    """Feedback to a melder: the key names the AF who sent it, who hears of it if it cannot be delivered."""
    return f"inform:{reference}:{af}:{at.isoformat()}"


def ask(reference: Reference, af: str, at: datetime) -> str:
    """A question to a melder: like `inform`, the key names the AF who asked (they hear of a failure)."""
    return f"ask:{reference}:{af}:{at.isoformat()}"


def answered(reference: Reference, at: datetime) -> OutboxKey:
    return OutboxKey(f"answered:{reference}:{at.isoformat()}", str(reference))


def reference_in(key: str) -> str | None:
    """The signal reference a key names, if any."""
    found = _REFERENCE.search(key)
    return found.group(0) if found else None


def sender_in(key: str) -> str | None:
    """The third part of a key: in a message to a melder, the AF who sent it. Rows queued before keys
    named the AF (`inform:<reference>:<moment>`) give a piece of the moment here, which names no AF."""
    parts = key.split(":")
    return parts[2] if len(parts) > 2 else None
