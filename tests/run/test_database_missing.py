"""A database that is not there at start: one Dutch line naming it (never the password) and what to do,
exit code 3, no traceback, nothing created in its place. Through the real `python -m meldbot`."""

from __future__ import annotations

import concurrent.futures
import sqlite3
import socket
import uuid

import pytest
from sqlalchemy.engine import make_url

from tests.support import postgres_url, skip_or_fail
from tests.support.cli import env_for, meldbot

pytestmark = pytest.mark.slow

PASSWORD = "geheim-Wachtwoord-81"
COMMANDS = [["run"], ["chat"], ["migrate"], ["reminders"], ["audit", "MH-2026-0001"], ["report", "--anonymous"]]


def free_port() -> int:
    """A port nobody listens on (taken and given back at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_at_start(tmp_path, url: str, commands: list[list[str]]) -> dict[str, str]:
    """Run each command (at once, each in its own process); the one line each printed, by command."""
    env = env_for(tmp_path, MELDBOT_STORAGE__URL=url)
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda c: meldbot(tmp_path, *c, stdin=":stop\n", env=env), commands))
    lines = {}
    for command, result in zip(commands, results):
        shown = (command, result.returncode, result.stdout, result.stderr)
        assert result.returncode == 3, shown
        assert len(result.stderr.strip().splitlines()) == 1, shown
        assert "Traceback" not in result.stderr and result.stdout == "", shown
        assert PASSWORD not in result.stderr + result.stdout, shown
        lines[command[0]] = result.stderr.strip()
    assert set(lines) == {c[0] for c in commands}
    return lines


def test_a_postgresql_database_that_does_not_exist(tmp_path):
    base = postgres_url()
    if not base:
        skip_or_fail("needs MELDBOT_TEST_POSTGRES_URL")  # fails instead in CI (MELDBOT_TEST_REQUIRE_POSTGRES)
    name = f"meldbot_absent_{uuid.uuid4().hex[:8]}"
    parsed = make_url(base).set(database=name, password=PASSWORD)
    for line in refused_at_start(tmp_path, parsed.render_as_string(hide_password=False), COMMANDS).values():
        assert name in line and f"{parsed.host}:{parsed.port or 5432}" in line, line
        assert "bestaat niet" in line and "maak de database aan" in line, line


def test_a_postgresql_server_that_is_down(tmp_path):
    port = free_port()
    url = f"postgresql+asyncpg://meldbot:{PASSWORD}@127.0.0.1:{port}/meldbot"
    for line in refused_at_start(tmp_path, url, COMMANDS).values():
        assert f"127.0.0.1:{port}" in line and "meldbot" in line, line
        assert "weigert de verbinding" in line and "Kijk of PostgreSQL draait" in line, line


def test_an_sqlite_path_in_a_missing_folder(tmp_path):
    folder = tmp_path / "ontbreekt"
    for line in refused_at_start(tmp_path, f"sqlite+aiosqlite:///{folder}/meldbot.db", COMMANDS).values():
        assert str(folder) in line and "bestaat niet" in line and "storage.url" in line, line
    assert not folder.exists()                     # nothing made where the database was not found


def test_an_sqlite_file_that_does_not_exist_is_made_by_no_command_but_migrate(tmp_path):
    path = tmp_path / "meldbot.db"
    commands = [c for c in COMMANDS if c != ["migrate"]]
    for line in refused_at_start(tmp_path, f"sqlite+aiosqlite:///{path}", commands).values():
        assert str(path) in line and "meldbot migrate" in line, line
    assert not path.exists()


def test_doctor_names_a_missing_sqlite_database_and_creates_nothing(tmp_path):
    missing = [tmp_path / "meldbot.db", tmp_path / "ontbreekt" / "meldbot.db"]
    for path in missing:
        result = meldbot(tmp_path, "doctor", env=env_for(tmp_path, MELDBOT_STORAGE__URL=f"sqlite+aiosqlite:///{path}"))
        shown = (path, result.returncode, result.stdout, result.stderr)
        assert result.returncode == 1 and "Traceback" not in result.stderr, shown
        [line] = [row for row in result.stdout.splitlines() if str(path.parent) in row]
        assert line.startswith("[!!]") and "bestaat niet" in line and "meldbot migrate" in line, shown
        assert "Er is niets aangemaakt" in line, shown
    assert list(tmp_path.iterdir()) == []          # no file, no folder: doctor only looks


@pytest.mark.parametrize("cause, expected", [
    # The database file became unreadable in the middle of a command: the same line as at the start.
    (sqlite3.OperationalError("unable to open database file"), "niet openen"),
    # Any other failure of the database: still one Dutch line, never a traceback.
    (sqlite3.OperationalError("disk I/O error"), "database niet bereiken"),
])
def test_a_database_failing_in_the_middle_of_a_command_is_one_dutch_line(tmp_path, monkeypatch, capsys, cause,
                                                                         expected):
    """A unit of work hands a database error on as the core's StorageUnavailable; the CLI must still say
    it in one line (exit 3) as it did when the driver's error reached it."""
    from sqlalchemy.exc import OperationalError

    from meldbot.core.ports import StorageUnavailable
    from meldbot.run import cli

    for name, value in env_for(tmp_path).items():
        if name.startswith("MELDBOT_"):
            monkeypatch.setenv(name, value)
    assert cli.main(["migrate"]) == 0

    async def failing(config, t, args):
        try:
            raise OperationalError("SELECT ...", {}, cause)
        except OperationalError as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    monkeypatch.setitem(cli._COMMANDS, "reminders", failing)
    capsys.readouterr()
    assert cli.main(["reminders"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err, err
