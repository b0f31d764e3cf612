"""The data key, through the real `meldbot` command on SQLite and PostgreSQL: a database sealed with one key
is refused without it or with another, plaintext never lands beside sealed values, a mixed database from an
older version is repaired by `seal-plaintext`, platforms need a key, and doctor says which of these it is."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from meldbot.run.app import build_app
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.storage.db import Database
from meldbot.storage.sealing import KeyringSealer, PlainSealer, new_key
from tests.support import FakeNotifier, make_config, run_sync
from tests.support.cli import SCRIPT, env_for, meldbot

pytestmark = pytest.mark.slow

SECRET = "Zeven matrassen op de zolder van de Kievitslaan"
PLAIN_SCRIPT = ["melden", SECRET, "Kievitslaan 12, Bergeijk", "gisteren", "onbekend", "arbeid", "toezicht", "nee",
                "versturen"]


def sealed_env(tmp_path, url: str, key: str | None, **extra) -> dict:
    env = env_for(tmp_path, MELDBOT_STORAGE__URL=url, **extra)
    if key is not None:
        env.update(MELDBOT_DATA_KEY=key, MELDBOT_STORAGE__ALLOW_PLAINTEXT="false")
    return env


def as_af(tmp_path, env, *commands: str):
    return meldbot(tmp_path, "chat", stdin="\n".join([":als af", *commands, ":stop"]) + "\n", env=env)


def each(tmp_path, commands: list[list[str]], env: dict, stdin: str = "") -> list:
    """Run several commands at once (each is a process of a few seconds; they only read)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda command: meldbot(tmp_path, *command, stdin=stdin, env=env), commands))


def refused(result, *words: str) -> None:
    """A refusal: exit code not 0, one Dutch line on stderr naming the fix, no traceback, nothing served."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line and "WARNING" not in line]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


async def plaintext_values(url: str) -> bool:
    """Whether any sealed column holds a value in clear (a sealed value starts with "v1.")."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            for table, column in [("signal", "content_sealed"), ("melder", "identity_sealed"),
                                  ("signal_event", "data_sealed"), ("audit", "actor_sealed"),
                                  ("conversation", "state_sealed"), ("outbox", "payload_sealed"),
                                  ("person", "identity_sealed")]:
                if (await conn.execute(sa.text(f"SELECT 1 FROM {table} WHERE {column} NOT LIKE 'v1.%'"))).first():
                    return True
        return False
    finally:
        await db.dispose()


async def sealed_database(tmp_path, url: str, key: str) -> None:
    env = sealed_env(tmp_path, url, key)
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    result = meldbot(tmp_path, "chat", stdin="\n".join(SCRIPT + [":als af", "taal nl"]) + "\n:stop\n", env=env)
    assert result.returncode == 0 and "MH-2026-0001" in result.stdout, result.stderr


async def test_a_wrong_key_is_refused_at_every_start_and_command_with_the_fix_named(database_url, tmp_path):
    key, other = new_key(), new_key()
    await sealed_database(tmp_path, database_url, key)
    wrong = sealed_env(tmp_path, database_url, other)
    other_id, key_id = KeyringSealer(other).key_id, KeyringSealer(key).key_id
    # Before: the bot started and every lijst/toon answered "probeer het over een minuut".
    commands = [["chat"], ["run"], ["reminders"], ["audit", "1"], ["report", "--anonymous"], ["rotate-key"],
                ["migrate"], ["doctor"]]
    *results, doctor = each(tmp_path, commands, wrong, stdin=":als af\nlijst\n:stop\n")
    for result in results:
        refused(result, "MELDBOT_DATA_KEY", "MELDBOT_DATA_KEY_PREVIOUS", other_id, key_id)
    assert doctor.returncode == 1 and "past NIET" in doctor.stdout and "past bij de gegevens" not in doctor.stdout
    # The right key still works, and the key being rotated away is accepted beside the new one.
    assert "MH-2026-0001" in as_af(tmp_path, sealed_env(tmp_path, database_url, key), "lijst").stdout
    both = sealed_env(tmp_path, database_url, other, MELDBOT_DATA_KEY_PREVIOUS=key)
    assert meldbot(tmp_path, "rotate-key", env=both).returncode == 0
    after = as_af(tmp_path, sealed_env(tmp_path, database_url, other), "lijst")
    assert after.returncode == 0 and "MH-2026-0001" in after.stdout, after.stderr
    refused(meldbot(tmp_path, "reminders", env=sealed_env(tmp_path, database_url, key)), "MELDBOT_DATA_KEY")


async def test_a_sealed_database_without_a_key_is_refused_and_nothing_is_written_in_clear(database_url, tmp_path):
    key = new_key()
    await sealed_database(tmp_path, database_url, key)
    # The example configuration allows plaintext: before, this start wrote the new signal in clear.
    keyless = sealed_env(tmp_path, database_url, None)
    result = meldbot(tmp_path, "chat", stdin="\n".join(PLAIN_SCRIPT) + "\n:stop\n", env=keyless)
    refused(result, "MELDBOT_DATA_KEY", "versleuteld")
    *results, doctor = each(tmp_path, [["run"], ["reminders"], ["audit", "1"], ["migrate"], ["doctor"]], keyless)
    for result in results:
        refused(result, "MELDBOT_DATA_KEY")
    assert not await plaintext_values(database_url)
    assert doctor.returncode == 1 and "MELDBOT_DATA_KEY ontbreekt" in doctor.stdout
    assert "past bij de gegevens" not in doctor.stdout and "ONVERSLEUTELD" not in doctor.stdout
    good = as_af(tmp_path, sealed_env(tmp_path, database_url, key), "lijst")
    assert good.returncode == 0 and "MH-2026-0001" in good.stdout and "MH-2026-0002" not in good.stdout


async def test_a_plaintext_database_is_refused_with_a_key_until_it_is_sealed(database_url, tmp_path):
    keyless = sealed_env(tmp_path, database_url, None)
    assert meldbot(tmp_path, "migrate", env=keyless).returncode == 0
    assert meldbot(tmp_path, "chat", stdin="\n".join(PLAIN_SCRIPT) + "\n:stop\n", env=keyless).returncode == 0
    key = new_key()
    with_key = sealed_env(tmp_path, database_url, key)
    refused(as_af(tmp_path, with_key, "lijst"), "meldbot seal-plaintext")
    sealed = meldbot(tmp_path, "seal-plaintext", env=with_key)
    assert sealed.returncode == 0 and "Klaar" in sealed.stdout, sealed.stderr
    assert not await plaintext_values(database_url)
    shown = as_af(tmp_path, with_key, "toon 1")
    assert shown.returncode == 0 and SECRET in shown.stdout, shown.stdout + shown.stderr
    refused(meldbot(tmp_path, "reminders", env=keyless), "MELDBOT_DATA_KEY")


async def _start_without_a_key_as_versions_before_the_canary_did(url: str, clock) -> None:
    """What a start without MELDBOT_DATA_KEY did before the canary: write in clear beside sealed values.
    The canary row is removed first (those versions had none); the bot is driven without `async with app`,
    whose start now refuses exactly this."""
    db = Database(url)
    async with db.engine.begin() as conn:
        if await conn.run_sync(lambda sync: sa.inspect(sync).has_table("key_canary")):
            await conn.execute(sa.text("DELETE FROM key_canary"))
    await db.dispose()
    app = build_app(make_config(url), clock=clock, sealer=PlainSealer(), notifiers={"console": FakeNotifier()},
                    mode="chat")
    try:
        for user in ("medewerker", "collega"):   # the same person and conversation as before, and a new one
            for line in PLAIN_SCRIPT:
                await app.bot.handle(IncomingMessage(sender=Identity("console", user), conversation_id=user,
                                                     text=line, sender_name=user))
        await app.bot.handle(IncomingMessage(sender=Identity("console", "af"), conversation_id="af", text="taal en",
                                             sender_name="af"))
    finally:
        await app.db.dispose()


async def test_a_mixed_database_is_refused_then_repaired_by_seal_plaintext(database_url, tmp_path, clock):
    key = new_key()
    await sealed_database(tmp_path, database_url, key)
    await _start_without_a_key_as_versions_before_the_canary_did(database_url, clock)
    assert await plaintext_values(database_url)
    env = sealed_env(tmp_path, database_url, key)
    # Before: every lijst failed with UnknownKey "value is not sealed", and rotate-key crashed.
    with ThreadPoolExecutor(4) as pool:
        listed, rotated, wrong, doctor = pool.map(lambda run: run(), [
            lambda: as_af(tmp_path, env, "lijst"),
            lambda: meldbot(tmp_path, "rotate-key", env=sealed_env(tmp_path, database_url, new_key(),
                                                                   MELDBOT_DATA_KEY_PREVIOUS=key)),
            lambda: meldbot(tmp_path, "seal-plaintext", env=sealed_env(tmp_path, database_url, new_key())),
            lambda: meldbot(tmp_path, "doctor", env=env)])
    refused(listed, "meldbot seal-plaintext")
    refused(rotated, "meldbot seal-plaintext")
    refused(wrong, "MELDBOT_DATA_KEY")   # a wrong key would seal the clear rows under a second key
    assert doctor.returncode == 1 and "meldbot seal-plaintext" in doctor.stdout

    repaired = meldbot(tmp_path, "seal-plaintext", env=env)
    assert repaired.returncode == 0 and "Klaar" in repaired.stdout, repaired.stderr
    assert not await plaintext_values(database_url)
    again = meldbot(tmp_path, "seal-plaintext", env=env)
    assert again.returncode == 0 and "geen onversleutelde gegevens" in again.stdout

    listed = as_af(tmp_path, env, "lijst", "toon 2")
    assert listed.returncode == 0, listed.stderr
    assert all(f"MH-2026-000{n}" in listed.stdout for n in (1, 2, 3)), listed.stdout
    assert SECRET in listed.stdout and "minuut" not in listed.stdout and "minute" not in listed.stdout
    good = meldbot(tmp_path, "doctor", env=env)
    assert good.returncode == 0 and "past bij de gegevens" in good.stdout, good.stdout
    new = new_key()
    assert meldbot(tmp_path, "rotate-key", env=sealed_env(tmp_path, database_url, new,
                                                          MELDBOT_DATA_KEY_PREVIOUS=key)).returncode == 0
    assert "MH-2026-0003" in as_af(tmp_path, sealed_env(tmp_path, database_url, new), "lijst").stdout


async def test_the_first_start_marks_the_database_and_a_plaintext_app_is_refused_on_a_sealed_one(database_url, clock):
    from meldbot.storage import canary
    from meldbot.storage.canary import DataKeyRefused, KeyState

    db = Database(database_url)
    await db.migrate()
    await db.dispose()
    sealer = KeyringSealer(new_key())
    async with build_app(make_config(database_url), clock=clock, sealer=sealer, notifiers={"console": FakeNotifier()},
                         mode="chat"):
        pass
    db = Database(database_url)
    try:
        assert (await canary.examine(db, sealer)).state is KeyState.SEALED
        assert (await canary.read(db)).startswith(f"v1.{sealer.key_id}.")
    finally:
        await db.dispose()
    for other in (PlainSealer(), KeyringSealer(new_key())):
        app = build_app(make_config(database_url), clock=clock, sealer=other, notifiers={"console": FakeNotifier()},
                        mode="chat")
        with pytest.raises(DataKeyRefused):
            async with app:
                pass


@pytest.mark.parametrize("platform", ["teams", "matrix"])
def test_check_config_refuses_a_platform_with_plaintext_storage_unless_overridden(tmp_path, platform):
    env = env_for(tmp_path, **({"MELDBOT_TEAMS__ENABLED": "true", "MELDBOT_TEAMS__APP_ID": "app",
                                "MELDBOT_TEAMS__APP_PASSWORD": "x", "MELDBOT_TEAMS__TENANT_ID": "t"}
                               if platform == "teams" else
                               {"MELDBOT_MATRIX__ENABLED": "true", "MELDBOT_MATRIX__HOMESERVER": "http://127.0.0.1:9",
                                "MELDBOT_MATRIX__USER_ID": "@bot:localhost", "MELDBOT_MATRIX__PASSWORD": "x"}))
    result = meldbot(tmp_path, "check-config", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{platform}.enabled" in result.stderr and "MELDBOT_DATA_KEY" in result.stderr
    assert "allow_plaintext_with_platforms" in result.stderr
    refused_run = meldbot(tmp_path, "run", env=env)
    assert refused_run.returncode == 2 and f"{platform}.enabled" in refused_run.stderr
    overridden = meldbot(tmp_path, "check-config", env={**env, "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true"})
    assert overridden.returncode == 0 and platform in overridden.stdout, overridden.stderr
    with_key = meldbot(tmp_path, "check-config", env={**env, "MELDBOT_DATA_KEY": new_key()})
    assert with_key.returncode == 0, with_key.stderr


def test_doctor_tells_the_truth_about_plaintext_keys_and_teams_tenants(tmp_path):
    keyless = env_for(tmp_path)
    assert meldbot(tmp_path, "migrate", env=keyless).returncode == 0
    plain = meldbot(tmp_path, "doctor", env=keyless)
    assert plain.returncode == 0, plain.stdout
    assert "[let op]  Let op: gegevens staan ONVERSLEUTELD" in plain.stdout
    assert "[ok]  Let op" not in plain.stdout and "past bij de gegevens" not in plain.stdout
    assert "Geen fouten, wel punten om op te letten" in plain.stdout
    teams = {"MELDBOT_TEAMS__ENABLED": "true", "MELDBOT_TEAMS__APP_ID": "app", "MELDBOT_TEAMS__APP_PASSWORD": "x",
             "MELDBOT_TEAMS__TENANT_ID": "t", "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true"}
    loud = meldbot(tmp_path, "doctor", env=env_for(tmp_path, **teams))
    assert loud.returncode == 1 and "[!!]  Gegevens staan ONVERSLEUTELD terwijl Matrix of Teams" in loud.stdout
    assert "[!!]  meldpunt[0].teams_tenants is leeg, terwijl Teams aan staat" in loud.stdout
    tenants = meldbot(tmp_path, "doctor", env=env_for(tmp_path, MELDBOT_MELDPUNT__0__TEAMS_TENANTS="tenant-1", **teams))
    assert "teams_tenants" not in tenants.stdout

    (tmp_path / "sealed").mkdir()
    folder, key = tmp_path / "sealed", new_key()
    env = sealed_env(folder, f"sqlite+aiosqlite:///{folder}/meldbot.db", key)
    assert meldbot(folder, "migrate", env=env).returncode == 0
    good = meldbot(folder, "doctor", env=env)
    assert good.returncode == 0 and "[ok]  De sleutel (MELDBOT_DATA_KEY) past bij de gegevens." in good.stdout
    assert "ONVERSLEUTELD" not in good.stdout and "Alles in orde." in good.stdout


async def test_plaintext_written_after_the_database_was_sealed_is_refused_at_start_with_the_fix_named(
        database_url, tmp_path, clock):
    from meldbot.storage import canary

    key = new_key()
    await sealed_database(tmp_path, database_url, key)
    await _start_without_a_key_as_versions_before_the_canary_did(database_url, clock)
    # What a keyless process still running during `seal-plaintext` left behind: the canary says sealed,
    # yet rows are in clear. Before, chat and run started and then crashed with "UnknownKey: value is not sealed".
    db = Database(database_url)
    try:
        await canary.write(db, KeyringSealer(key))
    finally:
        await db.dispose()
    env = sealed_env(tmp_path, database_url, key, MELDBOT_HTTP__LISTEN="127.0.0.1:0")
    chat, run, listed = each(tmp_path, [["chat"], ["run"], ["outbox", "list"]], env, stdin=":als af\nlijst\n:stop\n")
    for result in (chat, run, listed):
        refused(result, "meldbot seal-plaintext")
    repaired = meldbot(tmp_path, "seal-plaintext", env=env)
    assert repaired.returncode == 0 and "Klaar" in repaired.stdout, repaired.stderr
    good = as_af(tmp_path, env, "lijst")
    assert good.returncode == 0 and "MH-2026-0003" in good.stdout, good.stderr


def test_a_keyless_chat_still_running_during_seal_plaintext_writes_nothing_in_clear_and_stops(database_url, tmp_path):
    import subprocess
    import sys

    keyless = sealed_env(tmp_path, database_url, None)
    assert meldbot(tmp_path, "migrate", env=keyless).returncode == 0
    chat = subprocess.Popen([sys.executable, "-m", "meldbot", "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**keyless, "PYTHONUNBUFFERED": "1"})
    try:
        chat.stdin.write("\n".join(PLAIN_SCRIPT) + "\n")
        chat.stdin.flush()
        for _ in range(200):                     # the first signal is stored, in clear, as this database allows
            line = chat.stdout.readline()
            if not line or "MH-2026-0001" in line:
                break
        assert "MH-2026-0001" in line
        key = new_key()
        sealed = meldbot(tmp_path, "seal-plaintext", env=sealed_env(tmp_path, database_url, key))
        assert sealed.returncode == 0 and "Klaar" in sealed.stdout, sealed.stderr
        assert "Stop" in sealed.stdout        # it says to stop every meldbot first
        # Before: this second signal was written in clear under a canary that says "sealed".
        out, err = chat.communicate("\n".join(PLAIN_SCRIPT) + "\n:stop\n", timeout=60)
    finally:
        if chat.poll() is None:
            chat.kill()
    assert chat.returncode == 2, err
    assert "Traceback" not in err and "MELDBOT_DATA_KEY ontbreekt" in err, err
    assert "MH-2026-0002" not in out
    assert not run_sync(plaintext_values(database_url))
    good = as_af(tmp_path, sealed_env(tmp_path, database_url, key), "lijst")
    assert good.returncode == 0 and "MH-2026-0001" in good.stdout and "MH-2026-0002" not in good.stdout, good.stderr


async def test_an_empty_database_migrated_without_the_key_is_sealed_by_the_first_start_with_it(database_url, tmp_path):
    from meldbot.storage import canary

    keyless = sealed_env(tmp_path, database_url, None)
    assert meldbot(tmp_path, "migrate", env=keyless).returncode == 0   # the example config allows this
    key = new_key()
    env = sealed_env(tmp_path, database_url, key)
    # Before: "[!!] Er staan onversleutelde gegevens" and chat refused, for a database with nothing in it.
    doctor = meldbot(tmp_path, "doctor", env=env)
    assert doctor.returncode == 0 and "onversleutelde" not in doctor.stdout, doctor.stdout
    assert "zonder sleutel gemaakt" in doctor.stdout
    first = meldbot(tmp_path, "chat", stdin="\n".join(SCRIPT) + "\n:stop\n", env=env)
    assert first.returncode == 0 and "MH-2026-0001" in first.stdout, first.stderr
    assert "marked as sealed" in first.stderr
    assert not await plaintext_values(database_url)
    db = Database(database_url)
    try:
        assert (await canary.read(db)).startswith(f"v1.{KeyringSealer(key).key_id}.")
    finally:
        await db.dispose()
    refused(meldbot(tmp_path, "reminders", env=keyless), "MELDBOT_DATA_KEY")


def test_doctor_fails_and_check_config_warns_when_teams_is_on_without_tenants(tmp_path):
    key = new_key()
    env = sealed_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/meldbot.db", key,
                     MELDBOT_TEAMS__ENABLED="true", MELDBOT_TEAMS__APP_ID="app", MELDBOT_TEAMS__APP_PASSWORD="x",
                     MELDBOT_TEAMS__TENANT_ID="t")
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    # Before: only "[let op]", exit 0 and "Geen fouten", while the adapter refuses every Teams user.
    doctor = meldbot(tmp_path, "doctor", env=env)
    assert doctor.returncode == 1, doctor.stdout
    assert any(line.startswith("[!!]") and "meldpunt[0].teams_tenants" in line for line in doctor.stdout.splitlines())
    assert "Geen fouten" not in doctor.stdout
    checked = meldbot(tmp_path, "check-config", env=env)
    assert checked.returncode == 0
    assert any(line.startswith("[let op]") and "meldpunt[0].teams_tenants" in line
               for line in checked.stdout.splitlines()), checked.stdout
    with_tenant = {**env, "MELDBOT_MELDPUNT__0__TEAMS_TENANTS": "tenant-1"}
    assert "teams_tenants" not in meldbot(tmp_path, "check-config", env=with_tenant).stdout
    fine = meldbot(tmp_path, "doctor", env=with_tenant)
    assert fine.returncode == 0 and "teams_tenants" not in fine.stdout, fine.stdout
