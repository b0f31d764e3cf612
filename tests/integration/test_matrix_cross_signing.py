"""The bot's Matrix cross-signing identity: signing JSON, checking chains, storing the keys sealed, and
creating / keeping / refusing / resetting an identity against a real Synapse."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from meldbot.adapters.matrix.cross_signing import (
    CrossSigningKeys,
    DeviceTrust,
    HomeserverError,
    Outcome,
    PasswordRefused,
    PasswordRequired,
    SecretIdentityStore,
    UnsupportedAuth,
    canonical_json,
    decode_base64,
    device_trust,
    encode_base64,
    ensure_identity,
    master_public_of,
    query_keys,
    reset_identity,
    sign_json,
    upload_identity,
    verify_signature,
)
from meldbot.storage.db import Database
from meldbot.storage.matrix import MatrixIdentitySecrets
from meldbot.storage.rotation import Rotation
from meldbot.storage.sealing import KeyringSealer, new_key
from meldbot.storage.uow import SqlUnitOfWork, UnitOfWorkFactory
from tests.support import EXAMPLE, ROOT
from tests.support.chat import migrated

AT = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)


# --- canonical JSON and base64 (spec appendices) -------------------------------------------------------

@pytest.mark.parametrize(("given", "canonical"), [
    ("{}", "{}"),
    ('{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'),
    ('{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    ('{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", '
     '"three_pids": [{"medium": "email", "address": "john.doe@example.org"}, '
     '{"medium": "msisdn", "address": "123456789"}]}}}',
     '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":'
     '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},'
     '"success":true}}'),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
    # Only integers: an integral number written otherwise is that integer.
    ('{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'),
])
def test_canonical_json_matches_the_spec_examples(given, canonical):
    assert canonical_json(json.loads(given)) == canonical.encode("utf-8")


def test_canonical_json_escapes_only_what_the_grammar_requires():
    # The grammar: short escapes for \b \f \n \r \t, lower-case \u00XX for other control characters.
    expected = '{"a":"\\u0001\\u001f\\b\\f\\n\\r\\t\\"\\\\/é"}'.encode()
    assert canonical_json({"a": "\x01\x1f\b\f\n\r\t\"\\/é"}) == expected
    with pytest.raises(ValueError):
        canonical_json({"a": 1.5})
    with pytest.raises(ValueError):
        canonical_json({"a": 2**53})


def test_unpadded_base64_matches_the_spec_examples():
    for raw, text in [(b"", ""), (b"f", "Zg"), (b"fo", "Zm8"), (b"foo", "Zm9v"), (b"foob", "Zm9vYg"),
                      (b"fooba", "Zm9vYmE"), (b"foobar", "Zm9vYmFy")]:
        assert encode_base64(raw) == text
        assert decode_base64(text) == raw
    assert decode_base64("Zg==") == b"f"


# --- signatures -------------------------------------------------------------------------------------------

SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"   # the spec's "Cryptographic test vectors"


def _spec_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(decode_base64(SPEC_SEED))


def test_signing_gives_the_spec_test_vectors():
    key = _spec_key()
    empty = sign_json({}, "domain", "ed25519:1", key)
    assert empty == {"signatures": {"domain": {"ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76L"
                                                             "Trr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}
    two = sign_json({"one": 1, "two": "Two"}, "domain", "ed25519:1", key)
    assert two["signatures"]["domain"]["ed25519:1"] == (
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw")


def test_sign_and_verify_round_trip_keeps_other_signatures_and_ignores_unsigned():
    keys = CrossSigningKeys.generate()
    obj = {"user_id": "@b:x", "keys": {"a": "b"}, "unsigned": {"device_display_name": "tel"},
           "signatures": {"@b:x": {"ed25519:DEV": "earlier"}}}
    signed = sign_json(obj, "@b:x", "ed25519:M", keys.master)
    assert obj["signatures"] == {"@b:x": {"ed25519:DEV": "earlier"}}           # the input is left alone
    assert signed["signatures"]["@b:x"]["ed25519:DEV"] == "earlier"
    assert signed["unsigned"] == {"device_display_name": "tel"}
    assert verify_signature(signed, "@b:x", "ed25519:M", keys.master_public)
    # unsigned and other signatures are not covered: changing them keeps the signature valid
    signed["unsigned"] = {"device_display_name": "other"}
    signed["signatures"]["@c:x"] = {"ed25519:Z": "zzz"}
    assert verify_signature(signed, "@b:x", "ed25519:M", keys.master_public)


def test_a_tampered_object_or_another_key_fails_verification():
    keys = CrossSigningKeys.generate()
    signed = sign_json({"user_id": "@b:x", "keys": {"ed25519:A": "A"}}, "@b:x", "ed25519:M", keys.master)
    tampered = {**signed, "keys": {"ed25519:A": "B"}}
    assert not verify_signature(tampered, "@b:x", "ed25519:M", keys.master_public)
    assert not verify_signature(signed, "@b:x", "ed25519:M", keys.self_signing_public)
    assert not verify_signature(signed, "@c:x", "ed25519:M", keys.master_public)
    assert not verify_signature(signed, "@b:x", "ed25519:other", keys.master_public)
    broken = json.loads(json.dumps(signed))
    broken["signatures"]["@b:x"]["ed25519:M"] = "not base64!"
    assert not verify_signature(broken, "@b:x", "ed25519:M", keys.master_public)


def test_secret_json_round_trip_and_upload_objects():
    keys = CrossSigningKeys.generate()
    again = CrossSigningKeys.from_secret_json(keys.to_secret_json())
    assert again.same_as(keys) and again.master_public == keys.master_public
    body = keys.upload_objects("@bot:x")
    master_id = f"ed25519:{keys.master_public}"
    assert body["master_key"] == {"user_id": "@bot:x", "usage": ["master"], "keys": {master_id: keys.master_public}}
    for name, usage, public in [("self_signing_key", "self_signing", keys.self_signing_public),
                                ("user_signing_key", "user_signing", keys.user_signing_public)]:
        assert body[name]["usage"] == [usage] and body[name]["keys"] == {f"ed25519:{public}": public}
        assert verify_signature(body[name], "@bot:x", master_id, keys.master_public)


# --- device_trust on hand-built chains -----------------------------------------------------------------------

def _device(user_id: str, device_id: str) -> dict:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    own = Ed25519PrivateKey.generate()
    public = CrossSigningKeys(own, own, own).master_public
    obj = {"user_id": user_id, "device_id": device_id, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
           "keys": {f"ed25519:{device_id}": public, f"curve25519:{device_id}": public}}
    return sign_json(obj, user_id, f"ed25519:{device_id}", own)


def _answer(user_id: str, keys: CrossSigningKeys, devices: list[dict]) -> dict:
    body = keys.upload_objects(user_id)
    return {"device_keys": {user_id: {d["device_id"]: d for d in devices}},
            "master_keys": {user_id: body["master_key"]}, "self_signing_keys": {user_id: body["self_signing_key"]}}


def test_device_trust_follows_master_to_self_signing_to_device():
    user, keys = "@af:x", CrossSigningKeys.generate()
    device = sign_json(_device(user, "PHONE"), user, f"ed25519:{keys.self_signing_public}", keys.self_signing)
    answer = _answer(user, keys, [device, _device(user, "LAPTOP")])
    assert device_trust(answer, user, "PHONE") == DeviceTrust(keys.master_public, True)
    assert device_trust(answer, user, "LAPTOP") == DeviceTrust(keys.master_public, False)   # not cross-signed
    assert device_trust(answer, user, "GONE") == DeviceTrust(keys.master_public, False)
    assert master_public_of(answer, user) == keys.master_public
    assert device_trust(answer, "@other:x", "PHONE") == DeviceTrust(None, False)


def test_a_device_signed_by_another_key_is_not_signed_by_its_owner():
    user, keys, other = "@af:x", CrossSigningKeys.generate(), CrossSigningKeys.generate()
    # signed by a self-signing key that is not the published one, under the published key's id
    device = sign_json(_device(user, "PHONE"), user, f"ed25519:{keys.self_signing_public}", other.self_signing)
    assert device_trust(_answer(user, keys, [device]), user, "PHONE") == DeviceTrust(keys.master_public, False)
    # signed by another account's self-signing key under its own id
    device = sign_json(_device(user, "PHONE"), user, f"ed25519:{other.self_signing_public}", other.self_signing)
    assert not device_trust(_answer(user, keys, [device]), user, "PHONE").signed_by_owner


def test_a_self_signing_key_not_signed_by_the_master_breaks_the_chain():
    user, keys, intruder = "@af:x", CrossSigningKeys.generate(), CrossSigningKeys.generate()
    device = sign_json(_device(user, "PHONE"), user, f"ed25519:{intruder.self_signing_public}",
                       intruder.self_signing)
    answer = _answer(user, intruder, [device])
    answer["master_keys"][user] = keys.upload_objects(user)["master_key"]   # the real master, the intruder's SSK
    assert device_trust(answer, user, "PHONE") == DeviceTrust(keys.master_public, False)
    # a master key object for another user, or with a second key, is not taken
    answer = _answer(user, keys, [])
    answer["master_keys"][user]["user_id"] = "@other:x"
    assert master_public_of(answer, user) is None
    answer = _answer(user, keys, [])
    answer["master_keys"][user]["keys"]["ed25519:extra"] = "extra"
    assert master_public_of(answer, user) is None


# --- HTTP failures without a homeserver ------------------------------------------------------------------------

class _FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self._body = status, body

    async def read(self) -> bytes:
        return self._body

    def release(self) -> None:
        pass


class _FakeClient:
    user_id, device_id, access_token = "@bot:x", "DEV", "token"

    def __init__(self, *answers) -> None:
        self.answers, self.sent = list(answers), []

    async def send(self, method, path, data=None, headers=None):
        self.sent.append((method, path, json.loads(data) if data else None))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_network_errors_and_non_json_answers_are_homeserver_errors():
    import aiohttp

    with pytest.raises(HomeserverError, match="unreachable"):
        await query_keys(_FakeClient(aiohttp.ClientConnectionError("refused")), ["@bot:x"])
    with pytest.raises(HomeserverError, match="not JSON"):
        await query_keys(_FakeClient(_FakeResponse(502, b"<html>Bad gateway</html>")), ["@bot:x"])
    with pytest.raises(HomeserverError) as info:
        await query_keys(_FakeClient(_FakeResponse(403, b'{"errcode": "M_FORBIDDEN"}')), ["@bot:x"])
    assert info.value.errcode == "M_FORBIDDEN"


async def test_user_interactive_auth_asks_for_the_password_once_and_names_other_stages():
    keys = CrossSigningKeys.generate()
    password_flow = b'{"session": "s1", "flows": [{"stages": ["m.login.password"]}], "params": {}}'
    client = _FakeClient(_FakeResponse(401, password_flow), _FakeResponse(200, b"{}"))
    await upload_identity(client, keys, "geheim")
    first, second = client.sent[0][2], client.sent[1][2]
    assert "auth" not in first
    assert second["auth"] == {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "@bot:x"},
                              "password": "geheim", "session": "s1"}
    with pytest.raises(PasswordRequired):
        await upload_identity(_FakeClient(_FakeResponse(401, password_flow)), keys, None)
    refused = b'{"errcode": "M_FORBIDDEN", "session": "s1", "flows": [{"stages": ["m.login.password"]}]}'
    with pytest.raises(PasswordRefused):
        await upload_identity(_FakeClient(_FakeResponse(401, password_flow), _FakeResponse(401, refused)), keys, "x")
    oidc = (b'{"session": "s2", "flows": [{"stages": ["org.matrix.cross_signing_reset"]}], '
            b'"params": {"org.matrix.cross_signing_reset": {"url": "https://account.example/reset"}}}')
    with pytest.raises(UnsupportedAuth) as info:
        await upload_identity(_FakeClient(_FakeResponse(401, oidc)), keys, "geheim")
    assert info.value.stages == ["org.matrix.cross_signing_reset"]
    assert info.value.url == "https://account.example/reset"


# --- storage -------------------------------------------------------------------------------------------------

BOT, AF = "@meldbot:bergeijk.nl", "@Anna:bergeijk.nl"


async def test_identity_and_trust_repositories_keep_everything_sealed(database_url):
    await migrated(database_url)
    db, sealer = Database(database_url), KeyringSealer(new_key())
    secret = CrossSigningKeys.generate().to_secret_json()
    other = CrossSigningKeys.generate().to_secret_json()
    try:
        async with SqlUnitOfWork(db, sealer) as uow:
            assert await uow.matrix_identity.get(BOT) is None
            assert await uow.matrix_identity.add(BOT, secret, AT)
            await uow.commit()
        async with SqlUnitOfWork(db, sealer) as uow:
            assert not await uow.matrix_identity.add(BOT, other, AT)   # the first identity stays
            assert await uow.matrix_identity.get(BOT) == secret
            await uow.matrix_trust.put(BOT, AF, {"pinned": "MASTER", "devices": ["PHONE"]}, AT)
            await uow.commit()
        async with SqlUnitOfWork(db, sealer) as uow:
            await uow.matrix_identity.put(BOT, other, AT)              # on purpose: replaced
            await uow.matrix_trust.put(BOT, AF.lower(), {"pinned": "MASTER", "devices": ["PHONE", "LAPTOP"]}, AT)
            await uow.commit()
        async with SqlUnitOfWork(db, sealer) as uow:
            assert await uow.matrix_identity.get(BOT) == other
            assert await uow.matrix_trust.get(BOT, AF) == {"pinned": "MASTER", "devices": ["PHONE", "LAPTOP"]}
            assert await uow.matrix_trust.get(BOT, "@piet:bergeijk.nl") is None
            assert await uow.matrix_trust.get("@otherbot:x", AF) is None
            assert await uow.matrix_trust.all(BOT) == [(AF, {"pinned": "MASTER", "devices": ["PHONE", "LAPTOP"]})]
            raw = [tuple(r) for r in (await uow.session.exec(sa.text(
                "SELECT account_lookup, account_sealed, keys_sealed FROM matrix_identity"))).all()]
            raw += [tuple(r) for r in (await uow.session.exec(sa.text(
                "SELECT account_lookup, person_lookup, identity_sealed, state_sealed FROM matrix_trust"))).all()]
    finally:
        await db.dispose()
    text = json.dumps(raw)
    seeds = list(json.loads(secret).values())[1:] + list(json.loads(other).values())[1:]
    assert len(raw) == 2
    for clear in ["meldbot", "anna", "PHONE", "MASTER", "master", *seeds]:
        assert clear.lower() not in text.lower(), clear


async def test_key_rotation_reseals_and_rekeys_the_matrix_tables(database_url):
    await migrated(database_url)
    old, new = new_key(), new_key()
    db = Database(database_url)
    secret = CrossSigningKeys.generate().to_secret_json()
    try:
        async with SqlUnitOfWork(db, KeyringSealer(old)) as uow:
            await uow.matrix_identity.put(BOT, secret, AT)
            await uow.matrix_trust.put(BOT, AF, {"pinned": "M1"}, AT)
            await uow.commit()
        both = KeyringSealer(new, [old])
        async with SqlUnitOfWork(db, both) as uow:   # during rotation: found under the old key
            assert await uow.matrix_identity.get(BOT) == secret
            assert await uow.matrix_trust.get(BOT, AF) == {"pinned": "M1"}
        progress = await Rotation(db, both, batch_size=1).run()
        assert progress.done and progress.counts["matrix_identity"] == 1 and progress.counts["matrix_trust"] == 1
        only_new = KeyringSealer(new)
        async with SqlUnitOfWork(db, only_new) as uow:
            assert await uow.matrix_identity.get(BOT) == secret
            assert await uow.matrix_trust.get(BOT, AF) == {"pinned": "M1"}
            assert await uow.matrix_trust.all(BOT) == [(AF, {"pinned": "M1"})]
        old_id = KeyringSealer(old).key_id
        async with db.engine.connect() as conn:
            for table, column in [("matrix_identity", "keys_sealed"), ("matrix_identity", "account_sealed"),
                                  ("matrix_trust", "state_sealed"), ("matrix_trust", "identity_sealed")]:
                stale = (await conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {column} LIKE :p"),
                                            {"p": f"v1.{old_id}.%"})).scalar()
                assert stale == 0, (table, column)
            assert (await conn.execute(sa.text("SELECT count(*) FROM matrix_identity"))).scalar() == 1
    finally:
        await db.dispose()


async def test_a_write_under_a_new_key_moves_the_row(sqlite_url):
    await migrated(sqlite_url)
    old, new = new_key(), new_key()
    db = Database(sqlite_url)
    try:
        async with SqlUnitOfWork(db, KeyringSealer(old)) as uow:
            await uow.matrix_identity.put(BOT, "one", AT)
            await uow.matrix_trust.put(BOT, AF, {"n": 1}, AT)
            await uow.commit()
        async with SqlUnitOfWork(db, KeyringSealer(new, [old])) as uow:
            assert not await uow.matrix_identity.add(BOT, "two", AT)
            await uow.matrix_identity.put(BOT, "three", AT)
            await uow.matrix_trust.put(BOT, AF, {"n": 2}, AT)
            await uow.commit()
        async with SqlUnitOfWork(db, KeyringSealer(new)) as uow:
            assert await uow.matrix_identity.get(BOT) == "three"
            assert await uow.matrix_trust.get(BOT, AF) == {"n": 2}
            counts = [(await uow.session.exec(sa.text(f"SELECT count(*) FROM {t}"))).one()[0]
                      for t in ("matrix_identity", "matrix_trust")]
        assert counts == [1, 1]
    finally:
        await db.dispose()


# --- against a real Synapse ------------------------------------------------------------------------------------

PASSWORD = "test-password-1"
WAIT = 30
_names = itertools.count(1)


# `synapse`: one server per module, from tests/integration/conftest.py.


class MemoryStore:
    def __init__(self) -> None:
        self.keys: CrossSigningKeys | None = None
        self.saves = 0

    async def load(self):
        return self.keys

    async def save(self, keys, *, replace=False):
        self.saves += 1
        if replace or self.keys is None:
            self.keys = keys


class Account:
    """A fresh bot account on the shared homeserver, with a database for its keys."""

    def __init__(self, synapse, folder: Path) -> None:
        n = next(_names)
        self.synapse, self.folder = synapse, folder
        self.user_id = synapse.register(f"csbot{n}", PASSWORD)
        self.observer_id = synapse.register(f"csobserver{n}", PASSWORD)
        self.db_url = f"sqlite+aiosqlite:///{folder}/meldbot.db"
        self.data_key = new_key()
        self.clients = []
        self.db: Database | None = None

    async def store(self) -> SecretIdentityStore:
        if self.db is None:
            await migrated(self.db_url)
            self.db = Database(self.db_url)
        factory = UnitOfWorkFactory(self.db, KeyringSealer(self.data_key))
        return SecretIdentityStore(MatrixIdentitySecrets(factory, self.user_id))

    async def device(self, name: str, user_id: str | None = None, upload_keys: bool = True):
        """A new nio E2EE device with its own store folder; its device keys uploaded."""
        from nio import AsyncClient, AsyncClientConfig, KeysUploadResponse, LoginResponse

        folder = self.folder / f"{name}-store"
        folder.mkdir(parents=True, exist_ok=True)
        client = AsyncClient(self.synapse.url, user_id or self.user_id, store_path=str(folder),
                             config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False))
        self.clients.append(client)
        response = await asyncio.wait_for(client.login(PASSWORD, device_name=name), WAIT)
        assert isinstance(response, LoginResponse), response
        if upload_keys:
            response = await asyncio.wait_for(client.keys_upload(), WAIT)
            assert isinstance(response, KeysUploadResponse), response
        return client

    async def seen_by_observer(self) -> dict:
        """The bot account's keys as another account's /keys/query shows them."""
        if not hasattr(self, "_observer"):
            self._observer = await self.device("observer", self.observer_id, upload_keys=False)
        return await query_keys(self._observer, [self.user_id])

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self.db is not None:
            await self.db.dispose()


@pytest.fixture
async def account(synapse, tmp_path):
    account = Account(synapse, tmp_path)
    yield account
    await account.close()


@pytest.mark.slow
async def test_ensure_identity_creates_uploads_and_signs_the_device(account):
    store = await account.store()
    bot = await account.device("bot")
    status = await ensure_identity(bot, store, None)   # the first upload needs no password on Synapse
    assert status.outcome is Outcome.CREATED and status.device_signed and status.ok
    seen = await account.seen_by_observer()
    assert master_public_of(seen, account.user_id) == status.master_public == status.server_master
    assert account.user_id in seen["self_signing_keys"]
    assert "user_signing_keys" not in seen or account.user_id not in seen["user_signing_keys"]  # private to the owner
    assert device_trust(seen, account.user_id, bot.device_id) == DeviceTrust(status.master_public, True)
    stored = await store.load()
    assert stored.master_public == status.master_public
    # The next start changes nothing.
    again = await ensure_identity(bot, store, None)
    assert again.outcome is Outcome.PRESENT and again.device_signed and again.master_public == status.master_public

    # The sealed column holds no private key and not the account in clear.
    async with account.db.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT account_lookup, account_sealed, keys_sealed FROM matrix_identity")
                                  )).one()
    seeds = [v for k, v in json.loads(stored.to_secret_json()).items() if k != "version"]
    assert row.keys_sealed.startswith("v1.")
    for clear in [*seeds, account.user_id, account.user_id[1:].split(":")[0], "master"]:
        assert clear not in " ".join(row), clear
    blob = b"".join(p.read_bytes() for p in account.folder.glob("meldbot.db*"))
    for seed in seeds:
        assert seed.encode() not in blob and decode_base64(seed) not in blob


@pytest.mark.slow
async def test_a_second_device_with_the_same_database_gets_the_same_identity(account):
    store = await account.store()
    first = await account.device("bot")
    created = await ensure_identity(first, store, None)
    second = await account.device("replica")                 # a fresh nio store, the same database
    status = await ensure_identity(second, await account.store(), None)
    assert status.outcome is Outcome.PRESENT and status.device_signed
    assert status.master_public == created.master_public
    seen = await account.seen_by_observer()
    assert device_trust(seen, account.user_id, first.device_id) == DeviceTrust(created.master_public, True)
    assert device_trust(seen, account.user_id, second.device_id) == DeviceTrust(created.master_public, True)


@pytest.mark.slow
async def test_two_replicas_starting_together_for_the_first_time_end_with_one_identity(account):
    one, two = await account.device("one"), await account.device("two")
    first, second = await asyncio.gather(ensure_identity(one, await account.store(), None),
                                         ensure_identity(two, await account.store(), None))
    assert first.master_public == second.master_public
    assert {first.outcome, second.outcome} <= {Outcome.CREATED, Outcome.PRESENT}
    seen = await account.seen_by_observer()
    assert master_public_of(seen, account.user_id) == first.master_public
    for device in (one, two):
        assert device_trust(seen, account.user_id, device.device_id).signed_by_owner


@pytest.mark.slow
async def test_a_device_whose_keys_are_not_uploaded_yet_is_signed_at_the_next_check(account):
    store = await account.store()
    bot = await account.device("bot", upload_keys=False)
    status = await ensure_identity(bot, store, None)
    assert status.outcome is Outcome.CREATED and not status.device_signed and not status.ok
    await asyncio.wait_for(bot.keys_upload(), WAIT)
    again = await ensure_identity(bot, store, None)
    assert again.outcome is Outcome.PRESENT and again.device_signed


@pytest.mark.slow
async def test_lost_keys_are_a_mismatch_and_nothing_is_uploaded(account):
    first = await account.device("bot")
    created = await ensure_identity(first, await account.store(), None)
    before = await account.seen_by_observer()
    empty = MemoryStore()
    newcomer = await account.device("restored")
    status = await ensure_identity(newcomer, empty, PASSWORD)   # even with the password: never a silent reset
    assert status.outcome is Outcome.MISMATCH and not status.ok
    assert status.master_public is None and status.server_master == created.master_public
    assert not status.device_signed
    assert empty.keys is None and empty.saves == 0
    after = await account.seen_by_observer()
    assert after["master_keys"] == before["master_keys"]
    assert after["self_signing_keys"] == before["self_signing_keys"]
    assert not device_trust(after, account.user_id, newcomer.device_id).signed_by_owner
    # Other keys in the store than on the server: a mismatch as well, and the store keeps its keys.
    other = MemoryStore()
    other.keys = CrossSigningKeys.generate()
    status = await ensure_identity(newcomer, other, PASSWORD)
    assert status.outcome is Outcome.MISMATCH and status.master_public == other.keys.master_public
    assert master_public_of(await account.seen_by_observer(), account.user_id) == created.master_public


@pytest.mark.slow
async def test_keys_stored_but_never_uploaded_are_uploaded(account):
    store = MemoryStore()
    store.keys = CrossSigningKeys.generate()                   # saved, then the upload failed (crash, network)
    bot = await account.device("bot")
    status = await ensure_identity(bot, store, None)
    assert status.outcome is Outcome.CREATED and status.master_public == store.keys.master_public
    assert device_trust(await account.seen_by_observer(), account.user_id, bot.device_id).signed_by_owner


@pytest.mark.slow
async def test_the_same_master_with_another_self_signing_key_gets_new_sub_keys_not_a_new_identity(account):
    store = MemoryStore()
    bot = await account.device("bot")
    created = await ensure_identity(bot, store, None)
    ours = store.keys
    foreign = CrossSigningKeys(ours.master, CrossSigningKeys.generate().self_signing,
                               CrossSigningKeys.generate().user_signing)
    await upload_identity(bot, foreign, PASSWORD, with_master=False)   # same master, other sub-keys
    assert not device_trust(await account.seen_by_observer(), account.user_id, bot.device_id).signed_by_owner
    with pytest.raises(PasswordRequired):                             # replacing sub-keys needs the password
        await ensure_identity(bot, store, None)
    assert store.keys is ours                                         # put back after the refusal
    status = await ensure_identity(bot, store, PASSWORD)
    assert status.outcome is Outcome.PRESENT and status.device_signed
    assert store.keys.master_public == ours.master_public and store.keys.self_signing_public not in (
        ours.self_signing_public, foreign.self_signing_public)
    seen = await account.seen_by_observer()
    assert device_trust(seen, account.user_id, bot.device_id) == DeviceTrust(created.master_public, True)


@pytest.mark.slow
async def test_reset_identity_replaces_it_with_the_password_and_fails_clearly_without(account):
    store = await account.store()
    bot = await account.device("bot")
    created = await ensure_identity(bot, store, None)
    with pytest.raises(PasswordRequired):
        await reset_identity(bot, store, None)
    with pytest.raises(PasswordRefused):
        await reset_identity(bot, store, "wrong-password")
    # Nothing changed: not on the server, not in the store.
    seen = await account.seen_by_observer()
    assert master_public_of(seen, account.user_id) == created.master_public
    assert (await store.load()).master_public == created.master_public
    assert device_trust(seen, account.user_id, bot.device_id).signed_by_owner

    status = await reset_identity(bot, store, PASSWORD)
    assert status.outcome is Outcome.CREATED and status.device_signed
    assert status.master_public != created.master_public
    seen = await account.seen_by_observer()
    assert device_trust(seen, account.user_id, bot.device_id) == DeviceTrust(status.master_public, True)
    assert (await store.load()).master_public == status.master_public
    # Another device of the bot, signed by the old identity, is signed again at its next check.
    assert (await ensure_identity(bot, store, None)).outcome is Outcome.PRESENT


# --- the command --------------------------------------------------------------------------------------------

def _cli_env(account: Account, store_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
    env.update(MELDBOT_CONFIG=str(EXAMPLE), PYTHONPATH=str(ROOT), MELDBOT_STORAGE__URL=account.db_url,
               MELDBOT_DATA_KEY=account.data_key, MELDBOT_MATRIX__HOMESERVER=account.synapse.url,
               MELDBOT_MATRIX__USER_ID=account.user_id, MELDBOT_MATRIX__STORE_PATH=str(store_path))
    env.update(extra)
    return env


async def _meldbot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    def run():
        return subprocess.run([sys.executable, "-m", "meldbot", "matrix-reset-identity", *args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=ROOT)

    return await asyncio.to_thread(run)


async def _devices(client) -> list[str]:
    response = await client.devices()
    return [d.id for d in response.devices]


@pytest.mark.slow
async def test_the_reset_command_replaces_the_identity_with_the_bots_saved_device(account):
    store = await account.store()
    bot = await account.device("bot")
    created = await ensure_identity(bot, store, None)
    store_path = account.folder / "bot-store"
    store_path.mkdir(exist_ok=True)
    (store_path / "credentials.json").write_text(json.dumps({
        "homeserver": bot.homeserver, "user_id": bot.user_id, "device_id": bot.device_id,
        "access_token": bot.access_token}))
    result = await _meldbot(_cli_env(account, store_path, MELDBOT_MATRIX__PASSWORD=PASSWORD), "--yes")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "ziet één keer een melding" in result.stdout and "Er gaat niets verloren" in result.stdout
    assert "Klaar" in result.stdout
    stored = await store.load()
    assert stored.master_public != created.master_public and stored.master_public in result.stdout
    seen = await account.seen_by_observer()
    # The bot's own device is signed by the new identity right away.
    assert device_trust(seen, account.user_id, bot.device_id) == DeviceTrust(stored.master_public, True)


@pytest.mark.slow
async def test_the_reset_command_without_a_saved_device_logs_in_and_out_again(account):
    store = await account.store()
    bot = await account.device("bot")
    created = await ensure_identity(bot, store, None)
    before = await _devices(bot)
    result = await _meldbot(_cli_env(account, account.folder / "empty-store", MELDBOT_MATRIX__PASSWORD=PASSWORD),
                            "--yes")
    assert result.returncode == 0, result.stderr
    assert sorted(await _devices(bot)) == sorted(before)          # the temporary login is gone again
    stored = await store.load()
    assert stored.master_public != created.master_public
    assert master_public_of(await account.seen_by_observer(), account.user_id) == stored.master_public
    # The bot's device is signed at its next start.
    status = await ensure_identity(bot, store, None)
    assert status.outcome is Outcome.PRESENT and status.device_signed


@pytest.mark.slow
async def test_the_reset_command_refuses_without_password_or_confirmation_and_changes_nothing(account):
    store = await account.store()
    bot = await account.device("bot")
    created = await ensure_identity(bot, store, None)
    store_path = account.folder / "meldbot-store"

    no_password = await _meldbot(_cli_env(account, store_path), "--yes")
    assert no_password.returncode != 0
    assert "wachtwoord" in no_password.stderr and "MELDBOT_MATRIX__PASSWORD" in no_password.stderr
    assert "Er is niets veranderd" in no_password.stderr and "Traceback" not in no_password.stderr

    unconfirmed = await _meldbot(_cli_env(account, store_path, MELDBOT_MATRIX__PASSWORD=PASSWORD))
    assert unconfirmed.returncode != 0 and "--yes" in unconfirmed.stderr and "Traceback" not in unconfirmed.stderr

    wrong = await _meldbot(_cli_env(account, store_path, MELDBOT_MATRIX__PASSWORD="wrong-password"), "--yes")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "Inloggen op Matrix lukt niet" in wrong.stderr     # no saved device: the login itself fails

    saved = account.folder / "saved-device"
    saved.mkdir()
    (saved / "credentials.json").write_text(json.dumps({
        "homeserver": bot.homeserver, "user_id": bot.user_id, "device_id": bot.device_id,
        "access_token": bot.access_token}))
    refused = await _meldbot(_cli_env(account, saved, MELDBOT_MATRIX__PASSWORD="wrong-password"), "--yes")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "accepteert het wachtwoord" in refused.stderr      # the saved device works, the confirmation fails

    unreachable = await _meldbot(_cli_env(account, store_path, MELDBOT_MATRIX__PASSWORD=PASSWORD,
                                          MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9"), "--yes")
    assert unreachable.returncode != 0 and "Traceback" not in unreachable.stderr
    assert "niet bereikbaar" in unreachable.stderr

    assert (await store.load()).master_public == created.master_public
    assert master_public_of(await account.seen_by_observer(), account.user_id) == created.master_public
