"""Microsoft's local Teams client, the Microsoft 365 Agents Playground, against meldbot on loopback; its page
driven by Playwright (playwright-core from npm) in Debian's Chromium. See ../shared/testing/teams.md.

    async with PlaygroundRig(tmp_path, db_url, clock) as rig:
        await rig.page.say("melden")
        await rig.page.click(["Versturen"])

Three processes besides the test: the Playground (Node: the Teams client's page and the Bot Connector,
recording every request both ways), the page's driver (Node, tests/playground/driver.mjs, JSON lines on its
stdin/stdout) and a proxy sink. meldbot runs in the test's own event loop, wired as the composition root wires
it, in anonymous mode (the Playground sends no tokens).

Nothing leaves the machine: the Playground posts telemetry despite --disable-telemetry, so its proxy
variables point at the sink, which answers every request at once with 502 and never forwards one; Chromium
uses the sink as its proxy too, and the driver aborts every request of the page to a non-loopback host.

Install the Node side with `make test` (or `npm ci --prefix tests/playground`) and Debian's `chromium`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from meldbot.run.app import build_app, teams_adapter
from tests.support import make_config

HERE = Path(__file__).resolve().parents[1] / "playground"        # tests/playground, the Node project
CLI = HERE / "node_modules" / "@microsoft" / "m365agentsplayground" / "cli.js"
DRIVER = HERE / "driver.mjs"
CHROMIUM = os.environ.get("MELDBOT_TEST_CHROMIUM", "/usr/bin/chromium")
WAIT = 30.0

APP_ID = "5d3c1a2b-7e8f-4a6b-9c0d-1e2f3a4b5c6d"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass(frozen=True)
class Person:
    name: str
    aad: str     # Teams user id and object id alike: the Playground knows users by id only

    @property
    def upn(self) -> str:
        return self.name.split()[0].lower() + "@bergeijk.example"


MELDER = Person("Piet Jansen", "11111111-2222-4333-8444-555555555555")
AF = Person("Anna de Vries", "aaaaaaaa-bbbb-4ccc-8ddd-000000000001")
# The Playground's config needs at least five users besides the current one.
OTHERS = tuple(Person(f"Collega {i}", f"cccccccc-0000-4000-8000-00000000000{i}") for i in range(1, 5))


class PlaygroundError(AssertionError):
    """The Playground or its page did not do what was asked in time; the message says where to look."""


def install_hint() -> str:
    return "run `make test` (it runs `npm ci --prefix tests/playground`) and `apt-get install chromium`"


def check_installed() -> None:
    """Fail, never skip: CI installs all of it (.ci/run, the Makefile)."""
    if shutil.which("node") is None:
        raise PlaygroundError("node is not installed: the Playground needs Node.js >= 20; " + install_hint())
    if not CLI.is_file() or not (HERE / "node_modules" / "playwright-core").is_dir():
        raise PlaygroundError(f"{HERE / 'node_modules'} is incomplete: " + install_hint())
    if not Path(CHROMIUM).is_file():
        raise PlaygroundError(f"{CHROMIUM} is missing: " + install_hint())


def _yaml_person(p: Person, indent: str) -> str:
    first, _, last = p.name.partition(" ")
    return (f'{indent}id: "{p.aad}"\n{indent[:-2]}  name: "{p.name}"\n{indent[:-2]}  userPrincipleName: "{p.upn}"\n'
            f'{indent[:-2]}  aadObjectId: "{p.aad}"\n{indent[:-2]}  givenName: "{first}"\n'
            f'{indent[:-2]}  surname: "{last}"\n{indent[:-2]}  email: "{p.upn}"\n')


def playground_config() -> str:
    """The Playground's YAML: tenant, the bot as 28:<app id>, the melder as current user, the AF and others."""
    users = "".join("  - " + _yaml_person(p, "    ").lstrip() for p in (AF, *OTHERS))
    return (f'version: "0.1.1"\ntenantId: "{TENANT}"\nbot:\n  id: "28:{APP_ID}"\n  name: "Meldbot"\n'
            f"currentUser:\n  {_yaml_person(MELDER, '  ').lstrip()}users:\n{users}"
            'personalChat:\n  id: "a:personal-piet"\ngroupChat:\n  id: "19:groep@thread.v2"\n  name: "Groep"\n'
            'team:\n  id: "19:team@thread.tacv2"\n  name: "Team"\n  aadGroupId: "dddddddd-0000-4000-8000-000000000001"\n'
            '  channels:\n    - id: "19:algemeen@thread.tacv2"\n      name: "Algemeen"\n')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "".join(deque(path.open(encoding="utf-8", errors="replace"), maxlen=lines))
    except OSError:
        return f"({path} not written)"


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """End a process started in a session of its own, with what it started (Chromium's processes)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Sink:
    """A proxy that forwards nothing: every request (CONNECT included) gets 502 at once and is listed."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.requests.append(line.decode("latin-1").strip())
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()


class Page:
    """The Playground's page in Chromium, through tests/playground/driver.mjs. Every call has a deadline."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._log = None
        self.last: dict = {}       # the driver's answer to the last say() or click(): replies, new cards

    async def start(self, url: str, proxy: str) -> None:
        self._log = open(self.log_path, "ab")
        self._process = await asyncio.create_subprocess_exec(
            shutil.which("node"), str(DRIVER), "--url", url, "--chromium", CHROMIUM, "--proxy", proxy,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self._log, cwd=HERE,
            limit=1 << 24, start_new_session=True)
        self._reader = asyncio.create_task(self._read())
        await self.call("open", timeout=WAIT)

    async def _read(self) -> None:
        assert self._process and self._process.stdout
        while line := await self._process.stdout.readline():
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if (future := self._pending.pop(answer.get("id"), None)) and not future.done():
                future.set_result(answer)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PlaygroundError(f"the page driver stopped; its log: {self.log_path}"))

    async def call(self, cmd: str, timeout: float = WAIT, **params) -> dict:
        if self._process is None or self._process.returncode is not None:
            raise PlaygroundError(f"the page driver is not running; its log: {self.log_path}")
        number = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        # The driver's own deadline (milliseconds) ends first, so its error message is the one seen.
        request = {"id": number, "cmd": cmd, **params, "timeout": int(timeout * 1000)}
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        await self._process.stdin.drain()
        try:
            answer = await asyncio.wait_for(future, timeout + 10)
        except asyncio.TimeoutError:
            raise PlaygroundError(f"the page driver did not answer {cmd} in {timeout + 10:.0f} s") from None
        if not answer.get("ok"):
            raise PlaygroundError(f"{cmd} {params}: {answer.get('error')}")
        return answer

    async def say(self, text: str, expect: str | None = None, timeout: float = 20) -> list[str]:
        """Type and send `text`; with `expect`, wait for a reply that shows it. The bot's messages since (their
        text as the page shows it, a card's buttons included)."""
        self.last = await self.call("say", text=text, expect=expect, timeout=timeout)
        return self.last["replies"]

    async def click(self, titles: list[str], expect: str | None = None, timeout: float = 20) -> list[str]:
        """Press the button, in a card that arrived after the last action, titled like one of `titles` (an
        exact title first, then one that contains it); with `expect`, wait for a reply that shows it. The
        bot's messages since, as say() gives them."""
        self.last = await self.call("click", titles=titles, expect=expect, timeout=timeout)
        return self.last["replies"]

    async def wait_text(self, text: str, *, regex: bool = False, count: int = 1, timeout: float = 20) -> list[str]:
        return (await self.call("wait_text", text=text, regex=regex, count=count, timeout=timeout))["matches"]

    async def state(self) -> dict:
        return await self.call("state")

    async def screenshot(self, path: Path) -> Path:
        await self.call("screenshot", path=str(path))
        return path

    async def network(self) -> dict:
        return await self.call("network")

    async def stop(self) -> None:
        if self._process and self._process.returncode is None:
            try:
                self._process.stdin.close()
                await asyncio.wait_for(self._process.wait(), 10)
            except (asyncio.TimeoutError, OSError, BrokenPipeError):
                _kill_group(self._process)
                await self._process.wait()
        if self._reader:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._log:
            self._log.close()


class Playground:
    """The Playground's server (`cli.js start`): the Teams client's page and the connector on loopback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log_path = folder / "playground.log"        # its own log file
        self.out_path = folder / "playground.out"        # its stdout and stderr
        self.recording = folder / "playground-recording.json"
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_connector"

    async def start(self, bot_endpoint: str, proxy: str, attempts: int = 3) -> None:
        config = self.folder / "playground.yml"
        config.write_text(playground_config(), encoding="utf-8")
        env = {**os.environ, "TEAMSAPPTESTER_BROWSER": "none", "M365_AGENTS_PLAYGROUND_CONFIG_PATH": str(config),
               "M365_AGENTS_PLAYGROUND_LOGFILE": str(self.log_path),
               "M365_AGENTS_PLAYGROUND_RECORDING_FILE": str(self.recording),
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = proxy
        for _ in range(attempts):
            # It silently takes another port when the one asked for is taken, and its connector's address
            # (--service-url) must name the port it got: a mismatch is tried again on a new port.
            wanted = free_port()
            out = self.out_path.open("ab")
            self._process = await asyncio.create_subprocess_exec(
                shutil.which("node"), str(CLI), "start", "--app-endpoint", bot_endpoint, "--channel-id", "msteams",
                "--port", str(wanted), "--service-url", f"http://127.0.0.1:{wanted}/_connector",
                "--disable-telemetry", "--enable-events-recording",
                env=env, cwd=self.folder, stdout=asyncio.subprocess.PIPE, stderr=out, start_new_session=True)
            got = await self._listening(out)
            if got == wanted:
                self.port = got
                await self._ready()
                return
            await self.stop()
        raise PlaygroundError(f"the Playground did not listen on the port asked for; its log:\n{tail(self.log_path)}")

    async def _listening(self, out) -> int | None:
        assert self._process and self._process.stdout
        try:
            async with asyncio.timeout(WAIT):
                while line := await self._process.stdout.readline():
                    out.write(line)
                    out.flush()
                    text = line.decode(errors="replace").strip()
                    if text.startswith("Listening on "):
                        asyncio.get_running_loop().create_task(self._copy(out))
                        return int(text.split()[-1])
        except TimeoutError:
            pass
        raise PlaygroundError(f"the Playground did not start; its log:\n{tail(self.log_path)}\n{tail(self.out_path)}")

    async def _copy(self, out) -> None:
        try:
            while line := await self._process.stdout.readline():
                out.write(line)
                out.flush()
        finally:
            out.close()

    async def _ready(self) -> None:
        """It prints "Listening on" before it reads its config: a bad config shows in its log a moment later."""
        import aiohttp

        async with asyncio.timeout(WAIT), aiohttp.ClientSession() as http:
            while True:
                if self._process.returncode is not None or "Failed to start" in tail(self.log_path):
                    raise PlaygroundError(f"the Playground stopped; its log:\n{tail(self.log_path)}")
                try:
                    async with http.get(self.url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def recorded(self) -> list[dict]:
        """The Playground's recording: every request both ways with its body and answer, as JSON documents
        separated by lines of "---" (0.2.28)."""
        try:
            raw = self.recording.read_text(encoding="utf-8")
        except OSError:
            return []
        return [json.loads(part) for part in raw.split("\n---\n") if part.strip()]

    def urls(self) -> set[str]:
        """Every address the Playground's recording shows a request to."""
        return {e["request"].get("url", "") for e in self.recorded()}

    def delivered_to(self, person: "Person") -> list[dict]:
        """What the bot posted, and the Playground accepted, in the 1:1 chats it opened with `person`."""
        entries = self.recorded()
        chats = {e["response"]["body"]["id"] for e in entries
                 if e.get("activityName") == "createConversation" and e["response"].get("statusCode") in (200, 201)
                 and [m.get("id") for m in (e["request"].get("body") or {}).get("members", [])] == [person.aad]}
        return [e["request"]["body"] for e in entries
                if e.get("direction", "").startswith("User Application") and e.get("conversationId") in chats
                and e.get("activityName") == "message" and e["response"].get("statusCode") in (200, 201)]

    async def stop(self) -> None:
        if self._process and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except asyncio.TimeoutError:
                _kill_group(self._process)
                await self._process.wait()


def playground_env(service_url: str) -> dict[str, str]:
    """meldbot with Teams on in anonymous mode (the Playground sends no tokens), its connector allowed, and
    the AF on Teams under her object id."""
    return {
        "MELDBOT_TEAMS__ENABLED": "true",
        "MELDBOT_TEAMS__ANONYMOUS": "true",
        "MELDBOT_TEAMS__APP_ID": APP_ID,
        "MELDBOT_TEAMS__ALLOWED_SERVICE_URLS": service_url,
        "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true",
        "MELDBOT_MELDPUNT__0__TEAMS_TENANTS": TENANT,
        "MELDBOT_MELDPUNT__0__AF__0__TEAMS": AF.aad,
    }


@dataclass
class PlaygroundRig:
    """meldbot on loopback, the Playground pointed at it, and its page in Chromium."""

    folder: Path
    db_url: str
    clock: object
    sink: Sink = field(default_factory=Sink)
    app: object = None
    page: Page = None
    playground: Playground = None

    async def __aenter__(self) -> "PlaygroundRig":
        check_installed()
        self.playground = Playground(self.folder)
        self.page = Page(self.folder / "driver.log")
        self._runner = None
        await self.sink.start()
        # The bot's socket is held from the start, so the Playground can be told the address before meldbot
        # (which must know the Playground's connector address) is made.
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        bot_port = self._socket.getsockname()[1]
        try:
            await self.playground.start(f"http://127.0.0.1:{bot_port}/api/messages", self.sink.url)
            config = make_config(self.db_url, **playground_env(self.playground.service_url))
            adapter = teams_adapter(config, lambda: app.uow(), self.clock, lambda: (app.bot, app.dispatcher),
                                    connector_timeout=10)
            app = build_app(config, clock=self.clock, notifiers={"teams": adapter.notifier}, mode="chat")
            self.app = app
            web_app = web.Application()
            adapter.attach(web_app)
            self._runner = web.AppRunner(web_app, access_log=None)
            await self._runner.setup()
            await web.SockSite(self._runner, self._socket).start()
            await app.__aenter__()
            self._app_entered = True
            await self.page.start(self.playground.url, self.sink.url)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.page.stop()
        if getattr(self, "_app_entered", False):
            self._app_entered = False
            await self.app.__aexit__(None, None, None)
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        await self.playground.stop()
        await self.sink.stop()
        self._socket.close()

    def logs(self) -> str:
        """The last lines of every log and the last requests the Playground recorded, for an assertion's
        message."""
        logs = "\n".join(f"--- {path.name} ---\n{tail(path)}" for path in (
            self.playground.log_path, self.playground.out_path, self.page.log_path))
        try:
            entries = self.playground.recorded()[-12:]
        except (ValueError, KeyError) as exc:
            entries, logs = [], logs + f"\n(recording unreadable: {exc})"
        lines = []
        for e in entries:
            body = e["request"].get("body")
            text = body.get("text") if isinstance(body, dict) else None
            lines.append(f"{e.get('direction')} {e.get('activityName')} {e.get('conversationId')} "
                         f"-> {e.get('response', {}).get('statusCode')} {(text or '')[:80]!r}")
        return logs + f"\n--- {self.playground.recording.name} (last requests) ---\n" + "\n".join(lines)

    async def evidence(self, name: str) -> str:
        """A screenshot and the logs' last lines: what a failing test shows."""
        try:
            shot = await self.page.screenshot(self.folder / f"{name}.png")
        except Exception as exc:  # the page may be what failed
            shot = f"(no screenshot: {exc})"
        return f"screenshot: {shot}\n{self.logs()}"
