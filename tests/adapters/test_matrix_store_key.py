"""The Matrix store folder under the data key (meldbot/adapters/matrix/session.py).

matrix-nio pickles the bot's Olm account, Olm sessions and Megolm room keys in a SQLite file in the store
folder. With nio's default pickle key ("DEFAULT_KEY") anyone with a copy of the folder reads the bot's chats.
These tests open that file themselves, as someone with a backup would, and check which key opens it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from nio.crypto import InboundGroupSession, OlmAccount, OutboundGroupSession
from nio.crypto import Session as OlmSession
from nio.store import DefaultStore

from meldbot.adapters.matrix import session as store_session
from meldbot.adapters.matrix.adapter import MatrixAdapter
from meldbot.adapters.matrix.common import MatrixStoreLocked
from meldbot.adapters.matrix.session import (NIO_DEFAULT_KEY, StoreKeys, derive_store_key, store_file,
                                             unlock_store)
from meldbot.storage.sealing import new_key
from tests.support import make_config
from tests.support.cli import env_for, meldbot

BOT = "@meldbot:bergeijk.nl"
DEVICE = "MELDBOTDEV"
ROOM = "!piet-dm:bergeijk.nl"
UNREACHABLE = "http://127.0.0.1:9"


def config_with(tmp_path: Path, key: str | None, previous: tuple[str, ...] = (), **env: str):
    extra = {"MELDBOT_MATRIX__ENABLED": "true", "MELDBOT_MATRIX__HOMESERVER": UNREACHABLE,
             "MELDBOT_MATRIX__USER_ID": BOT, "MELDBOT_MATRIX__PASSWORD": "x",
             "MELDBOT_MATRIX__STORE_PATH": str(tmp_path / "matrix"), **env}
    if key is not None:
        extra["MELDBOT_DATA_KEY"] = key
    if previous:
        extra["MELDBOT_DATA_KEY_PREVIOUS"] = ",".join(previous)
    return make_config(f"sqlite+aiosqlite:///{tmp_path}/meldbot.db", **extra)


def make_store(folder: Path, pickle_key: str) -> dict:
    """A device store as nio writes it: an account, an Olm session with another device, and a room key."""
    folder.mkdir(parents=True, exist_ok=True)
    store = DefaultStore(BOT, DEVICE, str(folder), pickle_key)
    account = OlmAccount()
    store.save_account(account)
    other = OlmAccount()
    other.generate_one_time_keys(1)
    one_time_key = next(iter(other.one_time_keys["curve25519"].values()))
    olm = OlmSession(account.create_outbound_session(other.identity_keys["curve25519"], one_time_key))
    store.save_session(other.identity_keys["curve25519"], olm)
    outbound = OutboundGroupSession()
    inbound = InboundGroupSession(outbound.session_key, account.identity_keys["ed25519"],
                                  account.identity_keys["curve25519"], ROOM)
    store.save_inbound_group_session(inbound)
    store.database.close()
    return {"identity": account.identity_keys, "olm": olm.id, "megolm": inbound.id}


def pickles(folder: Path) -> dict[str, list[bytes]]:
    """What a copy of the folder holds: the raw pickles in nio's SQLite file."""
    with sqlite3.connect(store_file(folder, BOT, DEVICE)) as db:
        return {table: [bytes(row[0]) for row in db.execute(f"SELECT {column} FROM {table}")]
                for table, column in (("accounts", "account"), ("olmsessions", "session"),
                                      ("megolminboundsessions", "session"))}


def opens_with(folder: Path, key: str) -> bool:
    """Every pickle in the store opens with `key` (a partly re-pickled store does not count)."""
    found = pickles(folder)
    try:
        [OlmAccount.from_pickle(p, key) for p in found["accounts"]]
        [OlmSession.from_pickle(p, None, key) for p in found["olmsessions"]]
        [InboundGroupSession.from_pickle(p, "", "", ROOM, key) for p in found["megolminboundsessions"]]
    except ValueError:
        return False
    return bool(found["accounts"])


def load_with_nio(folder: Path, key: str) -> dict:
    """The store as nio itself loads it at start, with `key` as pickle key."""
    store = DefaultStore(BOT, DEVICE, str(folder), key)
    try:
        account = store.load_account()
        sessions = store.load_sessions()
        groups = store.load_inbound_group_sessions()
        return {"identity": account.identity_keys,
                "olm": [s.id for ss in sessions.values() for s in ss],
                "megolm": [s.id for s in groups]}
    finally:
        store.database.close()


# --- the key ------------------------------------------------------------------------------------------

def test_the_store_key_is_derived_from_the_data_key_and_is_neither_it_nor_nios_default():
    key = new_key()
    derived = derive_store_key(key)
    assert derived == derive_store_key(key) and derived not in (key, NIO_DEFAULT_KEY)
    assert derive_store_key(new_key()) != derived
    keys = StoreKeys.for_config(config_with(Path("/nonexistent"), key, previous=(new_key(),)))
    assert keys.current == derived and keys.protected
    assert len(keys.older) == 2 and keys.older[-1] == NIO_DEFAULT_KEY   # previous data key, then nio's default
    assert derived not in repr(keys) and key not in repr(keys)


async def test_without_a_data_key_nios_default_stays_and_doctor_says_the_store_is_unprotected(tmp_path):
    from meldbot.core.i18n import texts
    from meldbot.run.doctor import _platforms

    keyless = config_with(tmp_path, None)
    assert StoreKeys.for_config(keyless) == StoreKeys(NIO_DEFAULT_KEY, (), protected=False)
    t = texts("nl")
    warned = [f for f in await _platforms(keyless, t) if f.text == t("doctor.matrix_store_unprotected")]
    assert len(warned) == 1 and warned[0].warning and not warned[0].ok
    assert "niet beschermd" in warned[0].text
    assert not [f for f in await _platforms(config_with(tmp_path, new_key()), t)
                if f.text == t("doctor.matrix_store_unprotected")]


# --- what the adapter writes ---------------------------------------------------------------------------

def save_credentials(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "credentials.json").write_text(json.dumps({"homeserver": UNREACHABLE, "user_id": BOT,
                                                         "device_id": DEVICE, "access_token": "t"}))


async def start_and_stop(config) -> MatrixAdapter:
    adapter = MatrixAdapter(config, retry_cap=0.1)
    await adapter.start()   # restores the saved device: nio opens (or makes) its store, no homeserver needed
    try:
        assert adapter.client.olm is not None
        return adapter
    finally:
        await adapter.stop(grace=1)


async def test_the_store_the_adapter_writes_does_not_open_with_nios_default_key(tmp_path):
    key = new_key()
    folder = tmp_path / "matrix"
    save_credentials(folder)
    adapter = await start_and_stop(config_with(tmp_path, key))   # nio makes the device's account here
    made = adapter.client.olm.account.identity_keys
    assert not opens_with(folder, NIO_DEFAULT_KEY)
    assert opens_with(folder, derive_store_key(key))
    assert OlmAccount.from_pickle(pickles(folder)["accounts"][0], derive_store_key(key)).identity_keys == made
    with pytest.raises(ValueError):
        OlmAccount.from_pickle(pickles(folder)["accounts"][0], NIO_DEFAULT_KEY)
    with pytest.raises(ValueError):   # and never the raw data key itself
        OlmAccount.from_pickle(pickles(folder)["accounts"][0], key)


async def test_an_old_store_under_nios_default_is_re_pickled_at_start_and_keeps_its_device(tmp_path, caplog):
    caplog.set_level("INFO", logger="meldbot.matrix")
    key = new_key()
    folder = tmp_path / "matrix"
    made = make_store(folder, NIO_DEFAULT_KEY)
    save_credentials(folder)
    adapter = await start_and_stop(config_with(tmp_path, key))
    assert adapter.device_id == DEVICE and adapter.client.olm.account.identity_keys == made["identity"]
    assert not opens_with(folder, NIO_DEFAULT_KEY) and opens_with(folder, derive_store_key(key))
    loaded = load_with_nio(folder, derive_store_key(key))
    assert loaded == {"identity": made["identity"], "olm": [made["olm"]], "megolm": [made["megolm"]]}
    said = [r for r in caplog.records if r.getMessage() == "matrix store re-encrypted with the data key"]
    assert len(said) == 1 and DEVICE not in caplog.text and BOT not in caplog.text
    # The next start finds it done: nothing re-pickled again.
    caplog.clear()
    await start_and_stop(config_with(tmp_path, key))
    assert not [r for r in caplog.records if "re-encrypted" in r.getMessage()]


def test_after_a_key_rotation_the_store_moves_to_the_new_key_while_the_old_one_is_previous(tmp_path):
    old, new = new_key(), new_key()
    folder = tmp_path / "matrix"
    made = make_store(folder, derive_store_key(old))
    # Step 2 of a rotation: the new key current, the old one in MELDBOT_DATA_KEY_PREVIOUS, then a restart.
    assert unlock_store(folder, BOT, DEVICE, StoreKeys.for_config(config_with(tmp_path, new, previous=(old,))))
    assert opens_with(folder, derive_store_key(new)) and not opens_with(folder, derive_store_key(old))
    # Step 4: MELDBOT_DATA_KEY_PREVIOUS removed; the store opens with the new key alone.
    assert not unlock_store(folder, BOT, DEVICE, StoreKeys.for_config(config_with(tmp_path, new)))
    assert load_with_nio(folder, derive_store_key(new))["identity"] == made["identity"]


def test_a_wrong_data_key_is_refused_and_changes_nothing(tmp_path):
    folder = tmp_path / "matrix"
    right = new_key()
    make_store(folder, derive_store_key(right))
    before = pickles(folder)
    with pytest.raises(MatrixStoreLocked) as refused:
        unlock_store(folder, BOT, DEVICE, StoreKeys.for_config(config_with(tmp_path, new_key())))
    assert refused.value.reason == "wrong_key" and refused.value.folder == str(folder)
    with pytest.raises(MatrixStoreLocked) as keyless:   # a keyed store, and now no key at all
        unlock_store(folder, BOT, DEVICE, StoreKeys.for_config(config_with(tmp_path, None)))
    assert keyless.value.reason == "no_key"
    assert pickles(folder) == before


def test_a_store_with_one_pickle_no_key_opens_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "matrix"
    make_store(folder, NIO_DEFAULT_KEY)
    with sqlite3.connect(store_file(folder, BOT, DEVICE)) as db:   # one room key under a stranger's key
        [blob] = db.execute("SELECT session FROM megolminboundsessions").fetchone()
        session = InboundGroupSession.from_pickle(bytes(blob), "", "", ROOM, NIO_DEFAULT_KEY)
        db.execute("UPDATE megolminboundsessions SET session = ?", (session.pickle("someone else"),))
    before = pickles(folder)
    with pytest.raises(MatrixStoreLocked):
        unlock_store(folder, BOT, DEVICE, StoreKeys.for_config(config_with(tmp_path, new_key())))
    assert pickles(folder) == before   # one transaction: the account was not re-pickled either


def test_a_keyless_installation_keeps_nios_default(tmp_path):
    folder = tmp_path / "matrix"
    make_store(folder, NIO_DEFAULT_KEY)
    before = pickles(folder)
    assert not unlock_store(folder, BOT, DEVICE, StoreKeys.for_config(config_with(tmp_path, None)))
    assert pickles(folder) == before


async def test_the_adapter_refuses_a_store_it_cannot_open_and_makes_no_new_device(tmp_path):
    folder = tmp_path / "matrix"
    make_store(folder, derive_store_key(new_key()))
    save_credentials(folder)
    before, credentials = pickles(folder), (folder / "credentials.json").read_text()
    adapter = MatrixAdapter(config_with(tmp_path, new_key()))
    with pytest.raises(MatrixStoreLocked):
        await adapter.start()
    assert list(folder.glob("*.db")) == [store_file(folder, BOT, DEVICE)]   # no other device's store beside it
    assert pickles(folder) == before and (folder / "credentials.json").read_text() == credentials
    adapter._lock_folder()   # the folder lock was given back
    adapter._unlock_folder()


@pytest.mark.slow
def test_meldbot_run_with_a_wrong_data_key_for_the_store_says_so_in_one_dutch_line(tmp_path):
    store = tmp_path / "matrix"
    key = new_key()
    make_store(store, derive_store_key(new_key()))   # e.g. a folder from another installation
    save_credentials(store)
    env = env_for(tmp_path, MELDBOT_MATRIX__ENABLED="true", MELDBOT_MATRIX__HOMESERVER=UNREACHABLE,
                  MELDBOT_MATRIX__USER_ID=BOT, MELDBOT_MATRIX__PASSWORD="x", MELDBOT_MATRIX__STORE_PATH=str(store),
                  MELDBOT_HTTP__LISTEN="127.0.0.1:0", MELDBOT_DATA_KEY=key)
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    result = meldbot(tmp_path, "run", env=env, timeout=90)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"De sleutels van de bot in de Matrix-map {store} passen niet bij MELDBOT_DATA_KEY" in result.stderr
    assert "MELDBOT_DATA_KEY_PREVIOUS" in result.stderr
    assert [p for p in store.glob("*.db")] == [store_file(store, BOT, DEVICE)]


def test_the_derivation_is_what_the_store_uses(monkeypatch, tmp_path):
    """The integration test forces the old behaviour through `derive_store_key`: it must be the one path."""
    monkeypatch.setattr(store_session, "derive_store_key", lambda key: NIO_DEFAULT_KEY)
    assert StoreKeys.for_config(config_with(tmp_path, new_key())).current == NIO_DEFAULT_KEY


async def test_sends_to_rooms_with_an_af_and_looks_at_an_af_s_devices_share_one_lock(tmp_path):
    # tests/adapters/test_matrix_units.py shows why (a look between a send's check and its key share left a
    # message readable by nobody); here, that the adapter wires it so.
    folder = tmp_path / "matrix"
    save_credentials(folder)
    adapter = await start_and_stop(config_with(tmp_path, new_key()))
    assert adapter.sender._shared_lock is adapter.devices.lock
