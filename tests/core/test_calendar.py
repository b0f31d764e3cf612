"""The working-day calendar of a meldpunt: holidays, weekends, closing days, office hours, summer time."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from meldbot.core.calendar import WorkCalendar, public_holidays

AMS = ZoneInfo("Europe/Amsterdam")
UTC = timezone.utc


def bevrijdingsdag(d: date) -> bool:
    return (d.month, d.day) == (5, 5)


CAL = WorkCalendar(AMS, time(8, 30), time(17, 0), bevrijdingsdag)
PLAIN = WorkCalendar(AMS, time(8, 30), time(17, 0))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


@pytest.mark.parametrize("day, why", [
    (date(2026, 4, 27), "Koningsdag on a Monday"),
    (date(2027, 4, 27), "Koningsdag on a Tuesday"),
    (date(2026, 12, 25), "first Christmas day"),
    (date(2025, 12, 25), "first Christmas day on a Thursday"),
    (date(2025, 12, 26), "second Christmas day on a Friday"),
    (date(2027, 1, 1), "New Year's day"),
    (date(2027, 3, 29), "Easter Monday"),
    (date(2026, 5, 14), "Ascension day"),
    (date(2026, 5, 25), "Whit Monday"),
    (date(2026, 11, 21), "a Saturday"),
    (date(2026, 11, 22), "a Sunday"),
    (date(2026, 5, 5), "5 May as a configured closing day"),
])
def test_these_days_are_closed(day, why):
    assert not CAL.is_working_day(day), why


@pytest.mark.parametrize("day", [date(2026, 11, 18), date(2026, 12, 24), date(2026, 12, 28), date(2026, 5, 1),
                                 date(2025, 4, 28), date(2026, 4, 28)])
def test_these_days_are_open(day):
    assert CAL.is_working_day(day)


def test_koningsdag_moves_to_saturday_26_april_when_the_27th_is_a_sunday():
    assert date(2025, 4, 27).weekday() == 6
    assert date(2025, 4, 26) in public_holidays(2025) and date(2025, 4, 27) not in public_holidays(2025)
    assert not CAL.is_working_day(date(2025, 4, 26))
    assert CAL.is_working_day(date(2025, 4, 28))            # not moved to the Monday


def test_the_library_knows_5_may_only_in_lustrum_years_so_it_is_configured():
    assert date(2025, 5, 5) in public_holidays(2025)
    assert date(2026, 5, 5) not in public_holidays(2026)
    assert PLAIN.is_working_day(date(2026, 5, 5))
    assert not CAL.is_working_day(date(2026, 5, 5))
    assert not PLAIN.is_working_day(date(2025, 5, 5))


@pytest.mark.parametrize("moment, inside", [
    (at(2026, 11, 18, 8, 29, 59), False),
    (at(2026, 11, 18, 8, 30), True),
    (at(2026, 11, 18, 16, 59, 59), True),
    (at(2026, 11, 18, 17, 0), False),
    (at(2026, 11, 21, 10, 0), False),                        # Saturday
    (at(2026, 12, 25, 10, 0), False),                        # Christmas
    (datetime(2026, 11, 18, 7, 30, tzinfo=UTC), True),       # 08:30 in Amsterdam (winter, UTC+1)
    (datetime(2026, 7, 15, 6, 30, tzinfo=UTC), True),        # 08:30 in Amsterdam (summer, UTC+2)
    (datetime(2026, 7, 15, 15, 0, tzinfo=UTC), False),       # 17:00 in Amsterdam
])
def test_office_time_is_local_clock_time_on_a_working_day(moment, inside):
    assert CAL.is_office_time(moment) is inside


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError):
        CAL.is_office_time(datetime(2026, 11, 18, 10, 0))


@pytest.mark.parametrize("moment, expected", [
    (at(2026, 11, 18, 10, 15), at(2026, 11, 18, 10, 15)),    # inside: the moment itself
    (at(2026, 11, 18, 7, 0), at(2026, 11, 18, 8, 30)),       # before opening: today
    (at(2026, 11, 18, 17, 0), at(2026, 11, 19, 8, 30)),      # at closing: tomorrow
    (at(2026, 11, 20, 17, 30), at(2026, 11, 23, 8, 30)),     # Friday evening: Monday
    (at(2026, 11, 21, 12, 0), at(2026, 11, 23, 8, 30)),      # Saturday: Monday
    (at(2027, 3, 26, 17, 30), at(2027, 3, 30, 8, 30)),       # Good Friday, Easter Monday: Tuesday
    (at(2027, 3, 25, 17, 30), at(2027, 3, 30, 8, 30)),       # Thursday before Easter: Tuesday
    (at(2026, 12, 24, 17, 30), at(2026, 12, 28, 8, 30)),     # Christmas and a weekend
    (at(2026, 12, 31, 17, 30), at(2027, 1, 4, 8, 30)),       # New Year's day, then a weekend
    (at(2026, 5, 4, 18, 0), at(2026, 5, 6, 8, 30)),          # 5 May is a closing day
])
def test_the_next_office_moment(moment, expected):
    got = CAL.next_office_moment(moment)
    assert got == expected
    assert got.tzinfo is AMS and (got.hour, got.minute) == (expected.hour, expected.minute)


def test_the_next_office_moment_of_a_utc_moment_is_in_local_time():
    got = CAL.next_office_moment(datetime(2026, 11, 20, 16, 30, tzinfo=UTC))    # Friday 17:30 local
    assert got == at(2026, 11, 23, 8, 30) and got.utcoffset() == timedelta(hours=1)


def test_office_hours_stay_08_30_local_across_the_summer_time_changes():
    # Summer time starts Sunday 29 March 2026 and ends Sunday 25 October 2026.
    spring = CAL.next_office_moment(at(2026, 3, 27, 17, 30))
    assert spring == datetime(2026, 3, 30, 6, 30, tzinfo=UTC) and (spring.hour, spring.minute) == (8, 30)
    autumn = CAL.next_office_moment(at(2026, 10, 23, 17, 30))
    assert autumn == datetime(2026, 10, 26, 7, 30, tzinfo=UTC) and (autumn.hour, autumn.minute) == (8, 30)
    # From a moment in the night of the change itself (02:30 happens twice on 25 October).
    assert CAL.next_office_moment(datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == at(2026, 10, 26, 8, 30)


@pytest.mark.parametrize("moment, days, expected", [
    (at(2026, 11, 18, 10, 0), 0, at(2026, 11, 18, 10, 0)),
    (at(2026, 11, 18, 18, 0), 0, at(2026, 11, 19, 8, 30)),
    (at(2026, 11, 18, 10, 0), 1, at(2026, 11, 19, 10, 0)),
    (at(2026, 11, 20, 10, 0), 1, at(2026, 11, 23, 10, 0)),     # Friday -> Monday, over the weekend
    (at(2026, 11, 19, 14, 0), 3, at(2026, 11, 24, 14, 0)),     # Thursday -> Tuesday
    (at(2026, 11, 21, 10, 0), 1, at(2026, 11, 23, 10, 0)),     # from a Saturday
    (at(2026, 12, 24, 10, 0), 1, at(2026, 12, 28, 10, 0)),     # over Christmas and a weekend
    (at(2026, 12, 23, 11, 0), 3, at(2026, 12, 29, 11, 0)),     # 24, 28, 29
    (at(2026, 12, 30, 9, 0), 2, at(2027, 1, 4, 9, 0)),         # 31, (1 January, weekend), 4
    (at(2026, 12, 22, 15, 0), 10, at(2027, 1, 7, 15, 0)),      # 23 24 28 29 30 31 4 5 6 7
    (at(2026, 11, 18, 18, 0), 1, at(2026, 11, 20, 8, 30)),     # 18:00 the next day is after closing
    (at(2026, 11, 18, 7, 0), 1, at(2026, 11, 19, 8, 30)),      # 07:00 the next day is before opening
    (at(2026, 10, 23, 9, 0), 1, at(2026, 10, 26, 9, 0)),       # over the end of summer time
    (at(2026, 3, 27, 16, 45), 1, at(2026, 3, 30, 16, 45)),     # over the start of summer time
    (at(2026, 5, 4, 10, 0), 1, at(2026, 5, 6, 10, 0)),         # over the 5 May closing day
])
def test_adding_working_days_keeps_the_local_clock_time(moment, days, expected):
    got = CAL.add_working_days(moment, days)
    assert got == expected and got.tzinfo is AMS


def test_adding_working_days_across_summer_time_changes_the_utc_offset_not_the_clock():
    got = CAL.add_working_days(datetime(2026, 10, 23, 7, 0, tzinfo=UTC), 1)   # Friday 09:00 summer time
    assert got == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)                    # Monday 09:00 winter time


def test_a_negative_number_of_working_days_is_refused():
    with pytest.raises(ValueError):
        CAL.add_working_days(at(2026, 11, 18, 10, 0), -1)


@pytest.mark.parametrize("start, end, expected", [
    (at(2026, 11, 18, 10, 0), at(2026, 11, 18, 16, 0), 0),     # same day
    (at(2026, 11, 18, 16, 0), at(2026, 11, 18, 10, 0), 0),     # end before start
    (at(2026, 11, 18, 16, 0), at(2026, 11, 19, 9, 0), 1),
    (at(2026, 11, 20, 16, 0), at(2026, 11, 23, 9, 0), 1),     # Friday -> Monday
    (at(2026, 11, 16, 9, 0), at(2026, 11, 23, 9, 0), 5),      # a week
    (at(2026, 11, 21, 9, 0), at(2026, 11, 22, 9, 0), 0),      # Saturday -> Sunday
    (at(2026, 12, 24, 10, 0), at(2026, 12, 29, 10, 0), 2),    # over Christmas: 28, 29
    (at(2026, 12, 23, 10, 0), at(2027, 1, 4, 10, 0), 6),      # 24, 28, 29, 30, 31, 4
    (at(2027, 3, 25, 10, 0), at(2027, 3, 30, 10, 0), 1),      # over Good Friday and Easter Monday
    (at(2026, 5, 4, 10, 0), at(2026, 5, 7, 10, 0), 2),        # 5 May closed: 6, 7
    # Local dates count: 23:30 UTC on Thursday 19 November is already Friday in Amsterdam.
    (datetime(2026, 11, 19, 23, 30, tzinfo=UTC), at(2026, 11, 20, 16, 0), 0),
    (at(2026, 11, 19, 10, 0), datetime(2026, 11, 19, 23, 30, tzinfo=UTC), 1),
])
def test_working_days_between(start, end, expected):
    assert CAL.working_days_between(start, end) == expected


@pytest.mark.parametrize("day, expected", [
    (date(2027, 3, 31), date(2027, 3, 30)),   # week of Easter Monday 2027: Tuesday
    (date(2027, 4, 4), date(2027, 3, 30)),    # the Sunday of that week too
    (date(2026, 11, 18), date(2026, 11, 16)), # a normal week: Monday
    (date(2026, 11, 22), date(2026, 11, 16)),
    (date(2026, 12, 31), date(2026, 12, 28)),
    (date(2026, 5, 25), date(2026, 5, 26)),   # Whit Monday: Tuesday
])
def test_the_first_working_day_of_the_week(day, expected):
    assert CAL.first_working_day_of_week(day) == expected


def test_a_week_that_is_closed_entirely_has_no_first_working_day():
    closed_in_august = WorkCalendar(AMS, time(8, 30), time(17, 0), lambda d: d.month == 8)
    assert closed_in_august.first_working_day_of_week(date(2026, 8, 12)) is None
    assert closed_in_august.next_office_moment(at(2026, 7, 31, 17, 30)) == at(2026, 9, 1, 8, 30)


def test_office_hours_must_start_before_they_end():
    with pytest.raises(ValueError):
        WorkCalendar(AMS, time(17, 0), time(8, 30))
