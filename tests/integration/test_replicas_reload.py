"""Two `meldbot run` processes with Teams on one PostgreSQL database pick up a changed configuration file
without a restart: an AF removed is refused by both within the file check's interval, an AF added back with
SIGHUP is an AF again at once, and an invalid edit leaves both running on the old configuration."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from meldbot.core.i18n import texts
from meldbot.run.reload import CHECK_SECONDS
from tests.support.chat import migrated
from tests.support.configs import config_text
from tests.support.replicas import replicas
from tests.support.teams_fakes import User

NL = texts("nl")
BRAM = User("bram", "Bram Jansen", "bbbbbbbb-cccc-dddd-eeee-000000000002")


def is_queue(shown: list[str]) -> bool:
    return any(text.startswith((NL("af.queue.header", count=0).split("(")[0], NL("af.queue.empty")))
               for text in shown)


async def until(check, seconds: float, what: str) -> float:
    """Wait for `check()` (async) to be true; how long it took. Fails after `seconds`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while not await check():
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not within {seconds:.0f} s: {what}") from None
    return time.monotonic() - started


async def test_two_processes_follow_the_file_with_and_without_sighup_and_survive_an_invalid_edit(
        postgres_database, microsoft, tmp_path, capsys):
    await migrated(postgres_database)
    microsoft.installed.add(BRAM.aad)
    path = tmp_path / "config.toml"
    path.write_text(config_text(postgres_database, bram_teams=BRAM.aad), encoding="utf-8")
    async with replicas(2, postgres_database, microsoft, tmp_path, MELDBOT_CONFIG=str(path)) as group:
        async def bram_is_af_on(process) -> bool:
            return is_queue(await group.say(process, BRAM, "lijst"))

        async def everywhere(af: bool) -> bool:
            return all([await bram_is_af_on(p) == af for p in group.processes])

        assert await everywhere(True)

        # An invalid edit: both keep the old configuration, say so in the log (the key, not the value).
        path.write_text(config_text(postgres_database, bram=False, bram_teams=BRAM.aad)
                        .replace('name = "anna"', 'name = "Anna Geheim"'), encoding="utf-8")

        async def both_refused() -> bool:
            return all(any(e.get("message", "").startswith("configuration not reloaded") for e in p.lines())
                       for p in group.processes)

        await until(both_refused, CHECK_SECONDS * 2 + 10, "both processes log the invalid file")
        assert await everywhere(True) and all(p.alive() for p in group.processes)
        for process in group.processes:
            [line] = [e for e in process.lines() if e.get("message", "").startswith("configuration not reloaded")]
            assert line["keys"] == ["meldpunt[0].af[0].name"] and "Geheim" not in process.log.read_text()

        # The AF removed, no signal: the file check finds it on both.
        path.write_text(config_text(postgres_database, bram=False), encoding="utf-8")
        watched = await until(lambda: everywhere(False), CHECK_SECONDS * 2 + 10, "both refuse bram's lijst")

        # Back again, with SIGHUP (systemctl reload): at once, not at the next check.
        path.write_text(config_text(postgres_database, bram_teams=BRAM.aad), encoding="utf-8")
        for process in group.processes:
            os.kill(process.proc.pid, signal.SIGHUP)
        hangup = await until(lambda: everywhere(True), 5, "both accept bram's lijst after SIGHUP")
        for process in group.processes:
            reasons = [e.get("why") for e in process.lines() if e.get("message") == "configuration reloaded"]
            assert reasons == ["file changed", "SIGHUP"], reasons
        assert all(p.alive() for p in group.processes)
        # The only errors: the invalid file, once per process.
        assert {name: [e["message"][:28] for e in errors] for name, errors in group.errors().items()} == {
            name: ["configuration not reloaded: "] for name in ("p1", "p2")}
    with capsys.disabled():
        print(f"\n[reload] AF removed in the file: refused by both processes after {watched:.1f} s (check every "
              f"{CHECK_SECONDS:.0f} s); added back with SIGHUP: after {hangup:.1f} s")
