"""What every part of the Matrix adapter shares: errors, constants, transaction ids, small files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path

import aiohttp

from meldbot.core.messaging import DeliveryError

PLATFORM = "matrix"
log = logging.getLogger("meldbot.matrix")

ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
# Errors about the message itself, which no retry mends. A bad token or a lost room is the bot's
# problem, not the message's: those are retried (after a fix, or in a new direct chat).
PERMANENT = {"M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE", "M_INVALID_PARAM"}
ROOM_GONE = {"M_FORBIDDEN", "M_NOT_FOUND"}
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError)


class MatrixLoginError(Exception):
    """The homeserver refused the configured credentials; retrying will not help."""


class MatrixStoreInUse(Exception):
    """Another process uses this store folder (this device) already: two processes need two instance names."""

    def __init__(self, folder: str) -> None:
        super().__init__(folder)
        self.folder = folder


class MatrixStoreLocked(Exception):
    """The store folder's keys open with no key this process has (`reason`: "no_key" without MELDBOT_DATA_KEY,
    "wrong_key" with it). Nothing was changed; no new device is made in its place."""

    def __init__(self, folder: str, reason: str) -> None:
        super().__init__(f"{folder}: {reason}")
        self.folder = folder
        self.reason = reason


class SoleHolder:
    """Without a leader election (one process, SQLite, the adapter alone): this process holds the stream."""

    holding = True

    def __init__(self) -> None:
        self._never = None

    def watch(self):
        import asyncio

        if self._never is None:
            self._never = asyncio.Event()
        return self._never


class RoomGone(DeliveryError):
    """The bot cannot write in that room any more (left, kicked, room gone)."""


class RateLimited(Exception):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(f"rate limited for {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


def transaction_id(key: str, part: int = 0) -> str:
    """Deterministic per message: a re-send after a crash reuses it and the homeserver shows it once."""
    return "mb" + hashlib.sha256(f"{key}\x00{part}".encode()).hexdigest()[:40]


def domain_of(user_id: str) -> str:
    return user_id.partition(":")[2].casefold()


def backoff(failures: int, cap: float) -> float:
    return min(0.5 * 2 ** min(failures, 10), cap)


def delivery_error(response) -> DeliveryError:
    code = getattr(response, "status_code", None) or "unknown"
    if code in ROOM_GONE:
        return RoomGone(f"homeserver said {code}")
    return DeliveryError(f"homeserver said {code}", permanent=code in PERMANENT)


class JsonFile:
    """A small file in the store folder, replaced atomically; readable by the bot's user only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, default=None):
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default
        except ValueError:  # cut short or damaged: as if absent, and said so
            log.warning("matrix store file unreadable; ignored", extra={"file": self.path.name})
            return default

    def save(self, data) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)


class AddressBook:
    """Who is who for the adapter, from the configuration: the AFs and the servers staff come from."""

    def __init__(self, config) -> None:
        self._config = config
        # Exactly as configured: Matrix ids are case-sensitive, so `@Anna:...` is not the AF `@anna:...`.
        self.af_ids = frozenset(af.matrix for m in config.meldpunten for af in m.af if af.matrix)
        # Server names are DNS names, which are not case-sensitive.
        self._domains = {d.casefold() for m in config.meldpunten for d in m.matrix_domains}

    def is_af(self, user_id: str) -> bool:
        return user_id in self.af_ids

    def af_name(self, user_id: str) -> str:
        """The AF's short name from the configuration, for the administrator's log."""
        return ",".join(sorted({af.name for _, af in self._config.af_for(PLATFORM, user_id)}))

    def may_invite(self, user_id: str) -> bool:
        domain = domain_of(user_id)
        if not domain:
            return False
        return self.is_af(user_id) or domain in self._domains


class _KeyQueryUsers(set):
    """nio's set of users whose device keys must be asked for (OlmMachine.users_for_key_query), remembering who
    was added while a key query was out: see `keys_query`."""

    def __init__(self, users=()) -> None:
        super().__init__(users)
        self.flights: list[set[str]] = []   # per query in flight: who was added meanwhile

    def add(self, user_id: str) -> None:
        super().add(user_id)
        for added in self.flights:
            added.add(user_id)

    def update(self, *others) -> None:
        for other in others:
            for user_id in other:
                self.add(user_id)


async def keys_query(client):
    """`client.keys_query()`, without losing a change that arrives while it is out.

    nio takes a user off its list when the answer has their keys, also when the sync marked their devices as
    changed again while the query was on its way: the answer is older than that change (a device signed a
    moment ago, Element's cross-signing set-up), and nio would not ask again until the next change. An AF's
    freshly verified device would then read nothing until a later look. Users added meanwhile (whose answer
    may predate the change) stay on the list, so the next key query (after the next sync, or before the next
    send) asks again. nio's own key query inside `room_send` (a room whose members are not synced) does not
    come through here; meldbot syncs a room's members before it sends (trust.Devices.refresh)."""
    olm = client.olm
    if olm is None:
        return await client.keys_query()    # nio's own error (LocalProtocolError: no store loaded)
    users = olm.users_for_key_query
    if not isinstance(users, _KeyQueryUsers):
        users = olm.users_for_key_query = _KeyQueryUsers(users)
    added: set[str] = set()
    users.flights.append(added)
    try:
        return await client.keys_query()
    finally:
        # By identity: another query's set may be equal to this one (both empty).
        users.flights = [flight for flight in users.flights if flight is not added]
        set.update(users, added)
