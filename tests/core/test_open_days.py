"""Issue 20 item 4: `[reminders] open_days`, holidays the meldpunt works on (Goede Vrijdag), checked like
closing_days; `[teams] website`, `privacy_url` and `terms_url` for the app package; times read with their zone."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from meldbot.core.calendar import WorkCalendar, labelled, public_holidays
from meldbot.core.config import Config, ConfigError, config_warnings, load_config

AMS = ZoneInfo("Europe/Amsterdam")
GOOD_FRIDAY_2027 = date(2027, 3, 26)
MINIMAL = """
[storage]
allow_plaintext = true

[[meldpunt]]
id = "bergeijk"
name = "Gemeente Bergeijk"

  [[meldpunt.af]]
  name = "anna"
  console = "af"
"""


def load(tmp_path: Path, text: str, **environ: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ)


def problems(tmp_path: Path, text: str, **environ: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, **environ)
    return caught.value.problems


def calendar(config: Config) -> WorkCalendar:
    settings = config.reminders_for("bergeijk")
    return WorkCalendar(AMS, settings.office_start, settings.office_end, settings.is_closing_day,
                        settings.is_open_day)


# --- open days ---------------------------------------------------------------------------------------------

def test_good_friday_2027_is_a_closing_day_by_default_and_a_working_day_as_an_open_day(tmp_path):
    assert GOOD_FRIDAY_2027 in public_holidays(2027)
    assert not calendar(load(tmp_path, MINIMAL)).is_working_day(GOOD_FRIDAY_2027)
    open_friday = calendar(load(tmp_path, MINIMAL + '[reminders]\nopen_days = ["2027-03-26"]\n'))
    assert open_friday.is_working_day(GOOD_FRIDAY_2027)
    assert not open_friday.is_working_day(date(2028, 4, 14))          # Good Friday 2028: only that one day


def test_a_reminder_due_after_maundy_thursday_falls_on_an_open_good_friday(tmp_path):
    thursday = datetime(2027, 3, 25, 10, 0, tzinfo=AMS)
    closed = calendar(load(tmp_path, MINIMAL))
    opened = calendar(load(tmp_path, MINIMAL + '[reminders]\nopen_days = ["2027-03-26"]\n'))
    # Good Friday, the weekend and Easter Monday: Tuesday. Open on Friday: Friday.
    assert closed.add_working_days(thursday, 1) == datetime(2027, 3, 30, 10, 0, tzinfo=AMS)
    assert opened.add_working_days(thursday, 1) == datetime(2027, 3, 26, 10, 0, tzinfo=AMS)
    assert opened.working_days_between(thursday, datetime(2027, 3, 30, 10, 0, tzinfo=AMS)) == 2


def test_an_open_day_every_year_and_from_the_environment(tmp_path):
    yearly = calendar(load(tmp_path, MINIMAL + '[reminders]\nopen_days = ["12-26"]\n'))
    assert yearly.is_working_day(date(2029, 12, 26)) and not yearly.is_working_day(date(2029, 12, 25))
    from_env = load(tmp_path, MINIMAL, MELDBOT_REMINDERS__OPEN_DAYS="2027-03-26,12-26")
    assert from_env.reminders.open_days == ("2027-03-26", "12-26")


def test_an_open_day_does_not_open_a_weekend_or_a_closing_day(tmp_path):
    config = load(tmp_path, MINIMAL + '[reminders]\nopen_days = ["2027-03-27"]\nclosing_days = ["2027-03-25"]\n')
    assert not calendar(config).is_working_day(date(2027, 3, 27))      # a Saturday stays closed
    [warning] = config_warnings(config)
    assert warning.key == "reminders.open_days[0]" and "geen feestdag" in _text(warning)


def _text(warning) -> str:
    from meldbot.core.i18n import texts

    return texts("nl")(warning.text_key, **warning.params)


@pytest.mark.parametrize("day", ["2027-02-30", "03-32", "26-03-2027", "Goede Vrijdag"])
def test_a_wrong_open_day_is_a_dutch_error_naming_the_key(tmp_path, day):
    [(key, message)] = problems(tmp_path, MINIMAL + f'[reminders]\nopen_days = ["2027-03-26", "{day}"]\n')
    assert key == "reminders.open_days[1]" and day in message


@pytest.mark.parametrize("closing, opening", [("2027-03-26", "2027-03-26"), ("05-05", "2030-05-05"),
                                              ("2030-05-05", "05-05")])
def test_a_day_both_closed_and_open_is_an_error(tmp_path, closing, opening):
    text = MINIMAL + f'[reminders]\nclosing_days = ["12-24", "{closing}"]\nopen_days = ["{opening}"]\n'
    [(key, message)] = problems(tmp_path, text)
    assert key == "reminders.open_days[0]" and "closing_days" in message and "niet allebei" in message


def test_a_meldpunt_that_opens_a_day_the_defaults_close_is_an_error_too(tmp_path):
    text = (MINIMAL + '  [meldpunt.reminders]\n  open_days = ["2027-03-26"]\n'
            + '[reminders]\nclosing_days = ["2027-03-26"]\n')
    assert [key for key, _ in problems(tmp_path, text)] == ["meldpunt[0].reminders.open_days[0]"]
    fine = load(tmp_path, MINIMAL + '  [meldpunt.reminders]\n  open_days = ["2027-03-26"]\n')
    assert fine.reminders.open_days == () and calendar(fine).is_working_day(GOOD_FRIDAY_2027)


# --- the Teams app package's addresses ---------------------------------------------------------------------

def test_the_teams_addresses_default_to_the_website(tmp_path):
    config = load(tmp_path, MINIMAL + '[teams]\nwebsite = "https://www.bergeijk.nl"\n')
    assert config.teams.privacy_address == config.teams.terms_address == "https://www.bergeijk.nl"
    both = load(tmp_path, MINIMAL + '[teams]\nwebsite = "https://www.bergeijk.nl"\n'
                'privacy_url = "https://www.bergeijk.nl/privacy"\n')
    assert both.teams.privacy_address == "https://www.bergeijk.nl/privacy"
    assert load(tmp_path, MINIMAL).teams.website == ""


@pytest.mark.parametrize("key", ["website", "privacy_url", "terms_url"])
@pytest.mark.parametrize("value", ["http://www.bergeijk.nl", "www.bergeijk.nl", "https://", "https://bergeijk nl"])
def test_a_teams_address_must_be_https(tmp_path, key, value):
    [(where, message)] = problems(tmp_path, MINIMAL + f'[teams]\n{key} = "{value}"\n')
    assert where == f"teams.{key}" and "https" in message


# --- times with their zone ---------------------------------------------------------------------------------

def test_a_moment_reads_on_the_meldpunts_clock_with_its_zone():
    assert labelled(datetime(2026, 11, 30, 8, 15, tzinfo=timezone.utc), AMS) == "2026-11-30 09:15 CET"
    assert labelled(datetime(2026, 7, 1, 8, 15, 7, tzinfo=timezone.utc), AMS, seconds=True) == \
        "2026-07-01 10:15:07 CEST"
    with pytest.raises(ValueError):
        labelled(datetime(2026, 7, 1, 8, 15), AMS)


def test_the_calendar_without_open_days_keeps_its_old_signature():
    plain = WorkCalendar(AMS, time(8, 30), time(17, 0))
    assert not plain.is_working_day(GOOD_FRIDAY_2027)
