"""Sealing of personal data at rest (AES-256-GCM) and keyed lookups (HMAC); the core sees neither."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "v1."


class UnknownKey(Exception):
    """A value was sealed with a key this process does not have."""


class Sealer(Protocol):
    key_id: str

    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str: ...

    def lookup(self, kind: str, value: str) -> str:
        """A stable key for equality lookups that does not reveal `value` (with the current key)."""
        ...

    def lookups(self, kind: str, value: str) -> list[str]:
        """The lookup under every key this process knows: current first, then keys being rotated away."""
        ...

    def is_current(self, sealed: str) -> bool: ...


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


LOOKUPS_KEPT = 4096


class DataKey:
    """One data key, split by HKDF into an encryption key and a lookup (HMAC) key."""

    def __init__(self, text: str) -> None:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        if len(raw) != 32:
            raise ValueError("a data key is 32 bytes in base64")
        self._aead = AESGCM(self._derive(raw, b"meldbot/seal/v1"))
        self._mac = self._derive(raw, b"meldbot/lookup/v1")
        self.id = hmac.new(self._mac, b"key-id", hashlib.sha256).hexdigest()[:8]
        # A turn asks for the same few lookups several times (its conversation when it locks, reads and saves
        # it; the person; the event): the latest ones are kept, per key. They are ids' hashes, no content.
        self.lookup = functools.lru_cache(maxsize=LOOKUPS_KEPT)(self._lookup)

    @staticmethod
    def _derive(raw: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), self.id.encode())
        return f"{PREFIX}{self.id}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, body: str) -> str:
        blob = base64.urlsafe_b64decode(body.encode("ascii"))
        return self._aead.decrypt(blob[:12], blob[12:], self.id.encode()).decode("utf-8")

    def _lookup(self, kind: str, value: str) -> str:
        return hmac.new(self._mac, f"{kind}\x00{value}".encode("utf-8"), hashlib.sha256).hexdigest()


class KeyringSealer:
    """Writes with the current key; reads with the current key and any previous ones (during rotation)."""

    def __init__(self, current: str, previous: list[str] | tuple[str, ...] = ()) -> None:
        self.current = DataKey(current)
        self.keys = {self.current.id: self.current}
        for text in previous:
            key = DataKey(text)
            self.keys.setdefault(key.id, key)
        self.key_id = self.current.id

    def seal(self, plaintext: str) -> str:
        return self.current.seal(plaintext)

    def open(self, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise UnknownKey("value is not sealed")
        key_id, _, body = sealed[len(PREFIX):].partition(".")
        key = self.keys.get(key_id)
        if key is None:
            raise UnknownKey(f"sealed with key {key_id}, which is not configured")
        return key.open(body)

    def lookup(self, kind: str, value: str) -> str:
        return self.current.lookup(kind, value)

    def lookups(self, kind: str, value: str) -> list[str]:
        return [k.lookup(kind, value) for k in self.keys.values()]

    def is_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{PREFIX}{self.key_id}.")


class PlainSealer:
    """Local mode without a data key (`storage.allow_plaintext = true`): stored as is."""

    key_id = "plain"

    def seal(self, plaintext: str) -> str:
        return plaintext

    def open(self, sealed: str) -> str:
        return sealed

    def lookup(self, kind: str, value: str) -> str:
        return hashlib.sha256(f"{kind}\x00{value}".encode("utf-8")).hexdigest()

    def lookups(self, kind: str, value: str) -> list[str]:
        return [self.lookup(kind, value)]

    def is_current(self, sealed: str) -> bool:
        return True


def sealer_for(config) -> KeyringSealer | PlainSealer:
    if config.data_key is None:
        return PlainSealer()
    return KeyringSealer(config.data_key.get_secret_value(), [k.get_secret_value() for k in config.data_key_previous])
