"""Issue 19 item 3 in the summary: a chosen reading of a clock hour is said, intervals are shown."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from meldbot.core.i18n import texts
from meldbot.dialogs.report import Contact, DialogContext, Draft, step

AMS = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=AMS)  # Wednesday
ANSWERS = {"wat": "Drie stapelbedden", "waar": "Molenweg 8", "wie": "onbekend", "soort": "arbeid",
           "context": "toezicht", "anoniem": "nee"}


def summary_after(answer: str, language: str = "nl"):
    ctx = DialogContext(texts=texts(language), now=NOW, tz=AMS, contacts=(Contact("Acuut gevaar", "112"),))
    result = step(Draft(step="wanneer", answers=dict(ANSWERS), editing=True), answer, ctx)
    assert result.draft.step == "summary"
    return result.draft, result.replies[-1].text


def test_a_chosen_reading_is_said_so_the_melder_can_correct_it():
    draft, text = summary_after("gisteren rond 3 uur")
    assert "Ik lees: dinsdag 24 november om 15.00 uur. Klopt dat niet? Typ: wijzig wanneer." in text
    assert draft.answers["wanneer"] == "gisteren rond 3 uur"  # the raw text, unchanged
    assert draft.when_iso == "2026-11-24T15:00:00+01:00" and draft.when_assumed


def test_the_reading_in_english():
    _, text = summary_after("yesterday around 3", "en")
    assert "I read: Tuesday 24 November at 15:00." in text


def test_an_unambiguous_time_is_shown_as_before():
    draft, text = summary_after("gisteren om 15:00")
    assert "Ik lees" not in text and "(24-11-2026 15:00)" in text
    assert not draft.when_assumed and "when_assumed" not in draft.to_dict()


def test_a_weekend_is_shown_as_its_two_days_and_kept_through_a_restart():
    draft, text = summary_after("afgelopen weekend")
    assert "(21-11-2026 tot en met 22-11-2026)" in text
    assert draft.when_precision == "weekend" and draft.when_end == "2026-11-23T00:00:00+01:00"
    assert Draft.from_dict(draft.to_dict()) == draft


def test_around_christmas_is_shown_as_days():
    _, text = summary_after("rond kerst")
    assert "(22-12-2025 tot en met 29-12-2025)" in text
