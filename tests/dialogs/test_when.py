"""Tests for meldbot.dialogs.when: answers to `wanneer`, at fixed clocks far from the real date."""

from __future__ import annotations

import inspect
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meldbot.dialogs import when as when_module
from meldbot.dialogs.when import PRECISIONS, When, parse_when

AMS = ZoneInfo("Europe/Amsterdam")
UTC = timezone.utc

# Clock A: Wednesday 18 November 2026, 10:30 in Amsterdam.
NOW = datetime(2026, 11, 18, 10, 30, tzinfo=AMS)
# Clock B: Monday 3 March 2031, 16:00 - another year and month, and a Monday.
NOW_B = datetime(2031, 3, 3, 16, 0, tzinfo=AMS)


def at(y, mo, d, h=0, mi=0, tz=AMS):
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def same_instant(a, b):
    # Timestamps, not ==: an inter-zone == is False for a wall time in a DST fold (PEP 495).
    return a.timestamp() == b.timestamp()


def check(text, now, expected, precision, tz=AMS, language="nl"):
    result = parse_when(text, now, tz, language)
    assert isinstance(result, When)
    assert result.raw == text
    assert result.precision == precision, (text, result)
    if expected is None:
        assert result.start is None, (text, result)
        return
    assert result.start is not None, (text, result)
    assert same_instant(result.start, expected), (text, result.start.isoformat(), expected.isoformat())
    assert result.start.utcoffset() == expected.utcoffset(), (text, result.start.isoformat())
    assert result.start.tzinfo is tz


# --------------------------------------------------------------------------- clock A

TABLE_A = [
    # day words
    ("vandaag", at(2026, 11, 18), "day"),
    ("Vandaag.", at(2026, 11, 18), "day"),
    ("gisteren", at(2026, 11, 17), "day"),
    ("gister", at(2026, 11, 17), "day"),
    ("eergisteren", at(2026, 11, 16), "day"),
    # parts of the day
    ("vanochtend", at(2026, 11, 18, 9), "part_of_day"),
    ("vanmorgen", at(2026, 11, 18, 9), "part_of_day"),
    ("vanmiddag", None, "none"),  # at 10:30 the afternoon is still ahead
    ("vanavond", None, "none"),
    ("vannacht", at(2026, 11, 18, 3), "part_of_day"),  # the night just passed
    ("afgelopen nacht", at(2026, 11, 18, 3), "part_of_day"),
    ("gisternacht", at(2026, 11, 18, 3), "part_of_day"),  # also the night just passed
    ("gisteravond", at(2026, 11, 17, 20), "part_of_day"),
    ("gistermiddag", at(2026, 11, 17, 14), "part_of_day"),
    ("gisterochtend", at(2026, 11, 17, 9), "part_of_day"),
    ("gistermorgen", at(2026, 11, 17, 9), "part_of_day"),
    ("gisteren morgen", at(2026, 11, 17, 9), "part_of_day"),
    ("gisteren 's avonds", at(2026, 11, 17, 20), "part_of_day"),
    ("'s avonds", at(2026, 11, 17, 20), "part_of_day"),  # no day: the most recent evening
    ("maandagavond", at(2026, 11, 16, 20), "part_of_day"),
    ("zaterdagnacht", at(2026, 11, 15, 3), "part_of_day"),  # the night from Saturday to Sunday
    # weekdays (clock A is a Wednesday)
    ("maandag", at(2026, 11, 16), "day"),
    ("op maandag", at(2026, 11, 16), "day"),
    ("woensdag", at(2026, 11, 18), "day"),  # today's weekday means today
    ("afgelopen woensdag", at(2026, 11, 11), "day"),  # "afgelopen" means before today
    ("vorige week dinsdag", at(2026, 11, 10), "day"),
    ("dinsdag vorige week", at(2026, 11, 10), "day"),
    ("afgelopen vrijdag", at(2026, 11, 13), "day"),
    ("vorige vrijdag", at(2026, 11, 13), "day"),
    ("vrijdag jl.", at(2026, 11, 13), "day"),
    ("donderdag", at(2026, 11, 12), "day"),
    # calendar dates (dateparser)
    ("12-11", at(2026, 11, 12), "day"),
    ("12/11", at(2026, 11, 12), "day"),
    ("12 november", at(2026, 11, 12), "day"),
    ("12 nov.", at(2026, 11, 12), "day"),
    ("12-11-2026", at(2026, 11, 12), "day"),
    ("12-11-2026 om 14:00", at(2026, 11, 12, 14), "time"),
    ("12 november om 14u", at(2026, 11, 12, 14), "time"),
    ("dinsdag 10 november", at(2026, 11, 10), "day"),
    ("31.12", at(2025, 12, 31), "day"),  # no valid clock time, so a date
    # a year-less date after today means last year
    ("20 november", at(2025, 11, 20), "day"),
    ("12-12", at(2025, 12, 12), "day"),
    ("18 november om 14:00", at(2025, 11, 18, 14), "time"),  # today, but 14:00 is still ahead
    # months and years
    ("oktober", at(2026, 10, 1), "month"),
    ("in oktober", at(2026, 10, 1), "month"),
    ("december", at(2025, 12, 1), "month"),
    ("2025", at(2025, 1, 1), "year"),
    # relative
    ("twee weken geleden", at(2026, 11, 4), "day"),
    ("2 weken geleden", at(2026, 11, 4), "day"),
    ("twee weken terug", at(2026, 11, 4), "day"),
    ("3 dagen geleden", at(2026, 11, 15), "day"),
    ("drie dagen geleden", at(2026, 11, 15), "day"),
    ("twaalf dagen geleden", at(2026, 11, 6), "day"),
    ("een maand geleden", at(2026, 10, 18), "day"),
    ("een jaar geleden", at(2025, 11, 18), "day"),
    ("vorige week", at(2026, 11, 9), "week"),
    ("afgelopen week", at(2026, 11, 9), "week"),
    ("deze week", at(2026, 11, 16), "week"),
    ("vorige maand", at(2026, 10, 1), "month"),
    ("vorig jaar", at(2025, 1, 1), "year"),
    ("ergens vorig jaar", at(2025, 1, 1), "year"),
    ("2 uur geleden", at(2026, 11, 18, 8, 30), "time"),
    ("een uur geleden", at(2026, 11, 18, 9, 30), "time"),
    ("een kwartier geleden", at(2026, 11, 18, 10, 15), "time"),
    ("tien minuten geleden", at(2026, 11, 18, 10, 20), "time"),
    ("net", at(2026, 11, 18, 10, 30), "time"),
    ("zojuist", at(2026, 11, 18, 10, 30), "time"),
    ("daarnet", at(2026, 11, 18, 10, 30), "time"),
    # clock times
    ("om 14:00", at(2026, 11, 17, 14), "time"),  # still ahead today, so yesterday
    ("14u", at(2026, 11, 17, 14), "time"),
    ("14.30 uur", at(2026, 11, 17, 14, 30), "time"),
    ("om 9:15", at(2026, 11, 18, 9, 15), "time"),
    ("om 10 uur", at(2026, 11, 18, 10), "time"),
    ("gisteren om 14:00", at(2026, 11, 17, 14), "time"),
    ("gisteren rond 14u30", at(2026, 11, 17, 14, 30), "time"),
    ("maandag om 14u", at(2026, 11, 16, 14), "time"),
    ("gisteravond om 11 uur", at(2026, 11, 17, 23), "time"),
    ("gistermiddag om 3 uur", at(2026, 11, 17, 15), "time"),
    ("vannacht om 2 uur", at(2026, 11, 18, 2), "time"),
    ("vorige vrijdag om half negen 's avonds", at(2026, 11, 13, 20, 30), "time"),
    ("gisteren kwart over drie 's middags", at(2026, 11, 17, 15, 15), "time"),
    ("gisteren tussen 14:00 en 16:00", at(2026, 11, 17, 14), "time"),  # a range starts at its beginning
    ("gisteren 14.00-16.00", at(2026, 11, 17, 14), "time"),
    ("november vorig jaar", at(2025, 11, 1), "month"),
    ("12e november", at(2026, 11, 12), "day"),
    # narrative answers
    ("gisteren, bij het station", at(2026, 11, 17), "day"),
    ("ik zag het op 12 november bij het station", at(2026, 11, 12), "day"),
    # vague, ongoing, future, conflicting, nonsense
    ("al maanden", None, "none"),
    ("al twee weken", None, "none"),
    ("elke zaterdag", None, "none"),  # recurring: no single start
    ("gisteren om 14:00 en om 16:00", None, "none"),  # two different times
    ("weet ik niet", None, "none"),
    ("geen idee", None, "none"),
    ("blauw paard", None, "none"),
    ("ik zag 3 mannen", None, "none"),
    ("3", None, "none"),
    ("morgen", None, "none"),
    ("overmorgen", None, "none"),
    ("volgende week", None, "none"),
    ("over 2 dagen", None, "none"),
    ("12-12-2030", None, "none"),
    ("vandaag om 14:00", None, "none"),
    ("gisteren of eergisteren", None, "none"),
    ("net na de lunch", None, "none"),
    ("", None, "none"),
    ("   ", None, "none"),
    ("🙂", None, "none"),
]


@pytest.mark.parametrize("text,expected,precision", TABLE_A, ids=[row[0] or "<empty>" for row in TABLE_A])
def test_table_at_clock_a(text, expected, precision):
    check(text, NOW, expected, precision)


TABLE_EN = [
    ("yesterday", at(2026, 11, 17), "day"),
    ("the day before yesterday", at(2026, 11, 16), "day"),
    ("last friday", at(2026, 11, 13), "day"),
    ("friday evening", at(2026, 11, 13, 20), "part_of_day"),
    ("two weeks ago", at(2026, 11, 4), "day"),
    ("an hour ago", at(2026, 11, 18, 9, 30), "time"),
    ("this morning", at(2026, 11, 18, 9), "part_of_day"),
    ("yesterday evening", at(2026, 11, 17, 20), "part_of_day"),
    ("last night", at(2026, 11, 18, 3), "part_of_day"),
    ("yesterday at 3pm", at(2026, 11, 17, 15), "time"),
    ("last week", at(2026, 11, 9), "week"),
    ("just now", at(2026, 11, 18, 10, 30), "time"),
    ("12 november", at(2026, 11, 12), "day"),
    ("11/12", at(2025, 12, 11), "day"),  # day first, also in English
    ("tonight", None, "none"),
    ("tomorrow", None, "none"),
    ("blue horse", None, "none"),
]


@pytest.mark.parametrize("text,expected,precision", TABLE_EN, ids=[row[0] for row in TABLE_EN])
def test_english(text, expected, precision):
    check(text, NOW, expected, precision, language="en")


# --------------------------------------------------------------------------- clock B: no dependence on the real date

TABLE_B = [
    ("vandaag", at(2031, 3, 3), "day"),
    ("gisteren", at(2031, 3, 2), "day"),
    ("eergisteren", at(2031, 3, 1), "day"),
    ("vanochtend", at(2031, 3, 3, 9), "part_of_day"),
    ("vanmiddag", at(2031, 3, 3, 14), "part_of_day"),
    ("vanavond", None, "none"),
    ("gisteravond", at(2031, 3, 2, 20), "part_of_day"),
    ("maandag", at(2031, 3, 3), "day"),  # said on a Monday: today
    ("afgelopen maandag", at(2031, 2, 24), "day"),
    ("maandag om 18:00", at(2031, 2, 24, 18), "time"),  # today 18:00 is ahead: last week's Monday
    ("maandagavond", at(2031, 2, 24, 20), "part_of_day"),
    ("vorige week dinsdag", at(2031, 2, 25), "day"),
    ("afgelopen vrijdag", at(2031, 2, 28), "day"),
    ("zondag", at(2031, 3, 2), "day"),
    ("12-11", at(2030, 11, 12), "day"),
    ("12 november", at(2030, 11, 12), "day"),
    ("12-11-2026 om 14:00", at(2026, 11, 12, 14), "time"),
    ("twee weken geleden", at(2031, 2, 17), "day"),
    ("een maand geleden", at(2031, 2, 3), "day"),
    ("vorige maand", at(2031, 2, 1), "month"),
    ("vorige week", at(2031, 2, 24), "week"),
    ("om 14:00", at(2031, 3, 3, 14), "time"),
    ("december", at(2030, 12, 1), "month"),
    ("29-02", at(2028, 2, 29), "day"),
    ("blauw paard", None, "none"),
]


@pytest.mark.parametrize("text,expected,precision", TABLE_B, ids=[row[0] for row in TABLE_B])
def test_table_at_clock_b(text, expected, precision):
    check(text, NOW_B, expected, precision)


@pytest.mark.parametrize(
    "now,text,expected",
    [
        (datetime(2028, 3, 5, 12, 0, tzinfo=AMS), "29-02", at(2028, 2, 29)),  # a leap year
        (datetime(2028, 3, 5, 12, 0, tzinfo=AMS), "29 februari", at(2028, 2, 29)),
        (datetime(2029, 3, 1, 12, 0, tzinfo=AMS), "29-02", at(2028, 2, 29)),
        (datetime(1990, 6, 15, 12, 0, tzinfo=AMS), "12-11", at(1989, 11, 12)),
        (datetime(1990, 6, 15, 12, 0, tzinfo=AMS), "maandag", at(1990, 6, 11)),
        (datetime(2099, 12, 31, 23, 59, tzinfo=AMS), "12 november", at(2099, 11, 12)),
        (datetime(2099, 12, 31, 23, 59, tzinfo=AMS), "vrijdag", at(2099, 12, 25)),
    ],
)
def test_far_clocks(now, text, expected):
    check(text, now, expected, "day")


def test_module_never_reads_the_system_clock():
    source = inspect.getsource(when_module)
    for forbidden in ("datetime.now(", "date.today(", "datetime.today(", "time.time(", "utcnow("):
        assert forbidden not in source


# --------------------------------------------------------------------------- parts of the day under way, time zones, DST


def test_part_of_day_under_way_starts_at_its_beginning():
    check("vanavond", at(2026, 11, 18, 19, 0), at(2026, 11, 18, 18), "part_of_day")
    check("vanmiddag", at(2026, 11, 18, 12, 30), at(2026, 11, 18, 12), "part_of_day")
    check("vannacht", at(2026, 11, 18, 1, 30), at(2026, 11, 18, 0), "part_of_day")
    check("vanavond", at(2026, 11, 18, 21, 0), at(2026, 11, 18, 20), "part_of_day")


def test_now_is_converted_to_the_requested_zone():
    # 23:30 UTC on Wednesday is already Thursday 00:30 in Amsterdam.
    now = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)
    check("vandaag", now, at(2026, 11, 19), "day")
    check("gisteren", now, at(2026, 11, 18), "day")
    new_york = ZoneInfo("America/New_York")
    check("gisteren", NOW, at(2026, 11, 17, tz=new_york), "day", tz=new_york)


def test_dst_gisteravond_after_the_clocks_went_back():
    # Sunday 25 October 2026, 03:00 CEST -> 02:00 CET. On Monday, yesterday evening is CET.
    result = parse_when("gisteravond", datetime(2026, 10, 26, 9, 0, tzinfo=AMS), AMS)
    assert same_instant(result.start, datetime(2026, 10, 25, 19, 0, tzinfo=UTC))
    assert result.start.utcoffset().total_seconds() == 3600
    assert (result.start.hour, result.precision) == (20, "part_of_day")
    # On the Sunday itself, Saturday evening was still summer time.
    result = parse_when("gisteravond", datetime(2026, 10, 25, 10, 0, tzinfo=AMS), AMS)
    assert same_instant(result.start, datetime(2026, 10, 24, 18, 0, tzinfo=UTC))
    assert result.start.utcoffset().total_seconds() == 7200
    check("vannacht", datetime(2026, 10, 25, 10, 0, tzinfo=AMS), at(2026, 10, 25, 3), "part_of_day")


def test_dst_hours_ago_lands_in_the_repeated_hour():
    # 04:00 CET = 03:00 UTC; three hours earlier is 00:00 UTC = the first 02:00 (CEST).
    result = parse_when("3 uur geleden", datetime(2026, 10, 25, 4, 0, tzinfo=AMS), AMS)
    assert same_instant(result.start, datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    assert (result.start.hour, result.start.utcoffset().total_seconds()) == (2, 7200)
    assert result.precision == "time"


def test_dst_missing_hour_moves_forward():
    # 28 March 2027: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
    result = parse_when("vannacht om 2:30", datetime(2027, 3, 28, 10, 0, tzinfo=AMS), AMS)
    assert same_instant(result.start, datetime(2027, 3, 28, 1, 30, tzinfo=UTC))
    assert (result.start.hour, result.start.minute) == (3, 30)
    assert result.precision == "time"


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "text",
    [
        "x" * 10_000,
        "gisteren " * 30,
        "1" * 200,
        "1 " * 100,
        "\x00\x01\x02",
        "gis\x00teren",
        "\ud800",
        "٣ dagen geleden",
        "99999999999999999999 dagen geleden",
        "999 jaar geleden",
        "om 99:99",
        "32-13",
        "1 januari 9999",
        "\u202egisteren",
    ],
)
def test_odd_input_is_not_understood_and_never_raises(text):
    result = parse_when(text, NOW, AMS)
    assert result.raw is text
    if result.start is not None:
        assert result.start.timestamp() <= NOW.timestamp()


def test_long_input_is_not_handed_to_the_library():
    # Speed lives in benchmarks/; here only the behaviour: a 11,000-character answer is not a date.
    assert parse_when("12-11-2026 " * 1000, NOW, AMS).start is None


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_when("gisteren", datetime(2026, 11, 18, 10, 30), AMS)


# --------------------------------------------------------------------------- properties

ZONES = [AMS, UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Pacific/Chatham")]
VOCABULARY = [
    "vandaag", "gisteren", "eergisteren", "morgen", "vanochtend", "vanavond", "vannacht", "gisteravond",
    "maandag", "zondagnacht", "vrijdag", "afgelopen", "vorige", "deze", "week", "maand", "jaar", "geleden",
    "twee", "een", "12", "3", "29", "12-11", "29-02", "31.12", "14:00", "14.30", "uur", "14u", "om", "half",
    "kwart", "over", "voor", "'s", "avonds", "middags", "nacht", "ochtend", "november", "feb", "2026", "2031",
    "net", "nu", "zojuist", "al", "maanden", "weet", "ik", "niet", "blauw", "paard", "yesterday", "last",
    "night", "tonight", "ago", "pm", "am", "this", "morning", ",", ".", "?", "🙂", "\x00",
]
sentences = st.lists(st.sampled_from(VOCABULARY), max_size=8).map(" ".join)
clocks = st.datetimes(
    min_value=datetime(1950, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.sampled_from(ZONES)
)


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(st.text(max_size=300), sentences),
    now=clocks,
    tz=st.sampled_from(ZONES),
    language=st.sampled_from(["nl", "en"]),
)
def test_any_text_never_raises_keeps_raw_and_is_never_in_the_future(text, now, tz, language):
    result = parse_when(text, now, tz, language)
    assert result.raw is text
    assert result.precision in PRECISIONS
    if result.start is None:
        assert result.precision == "none"
    else:
        assert result.precision != "none"
        assert result.start.tzinfo is tz
        assert result.start.timestamp() <= now.timestamp()
