"""What a melder sees of their own signals: the list with feedback, and adding information."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from meldbot.core.i18n import LANGUAGES, Texts
from meldbot.core.messaging import Action, Reply
from meldbot.dialogs.commands import ANYONE, nearest, normalise
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


# The melder's commands as whole messages (`taal` only with its language: `taal en`), each its own target.
_WHOLE = {w: w for w, name in ANYONE.items() if name != "language"} | {
    f"{w} {code}": f"{w} {code}" for w, name in ANYONE.items() if name == "language" for code in LANGUAGES}


def command_typo(text: str) -> str | None:
    """The melder's command the whole message is a small typo of ("mijn meldngen", "hlep"), or None. The
    same measure as the AF's "Bedoel je ...?": four letters or more, one letter off, two in a long word.
    Everyday replies ("ja", "nee", "weet ik niet") are near no command."""
    norm = normalise(text)
    if norm in _WHOLE:
        return None
    found = nearest(norm, _WHOLE)
    return found[1] if found is not None else None


def command_typo_reply(command: str, number: int, t: Texts) -> Reply:
    """"Bedoel je ...?" while a question of the AF waits: nothing is kept; a button sends the command, except
    `aanvullen`, which needs a number and text (the reply says how)."""
    reply = t("answer.typo", command=command, number=number)
    if ANYONE.get(command) == "supplement":
        return Reply(reply)
    return Reply(reply, actions=(Action(t("answer.typo_button", command=command), command),))
