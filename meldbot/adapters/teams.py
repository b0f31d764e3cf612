"""Microsoft Teams as a chat platform: the Agents SDK's HTTP stack in, the Bot Connector out, nothing else."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import warnings
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import aiohttp
import pydantic
from aiohttp import web
from microsoft_agents.activity import (
    Activity,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
)
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import ChannelServiceClientFactoryBase, TurnContext
from microsoft_agents.hosting.core.authorization import AuthenticationConstants, ClaimsIdentity
from microsoft_agents.hosting.core.connector import ConnectorClientBase, TeamsConnectorClient, UserTokenClientBase

from meldbot.adapters.teams_auth import (
    EntraToken,
    InboundAuth,
    KeysUnavailable,
    SigningKeys,
    StaticToken,
    TokenUnavailable,
    Unauthorized,
    service_url_allowed,
)
from meldbot.adapters.teams_render import render_parts, submitted_text
from meldbot.core.answer_first import answer_first, held_in_task
from meldbot.core.logs import where
from meldbot.core.clock import Clock
from meldbot.core.i18n import LANGUAGES, texts
from meldbot.core.messaging import DeliveryError, Identity, IncomingMessage, Reply, SendProgress
from meldbot.core.text import REPLACEMENT, clean_name

PLATFORM = "teams"
CHANNEL = "msteams"
log = logging.getLogger("meldbot.teams")

# Microsoft's documented address for proactive messages when no region-specific one is known yet.
GLOBAL_SERVICE_URL = "https://smba.trafficmanager.net/teams/"
# A tenant's connector address, learned from its users' messages, is kept beside the people's references.
SERVICE_URL_KEY = "service-url:"
# A stored conversation reference is rewritten at least this often, even when unchanged.
REFERENCE_REFRESH_SECONDS = 3600.0
# A 429 asking for at most this many seconds is waited out in place; longer ones go back to the outbox.
INLINE_RETRY_AFTER = 10.0
SCOPE = AuthenticationConstants.AGENTS_SDK_SCOPE
T = TypeVar("T")

# The turn: one incoming message in, the direct answers out (the bot's `handle`).
Handle = Callable[[IncomingMessage], Awaitable[list[Reply]]]
# The outbox: this person is reachable again, what waits for them is due now.
Wake = Callable[[Identity], Awaitable[None]]


class AddressBook(Protocol):
    """What the adapter keeps between turns and processes: a conversation reference per person (and a
    tenant's connector address, under `SERVICE_URL_KEY + tenant`), and the language a person chose.
    The composition root implements it over the unit of work (meldbot.run.app.DatabaseAddressBook)."""

    async def reference(self, key: Identity) -> dict[str, Any] | None:
        """What `keep` stored under `key`, or None."""
        ...

    async def addressee(self, person: Identity) -> tuple[dict[str, Any] | None, str | None]:
        """The person's stored reference and the language they chose (None: not chosen), read together."""
        ...

    async def keep(self, entries: Mapping[Identity, dict[str, Any]], at: datetime) -> None:
        """Store every entry, in one transaction."""
        ...


class RateLimited(DeliveryError):
    """Teams said 429; `retry_after` (seconds) is what it asked for, when it said."""

    def __init__(self, retry_after: float | None) -> None:
        hint = f", retry after {retry_after:.0f}s" if retry_after is not None else ""
        super().__init__(f"teams: rate limited (429{hint})")
        self.retry_after = retry_after


def identity_of(aad_object_id: str) -> Identity:
    # Entra object ids are GUIDs; Teams and configuration files may differ in case.
    return Identity(PLATFORM, aad_object_id.strip().lower())


def base_channel(channel_id: object) -> str:
    """`msteams` also for sub-channels such as `msteams:copilot`."""
    return str(channel_id or "").split(":", 1)[0]


def tenant_of(activity: Activity) -> str | None:
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = data.get("tenant") if isinstance(data.get("tenant"), dict) else {}
    found = tenant.get("id") or (activity.conversation.tenant_id if activity.conversation else None)
    return str(found).strip().lower() if found else None


def is_personal(activity: Activity) -> bool:
    """Only a 1:1 chat of one person with the bot; an unknown conversation type counts as shared."""
    conversation = activity.conversation
    return bool(conversation and conversation.conversation_type == "personal" and not conversation.is_group)


def _has_attachment(activity: Activity) -> bool:
    # Teams adds a text/html copy of every formatted message; that is not something the person sent.
    return any(a.content_type != "text/html" for a in activity.attachments or [])


def retry_after_seconds(headers, now: datetime) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max((moment - now).total_seconds(), 0.0)


class _ConnectorFactory(ChannelServiceClientFactoryBase):
    """The SDK's hook for connector clients: our own token source and a timeout on every call."""

    def __init__(self, tokens, timeout: float) -> None:
        self._tokens = tokens
        self._timeout = timeout
        self._pool: aiohttp.TCPConnector | None = None

    def _connections(self) -> aiohttp.TCPConnector:
        """One pool of kept-alive connections for every connector client. The SDK closes a turn's client (its
        session) when the turn ends; with its own connector that closed the connection too, so every reply
        opened a new one: a TCP and TLS handshake with the Bot Connector per message. The pool outlives the
        sessions (connector_owner=False); an idle connection is closed after 15 s (aiohttp's keep-alive)."""
        if self._pool is None or self._pool.closed:
            self._pool = aiohttp.TCPConnector(keepalive_timeout=15)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def create_connector_client(self, context, claims_identity, service_url: str, audience: str,
                                      scopes=None, use_anonymous: bool = False) -> TeamsConnectorClient:
        token = await self._tokens.token()
        endpoint = service_url if service_url.endswith("/") else service_url + "/"
        session = aiohttp.ClientSession(base_url=endpoint, timeout=aiohttp.ClientTimeout(total=self._timeout),
                                        connector=self._connections(), connector_owner=False)
        return TeamsConnectorClient(endpoint=endpoint, token=token, session=session)

    async def create_user_token_client(self, context, claims_identity, use_anonymous: bool = False) -> UserTokenClientBase:
        # meldbot has no user sign-in flows: the SDK asks for this client on every turn and never calls it.
        # The SDK's own client opened (and closed) an HTTP session per turn for it, a tenth of a millisecond.
        return NO_USER_SIGN_IN


class _NoUserSignIn(UserTokenClientBase):
    """The user token client of an agent without user sign-in (OAuth cards, SSO): nothing to open or close;
    any call says so, rather than reaching the token service with an empty token."""

    @staticmethod
    def _refused() -> NotImplementedError:
        return NotImplementedError("meldbot has no user sign-in")

    # The two properties raise AttributeError: `isinstance` against the SDK's runtime-checkable protocol asks
    # for them with hasattr, which lets only that one through.
    @property
    def agent_sign_in(self):
        raise AttributeError("meldbot has no user sign-in")

    @property
    def user_token(self):
        raise AttributeError("meldbot has no user sign-in")

    async def get_user_token(self, *args, **kwargs):
        raise self._refused()

    async def get_sign_in_resource(self, *args, **kwargs):
        raise self._refused()

    async def sign_out_user(self, *args, **kwargs):
        raise self._refused()

    async def get_token_status(self, *args, **kwargs):
        raise self._refused()

    async def get_aad_tokens(self, *args, **kwargs):
        raise self._refused()

    async def exchange_token(self, *args, **kwargs):
        raise self._refused()

    async def get_token_or_sign_in_resource(self, *args, **kwargs):
        raise self._refused()

    async def close(self) -> None:
        return None


NO_USER_SIGN_IN = _NoUserSignIn()


class _Turns:
    """The SDK's Agent: every activity that passed authentication goes to the adapter."""

    def __init__(self, adapter: TeamsAdapter) -> None:
        self._adapter = adapter

    async def on_turn(self, context: TurnContext) -> None:
        await self._adapter.on_turn(context)


@dataclass
class _Early:
    """A turn started as its request came in (TeamsAdapter._start_early), for the activity the SDK goes on with;
    `taken` once `_on_message` waits for it."""
    activity: Activity
    task: asyncio.Task
    held: Any             # its answer_first hold: released once the answer was sent (or will not be)
    taken: bool = False


# The early turn of the request being handled (set around the SDK's processing of it).
_EARLY: ContextVar[_Early | None] = ContextVar("meldbot_teams_early_turn", default=None)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_unicode(value: Any) -> Any:
    """The activity with every lone surrogate (valid JSON: "\\ud800") replaced. The SDK refuses one in most
    string fields (a locale, a conversation name) with a 400: the person would get no answer, on every
    message, and Teams does not send it again. Nothing else is changed; the text is cleaned later, as
    every platform's is."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(REPLACEMENT, value)
    if isinstance(value, list):
        return [_valid_unicode(v) for v in value]
    if isinstance(value, dict):
        return {_valid_unicode(k): _valid_unicode(v) for k, v in value.items()}
    return value


class _RepairedRequest:
    """The request as the SDK reads it (its HttpRequestProtocol), with the body already read, repaired and
    validated: the SDK's Activity.model_validate gives back the Activity it is handed, so it is parsed once."""

    def __init__(self, request: web.Request, body: Activity) -> None:
        self._request = request
        self._body = body

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def headers(self):
        return self._request.headers

    async def json(self) -> Activity:
        return self._body

    def get_claims_identity(self):
        return self._request.get("claims_identity")

    def get_path_param(self, name: str) -> str:
        return self._request.match_info[name]


def _aiohttp_response(answered) -> web.Response:
    if answered.body is not None:
        return web.json_response(answered.body, status=answered.status_code, headers=answered.headers)
    return web.Response(status=answered.status_code, headers=answered.headers, content_type=answered.content_type)


def _account(account) -> tuple | None:
    if account is None:
        return None
    return (account.id, account.name, getattr(account, "aad_object_id", None), getattr(account, "role", None),
            getattr(account, "tenant_id", None), getattr(account, "conversation_type", None),
            getattr(account, "is_group", None))


def _reference_data(activity: Activity, tenant: str) -> dict:
    """The conversation reference as it is stored (without the message's own ids)."""
    reference = activity.get_conversation_reference()
    reference.activity_id = None
    reference.request_id = None
    return {"reference": reference.model_dump(mode="json", by_alias=True, exclude_none=True), "tenant": tenant}


def _reference_fields(activity: Activity, tenant: str) -> tuple:
    """What a conversation reference is made of (Activity.get_conversation_reference: the user, the bot, the
    conversation, the channel, the locale, the service url), as plain values, cheap to compare. Rarer parts
    (an account's extra properties) are not among them: they are written with the hourly refresh."""
    return (activity.channel_id, activity.service_url, activity.locale, tenant, _account(activity.from_property),
            _account(activity.recipient), _account(activity.conversation))


class TeamsAdapter:
    """Translates Teams activities into IncomingMessages and Replies into Teams messages.

    Narrow dependencies, all injected: `handle(message) -> replies` (the turn), `wake(identity)` (the
    outbox: someone just installed the app), the clock, and the `AddressBook` for conversation references
    and chosen languages. The composition root mounts `routes()` on its HTTP server and calls `start()` /
    `stop()` like any adapter with a life of its own; `attach(web_app)` does both for a server of one's own.
    Until `start()` (and after `stop()`) requests get 503, and Teams delivers them again.
    """

    def __init__(self, config, *, handle: Handle, wake: Wake, clock: Clock, addresses: AddressBook,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, connector_timeout: float = 30.0,
                 token_url: str | None = None, early_turns: bool = False) -> None:
        self.config = config
        # Start a message's turn as its request comes in (_start_early): with a database reached over the
        # network (PostgreSQL). SQLite's calls run in a thread that needs the interpreter lock the SDK's work
        # holds meanwhile: there it made turns slower (p50 1.05x in paired runs), not faster.
        self._early_turns_on = early_turns
        self._handle = handle
        self._wake = wake
        self._clock = clock
        self._addresses = addresses
        teams = config.teams
        self._sleep = sleep
        self._http: aiohttp.ClientSession | None = None
        self.allowed_tenants = {t.strip().lower() for m in config.meldpunten for t in m.teams_tenants if t.strip()}
        self._extra_service_urls = tuple(teams.allowed_service_urls)
        self.app_id = teams.app_id
        static = teams.outbound_token.get_secret_value()
        if static:
            log.warning("teams.outbound_token is set: a static token goes to the connector instead of one from "
                        "Entra ID; for tests and isolated networks only")
            self._tokens = StaticToken(static)
        elif teams.anonymous and not (teams.app_id and teams.app_password.get_secret_value()):
            self._tokens = StaticToken("")
        else:
            self._tokens = EntraToken(teams.app_id, teams.app_password.get_secret_value(), teams.tenant_id,
                                      self._session, token_url=token_url)
        if teams.anonymous:
            log.warning("teams.anonymous = true: requests to /api/messages are NOT authenticated; "
                        "use only for local testing")
            self._auth: InboundAuth | None = None
        else:
            self._auth = InboundAuth(teams.app_id, SigningKeys(teams.openid_metadata_url, self._session),
                                     self.allowed_tenants)
        if not self.allowed_tenants:
            log.warning("no meldpunt lists a Teams tenant (meldpunt.teams_tenants): every Teams user is refused")
        self._factory = _ConnectorFactory(self._tokens, connector_timeout)
        self._cloud = CloudAdapter(channel_service_client_factory=self._factory)
        # The SDK's default handler posts "Exception caught" to the user and swallows the error, which
        # would let the outbox mark a failed delivery as done.
        self._cloud.on_turn_error = self._turn_failed
        self._agent = _Turns(self)
        self._service_urls: dict[str, str] = {}
        # Per person: (fingerprint of the stored reference, its last part the fields it was made of, when)
        self._stored_references: dict[Identity, tuple[tuple, float]] = {}
        self._early_turns: set[asyncio.Task] = set()   # turns started before the SDK reached them
        self.ready = False
        self.notifier = TeamsNotifier(self)
        self._blocked_until: datetime | None = None

    def reconfigure(self, config) -> None:
        """A reloaded configuration (meldbot.run.reload): the meldpunten and their tenants and AFs. The
        account and the connector settings ([teams]) stay as at start."""
        self.config = config
        self.allowed_tenants = {t.strip().lower() for m in config.meldpunten for t in m.teams_tenants if t.strip()}
        if self._auth is not None:
            self._auth.allowed_tenants = {t.casefold() for t in self.allowed_tenants}
        if not self.allowed_tenants:
            log.warning("no meldpunt lists a Teams tenant (meldpunt.teams_tenants): every Teams user is refused")

    # --- life -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False       # late requests get 503 and Teams delivers them again
        while self._early_turns:   # turns that run without a request waiting for them end first
            await asyncio.wait(set(self._early_turns))
        await self.close()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/messages", self.handle)]

    def attach(self, web_app: web.Application) -> None:
        """Serve /api/messages on an existing aiohttp app, started and stopped with it; other routes
        (/healthz) stay open."""
        web_app.add_routes(self.routes())

        async def _start(_app) -> None:
            await self.start()

        async def _stop(_app) -> None:
            await self.stop()

        web_app.on_startup.append(_start)
        web_app.on_cleanup.append(_stop)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        await self._factory.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- inbound --------------------------------------------------------------------------------------

    @staticmethod
    def _refuse(reason: str) -> web.Response:
        log.warning("teams request refused", extra={"reason": reason})
        return web.json_response({"error": "unauthorized"}, status=401)

    async def handle(self, request: web.Request) -> web.Response:
        """POST /api/messages: authenticate, check the serviceUrl, then let the SDK run the turn."""
        if not self.ready:
            return web.json_response({"error": "not ready"}, status=503)
        claims: dict[str, Any] | None = None
        if self._auth is not None:
            try:
                claims = await self._auth.verify(request.headers.get("Authorization"))
            except Unauthorized as exc:
                return self._refuse(exc.reason)
            except KeysUnavailable:
                return web.json_response({"error": "signing keys unavailable"}, status=503)
            except Exception as exc:   # whatever a hostile token trips over, it is a 401, never a 500
                return self._refuse(f"token check failed ({type(exc).__name__})")
        try:
            # JSON is UTF-8 (RFC 8259), whatever charset a request names: strict UTF-8 refuses an encoded
            # surrogate, so a lone one can only come in as a \u escape.
            raw = (await request.read()).decode("utf-8")
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "invalid activity"}, status=400)
        if "\\ud" in raw or "\\uD" in raw:
            # Without such an escape in the text there is nothing to repair: the walk over the activity is skipped.
            body = _valid_unicode(body)   # what is checked here is what the SDK reads
        service_url = body.get("serviceUrl")
        if claims is not None:
            try:
                InboundAuth.check_activity(claims, body.get("channelId"), service_url)
            except Unauthorized as exc:
                return self._refuse(exc.reason)
        if not service_url_allowed(service_url, self._extra_service_urls):
            return self._refuse("serviceUrl not allowed")
        identity = ClaimsIdentity(claims, authentication_type="Bearer") if claims else ClaimsIdentity()
        with warnings.catch_warnings():
            # The SDK reads this plain string key; aiohttp would prefer a typed RequestKey.
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request["claims_identity"] = identity
        early = None
        try:
            activity = Activity.model_validate(body)
            early = self._start_early(activity)
            if early is not None:
                await asyncio.sleep(0)   # the turn runs up to its first read: sent before the SDK's work
            token = _EARLY.set(early)
            try:
                answered = await self._cloud.process_request(_RepairedRequest(request, activity), self._agent)
            finally:
                _EARLY.reset(token)
            if early is not None and not early.taken:
                # Not reached by the SDK (it refused the activity after all): the turn ran and is kept with its
                # answer, which goes out when Teams sends the activity again (the processed-event check).
                await self._untaken(early)
                log.warning("teams turn not answered: the activity stopped in the SDK")
                return web.json_response({"error": "turn not answered"}, status=503)
            return _aiohttp_response(answered)
        except pydantic.ValidationError:
            return web.json_response({"error": "invalid activity"}, status=400)
        except Exception as exc:   # the error boundary of one request: type and place only, never content
            log.error("teams turn failed", extra={"error": type(exc).__name__, "where": where(exc)})
            return web.json_response({"error": "turn failed"}, status=503)
        finally:
            if early is not None and not early.taken:
                # The SDK failed before it reached the turn (a token for the connector not to be had): the
                # turn still ends here, and Teams, told 503, delivers the activity again for its answer.
                await self._untaken(early)

    @staticmethod
    async def _untaken(early: "_Early") -> None:
        """Wait for an early turn nobody answers; its wake-ups go now. Its errors are logged by the bot."""
        early.taken = True
        try:
            await early.task
        except Exception as exc:   # Bot.handle is an error boundary itself: this is only a last resort
            log.error("teams turn failed", extra={"error": type(exc).__name__, "where": where(exc)})
        finally:
            early.held.release()

    def _start_early(self, activity: Activity) -> "_Early | None":
        """A personal message from an allowed tenant starts its turn here, before the SDK has made the turn's
        context and clients: the turn's first read from the database runs while the SDK does that work (a
        fifth of a turn on PostgreSQL). `_on_message` then waits for this turn instead of starting one.
        Anything else (a refused tenant, a group chat, an update), and every message on SQLite, goes the SDK's
        way only."""
        if (not self._early_turns_on or not self.ready or activity.type != "message" or base_channel(activity.channel_id) != CHANNEL
                or not is_personal(activity)):
            return None
        if not activity.conversation or not activity.conversation.id:
            return None
        sender = activity.from_property
        tenant = tenant_of(activity)
        if sender is None or not sender.aad_object_id or not tenant or tenant not in self.allowed_tenants:
            return None
        sender.name = clean_name(sender.name)   # as on_turn does; idempotent
        msg = self._message(activity, tenant)
        # The outbox's work the turn starts waits for its answer (answer_first), released when it was sent.
        task, held = held_in_task(lambda: asyncio.create_task(self._handle(msg), name="teams-turn"))
        # Held until done (the loop keeps only a weak reference): a turn the SDK did not reach still ends.
        self._early_turns.add(task)
        task.add_done_callback(self._early_turns.discard)
        return _Early(activity, task, held)

    async def _turn_failed(self, context: TurnContext, error: Exception) -> None:
        """Let the error reach our caller: the request handler (503, Teams delivers again) or the outbox."""
        raise error

    async def on_turn(self, context: TurnContext) -> None:
        activity = context.activity
        if base_channel(activity.channel_id) != CHANNEL:
            log.info("activity of another channel ignored", extra={"channel": str(activity.channel_id)})
            return
        if activity.from_property is not None:
            # The display name is stored with the conversation reference, not only in the IncomingMessage:
            # cleaned here, first (a lone surrogate in it made every message of this person fail at sealing).
            activity.from_property.name = clean_name(activity.from_property.name)
        if activity.type == "message":
            await self._on_message(context)
        elif activity.type == "conversationUpdate":
            await self._on_conversation_update(context)

    def _locale_language(self, locale: str | None) -> str:
        short = (locale or "")[:2].lower()
        return short if short in LANGUAGES else self.config.language

    async def _on_message(self, context: TurnContext) -> None:
        activity = context.activity
        tenant = tenant_of(activity)
        lang = self._locale_language(activity.locale)
        early = _EARLY.get()
        if early is not None and early.activity is activity and not early.taken:
            # Started as the request came in, after the same checks as below (a tenant dropped by a reload
            # meanwhile does not get a refusal beside the turn's answer).
            early.taken = True
            try:
                replies = await early.task
                lang = next((r.language for r in replies if r.language), lang)
                await self._answer(context, replies, lang)
            finally:
                early.held.release()
            await self._keep_reference(identity_of(activity.from_property.aad_object_id), activity, tenant)
            return
        if not tenant or tenant not in self.allowed_tenants:
            log.warning("teams message from a tenant of no meldpunt refused", extra={"tenant": tenant or "-"})
            await self._answer(context, [Reply(texts(lang)("teams.tenant_refused"))], lang)
            return
        sender = activity.from_property
        if sender is None or not sender.aad_object_id:
            log.warning("teams message without aadObjectId refused")
            await self._answer(context, [Reply(texts(lang)("teams.unknown_user"))], lang)
            return
        identity = identity_of(sender.aad_object_id)
        with answer_first():   # the outbox's work this turn started waits for its answer
            replies = await self._handle(self._message(activity, tenant))
            lang = next((r.language for r in replies if r.language), lang)
            await self._answer(context, replies, lang)
        await self._keep_reference(identity, activity, tenant)

    async def _keep_reference(self, identity: Identity, activity: Activity, tenant: str) -> None:
        """After the answer to a message: its personal chat's address kept, when it changed."""
        # The conversation reference is made and kept after the answer: the person need not wait for it (its
        # comparison with the stored one takes about 0.1 ms; its write, when it changed, a transaction of its
        # own, a fifth of a first message's time). Until then proactive messages reach them as before:
        # through the stored reference, or a new 1:1 chat, which Teams gives back as the same chat.
        reference = self._reference(identity, activity, tenant) if is_personal(activity) else None
        if reference is not None:
            try:
                await self._keep(identity, *reference)
            except Exception as exc:   # answered already: the next message of this person tries again
                log.warning("teams conversation reference not kept", extra={"error": type(exc).__name__,
                                                                            "where": where(exc)})

    @staticmethod
    def _message(activity: Activity, tenant: str) -> IncomingMessage:
        """The IncomingMessage of a Teams message whose sender has an aadObjectId."""
        sender = activity.from_property
        command = submitted_text(activity.value)
        return IncomingMessage(
            sender=identity_of(sender.aad_object_id),
            conversation_id=activity.conversation.id,
            text=command if command is not None else (activity.text or ""),
            card_value=activity.value if isinstance(activity.value, dict) else None,
            event_id=activity.id,
            is_private=is_personal(activity),
            has_attachment=_has_attachment(activity),
            sender_name=sender.name,
            tenant=tenant,
            locale=activity.locale,
        )

    async def _on_conversation_update(self, context: TurnContext) -> None:
        """The app was installed in someone's personal scope: keep the address for proactive messages."""
        activity = context.activity
        tenant = tenant_of(activity)
        bot_id = activity.recipient.id if activity.recipient else None
        added = {m.id for m in activity.members_added or []}
        sender = activity.from_property
        if (bot_id in added and is_personal(activity) and tenant in self.allowed_tenants
                and sender is not None and sender.aad_object_id):
            identity = identity_of(sender.aad_object_id)
            reference = self._reference(identity, activity, tenant)
            if reference is not None:
                await self._keep(identity, *reference)
            # Reachable now: what waits for them (after a failed try) need not wait for its next attempt.
            await self._wake(identity)

    def _reference(self, identity: Identity, activity: Activity, tenant: str) -> tuple | None:
        """The rows to keep for this person's conversation reference (refreshed on every personal message, a
        sealed row, no content) and its fingerprint; None when this process stored the same within the hour."""
        # First the fields a reference is made of, compared as they came: building and dumping the reference
        # (pydantic) cost about 0.1 ms, after the answer but before this person's next message is served.
        quick = _reference_fields(activity, tenant)
        stored = self._stored_references.get(identity)
        if stored and stored[0][2] == quick and time.monotonic() - stored[1] < REFERENCE_REFRESH_SECONDS:
            return None
        data = _reference_data(activity, tenant)
        service_url = activity.service_url
        # Unchanged since this process stored it (within the hour): no write. The same chat sends the
        # same reference on every message; rewriting it cost a transaction per turn.
        fingerprint = (json.dumps(data, sort_keys=True), service_url, quick)
        if stored and stored[0] == fingerprint and time.monotonic() - stored[1] < REFERENCE_REFRESH_SECONDS:
            return None
        entries = {identity: data}
        if service_url and self._service_urls.get(tenant) != service_url:
            entries[Identity(PLATFORM, SERVICE_URL_KEY + tenant)] = {"service_url": service_url}
        return entries, fingerprint, tenant, service_url

    async def _keep(self, identity: Identity, entries: dict, fingerprint: Any, tenant: str,
                    service_url: str | None) -> None:
        await self._addresses.keep(entries, self._clock.now())
        if service_url:
            self._service_urls[tenant] = service_url
        if len(self._stored_references) >= 10_000:
            self._stored_references.clear()
        self._stored_references[identity] = (fingerprint, time.monotonic())

    async def _answer(self, context: TurnContext, replies: list[Reply], lang: str) -> None:
        t = texts(lang)
        for reply in replies:
            for activity in render_parts(reply, t):
                await self._patiently(lambda activity=activity: context.send_activity(activity))

    # --- outbound -------------------------------------------------------------------------------------

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one connector call; a 429 with a short Retry-After is waited out here, up to three tries."""
        for attempt in range(3):
            try:
                return await call()
            except aiohttp.ClientResponseError as exc:
                if exc.status != 429:
                    raise
                now = self._clock.now()
                delay = retry_after_seconds(exc.headers, now)
                wait = delay if delay is not None else float(attempt + 1)
                if wait > INLINE_RETRY_AFTER or attempt == 2:
                    self._blocked_until = now + timedelta(seconds=wait)
                    log.warning("teams rate limit", extra={"retry_after_s": wait})
                    raise RateLimited(delay) from None
                log.info("teams rate limit, waiting", extra={"retry_after_s": wait})
                await self._sleep(wait)
        raise AssertionError("unreachable")

    def _claims(self) -> ClaimsIdentity:
        if not self.app_id:
            return ClaimsIdentity()
        return ClaimsIdentity({"aud": self.app_id, "appid": self.app_id}, authentication_type="Bearer")

    async def deliver(self, recipient: Identity, reply: Reply, sent: set[int] | None = None,
                      progress: SendProgress | None = None) -> None:
        """Send one Reply to a person: in their stored 1:1 conversation, else in a new one.

        A long Reply goes as several messages; `sent` holds the parts already shown (filled in here),
        so a retry after a failure half-way continues where it stopped. `progress` (the outbox row)
        does the same across processes: its parts done are skipped, and each part's send is recorded
        before and after the connector call."""
        if not self.ready:
            raise DeliveryError("teams: adapter not started")
        now = self._clock.now()
        if self._blocked_until and now < self._blocked_until:
            raise RateLimited((self._blocked_until - now).total_seconds())
        identity = identity_of(recipient.user_id)
        stored, chosen = await self._addresses.addressee(identity)
        locale = ((stored or {}).get("reference") or {}).get("locale")
        sent = set() if sent is None else sent
        done = progress.parts_done if progress is not None else 0
        for index, activity in enumerate(render_parts(reply, texts(chosen or self._locale_language(locale)))):
            if index in sent or index < done:
                continue
            if progress is not None:
                await progress.sending(index)
            stored = await self._deliver_one(identity, activity, stored)
            sent.add(index)
            if progress is not None:
                await progress.sent(index)

    async def _deliver_one(self, identity: Identity, activity: Activity, stored: dict | None) -> dict | None:
        """One activity; returns the conversation data to use for the next one."""
        try:
            if stored:
                try:
                    await self._continue(stored["reference"], activity)
                    return stored
                except aiohttp.ClientResponseError as exc:
                    if exc.status not in (403, 404):
                        raise
                    # The person removed and re-added the app, or blocked it: try a fresh 1:1 chat.
                    log.info("stored teams conversation refused; creating a new one", extra={"status": exc.status})
            return await self._create_and_send(identity, activity, stored)
        except DeliveryError:
            raise
        except aiohttp.ClientResponseError as exc:
            if exc.status == 401:
                self._tokens.forget()    # a revoked or rotated secret: fetch a new token next time
            raise self._delivery_error(exc.status) from None
        except TokenUnavailable as exc:
            raise DeliveryError(f"teams: {exc}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"teams: connector unreachable ({type(exc).__name__})") from None

    @staticmethod
    def _delivery_error(status: int) -> DeliveryError:
        if status == 401:
            return DeliveryError("teams: connector refused the bot's token (401); check app_id and app_password")
        if status in (400, 403, 404, 413):
            return DeliveryError(f"teams: message refused ({status})", permanent=True)
        return DeliveryError(f"teams: connector error {status}")

    async def _continue(self, reference_data: dict, activity: Activity) -> None:
        reference = ConversationReference.model_validate(reference_data)
        if not service_url_allowed(reference.service_url, self._extra_service_urls):
            raise DeliveryError("teams: stored serviceUrl is no longer allowed", permanent=True)

        async def send(context: TurnContext) -> None:
            await self._post(context, activity)

        await self._cloud.continue_conversation_with_claims(self._claims(), reference.get_continuation_activity(),
                                                            send, audience=SCOPE)

    async def _post(self, context: TurnContext, activity: Activity) -> None:
        """A new message in the conversation (not a reply to the continuation event's made-up id)."""
        reference = context.activity.get_conversation_reference()
        reference.activity_id = None
        out = activity.model_copy(deep=True)
        out.apply_conversation_reference(reference)
        connector = context.services.get(ConnectorClientBase)
        await self._patiently(lambda: connector.conversations.send_to_conversation(out.conversation.id, out))

    def _tenant_for(self, identity: Identity) -> str | None:
        for meldpunt, _af in self.config.af_for(PLATFORM, identity.user_id):
            if meldpunt.teams_tenants:
                return meldpunt.teams_tenants[0].strip().lower()
        if self.config.teams.tenant_id:
            return self.config.teams.tenant_id.strip().lower()
        return next(iter(self.allowed_tenants)) if len(self.allowed_tenants) == 1 else None

    async def _service_url_for(self, tenant: str) -> str:
        if tenant in self._service_urls:
            return self._service_urls[tenant]
        learned = await self._addresses.reference(Identity(PLATFORM, SERVICE_URL_KEY + tenant))
        if learned and learned.get("service_url"):
            self._service_urls[tenant] = learned["service_url"]
            return learned["service_url"]
        return GLOBAL_SERVICE_URL

    async def _create_and_send(self, identity: Identity, activity: Activity, stored: dict | None) -> dict:
        """Open a 1:1 chat (Teams needs the tenant), keep its reference, then send in it."""
        old = (stored or {}).get("reference") or {}
        tenant = (stored or {}).get("tenant") or self._tenant_for(identity)
        if not tenant:
            raise DeliveryError("teams: no tenant known for the recipient; set meldpunt.teams_tenants", permanent=True)
        service_url = old.get("serviceUrl") or await self._service_url_for(tenant)
        bot = ChannelAccount(id=f"28:{self.app_id}")
        member = ChannelAccount(id=(old.get("user") or {}).get("id") or identity.user_id)
        params = ConversationParameters(is_group=False, bot=bot, members=[member], tenant_id=tenant,
                                        channel_data={"tenant": {"id": tenant}})
        connector = await self._factory.create_connector_client(None, self._claims(), service_url, SCOPE)
        try:
            created = await self._patiently(lambda: connector.conversations.create_conversation(params))
        except aiohttp.ClientResponseError as exc:
            if exc.status == 403:
                # BotNotInConversationRoster: the person has not installed the app (or may not).
                raise DeliveryError("teams: recipient has not installed the app (403 on create)", permanent=True) from None
            if exc.status in (400, 404):
                raise DeliveryError(f"teams: conversation create refused ({exc.status}); check the tenant id "
                                    "and the recipient's aadObjectId", permanent=True) from None
            raise
        finally:
            await connector.close()
        reference = ConversationReference(
            conversation=ConversationAccount(id=created.id, conversation_type="personal", tenant_id=tenant),
            service_url=service_url, channel_id=CHANNEL, bot=bot,
            user=ChannelAccount(id=member.id, aad_object_id=identity.user_id),
        )
        data = {"reference": reference.model_dump(mode="json", by_alias=True, exclude_none=True), "tenant": tenant}
        await self._addresses.keep({identity: data}, self._clock.now())
        log.info("teams 1:1 conversation created")
        await self._continue(data["reference"], activity)
        return data


class TeamsNotifier:
    """The outbox's way to Teams. Shows a message once per idempotency key within this process.

    The Bot Connector cannot be asked whether an activity was shown (there is no GET of a sent activity,
    and a new activity cannot carry an id of the bot's choosing), so the outbox records each part's send
    in its row (`send_parts`): any process continues after the parts accepted, and only a process dying
    during one connector call can make Teams show that one part twice."""

    platform = PLATFORM

    def __init__(self, adapter: TeamsAdapter, remember: int = 10_000) -> None:
        self._adapter = adapter
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._parts: dict[str, set[int]] = {}
        self._remember = remember

    async def healthy(self) -> bool:
        return self._adapter.ready

    async def send(self, recipient: Identity, reply: Reply, idempotency_key: str) -> None:
        await self.send_parts(recipient, reply, idempotency_key, None)

    async def send_parts(self, recipient: Identity, reply: Reply, idempotency_key: str,
                         progress: SendProgress | None) -> None:
        if idempotency_key in self._delivered:
            return
        # The parts of a long message already shown, kept between attempts of this process (without a
        # `progress`, the only record of them).
        sent = self._parts.setdefault(idempotency_key, set())
        await self._adapter.deliver(recipient, reply, sent, progress)
        del self._parts[idempotency_key]
        self._delivered[idempotency_key] = None
        while len(self._delivered) > self._remember:
            self._delivered.popitem(last=False)
        while len(self._parts) > self._remember:
            self._parts.pop(next(iter(self._parts)))
