"""Teams on the real Agents SDK HTTP stack, offline: the bot wired as the composition root wires it, served on a
loopback port against the loopback Bot Connector of teams_fakes.py, and what a Teams client shows of a message."""

from __future__ import annotations

import asyncio
import html
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from meldbot.adapters.teams import TeamsAdapter
from meldbot.run.app import build_app, teams_adapter
from tests.support import make_config
from tests.support.teams_fakes import ANNA, APP_ID, OUTBOUND_TOKEN, TENANT, FakeMicrosoft, activity

DEFAULT = object()


def teams_env(fake: FakeMicrosoft, *, af: bool = True, anonymous: bool = False) -> dict[str, str]:
    env = {
        "MELDBOT_TEAMS__ENABLED": "true",
        "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true",
        "MELDBOT_TEAMS__OPENID_METADATA_URL": fake.url + "/openid",
        "MELDBOT_TEAMS__ALLOWED_SERVICE_URLS": fake.service_url,
        "MELDBOT_MELDPUNT__0__TEAMS_TENANTS": TENANT,
        "MELDBOT_MELDPUNT__0__AF__0__TEAMS": ANNA.aad.upper() if af else "",   # case differs from Teams'
    }
    if anonymous:
        env["MELDBOT_TEAMS__ANONYMOUS"] = "true"
    else:
        env.update({"MELDBOT_TEAMS__APP_ID": APP_ID, "MELDBOT_TEAMS__APP_PASSWORD": "never-sent",
                    "MELDBOT_TEAMS__TENANT_ID": TENANT, "MELDBOT_TEAMS__OUTBOUND_TOKEN": OUTBOUND_TOKEN})
    return env


@dataclass
class TeamsBot:
    app: object
    adapter: TeamsAdapter
    url: str
    fake: FakeMicrosoft
    http: aiohttp.ClientSession
    sleeps: list[float] = field(default_factory=list)

    async def post(self, body: dict, auth=DEFAULT, path: str = "/api/messages") -> int:
        headers = {}
        if auth is DEFAULT:
            auth = "Bearer " + self.fake.token()
        if auth is not None:
            headers["Authorization"] = auth
        async with self.http.post(self.url + path, json=body, headers=headers) as response:
            await response.read()
            return response.status

    async def say(self, user, text: str | None = None, *, value: dict | None = None, **kw) -> list[dict]:
        """Send like Teams does; the replies the bot posted to this message."""
        body = activity(self.fake, user, text, value=value, **kw)
        status = await self.post(body)
        assert status in (200, 202), status
        return self.fake.replies_to(body["id"])


async def _healthz(request):
    return web.json_response({"status": "ok"})


@asynccontextmanager
async def running(db_url: str, fake: FakeMicrosoft, clock, env: dict | None = None, **options):
    env = {**teams_env(fake, **options), **(env or {})}
    config = make_config(db_url, **env)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:   # a 429's wait is recorded, not slept
        sleeps.append(seconds)

    # Wired as the composition root wires it; the bot and the dispatcher are there once `app` is.
    adapter = teams_adapter(config, lambda: app.uow(), clock, lambda: (app.bot, app.dispatcher),
                            sleep=sleep, connector_timeout=5)
    app = build_app(config, clock=clock, notifiers={"teams": adapter.notifier}, mode="chat")
    web_app = web.Application()
    web_app.router.add_get("/healthz", _healthz)
    adapter.attach(web_app)                 # started and stopped with the server
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        async with asyncio.timeout(60):     # a failure must never hang CI
            async with app, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                yield TeamsBot(app, adapter, url, fake, http, sleeps)
    finally:
        await runner.cleanup()


async def stored_rows(app) -> dict[str, int]:
    counts = {}
    async with app.db.engine.connect() as conn:
        for table in ("conversation", "conversation_reference", "processed_event", "person", "signal", "audit",
                      "outbox"):
            counts[table] = (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar()
    return counts


def seen(posted: dict) -> str:
    """What a Teams client shows of a message's words: its text, read as Markdown with HTML in it, or
    for a message that is one Adaptive Card, the card's TextBlocks and facts, a line each."""
    if "text" in posted:
        return html.unescape(posted["text"].replace("<br>", "\n")).replace("\xa0", " ")
    lines = []
    for attachment in posted.get("attachments") or []:
        content = attachment.get("content")
        for block in content.get("body", []) if isinstance(content, dict) else []:
            if block.get("type") == "TextBlock":
                lines.append(block["text"])
            elif block.get("type") == "FactSet":
                lines += [f"{fact['title']}: {fact['value']}" for fact in block["facts"]]
    return html.unescape("\n".join(lines)).replace("\xa0", " ")


def texts_of(posted: list[dict]) -> list[str]:
    return [seen(p) for p in posted]


def with_text(fake: FakeMicrosoft, conversation: str, part: str):
    return lambda: [p for p in fake.posts(conversation) if part in seen(p)]
