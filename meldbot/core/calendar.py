"""Working days and office hours of one meldpunt: Dutch public holidays, weekends, configured closing and open
days; and how a moment reads in its time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

# How far ahead we look for an open day before deciding the configuration closes every day.
_SEARCH_DAYS = 3 * 366


@lru_cache(maxsize=128)
def public_holidays(year: int) -> frozenset[date]:
    """The Dutch public holidays of one year, as the `holidays` library knows them (cached per year).

    The library counts Bevrijdingsdag (5 May) only in lustrum years (2025, 2030, ...) and does count
    Goede Vrijdag; a meldpunt adds other closing days through its configuration, and keeps a listed holiday
    as a working day through `open_days`.
    """
    return frozenset(holidays.country_holidays("NL", years=year))


class WorkCalendar:
    """When one meldpunt is open: working days (no weekend, public holiday or closing day; a public holiday
    that is an open day is a working day) and office hours in its own time zone. Every answer is in local
    time; moments passed in may be in any zone."""

    def __init__(self, tz: ZoneInfo, office_start: time, office_end: time,
                 is_closing_day: Callable[[date], bool] = lambda d: False,
                 is_open_day: Callable[[date], bool] = lambda d: False) -> None:
        if office_start.tzinfo is not None or office_end.tzinfo is not None:
            raise ValueError("office hours are local clock times without a time zone")
        if not office_start < office_end:
            raise ValueError("office hours must start before they end")
        self.tz = tz
        self.office_start = office_start
        self.office_end = office_end
        self._is_closing_day = is_closing_day
        self._is_open_day = is_open_day

    def __repr__(self) -> str:
        return f"WorkCalendar({self.tz.key}, {self.office_start:%H:%M}-{self.office_end:%H:%M})"

    # -- days -------------------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        # An open day only lifts a public holiday: a weekend stays closed, and the configuration refuses a
        # day that is both a closing and an open day.
        holiday = d in public_holidays(d.year) and not self._is_open_day(d)
        return d.weekday() < 5 and not holiday and not self._is_closing_day(d)

    def _next_working_day(self, d: date) -> date:
        """The first working day after `d`."""
        for _ in range(_SEARCH_DAYS):
            d += timedelta(days=1)
            if self.is_working_day(d):
                return d
        raise ValueError("no working day in three years: check the closing days")

    def first_working_day_of_week(self, d: date) -> date | None:
        """The first working day of the ISO week (Monday to Sunday) that holds `d`; None if all are closed."""
        monday = d - timedelta(days=d.weekday())
        for n in range(7):
            day = monday + timedelta(days=n)
            if self.is_working_day(day):
                return day
        return None

    # -- moments ----------------------------------------------------------------------------------

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("a moment needs a time zone (naive datetime given)")
        return moment.astimezone(self.tz)

    def _opening(self, d: date) -> datetime:
        return datetime.combine(d, self.office_start, tzinfo=self.tz)

    def is_office_time(self, moment: datetime) -> bool:
        """On a working day, office_start <= local clock time < office_end."""
        local = self._local(moment)
        return self.is_working_day(local.date()) and self.office_start <= local.time() < self.office_end

    def next_office_moment(self, moment: datetime) -> datetime:
        """`moment` itself (in local time) inside office hours, else the next opening."""
        local = self._local(moment)
        if self.is_office_time(local):
            return local
        if self.is_working_day(local.date()) and local.time() < self.office_start:
            return self._opening(local.date())
        return self._opening(self._next_working_day(local.date()))

    def add_working_days(self, moment: datetime, days: int) -> datetime:
        """The same local clock time `days` working days later; outside office hours, the next opening.

        Counting starts the day after `moment`'s local date, so from a Saturday one working day is the
        Monday. days=0 gives next_office_moment(moment).
        """
        if days < 0:
            raise ValueError("days must be 0 or more")
        local = self._local(moment)
        d = local.date()
        for _ in range(days):
            d = self._next_working_day(d)
        # Built on the wall clock, so a change to or from summer time keeps 10:00 at 10:00.
        target = datetime.combine(d, local.time(), tzinfo=self.tz)
        return self.next_office_moment(target)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """The number of working days d with start's local date < d <= end's local date; 0 if end <= start."""
        if end <= start:
            return 0
        first, last = self._local(start).date(), self._local(end).date()
        return sum(1 for n in range(1, (last - first).days + 1) if self.is_working_day(first + timedelta(days=n)))


def labelled(moment: datetime, tz: ZoneInfo, *, seconds: bool = False) -> str:
    """`moment` on the clock of `tz`, with the zone's abbreviation: "2026-11-30 09:15 CET". What an
    administrator reads beside the chat, which shows the meldpunt's local time too."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a moment needs a time zone (naive datetime given)")
    local = moment.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
