"""Issue 19 item 3: clock hours read as the most recent plausible past moment, weekends and holidays.

Two fixed clocks on the same day: Wednesday 25 November 2026, in the morning (10:30) and in the
afternoon (16:45), Amsterdam. A third on a Saturday for "dit weekend".
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from meldbot.dialogs.when import parse_when

AMS = ZoneInfo("Europe/Amsterdam")
MORNING = datetime(2026, 11, 25, 10, 30, tzinfo=AMS)    # Wednesday
AFTERNOON = datetime(2026, 11, 25, 16, 45, tzinfo=AMS)  # the same Wednesday
SATURDAY = datetime(2026, 11, 28, 14, 0, tzinfo=AMS)


def at(y, mo, d, h=0, mi=0):
    return datetime(y, mo, d, h, mi, tzinfo=AMS)


# --------------------------------------------------------------------------- the findings of issue 19

FINDINGS = [
    # text, now, start, precision
    ("vorige week dinsdag rond 3 uur", MORNING, at(2026, 11, 17, 15), "time"),  # was 03:00 at night
    ("vorige week dinsdag rond 3 uur", AFTERNOON, at(2026, 11, 17, 15), "time"),
    ("half 4", AFTERNOON, at(2026, 11, 25, 15, 30), "time"),  # was 03:30
    ("gisteren half 4", MORNING, at(2026, 11, 24, 15, 30), "time"),
    ("afgelopen weekend", MORNING, at(2026, 11, 21), "weekend"),
    ("vorig weekend", MORNING, at(2026, 11, 21), "weekend"),
    ("rond kerst", MORNING, at(2025, 12, 22), "days"),
]


@pytest.mark.parametrize("text,now,start,precision", FINDINGS, ids=[f"{r[0]}@{r[1]:%H%M}" for r in FINDINGS])
def test_findings(text, now, start, precision):
    result = parse_when(text, now, AMS)
    assert result.raw == text
    assert result.start is not None, text
    assert result.start.timestamp() == start.timestamp(), (text, result.start.isoformat())
    assert result.precision == precision


# --------------------------------------------------------------------------- hours, weekends, holidays

# text, now, start, end (exclusive; None for a moment), precision, assumed (the bot chose a reading)
TABLE = [
    # an hour 1-12 without a marker: the most recent plausible past moment
    ("rond 3 uur", MORNING, at(2026, 11, 25, 3), None, "time", True),  # 15:00 is still ahead
    ("rond 3 uur", AFTERNOON, at(2026, 11, 25, 15), None, "time", True),
    ("om 3", MORNING, at(2026, 11, 25, 3), None, "time", True),
    ("om 3", AFTERNOON, at(2026, 11, 25, 15), None, "time", True),
    ("vandaag om 3 uur", MORNING, at(2026, 11, 25, 3), None, "time", True),
    ("vandaag om 3 uur", AFTERNOON, at(2026, 11, 25, 15), None, "time", True),
    ("half 4", MORNING, at(2026, 11, 25, 3, 30), None, "time", True),
    ("kwart over 3", AFTERNOON, at(2026, 11, 25, 15, 15), None, "time", True),
    ("kwart voor 4", AFTERNOON, at(2026, 11, 25, 15, 45), None, "time", True),
    ("gisteren rond 3 uur", MORNING, at(2026, 11, 24, 15), None, "time", True),
    ("gisteren om drie uur", AFTERNOON, at(2026, 11, 24, 15), None, "time", True),
    ("gisteren kwart over 3", MORNING, at(2026, 11, 24, 15, 15), None, "time", True),
    ("dinsdag rond 3 uur", MORNING, at(2026, 11, 24, 15), None, "time", True),
    ("maandag om 8 uur", MORNING, at(2026, 11, 23, 8), None, "time", True),   # 8-11: the morning first
    ("23 november om 3 uur", MORNING, at(2026, 11, 23, 15), None, "time", True),
    ("gisteren om 4u", MORNING, at(2026, 11, 24, 16), None, "time", True),
    ("om 5 uur", MORNING, at(2026, 11, 25, 5), None, "time", True),
    ("om 11 uur", MORNING, at(2026, 11, 24, 11), None, "time", True),  # 11:00 and 23:00 are ahead today
    ("gisteren om 9 uur", MORNING, at(2026, 11, 24, 9), None, "time", True),
    ("om 9 uur", AFTERNOON, at(2026, 11, 25, 9), None, "time", True),
    # a marker says which reading
    ("om 3 uur 's nachts", AFTERNOON, at(2026, 11, 25, 3), None, "time", False),
    ("in de nacht om 3 uur", AFTERNOON, at(2026, 11, 25, 3), None, "time", False),
    ("gisteren 's ochtends om 9 uur", MORNING, at(2026, 11, 24, 9), None, "time", False),
    ("gisteren om 3 uur 's middags", MORNING, at(2026, 11, 24, 15), None, "time", False),
    ("gisteren om 03:00", AFTERNOON, at(2026, 11, 24, 3), None, "time", False),
    ("gisteren om 15:00", MORNING, at(2026, 11, 24, 15), None, "time", False),
    ("gisteren om 3.30", MORNING, at(2026, 11, 24, 3, 30), None, "time", False),  # digital notation is 24-hour
    ("om 14 uur", MORNING, at(2026, 11, 24, 14), None, "time", False),
    ("om 12 uur", AFTERNOON, at(2026, 11, 25, 12), None, "time", False),
    ("gisteren om 3pm", MORNING, at(2026, 11, 24, 15), None, "time", False),
    # weekends: Saturday 00:00 until Sunday 24:00
    ("afgelopen weekend", AFTERNOON, at(2026, 11, 21), at(2026, 11, 23), "weekend", False),
    ("vorig weekend", MORNING, at(2026, 11, 21), at(2026, 11, 23), "weekend", False),
    ("dit weekend", MORNING, at(2026, 11, 21), at(2026, 11, 23), "weekend", False),
    ("het weekend", MORNING, at(2026, 11, 21), at(2026, 11, 23), "weekend", False),
    ("in het weekend", MORNING, at(2026, 11, 21), at(2026, 11, 23), "weekend", False),
    ("afgelopen weekend", SATURDAY, at(2026, 11, 21), at(2026, 11, 23), "weekend", False),
    ("dit weekend", SATURDAY, at(2026, 11, 28), SATURDAY, "weekend", False),  # never in the future
    ("het weekend", SATURDAY, at(2026, 11, 28), SATURDAY, "weekend", False),
    # holidays: the most recent past one
    ("rond kerst", MORNING, at(2025, 12, 22), at(2025, 12, 30), "days", False),
    ("met kerst", MORNING, at(2025, 12, 25), at(2025, 12, 27), "days", False),
    ("kerst", MORNING, at(2025, 12, 25), at(2025, 12, 27), "days", False),
    ("tweede kerstdag", MORNING, at(2025, 12, 26), None, "day", False),
    ("kerstavond", MORNING, at(2025, 12, 24, 20), None, "part_of_day", False),
    ("oud en nieuw", MORNING, at(2025, 12, 31), at(2026, 1, 2), "days", False),
    ("oudejaarsavond", MORNING, at(2025, 12, 31, 20), None, "part_of_day", False),
    ("nieuwjaarsdag", MORNING, at(2026, 1, 1), None, "day", False),
    ("koningsdag", MORNING, at(2026, 4, 27), None, "day", False),
    ("pasen", MORNING, at(2026, 4, 5), None, "day", False),
    ("met pasen", MORNING, at(2026, 4, 5), None, "day", False),
    ("tweede paasdag", MORNING, at(2026, 4, 6), None, "day", False),
    ("pinksteren", MORNING, at(2026, 5, 24), None, "day", False),
    ("hemelvaart", MORNING, at(2026, 5, 14), None, "day", False),
    ("rond pasen", MORNING, at(2026, 4, 2), at(2026, 4, 9), "days", False),
    ("pasen", datetime(2027, 3, 1, 12, 0, tzinfo=AMS), at(2026, 4, 5), None, "day", False),  # 2027's is ahead
    ("koningsdag", datetime(2027, 4, 27, 9, 0, tzinfo=AMS), at(2027, 4, 27), None, "day", False),
    ("met kerst", datetime(2026, 12, 25, 11, 0, tzinfo=AMS), at(2026, 12, 25),
     datetime(2026, 12, 25, 11, 0, tzinfo=AMS), "days", False),
    ("kerstavond om 9 uur", MORNING, at(2025, 12, 24, 21), None, "time", False),
    ("pasen rond 3 uur", MORNING, at(2026, 4, 5, 15), None, "time", True),
]


@pytest.mark.parametrize("text,now,start,end,precision,assumed", TABLE,
                         ids=[f"{r[0]}@{r[1]:%a%H%M}" for r in TABLE])
def test_readings(text, now, start, end, precision, assumed):
    result = parse_when(text, now, AMS)
    assert result.raw == text
    assert result.start is not None, text
    assert result.start.timestamp() == start.timestamp(), (text, result.start.isoformat())
    assert result.precision == precision
    assert (result.end.timestamp() if result.end else None) == (end.timestamp() if end else None), text
    assert result.assumed is assumed
    assert result.start <= now and (result.end is None or result.end <= now)


ENGLISH = [
    ("last weekend", at(2026, 11, 21), "weekend"),
    ("at christmas", at(2025, 12, 25), "days"),
    ("easter", at(2026, 4, 5), "day"),
    ("new year's eve", at(2025, 12, 31, 20), "part_of_day"),
    ("yesterday around 3", at(2026, 11, 24, 15), "time"),
]


@pytest.mark.parametrize("text,start,precision", ENGLISH, ids=[r[0] for r in ENGLISH])
def test_english_readings(text, start, precision):
    result = parse_when(text, MORNING, AMS, "en")
    assert result.start is not None, text
    assert result.start.timestamp() == start.timestamp(), (text, result.start.isoformat())
    assert result.precision == precision


def test_the_raw_text_is_kept_unchanged():
    for text in ("  Vorig Weekend!! ", "rond KERST", "gisteren rond 3 uur 🙂"):
        assert parse_when(text, MORNING, AMS).raw is text


def test_a_holiday_or_weekend_ahead_is_never_given():
    # On Christmas Eve morning, this year's Christmas is ahead: last year's.
    result = parse_when("met kerst", datetime(2026, 12, 24, 9, 0, tzinfo=AMS), AMS)
    assert result.start.timestamp() == at(2025, 12, 25).timestamp()
    result = parse_when("volgend weekend", MORNING, AMS)
    assert result.start is None
