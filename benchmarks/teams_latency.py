"""Benchmark 2, Teams against the limit: POST /api/messages -> the reply at the loopback connector.

meldbot (meldbot/adapters/teams.py on the Agents SDK's CloudAdapter, its own JWT validation) is measured
against two echo agents on the same SDK, in the same process and the same run, on SQLite and again on
PostgreSQL (BENCH_TEAMS_DATABASES=sqlite narrows it):

- the committing echo agent, the honest limit: the echo agent below that first commits one row per turn
  (INSERT of the activity id and text, unique on the id, as the least a durable bot does to answer a
  retry once) to the same database as meldbot, with an engine made as meldbot makes its own
  (meldbot.storage.db.make_engine: WAL and BEGIN IMMEDIATE on SQLite, a pool on PostgreSQL), and only
  then answers. It keeps its connections to the Bot Connector alive across turns as meldbot does (one
  aiohttp connection pool under the SDK's per-turn connector clients). Targets: meldbot p50 <= 1.2x,
  p95 <= 1.5x this agent.
- the same committing echo agent as the SDK ships it: the SDK's RestChannelServiceClientFactory opens a
  new connection to the connector for every turn (closed with the turn's client). Beside the others, to
  show what keeping connections alive is worth; no target.
- the bare echo agent, the SDK's own minimal turn: an `ActivityHandler` that replies with the text it
  got, run by the aiohttp `CloudAdapter` through `start_agent_process`, behind the SDK's standard
  `jwt_authorization_middleware` (`JwtTokenValidator`: PyJWKClient in a worker thread, RS256 check,
  audience = our app id). Its JWKS address is the one place redirected: to the loopback key server
  instead of login.botframework.com. Outbound it uses the SDK's `RestChannelServiceClientFactory`
  (a new `TeamsConnectorClient` per turn, like meldbot) with a static token, as meldbot is configured.
  It stores nothing, so it is no limit for a turn that must commit before it answers; its figure stays
  beside the others.
- all four reply through the same loopback Bot Connector (tests/support/teams_fakes.py). A turn is timed
  from the start of the signed POST (body and token prepared beforehand) until the connector has read
  the first `message` activity that replies to it; an asyncio future set by the connector's handler
  marks it, so nothing is quantised by polling.
- an employee types the report dialog of tests/support/chat.py (9 messages); every dialog is a new
  employee and conversation. Dialogs of the four agents take turns, in a new order each round (every
  order of the four in turn), after two untimed warm-up dialogs each. Before the measured rounds the
  process's garbage collector is set as `meldbot run` sets it (meldbot.run.tuning), for all four alike. Between blocks meldbot's outbox is allowed to deliver the AF's
  notice, untimed, so its background work does not land in an echo agent's block.
- checked: every meldbot dialog ends with a signal reference, every echo answer is the text sent, and
  the committing agent's table holds one row per turn it was sent.

BENCH_INJECT_DELAY_MS=<ms> makes meldbot's turn sleep that long first: only to show that the quick
regression check (`python -m benchmarks.run --quick`, tests/run/test_bench_quick.py) catches a slower turn.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
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
import sqlalchemy as sa  # noqa: E402
from aiohttp import web  # noqa: E402
from jwt import PyJWKClient  # noqa: E402
from microsoft_agents.hosting.aiohttp import (  # noqa: E402
    CloudAdapter,
    jwt_authorization_middleware,
    start_agent_process,
)
from microsoft_agents.hosting.core import ActivityHandler, MessageFactory, RestChannelServiceClientFactory  # noqa: E402
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient  # noqa: E402
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration, AuthenticationConstants  # noqa: E402
from microsoft_agents.hosting.core.authorization.jwt.jwt_token_validator import (  # noqa: E402
    JwtTokenValidator,
    _JwkClientCacheEntry,
)

from meldbot.adapters.teams import NO_USER_SIGN_IN  # noqa: E402
from meldbot.run.app import build_app, teams_adapter  # noqa: E402
from meldbot.core.clock import ManualClock  # noqa: E402
from meldbot.storage.db import make_engine  # noqa: E402
from meldbot.run.tuning import tune_gc  # noqa: E402
from benchmarks.common import bench_config  # noqa: E402
from tests.support.teams_fakes import ANNA, APP_ID, OUTBOUND_TOKEN, TENANT, FakeMicrosoft, User, activity, new_key  # noqa: E402
from tests.support.chat import SCRIPT  # noqa: E402

SECTION = "2 Teams"
TARGET_P50_RATIO = 1.2   # against the committing echo agent
TARGET_P95_RATIO = 1.5
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


class _KeptAliveFactory(RestChannelServiceClientFactory):
    """The SDK's factory with one pool of kept-alive connections under its per-turn clients, as meldbot's
    (meldbot/adapters/teams.py, _ConnectorFactory): the turn's client (its session) is still closed with the
    turn, the connection stays for the next. The token is the static one both factories get. No user token
    client per turn either, as meldbot: an echo agent has no user sign-in (the SDK's own opens and closes an
    HTTP session per turn for it)."""

    def __init__(self, connections) -> None:
        super().__init__(connections)
        self.pool: aiohttp.TCPConnector | None = None

    async def create_connector_client(self, context, claims_identity, service_url: str, audience: str,
                                      scopes=None, use_anonymous: bool = False):
        if self.pool is None:
            self.pool = aiohttp.TCPConnector(keepalive_timeout=15)
        endpoint = service_url if service_url.endswith("/") else service_url + "/"
        session = aiohttp.ClientSession(base_url=endpoint, connector=self.pool, connector_owner=False)
        return TeamsConnectorClient(endpoint=endpoint, token=OUTBOUND_TOKEN, session=session)

    async def create_user_token_client(self, context, claims_identity, use_anonymous: bool = False):
        return NO_USER_SIGN_IN


class _StaticConnections:
    def __init__(self) -> None:
        self._provider = _StaticTokenProvider()

    def get_token_provider(self, claims_identity, service_url):
        return self._provider

    def get_default_connection(self):
        return self._provider

    def get_connection(self, connection_name):
        return self._provider


async def start_echo(fake: FakeMicrosoft, stack: AsyncExitStack, agent: ActivityHandler | None = None,
                     kept_alive: bool = False) -> str:
    # The SDK's validator fetches Bot Framework keys from login.botframework.com through a cached
    # PyJWKClient; point that one cache entry at the loopback key server, change nothing else.
    JwtTokenValidator._jwk_client_manager._cache[AuthenticationConstants.PUBLIC_ABS_JWKS_URL] = \
        _JwkClientCacheEntry(PyJWKClient(fake.url + "/keys"), threading.Lock())
    if kept_alive:
        factory = _KeptAliveFactory(_StaticConnections())
        stack.push_async_callback(lambda: factory.pool.close() if factory.pool else asyncio.sleep(0))
    else:
        factory = RestChannelServiceClientFactory(_StaticConnections())
    adapter = CloudAdapter(channel_service_client_factory=factory)
    agent = agent or EchoAgent()

    async def messages(request: web.Request) -> web.Response:
        return await start_agent_process(request, agent, adapter)

    web_app = web.Application(middlewares=[jwt_authorization_middleware])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)    # the SDK reads this plain string key
        web_app["agent_configuration"] = AgentAuthConfiguration(client_id=APP_ID, tenant_id=TENANT)
    web_app.router.add_post("/api/messages", messages)
    return await serve(web_app, stack)


ECHO_TURNS = sa.Table(
    "bench_echo_turn", sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("activity_id", sa.String(200), nullable=False, unique=True),
    sa.Column("text", sa.Text, nullable=False),
)


class CommittingEchoAgent(ActivityHandler):
    """The echo agent that first commits one row per turn, the least a turn that must not lose what it
    answers can do: the physical limit for a durable bot on this stack."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.insert = ECHO_TURNS.insert()

    async def on_message_activity(self, turn_context) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.insert, {"activity_id": turn_context.activity.id,
                                             "text": turn_context.activity.text or ""})
        await turn_context.send_activity(MessageFactory.text(turn_context.activity.text or ""))


class _Rows:
    """Counts the committing echo agent's rows after the run."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    async def __aenter__(self) -> "_Rows":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.engine.dispose()

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(ECHO_TURNS))).scalar_one()


async def start_committing_echo(fake: FakeMicrosoft, db_url: str, stack: AsyncExitStack,
                                kept_alive: bool = True) -> str:
    """Same SDK stack as start_echo; its table in meldbot's database, its engine made as meldbot makes its own
    (meldbot.storage.db.make_engine: WAL and BEGIN IMMEDIATE on SQLite, a pool on PostgreSQL). Two agents
    may share the table (their activity ids differ)."""
    engine = make_engine(db_url)
    stack.push_async_callback(engine.dispose)
    async with engine.begin() as conn:
        await conn.run_sync(ECHO_TURNS.metadata.create_all)
    return await start_echo(fake, stack, CommittingEchoAgent(engine), kept_alive=kept_alive)


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


AGENTS = ("meldbot", "commit", "commit_sdk", "echo")
LABEL = {"meldbot": "meldbot", "commit": "committing echo", "commit_sdk": "committing echo as the SDK ships it",
         "echo": "bare echo"}
DB_LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
# A new order of the agents every round (all 24 in turn): what the machine does meanwhile hits all alike.
ORDERS = list(itertools.permutations(AGENTS))


def injected_delay(app) -> None:
    """BENCH_INJECT_DELAY_MS=<ms>: meldbot's turn sleeps that long first. Only to prove that the quick
    regression check (tests/run/test_bench_quick.py) fails on a slower turn."""
    delay = float(os.environ.get("BENCH_INJECT_DELAY_MS") or 0) / 1000
    if delay <= 0:
        return
    handle = app.bot.handle

    async def slower(message):
        await asyncio.sleep(delay)
        return await handle(message)

    app.bot.handle = slower


async def measure_on(kind: str, quick: bool, dialogs: int | None = None) -> list[Figure]:
    """meldbot, the committing echo agent and the bare echo agent, interleaved, with `kind` as the database."""
    from benchmarks.burst import Store

    logging.getLogger("meldbot").setLevel(logging.ERROR)      # the test setup's warnings are expected
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # a sweep started late is no finding here
    if dialogs is None:
        dialogs = 4 if quick else 36                          # x 9 turns: 36 / 324 measured turns each
    section = SECTION if kind == "sqlite" else f"{SECTION} ({DB_LABEL[kind]})"
    async with Store(kind) as db_url, AsyncExitStack() as stack:
        fake = TimedMicrosoft(new_key(), installed={ANNA.aad})
        await fake.start()
        stack.push_async_callback(fake.stop)
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)))
        bench = Bench(fake, http, fake.token())       # one token for the run, as Teams reuses its token
        app, meldbot_url = await start_meldbot(fake, db_url, stack)
        injected_delay(app)
        urls = {"meldbot": meldbot_url, "echo": await start_echo(fake, stack),
                "commit": await start_committing_echo(fake, db_url, stack),
                "commit_sdk": await start_committing_echo(fake, db_url, stack, kept_alive=False)}

        reports = 0

        async def block(who: str) -> list[float]:
            nonlocal reports
            turns, last = await bench.dialog(urls[who])
            if who == "meldbot":
                if not any("MH-2026-" in (r.get("text") or "") for r in last):
                    raise RuntimeError("meldbot's dialog did not end with a signal reference")
                reports += 1
                await settle(bench, reports)
            elif [r.get("text") for r in last] != [SCRIPT[-1]]:
                raise RuntimeError(f"the {LABEL[who]} agent answered {last!r}")
            return turns

        # Warm-up: key fetches, first connections, database pages, the AF's first 1:1 chat.
        for _ in range(2):
            for who in AGENTS:
                await block(who)
        # As `meldbot run` does after its start (meldbot.run.tuning), for all agents alike; undone afterwards
        # (the quick check runs this inside the test suite's process).
        thresholds = gc.get_threshold()
        tune_gc()
        stack.callback(gc.set_threshold, *thresholds)
        stack.callback(gc.unfreeze)

        samples: dict[str, list[float]] = {who: [] for who in AGENTS}
        started = time.perf_counter()
        for round_ in range(dialogs):
            for who in ORDERS[round_ % len(ORDERS)]:
                samples[who].extend(await block(who))
        wall = time.perf_counter() - started
        rows = await stack.enter_async_context(_Rows(db_url))
        committed = await rows.count()
    expected = 2 * (dialogs + 2) * len(SCRIPT)
    if committed != expected:
        raise RuntimeError(f"the committing echo agents stored {committed} rows for {expected} turns")

    mel, commit, echo = samples["meldbot"], samples["commit"], samples["echo"]
    ms = {(who, q): percentile(samples[who], q) * 1000 for who in AGENTS for q in (50, 95)}
    db = DB_LABEL[kind]
    how = (f"{dialogs} report dialogs (each ended with a reference), {dialogs} dialogs with each echo agent, "
           f"{len(SCRIPT)} turns each, the three in every order in turn after 2 warm-up dialogs each, {wall:.1f} s; "
           f"committing echo = the bare echo agent that first commits one row per turn (INSERT of the activity "
           f"id and text, unique on the id) to the same {db} database through meldbot's engine settings, its "
           "connections to the connector kept alive and no per-turn user token client, as meldbot's; "
           "echo agents: SDK ActivityHandler + CloudAdapter + SDK jwt_authorization_middleware; "
           "meldbot: its own InboundAuth; garbage collector as `meldbot run` sets it, for all")
    return [
        Figure(section, f"p50 ratio meldbot/committing echo, {db}", ratio(ms["meldbot", 50], ms["commit", 50]), "x",
               target=TARGET_P50_RATIO,
               detail=f"meldbot {ms['meldbot', 50]:.2f} ms / committing echo {ms['commit', 50]:.2f} ms; " + how),
        Figure(section, f"p95 ratio meldbot/committing echo, {db}", ratio(ms["meldbot", 95], ms["commit", 95]), "x",
               target=TARGET_P95_RATIO,
               detail=f"meldbot {ms['meldbot', 95]:.2f} ms / committing echo {ms['commit', 95]:.2f} ms"),
        Figure(section, f"p50 ratio meldbot/bare echo, {db}", ratio(ms["meldbot", 50], ms["echo", 50]), "x",
               detail=f"meldbot {ms['meldbot', 50]:.2f} ms / bare echo {ms['echo', 50]:.2f} ms (an agent that "
                      "stores nothing: no physical limit for a turn that must commit before it answers)"),
        Figure(section, f"p95 ratio meldbot/bare echo, {db}", ratio(ms["meldbot", 95], ms["echo", 95]), "x",
               detail=f"meldbot {ms['meldbot', 95]:.2f} ms / bare echo {ms['echo', 95]:.2f} ms"),
        Figure(section, f"meldbot POST -> first reply at connector, {db}", ms["meldbot", 50], "ms p50",
               detail=summary_ms(mel)),
        Figure(section, f"p50 ratio meldbot/committing echo as the SDK ships it, {db}",
               ratio(ms["meldbot", 50], ms["commit_sdk", 50]), "x",
               detail=f"meldbot {ms['meldbot', 50]:.2f} ms / {ms['commit_sdk', 50]:.2f} ms (a new connection to the "
                      "connector per turn, the SDK's RestChannelServiceClientFactory)"),
        Figure(section, f"committing echo POST -> reply at connector, {db}", ms["commit", 50], "ms p50",
               detail=summary_ms(commit) + f"; {committed} rows committed by both committing agents"),
        Figure(section, f"committing echo as the SDK ships it POST -> reply at connector, {db}",
               ms["commit_sdk", 50], "ms p50", detail=summary_ms(samples["commit_sdk"])),
        Figure(section, f"bare echo POST -> reply at connector, {db}", ms["echo", 50], "ms p50",
               detail=summary_ms(echo)),
    ]


async def measure(quick: bool, databases: tuple[str, ...] | None = None) -> list[Figure]:
    """Both databases; BENCH_TEAMS_DATABASES=sqlite (or postgresql) narrows it."""
    if databases is None:
        databases = tuple(os.environ.get("BENCH_TEAMS_DATABASES", "sqlite,postgresql").split(","))
    figures: list[Figure] = []
    for kind in databases:
        figures += await measure_on(kind, quick)
    return figures


if __name__ == "__main__":
    main(measure)
