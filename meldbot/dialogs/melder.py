"""What a melder sees of their own signals: the list with feedback, and adding information."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from meldbot.core.i18n import Texts
from meldbot.core.messaging import Reply
from meldbot.core.text import quote_user_text


@dataclass(frozen=True)
class OwnSignal:
    """A melder's view of one signal: never the AF's notes, never partner details."""

    reference: str
    created_at: datetime
    status: str
    feedback: tuple[tuple[datetime, str], ...]


def my_reports(signals: list[OwnSignal], t: Texts, tz: ZoneInfo) -> Reply:
    if not signals:
        return Reply(t("mine.none"))
    lines = [t("mine.header")]
    for s in signals:
        lines.append(t("mine.line", reference=s.reference, date=s.created_at.astimezone(tz).strftime("%d-%m-%Y"),
                       status=t(f"status.{s.status}")))
        for at, text in s.feedback:
            lines.append(t("mine.feedback", date=at.astimezone(tz).strftime("%d-%m-%Y"), text=quote_user_text(text)))
        if not s.feedback:
            lines.append(t("mine.no_feedback"))
    return Reply("\n".join(lines))
