"""Data protection: nothing readable at rest, keyed matching, key rotation, audit trail, clean logs."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from meldbot.core import logs
from meldbot.core.domain import RefQuery
from meldbot.core.messaging import Identity
from meldbot.storage.db import Database
from meldbot.storage.rotation import Rotation
from meldbot.storage.sealing import KeyringSealer, PlainSealer, new_key
from tests.support.cli import env_for
from tests.support.privacy import MELDER, MELDER_NAME, seed

SECRETS = [
    MELDER, MELDER_NAME, "Kwikstaartlaan", "Fenneke Oudewater", "Mosselkreek", "matrassen op zolder",
    "Pruimelaarsweg", "aanvulling-over-de-bestelbus",
]


def raw_sqlite(url: str) -> bytes:
    path = Path(url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def leaked(blob: bytes) -> list[str]:
    lowered = blob.lower()
    return [s for s in SECRETS if s.lower().encode() in lowered]


async def test_a_stolen_sqlite_file_shows_no_names_addresses_texts_or_melders(sqlite_url, clock):
    await seed(sqlite_url, KeyringSealer(new_key()), clock)
    assert leaked(raw_sqlite(sqlite_url)) == []


async def test_without_a_key_the_same_scan_does_find_them(sqlite_url, clock):
    # Proves the scan above can fail: in plaintext mode the seeded values are in the file.
    await seed(sqlite_url, PlainSealer(), clock)
    assert set(leaked(raw_sqlite(sqlite_url))) >= {"Kwikstaartlaan", "Fenneke Oudewater", MELDER}


async def test_a_pg_dump_shows_none_of_them(postgres_database, clock):
    await seed(postgres_database, KeyringSealer(new_key()), clock)
    url = postgres_database.replace("postgresql+asyncpg://", "postgresql://")
    dump = subprocess.run(["pg_dump", "--data-only", url], capture_output=True, timeout=60, check=True).stdout
    assert b"COPY public.signal" in dump
    assert leaked(dump) == []


async def test_matching_finds_shared_addresses_and_organisations_without_decrypting(database_url, clock):
    sealer = KeyringSealer(new_key())
    await seed(database_url, sealer, clock)
    db = Database(database_url)
    from meldbot.storage.uow import SqlUnitOfWork

    async with SqlUnitOfWork(db, sealer) as uow:
        one = await uow.signals.find(RefQuery(1), ["bergeijk"])
        two = await uow.signals.find(RefQuery(2), ["bergeijk"])
        three = await uow.signals.find(RefQuery(3), ["bergeijk"])
        m1, m2, m3 = [await uow.signals.matches(s) for s in (one, two, three)]
        digests = (await uow.session.exec(sa.text("SELECT digest FROM signal_key"))).all()
    await db.dispose()
    assert {(str(r), k) for r, k in m1} == {("MH-2026-0002", "adres"), ("MH-2026-0003", "organisatie")}
    assert {(str(r), k) for r, k in m2} == {("MH-2026-0001", "adres")}
    assert {(str(r), k) for r, k in m3} == {("MH-2026-0001", "organisatie")}
    assert digests and all("kwikstaart" not in d[0] for d in digests)


async def test_rotation_interrupted_halfway_and_resumed_leaves_only_the_new_key(database_url, clock):
    old, new = new_key(), new_key()
    await seed(database_url, KeyringSealer(old), clock)
    db = Database(database_url)
    both = KeyringSealer(new, [old])
    first = await Rotation(db, both, batch_size=1).run(max_batches=3)
    assert not first.done and first.batches == 3
    # Halfway, a process with both keys reads everything.
    await _read_everything(db, both)
    second = await Rotation(db, both, batch_size=1).run()
    assert second.done
    only_new = KeyringSealer(new)
    await _read_everything(db, only_new)
    old_id = KeyringSealer(old).key_id
    async with db.engine.connect() as conn:
        for table, column in [("signal", "content_sealed"), ("signal", "mentions_sealed"),
                              ("melder", "identity_sealed"), ("signal_event", "data_sealed"),
                              ("audit", "actor_sealed"), ("conversation", "state_sealed"), ("outbox", "payload_sealed"),
                              ("person", "identity_sealed")]:
            stale = (await conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {column} LIKE :p"),
                                        {"p": f"v1.{old_id}.%"})).scalar()
            assert stale == 0, table
    from meldbot.storage.uow import SqlUnitOfWork

    async with SqlUnitOfWork(db, only_new) as uow:
        one = await uow.signals.find(RefQuery(1), ["bergeijk"])
        assert {(str(r), k) for r, k in await uow.signals.matches(one)} == {
            ("MH-2026-0002", "adres"), ("MH-2026-0003", "organisatie")}
        # What the answers mention, sealed beside them, reads with the new key alone.
        candidates = await uow.signals.similar_candidates(one, 40)
        assert {str(c.reference) for c in candidates} == {"MH-2026-0002", "MH-2026-0003"}
        assert all(c.mentions for c in candidates)
        mine = await uow.signals.of_melder(Identity("console", MELDER))
        settings = await uow.people.get(Identity("console", MELDER))
        draft = await uow.conversations.load("console", MELDER)
    await db.dispose()
    assert len(mine) == 3 and settings.language == "en" and draft is not None


async def _read_everything(db: Database, sealer) -> None:
    from meldbot.storage.uow import SqlUnitOfWork

    async with SqlUnitOfWork(db, sealer) as uow:
        for n in (1, 2, 3):
            signal = await uow.signals.find(RefQuery(n), ["bergeijk"], with_events=True)
            assert signal.content.wat
            await uow.signals.melder_of(signal)
            await uow.audit.of_signal(signal.id)
        rows = (await uow.session.exec(sa.text("SELECT payload_sealed, recipient_sealed FROM outbox"))).all()
        for payload, recipient in rows:
            sealer.open(payload), sealer.open(recipient)
        for (state,) in (await uow.session.exec(sa.text("SELECT state_sealed FROM conversation"))).all():
            sealer.open(state)


async def test_a_value_sealed_with_an_unknown_key_is_refused_not_misread():
    from meldbot.storage.sealing import UnknownKey

    sealed = KeyringSealer(new_key()).seal("geheim")
    with pytest.raises(UnknownKey):
        KeyringSealer(new_key()).open(sealed)


async def test_a_tampered_value_does_not_open():
    from cryptography.exceptions import InvalidTag

    sealer = KeyringSealer(new_key())
    sealed = sealer.seal("geheim")
    body = sealed[-10:]
    tampered = sealed[:-10] + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises((InvalidTag, ValueError)):
        sealer.open(tampered)


async def test_the_audit_trail_records_submission_and_the_cli_read(sqlite_url, clock, tmp_path):
    key = new_key()
    await seed(sqlite_url, KeyringSealer(key), clock)
    env = env_for(tmp_path, MELDBOT_DATA_KEY=key, MELDBOT_STORAGE__URL=sqlite_url)
    run = lambda: subprocess.run([sys.executable, "-m", "meldbot", "audit", "MH-2026-0001"],  # noqa: E731
                                 capture_output=True, text=True, env=env, timeout=60)
    first, second = run(), run()
    assert first.returncode == 0, first.stderr
    assert "ingediend" in first.stdout and "aangevuld" in first.stdout
    # Each CLI read is recorded in the same transaction, this one included.
    assert first.stdout.count("audit-gelezen") == 1
    assert second.stdout.count("audit-gelezen") == 2
    unknown = subprocess.run([sys.executable, "-m", "meldbot", "audit", "999"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert unknown.returncode == 1 and "bestaat niet" in unknown.stderr and "Traceback" not in unknown.stderr


async def test_the_logs_of_a_full_scenario_hold_none_of_the_seeded_values(sqlite_url, clock):
    stream = io.StringIO()
    logs.setup("DEBUG", json_lines=True, stream=stream)
    try:
        notifier = await seed(sqlite_url, PlainSealer(), clock)
        assert notifier.to("af")
    finally:
        logs.setup("WARNING")
    output = stream.getvalue()
    assert "WITHOUT encryption" in output        # something was logged, so the check means something
    assert leaked(output.encode()) == []


def test_start_up_refuses_without_a_key_unless_plaintext_is_allowed():
    from meldbot.core.config import ConfigError
    from tests.support import EXAMPLE
    from meldbot.core.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, {"MELDBOT_STORAGE__ALLOW_PLAINTEXT": "false"})
    assert info.value.problems[0][0] == "storage.allow_plaintext"
    assert load_config(EXAMPLE, {"MELDBOT_STORAGE__ALLOW_PLAINTEXT": "false", "MELDBOT_DATA_KEY": new_key()})
    with pytest.raises(ConfigError) as bad:
        load_config(EXAMPLE, {"MELDBOT_DATA_KEY": "te-kort"})
    assert bad.value.problems[0][0] == "MELDBOT_DATA_KEY"
    logging.getLogger().handlers.clear()
