"""The bot in a chat, as the console drives it: the report dialog's scripts, one message at a time, and the
AF's desk read back through the unit of work. For the tests that run the whole bot on real storage."""

from __future__ import annotations

import asyncio
import logging

from meldbot.core.domain import RefQuery
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.storage.db import Database

SCRIPT = [
    "melden",
    "Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun paspoorten.",
    "Kerkstraat 3, Bergeijk",
    "gisteren",
    "onbekend",
    "1",
    "balie",
    "nee",
    "versturen",
]


async def migrated(url: str) -> None:
    db = Database(url)
    await db.migrate()
    await db.dispose()


def say(user: str, text: str) -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", user), conversation_id=user, text=text, sender_name=user)


async def report_as(app, user: str, script=SCRIPT) -> list:
    replies = []
    for line in script:
        replies = await app.bot.handle(say(user, line))
    return replies


NAMED = ["melden", "Een man houdt de paspoorten van zes vrouwen", "Kerkstraat 12a, Bergeijk", "gisteren",
         "Piet Jansen, Jansen Uitzend B.V.", "arbeid", "balie", "nee", "versturen"]
ANONYMOUS = ["melden", "Stapelbedden voor twaalf mensen", "kerkstraat 12 A", "vandaag", "onbekend", "1",
             "huisbezoek", "ja", "versturen"]


def msg(user: str, text: str, name: str | None = None) -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", user), conversation_id=user, text=text,
                           sender_name=name or user.title())


class Chat:
    def __init__(self, app, notifier):
        self.app, self.notifier = app, notifier

    async def say(self, user: str, text: str, name: str | None = None) -> str:
        replies = await self.app.bot.handle(msg(user, text, name))
        await self.app.dispatcher.deliver_pending()
        return "\n".join(r.text for r in replies)

    async def replies(self, user: str, text: str):
        return await self.app.bot.handle(msg(user, text))

    async def report(self, user: str, script=NAMED, name: str | None = None) -> str:
        for line in script:
            out = await self.say(user, line, name)
        return out

    def inbox(self, user: str) -> list[str]:
        return [r.text for r in self.notifier.to(user)]

    async def signal(self, number: int, events: bool = True):
        async with self.app.uow() as uow:
            return await uow.signals.find(RefQuery(number), ["bergeijk"], with_events=events)

    async def audit(self, number: int):
        async with self.app.uow() as uow:
            signal = await uow.signals.find(RefQuery(number), ["bergeijk"])
            return await uow.audit.of_signal(signal.id)


async def run_cli(monkeypatch, url: str, *args: str, **env: str) -> int:
    """`meldbot <args>` through meldbot.run.cli.main on the example configuration and the database `url`, beside
    the running test's event loop, as the administrator runs it beside the bot; `env`: more variables."""
    from meldbot.run.cli import main
    from tests.support import EXAMPLE

    monkeypatch.setenv("MELDBOT_STORAGE__URL", url)
    monkeypatch.setenv("MELDBOT_CONFIG", str(EXAMPLE))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # main() sets up logging for a process of its own; give pytest its handlers back afterwards.
    root, ours = logging.getLogger(), logging.getLogger("meldbot")
    saved = root.handlers[:], root.level, ours.level
    try:
        return await asyncio.to_thread(main, list(args))
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        ours.setLevel(saved[2])
