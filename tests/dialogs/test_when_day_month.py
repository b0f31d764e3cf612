""""12 november" is read by meldbot's own grammar (when._try_day_month), not by dateparser, which takes about
0.7 ms for it. These tests hold that reading to dateparser's for every day of every month, with and without a
year, under each month name and abbreviation, on days around the turn of the year and a leap day."""

from __future__ import annotations

import re
from calendar import monthrange
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from meldbot.dialogs import when
from meldbot.dialogs.when import _MONTH_NUMBERS, parse_when

TZ = ZoneInfo("Europe/Amsterdam")
NOWS = [
    datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc),    # a Wednesday in November, as the benchmarks
    datetime(2027, 1, 2, 23, 30, tzinfo=timezone.utc),     # just after New Year (in Amsterdam: 3 January)
    datetime(2028, 2, 29, 12, 0, tzinfo=timezone.utc),     # a leap day
    datetime(2028, 1, 15, 12, 0, tzinfo=timezone.utc),     # a leap year, before its 29 February
]
DAYS_IN = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _by_dateparser(monkeypatch, text: str, now: datetime):
    with monkeypatch.context() as m:
        m.setattr(when, "_try_day_month", lambda *args: None)
        return parse_when(text, now, TZ)


def _reading(found) -> tuple:
    return found.start, found.precision, found.end, found.assumed


def _texts() -> list[str]:
    full = {number: name for name, number in reversed(list(_MONTH_NUMBERS.items()))}   # the first (Dutch) name
    texts = []
    for month, name in sorted(full.items()):
        for day in range(1, DAYS_IN[month] + 2):   # and one day past the month's end
            texts.append(f"{day} {name}")
    for name in _MONTH_NUMBERS:                      # every other name and abbreviation, a few days each
        for day in (1, 9, 28, 31):
            texts += [f"{day} {name}", f"{day} {name}."]
    return texts


@pytest.mark.parametrize("now", NOWS, ids=lambda n: n.date().isoformat())
def test_a_day_and_month_read_as_dateparser_reads_it(monkeypatch, now):
    real = when._try_dateparser
    asked = []   # the texts of ours that still went to dateparser
    differ = []
    variants = [v for text in _texts()
                for v in (text, f"{text} {now.year - 1}", f"{text} {now.year}", f"op {text.upper()}")]
    for variant in variants:
        before = len(asked)
        with monkeypatch.context() as m:
            m.setattr(when, "_try_dateparser", lambda *args: asked.append(variant) or real(*args))
            ours = parse_when(variant, now, TZ)
        taken = len(asked) == before
        # "febr" is a Dutch abbreviation dateparser does not know (it reads nothing): where the fast reading
        # took it, held to dateparser's reading of "feb".
        theirs = _by_dateparser(monkeypatch, re.sub(r"\bfebr\b", "feb", variant, flags=re.I) if taken else variant, now)
        if _reading(ours) != _reading(theirs):
            differ.append((variant, ours, theirs))
    assert not differ, differ[:5]
    # Dateparser still reads only what the fast reading leaves: a day past its month's end ("31 april").
    assert asked
    for variant in asked:
        day, name, *year = variant.lower().removeprefix("op ").replace(".", "").split()
        year = int(year[0]) if year else now.astimezone(TZ).year
        assert int(day) > monthrange(year, _MONTH_NUMBERS[name])[1], variant


def test_what_the_fast_reading_leaves_to_dateparser(monkeypatch):
    now = NOWS[0]
    real = when._try_dateparser
    for text in ("12 november 25", "dinsdag 12 november", "begin november", "31 april", "29 februari"):
        asked = []
        with monkeypatch.context() as m:
            m.setattr(when, "_try_dateparser", lambda *args: asked.append(args[0]) or real(*args))
            ours = parse_when(text, now, TZ)
        assert asked, text   # dateparser read it
        assert _reading(ours) == _reading(_by_dateparser(monkeypatch, text, now))


def test_the_fast_reading_answers_12_november(monkeypatch):
    calls = []
    real = when._try_dateparser
    monkeypatch.setattr(when, "_try_dateparser", lambda *args: calls.append(args) or real(*args))
    result = parse_when("12 november", NOWS[0], TZ)
    assert (result.start.date().isoformat(), result.precision) == ("2026-11-12", "day")
    assert calls == []
    result = parse_when("20 november", NOWS[0], TZ)   # later this month: last year's
    assert result.start.date().isoformat() == "2025-11-20"
    assert calls == []
