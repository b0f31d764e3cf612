"""Configuration changes without a restart (meldbot/run/reload.py): an AF removed loses the AF commands and
their open signals at once, an AF added gains them, an invalid file changes nothing, and what needs a
restart is named and kept."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from meldbot.core.config import load_config
from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity
from meldbot.run.app import build_app
from meldbot.run.reload import Reloader, needs_restart, reloading, runtime_part
from tests.support import FakeNotifier
from tests.support.chat import Chat, migrated, report_as
from tests.support.configs import config_text

NL = texts("nl")


def load(path: Path):
    return load_config(path, {})


async def started(url: str, tmp_path, clock):
    """A configuration file with two AFs, and an app built from it (not yet started)."""
    await migrated(url)
    path = tmp_path / "config.toml"
    path.write_text(config_text(url), encoding="utf-8")
    notifier = FakeNotifier()
    app = build_app(load(path), clock=clock, notifiers={"console": notifier}, mode="chat")
    return path, app, Chat(app, notifier), notifier


def is_queue(answer: str) -> bool:
    return answer.startswith(NL("af.queue.header", count=1)) or answer.startswith(NL("af.queue.empty"))


async def test_an_af_removed_loses_the_af_commands_and_their_signals_an_af_added_gains_them(
        database_url, tmp_path, clock, caplog):
    path, app, chat, notifier = await started(database_url, tmp_path, clock)
    async with app:
        await report_as(app, "medewerker")
        await chat.say("af2", "oppakken 1")
        assert is_queue(await chat.say("af2", "lijst"))
        assert not is_queue(await chat.say("af3", "lijst"))
        told_before = len(notifier.to("af"))

        path.write_text(config_text(database_url, bram=False, carl=True), encoding="utf-8")
        caplog.set_level(logging.INFO, logger="meldbot.run.reload")
        assert await Reloader(app, path, load=load).reload("test") is True
        await app.dispatcher.deliver_pending()

        bram, carl = await chat.say("af2", "lijst"), await chat.say("af3", "lijst")
        async with app.uow() as uow:
            [signal_] = await uow.signals.of_melder(Identity("console", "medewerker"))
        told = notifier.to("af")[told_before:]
    assert not is_queue(bram)                               # no AF any more
    assert is_queue(carl) and "MH-" in carl                 # an AF now, and sees the open signal
    assert signal_.handler is None                          # unassigned, as at start
    assert [r.text for r in told if "staat niet meer in de configuratie" in r.text and "bram" in r.text]
    assert app.config is app.bot.config is app.reminders.config is app.dispatcher.on_trouble.config
    [line] = [r for r in caplog.records if r.getMessage() == "configuration reloaded"]
    assert line.released == 1 and line.afs == 2


async def test_an_invalid_file_keeps_the_old_configuration_and_logs_only_the_keys(sqlite_url, tmp_path, clock,
                                                                                  caplog):
    path, app, chat, notifier = await started(sqlite_url, tmp_path, clock)
    async with app:
        before = app.config
        broken = config_text(sqlite_url, bram=False).replace('name = "anna"', 'name = "Anna Geheim"')
        path.write_text(broken, encoding="utf-8")
        caplog.set_level(logging.INFO, logger="meldbot.run.reload")
        assert await Reloader(app, path, load=load).reload("test") is False
        assert app.config is before and app.bot.config is before
        assert is_queue(await chat.say("af2", "lijst"))      # bram is still an AF: nothing of the file applied
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.keys == ["meldpunt[0].af[0].name"]
    assert "Geheim" not in caplog.text and "Anna" not in caplog.text


async def test_what_needs_a_restart_is_named_and_kept(sqlite_url, tmp_path, clock, caplog):
    await migrated(sqlite_url)
    path = tmp_path / "config.toml"
    path.write_text(config_text(sqlite_url), encoding="utf-8")
    app = build_app(load(path), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
    async with app:
        changed = (config_text(sqlite_url).replace('listen = "127.0.0.1:8080"', 'listen = "127.0.0.1:8181"')
                   .replace("sweep_seconds = 60", "sweep_seconds = 30")
                   .replace('name = "Gemeente Bergeijk"', 'name = "Gemeente Bergeijk (regio)"'))
        path.write_text(changed, encoding="utf-8")
        caplog.set_level(logging.INFO, logger="meldbot.run.reload")
        assert await Reloader(app, path, load=load).reload("test") is True
        config = app.config
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "restart" in r.getMessage()]
    assert warning.keys == ["http.listen", "reminders.sweep_seconds"]
    assert config.http.listen == "127.0.0.1:8080" and config.reminders.sweep_seconds == 60
    assert config.meldpunten[0].name == "Gemeente Bergeijk (regio)"      # applied at once


def test_needs_restart_names_the_platform_and_storage_keys(sqlite_url, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(config_text(sqlite_url), encoding="utf-8")
    old = load(path)
    new = load_config(path, {"MELDBOT_TEAMS__ENABLED": "true", "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true",
                             "MELDBOT_TEAMS__APP_PASSWORD": "geheim", "MELDBOT_TEAMS__ANONYMOUS": "true"})
    assert needs_restart(old, new) == ["storage.allow_plaintext_with_platforms", "teams.enabled", "teams.app_password",
                                      "teams.anonymous"]
    kept = runtime_part(old, new)
    assert kept.teams == old.teams and kept.storage == old.storage


async def test_the_file_is_watched_and_sighup_reloads_at_once(sqlite_url, tmp_path, clock):
    await migrated(sqlite_url)
    path = tmp_path / "config.toml"
    path.write_text(config_text(sqlite_url), encoding="utf-8")
    app = build_app(load(path), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")

    def afs() -> int:
        return sum(len(m.af) for m in app.config.meldpunten)

    async def until_reloaded(reloader) -> None:
        async with asyncio.timeout(5):
            while not reloader.reloads:
                await asyncio.sleep(0.02)

    async with app:
        async with reloading(app, path, every=0.2) as watching:
            watching._load = load
            path.write_text(config_text(sqlite_url, bram=False), encoding="utf-8")     # no signal: the watcher
            await until_reloaded(watching)
            assert afs() == 1
        async with reloading(app, path, every=3600) as hangup:
            hangup._load = load
            path.write_text(config_text(sqlite_url, carl=True), encoding="utf-8")
            signal.raise_signal(signal.SIGHUP)
            await until_reloaded(hangup)
            assert afs() == 3
    assert (watching.reloads, hangup.reloads) == (1, 1)


async def test_two_processes_releasing_a_removed_afs_signals_at_once_hand_each_over_once(
        postgres_database, tmp_path, clock):
    """Review M5: after a reload every process releases a removed AF's signals within seconds. Each signal is
    handed over, audited and told to the other AFs once, not once per process."""
    import sqlalchemy as sa

    await migrated(postgres_database)
    path = tmp_path / "config.toml"
    path.write_text(config_text(postgres_database), encoding="utf-8")
    notifiers = [FakeNotifier(), FakeNotifier()]
    one, two = (build_app(load(path), clock=clock, notifiers={"console": n}, mode="chat") for n in notifiers)
    async with one, two:
        chat = Chat(one, notifiers[0])
        for i in range(6):
            await report_as(one, f"medewerker{i}")
            await chat.say("af2", f"oppakken {i + 1}")
        told_before = [len(n.to("af")) for n in notifiers]

        path.write_text(config_text(postgres_database, bram=False), encoding="utf-8")
        assert await asyncio.gather(Reloader(one, path, load=load).reload("test"),
                                    Reloader(two, path, load=load).reload("test")) == [True, True]
        await one.dispatcher.deliver_pending()
        await two.dispatcher.deliver_pending()
        async with one.db.engine.connect() as conn:
            handed = (await conn.execute(sa.text(
                "SELECT signal_id, count(*) FROM signal_event WHERE kind = 'overgedragen' GROUP BY signal_id"))).all()
            audited = (await conn.execute(sa.text(
                "SELECT signal_id, count(*) FROM audit WHERE action = 'vrijgegeven' GROUP BY signal_id"))).all()
            handlers = (await conn.execute(sa.text("SELECT handler FROM signal"))).scalars().all()
        told = [r.text for n, before in zip(notifiers, told_before) for r in n.to("af")[before:]
                if "staat niet meer in de configuratie" in r.text]
    assert handlers == [None] * 6
    assert sorted(n for _, n in handed) == [1] * 6 and sorted(n for _, n in audited) == [1] * 6
    assert len(told) == 6 and len(set(told)) == 6
