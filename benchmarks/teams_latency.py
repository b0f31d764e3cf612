"""Benchmark 2, Teams against the limit: POST /api/messages -> the reply at the loopback connector.

meldbot (meldbot/adapters/teams.py on the Agents SDK's CloudAdapter, its own JWT validation, SQLite) is
measured against a minimal echo agent on the same SDK in the same process and the same run:

- the echo agent is the SDK's own minimal turn: an `ActivityHandler` that replies with the text it got,
  run by the aiohttp `CloudAdapter` through `start_agent_process`, behind the SDK's standard
  `jwt_authorization_middleware` (`JwtTokenValidator`: PyJWKClient in a worker thread, RS256 check,
  audience = our app id). Its JWKS address is the one place redirected: to the loopback key server
  instead of login.botframework.com. Outbound it uses the SDK's `RestChannelServiceClientFactory`
  (a new `TeamsConnectorClient` per turn, like meldbot) with a static token, as meldbot is configured.
- both reply through the same loopback Bot Connector (tests/support/teams_fakes.py). A turn is timed from the
  start of the signed POST (body and token prepared beforehand) until the connector has read the first
  `message` activity that replies to it; an asyncio future set by the connector's handler marks it,
  so nothing is quantised by polling.
- an employee types the report dialog of tests/support/chat.py (9 messages); every dialog is a new
  employee and conversation. Blocks of one dialog alternate meldbot / echo (the order flips every
  pair, ABBA), after one untimed warm-up dialog on each. Between blocks meldbot's outbox is allowed to
  deliver the AF's notice, untimed, so its background work does not land in the echo's block.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import warnings
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from benchmarks.common import Figure, main, percentile, summary_ms

import aiohttp  # noqa: E402  (benchmarks.common puts the repo root on sys.path first)
from aiohttp import web  # noqa: E402
from jwt import PyJWKClient  # noqa: E402
from microsoft_agents.hosting.aiohttp import (  # noqa: E402
    CloudAdapter,
    jwt_authorization_middleware,
    start_agent_process,
)
from microsoft_agents.hosting.core import ActivityHandler, MessageFactory, RestChannelServiceClientFactory  # noqa: E402
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration, AuthenticationConstants  # noqa: E402
from microsoft_agents.hosting.core.authorization.jwt.jwt_token_validator import (  # noqa: E402
    JwtTokenValidator,
    _JwkClientCacheEntry,
)

from meldbot.run.app import build_app, teams_adapter  # noqa: E402
from meldbot.core.clock import ManualClock  # noqa: E402
from benchmarks.common import bench_config  # noqa: E402
from tests.support.teams_fakes import ANNA, APP_ID, OUTBOUND_TOKEN, TENANT, FakeMicrosoft, User, activity, new_key  # noqa: E402
from tests.support.chat import SCRIPT, migrated  # noqa: E402

SECTION = "2 Teams"
TARGET_P50_RATIO = 1.2
AMS = ZoneInfo("Europe/Amsterdam")
TURN_TIMEOUT = 30.0


# --- the connector: a future per inbound activity, resolved when its first reply arrives --------------

@dataclass
class TimedMicrosoft(FakeMicrosoft):
    """FakeMicrosoft that resolves `waiting[activity id]` with perf_counter() at the first reply to it."""

    waiting: dict[str, asyncio.Future] = field(default_factory=dict)

    async def _record(self, request: web.Request, status: int):
        body = await super()._record(request, status)
        reply_to = request.match_info.get("aid")
        if status == 200 and reply_to and isinstance(body, dict) and body.get("type") == "message":
            future = self.waiting.get(reply_to)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())
        return body


# --- the two agents --------------------------------------------------------------------------------------

def teams_env(fake: FakeMicrosoft) -> dict[str, str]:
    """meldbot with Teams on, as the Teams tests start it (tests/support/teams.py) (not anonymous: JWTs are checked)."""
    return {
        "MELDBOT_TEAMS__ENABLED": "true",
        "MELDBOT_TEAMS__OPENID_METADATA_URL": fake.url + "/openid",
        "MELDBOT_TEAMS__ALLOWED_SERVICE_URLS": fake.service_url,
        "MELDBOT_MELDPUNT__0__TEAMS_TENANTS": TENANT,
        "MELDBOT_MELDPUNT__0__AF__0__TEAMS": ANNA.aad,
        "MELDBOT_TEAMS__APP_ID": APP_ID,
        "MELDBOT_TEAMS__APP_PASSWORD": "never-sent",
        "MELDBOT_TEAMS__TENANT_ID": TENANT,
        "MELDBOT_TEAMS__OUTBOUND_TOKEN": OUTBOUND_TOKEN,
    }


async def serve(web_app: web.Application, stack: AsyncExitStack) -> str:
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/api/messages"


async def start_meldbot(fake: FakeMicrosoft, db_url: str, stack: AsyncExitStack):
    config = bench_config(db_url, **teams_env(fake))
    # Wednesday 18 November 2026, 07:00 in Amsterdam: before office hours, so no reminder or weekly
    # overview joins the conversations unasked (the tests' `early` clock).
    clock = ManualClock(datetime(2026, 11, 18, 7, 0, tzinfo=AMS))
    adapter = teams_adapter(config, lambda: app.uow(), clock, lambda: (app.bot, app.dispatcher), connector_timeout=10)
    app = build_app(config, clock=clock, notifiers={"teams": adapter.notifier}, mode="chat")
    web_app = web.Application()
    adapter.attach(web_app)                 # started and stopped with the server
    await stack.enter_async_context(app)
    url = await serve(web_app, stack)     # registered after the app: the server stops first
    return app, url


class EchoAgent(ActivityHandler):
    """The SDK's minimal agent: says back what it was told, as a reply in the same conversation."""

    async def on_message_activity(self, turn_context) -> None:
        await turn_context.send_activity(MessageFactory.text(turn_context.activity.text or ""))


class _StaticTokenProvider:
    """Stands in for MSAL's cached app token (meldbot is configured with a static outbound token too)."""

    async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
        return OUTBOUND_TOKEN


class _StaticConnections:
    def __init__(self) -> None:
        self._provider = _StaticTokenProvider()

    def get_token_provider(self, claims_identity, service_url):
        return self._provider

    def get_default_connection(self):
        return self._provider

    def get_connection(self, connection_name):
        return self._provider


async def start_echo(fake: FakeMicrosoft, stack: AsyncExitStack) -> str:
    # The SDK's validator fetches Bot Framework keys from login.botframework.com through a cached
    # PyJWKClient; point that one cache entry at the loopback key server, change nothing else.
    JwtTokenValidator._jwk_client_manager._cache[AuthenticationConstants.PUBLIC_ABS_JWKS_URL] = \
        _JwkClientCacheEntry(PyJWKClient(fake.url + "/keys"), threading.Lock())
    adapter = CloudAdapter(channel_service_client_factory=RestChannelServiceClientFactory(_StaticConnections()))
    agent = EchoAgent()

    async def messages(request: web.Request) -> web.Response:
        return await start_agent_process(request, agent, adapter)

    web_app = web.Application(middlewares=[jwt_authorization_middleware])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)    # the SDK reads this plain string key
        web_app["agent_configuration"] = AgentAuthConfiguration(client_id=APP_ID, tenant_id=TENANT)
    web_app.router.add_post("/api/messages", messages)
    return await serve(web_app, stack)


# --- the employee ----------------------------------------------------------------------------------------

@dataclass
class Bench:
    fake: TimedMicrosoft
    http: aiohttp.ClientSession
    token: str
    employees: int = 0

    def employee(self) -> User:
        self.employees += 1
        return User(f"medewerker{self.employees}", f"Medewerker {self.employees}", str(uuid.uuid4()))

    async def turn(self, url: str, user: User, text: str) -> tuple[float, list[dict], str]:
        """One signed POST; seconds until its first reply reached the connector, and that reply."""
        body = activity(self.fake, user, text)
        data = json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"}
        future = asyncio.get_running_loop().create_future()
        self.fake.waiting[body["id"]] = future
        try:
            started = time.perf_counter()
            async with self.http.post(url, data=data, headers=headers) as response:
                await response.read()
                if response.status not in (200, 202):
                    raise RuntimeError(f"{url} answered {response.status} to {text!r}")
            arrived = await asyncio.wait_for(future, TURN_TIMEOUT)
        finally:
            self.fake.waiting.pop(body["id"], None)
        return arrived - started, self.fake.replies_to(body["id"]), body["id"]

    async def dialog(self, url: str) -> tuple[list[float], list[dict]]:
        """The report dialog typed by a new employee; the turns' latencies and the last turn's replies."""
        user = self.employee()
        samples, replies = [], []
        for line in SCRIPT:
            seconds, replies, _ = await self.turn(url, user, line)
            samples.append(seconds)
        return samples, replies


def af_notices(fake: FakeMicrosoft) -> int:
    return len(fake.posts(f"a:created-{ANNA.aad}"))


async def settle(bench: Bench, reports: int) -> None:
    """Wait (untimed) until meldbot's outbox has told the AF about every report so far."""
    await bench.fake.wait_for(lambda: af_notices(bench.fake) >= reports, timeout=TURN_TIMEOUT)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


async def measure(quick: bool) -> list[Figure]:
    logging.getLogger("meldbot").setLevel(logging.ERROR)      # the test setup's warnings are expected
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a sweep started late is no finding here
    dialogs = 3 if quick else 34                              # x 9 turns: 27 / 306 measured turns each
    with tempfile.TemporaryDirectory(prefix="meldbot-bench-teams-") as tmp:
        db_url = f"sqlite+aiosqlite:///{os.path.join(tmp, 'meldbot.db')}"
        await migrated(db_url)
        async with AsyncExitStack() as stack:
            fake = TimedMicrosoft(new_key(), installed={ANNA.aad})
            await fake.start()
            stack.push_async_callback(fake.stop)
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)))
            bench = Bench(fake, http, fake.token())       # one token for the run, as Teams reuses its token
            _app, meldbot_url = await start_meldbot(fake, db_url, stack)
            echo_url = await start_echo(fake, stack)

            # Warm-up: key fetches, first connections, SQLite pages, the AF's first 1:1 chat.
            reports = 0
            for _ in range(2):
                await bench.dialog(meldbot_url)
                reports += 1
                await settle(bench, reports)
                await bench.dialog(echo_url)

            samples = {"meldbot": [], "echo": []}
            checked = {"meldbot": 0, "echo": 0}
            started = time.perf_counter()
            for block in range(dialogs * 2):
                pair, second = divmod(block, 2)
                who = ("meldbot", "echo")[(second + pair) % 2]       # ABBA: meldbot first in even pairs
                if who == "meldbot":
                    turns, last = await bench.dialog(meldbot_url)
                    if not any("MH-2026-" in (r.get("text") or "") for r in last):
                        raise RuntimeError("meldbot's dialog did not end with a signal reference")
                    reports += 1
                    await settle(bench, reports)
                else:
                    turns, last = await bench.dialog(echo_url)
                    if [r.get("text") for r in last] != [SCRIPT[-1]]:
                        raise RuntimeError(f"the echo agent answered {last!r}")
                samples[who].extend(turns)
                checked[who] += 1
            wall = time.perf_counter() - started

    mel, echo = samples["meldbot"], samples["echo"]
    p50 = ratio(percentile(mel, 50), percentile(echo, 50))
    p95 = ratio(percentile(mel, 95), percentile(echo, 95))
    how = (f"{checked['meldbot']} report dialogs (each ended with a reference) vs {checked['echo']} echo dialogs "
           f"of {len(SCRIPT)} turns, alternating ABBA after 2 warm-up dialogs each, {wall:.1f} s; "
           "echo = SDK ActivityHandler + CloudAdapter + SDK jwt_authorization_middleware (JwtTokenValidator), "
           "meldbot = its own InboundAuth")
    return [
        Figure(SECTION, "p50 ratio meldbot/echo", p50, "x", target=TARGET_P50_RATIO,
               detail=f"meldbot {percentile(mel, 50) * 1000:.2f} ms / echo {percentile(echo, 50) * 1000:.2f} ms; "
                      + how),
        Figure(SECTION, "p95 ratio meldbot/echo", p95, "x",
               detail=f"meldbot {percentile(mel, 95) * 1000:.2f} ms / echo {percentile(echo, 95) * 1000:.2f} ms"),
        Figure(SECTION, "meldbot POST -> first reply at connector", percentile(mel, 50) * 1000, "ms p50",
               detail=summary_ms(mel)),
        Figure(SECTION, "echo agent POST -> reply at connector", percentile(echo, 50) * 1000, "ms p50",
               detail=summary_ms(echo)),
    ]


if __name__ == "__main__":
    main(measure)
