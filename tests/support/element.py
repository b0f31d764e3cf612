"""Element's own crypto stack as a test client: one `node tests/element/client.mjs` process per simulated person.

matrix-js-sdk with the Rust matrix-sdk-crypto (`initRustCrypto`) is what Element Web, Desktop and X run. The
Node side logs in with a password (a new device), bootstraps cross-signing like Element at first login, joins
every invite and streams every timeline message. Commands go as JSON lines to its stdin; answers and message
events come back as JSON lines on its stdout; its log (stderr) goes to a file.

    element = ElementClient(tmp_path / "alice.log")
    await element.start(synapse.url, "alice", PASSWORD, isolation="signed")
    room_id = await element.open_direct(bot_id)
    [answer] = await element.ask(room_id, "melden", bot_id)
    assert answer.body and answer.shield is None, answer
    await element.stop()

Install the Node side with `make test` (or `npm ci --prefix tests/element`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parents[1] / "element"   # tests/element, the Node project
SCRIPT = HERE / "client.mjs"
WAIT = 30.0  # seconds: the default deadline of every command and every wait


class ElementClientError(AssertionError):
    """The Node side answered a command with ok: false, died, or did not answer in time."""


@dataclass(frozen=True)
class Message:
    """One timeline message as the Element client sees it (its latest state: a late decryption replaces it)."""

    room_id: str
    event_id: str
    sender: str
    body: str | None  # None when it could not be decrypted
    decryption_error: str | None  # e.g. UNSIGNED_SENDER_DEVICE, MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE
    shield: dict | None  # {"colour": "RED"|"GREY", "reason": "UNSIGNED_DEVICE"|...}, None when Element shows none
    ts: int = 0

    @property
    def decrypted(self) -> bool:
        return self.decryption_error is None

    def summary(self) -> str:
        body = "<undecryptable>" if self.body is None else repr(self.body[:40])
        shield = f"{self.shield['colour']}/{self.shield['reason']}" if self.shield else "no shield"
        return f"{self.sender}: {body} error={self.decryption_error} {shield}"


def node_command() -> list[str]:
    """The command line that runs the client, or a clear error telling how to install it."""
    node = shutil.which("node")
    if node is None:
        raise ElementClientError("node is not installed: the Element test client needs Node.js >= 20 "
                                 "(then run `make test`, which runs `npm ci --prefix tests/element`)")
    if not (HERE / "node_modules" / "matrix-js-sdk").is_dir():
        raise ElementClientError(f"{HERE / 'node_modules'} is missing: run `make test` "
                                 "or `npm ci --prefix tests/element`")
    return [node, str(SCRIPT)]


class ElementClient:
    """One simulated Element user. Every method has a deadline; a failure raises ElementClientError."""

    def __init__(self, log_path: Path, name: str = "element") -> None:
        self.log_path = Path(log_path)
        self.name = name
        self.user_id: str | None = None
        self.device_id: str | None = None
        self.lines: list[Message] = []  # every streamed message line, late decryptions included
        self._latest: dict[str, Message] = {}  # event id -> latest state, in order of first arrival
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._log = None
        self._changed = asyncio.Event()

    # --- process ---------------------------------------------------------------------------------

    async def launch(self) -> "ElementClient":
        """Start the Node process (start() does it too): loading matrix-js-sdk takes about a second, which
        can overlap with registering the account."""
        if self._process is None:
            await self._launch()
        return self

    async def _launch(self) -> None:
        command = node_command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self._log,
            cwd=HERE, limit=1 << 22)
        self._reader = asyncio.create_task(self._read(), name=f"element-{self.name}-reader")

    async def _read(self) -> None:
        assert self._process and self._process.stdout
        try:
            while line := await self._process.stdout.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # not ours; the protocol is JSON only
                if message.get("event") == "message":
                    self._add(message)
                elif (future := self._pending.pop(message.get("id"), None)) and not future.done():
                    future.set_result(message)
        finally:
            code = await self._process.wait()
            error = ElementClientError(f"the Element client {self.name} exited with {code}; {self._log_tail()}")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()
            self._changed.set()

    def _add(self, line: dict) -> None:
        message = Message(line["room_id"], line["event_id"], line["sender"], line.get("body"),
                          line.get("decryption_error"), line.get("shield"), line.get("ts") or 0)
        self.lines.append(message)
        self._latest[message.event_id] = message  # a dict keeps the first arrival's position
        self._changed.set()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "no log"
        return f"last log lines ({self.log_path}):\n" + "\n".join(text) if text else f"empty log {self.log_path}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def command(self, cmd: str, timeout: float = WAIT, **args: Any) -> dict:
        """Send one command and return its answer; ElementClientError on ok: false or after `timeout` s."""
        if not self.running:
            raise ElementClientError(f"the Element client {self.name} is not running; {self._log_tail()}")
        ident = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        line = json.dumps({"id": ident, "cmd": cmd, "timeout": timeout, **args}) + "\n"
        self._process.stdin.write(line.encode())
        await self._process.stdin.drain()
        try:
            # The Node side answers by its own deadline of `timeout`; this one only catches a hung process.
            answer = await asyncio.wait_for(future, timeout + 5)
        except asyncio.TimeoutError:
            self._pending.pop(ident, None)
            raise ElementClientError(f"{self.name}: no answer to {cmd} within {timeout + 5} s; "
                                     f"{self._log_tail()}") from None
        if not answer.get("ok"):
            raise ElementClientError(f"{self.name}: {answer.get('error')}")
        answer.pop("id", None)
        answer.pop("ok", None)
        return answer

    # --- commands --------------------------------------------------------------------------------

    async def start(self, homeserver: str, user: str, password: str, device_name: str = "Element",
                    isolation: str = "signed", cross_signing: bool = True, reset_cross_signing: bool = False,
                    signature_delay_ms: int = 0, timeout: float = WAIT) -> "ElementClient":
        """Log in as a new device, set up crypto like Element at first login; returns once keys are uploaded.

        isolation: "signed" is Element's "exclude insecure devices" (OnlySignedDevicesIsolationMode),
        "all" the older default (AllDevicesIsolationMode(false)). signature_delay_ms: a slow client, whose new
        cross-signing identity is published that long before its device is signed with it.
        """
        await self.launch()
        answer = await self.command("start", timeout, homeserver=homeserver, user=user, password=password,
                                    device_name=device_name, isolation=isolation, cross_signing=cross_signing,
                                    reset_cross_signing=reset_cross_signing, signature_delay_ms=signature_delay_ms)
        self.user_id, self.device_id = answer["user_id"], answer["device_id"]
        return self

    async def open_direct(self, user_id: str, timeout: float = WAIT) -> str:
        """An encrypted direct chat as Element makes it; returns its room id once `user_id` has joined."""
        return (await self.command("open_direct", timeout, user_id=user_id))["room_id"]

    async def say(self, room_id: str, body: str, timeout: float = WAIT) -> str:
        return (await self.command("say", timeout, room_id=room_id, body=body))["event_id"]

    async def device_status(self, user_id: str, device_id: str, timeout: float = WAIT) -> dict:
        """signedByOwner, crossSigningVerified, localVerified, tofu, isVerified (after a fresh key download)."""
        return await self.command("device_status", timeout, user_id=user_id, device_id=device_id)

    async def user_status(self, user_id: str, timeout: float = WAIT) -> dict:
        """isCrossSigningVerified, wasCrossSigningVerified, needsUserApproval ("identity changed"), isVerified."""
        return await self.command("user_status", timeout, user_id=user_id)

    async def devices(self, user_id: str, timeout: float = WAIT) -> list[str]:
        return (await self.command("devices", timeout, user_id=user_id))["devices"]

    async def set_isolation(self, mode: str, timeout: float = WAIT) -> None:
        await self.command("set_isolation", timeout, mode=mode)

    async def stop(self, timeout: float = 10) -> None:
        """Stop the client and its process; safe to call twice or after a failed start."""
        if self._process is None:
            return
        try:
            if self.running:
                await self.command("stop", timeout)
            await asyncio.wait_for(self._process.wait(), timeout)
        except (ElementClientError, asyncio.TimeoutError, ConnectionError):
            if self.running:
                self._process.kill()
                await self._process.wait()
        finally:
            if self._reader:
                await asyncio.gather(self._reader, return_exceptions=True)
            if self._log:
                self._log.close()
                self._log = None

    # --- what arrived ----------------------------------------------------------------------------

    def messages(self, room_id: str | None = None, sender: str | None = None) -> list[Message]:
        """Messages in arrival order, each in its latest state; filtered by room and sender when given."""
        return [m for m in self._latest.values()
                if (room_id is None or m.room_id == room_id) and (sender is None or m.sender == sender)]

    def after(self, room_id: str, event_id: str, sender: str) -> list[Message] | None:
        """Messages of `sender` in the room after `event_id`; None while `event_id` itself has not arrived."""
        in_room = self.messages(room_id)
        index = next((i for i, m in enumerate(in_room) if m.event_id == event_id), None)
        if index is None:
            return None
        return [m for m in in_room[index + 1:] if m.sender == sender]

    def summary(self, last: int = 12) -> str:
        shown = list(self._latest.values())[-last:]
        return "; ".join(m.summary() for m in shown) or "nothing"

    async def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Wait until `predicate()` is truthy and return its value; AssertionError listing what arrived."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ElementClientError(f"{self.name}: timed out after {timeout} s waiting for {what}; "
                                         f"got {self.summary()}; {self._log_tail()}")
            if not self.running:
                raise ElementClientError(f"{self.name}: waiting for {what}, but the client is not running; "
                                         f"got {self.summary()}; {self._log_tail()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass
        return value

    async def message(self, room_id: str, sender: str, part: str | None = None, timeout: float = WAIT) -> Message:
        """The first message of `sender` in the room: any (decrypted or not), or the first whose body holds `part`."""
        def found():
            return next((m for m in self.messages(room_id, sender)
                         if part is None or (m.body is not None and part in m.body)), None)
        return await self.wait_for(found, f"a message of {sender}" + (f" with {part!r}" if part else ""), timeout)

    async def ask(self, room_id: str, body: str, sender: str, count: int = 1, timeout: float = WAIT) -> list[Message]:
        """Say `body`, then wait for `count` messages of `sender` after it (decrypted or failed); return them."""
        event_id = await self.say(room_id, body, timeout)

        def answers():
            after = self.after(room_id, event_id, sender)
            return after if after is not None and len(after) >= count else None
        return await self.wait_for(answers, f"{count} answer(s) of {sender} to {body!r}", timeout)
