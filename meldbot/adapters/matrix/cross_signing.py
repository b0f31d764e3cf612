"""The bot's cross-signing identity (master, self-signing and user-signing Ed25519 keys).

Element excludes devices that their own account has not cross-signed (MSC4153), and matrix-nio has no
cross-signing. This module makes the identity once, uploads it, signs the bot's devices with the
self-signing key, and checks other users' chains (master -> self-signing -> device). The private keys
are kept by an `IdentityStore` (sealed in the database); an identity is never reset silently: only
`reset_identity`, called on purpose (`meldbot matrix-reset-identity`), replaces one.

Spec: Client-Server API, "End-to-End Encryption" -> "Cross-signing"; appendix "Signing JSON".
Independent of adapter.py: it needs only an AsyncClient that is logged in.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nio.api import Api

log = logging.getLogger("meldbot.matrix.cross_signing")

NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)
# Canonical JSON allows only integers in this range (appendix "Canonical JSON").
_MAX_INT = 2**53 - 1


# --- canonical JSON, base64, signatures ---------------------------------------------------------------

def _canonical_value(value: Any) -> Any:
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("canonical JSON object keys must be strings")
        return {k: _canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical_value(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("canonical JSON has no fractions")
        value = int(value)  # -0.0 -> 0, 1e10 -> 10000000000
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ValueError("integer out of canonical JSON's range")
        return value
    raise TypeError(f"not JSON: {type(value).__name__}")


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (no \\u escapes outside ASCII), integers only."""
    return json.dumps(_canonical_value(obj), ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("utf-8")


def encode_base64(data: bytes) -> str:
    """Unpadded standard base64."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the spec asks decoders to accept both)."""
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    if "-" in text or "_" in text:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def _public_b64(key: Ed25519PrivateKey) -> str:
    return encode_base64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _seed_b64(key: Ed25519PrivateKey) -> str:
    return encode_base64(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption()))


def _signable(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def sign_json(obj: dict, user_id: str, key_id: str, private_key: Ed25519PrivateKey) -> dict:
    """A copy of `obj` with a signature by `private_key` under signatures[user_id][key_id] added.

    `key_id` is the full signing key identifier, e.g. "ed25519:<public key>". Existing signatures and
    `unsigned` are kept; neither is covered by the signature.
    """
    signature = encode_base64(private_key.sign(canonical_json(_signable(obj))))
    signed = copy.deepcopy(obj)
    signed.setdefault("signatures", {}).setdefault(user_id, {})[key_id] = signature
    return signed


def verify_signature(obj: dict, user_id: str, key_id: str, public_key_b64: str) -> bool:
    """Whether `obj` carries a valid signature by that key under signatures[user_id][key_id]."""
    try:
        signature = obj["signatures"][user_id][key_id]
        public = Ed25519PublicKey.from_public_bytes(decode_base64(public_key_b64))
        public.verify(decode_base64(signature), canonical_json(_signable(obj)))
    except (KeyError, TypeError, ValueError, InvalidSignature, AttributeError):
        return False
    return True


# --- the keys ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrossSigningKeys:
    """The three private keys of one identity. Keep them sealed: whoever has them is the bot."""

    master: Ed25519PrivateKey
    self_signing: Ed25519PrivateKey
    user_signing: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> "CrossSigningKeys":
        return cls(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    def to_secret_json(self) -> str:
        """The private seeds, for the caller to seal."""
        return json.dumps({"version": 1, "master": _seed_b64(self.master),
                           "self_signing": _seed_b64(self.self_signing), "user_signing": _seed_b64(self.user_signing)})

    @classmethod
    def from_secret_json(cls, text: str) -> "CrossSigningKeys":
        data = json.loads(text)
        if data.get("version") != 1:
            raise ValueError("unknown cross-signing secret format")
        keys = [Ed25519PrivateKey.from_private_bytes(decode_base64(data[name]))
                for name in ("master", "self_signing", "user_signing")]
        return cls(*keys)

    @property
    def master_public(self) -> str:
        return _public_b64(self.master)

    @property
    def self_signing_public(self) -> str:
        return _public_b64(self.self_signing)

    @property
    def user_signing_public(self) -> str:
        return _public_b64(self.user_signing)

    def same_as(self, other: "CrossSigningKeys | None") -> bool:
        return other is not None and all(
            getattr(self, name) == getattr(other, name)
            for name in ("master_public", "self_signing_public", "user_signing_public"))

    def upload_objects(self, user_id: str) -> dict[str, dict]:
        """The body of /keys/device_signing/upload (without `auth`): the two sub-keys signed by the master."""
        def key_object(usage: str, public: str) -> dict:
            return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}

        master_id = f"ed25519:{self.master_public}"
        return {
            "master_key": key_object("master", self.master_public),
            "self_signing_key": sign_json(key_object("self_signing", self.self_signing_public), user_id, master_id,
                                          self.master),
            "user_signing_key": sign_json(key_object("user_signing", self.user_signing_public), user_id, master_id,
                                          self.master),
        }


# --- errors ---------------------------------------------------------------------------------------------

class CrossSigningError(Exception):
    """Something the administrator has to know about; `reason` is a stable code for messages."""

    reason = "error"


class HomeserverError(CrossSigningError):
    """The homeserver was unreachable, or refused, or answered something that is not JSON."""

    reason = "homeserver"

    def __init__(self, message: str, status: int | None = None, errcode: str | None = None) -> None:
        super().__init__(message)
        self.status, self.errcode = status, errcode


class PasswordRequired(CrossSigningError):
    """The homeserver wants the account's password for this, and none is configured."""

    reason = "password_required"


class PasswordRefused(CrossSigningError):
    reason = "password_refused"


class UnsupportedAuth(CrossSigningError):
    """The homeserver wants another kind of confirmation (e.g. approval in the account's web page)."""

    reason = "unsupported_auth"

    def __init__(self, message: str, stages: list[str], url: str | None = None) -> None:
        super().__init__(message)
        self.stages, self.url = stages, url


class DeviceKeysMissing(CrossSigningError):
    """The device to sign has not uploaded its keys yet."""

    reason = "device_keys_missing"


# --- HTTP ------------------------------------------------------------------------------------------------

async def _request(client, method: str, path: list[str], body: dict | None = None) -> tuple[int, dict]:
    """One authenticated request through nio's session; the answer must be a JSON object."""
    if not client.access_token:
        raise CrossSigningError("the client is not logged in")
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    data = json.dumps(body) if body is not None else None
    try:
        response = await client.send(method, Api._build_path(path), data, headers)
        try:
            raw = await response.read()
            status = response.status
        finally:
            response.release()
    except NETWORK_ERRORS as exc:
        raise HomeserverError(f"homeserver unreachable: {type(exc).__name__}") from exc
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        raise HomeserverError(f"homeserver answered {status} with something that is not JSON", status) from None
    if not isinstance(answer, dict):
        raise HomeserverError(f"homeserver answered {status} with JSON that is not an object", status)
    return status, answer


def _refused(what: str, status: int, answer: dict) -> HomeserverError:
    errcode = answer.get("errcode")
    return HomeserverError(f"{what} refused: {status} {errcode or ''}".rstrip(), status, errcode)


async def query_keys(client, user_ids: list[str]) -> dict:
    """The raw /keys/query answer: device_keys, master_keys, self_signing_keys (and user_signing_keys
    for the caller's own account)."""
    status, answer = await _request(client, "POST", ["keys", "query"],
                                    {"device_keys": {user_id: [] for user_id in user_ids}, "timeout": 10_000})
    if status != 200:
        raise _refused("keys query", status, answer)
    return answer


async def upload_identity(client, keys: CrossSigningKeys, password: str | None, *, with_master: bool = True) -> None:
    """Upload the public keys, with user-interactive auth when the homeserver asks for it.

    Synapse accepts a first upload (and an identical one) without auth and asks for the password when
    keys are replaced. `with_master=False` uploads only the two sub-keys, signed by the master key the
    server has already. Synapse refuses (a 500) any key it has stored before, except an identical upload.
    """
    body = keys.upload_objects(client.user_id)
    if not with_master:
        del body["master_key"]
    status, answer = await _request(client, "POST", ["keys", "device_signing", "upload"], body)
    if status == 200:
        return
    if status != 401 or "flows" not in answer:
        raise _refused("cross-signing key upload", status, answer)
    stages = sorted({stage for flow in answer.get("flows", []) for stage in flow.get("stages", [])})
    if not any(flow.get("stages") == ["m.login.password"] for flow in answer["flows"]):
        params = answer.get("params") or {}
        url = next((p.get("url") for p in params.values() if isinstance(p, dict) and p.get("url")), None)
        raise UnsupportedAuth(f"the homeserver wants {', '.join(stages) or 'an unknown confirmation'}", stages, url)
    if not password:
        raise PasswordRequired("the homeserver asks for the bot account's password to replace its cross-signing keys")
    body["auth"] = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": client.user_id},
                    "password": password, "session": answer.get("session")}
    status, answer = await _request(client, "POST", ["keys", "device_signing", "upload"], body)
    if status == 200:
        return
    if status in (401, 403) and answer.get("errcode") == "M_FORBIDDEN":
        raise PasswordRefused("the homeserver refused the bot account's password")
    raise _refused("cross-signing key upload", status, answer)


async def sign_device(client, keys: CrossSigningKeys, device_keys_obj: dict) -> None:
    """Sign a device of the bot's own account with the self-signing key (/keys/signatures/upload)."""
    user_id, device_id = device_keys_obj["user_id"], device_keys_obj["device_id"]
    signed = sign_json(device_keys_obj, user_id, f"ed25519:{keys.self_signing_public}", keys.self_signing)
    status, answer = await _request(client, "POST", ["keys", "signatures", "upload"], {user_id: {device_id: signed}})
    if status != 200:
        raise _refused("device signature upload", status, answer)
    failures = answer.get("failures") or {}
    if failures:
        codes = sorted({str(f.get("errcode")) for per_user in failures.values() for f in per_user.values()
                        if isinstance(f, dict)})
        raise HomeserverError(f"device signature refused: {', '.join(codes)}", status, codes[0] if codes else None)


# --- checking someone's chain ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceTrust:
    master_public: str | None   # the user's published master key, whether or not the chain holds
    signed_by_owner: bool       # master -> self-signing -> device all verified


def _single_key(key_obj: Any, user_id: str, usage: str) -> str | None:
    """The public key of a cross-signing key object, if it is well-formed and meant for `usage`."""
    if not isinstance(key_obj, dict) or key_obj.get("user_id") != user_id or usage not in (key_obj.get("usage") or []):
        return None
    keys = key_obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    [(key_id, public)] = keys.items()
    if not isinstance(public, str) or key_id != f"ed25519:{public}":
        return None
    return public


def master_public_of(query_answer: dict, user_id: str) -> str | None:
    return _single_key((query_answer.get("master_keys") or {}).get(user_id), user_id, "master")


def self_signing_public_of(query_answer: dict, user_id: str) -> str | None:
    """The user's self-signing key, only if the master key signed it."""
    master = master_public_of(query_answer, user_id)
    ssk_obj = (query_answer.get("self_signing_keys") or {}).get(user_id)
    ssk = _single_key(ssk_obj, user_id, "self_signing")
    if master is None or ssk is None or not verify_signature(ssk_obj, user_id, f"ed25519:{master}", master):
        return None
    return ssk


def device_trust(query_answer: dict, user_id: str, device_id: str) -> DeviceTrust:
    """Whether a device is cross-signed by its own account, from a raw /keys/query answer."""
    master = master_public_of(query_answer, user_id)
    ssk = self_signing_public_of(query_answer, user_id)
    device = ((query_answer.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    signed = (ssk is not None and isinstance(device, dict) and device.get("user_id") == user_id
              and device.get("device_id") == device_id
              and verify_signature(device, user_id, f"ed25519:{ssk}", ssk))
    return DeviceTrust(master, bool(signed))


# --- the bot's own identity ----------------------------------------------------------------------------------

class IdentityStore(Protocol):
    """Where the private keys live (sealed). `save(keys)` keeps keys already stored unless `replace`:
    two replicas starting together for the first time must end with one identity."""

    async def load(self) -> CrossSigningKeys | None: ...

    async def save(self, keys: CrossSigningKeys, *, replace: bool = False) -> None: ...


class SecretStore(Protocol):
    """Keeps one secret text (sealing it is the store's business), e.g. storage.matrix.MatrixIdentitySecrets."""

    async def load(self) -> str | None: ...

    async def save(self, secret_json: str, *, replace: bool = False) -> None: ...


class SecretIdentityStore:
    """An IdentityStore over a SecretStore: the keys as `CrossSigningKeys.to_secret_json()`."""

    def __init__(self, secrets: SecretStore) -> None:
        self._secrets = secrets

    async def load(self) -> CrossSigningKeys | None:
        text = await self._secrets.load()
        return CrossSigningKeys.from_secret_json(text) if text is not None else None

    async def save(self, keys: CrossSigningKeys, *, replace: bool = False) -> None:
        await self._secrets.save(keys.to_secret_json(), replace=replace)


class Outcome(StrEnum):
    CREATED = "created"     # uploaded now (new, or stored earlier but not yet on the server)
    PRESENT = "present"     # the server has our identity already
    MISMATCH = "mismatch"   # the server has another identity: nothing changed; `meldbot matrix-reset-identity`


@dataclass(frozen=True)
class IdentityStatus:
    outcome: Outcome
    master_public: str | None        # the identity this process holds (None when it holds none)
    server_master: str | None        # the master key the homeserver publishes now
    device_signed: bool              # this device is signed by the published self-signing key

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.MISMATCH and self.device_signed


async def _published(client, keys: CrossSigningKeys) -> bool:
    """Whether the homeserver publishes exactly these keys now (False when it cannot be asked)."""
    try:
        answer = await query_keys(client, [client.user_id])
    except CrossSigningError:
        return False
    return (master_public_of(answer, client.user_id) == keys.master_public
            and self_signing_public_of(answer, client.user_id) == keys.self_signing_public)


async def _upload(client, keys: CrossSigningKeys, password: str | None) -> None:
    try:
        await upload_identity(client, keys, password)
    except CrossSigningError:
        # A replica that started at the same moment may have uploaded these same keys first (Synapse
        # then answers 500 to the second of two simultaneous uploads).
        if not await _published(client, keys):
            raise


async def _renew_subkeys(client, store: IdentityStore, stored: CrossSigningKeys,
                         password: str | None) -> CrossSigningKeys:
    """Our master key with another (or no valid) self-signing key on the server: new sub-keys under our
    master. The identity people see (the master key) stays. Ours cannot simply be put back: Synapse
    refuses a key it has stored before (a 500)."""
    fresh = CrossSigningKeys(stored.master, Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())
    await store.save(fresh, replace=True)
    try:
        await upload_identity(client, fresh, password, with_master=False)
    except Exception:
        if not await _published(client, fresh):
            await store.save(stored, replace=True)
            raise
    log.warning("matrix cross-signing sub-keys renewed under the same master key")
    return fresh


async def _sign_own_device(client, keys: CrossSigningKeys, answer: dict) -> bool:
    """Sign this device unless it is signed already; False when its keys are not on the server yet."""
    user_id, device_id = client.user_id, client.device_id
    if device_trust(answer, user_id, device_id).signed_by_owner:
        return True
    device = ((answer.get("device_keys") or {}).get(user_id) or {}).get(device_id)
    if not isinstance(device, dict):
        log.warning("matrix device keys not uploaded yet; the device is cross-signed at the next check")
        return False
    await sign_device(client, keys, device)
    return True


async def ensure_identity(client, store: IdentityStore, password: str | None = None) -> IdentityStatus:
    """Make sure the account has our identity and this device is signed by it; never replace one.

    Call it after nio's first keys upload (so the device's keys are on the server), at every start.
    """
    user_id = client.user_id
    if not client.device_id:
        raise CrossSigningError("the client has no device")
    answer = await query_keys(client, [user_id])
    server_master = master_public_of(answer, user_id)
    stored = await store.load()
    if server_master is None:
        if stored is None:
            await store.save(CrossSigningKeys.generate())   # first, so a crash cannot lose an uploaded identity
            stored = await store.load()                    # the one stored first, if a replica raced us
            if stored is None:
                raise CrossSigningError("the identity store lost the keys it was given")
        await _upload(client, stored, password)
        log.info("matrix cross-signing identity uploaded", extra={"master_key": stored.master_public})
        answer = await query_keys(client, [user_id])
        outcome = Outcome.CREATED
    elif stored is not None and stored.master_public == server_master:
        if self_signing_public_of(answer, user_id) != stored.self_signing_public:
            stored = await _renew_subkeys(client, store, stored, password)
            answer = await query_keys(client, [user_id])
        outcome = Outcome.PRESENT
    else:
        log.error("matrix cross-signing identity on the homeserver is not ours; run meldbot matrix-reset-identity",
                  extra={"server_master_key": server_master})
        return IdentityStatus(Outcome.MISMATCH, stored.master_public if stored else None, server_master,
                              device_trust(answer, user_id, client.device_id).signed_by_owner)
    signed = await _sign_own_device(client, stored, answer)
    return IdentityStatus(outcome, stored.master_public, stored.master_public, signed)


async def reset_identity(client, store: IdentityStore, password: str | None) -> IdentityStatus:
    """A new identity, on purpose: new keys, stored, uploaded (the homeserver asks for the password), this
    device signed. On failure the previous keys are put back in the store."""
    previous = await store.load()
    keys = CrossSigningKeys.generate()
    await store.save(keys, replace=True)
    try:
        await upload_identity(client, keys, password)
    except Exception:
        # The answer may have been lost on the way back: keep the new keys if the server has them.
        if not await _published(client, keys):
            try:
                if previous is not None:
                    await store.save(previous, replace=True)
            except Exception:  # the upload's error is the one to report
                log.exception("matrix cross-signing: previous keys not restored in the store")
            raise
    log.warning("matrix cross-signing identity replaced", extra={"master_key": keys.master_public})
    # The identity is replaced from here on: a device left unsigned is signed by ensure_identity at the
    # bot's next start, so a failure now is reported in the status, not raised.
    signed = False
    try:
        answer = await query_keys(client, [client.user_id])
        signed = bool(client.device_id) and await _sign_own_device(client, keys, answer)
    except CrossSigningError as exc:
        log.warning("matrix device not signed by the new identity", extra={"error": str(exc)})
    return IdentityStatus(Outcome.CREATED, keys.master_public, keys.master_public, signed)
