"""Microsoft's side of Teams on loopback: a Bot Connector stand-in that records what the bot sends,
an OpenID/JWKS server for the keys that sign inbound tokens, and Teams-shaped activities; and the
adapter's own address book in memory."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from meldbot.core.messaging import Identity

APP_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "d3b07384-d9a0-4c9b-8f6e-1a2b3c4d5e6f"
OUTBOUND_TOKEN = "static-outbound-token"
KID = "loopback-1"
BOT_FRAMEWORK = "https://api.botframework.com"
# Teams refuses a message of more than about 28 KB with 413; the stand-in counts the request body as sent.
TEAMS_MESSAGE_LIMIT = 28_000


@dataclass(frozen=True)
class User:
    slug: str
    name: str
    aad: str

    @property
    def teams_id(self) -> str:
        return f"29:{self.slug}"

    @property
    def conversation(self) -> str:
        return f"a:personal-{self.slug}"


PIET = User("piet", "Piet Jansen", "11111111-2222-3333-4444-555555555555")
ANNA = User("anna", "Anna de Vries", "aaaaaaaa-bbbb-cccc-dddd-000000000001")   # the AF in the tests' config


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    authorization: str | None
    status: int
    size: int = 0       # bytes of the request body as the bot sent it
    peer: Any = None    # the bot's end of the TCP connection the request came over


def _peer(request: web.Request) -> Any:
    return request.transport.get_extra_info("peername") if request.transport else None


@dataclass
class FakeMicrosoft:
    """One loopback server for the connector (`/v3/...`) and the OpenID metadata and keys."""

    key: rsa.RSAPrivateKey
    installed: set[str] = field(default_factory=set)          # aadObjectIds that have the app
    requests: list[Recorded] = field(default_factory=list)
    key_fetches: int = 0
    url: str = ""
    max_activity_bytes: int | None = TEAMS_MESSAGE_LIMIT   # larger activities get 413, as in Teams
    _scripts: list[tuple[str, list[tuple[int, dict]]]] = field(default_factory=list)
    # An activity whose text holds `hang_on` is taken (recorded as shown) but never answered, until
    # `release()`: the bot's process can be killed during that one connector call. `hung` is set then.
    hang_on: str | None = None
    hung: asyncio.Event = field(default_factory=asyncio.Event)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    async def start(self) -> FakeMicrosoft:
        app = web.Application()
        app.router.add_get("/openid", self._openid)
        app.router.add_get("/keys", self._keys)
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{cid}/activities", self._activity)
        app.router.add_post("/v3/conversations/{cid}/activities/{aid}", self._activity)
        app.router.add_get("/v3/conversations/{cid}/members/{uid}", self._member)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self.release()
        if self._runner:
            await self._runner.cleanup()

    @property
    def service_url(self) -> str:
        return self.url + "/"

    # --- scripting and reading ------------------------------------------------------------------------

    def fail(self, path_part: str, *responses: tuple[int, dict]) -> None:
        """The next POSTs whose path contains `path_part` get these (status, headers) instead of success."""
        self._scripts.append((path_part, list(responses)))

    def release(self) -> None:
        """Answer the calls held by `hang_on`, and hold no more."""
        self.hang_on = None
        self._released.set()

    def posts(self, conversation: str | None = None, *, accepted: bool = True) -> list[dict]:
        """Activities the bot posted (to one conversation), in order; by default only those taken."""
        out = []
        for r in self.requests:
            if r.method != "POST" or "/activities" not in r.path:
                continue
            if conversation is not None and f"/v3/conversations/{conversation}/" not in r.path:
                continue
            if accepted and r.status != 200:
                continue
            out.append(r.body)
        return out

    def creates(self, *, accepted: bool | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v3/conversations" and r.method == "POST"
                and (accepted is None or (r.status == 200) == accepted)]

    def proactive(self, conversation: str) -> list[dict]:
        """Accepted messages that started in the bot (not replies to something the person wrote)."""
        return [r.body for r in self.requests if r.method == "POST" and r.status == 200
                and r.path == f"/v3/conversations/{conversation}/activities"]

    def replies_to(self, activity_id: str) -> list[dict]:
        return [r.body for r in self.requests if r.method == "POST" and r.status == 200
                and r.path.endswith(f"/activities/{activity_id}")]

    async def wait_for(self, check, timeout: float = 5.0):
        """Poll until `check()` gives something truthy; fail (never hang) after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                found = check()
                if found:
                    return found
                await asyncio.sleep(0.01)

    # --- tokens ---------------------------------------------------------------------------------------

    def token(self, *, key: rsa.RSAPrivateKey | None = None, kid: str = KID, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": BOT_FRAMEWORK, "aud": APP_ID, "nbf": now - 60, "iat": now - 60, "exp": now + 3600,
                   "serviceurl": self.service_url, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid})

    # --- handlers -------------------------------------------------------------------------------------

    async def _openid(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": BOT_FRAMEWORK, "jwks_uri": self.url + "/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"],
                                  "token_endpoint_auth_methods_supported": ["private_key_jwt"]})

    async def _keys(self, request: web.Request) -> web.Response:
        self.key_fetches += 1
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": KID, "use": "sig", "alg": "RS256", "endorsements": ["msteams"]})
        return web.json_response({"keys": [jwk]})

    def _scripted(self, path: str) -> tuple[int, dict] | None:
        for part, responses in self._scripts:
            if part in path and responses:
                return responses.pop(0)
        return None

    async def _record(self, request: web.Request, status: int) -> Any:
        body = await request.json()
        self.requests.append(Recorded(request.method, request.path, body, request.headers.get("Authorization"),
                                      status, len(await request.read()), _peer(request)))
        return body

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        members = [m.get("id") for m in body.get("members") or []]
        scripted = self._scripted(request.path)
        if scripted:
            status, headers = scripted
        elif not body.get("tenantId"):
            status, headers = 400, {}
        elif not members or members[0] not in self.installed:
            status, headers = 403, {}
        else:
            status, headers = 200, {}
        self.requests.append(Recorded("POST", request.path, body, request.headers.get("Authorization"), status,
                                      peer=_peer(request)))
        if status == 403:
            return web.json_response({"error": {"code": "BotNotInConversationRoster",
                                                "message": "The bot is not part of the conversation roster."}},
                                     status=403, headers=headers)
        if status != 200:
            return web.json_response({"error": {"code": "Failed", "message": "refused"}}, status=status,
                                     headers=headers)
        return web.json_response({"id": f"a:created-{members[0]}"})   # only the id: null fields break the SDK

    async def _activity(self, request: web.Request) -> web.Response:
        if self.max_activity_bytes is not None and len(await request.read()) > self.max_activity_bytes:
            await self._record(request, 413)
            return web.json_response({"error": {"code": "MessageSizeTooBig", "message": "Message size too big"}},
                                     status=413)
        scripted = self._scripted(request.path)
        status, headers = scripted if scripted else (200, {})
        body = await self._record(request, status)
        if self.hang_on is not None and status == 200 and self.hang_on in str(body.get("text", "")):
            self.hung.set()
            await self._released.wait()
        if status != 200:
            return web.json_response({"error": {"code": "Failed", "message": "try later"}}, status=status,
                                     headers=headers)
        return web.json_response({"id": f"m{next(self._ids)}"})

    async def _member(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        return web.json_response({"id": uid, "name": "Someone", "aadObjectId": uid})


def activity(fake: FakeMicrosoft, user: User, text: str | None = None, *, value: dict | None = None,
             conversation_type: str = "personal", tenant: str | None = TENANT, activity_id: str | None = None,
             locale: str = "nl-NL", service_url: str | None = None, attachments: list | None = None) -> dict:
    """A message as Teams posts it to /api/messages."""
    conversation = {"id": user.conversation if conversation_type == "personal" else f"19:group-{conversation_type}",
                    "conversationType": conversation_type, "isGroup": conversation_type != "personal"}
    if tenant:
        conversation["tenantId"] = tenant
    body = {
        "type": "message",
        "id": activity_id or f"1{uuid.uuid4().int % 10**12:012d}",
        "timestamp": "2026-11-18T09:30:00.000Z",
        "channelId": "msteams",
        "serviceUrl": service_url or fake.service_url,
        "from": {"id": user.teams_id, "name": user.name, "aadObjectId": user.aad},
        "conversation": conversation,
        "recipient": {"id": f"28:{APP_ID}", "name": "meldbot"},
        "locale": locale,
        "channelData": {"tenant": {"id": tenant}} if tenant else {},
    }
    if text is not None:
        body["text"] = text
        body["textFormat"] = "plain"
    if value is not None:
        body["value"] = value
    if attachments:
        body["attachments"] = attachments
    return body


def installation(fake: FakeMicrosoft, user: User, activity_id: str = "f:install-1") -> dict:
    """What Teams posts when `user` adds the app to their personal scope."""
    return {
        "type": "conversationUpdate", "id": activity_id, "channelId": "msteams", "serviceUrl": fake.service_url,
        "from": {"id": user.teams_id, "aadObjectId": user.aad},
        "recipient": {"id": f"28:{APP_ID}", "name": "meldbot"},
        "conversation": {"id": user.conversation, "conversationType": "personal", "tenantId": TENANT},
        "membersAdded": [{"id": f"28:{APP_ID}"}],
        "channelData": {"tenant": {"id": TENANT}, "eventType": "teamMemberAdded"},
    }


@dataclass
class FakeAddressBook:
    """The Teams adapter's AddressBook in memory: what it keeps, and the languages people chose."""

    entries: dict[Identity, dict] = field(default_factory=dict)
    languages: dict[Identity, str] = field(default_factory=dict)
    writes: list[tuple[dict[Identity, dict], datetime]] = field(default_factory=list)   # one per transaction

    async def reference(self, key: Identity) -> dict | None:
        return self.entries.get(key)

    async def addressee(self, person: Identity) -> tuple[dict | None, str | None]:
        return self.entries.get(person), self.languages.get(person)

    async def keep(self, entries: Mapping[Identity, dict], at: datetime) -> None:
        self.entries.update(entries)
        self.writes.append((dict(entries), at))


def card_of(posted: dict) -> dict | None:
    for attachment in posted.get("attachments") or []:
        if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
            return attachment["content"]
    return None


def press(posted: dict, command: str) -> dict:
    """The value Teams sends when the button for `command` is pressed (fails if there is none)."""
    card = card_of(posted) or {}
    for action in card.get("actions", []):
        if action.get("data", {}).get("meldbot") == command:
            return action["data"]
    raise AssertionError(f"no button for {command!r} in {card}")


def buttons(posted: dict) -> dict[str, dict]:
    """Button title -> the data Teams sends back as activity.value when it is pressed."""
    card = card_of(posted) or {}
    return {a["title"]: a.get("data", {}) for a in card.get("actions", [])}
