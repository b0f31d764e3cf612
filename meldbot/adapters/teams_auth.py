"""Who may talk to the Teams endpoint and how the bot proves itself: inbound JWTs, service URLs, outbound tokens."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from yarl import URL

log = logging.getLogger("meldbot.teams")

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
# The connector hosts of Microsoft's clouds; anything else must be configured in teams.allowed_service_urls.
MICROSOFT_SERVICE_URLS = (
    "https://smba.trafficmanager.net/",
    "https://smba.infra.gcc.teams.microsoft.com/",
    "https://smba.infra.gov.teams.microsoft.us/",
    "https://smba.infra.dod.teams.microsoft.us/",
)
LEEWAY_SECONDS = 300          # the Bot Framework allows five minutes of clock skew
NETWORK_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Unauthorized(Exception):
    """The request is refused with 401; `reason` is content-free and goes to the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """The OpenID metadata or its key set could not be fetched: our problem, not the caller's."""


def _prefix(url: object) -> tuple[str, str, int | None, str] | None:
    if not isinstance(url, str):
        return None
    try:
        parsed = URL(url.strip())
    except (ValueError, TypeError):
        return None
    if not parsed.scheme or not parsed.host:
        return None
    path = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
    return parsed.scheme.lower(), parsed.host.lower(), parsed.port, path


def service_url_allowed(url: object, extra: Iterable[str] = ()) -> bool:
    """Whether the bot may send to (and with its token, reveal itself to) this connector address.

    Scheme, host and port must match exactly and the path must start with the allowed path, so
    `https://smba.trafficmanager.net.evil.example/` and `http://127.0.0.1:80801/` do not slip through.
    """
    if not url:
        return False
    target = _prefix(url)
    if target is None:
        return False
    for allowed in (*MICROSOFT_SERVICE_URLS, *extra):
        rule = _prefix(allowed)
        if rule and target[:3] == rule[:3] and target[3].startswith(rule[3]):
            return True
    return False


@dataclass
class _KeySet:
    keys: dict[str, tuple[Any, tuple[str, ...] | None]]
    fetched_at: float


class SigningKeys:
    """The keys named by an OpenID metadata document, cached; an unknown key id refreshes them, at most
    once per `min_refresh` seconds, so random key ids cannot make us hammer the key server."""

    def __init__(self, metadata_url: str, session: Callable[[], aiohttp.ClientSession], *,
                 max_age: float = 24 * 3600, min_refresh: float = 300, monotonic: Callable[[], float] = time.monotonic):
        self.metadata_url = metadata_url
        self._session = session
        self._max_age, self._min_refresh, self._monotonic = max_age, min_refresh, monotonic
        self._set: _KeySet | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> tuple[Any, tuple[str, ...] | None] | None:
        found = self._cached(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._cached(kid)
            if found is not None:
                return found
            now, current = self._monotonic(), self._set
            stale = current is None or now - current.fetched_at >= self._max_age
            if stale or now - self._last_attempt >= self._min_refresh:
                self._last_attempt = now
                try:
                    self._set = _KeySet(await self._fetch(), now)
                except KeysUnavailable:
                    if current is None:
                        raise
                    log.warning("teams signing keys could not be refreshed; using the cached set")
            return self._set.keys.get(kid) if self._set else None

    def _cached(self, kid: str) -> tuple[Any, tuple[str, ...] | None] | None:
        current = self._set
        if current is None or self._monotonic() - current.fetched_at >= self._max_age:
            return None
        return current.keys.get(kid)

    async def _fetch(self) -> dict[str, tuple[Any, tuple[str, ...] | None]]:
        try:
            async with self._session().get(self.metadata_url, timeout=NETWORK_TIMEOUT) as response:
                response.raise_for_status()
                metadata = await response.json(content_type=None)
            async with self._session().get(metadata["jwks_uri"], timeout=NETWORK_TIMEOUT) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, KeyError, TypeError, ValueError) as exc:
            log.error("teams signing keys unavailable", extra={"error": type(exc).__name__})
            raise KeysUnavailable(type(exc).__name__) from None
        keys: dict[str, tuple[Any, tuple[str, ...] | None]] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or not entry.get("kid"):
                continue
            try:
                key = jwt.PyJWK(entry, algorithm="RS256").key
            except jwt.exceptions.MissingCryptographyError:
                log.error("RS256 needs the 'cryptography' package; every Teams token will be refused")
                raise KeysUnavailable("MissingCryptographyError") from None
            except (jwt.PyJWKError, ValueError, TypeError):
                continue
            endorsements = entry.get("endorsements")
            keys[entry["kid"]] = (key, tuple(endorsements) if isinstance(endorsements, list) else None)
        return keys


class InboundAuth:
    """Validates the Bot Framework's bearer token on every request (the Bot Connector authentication spec):
    RS256 signature by a published key endorsed for the channel, issuer, audience = our app id, expiry,
    the tenant (when the token names one) and the serviceUrl claim against the activity's."""

    # Teams sends the same token with every request for up to an hour. A token checked in full is kept
    # (exactly that string, its claims, and the key that verified it) so the next request with it skips the
    # parsing and the RSA check, a twentieth of a turn. Kept only while that key is still the published one
    # (a refreshed key set is a new check) and until the token expires; the tenant is checked every time.
    VERIFIED_KEPT = 64

    def __init__(self, app_id: str, keys: SigningKeys, allowed_tenants: Iterable[str]) -> None:
        self.app_id = app_id
        self.keys = keys
        self.allowed_tenants = {t.casefold() for t in allowed_tenants}
        self._verified: OrderedDict[str, tuple[dict[str, Any], str, Any, float]] = OrderedDict()

    async def verify(self, header: str | None) -> dict[str, Any]:
        if not header:
            raise Unauthorized("no authorization header")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Unauthorized("malformed authorization header")
        kept = self._verified.get(token)
        if kept is not None:
            claims, kid, found, expires = kept
            if time.time() < expires and self.keys._cached(kid) is found:
                return self._for_tenant(dict(claims), found[1])
            del self._verified[token]
        try:
            unverified = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("not a JWT") from None
        if unverified.get("alg") != "RS256" or not isinstance(unverified.get("kid"), str):
            raise Unauthorized("unexpected algorithm or no key id")
        found = await self.keys.get(unverified["kid"])
        if found is None:
            raise Unauthorized("unknown signing key")
        key, endorsements = found
        try:
            claims = jwt.decode(token, key=key, algorithms=["RS256"], audience=self.app_id,
                                issuer=BOT_FRAMEWORK_ISSUER, leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("bad signature") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token ({type(exc).__name__})") from None
        checked = self._for_tenant(claims, endorsements)
        exp = claims.get("exp")
        if isinstance(exp, (int, float)):
            self._verified[token] = (dict(claims), unverified["kid"], found, exp + LEEWAY_SECONDS)
            while len(self._verified) > self.VERIFIED_KEPT:
                self._verified.popitem(last=False)
        return checked

    def _for_tenant(self, claims: dict[str, Any], endorsements) -> dict[str, Any]:
        tenant = claims.get("tid")
        if tenant is not None and str(tenant).casefold() not in self.allowed_tenants:
            raise Unauthorized("token of another tenant")
        claims["_endorsements"] = endorsements
        return claims

    @staticmethod
    def check_activity(claims: dict[str, Any], channel_id: str | None, service_url: str | None) -> None:
        """The token must be endorsed for the activity's channel and name the activity's serviceUrl."""
        endorsements = claims.pop("_endorsements", None)
        channel = str(channel_id or "").split(":", 1)[0]
        if endorsements is not None and channel not in endorsements:
            raise Unauthorized("signing key not endorsed for this channel")
        claimed = claims.get("serviceurl")
        if not claimed or _prefix(claimed) is None or _prefix(claimed) != _prefix(service_url):
            raise Unauthorized("serviceUrl does not match the token")


class StaticToken:
    """A fixed bearer token on every connector call (tests and isolated networks); "" sends none."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    def forget(self) -> None:
        """Nothing to refresh: the configured token is all there is."""


class EntraToken:
    """The bot's own token from Entra ID (client credentials), cached until shortly before it expires.

    Plain HTTP with aiohttp, so no blocking library sits in the event loop."""

    def __init__(self, app_id: str, secret: str, tenant_id: str, session: Callable[[], aiohttp.ClientSession], *,
                 token_url: str | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._form = {"grant_type": "client_credentials", "client_id": app_id, "client_secret": secret,
                      "scope": BOT_FRAMEWORK_SCOPE}
        self._url = token_url or f"https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
        self._session = session
        self._monotonic = monotonic
        self._cached: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        self._cached = None

    async def token(self) -> str:
        async with self._lock:
            if self._cached and self._monotonic() < self._cached[1]:
                return self._cached[0]
            try:
                async with self._session().post(self._url, data=self._form, timeout=NETWORK_TIMEOUT) as response:
                    body = await response.json(content_type=None)
                    if response.status != 200 or not isinstance(body, dict) or "access_token" not in body:
                        # Entra's error codes (AADSTS...) carry no secrets and say what is wrong.
                        code = body.get("error", "?") if isinstance(body, dict) else "?"
                        raise TokenUnavailable(f"entra refused the bot's credentials ({response.status} {code})")
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                raise TokenUnavailable(f"entra unreachable ({type(exc).__name__})") from None
            lifetime = float(body.get("expires_in", 3600))
            self._cached = (body["access_token"], self._monotonic() + max(lifetime - 300, 30))
            return self._cached[0]


class TokenUnavailable(Exception):
    """No outbound token: deliveries wait and retry."""
