"""The report dialog driven as a pure function, for the dialog tests: a fixed context, a full set of answers."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from meldbot.core.i18n import texts
from meldbot.dialogs.report import Contact, DialogContext, Draft, Step, step

AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)   # Wednesday 10:30 in Amsterdam
CONTACTS = (Contact("Acuut gevaar", "112"), Contact("Politie, team AVIM", "088-9630320", "ma-vr 08:00-16:30"))


def ctx(language: str = "nl") -> DialogContext:
    return DialogContext(texts=texts(language), now=NOW, tz=AMS, contacts=CONTACTS)


ANSWERS = {
    "wat": "Drie stapelbedden in één kamer",
    "waar": "Molenweg 8",
    "wanneer": "gisteren",
    "wie": "onbekend",
    "soort": "2",
    "context": "toezicht",
    "anoniem": "nee",
}


def run(*messages: str, draft: Draft = Draft(), language: str = "nl") -> Step:
    result = Step(draft, ())
    for message in messages:
        result = step(result.draft, message, ctx(language))
    return result


def at_summary() -> Draft:
    result = run("melden", *ANSWERS.values())
    assert result.draft.step == "summary"
    return result.draft
