"""Sealing of personal data at rest and keyed lookups; the core never sees what is stored."""

from __future__ import annotations

import hashlib
from typing import Protocol


class Sealer(Protocol):
    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str: ...

    def lookup(self, kind: str, value: str) -> str:
        """A stable key for equality lookups that does not reveal `value`."""
        ...


class PlainSealer:
    """Local mode without a data key (`storage.allow_plaintext = true`): stored as is."""

    def seal(self, plaintext: str) -> str:
        return plaintext

    def open(self, sealed: str) -> str:
        return sealed

    def lookup(self, kind: str, value: str) -> str:
        return hashlib.sha256(f"{kind}\x00{value}".encode()).hexdigest()
