"""Issue 20 items 3 and 4 as the administrator meets them: `meldbot audit` in the meldpunt's time zone, labelled;
`meldbot teams-manifest` from [teams] website without flags; reminders on an open Good Friday."""

from __future__ import annotations

import json
import time
import zipfile
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from meldbot.core.clock import ManualClock
from meldbot.run.app import build_app
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated, report_as, run_cli

AMS = ZoneInfo("Europe/Amsterdam")
APP_ID = "6f1c2b1e-8d7a-4c51-9a3e-2b7d9c4e1f00"


@pytest.fixture
def server_on_utc(monkeypatch):
    """The server's own clock on UTC, as many are: the meldpunt's zone must not come from it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- audit -------------------------------------------------------------------------------------------------

async def test_the_audit_prints_times_on_the_meldpunts_clock_and_says_which(sqlite_url, monkeypatch, capsys,
                                                                            server_on_utc):
    await migrated(sqlite_url)
    winter = ManualClock(datetime(2026, 11, 30, 8, 15, tzinfo=timezone.utc))     # 09:15 in Bergeijk
    async with build_app(make_config(sqlite_url), clock=winter, notifiers={"console": FakeNotifier()},
                         mode="chat") as app:
        await report_as(app, "piet")
    capsys.readouterr()
    assert await run_cli(monkeypatch, sqlite_url, "audit", "1",
                         MELDBOT_TEST_CLOCK="2026-07-01T08:00:00+00:00") == 0     # summer: 10:00 CEST
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Tijden in Europe/Amsterdam (de tijdzone van Gemeente Bergeijk)."
    entries = lines[2:]
    assert entries and all(line.startswith("2026-") for line in entries)
    assert any(line.startswith("2026-11-30 09:15:00 CET ") for line in entries), entries
    assert entries[-1].startswith("2026-07-01 10:00:00 CEST ") and "audit-gelezen" in entries[-1]
    assert not any("08:15" in line for line in entries)


async def test_meldbot_reminders_names_the_time_zone_of_its_times(sqlite_url, monkeypatch, capsys, server_on_utc):
    await migrated(sqlite_url)
    clock = ManualClock(datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc))
    async with build_app(make_config(sqlite_url), clock=clock, notifiers={"console": FakeNotifier()},
                         mode="chat") as app:
        await report_as(app, "piet")
    capsys.readouterr()
    assert await run_cli(monkeypatch, sqlite_url, "reminders", MELDBOT_TEST_CLOCK="2026-11-18T12:00:00+01:00") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "tijdzone Europe/Amsterdam" in lines[0]
    assert any(line.startswith("2026-11-19 10:30  MH-2026-0001") for line in lines), lines


# --- the Teams app package from the configuration ----------------------------------------------------------

async def test_teams_manifest_takes_its_addresses_from_the_configuration(sqlite_url, tmp_path, monkeypatch, capsys):
    output = tmp_path / "app.zip"
    env = {"MELDBOT_TEAMS__APP_ID": APP_ID, "MELDBOT_TEAMS__WEBSITE": "https://www.bergeijk.nl",
           "MELDBOT_TEAMS__TERMS_URL": "https://www.bergeijk.nl/voorwaarden"}
    assert await run_cli(monkeypatch, sqlite_url, "teams-manifest", "--output", str(output), **env) == 0
    developer = json.loads(zipfile.ZipFile(output).read("manifest.json"))["developer"]
    assert developer["websiteUrl"] == developer["privacyUrl"] == "https://www.bergeijk.nl"
    assert developer["termsOfUseUrl"] == "https://www.bergeijk.nl/voorwaarden"
    # A flag still overrides its key, and an empty privacy address follows the website that is used.
    assert await run_cli(monkeypatch, sqlite_url, "teams-manifest", "--output", str(output),
                         "--website", "https://meldpunt.bergeijk.nl", **env) == 0
    developer = json.loads(zipfile.ZipFile(output).read("manifest.json"))["developer"]
    assert developer["websiteUrl"] == developer["privacyUrl"] == "https://meldpunt.bergeijk.nl"
    assert developer["termsOfUseUrl"] == "https://www.bergeijk.nl/voorwaarden"


async def test_teams_manifest_without_a_website_names_the_key_in_one_line(sqlite_url, tmp_path, monkeypatch, capsys):
    output = tmp_path / "app.zip"
    assert await run_cli(monkeypatch, sqlite_url, "teams-manifest", "--output", str(output),
                         MELDBOT_TEAMS__APP_ID=APP_ID) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "[teams] website" in captured.err
    assert "Traceback" not in captured.err and not output.exists()


async def test_a_plain_http_website_in_the_configuration_is_a_configuration_error(sqlite_url, monkeypatch, capsys):
    assert await run_cli(monkeypatch, sqlite_url, "teams-manifest",
                         MELDBOT_TEAMS__WEBSITE="http://www.bergeijk.nl") == 2
    assert "teams.website" in capsys.readouterr().err


# --- reminders on an open Good Friday ----------------------------------------------------------------------

@pytest.mark.parametrize("open_days, first_reminder", [
    ("", datetime(2027, 3, 30, 10, 0, tzinfo=AMS)),            # Good Friday, weekend, Easter Monday: Tuesday
    ("2027-03-26", datetime(2027, 3, 26, 10, 0, tzinfo=AMS)),  # open on Good Friday: the reminder goes out then
])
async def test_a_pick_up_reminder_goes_out_on_good_friday_only_when_it_is_an_open_day(
        sqlite_url, open_days, first_reminder):
    await migrated(sqlite_url)
    clock = ManualClock(datetime(2027, 3, 25, 10, 0, tzinfo=AMS))          # Maundy Thursday
    env = {"MELDBOT_REMINDERS__OPEN_DAYS": open_days} if open_days else {}
    notifier = FakeNotifier()
    async with build_app(make_config(sqlite_url, **env), clock=clock, notifiers={"console": notifier},
                         mode="chat") as app:
        await report_as(app, "piet")

        async def sweep_at(moment: datetime) -> list[str]:
            clock.set(moment)
            before = len(notifier.reminders)
            await app.reminders.sweep()
            await app.dispatcher.deliver_pending()
            return [key for _, _, key in notifier.reminders[before:] if key.startswith("reminder:oppakken")]

        for moment in (datetime(2027, 3, 26, 9, 59, tzinfo=AMS), datetime(2027, 3, 26, 10, 1, tzinfo=AMS),
                       datetime(2027, 3, 29, 10, 1, tzinfo=AMS), datetime(2027, 3, 30, 10, 1, tzinfo=AMS)):
            sent = await sweep_at(moment)
            if sent:
                break
        assert sent and moment.date() == first_reminder.date() and moment > first_reminder
