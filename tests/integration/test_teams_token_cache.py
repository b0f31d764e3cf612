"""InboundAuth keeps a token it checked in full (meldbot/adapters/teams_auth.py): Teams sends the same token with
every request for up to an hour. What the shortcut must never do: accept the token after it expired, after the
key that verified it is no longer published, for a tenant no longer served, or hand out one claims dict that a
request changes for the next."""

from __future__ import annotations

import time

import aiohttp
import jwt
import pytest

from meldbot.adapters import teams_auth
from meldbot.adapters.teams_auth import LEEWAY_SECONDS, InboundAuth, SigningKeys, Unauthorized
from tests.support.teams_fakes import APP_ID, OTHER_TENANT, TENANT, new_key


@pytest.fixture
async def auth(microsoft):
    async with aiohttp.ClientSession() as http:
        yield InboundAuth(APP_ID, SigningKeys(microsoft.url + "/openid", lambda: http, min_refresh=0), [TENANT])


@pytest.fixture
def decodes(monkeypatch):
    calls = []
    real = jwt.decode

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teams_auth.jwt, "decode", counted)
    return calls


async def test_the_same_token_again_is_not_checked_in_full_and_gets_claims_of_its_own(microsoft, auth, decodes):
    token = "Bearer " + microsoft.token(tid=TENANT)
    first = await auth.verify(token)
    first.pop("_endorsements")            # as check_activity does with the claims of a request
    first["aud"] = "changed"
    second = await auth.verify(token)
    assert len(decodes) == 1
    assert second["aud"] == APP_ID and second["_endorsements"] == ("msteams",)
    await auth.verify("Bearer " + microsoft.token(tid=TENANT, jti="other"))   # another token: in full
    assert len(decodes) == 2


async def test_a_kept_token_is_checked_in_full_again_once_it_expired(microsoft, auth, decodes, monkeypatch):
    """Past its expiry (and the leeway) the kept token is no shortcut; the full check decides, which refuses an
    expired token (test_teams.py, every bad token gets 401)."""
    expires = int(time.time()) + 60
    token = "Bearer " + microsoft.token(exp=expires)
    await auth.verify(token)
    await auth.verify(token)
    assert len(decodes) == 1
    monkeypatch.setattr(teams_auth.time, "time", lambda: expires + LEEWAY_SECONDS + 1)
    await auth.verify(token)              # PyJWT reads the real clock: still valid for the full check
    assert len(decodes) == 2


async def test_a_kept_token_is_checked_again_when_its_key_is_no_longer_published(microsoft, auth, decodes):
    token = "Bearer " + microsoft.token()
    await auth.verify(token)
    microsoft.key = new_key()             # Microsoft rolls its signing key; the old one is gone
    auth.keys._set = None                 # the cached key set ages out (max_age) ...
    with pytest.raises(Unauthorized):     # ... and the token signed with the old key no longer passes
        await auth.verify(token)
    assert len(decodes) == 2


async def test_a_kept_token_of_a_tenant_no_longer_served_is_refused(microsoft, auth):
    token = "Bearer " + microsoft.token(tid=OTHER_TENANT)
    auth.allowed_tenants = {TENANT.casefold(), OTHER_TENANT.casefold()}
    await auth.verify(token)
    auth.allowed_tenants = {TENANT.casefold()}          # a reloaded configuration
    with pytest.raises(Unauthorized) as refused:
        await auth.verify(token)
    assert refused.value.reason == "token of another tenant"
