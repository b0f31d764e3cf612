"""docs/eerste-uur.md done as written, against a real Synapse: its configuration, its shell blocks and what it
says `meldbot doctor` (and the bot) will answer at each step.

How the page is read:
- `<!-- config: NAME -->` before a toml block: the configuration file of that part of the page;
- `<!-- run: NAME -->` before a sh block: commands the test runs as they stand, with bash in the gemeente's
  folder and the venv's `meldbot` on PATH, after reading in geheim.env as the page tells a new terminal to;
- `<!-- output: NAME -->` before a text block: lines the real output must show, in that order. The page may
  leave lines out; a line ending in "..." is the start of a real line.
Ids, folders, times, process names and the schema version are written the page's way before comparing.

Where the test deviates from the page, and why: the page's homeserver and Matrix domain become the test's
Synapse; the HTTP port is a free one instead of 8080; the Teams placeholders become made-up ids. A report is
made through a real Matrix client (tests/support/matrix.py's Person) instead of Element.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.support import ROOT
from tests.support.matrix import PASSWORD, SCRIPT, Person, needs_synapse, until
from tests.support.synapse import free_port

PAGE = ROOT / "docs" / "eerste-uur.md"
PAGE_FOLDER = "/home/ict/meldbot-proef"
PAGE_HOMESERVER = "https://matrix.bergeijk.nl"
PAGE_DOMAIN = "bergeijk.nl"
PAGE_PORT = "127.0.0.1:8080"
DEADLINE = 30  # seconds for any one command or wait

_BLOCK = re.compile(r"<!-- (config|run|output): ([\w-]+) -->\s*\n\s*```\w*\n(.*?)\n\s*```", re.S)
# What differs from one run to the next, written one way on both sides.
_VARYING = [
    (re.compile(r"\d{2}-\d{2}-\d{4} \d{2}:\d{2} [A-Z]{3,4}"), "<tijd>"),
    (re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} "), "<tijd> "),   # a log line's time
    (re.compile(r"Proces \S+ leest"), "Proces <naam> leest"),
    (re.compile(r"\bMH-\d{4}-"), "MH-<jaar>-"),
    (re.compile(r"(versie|->) \d{4}\b"), r"\1 <versie>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<guid>"),
]


def page_blocks() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for kind, name, body in _BLOCK.findall(PAGE.read_text(encoding="utf-8")):
        assert (kind, name) not in found, f"two blocks named {kind}: {name} in {PAGE.name}"
        indent = min((len(line) - len(line.lstrip()) for line in body.splitlines() if line.strip()), default=0)
        found[kind, name] = "\n".join(line[indent:] for line in body.splitlines())
    return found


BLOCKS = page_blocks()


def block(kind: str, name: str) -> str:
    assert (kind, name) in BLOCKS, f"{PAGE.name} has no <!-- {kind}: {name} --> block"
    return BLOCKS[kind, name]


def _normal(line: str) -> str:
    for pattern, replacement in _VARYING:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def assert_shows(name: str, real: str, page_way: dict[str, str]) -> None:
    """Every line of the page's output block `name` is in `real` (after `page_way` replacements), in order."""
    for found, written in page_way.items():
        real = real.replace(found, written)
    lines = [_normal(line) for line in real.splitlines()]
    at = 0
    for wanted in (_normal(line) for line in block("output", name).splitlines() if line.strip()):
        prefix = wanted[:-3].rstrip() if wanted.endswith("...") else None
        for index in range(at, len(lines)):
            if lines[index] == wanted or (prefix is not None and lines[index].startswith(prefix)):
                at = index + 1
                break
        else:
            raise AssertionError(f"docs/{PAGE.name}, output {name!r}: {wanted!r} is not (in that order) in the "
                                 f"real output:\n{real}")


class Gemeente:
    """The folder a gemeente's administrator works in, and a terminal there (bash, the venv on PATH)."""

    def __init__(self, folder: Path, http_port: int) -> None:
        self.folder = folder
        self.http_port = http_port
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "meldbot").exists(), f"no meldbot beside {sys.executable}: run the tests with the venv's python"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                        MELDBOT_HTTP__LISTEN=f"127.0.0.1:{http_port}")

    def script(self, commands: str, **override: str) -> list[str]:
        """A new terminal: geheim.env read in as the page says, then the test's overrides, then the commands."""
        prelude = "if [ -f geheim.env ]; then set -a; . ./geheim.env; set +a; fi\n"
        overrides = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in override.items())
        commands = commands.replace(PAGE_PORT, f"127.0.0.1:{self.http_port}")
        return ["bash", "-c", prelude + overrides + commands]

    def run(self, commands: str, stdin: str = "", **override: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.script(commands, **override), cwd=self.folder, env=self.env, input=stdin,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=DEADLINE)

    def start(self, commands: str, log: Path) -> subprocess.Popen:
        assert len(commands.strip().splitlines()) == 1, "the start block is one command"
        with open(log, "ab") as out:
            return subprocess.Popen(self.script("exec " + commands.strip()), cwd=self.folder, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def page_config(name: str, replace: dict[str, str]) -> str:
    text = block("config", name)
    for written, real in replace.items():
        assert written in text, f"the page's {name} configuration has no {written!r}"
        text = text.replace(written, real)
    return text


@needs_synapse
async def test_the_first_hour_on_matrix_goes_as_the_page_says(synapse, tmp_path):
    started = time.monotonic()
    # Stap 1: the accounts (the page's ids, on the test's homeserver).
    bot_id, af_id = synapse.register("meldbot", PASSWORD), synapse.register("anna", PASSWORD)
    employee_id = synapse.register("medewerker", PASSWORD)
    domain = bot_id.split(":", 1)[1]
    folder = tmp_path / "meldbot-proef"
    folder.mkdir()
    gemeente = Gemeente(folder, free_port())
    page_way = {synapse.url: PAGE_HOMESERVER, str(folder): PAGE_FOLDER, f":{domain}": f":{PAGE_DOMAIN}"}

    # Stap 2: the configuration file, with the page's homeserver and domain made the test's.
    config = page_config("matrix", {PAGE_HOMESERVER: synapse.url, PAGE_DOMAIN: domain})
    (folder / "config.toml").write_text(config, encoding="utf-8")
    assert f'user_id = "{bot_id}"' in config and f'matrix = "{af_id}"' in config

    # Stap 3: the password in geheim.env; the doctor misses the key; the key added.
    result = gemeente.run(block("run", "password"), stdin=PASSWORD + "\n")
    assert result.returncode != 0
    assert_shows("no-key", result.stdout, page_way)
    assert (folder / "geheim.env").stat().st_mode & 0o077 == 0, "geheim.env is readable by others"
    result = gemeente.run(block("run", "key"))
    assert result.returncode == 0, result.stdout
    assert "MELDBOT_DATA_KEY=" in (folder / "geheim.env").read_text()

    # Stap 4: no database yet; migrate; the doctor content, and what it says of an unreachable homeserver.
    result = gemeente.run("meldbot doctor")
    assert result.returncode == 1
    assert_shows("no-database", result.stdout, page_way)
    result = gemeente.run(block("run", "migrate"))
    assert result.returncode == 0, result.stdout
    assert_shows("migrate", result.stdout, page_way)
    result = gemeente.run("meldbot doctor")
    assert result.returncode == 0, result.stdout
    assert_shows("ready", result.stdout, page_way)
    closed = f"http://127.0.0.1:{free_port()}"
    result = gemeente.run("meldbot doctor", MELDBOT_MATRIX__HOMESERVER=closed)
    assert result.returncode == 1
    assert_shows("unreachable", result.stdout, {**page_way, closed: PAGE_HOMESERVER})

    # Stap 5: a wrong password stops `meldbot run` at once; the right one starts the bot.
    result = gemeente.run(block("run", "start"), MELDBOT_MATRIX__PASSWORD="niet-het-wachtwoord")
    assert result.returncode != 0
    assert_shows("wrong-password", result.stdout, page_way)

    log = folder / "meldbot.log"
    bot = gemeente.start(block("run", "start"), log)
    employee = af = None
    try:
        def logged(text: str) -> bool:
            if bot.poll() is not None:
                raise AssertionError(f"meldbot run ended: {log.read_text()[-2000:]}")
            return text in log.read_text()

        await until(lambda: logged("meldbot draait"), "meldbot run to start", DEADLINE)
        await until(lambda: logged("matrix cross-signing identity ready"), "the bot's own keys", DEADLINE)
        assert_shows("start", log.read_text(), {**page_way, f"port={gemeente.http_port}": "port=8080"})
        result = gemeente.run("meldbot doctor")
        assert result.returncode == 0, result.stdout
        assert_shows("running", result.stdout, page_way)
        result = gemeente.run(block("run", "healthz"))
        assert_shows("healthz", result.stdout, page_way)

        # Stap 6: an employee opens a chat and reports; the AF is told, without content.
        employee = await Person(synapse, employee_id, tmp_path / "medewerker").start()
        af = await Person(synapse, af_id, tmp_path / "anna").start()
        room = await employee.open_direct(bot_id)
        first = await employee.ask(room, SCRIPT[0], bot_id)
        assert SCRIPT[0] == "melden"
        assert_shows("melden", "\n".join(first), page_way)
        for line in SCRIPT[1:]:
            await employee.ask(room, line, bot_id)
        reference = f"MH-{datetime.now(ZoneInfo('Europe/Amsterdam')).year}-0001"   # `meldbot run` keeps real time
        await employee.message_containing(reference, bot_id)
        _, notice = await af.message_containing(reference, bot_id)
        assert_shows("af", notice.body, page_way)
        assert "paspoorten" not in notice.body

        bot.send_signal(signal.SIGINT)   # Ctrl+C
        await until(lambda: bot.poll() is not None, "meldbot run to stop", DEADLINE)
        assert bot.returncode == 0 and "meldbot is gestopt" in log.read_text()
    finally:
        for person in (employee, af):
            if person is not None:
                await person.stop()
        if bot.poll() is None:
            os.killpg(bot.pid, signal.SIGKILL)
            bot.wait(timeout=10)
    print(f"\n[first hour] Matrix, from accounts to a report: {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_the_teams_part_of_the_page_gives_the_doctor_and_package_lines_it_shows(tmp_path):
    folder = tmp_path / "meldbot-proef"
    folder.mkdir()
    gemeente = Gemeente(folder, free_port())
    ids = {"<map-id (tenant)>": "0c6c1f39-4a8e-4f5e-9a47-3f1d2b0c7e21",
           "<object-id van Anna>": "b5e3a2d4-7c1f-4e8b-a6d9-1f2e3c4b5a69",
           "<toepassings-id (client)>": "3f2c9a71-5b0e-4d8a-9c61-2e7f0b4a8d15"}
    (folder / "config.toml").write_text(page_config("teams", ids), encoding="utf-8")
    (folder / "geheim.env").write_text("MELDBOT_TEAMS__APP_PASSWORD='clientgeheim'\n")
    assert gemeente.run(block("run", "key")).returncode == 0
    result = gemeente.run(block("run", "migrate"))
    assert result.returncode == 0, result.stdout
    result = gemeente.run("meldbot doctor")
    assert result.returncode == 0, result.stdout
    assert_shows("teams-doctor", result.stdout, {str(folder): PAGE_FOLDER})
    result = gemeente.run(block("run", "teams-manifest"))
    assert result.returncode == 0, result.stdout
    assert_shows("teams-manifest", result.stdout, {str(folder): PAGE_FOLDER})
    assert (folder / "meldbot-teams.zip").stat().st_size > 0


def test_the_page_names_each_block_the_tests_use_and_no_other():
    used = {("config", "matrix"), ("config", "teams"), ("run", "password"), ("run", "key"), ("run", "migrate"),
            ("run", "start"), ("run", "healthz"), ("run", "teams-manifest"), ("output", "no-key"),
            ("output", "no-database"), ("output", "migrate"), ("output", "ready"), ("output", "unreachable"),
            ("output", "start"), ("output", "wrong-password"), ("output", "running"), ("output", "healthz"),
            ("output", "melden"), ("output", "af"), ("output", "teams-doctor"), ("output", "teams-manifest")}
    assert set(BLOCKS) == used
    # A marked block the pattern did not catch (a typo in its fence) would go unchecked.
    assert PAGE.read_text(encoding="utf-8").count("<!-- ") == len(BLOCKS)
