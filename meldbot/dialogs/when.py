"""Owns reading the answer to `wanneer` (when was it seen): free text in, a past moment and its precision out."""

# Pipeline, in order:
#
# 1. Guards: not a string, empty, longer than MAX_TEXT_CHARS -> not understood.
#    Everything below runs inside one try/except: any failure -> not understood.
# 2. Normalise (NFKC, control characters to spaces, lower case, odd punctuation
#    to spaces). Consumed pieces are blanked with spaces of the same length, so
#    positions stay stable.
# 3. A small hand-written grammar for what dateparser misses or gets wrong in
#    Dutch (and the English equivalents): parts of the day ("vanavond",
#    "gisteravond", "'s middags"), clock times ("14u", "14.30 uur", "half drie"),
#    weekdays with their modifiers ("afgelopen vrijdag", "vorige week dinsdag"),
#    "N dagen/weken/maanden geleden" with numerals in words, "vorige week/maand",
#    "net"/"zojuist". If every remaining word is a filler ("ik", "rond", "op",
#    ...), the grammar alone decides.
# 4. Otherwise dateparser (the real library) gets the text without the clock
#    time and part of the day, with fillers dropped, and only when it carries
#    date evidence (a digit or a month name): calendar dates, month names, years.
#    The clock time / part of the day found by the grammar is then applied.
# 5. Otherwise, a longer sentence: the grammar's unambiguous pieces ("gisteren,
#    bij het station" -> gisteren), then dateparser's search_dates, keeping only
#    hits with date evidence.
# 6. Never the future. Fields the user did not say are filled in towards the
#    past: no day -> the most recent such time (today, else yesterday); a bare
#    weekday -> the most recent such day (today counts); no year -> the most
#    recent such date (else last year). A part of the day that is under way
#    ("vanavond" at 19:00) starts at the part's beginning. Whatever the user did
#    fix and still lies ahead ("morgen", "vanavond" at 10:00, "12-12-2030") is
#    not understood: start None.
#
# Readings chosen where Dutch is ambiguous:
# - A bare weekday equal to today's means today ("maandag" said on a Monday),
#   unless a clock time / part of the day makes that lie ahead: then last week.
#   "afgelopen/vorige maandag" is strictly before today; "vorige week dinsdag"
#   is the Tuesday of the previous ISO (Monday-start) week.
# - "vannacht", "afgelopen nacht" and "gisternacht" are all the night that just
#   passed (03:00 today); "zaterdagnacht" is the night from Saturday to Sunday.
# - Clock times are 24-hour and literal ("om 3 uur" is 03:00) unless a part of
#   the day says otherwise ("om 3 uur 's middags"); "half drie" is 02:30.
# - "12 uur 's nachts" / "'s avonds" is midnight at the end of the day named:
#   "gisteren 12 uur 's nachts" is 00:00 today (the night between yesterday and
#   today), as most people mean it; the summary says "Ik lees: ..." so the
#   melder can correct it.
#   "12.11" is a clock time (12:11), like "14.30"; "31.12" is no valid time, so a date.
# - "N dagen/weken/maanden geleden" is that calendar day (precision day);
#   "N uur/minuten geleden" is that moment. "vorige week/maand", "vorig jaar"
#   are the whole period (precision week/month/year, start at its beginning).
# - A range "tussen 14:00 en 16:00" starts at its first time. "al maanden"
#   (ongoing) and "elke zaterdag" (recurring) have no single start: None.
# - A date more than MAX_YEARS_BACK years ago is not plausible: None.
# - Dates are day-first, also when language == "en" ("11/12" is 11 December).
#
# The system clock is never read: `now` is injected and dateparser always gets
# RELATIVE_BASE plus explicit settings.

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

__all__ = ["When", "parse_when", "when_spoken", "warm_up", "PRECISIONS", "PART_OF_DAY_HOURS", "HOLIDAY_MARGIN_DAYS"]

# The closed set of precisions, coarsest to finest.
#   none         start is None: not understood, vague, ongoing, or in the future
#   year         start is 1 January 00:00 of that year       ("vorig jaar", "2025")
#   month        start is the 1st of that month, 00:00        ("vorige maand", "oktober")
#   week         start is the Monday (ISO week) 00:00         ("vorige week")
#   day          start is that day at 00:00                   ("gisteren", "12-11", "3 dagen geleden")
#   part_of_day  start is the conventional hour of that part  ("vanavond" -> 20:00),
#                or the beginning of the part when the part is still under way
#   time         start is that moment, to the minute          ("om 14:00", "2 uur geleden", "net")
#   weekend      start is Saturday 00:00, end Monday 00:00     ("afgelopen weekend")
#   days         start is the first day 00:00, end the day after the last  ("met kerst", "rond pasen")
PRECISIONS = ("none", "year", "month", "week", "weekend", "days", "day", "part_of_day", "time")

# part -> (conventional hour, hour the part begins). The night belongs to the
# evening before it: "vannacht" is the night from yesterday to today, so its
# hours are counted from the next calendar day.
PART_OF_DAY_HOURS = {
    "ochtend": (9, 6),
    "middag": (14, 12),
    "avond": (20, 18),
    "nacht": (3, 0),
}

MAX_TEXT_CHARS = 200  # longer answers are not a "when"; dateparser is also slow on them
MAX_LIBRARY_CHARS = 60  # dateparser only sees short remainders: it is slow on long text
MAX_LIBRARY_WORDS = 6  # ... and on many numbers
HOLIDAY_MARGIN_DAYS = 3  # "rond kerst": this many days before and after
MAX_YEARS_BACK = 100  # anything older is not a signal (and would need local mean time)

_UTC = timezone.utc


@dataclass(frozen=True)
class When:
    raw: str  # always the user's text, unchanged
    start: datetime | None  # timezone-aware in the requested tz; None if not understood
    precision: str  # one of PRECISIONS; "none" exactly when start is None
    # The exclusive end of an interval ("weekend", "days"), never after `now`; None for a single moment/period.
    end: datetime | None = None
    # True when the bot chose between two readings of a clock hour ("rond 3 uur": 03:00 or 15:00); the
    # summary then says how it read the answer, so the melder can correct it.
    assumed: bool = False

    @property
    def iso(self) -> str | None:
        """The start as ISO 8601, or the interval "start/end" for a weekend or a few days."""
        if self.start is None:
            return None
        return f"{self.start.isoformat()}/{self.end.isoformat()}" if self.end else self.start.isoformat()

    @property
    def understood(self) -> bool:
        return self.start is not None


# --------------------------------------------------------------------------- vocabulary

_NUMBER_WORDS = {
    "een": 1, "één": 1, "eén": 1, "twee": 2, "drie": 3, "vier": 4, "vijf": 5, "zes": 6,
    "zeven": 7, "acht": 8, "negen": 9, "tien": 10, "elf": 11, "twaalf": 12,
    "vijftien": 15, "twintig": 20, "dertig": 30,
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "fifteen": 15, "twenty": 20, "thirty": 30,
}
_NUM = r"([0-9]{1,5}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
# Hours in words exclude the English article "a"/"an".
_HOUR = r"([0-9]{1,2}|" + "|".join(
    sorted((w for w in _NUMBER_WORDS if w not in ("a", "an")), key=len, reverse=True)
) + r")"

_WEEKDAYS = {
    "maandag": 0, "dinsdag": 1, "woensdag": 2, "donderdag": 3, "vrijdag": 4, "zaterdag": 5, "zondag": 6,
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
}
_PART_WORDS = {
    "ochtend": "ochtend", "morgen": "ochtend", "middag": "middag", "avond": "avond", "nacht": "nacht",
    "morning": "ochtend", "afternoon": "middag", "evening": "avond", "night": "nacht",
}
# A part of the day glued on or written apart: "gisteravond", "maandag avond".
_PART_SUFFIX = r"(?:\s*(ochtend|morgen|middag|avond|nacht))?"
_WD = r"(" + "|".join(_WEEKDAYS) + r")" + _PART_SUFFIX
_MONTH_NUMBERS = {
    name: number
    for number, names in enumerate(
        [
            "januari january jan", "februari february feb febr", "maart march mrt mar", "april apr",
            "mei may", "juni june jun", "juli july jul", "augustus august aug",
            "september sep sept", "oktober october okt oct", "november nov", "december dec",
        ],
        start=1,
    )
    for name in names.split()
}
_MONTH_NAMES = "|".join(sorted(_MONTH_NUMBERS, key=len, reverse=True))
_MONTHS = r"(?:" + _MONTH_NAMES + r")"
_MONTH_RE = re.compile(r"\b" + _MONTHS + r"\b")

_PREVIOUS = r"(?:vorige|afgelopen|last|previous|past)"
_THIS = r"(?:deze|this)"

# Words that may surround a date without changing it.
_FILLERS = frozenset(
    """
    om op in rond rondom omstreeks ongeveer ong circa ca tegen zo'n zon de het 't een
    ik heb had hebben we wij hij zij ze je jij men er daar hier dat dit die was is werd
    gezien zag zagen gebeurd gebeurde gebeurt denk denken geloof volgens mij meen
    ergens sinds vanaf pas toen precies exact wel nog en of maar dus uhm eh ehm ja
    misschien waarschijnlijk vermoedelijk zeker ook al tijdens van uur u
    at on in around about approximately approx roughly the i we saw seen it was is
    happened think sometime somewhere since from ish maybe probably or and
    """.split()
)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class _Day:
    day: date
    # How to move back when the resulting moment would be in the future:
    # "fixed" (the user fixed the day: give up), "implicit" (no day said: one
    # day back), "week" (bare weekday: one week back), "year" (no year said: one
    # year back), "holiday" (the same holiday a year back: Easter moves).
    flex: str
    holiday: str | None = None


@dataclass(frozen=True)
class _Interval:
    start: datetime  # aware, in the requested tz, not after now
    end: datetime  # exclusive, already capped at now
    precision: str  # weekend / days


@dataclass(frozen=True)
class _Period:
    start: date
    precision: str  # week / month / year


@dataclass(frozen=True)
class _Moment:
    at: datetime  # aware, already in the requested tz
    weak: bool = False  # "net"/"nu": only trusted when it is the whole answer


# A grammar rule's action on one match; False leaves the matched text in place.
Handler = Callable[[re.Match[str]], bool | None]


class _NotUnderstood(Exception):
    pass


# --------------------------------------------------------------------------- helpers


def _number(token: str) -> int:
    token = token.strip()
    if token.isdigit():
        return int(token)
    return _NUMBER_WORDS[token]


def _localize(day: date, hour: int, minute: int, tz: tzinfo) -> datetime:
    """Wall time `day hour:minute` in tz; a non-existent (DST gap) time moves forward."""
    naive = datetime(day.year, day.month, day.day, hour, minute)
    return naive.replace(tzinfo=tz).astimezone(_UTC).astimezone(tz)


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + (day.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


# Holidays: key -> (first, last) as (month, day) for fixed days, or the English names the `holidays`
# library gives the moving feasts (King's Day moved with the monarch and moves off a Sunday).
_FIXED_HOLIDAYS = {
    "kerst": ((12, 25), (12, 26)), "kerst1": ((12, 25), (12, 25)), "kerst2": ((12, 26), (12, 26)),
    "kerstavond": ((12, 24), (12, 24)), "oudjaar": ((12, 31), (12, 31)), "nieuwjaar": ((1, 1), (1, 1)),
    "oudennieuw": ((12, 31), (1, 1)),  # into the next year
}
_MOVING_HOLIDAYS = {
    "pasen": ("Easter Sunday",), "paasmaandag": ("Easter Monday",), "goedevrijdag": ("Good Friday",),
    "pinksteren": ("Pentecost",), "pinkstermaandag": ("Pentecost Monday",), "hemelvaart": ("Ascension Day",),
    "koningsdag": ("King's Day", "Queen's Day"),
}
# What people type -> (holiday key, part of the day). Longest first in the pattern.
_HOLIDAY_WORDS = {
    "eerste kerstdag": ("kerst1", None), "tweede kerstdag": ("kerst2", None), "kerstavond": ("kerstavond", "avond"),
    "de kerstdagen": ("kerst", None), "kerstdagen": ("kerst", None), "kerstmis": ("kerst", None),
    "de kerst": ("kerst", None), "kerst": ("kerst", None),
    "oud en nieuw": ("oudennieuw", None), "oud op nieuw": ("oudennieuw", None),
    "oudejaarsavond": ("oudjaar", "avond"), "oudjaarsavond": ("oudjaar", "avond"),
    "oudejaarsdag": ("oudjaar", None), "oudjaar": ("oudjaar", None),
    "nieuwjaarsdag": ("nieuwjaar", None), "nieuwjaarsnacht": ("nieuwjaar", "nacht"), "nieuwjaar": ("nieuwjaar", None),
    "koningsdag": ("koningsdag", None), "koninginnedag": ("koningsdag", None),
    "eerste paasdag": ("pasen", None), "tweede paasdag": ("paasmaandag", None), "paasmaandag": ("paasmaandag", None),
    "paaszondag": ("pasen", None), "pasen": ("pasen", None), "goede vrijdag": ("goedevrijdag", None),
    "eerste pinksterdag": ("pinksteren", None), "tweede pinksterdag": ("pinkstermaandag", None),
    "pinksteren": ("pinksteren", None), "hemelvaartsdag": ("hemelvaart", None), "hemelvaart": ("hemelvaart", None),
    "christmas eve": ("kerstavond", "avond"), "christmas day": ("kerst1", None), "boxing day": ("kerst2", None),
    "christmas": ("kerst", None), "xmas": ("kerst", None), "new year's eve": ("oudjaar", "avond"),
    "new years eve": ("oudjaar", "avond"), "new year's day": ("nieuwjaar", None), "new years day": ("nieuwjaar", None),
    "king's day": ("koningsdag", None), "kings day": ("koningsdag", None), "easter monday": ("paasmaandag", None),
    "easter sunday": ("pasen", None), "easter": ("pasen", None), "good friday": ("goedevrijdag", None),
    "whit monday": ("pinkstermaandag", None), "pentecost": ("pinksteren", None), "whitsun": ("pinksteren", None),
    "ascension day": ("hemelvaart", None),
}
_HOLIDAY_RE = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(_HOLIDAY_WORDS, key=len, reverse=True))


def _holiday_span(key: str, year: int) -> tuple[date, date] | None:
    """The first and last day of holiday `key` in `year`; None when the calendar has no such day then."""
    if key in _FIXED_HOLIDAYS:
        (m1, d1), (m2, d2) = _FIXED_HOLIDAYS[key]
        first = date(year, m1, d1)
        return first, date(year + (m2 < m1), m2, d2)
    import holidays  # imported lazily: only holiday answers need it

    names = _MOVING_HOLIDAYS[key]
    found = holidays.country_holidays("NL", years=year, language="en_US")
    for day, name in found.items():
        if name in names:
            return day, day
    return None


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    # Keep letters, digits and the separators used in dates and times.
    text = re.sub(r"[^\w\s:./'\-]", " ", text)
    text = text.replace("_", " ")
    text = re.sub(r"\b([0-9]{1,2})(?:ste|de|e|st|nd|rd|th)\b", r"\1", text)  # "12e november"
    text = re.sub(r"\b([0-9]{1,2}[:.][0-9]{2})\s*-\s*([0-9]{1,2}[:.][0-9]{2})\b", r"\1 tot \2", text)
    return text


def _words(text: str) -> list[str]:
    words = (w.strip(".:/'-,") for w in text.split())
    return [w for w in words if w]


def _has_date_evidence(text: str) -> bool:
    if re.fullmatch(r"\s*[0-9]{1,3}\s*", text):  # "3" alone is not a date
        return False
    return bool(re.search(r"[0-9]", text) or _MONTH_RE.search(text))


def _has_year(text: str) -> bool:
    return bool(
        re.search(r"(?<![0-9])[0-9]{4}(?![0-9])", text)
        or re.search(r"(?<![0-9])[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{2,4}(?![0-9])", text)
        or re.search(r"'[0-9]{2}\b", text)
    )


# --------------------------------------------------------------------------- grammar


class _Scan:
    """One pass of the hand-written grammar over normalised text."""

    def __init__(self, text: str, now: datetime) -> None:
        self.original = text
        self.text = text
        self.now = now  # aware, in the requested tz
        self.today = now.date()
        self.tz = now.tzinfo
        self.days: list[_Day] = []
        self.periods: list[_Period] = []
        self.intervals: list[_Interval] = []
        self.moments: list[_Moment] = []
        self.parts: list[str] = []
        self.times: list[tuple[int, int, int, bool]] = []  # (position, hour, minute, ambiguous)
        self.no_start = False  # ongoing for long, or recurring: there is no single start
        self._position = 0
        self.detail_spans: list[tuple[int, int]] = []  # clock times and parts of day
        self._run()

    # -- consumption -----------------------------------------------------------

    def _eat(self, pattern: str, handler: Handler, detail: bool = False) -> None:
        def replace(match: re.Match[str]) -> str:
            self._position = match.start()
            if handler(match) is False:
                return match.group(0)
            if detail:
                self.detail_spans.append(match.span())
            return " " * (match.end() - match.start())

        self.text = re.sub(pattern, replace, self.text)

    def leftovers(self) -> list[str]:
        return [w for w in _words(self.text) if w not in _FILLERS]

    # -- spec builders ---------------------------------------------------------

    def _day(self, day: date, flex: str, part: str | None = None) -> None:
        self.days.append(_Day(day, flex))
        if part:
            self.parts.append(_PART_WORDS[part])

    def _interval(self, first: date, end: date, precision: str) -> None:
        start = _localize(first, 0, 0, _zone(self.now))
        stop = _localize(end, 0, 0, _zone(self.now))
        if stop.timestamp() > self.now.timestamp():
            stop = self.now
        self.intervals.append(_Interval(start, stop, precision))

    def _weekday(self, name: str, mode: str) -> date:
        target = _WEEKDAYS[name]
        if mode == "bare":  # the most recent one, today included
            return self.today - timedelta(days=(self.today.weekday() - target) % 7)
        if mode == "strict":  # the most recent one before today
            return self.today - timedelta(days=(self.today.weekday() - target) % 7 or 7)
        if mode == "previous_week":
            return _monday(self.today) - timedelta(days=7 - target)
        return _monday(self.today) + timedelta(days=target)  # "this_week"

    def _time(self, hour: int, minute: int, ampm: str | None = None, spoken: str | None = None) -> bool:
        """Record a clock time; False (leave the text alone) when it is no valid time, e.g. "31.12".

        `spoken` is the hour as said ("3", "drie") in a form that has no 24-hour notation ("rond 3 uur",
        "half 4", "kwart over 3"): an hour 1-12 said so is ambiguous (03:00 or 15:00) unless a part of the
        day says which. "03 uur", "3:00" and "15:00" are not ambiguous.
        """
        ambiguous = spoken is not None and not ampm and not spoken.startswith("0") and 1 <= _number(spoken) <= 12
        if ampm:
            if not 1 <= hour <= 12:
                return False
            hour = hour % 12 + (12 if ampm.startswith("p") else 0)
        if not (0 <= hour <= 23 and 0 <= minute <= 59):
            return False
        self.times.append((self._position, hour, minute, ambiguous and hour <= 11))
        return True

    def clock_time(self) -> tuple[int, int] | None:
        """The clock time said; for a range ("tussen 14:00 en 16:00") its beginning."""
        ordered = list(dict.fromkeys((h, m) for _, h, m, _a in sorted(self.times)))
        if len(ordered) > 1 and not (
            len(ordered) == 2 and re.search(r"\b(?:tussen|tot|between|until|till)\b", self.original)
        ):
            raise _NotUnderstood("conflicting clock times")
        return ordered[0] if ordered else None

    def clock_ambiguous(self) -> bool:
        """Whether the clock time said is an hour 1-12 that may be before or after noon."""
        return bool(self.times) and sorted(self.times)[0][3]

    # -- the grammar -----------------------------------------------------------

    def _run(self) -> None:
        eat = self._eat
        now, today = self.now, self.today

        # Ongoing for a long time, or recurring: there is no single start to give.
        def ongoing(_m: re.Match[str]) -> None:
            self.no_start = True

        eat(r"\bal\s+(?:(?:" + _NUM + r"|een\s+paar|enkele|heel\s+wat|een\s+hele?)\s+)?"
            r"(?:dagen|weken|maanden|jaren|jaar|tijd|tijdje|lang|langer|eeuwen)\b", ongoing)
        eat(r"\bfor\s+(?:" + _NUM + r"\s+|a\s+few\s+|some\s+)?"
            r"(?:days|weeks|months|years|a\s+while|ages|some\s+time|a\s+long\s+time)\b", ongoing)
        eat(r"\b(?:elke|iedere|elk|ieder|every|each|vaak|regelmatig|steeds|telkens|altijd|often|regularly"
            r"|always|dagelijks|wekelijks|daily|weekly)\b", ongoing)

        # "N units ago" (before clock times: "2 uur geleden" is not 02:00).
        def ago(m: re.Match[str]) -> None:
            count, unit = _number(m.group(1)), m.group(2)
            if unit.startswith(("min", "kwartier", "uur", "uren", "hour", "hr")):
                minutes = count * (15 if unit == "kwartier" else 60 if unit[0] in "uh" else 1)
                moment = (now.astimezone(_UTC) - timedelta(minutes=minutes)).astimezone(self.tz)
                self.moments.append(_Moment(moment.replace(second=0, microsecond=0)))
            elif unit.startswith(("dag", "day")):
                self._day(today - timedelta(days=count), "fixed")
            elif unit.startswith("we"):
                self._day(today - timedelta(weeks=count), "fixed")
            elif unit.startswith(("maand", "month")):
                self._day(_add_months(today, -count), "fixed")
            else:
                self._day(_add_months(today, -12 * count), "fixed")

        eat(r"\b" + _NUM + r"\s*(minuten|minuut|minutes|minute|mins|min|kwartier|uren|uur|hours|hour|hrs"
            r"|dagen|dag|days|day|weken|week|weeks|maanden|maand|months|month|jaren|jaar|years|year)"
            r"\s+(?:geleden|terug|ago)\b", ago)

        def half_hour_ago(_m: re.Match[str]) -> None:
            moment = (now.astimezone(_UTC) - timedelta(minutes=30)).astimezone(self.tz)
            self.moments.append(_Moment(moment.replace(second=0, microsecond=0)))

        eat(r"\b(?:een\s+|1\s+)?half\s*uur\s+(?:geleden|terug)\b|\bhalf\s+an\s+hour\s+ago\b", half_hour_ago)

        # Weekends: Saturday 00:00 until Sunday 24:00, never beyond now. "vorig/afgelopen weekend" is the
        # weekend of the previous (Monday-start) week; "dit weekend", "het weekend" and a bare "weekend" the
        # most recent one that has begun (on a weekday: the one just passed, as "dit weekend" is said then).
        def weekend(mode: str) -> Handler:
            def handle(_m: re.Match[str]) -> None:
                saturday = _monday(today) + timedelta(days=5)
                if mode == "previous" or saturday > today:
                    saturday -= timedelta(weeks=1)
                self._interval(saturday, saturday + timedelta(days=2), "weekend")
            return handle

        def future(_m: re.Match[str]) -> None:
            self.no_start = True  # ahead: never a date in the future

        eat(r"\b(?:volgend|volgende|komend|komende|aanstaand|aanstaande|next|coming)\s+(?:weekend|week-end)\b", future)
        eat(r"\b(?:vorig|vorige|afgelopen|last|past|previous)\s+(?:weekend|week-end)\b", weekend("previous"))
        eat(r"\b(?:dit|this|het|the|in\s+het|in\s+the|tijdens\s+het|over\s+the|at\s+the|op\s+het)?\s*"
            r"\b(?:weekend|week-end)\b", weekend("latest"))

        # Holidays: the most recent one that has begun. "rond" widens it by a few days on either side.
        def holiday(m: re.Match[str]) -> bool | None:
            key, part = _HOLIDAY_WORDS[re.sub(r"\s+", " ", m.group(2))]
            around = bool(m.group(1))
            margin = timedelta(days=HOLIDAY_MARGIN_DAYS if around else 0)
            for year in range(today.year, today.year - 3, -1):
                span = _holiday_span(key, year)
                if span is None or span[0] - margin > today:
                    continue
                first, last = span
                if around or first != last:
                    self._interval(first - margin, last + margin + timedelta(days=1), "days")
                else:
                    self._day(first, "holiday", part)
                    self.days[-1] = _Day(first, "holiday", key)
                return None
            raise _NotUnderstood("no such holiday in the past years")

        eat(r"\b(?:met\s+|tijdens\s+|op\s+|at\s+|on\s+|during\s+)?"
            r"((?:rond|rondom|omstreeks|around)\s+(?:de\s+|the\s+)?)?(" + _HOLIDAY_RE + r")(?![\w'])", holiday)

        # Weekdays, most specific first.
        def weekday(mode: str, flex: str) -> Handler:
            def handle(m: re.Match[str]) -> None:
                self._day(self._weekday(m.group(1), mode), flex, m.group(2))
            return handle

        eat(r"\b" + _PREVIOUS + r"\s+week\s+(?:op\s+|on\s+)?" + _WD + r"\b", weekday("previous_week", "fixed"))
        eat(r"\b" + _WD + r"\s+(?:van\s+|in\s+|of\s+)?(?:de\s+|the\s+)?" + _PREVIOUS + r"\s+week\b",
            weekday("previous_week", "fixed"))
        eat(r"\b" + _THIS + r"\s+week\s+(?:op\s+|on\s+)?" + _WD + r"\b", weekday("this_week", "fixed"))
        eat(r"\b" + _WD + r"\s+(?:van\s+|in\s+|of\s+)?" + _THIS + r"\s+week\b", weekday("this_week", "fixed"))
        eat(r"\b(?:afgelopen|vorige|jongstleden|last|past|previous)\s+" + _WD + r"\b", weekday("strict", "fixed"))
        eat(r"\b" + _WD + r"\s+(?:jl|j\.l|jongstleden|jongsleden)\b\.?", weekday("strict", "fixed"))
        eat(r"\b" + _THIS + r"\s+" + _WD + r"\b", weekday("this_week", "fixed"))
        eat(r"\b" + _WD + r"\b", weekday("bare", "week"))

        # Day words, with an optional part of the day glued on ("gisteravond").
        def days_back(m: re.Match[str]) -> None:
            back = 2 if m.group(1) else 1
            self._day(today - timedelta(days=back), "fixed", m.group(2))

        eat(r"\b(eer)?gister(?:en)?" + _PART_SUFFIX + r"\b", days_back)
        eat(r"\b(?:the\s+)?day\s+before\s+yesterday\b", lambda m: self._day(today - timedelta(days=2), "fixed"))
        eat(r"\byesterday\b", lambda m: self._day(today - timedelta(days=1), "fixed"))
        eat(r"\b(?:vandaag|today)\b", lambda m: self._day(today, "fixed"))

        def this_part(m: re.Match[str]) -> None:
            part = _PART_WORDS[m.group(1)]
            # "vannacht" is the night that just passed: the one after yesterday evening.
            self._day(today - timedelta(days=1) if part == "nacht" else today, "fixed", m.group(1))

        eat(r"\bvan(ochtend|morgen|middag|avond|nacht)\b", this_part)
        eat(r"\b(?:deze|this)\s+(ochtend|morgen|middag|avond|morning|afternoon|evening)\b", this_part)
        eat(r"\b(?:afgelopen|vorige|last|past)\s+(nacht|night)\b", this_part)
        eat(r"\bto(night)\b", lambda m: self._day(today, "fixed", "avond"))

        # Calendar periods.
        def period(kind: str, back: int) -> Handler:
            def handle(_m: re.Match[str]) -> None:
                if kind == "week":
                    self.periods.append(_Period(_monday(today) - timedelta(weeks=back), "week"))
                elif kind == "month":
                    self.periods.append(_Period(_add_months(today.replace(day=1), -back), "month"))
                else:
                    self.periods.append(_Period(date(today.year - back, 1, 1), "year"))
            return handle

        def month_last_year(m: re.Match[str]) -> None:
            month = _MONTH_NUMBERS[m.group(1) or m.group(2)]
            self.periods.append(_Period(date(today.year - 1, month, 1), "month"))

        last_year = r"(?:vorig|afgelopen|last|previous)\s+(?:jaar|year)"
        eat(r"\b(" + _MONTH_NAMES + r")\.?\s+(?:van\s+|of\s+)?" + last_year + r"\b"
            r"|\b" + last_year + r"\s+(?:in\s+)?(" + _MONTH_NAMES + r")\b", month_last_year)

        eat(r"\b" + _PREVIOUS + r"\s+week\b", period("week", 1))
        eat(r"\b" + _PREVIOUS + r"\s+(?:maand|month)\b", period("month", 1))
        eat(r"\b(?:vorig|afgelopen|last|previous|past)\s+(?:jaar|year)\b", period("year", 1))
        eat(r"\b" + _THIS + r"\s+week\b", period("week", 0))
        eat(r"\b" + _THIS + r"\s+(?:maand|month)\b", period("month", 0))
        eat(r"\b(?:dit|this)\s+(?:jaar|year)\b", period("year", 0))

        # Just now.
        def just_now(m: re.Match[str]) -> None:
            weak = m.group(0).strip() in ("net", "nu", "now")
            self.moments.append(_Moment(now.replace(second=0, microsecond=0), weak=weak))

        eat(r"\b(?:net\s+nog|zojuist|daarnet|zonet|zo-?even|zo\s+net|just\s+now|right\s+now|a\s+moment\s+ago"
            r"|net|nu|now)\b", just_now)

        # Parts of the day on their own ("'s avonds", "in de middag", "in the evening").
        def part(m: re.Match[str]) -> None:
            self.parts.append(_PART_WORDS[m.group(1)])

        eat(r"(?<![\w'])(?:'s\s*|s\s+|des\s+)?(ochtend|morgen|middag|avond|nacht)s\b", part, detail=True)
        eat(r"\b(?:in\s+de\s+|tijdens\s+de\s+|rond\s+de\s+|op\s+de\s+)(ochtend|morgen|middag|avond|nacht)\b",
            part, detail=True)
        eat(r"\b(ochtend|middag|avond|nacht)\b", part, detail=True)  # not "morgen": that is tomorrow
        eat(r"\b(?:in\s+the\s+|at\s+)?(morning|afternoon|evening|night)\b", part, detail=True)

        # Clock times.
        not_a_date_before = r"(?<![0-9.:/\-])"
        not_a_date_after = r"(?![0-9]|[.:/\-][0-9])"
        ampm = r"(?:\s*(am|pm|a\.m\.|p\.m\.)(?!\w))?"
        eat(r"\b(?:om|at|rond|omstreeks|tegen|around)?\s*" + not_a_date_before
            + r"([0-9]{1,2})[:.]([0-9]{2})" + not_a_date_after + r"(?:\s*(?:uur|u|h)\b)?" + ampm,
            lambda m: self._time(int(m.group(1)), int(m.group(2)), m.group(3)), detail=True)
        eat(not_a_date_before + r"\b([0-9]{1,2})\s*(?:uur|u|h)(?:\s*([0-9]{2}))?\b",
            lambda m: self._time(int(m.group(1)), int(m.group(2) or 0), spoken=m.group(1)), detail=True)
        eat(r"\b" + _HOUR + r"\s+(?:uur|o'?clock)\b",
            lambda m: self._time(_number(m.group(1)), 0, spoken=m.group(1)), detail=True)
        eat(not_a_date_before + r"\b([0-9]{1,2})\s*(am|pm|a\.m\.|p\.m\.)(?!\w)",
            lambda m: self._time(int(m.group(1)), 0, m.group(2)), detail=True)
        eat(r"\b(?:om\s+|rond\s+|omstreeks\s+|tegen\s+)?half\s+" + _HOUR + r"\b",
            lambda m: self._time(_number(m.group(1)) - 1 if _number(m.group(1)) else 23, 30, spoken=m.group(1)),
            detail=True)
        eat(r"\b(?:om\s+|rond\s+|omstreeks\s+|tegen\s+)?kwart\s+(over|voor)\s+" + _HOUR + r"\b",
            lambda m: self._time(_number(m.group(2)) - (m.group(1) == "voor"), 45 if m.group(1) == "voor" else 15,
                                 spoken=m.group(2)),
            detail=True)
        eat(r"\b(?:half\s+past|quarter\s+past|quarter\s+to)\s+" + _HOUR + r"\b",
            lambda m: self._time(
                _number(m.group(1)) - ("to" in m.group(0)),
                30 if "half" in m.group(0) else 45 if "to" in m.group(0) else 15,
                spoken=m.group(1),
            ), detail=True)
        eat(r"\b(?:om|at|rond|omstreeks|tegen|around)\s+" + _HOUR + r"\b(?!\s*[-/.:][0-9])(?!\s+" + _MONTHS + r"\b)",
            lambda m: self._time(_number(m.group(1)), 0, spoken=m.group(1)), detail=True)


# --------------------------------------------------------------------------- resolution


def _compose(day: date, part: str | None, hm: tuple[int, int] | None,
             tz: tzinfo) -> tuple[datetime, str, datetime | None]:
    """The moment, its precision, and (for a part of the day) when that part begins."""
    if hm is not None:
        hour, minute = hm
        if part == "middag" and 1 <= hour <= 6:
            hour += 12
        elif part in ("avond", "nacht"):
            if 6 <= hour <= 11:
                hour += 12
            elif hour < 6:  # after midnight
                day += timedelta(days=1)
            elif hour == 12:  # "12 uur 's nachts" is midnight, at the end of that day: never noon
                hour, day = 0, day + timedelta(days=1)
        return _localize(day, hour, minute, tz), "time", None
    if part is not None:
        anchor, begins = PART_OF_DAY_HOURS[part]
        if part == "nacht":
            day += timedelta(days=1)
        return _localize(day, anchor, 0, tz), "part_of_day", _localize(day, begins, 0, tz)
    return _localize(day, 0, 0, tz), "day", None


def _step_back(spec: _Day, k: int) -> date | None:
    """The k-th earlier candidate for a day whose result was in the future."""
    if spec.flex == "implicit":
        return spec.day - timedelta(days=k)
    if spec.flex == "week":
        return spec.day - timedelta(weeks=k)
    if spec.flex == "year":
        try:
            return spec.day.replace(year=spec.day.year - k)
        except ValueError:  # 29 February in a common year
            return None
    if spec.flex == "holiday" and spec.holiday:
        span = _holiday_span(spec.holiday, spec.day.year - k)
        return span[0] if span else None
    raise _NotUnderstood("a fixed day in the future")


def _zone(now: datetime) -> tzinfo:
    """The time zone of `now`: parse_when refuses a naive one."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.tzinfo


# What the resolution gives: start, precision, end of an interval, whether a reading was chosen.
_Result = tuple[datetime, str, "datetime | None", bool]


def _resolve_day(spec: _Day | None, part: str | None, hm: tuple[int, int] | None,
                 now: datetime, ambiguous: bool = False) -> _Result:
    """The most recent past moment the pieces allow.

    An ambiguous clock hour (said 1-12, no part of the day) gets both readings. Hours 1-7 are tried after
    noon first ("om 3 uur" on an earlier day is 15:00; today 15:00 when that has passed, else 03:00): people
    report what they saw at work or on the street, rarely at 3 at night. Hours 8-11 are tried in the morning
    first ("gisteren om 9 uur" is 09:00). Either way the summary says which reading was taken.
    """
    tz = _zone(now)
    readings = [hm]
    if ambiguous and part is None and hm is not None and hm[0] <= 11:
        later = (hm[0] + 12, hm[1])
        readings = [later, hm] if hm[0] <= 7 else [hm, later]
    if spec is None:
        if part is None and hm is None:
            raise _NotUnderstood("nothing said")
        spec = _Day(now.date(), "implicit")
    limit = now.timestamp()
    day: date | None = spec.day
    for k in range(1, 10):
        for reading in readings:
            if day is None:
                break
            moment, precision, part_begins = _compose(day, part, reading, tz)
            if moment.timestamp() <= limit:
                # Midnight is a reading too ("gisteren 12 uur 's nachts": the night after yesterday): say so.
                midnight = reading is not None and reading[0] == 12 and part in ("avond", "nacht")
                return moment, precision, None, len(readings) > 1 or midnight
            if part_begins is not None and part_begins.timestamp() <= limit:
                return part_begins, precision, None, False  # the part of the day is under way
        day = _step_back(spec, k)
    raise _NotUnderstood("no past candidate")


def _single(items: list[str], what: str) -> str | None:
    unique = list(dict.fromkeys(items))
    if len(unique) > 1:
        raise _NotUnderstood(f"conflicting {what}")
    return unique[0] if unique else None


def _from_scan(scan: _Scan, now: datetime, strong_only: bool) -> _Result:
    moments = [m for m in scan.moments if not (strong_only and m.weak)]
    days = scan.days
    # Several pieces naming the same day ("vandaag, vanochtend") are one day.
    if len({d.day for d in days}) == 1:
        days = [min(days, key=lambda d: d.flex != "fixed")]
    anchors = len(days) + len(scan.periods) + len(moments) + len(scan.intervals)
    part = _single(scan.parts, "parts of the day")
    hm = scan.clock_time()
    if anchors > 1:
        raise _NotUnderstood("conflicting anchors")
    if scan.intervals:  # a clock time with a weekend or a few days stays in the raw text only
        interval = scan.intervals[0]
        return interval.start, interval.precision, interval.end, False
    if scan.periods:
        period = scan.periods[0]
        return _localize(period.start, 0, 0, _zone(now)), period.precision, None, False
    if moments and part is None and hm is None:
        return moments[0].at, "time", None, False
    return _resolve_day(days[0] if days else None, part, hm, now, scan.clock_ambiguous())


def _dateparser_settings(now: datetime, tz: ZoneInfo) -> dict[str, object]:
    settings = {
        "RELATIVE_BASE": now.replace(tzinfo=None),  # naive wall time in tz
        "PREFER_DATES_FROM": "past",
        "DATE_ORDER": "DMY",
        "PREFER_LOCALE_DATE_ORDER": False,
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "STRICT_PARSING": False,
        "NORMALIZE": True,
    }
    if getattr(tz, "key", None):
        settings["TIMEZONE"] = tz.key  # an explicit zone in the text is converted to this one
    return settings


def _languages(language: str) -> list[str]:
    return ["en", "nl"] if language == "en" else ["nl", "en"]


def _calendar_spec(date_obj: datetime, period: str, text: str) -> _Day | _Period | None:
    """Map dateparser's answer onto our specs.

    Only the date is taken: clock times are the grammar's business, and the
    time dateparser attaches to relative phrases is merely a copy of `now`.
    """
    day = date_obj.date()
    if period == "year":
        return _Period(date(day.year, 1, 1), "year")
    if period == "month":
        return _Period(day.replace(day=1), "month")
    if period == "week":
        return _Period(_monday(day), "week")
    # A bare "12-11": make sure dateparser read it as day 12 of month 11.
    numeric = re.fullmatch(r"\s*([0-9]{1,2})[-/.]([0-9]{1,2})\s*", text)
    if numeric and (int(numeric.group(1)), int(numeric.group(2))) != (day.day, day.month):
        return None
    # Only a calendar date without a year may move to an earlier year; a relative
    # phrase the library understood ("over 2 dagen") stays where it is.
    calendar_date = _MONTH_RE.search(text) or re.search(r"(?<![0-9])[0-9]{1,2}[-/.][0-9]{1,2}(?![0-9])", text)
    return _Day(day, "year" if calendar_date and not _has_year(text) else "fixed")


def _resolve_calendar(spec: _Day | _Period, scan: _Scan, now: datetime, lib_text: str) -> _Result:
    tz = _zone(now)
    if isinstance(spec, _Period):
        start = _localize(spec.start, 0, 0, tz)
        if start.timestamp() > now.timestamp():
            if spec.precision == "week" or _has_year(lib_text):
                raise _NotUnderstood("a period in the future")
            start = _localize(spec.start.replace(year=spec.start.year - 1), 0, 0, tz)
        return start, spec.precision, None, False
    part = _single(scan.parts, "parts of the day")
    hm = scan.clock_time()
    return _resolve_day(spec, part, hm, now, scan.clock_ambiguous())


def _library_may_see(lib_text: str) -> bool:
    return (
        0 < len(lib_text) <= MAX_LIBRARY_CHARS
        and len(lib_text.split()) <= MAX_LIBRARY_WORDS
        and _has_date_evidence(lib_text)
    )


def _library_text(norm: str, scan: _Scan) -> str:
    chars = list(norm)
    for start, end in scan.detail_spans:
        chars[start:end] = " " * (end - start)
    return " ".join(w for w in "".join(chars).split() if w.strip(".,") not in _FILLERS)


def _try_dateparser(lib_text: str, scan: _Scan, now: datetime, tz: ZoneInfo,
                    language: str) -> _Result | None:
    if not _library_may_see(lib_text):
        return None
    from dateparser.date import DateDataParser  # imported lazily: it is slow to load (see warm_up)

    parser = DateDataParser(
        languages=_languages(language), settings=_dateparser_settings(now, tz), try_previous_locales=False
    )
    data = parser.get_date_data(lib_text)
    if data.date_obj is None:
        return None
    spec = _calendar_spec(data.date_obj, data.period or "day", lib_text)
    if spec is None:
        return None
    return _resolve_calendar(spec, scan, now, lib_text)


# "12 november", "3 mrt. 2025": the commonest calendar answer, read here the way dateparser reads it (0.7 ms
# there, a few µs here). tests/dialogs/test_when_day_month.py holds every day of every month, with and without a
# year, to dateparser's reading; anything else (a two-digit year, a weekday with it) goes to dateparser.
_DAY_MONTH = re.compile(r"([0-9]{1,2})\s+(" + _MONTH_NAMES + r")\.?(?:\s+([0-9]{4}))?")


def _try_day_month(lib_text: str, scan: _Scan, now: datetime) -> _Result | None:
    found = _DAY_MONTH.fullmatch(lib_text.strip())
    if found is None:
        return None
    day, month, year = found.groups()
    try:
        moment = datetime(int(year) if year else now.year, _MONTH_NUMBERS[month], int(day))
    except ValueError:   # "31 april", "29 februari" in a year without it: dateparser's business
        return None
    spec = _calendar_spec(moment, "day", lib_text)
    return None if spec is None else _resolve_calendar(spec, scan, now, lib_text)


def _try_search(lib_text: str, scan: _Scan, now: datetime, tz: ZoneInfo,
                language: str) -> _Result | None:
    if not _library_may_see(lib_text):
        return None
    from dateparser.search import search_dates

    found = search_dates(lib_text, languages=_languages(language), settings=_dateparser_settings(now, tz)) or []
    hits = {
        (piece.strip(), moment.date())
        for piece, moment in found
        if _has_date_evidence(piece) and not re.fullmatch(r"[0-9\s:.]+", piece)
    }
    if len(hits) != 1:
        return None
    piece, _ = hits.pop()
    return _try_dateparser(piece, scan, now, tz, language)


def _parse(text: str, now: datetime, tz: ZoneInfo, language: str) -> _Result:
    norm = _normalise(text)
    if not norm.strip():
        raise _NotUnderstood("empty")
    scan = _Scan(norm, now)
    if scan.no_start:
        raise _NotUnderstood("ongoing or recurring: no single start")
    if not scan.leftovers():
        return _from_scan(scan, now, strong_only=False)

    lib_text = _library_text(norm, scan)
    result = _try_day_month(lib_text, scan, now)
    if result is None:
        result = _try_dateparser(lib_text, scan, now, tz, language)
    if result is not None:
        return result
    if scan.days or scan.periods or scan.intervals or any(not m.weak for m in scan.moments):
        return _from_scan(scan, now, strong_only=True)
    result = _try_search(lib_text, scan, now, tz, language)
    if result is not None:
        return result
    raise _NotUnderstood("no date found")


# --------------------------------------------------------------------------- API


def _plausible(start: datetime, now: datetime) -> bool:
    oldest = datetime(max(now.astimezone(_UTC).year - MAX_YEARS_BACK, 1), 1, 1, tzinfo=_UTC)
    return oldest.timestamp() <= start.timestamp() <= now.timestamp()


def parse_when(text: str, now: datetime, tz: ZoneInfo, language: str = "nl") -> When:
    """Interpret an answer to "wanneer" relative to `now` (aware; converted to `tz`).

    Never raises for any text; the result's start is never after `now`. A naive
    `now` is a programming error and raises ValueError.
    """
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("parse_when needs a timezone-aware `now`")
    unknown = When(raw=text, start=None, precision="none")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_CHARS:
        return unknown
    try:
        start, precision, end, assumed = _parse(text, now.astimezone(tz), tz, language)
        start = start.astimezone(tz)
        end = end.astimezone(tz) if end is not None else None
        if not _plausible(start, now) or precision not in PRECISIONS[1:]:
            return unknown
        if end is not None and not start.timestamp() <= end.timestamp() <= now.timestamp():
            return unknown
    except Exception:  # _NotUnderstood, and anything the library may throw at odd input
        return unknown
    return When(raw=text, start=start, precision=precision, end=end, assumed=assumed)


def when_spoken(t: Callable[..., str], raw: str, start: datetime, precision: str, end_iso: str | None,
                assumed: bool, tz: tzinfo) -> str | None:
    """The summary's line for a weekend, a few days, or a clock hour the bot chose a reading for; None
    for the other answers (the caller shows them as before).

    `t` is the catalogue (meldbot.core.i18n.Texts), `raw` the user's text already quoted for display.
    """
    start = start.astimezone(tz)
    if end_iso and precision in ("weekend", "days"):
        last = (datetime.fromisoformat(end_iso).astimezone(tz) - timedelta(microseconds=1)).date()
        return t("summary.when_interval", raw=raw, first=start.strftime("%d-%m-%Y"), last=last.strftime("%d-%m-%Y"))
    if assumed and precision == "time":
        weekdays, months = t("when.weekdays").split(), t("when.months").split()
        date_text = f"{weekdays[start.weekday()]} {start.day} {months[start.month - 1]}"
        separator = ":" if getattr(t, "language", "nl") == "en" else "."
        return t("summary.when_read", raw=raw, date=date_text, time=f"{start.hour:02d}{separator}{start.minute:02d}")
    return None


def warm_up() -> None:
    """Load dateparser's language data now; otherwise the first date answer takes ~0.3 s."""
    moment = datetime(2000, 6, 1, 12, 0, tzinfo=_UTC)
    parse_when("begin mei 2000", moment, ZoneInfo("UTC"))
    parse_when("op 1 mei bij het station", moment, ZoneInfo("UTC"))
