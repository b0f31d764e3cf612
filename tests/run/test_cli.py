"""The `meldbot` command as people use it: real processes, stdin and exit codes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import EXAMPLE
from tests.support.cli import SCRIPT, env_for, meldbot

pytestmark = pytest.mark.slow


def test_check_config_accepts_the_example(tmp_path):
    result = meldbot(tmp_path, "check-config")
    assert result.returncode == 0, result.stderr
    assert "in orde" in result.stdout


def test_check_config_warns_of_a_matrix_id_in_capitals_and_still_accepts_it(tmp_path):
    result = meldbot(tmp_path, "check-config", env=env_for(tmp_path, MELDBOT_MELDPUNT__0__AF__0__MATRIX="@Anna:bergeijk.nl"))
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stdout.splitlines() if line.startswith("[let op]")]
    assert 'meldpunt[0].af[0].matrix = "@Anna:bergeijk.nl"' in warning and warning.endswith("@anna:bergeijk.nl")


def test_check_config_names_the_broken_key_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("office_hours = \"08:30-17:00\"", "office_hours = \"17:00-08:30\""))
    result = meldbot(tmp_path, "--config", str(bad), "check-config")
    assert result.returncode == 2
    assert "reminders.office_hours" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_environment_override_is_checked_too(tmp_path):
    result = meldbot(tmp_path, "check-config", env=env_for(tmp_path, MELDBOT_STORAGE__URL="mysql://x"))
    assert result.returncode == 2
    assert "storage.url" in result.stderr and "Traceback" not in result.stderr


def test_chat_refuses_an_unmigrated_database_with_a_clear_message(tmp_path):
    result = meldbot(tmp_path, "chat", stdin="hallo\n")
    assert result.returncode == 3
    assert "meldbot migrate" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_twice_is_harmless(tmp_path):
    first = meldbot(tmp_path, "migrate")
    second = meldbot(tmp_path, "migrate")
    assert first.returncode == 0 and "bijgewerkt" in first.stdout
    assert second.returncode == 0 and "al bijgewerkt" in second.stdout


def test_a_scripted_terminal_session_shows_the_af_the_new_signal(tmp_path):
    assert meldbot(tmp_path, "migrate").returncode == 0
    session = "\n".join(SCRIPT + [":als af", ":stop"]) + "\n"
    result = meldbot(tmp_path, "chat", stdin=session)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    employee_part, _, af_part = out.partition("Je bent nu af")
    assert "MH-2026-0001" in employee_part or "MH-20" in employee_part
    reference = next(w.rstrip(".") for w in employee_part.split() if w.startswith("MH-20"))
    # The notification waited for the AF and shows once, after switching.
    assert "Nieuwe melding" not in employee_part
    assert af_part.count(f"Nieuwe melding {reference}") == 1
    assert "stapelbedden" not in af_part
    assert "Traceback" not in out + result.stderr


def test_after_kill_9_between_commit_and_delivery_the_notification_arrives_exactly_once(tmp_path):
    assert meldbot(tmp_path, "migrate").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "meldbot", "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env_for(tmp_path),
    )
    try:
        proc.stdin.write("\n".join(SCRIPT) + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        seen = ""
        while "MH-20" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "MH-20" in seen, seen
        # The signal is committed; the AF's notification is still in the outbox. Kill hard.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    reference = next(w.rstrip(".") for w in seen.split() if w.startswith("MH-20"))
    first = meldbot(tmp_path, "chat", stdin=":als af\n:stop\n")
    again = meldbot(tmp_path, "chat", stdin=":als af\n:stop\n")
    assert first.stdout.count(f"Nieuwe melding {reference}") == 1, first.stdout
    assert f"Nieuwe melding {reference}" not in again.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_healthz_and_stops_cleanly_on_sigterm(tmp_path):
    import json
    import urllib.request

    assert meldbot(tmp_path, "migrate").returncode == 0
    port = _free_port()
    env = env_for(tmp_path, MELDBOT_HTTP__LISTEN=f"127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "meldbot", "run"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.2)
        assert body is not None, "healthz never answered"
        assert body["status"] == "ok" and body["database"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in proc.stderr.read()


def test_doctor_says_what_to_do_in_plain_words(tmp_path):
    first = meldbot(tmp_path, "doctor")
    assert first.returncode == 1 and "meldbot migrate" in first.stdout and "Traceback" not in first.stderr
    assert meldbot(tmp_path, "migrate").returncode == 0
    second = meldbot(tmp_path, "doctor")
    assert second.returncode == 0, second.stdout
    assert "ONVERSLEUTELD" in second.stdout and "Geen berichten die stil staan" in second.stdout
    down = meldbot(tmp_path, "doctor", env=env_for(tmp_path, MELDBOT_MATRIX__ENABLED="true",
                                                     MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS="true",
                                                     MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9",
                                                     MELDBOT_MATRIX__PASSWORD="x"))
    assert down.returncode == 1 and "niet bereikbaar" in down.stdout


def test_doctor_notices_a_wrong_data_key(tmp_path):
    from meldbot.storage.sealing import new_key

    key = new_key()
    env = env_for(tmp_path, MELDBOT_DATA_KEY=key, MELDBOT_STORAGE__ALLOW_PLAINTEXT="false")
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    script = "\n".join(SCRIPT) + "\n:stop\n"
    assert meldbot(tmp_path, "chat", stdin=script, env=env).returncode == 0
    good = meldbot(tmp_path, "doctor", env=env)
    assert good.returncode == 0 and "past bij de gegevens" in good.stdout
    wrong = meldbot(tmp_path, "doctor", env=env_for(tmp_path, MELDBOT_DATA_KEY=new_key(),
                                                     MELDBOT_STORAGE__ALLOW_PLAINTEXT="false"))
    assert wrong.returncode == 1 and "past NIET" in wrong.stdout


def test_doctor_reads_every_process_of_several_and_names_the_matrix_holder(tmp_path):
    """With --instance every process keeps its status in its own folder under matrix.store_path; doctor
    looks at all of them, and names the process that holds the Matrix sync stream (matrix_sync)."""
    import asyncio
    import json as _json

    from meldbot.core.config import load_config
    from meldbot.storage.db import Database
    from meldbot.storage.matrix import MatrixSyncState
    from meldbot.storage.sealing import sealer_for
    from meldbot.storage.uow import UnitOfWorkFactory

    store = tmp_path / "matrix"
    for name, status in {"8081": {"identity": "present", "undecryptable": 1},
                         "8082": {"identity": "mismatch", "undecryptable": 2,
                                  "undecryptable_times": [time.time() - 60]}}.items():
        (store / name).mkdir(parents=True)
        (store / name / "status.json").write_text(_json.dumps(status))
    env = env_for(tmp_path, MELDBOT_MATRIX__ENABLED="true", MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS="true",
                  MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9", MELDBOT_MATRIX__PASSWORD="x",
                  MELDBOT_MATRIX__STORE_PATH=str(store))
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    nobody = meldbot(tmp_path, "doctor", env=env)
    assert "Geen proces leest nu de Matrix-berichten" in nobody.stdout
    # One process's lost identity is the whole bot's problem; the unreadable messages of all count.
    assert "[!!]" in nobody.stdout and "matrix-reset-identity" in nobody.stdout
    assert "1 Matrix-bericht(en) aan de bot niet te lezen (3 in totaal)" in nobody.stdout

    config = load_config(env["MELDBOT_CONFIG"] if "MELDBOT_CONFIG" in env else EXAMPLE, env)

    async def hold() -> None:
        db = Database(config.storage.url)
        try:
            await MatrixSyncState(UnitOfWorkFactory(db, sealer_for(config)), config.matrix.user_id).set_holder(
                "8082", True)
        finally:
            await db.dispose()

    asyncio.run(hold())
    held = meldbot(tmp_path, "doctor", env=env)
    assert "Proces 8082 leest de Matrix-berichten" in held.stdout, held.stdout


def test_two_processes_on_one_matrix_device_folder_are_refused_in_plain_words(tmp_path):
    """The store folder is the device: a second process on it (no --instance) stops at once with the fix;
    with its own --instance it starts; a name that is no folder name is refused too."""
    store = tmp_path / "matrix"
    env = env_for(tmp_path, MELDBOT_MATRIX__ENABLED="true", MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS="true",
                  MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9", MELDBOT_MATRIX__PASSWORD="x",
                  MELDBOT_MATRIX__STORE_PATH=str(store), MELDBOT_HTTP__LISTEN="127.0.0.1:0")
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    first = subprocess.Popen([sys.executable, "-m", "meldbot", "run"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        # Wait (with a deadline) until the first process holds the device folder's lock.
        import fcntl

        def held() -> bool:
            try:
                fd = os.open(store / ".lock", os.O_RDWR)
            except FileNotFoundError:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
            finally:
                os.close(fd)

        deadline = time.monotonic() + 30
        while not held():
            assert time.monotonic() < deadline and first.poll() is None, "the first process never held the folder"
            with contextlib.suppress(subprocess.TimeoutExpired):
                first.wait(timeout=0.05)   # wakes early if it dies
        second = meldbot(tmp_path, "run", env=env, timeout=60)
        assert second is not None and second.returncode == 2, (second.returncode, second.stderr)
        assert "meldbot run --instance NAAM" in second.stderr and "Traceback" not in second.stderr
        bad = meldbot(tmp_path, "run", "--instance", "../x", env=env)
        assert bad.returncode == 2 and 'De procesnaam "../x" kan niet' in bad.stderr, bad.stderr
        assert first.poll() is None, "the first process stopped"
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(timeout=15)
        finally:
            if first.poll() is None:
                first.kill()


def test_chat_on_a_configuration_with_matrix_needs_beheer_even_when_the_environment_switches_it_off(tmp_path):
    """`meldbot chat` on a real meldbot's configuration is root reading real reports (docs/privacy.md)."""
    real = tmp_path / "echt.toml"
    real.write_text(EXAMPLE.read_text().replace("[matrix]\nenabled = false", "[matrix]\nenabled = true", 1))
    env = env_for(tmp_path, MELDBOT_MATRIX__ENABLED="false", MELDBOT_TEAMS__ENABLED="false")
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    refused = meldbot(tmp_path, "--config", str(real), "chat", stdin=":stop\n", env=env)
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = refused.stderr.strip().splitlines()
    assert "Deze configuratie zet Matrix aan" in line and "meldbot chat --beheer" in line
    allowed = meldbot(tmp_path, "--config", str(real), "chat", "--beheer", stdin=":stop\n", env=env)
    assert allowed.returncode == 0, allowed.stderr
