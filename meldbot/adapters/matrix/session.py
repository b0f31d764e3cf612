"""Login and the store folder: the store folder is the bot's device (keys, device id, access token).

matrix-nio pickles the device's secrets in its SQLite store (the Olm account, the Olm sessions and the Megolm
room keys: who has them reads the bot's chats). meldbot has them pickled with a key derived from
MELDBOT_DATA_KEY (HKDF-SHA256, info "meldbot matrix store v1"), never with nio's public default "DEFAULT_KEY"
and never with the data key itself. A store pickled with nio's default (made before this protection, or
without a data key) or with a previous data key (MELDBOT_DATA_KEY_PREVIOUS, during a key rotation) is
re-pickled under the current key at start, in one transaction. Without a data key (local use only) nio's
default remains: `meldbot doctor` says the store is not protected.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse
from nio.crypto import InboundGroupSession, OlmAccount
from nio.crypto import Session as OlmSession

from meldbot.adapters.matrix.common import JsonFile, MatrixLoginError, MatrixStoreLocked, log

STORE_KEY_INFO = b"meldbot matrix store v1"
NIO_DEFAULT_KEY = "DEFAULT_KEY"   # matrix-nio's own default pickle key: public, so no protection at all


def derive_store_key(data_key: str) -> str:
    """The store's pickle key from one data key (base64 of 32 bytes, as `meldbot new-key` makes them)."""
    raw = base64.urlsafe_b64decode(data_key.encode("ascii"))
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=STORE_KEY_INFO).derive(raw)
    return base64.urlsafe_b64encode(derived).decode("ascii")


@dataclass(frozen=True)
class StoreKeys:
    """The key the store is pickled with from now on, and the keys it may still be pickled with."""

    current: str = field(repr=False)
    older: tuple[str, ...] = field(default=(), repr=False)   # previous data keys, then nio's default
    protected: bool = False                                  # False: no data key, nio's default is current

    @classmethod
    def for_config(cls, config) -> "StoreKeys":
        if config.data_key is None:
            return cls(NIO_DEFAULT_KEY)
        current = derive_store_key(config.data_key.get_secret_value())
        previous = [derive_store_key(key.get_secret_value()) for key in config.data_key_previous]
        older = tuple(dict.fromkeys(k for k in (*previous, NIO_DEFAULT_KEY) if k != current))
        return cls(current, older, protected=True)


def store_file(folder: Path, user_id: str, device_id: str) -> Path:
    """Where nio keeps a device's store (its default name, as `new_client` leaves it)."""
    return folder / f"{user_id}_{device_id}.db"


def _opens(unpickle: Callable[[str], object], key: str) -> bool:
    try:
        unpickle(key)
    except Exception:   # vodozemac: a MAC mismatch (ValueError); a damaged pickle may fail otherwise
        return False
    return True


def _repickle(unpickle: Callable[[str], Any], keys: tuple[str, ...], new: str) -> bytes:
    for key in keys:
        try:
            opened = unpickle(key)
        except Exception:
            continue
        return opened.pickle(new)
    raise LookupError("no key opens this pickle")


def unlock_store(folder: Path, user_id: str, device_id: str, keys: StoreKeys) -> bool:
    """Makes the device's store readable with `keys.current` before nio opens it: True when it was re-pickled
    (from nio's default or a previous data key). Raises MatrixStoreLocked, changing nothing, when no key opens
    it. Everything is re-pickled in one transaction, so an interrupted start leaves the store as it was."""
    path = store_file(folder, user_id, device_id)
    if not path.exists():
        return False
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        row = connection.execute("SELECT id, account, shared FROM accounts WHERE user_id = ? AND device_id = ?",
                                 (user_id, device_id)).fetchone()
        if row is None:
            return False   # no account yet: nio makes one, pickled with the current key
        account_id, account, shared = row[0], bytes(row[1]), bool(row[2])

        def open_account(key: str) -> OlmAccount:
            return OlmAccount.from_pickle(account, key, shared)

        if _opens(open_account, keys.current):
            return False
        old = next((key for key in keys.older if _opens(open_account, key)), None)
        if old is None:
            raise MatrixStoreLocked(str(folder), "wrong_key" if keys.protected else "no_key")
        tried = (old, *(k for k in keys.older if k != old), keys.current)
        connection.execute("PRAGMA secure_delete = 1")   # the old pickles are overwritten, not left in free pages
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute("UPDATE accounts SET account = ? WHERE id = ?",
                               (_repickle(open_account, tried, keys.current), account_id))
            sessions = connection.execute("SELECT session_id, session FROM olmsessions WHERE account_id = ?",
                                          (account_id,)).fetchall()
            for session_id, blob in sessions:
                pickled = _repickle(lambda key, blob=bytes(blob): OlmSession.from_pickle(blob, None, key),
                                    tried, keys.current)
                connection.execute("UPDATE olmsessions SET session = ? WHERE session_id = ?", (pickled, session_id))
            groups = connection.execute("SELECT session_id, session, fp_key, sender_key, room_id "
                                        "FROM megolminboundsessions WHERE account_id = ?", (account_id,)).fetchall()
            for session_id, blob, fp_key, sender_key, room_id in groups:
                pickled = _repickle(lambda key, blob=bytes(blob), fp=fp_key, sender=sender_key, room=room_id:
                                    InboundGroupSession.from_pickle(blob, fp, sender, room, key),
                                    tried, keys.current)
                connection.execute("UPDATE megolminboundsessions SET session = ? WHERE session_id = ?",
                                   (pickled, session_id))
        except LookupError:
            connection.execute("ROLLBACK")
            raise MatrixStoreLocked(str(folder), "wrong_key" if keys.protected else "no_key") from None
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        connection.close()
    log.info("matrix store re-encrypted with the data key")
    return True


def new_client(settings, folder: Path, request_timeout: float, pickle_key: str = NIO_DEFAULT_KEY) -> AsyncClient:
    return AsyncClient(
        settings.homeserver, settings.user_id, store_path=str(folder),
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=0,
                                 request_timeout=request_timeout, pickle_key=pickle_key),
    )


class Session:
    """Restores the saved device or logs in once; `credentials.json` keeps the device for next time."""

    def __init__(self, settings, folder: Path, keys: StoreKeys | None = None) -> None:
        self._settings = settings
        self._folder = folder
        self._keys = keys or StoreKeys(NIO_DEFAULT_KEY)
        self.credentials = JsonFile(folder / "credentials.json")

    async def login(self, client: AsyncClient) -> bool:
        """Returns True when a new device was made (a first start, or a fresh store folder)."""
        settings = self._settings
        saved = self.credentials.load()
        if saved and saved.get("user_id") == settings.user_id and saved.get("homeserver") == client.homeserver:
            # Before nio reads the store: under the current key, or a clear refusal (never a new device).
            unlock_store(self._folder, saved["user_id"], saved["device_id"], self._keys)
            client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            log.info("matrix device restored from the store")
            return False
        token = settings.access_token.get_secret_value()
        if token:
            client.access_token = token
            who = await client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise MatrixLoginError(f"access token refused: {getattr(who, 'status_code', '?')}")
            if not who.device_id:
                raise MatrixLoginError("the access token belongs to no device")
            unlock_store(self._folder, who.user_id, who.device_id, self._keys)   # its store may be here already
            client.restore_login(who.user_id, who.device_id, token)
        else:
            response = await client.login(settings.password.get_secret_value(), device_name=settings.device_name)
            if not isinstance(response, LoginResponse):
                raise MatrixLoginError(f"login refused: {getattr(response, 'status_code', '?')}")
        # From now on the store folder is the device: a new login would be a new device that cannot read
        # anything sent before.
        self.credentials.save({"homeserver": client.homeserver, "user_id": client.user_id,
                               "device_id": client.device_id, "access_token": client.access_token})
        log.info("matrix device created")
        return True
