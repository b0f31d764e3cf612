"""The terminal as a chat platform: one person plays every role, switching with `:als <id>`."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from meldbot.core.i18n import texts
from meldbot.core.messaging import Identity, IncomingMessage, RecipientAway, Reply
from meldbot.core.text import clean_incoming

PLATFORM = "console"


def render(reply: Reply) -> str:
    """Plain text: choices as a numbered list, buttons as the command to type."""
    lines = [reply.text]
    for choice in reply.choices:
        if choice.word == str(choice.number):  # answered by its number only: "1. Gemeente Bergeijk"
            lines.append(f"  {choice.number}. {choice.label}")
        else:
            lines.append(f"  {choice.number}. {choice.word} — {choice.label}")
    for action in reply.actions:
        lines.append(f"  [{action.command}]")
    return "\n".join(lines)


class ConsoleNotifier:
    """Prints messages for the identity at the keyboard; others wait in the outbox until switched to."""

    platform = PLATFORM

    def __init__(self, out: TextIO, image_dir: Path) -> None:
        self._out = out
        self._image_dir = image_dir
        self.active: str = ""
        self._shown: set[str] = set()

    async def send(self, recipient: Identity, reply: Reply, idempotency_key: str) -> None:
        if recipient.user_id.casefold() != self.active.casefold():
            raise RecipientAway(recipient.user_id)
        if idempotency_key in self._shown:
            return
        self._shown.add(idempotency_key)
        self.show(reply)

    def show(self, reply: Reply) -> None:
        text = render(reply)
        if reply.image:
            self._image_dir.mkdir(parents=True, exist_ok=True)
            path = self._image_dir / f"{uuid.uuid4().hex[:8]}.png"
            path.write_bytes(reply.image)
            text += "\n" + texts("nl")("console.image", path=path)
        self._out.write(text + "\n\n")
        self._out.flush()


class ConsoleSession:
    """Reads lines from stdin and hands them to the bot as the current identity.

    Narrow dependencies, all injected: the notifier that prints, `handle(message) -> replies` (the turn),
    `wake(identity)` (the outbox: the person at the keyboard is back) and `deliver_pending()` (the outbox:
    send what is due now, so it shows before the next prompt)."""

    def __init__(self, config, notifier: ConsoleNotifier, *,
                 handle: Callable[[IncomingMessage], Awaitable[list[Reply]]],
                 wake: Callable[[Identity], Awaitable[None]], deliver_pending: Callable[[], Awaitable[Any]],
                 stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
        self._config = config
        self._notifier = notifier
        self._handle = handle
        self._wake = wake
        self._deliver_pending = deliver_pending
        self._in = stdin
        self._out = out
        self._tty = stdin.isatty()

    def _say(self, text: str) -> None:
        self._out.write(f"* {text}\n")
        self._out.flush()

    async def _switch(self, user: str) -> None:
        self._notifier.active = user
        config = self._config
        t = texts(config.language)
        roles = config.af_for(PLATFORM, user)
        if roles:
            self._say(t("console.switched_af", user=user, meldpunt=", ".join(m.name for m, _ in roles)))
        else:
            self._say(t("console.switched", user=user))
        await self._wake(Identity(PLATFORM, user))
        await self._deliver_pending()

    async def run(self) -> None:
        config = self._config
        t = texts(config.language)
        self._notifier.active = config.console.user
        self._say(t("console.start", user=config.console.user))
        await self._switch(config.console.user)
        loop = asyncio.get_running_loop()
        while True:
            if self._tty:
                self._out.write(f"[{self._notifier.active}]> ")
                self._out.flush()
            line = await loop.run_in_executor(None, self._in.readline)
            if not line:
                break
            # Also `:als <id>`: an id with a terminal escape or bytes that are not UTF-8 must not be stored.
            line = clean_incoming(line.rstrip("\r\n"))
            if not self._tty:
                self._out.write(f"[{self._notifier.active}]> {line}\n")
            stripped = line.strip()
            if stripped.startswith(":"):
                word, _, rest = stripped[1:].partition(" ")
                word = word.lower()
                if word in ("als", "as") and rest.strip():
                    await self._switch(rest.strip())
                elif word in ("stop", "quit", "exit"):
                    break
                elif word in ("wie", "who"):
                    self._say(t("console.who", user=self._notifier.active))
                else:
                    self._say(t("console.help"))
                continue
            user = self._notifier.active
            msg = IncomingMessage(
                sender=Identity(PLATFORM, user),
                conversation_id=user,
                text=line,
                event_id=uuid.uuid4().hex,
                sender_name=user,
            )
            for reply in await self._handle(msg):
                self._notifier.show(reply)
            # Messages the turn queued for this same person show before the next prompt.
            await self._deliver_pending()
        await self._deliver_pending()
        self._say(t("console.bye"))
