"""Issue 19, item 4: `spoed` outside office hours is honest about when the AF sees the signal, shows the
numbers that are open now first, and the AFs are told at once while reminders wait for office hours."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tests.support.chat import NAMED

AMS = ZoneInfo("Europe/Amsterdam")
SUNDAY = datetime(2026, 11, 29, 13, 0, tzinfo=AMS)
CHRISTMAS = datetime(2026, 12, 25, 11, 0, tzinfo=AMS)        # a Friday, a public holiday
OFFICE_LINE, OUT_OF_HOURS = "088-9630320", "0900-8844"


def at(*args) -> datetime:
    return datetime(*args, tzinfo=AMS)


async def test_spoed_on_a_sunday_says_when_the_af_sees_it_and_puts_the_open_police_number_first(chat, clock):
    clock.set(SUNDAY)
    out = await chat.say("piet", "spoed")
    assert "De AF ziet hem uiterlijk maandag 30 november om 08.30 uur." in out
    assert "De AF krijgt hem meteen" not in out and "meteen een bericht." in out
    assert "Bel 112" in out
    # The police number open now comes before any mention of the office-hours AVIM line.
    assert out.index(OUT_OF_HOURS) < out.index(OFFICE_LINE) and out.index(OUT_OF_HOURS) < out.index("AVIM")


async def test_spoed_on_a_public_holiday_counts_the_holiday_as_closed(chat, clock):
    clock.set(CHRISTMAS)
    out = await chat.say("piet", "spoed")
    # Friday 25 and Saturday 26 December are holidays or weekend, so is Sunday: Monday 28 December.
    assert "uiterlijk maandag 28 december om 08.30 uur" in out
    assert out.index(OUT_OF_HOURS) < out.index(OFFICE_LINE)


async def test_spoed_in_the_evening_of_a_working_day_names_the_next_morning(chat, clock):
    clock.set(at(2026, 11, 18, 20, 15))                      # Wednesday evening
    out = await chat.say("piet", "spoed")
    assert "uiterlijk donderdag 19 november om 08.30 uur" in out
    assert out.index(OUT_OF_HOURS) < out.index(OFFICE_LINE)


async def test_the_police_office_line_closes_by_the_meldpunts_clock_not_utc(chat, clock):
    clock.set(at(2026, 11, 18, 16, 45))                      # 15:45 UTC: the AVIM line closed at 16:30
    out = await chat.say("piet", "spoed")
    assert "hem meteen." in out                # the AF's office is open until 17:00
    assert out.index(OUT_OF_HOURS) < out.index(OFFICE_LINE)


async def test_spoed_in_office_hours_promises_the_af_at_once_and_the_office_line_first(chat, clock):
    clock.set(at(2026, 11, 18, 10, 30))                      # Wednesday morning
    out = await chat.say("piet", "spoed")
    assert "meteen" in out and "uiterlijk" not in out
    assert out.index(OFFICE_LINE) < out.index(OUT_OF_HOURS)


async def test_spoed_in_english_outside_office_hours(chat, clock):
    clock.set(SUNDAY)
    await chat.say("piet", "taal en")
    out = await chat.say("piet", "urgent")
    assert "at the latest on Monday 30 November at 08:30" in out


async def test_an_urgent_signal_sent_on_a_sunday_reaches_the_af_at_once_and_reminders_wait(chat, clock):
    clock.set(SUNDAY)
    await chat.report("piet", ["spoed", *NAMED[1:]])
    (told,) = [r for r in chat.notifier.to("af")]
    assert told.urgent and "MH-2026-0001" in told.text
    # Content-free: nothing of what the melder wrote shows on a locked phone screen.
    for answer in NAMED[1:5]:
        assert answer not in told.text
    for words in ("paspoorten", "Kerkstraat", "Jansen"):
        assert words not in told.text

    async def reminders_at(moment: datetime) -> list[str]:
        clock.set(moment)
        before = len(chat.notifier.reminders)
        await chat.app.reminders.sweep()
        await chat.app.dispatcher.deliver_pending()
        return [r.text for who, r, key in chat.notifier.reminders[before:]
                if who.user_id == "af" and not key.startswith("reminder:overzicht")]

    assert await reminders_at(at(2026, 11, 29, 15, 0)) == []     # Sunday afternoon
    assert await reminders_at(at(2026, 11, 29, 23, 0)) == []     # Sunday night
    assert await reminders_at(at(2026, 11, 30, 8, 29)) == []     # Monday before opening
    monday = await reminders_at(at(2026, 11, 30, 8, 31))
    assert len(monday) == 1 and "MH-2026-0001" in monday[0]
