"""Monitoring figures against a seeded data set with hand-computed answers; the text, the chart, the export."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from meldbot.core.calendar import WorkCalendar
from meldbot.core.i18n import texts
from meldbot.service.monitoring import (Figures, Period, SignalFacts, chart_png, export_anonymous, figures,
                                parse_period, report_text)

AMS = ZoneInfo("Europe/Amsterdam")
UTC = timezone.utc
CAL = WorkCalendar(AMS, time(8, 30), time(17, 0), lambda d: (d.month, d.day) == (5, 5))
TODAY = date(2026, 11, 23)


def calendars(meldpunt_id: str) -> WorkCalendar:
    return CAL


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


def d26(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return at(2026, month, day, hour, minute)


def fact(created, form, context, partners=(), fwd=None, fb=None, told=None, meldpunt="bergeijk") -> SignalFacts:
    return SignalFacts(meldpunt, created, form, context, tuple(partners), fwd, fb, told)


# Thirty signals: 28 created in 2026 (Amsterdam time), 2 just outside it. The comments give the
# working days (partner feedback after passing on / melder told after the signal) that the tests expect.
FACTS = [
    # January: 4
    fact(datetime(2025, 12, 31, 23, 30, tzinfo=UTC), "seksueel", "balie"),                 # 1: 1 Jan 00:30 local
    fact(d26(1, 5), "seksueel", "balie", ["politie"], d26(1, 6), d26(1, 8, 14), d26(1, 9, 9)),   # 2: fb 2, told 4
    fact(d26(1, 12, 11), "arbeid", "toezicht", ["nla"], d26(1, 12, 15)),                     # 3
    fact(d26(1, 20, 9), "onbekend", "balie", told=d26(1, 21)),                               # 4: told 1
    # February: none. March: 6
    fact(d26(3, 2), "arbeid", "toezicht", ["nla"], d26(3, 3), d26(3, 10), d26(3, 11)),       # 5: fb 5, told 7
    fact(d26(3, 3), "arbeid", "toezicht", ["nla"], d26(3, 3, 12), d26(3, 17)),               # 6: fb 10
    fact(d26(3, 4), "arbeid", "vergunning", ["nla", "politie"], d26(3, 5), d26(3, 6, 16),
         d26(3, 9)),                                                                         # 7: fb 1, told 3 (weekend)
    fact(d26(3, 10), "seksueel", "huisbezoek", ["politie"], d26(3, 13, 16), d26(3, 16, 9)),  # 8: fb 1 (Fri -> Mon)
    fact(d26(3, 18), "crimineel", "anders"),                                                 # 9
    fact(d26(3, 31, 23, 30), "arbeid", "balie"),                                             # 10
    # April: 2
    fact(d26(4, 2), "seksueel", "balie", ["politie"], d26(4, 2, 15), d26(4, 7),
         d26(4, 8)),                                                                         # 11: fb 1 (Easter), told 2
    fact(d26(4, 27, 12), "arbeid", "huisbezoek", ["nla"], d26(4, 28), d26(4, 30),
         d26(5, 6)),                                                                         # 12: fb 2, told 6 (5 May)
    # May: 3
    fact(d26(5, 4), "arbeid", "toezicht", ["kmar"], d26(5, 4, 14), d26(5, 7)),               # 13: fb 2 (5 May closed)
    fact(d26(5, 13), "arbeid", "toezicht", told=d26(5, 15)),                                 # 14: told 1 (Ascension)
    fact(d26(5, 26), "orgaan", "anders", ["politie"], d26(5, 26, 15)),                       # 15
    # June: none. July: 1
    fact(d26(7, 15), "seksueel", "huisbezoek", ["politie", "zorgcoordinator"], d26(7, 15, 14), d26(7, 22),
         d26(7, 23)),                                                                        # 16: fb 5, told 6
    # August: none. September: 2
    fact(d26(9, 1), "arbeid", "balie"),                                                      # 17
    fact(d26(9, 30), "crimineel", "toezicht", ["politie"], d26(10, 1), d26(10, 2)),          # 18: fb 1
    # October: 3
    fact(d26(10, 5), "arbeid", "toezicht", ["nla"], d26(10, 6), d26(10, 20)),                # 19: fb 10
    fact(d26(10, 23, 16), "seksueel", "balie", ["politie"], d26(10, 23, 16, 30), d26(10, 26, 9),
         d26(10, 27)),                                                                       # 20: fb 1, told 2 (DST)
    fact(d26(10, 31), "arbeid", "anders"),                                                   # 21
    # November: 5
    fact(d26(11, 2, 9), "arbeid", "huisbezoek", ["politie", "nla"], d26(11, 2, 11), d26(11, 6, 9),
         d26(11, 9, 9)),                                                                     # 22: fb 4, told 5
    fact(d26(11, 3), "seksueel", "balie"),                                                   # 23
    fact(d26(11, 4), "onbekend", "vergunning"),                                              # 24
    fact(d26(11, 10), "arbeid", "toezicht", ["nla"], d26(11, 11)),                           # 25
    fact(d26(11, 18), "crimineel", "anders", ["veilig_thuis"], d26(11, 18, 14), told=d26(11, 19)),  # 26: told 1
    # December: 2
    fact(d26(12, 23, 9), "crimineel", "huisbezoek", ["politie"], d26(12, 24), d26(12, 29),
         d26(12, 30)),                                                           # 27: fb 2 (Christmas), told 4
    fact(d26(12, 31, 23, 30), "seksueel", "balie"),                                          # 28
    # Outside 2026 in Amsterdam time.
    fact(at(2025, 12, 31, 10), "arbeid", "balie", ["kmar"], at(2026, 1, 2), at(2026, 1, 5), at(2026, 1, 6)),
    fact(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "orgaan", "balie", ["politie"]),        # 1 Jan 2027 00:30 local
]
assert len(FACTS) == 30

YEAR = parse_period("2026", TODAY)
MONTHS_2026 = (("2026-01", 4), ("2026-02", 0), ("2026-03", 6), ("2026-04", 2), ("2026-05", 3), ("2026-06", 0),
               ("2026-07", 1), ("2026-08", 0), ("2026-09", 2), ("2026-10", 3), ("2026-11", 5), ("2026-12", 2))
PER_FORM = (("seksueel", 8), ("arbeid", 13), ("crimineel", 4), ("orgaan", 1), ("onbekend", 2))
PER_CONTEXT = (("balie", 9), ("huisbezoek", 5), ("toezicht", 8), ("vergunning", 2), ("anders", 4))
PER_PARTNER = (("politie", 10), ("nla", 8), ("kmar", 1), ("veilig_thuis", 1), ("zorgcoordinator", 1))


# -- figures ---------------------------------------------------------------------------------------

def test_the_year_figures_match_the_hand_computed_answers():
    f = figures(FACTS, YEAR, calendars)
    assert f.period == Period(date(2026, 1, 1), date(2027, 1, 1), "2026")
    assert f.total == 28
    assert f.per_month == MONTHS_2026
    assert f.per_form == PER_FORM
    assert f.per_context == PER_CONTEXT
    assert f.passed_on == 18
    assert f.per_partner == PER_PARTNER
    # Partner feedback: 1 1 1 1 1 2 2 2 2 4 5 5 10 10 -> (2 + 2) / 2.
    assert (f.median_days_to_partner_feedback, f.partner_feedback_cases) == (2.0, 14)
    # Melder told: 1 1 1 2 2 3 4 4 5 6 6 7 -> (3 + 4) / 2.
    assert (f.median_days_to_melder_informed, f.melder_informed_cases) == (3.5, 12)


@pytest.mark.parametrize("number, feedback_days, told_days", [
    (2, 2, 4),       # Tuesday -> Thursday; Monday -> Friday
    (7, 1, 3),       # told across a weekend
    (8, 1, None),    # Friday 16:00 -> Monday 09:00 is one working day
    (11, 1, 2),      # Thursday -> Tuesday over Good Friday, the weekend and Easter Monday
    (12, 2, 6),      # told across the configured closing day 5 May
    (13, 2, None),   # 5 May closed: 6 and 7 May
    (14, None, 1),   # Ascension day
    (20, 1, 2),      # over the end of summer time
    (27, 2, 4),      # over Christmas and a weekend
])
def test_each_gap_counts_working_days(number, feedback_days, told_days):
    f = figures([FACTS[number - 1]], YEAR, calendars)
    assert f.median_days_to_partner_feedback == (None if feedback_days is None else float(feedback_days))
    assert f.median_days_to_melder_informed == (None if told_days is None else float(told_days))


def test_a_signal_counts_by_its_local_date_at_the_year_boundary():
    first, last = FACTS[0], FACTS[-1]
    assert figures([first], YEAR, calendars).per_month[0] == ("2026-01", 1)             # 23:30 UTC on 31 Dec 2025
    assert figures([first], parse_period("2025", TODAY), calendars).total == 0
    assert figures([last], YEAR, calendars).total == 0                                # 00:30 on 1 Jan 2027 local
    assert figures([last], parse_period("2027-01", TODAY), calendars).total == 1


def test_a_month_and_a_quarter_count_only_their_own_signals():
    november = figures(FACTS, parse_period("2026-11", TODAY), calendars)
    assert (november.total, november.per_month, november.passed_on) == (5, (("2026-11", 5),), 3)
    assert november.per_partner == (("nla", 2), ("politie", 1), ("veilig_thuis", 1))
    q4 = figures(FACTS, parse_period("2026-Q4", TODAY), calendars)
    assert q4.total == 10 and q4.per_month == (("2026-10", 3), ("2026-11", 5), ("2026-12", 2))
    assert q4.per_form == (("seksueel", 3), ("arbeid", 4), ("crimineel", 2), ("orgaan", 0), ("onbekend", 1))
    assert (q4.median_days_to_partner_feedback, q4.partner_feedback_cases) == (3.0, 4)   # 10 1 4 2
    assert (q4.median_days_to_melder_informed, q4.melder_informed_cases) == (3.0, 4)     # 2 5 1 4


def test_a_period_without_signals_has_zeros_and_no_medians():
    f = figures(FACTS, parse_period("2026-06", TODAY), calendars)
    assert (f.total, f.per_month, f.passed_on, f.per_partner) == (0, (("2026-06", 0),), 0, ())
    assert all(n == 0 for _, n in f.per_form + f.per_context)
    assert f.median_days_to_partner_feedback is None and f.median_days_to_melder_informed is None


def test_a_partner_named_twice_on_one_signal_counts_once():
    twice = fact(d26(6, 1), "arbeid", "balie", ["nla", "nla"], d26(6, 1, 14))
    assert figures([twice], YEAR, calendars).per_partner == (("nla", 1),)


def test_each_meldpunt_uses_its_own_time_zone():
    lisbon = WorkCalendar(ZoneInfo("Europe/Lisbon"), time(8, 30), time(17, 0))
    late = fact(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "arbeid", "balie", meldpunt="lissabon")
    pick = {"bergeijk": CAL, "lissabon": lisbon}.__getitem__
    assert figures([late], YEAR, pick).total == 1                   # still 31 December in Lisbon
    assert figures([FACTS[-1]], YEAR, pick).total == 0              # already 2027 in Amsterdam


# -- periods ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, label, start, end", [
    ("", "2026", date(2026, 1, 1), date(2027, 1, 1)),
    ("   ", "2026", date(2026, 1, 1), date(2027, 1, 1)),
    ("2026", "2026", date(2026, 1, 1), date(2027, 1, 1)),
    ("2025", "2025", date(2025, 1, 1), date(2026, 1, 1)),
    (" 2026 ", "2026", date(2026, 1, 1), date(2027, 1, 1)),
    ("2026-11", "2026-11", date(2026, 11, 1), date(2026, 12, 1)),
    ("2026-1", "2026-01", date(2026, 1, 1), date(2026, 2, 1)),
    ("2026-01", "2026-01", date(2026, 1, 1), date(2026, 2, 1)),
    ("2026-12", "2026-12", date(2026, 12, 1), date(2027, 1, 1)),
    ("2026-Q1", "2026-Q1", date(2026, 1, 1), date(2026, 4, 1)),
    ("2026-q4", "2026-Q4", date(2026, 10, 1), date(2027, 1, 1)),
    ("2026-K2", "2026-Q2", date(2026, 4, 1), date(2026, 7, 1)),
    ("2026-k3", "2026-Q3", date(2026, 7, 1), date(2026, 10, 1)),
])
def test_periods_are_read_as_agreed(typed, label, start, end):
    assert parse_period(typed, TODAY) == Period(start, end, label)


def test_an_empty_period_is_the_year_of_today():
    assert parse_period("", date(2027, 1, 1)) == Period(date(2027, 1, 1), date(2028, 1, 1), "2027")


@pytest.mark.parametrize("typed", ["2026-13", "2026-0", "2026-00", "2026-Q5", "2026-Q0", "Q4", "abc", "26",
                                   "20266", "2026-11-01", "2026-011", "2026/11", "2026 Q4", "11-2026", "0000",
                                   "9999", "２０２６", "2026-", "-2026"])
def test_a_bad_period_is_refused(typed):
    assert parse_period(typed, TODAY) is None


# -- text and chart --------------------------------------------------------------------------------

def test_the_dutch_report_text_shows_every_number():
    text = report_text(figures(FACTS, YEAR, calendars), texts("nl"))
    lines = text.splitlines()
    assert lines[0] == "Cijfers 2026: 28 melding(en)"
    for line in ["  januari 2026: 4", "  februari 2026: 0", "  maart 2026: 6", "  november 2026: 5",
                 "  december 2026: 2", "  seksuele uitbuiting: 8", "  arbeidsuitbuiting: 13",
                 "  gedwongen orgaanverwijdering: 1", "  soort nog onbekend: 2", "  aan de balie: 9",
                 "  bij controle of toezicht: 8", "  anders: 4",
                 "Doorgezet naar een partner: 18 van de 28 meldingen.",
                 "  politie: 10", "  nla: 8", "  kmar: 1",
                 "Terugkoppeling van de partner: de helft kwam binnen 2 werkdagen na het doorzetten "
                 "(aantal meldingen met terugkoppeling: 14).",
                 "Bericht aan de melder: de helft kreeg dit binnen 3,5 werkdagen na de melding "
                 "(aantal meldingen met een bericht: 12)."]:
        assert line in lines, line
    assert sum(1 for line in lines if line.startswith("  ") and line.endswith(" 2026: 0")) == 3


def test_the_english_report_text_uses_english_words_and_a_decimal_point():
    text = report_text(figures(FACTS, YEAR, calendars), texts("en"))
    assert text.startswith("Figures 2026: 28 report(s)\n")
    assert "  March 2026: 6" in text and "  labour exploitation: 13" in text and "within 3.5 working days" in text


def test_the_report_text_of_an_empty_period_says_so():
    text = report_text(figures([], YEAR, calendars), texts("nl"))
    assert text == "Cijfers 2026: 0 melding(en)\nIn deze periode zijn er geen meldingen."


def test_the_report_text_without_feedback_says_there_is_no_data_yet():
    text = report_text(figures([FACTS[8]], YEAR, calendars), texts("nl"))
    assert "Terugkoppeling van de partner: hierover zijn nog geen gegevens." in text
    assert "Bericht aan de melder: hierover zijn nog geen gegevens." in text
    assert "Per partner" not in text


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    assert struct.unpack(">I", png[29:33])[0] == zlib.crc32(png[12:29])
    return struct.unpack(">II", png[16:24])


def test_the_chart_is_a_png_of_exactly_800_by_400():
    png = chart_png(figures(FACTS, YEAR, calendars), texts("nl"))
    assert png_size(png) == (800, 400)
    assert png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize("width, height", [(640, 333), (1201, 599), (300, 150)])
def test_the_chart_has_the_size_asked_for(width, height):
    png = chart_png(figures(FACTS, parse_period("2026-Q4", TODAY), calendars), texts("en"),
                    width_px=width, height_px=height)
    assert png_size(png) == (width, height)


def test_the_chart_of_an_empty_month_is_still_a_picture():
    assert png_size(chart_png(figures([], parse_period("2026-02", TODAY), calendars), texts("nl"))) == (800, 400)


# -- anonymous export ------------------------------------------------------------------------------

EERSEL = [fact(d26(6, 1), "arbeid", "balie", meldpunt="eersel")]


def csv_cells(out: str) -> dict[tuple[str, str, str], str]:
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["meldpunt", "dimensie", "sleutel", "aantal"]
    cells = {(m, d, k): v for m, d, k, v in rows[1:]}
    assert len(cells) == len(rows) - 1
    return cells


def test_the_csv_export_suppresses_1_to_4_keeps_0_and_shows_5_and_more():
    cells = csv_cells(export_anonymous({"bergeijk": FACTS, "eersel": EERSEL}, YEAR, calendars, "csv"))
    assert cells[("bergeijk", "totaal", "meldingen")] == "x"      # 28, else eersel's 1 is 29 - 28
    assert cells[("bergeijk", "maand", "2026-01")] == "x"         # 4
    assert cells[("bergeijk", "maand", "2026-02")] == "0"
    assert cells[("bergeijk", "maand", "2026-03")] == "6"
    assert cells[("bergeijk", "maand", "2026-07")] == "x"         # 1
    assert cells[("bergeijk", "maand", "2026-11")] == "5"         # the smallest shown count
    assert cells[("bergeijk", "soort", "seksueel")] == "8"
    assert cells[("bergeijk", "soort", "crimineel")] == "x"       # 4
    assert cells[("bergeijk", "soort", "orgaan")] == "x"          # 1
    assert cells[("bergeijk", "context", "huisbezoek")] == "5"
    assert cells[("bergeijk", "doorgezet", "meldingen")] == "18"
    assert cells[("bergeijk", "partner", "politie")] == "10"
    assert cells[("bergeijk", "partner", "kmar")] == "x"
    assert cells[("bergeijk", "mediaan_werkdagen", "tot_terugkoppeling_partner")] == "2"    # 14 signals
    assert cells[("bergeijk", "mediaan_werkdagen", "tot_melder_geinformeerd")] == "3.5"     # 12 signals
    assert cells[("eersel", "totaal", "meldingen")] == "x"
    assert cells[("eersel", "maand", "2026-06")] == "x"
    assert cells[("eersel", "maand", "2026-01")] == "0"
    assert cells[("eersel", "doorgezet", "meldingen")] == "0"
    assert cells[("eersel", "mediaan_werkdagen", "tot_melder_geinformeerd")] == ""          # no signals at all
    assert not any(m == "eersel" and d == "partner" for m, d, _ in cells)


def test_the_csv_export_has_totaal_rows_over_all_meldpunten():
    cells = csv_cells(export_anonymous({"bergeijk": FACTS, "eersel": EERSEL}, YEAR, calendars, "csv"))
    assert cells[("totaal", "totaal", "meldingen")] == "29"
    assert cells[("totaal", "maand", "2026-06")] == "x"
    assert cells[("totaal", "soort", "seksueel")] == "8"
    assert cells[("totaal", "context", "toezicht")] == "8"
    assert cells[("totaal", "partner", "politie")] == "10"
    assert [m for m in dict.fromkeys(m for m, _, _ in cells)] == ["bergeijk", "eersel", "totaal"]
    assert sum(1 for m, d, _ in cells if m == "totaal" and d == "maand") == 12


def test_a_median_of_fewer_than_5_signals_is_suppressed():
    few = FACTS[:7]                                               # partner feedback on 4, melder told on 4
    cells = csv_cells(export_anonymous({"bergeijk": few}, YEAR, calendars, "csv"))
    assert cells[("bergeijk", "mediaan_werkdagen", "tot_terugkoppeling_partner")] == "<5"
    assert cells[("bergeijk", "mediaan_werkdagen", "tot_melder_geinformeerd")] == "<5"
    five = FACTS[:8]                                              # partner feedback on 5: 2 5 10 1 1
    cells = csv_cells(export_anonymous({"bergeijk": five}, YEAR, calendars, "csv"))
    assert cells[("bergeijk", "mediaan_werkdagen", "tot_terugkoppeling_partner")] == "2"


def test_the_export_holds_no_free_text_references_or_days():
    out = export_anonymous({"bergeijk": FACTS, "eersel": EERSEL}, YEAR, calendars, "csv")
    allowed = {"meldpunt", "dimensie", "sleutel", "aantal", "bergeijk", "eersel", "totaal", "meldingen", "maand",
               "soort", "context", "doorgezet", "partner", "mediaan_werkdagen", "tot_terugkoppeling_partner",
               "tot_melder_geinformeerd", "politie", "nla", "kmar", "veilig_thuis", "zorgcoordinator", "<5", "x", ""}
    allowed |= {k for k, _ in PER_FORM} | {k for k, _ in PER_CONTEXT} | {m for m, _ in MONTHS_2026}
    for row in csv.reader(io.StringIO(out)):
        for cell in row:
            assert cell in allowed or cell.replace(".", "", 1).isdigit(), cell
    assert "MH-" not in out and "2026-11-02" not in out and ":" not in out


def test_the_json_export_marks_suppressed_counts_with_null():
    data = json.loads(export_anonymous({"bergeijk": FACTS, "eersel": EERSEL}, YEAR, calendars, "json"))
    assert data["periode"] == "2026"
    rows = {(r["meldpunt"], r["dimensie"], r["sleutel"]): r for r in data["rijen"]}
    assert all(set(r) == {"meldpunt", "dimensie", "sleutel", "aantal", "suppressed"} for r in data["rijen"])
    assert rows[("bergeijk", "soort", "seksueel")] == {"meldpunt": "bergeijk", "dimensie": "soort",
                                                       "sleutel": "seksueel", "aantal": 8, "suppressed": False}
    assert rows[("bergeijk", "soort", "crimineel")] == {"meldpunt": "bergeijk", "dimensie": "soort",
                                                        "sleutel": "crimineel", "aantal": None, "suppressed": True}
    assert rows[("bergeijk", "soort", "orgaan")]["aantal"] is None
    assert rows[("bergeijk", "maand", "2026-02")] | {} == {"meldpunt": "bergeijk", "dimensie": "maand",
                                                           "sleutel": "2026-02", "aantal": 0, "suppressed": False}
    assert rows[("bergeijk", "maand", "2026-11")]["aantal"] == 5
    assert rows[("bergeijk", "mediaan_werkdagen", "tot_melder_geinformeerd")]["aantal"] == 3.5
    assert rows[("eersel", "totaal", "meldingen")] | {} == {"meldpunt": "eersel", "dimensie": "totaal",
                                                            "sleutel": "meldingen", "aantal": None, "suppressed": True}
    assert rows[("eersel", "mediaan_werkdagen", "tot_terugkoppeling_partner")]["suppressed"] is False
    assert rows[("eersel", "mediaan_werkdagen", "tot_terugkoppeling_partner")]["aantal"] is None
    assert rows[("totaal", "totaal", "meldingen")]["aantal"] == 29


def test_json_and_csv_export_give_the_same_cells():
    by_meldpunt = {"bergeijk": FACTS, "eersel": EERSEL}
    cells = csv_cells(export_anonymous(by_meldpunt, YEAR, calendars, "csv"))
    data = json.loads(export_anonymous(by_meldpunt, YEAR, calendars, "json"))
    assert len(data["rijen"]) == len(cells)
    for r in data["rijen"]:
        hidden = "<5" if r["dimensie"] == "mediaan_werkdagen" else "x"
        expected = hidden if r["suppressed"] else "" if r["aantal"] is None else f"{r['aantal']:g}"
        assert cells[(r["meldpunt"], r["dimensie"], r["sleutel"])] == expected


def test_an_unknown_export_format_or_a_meldpunt_called_totaal_is_refused():
    with pytest.raises(ValueError):
        export_anonymous({"bergeijk": FACTS}, YEAR, calendars, "xlsx")
    with pytest.raises(ValueError):
        export_anonymous({"totaal": FACTS}, YEAR, calendars, "csv")


def test_figures_is_a_plain_value():
    f = figures(FACTS, YEAR, calendars)
    assert isinstance(f, Figures) and f == figures(list(reversed(FACTS)), YEAR, calendars)
