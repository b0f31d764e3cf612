""""Reeds bekend" candidates (SignalRepository.similar_candidates): the signals sharing the most telling keys,
each shared key weighing 1 / the signals holding it, on both databases; and on PostgreSQL a query whose work
follows the signal's keys, not a sort of every holder of a common key (benchmarks/growth.py)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from meldbot.core import matching
from meldbot.storage.db import Database
from meldbot.storage.repositories.signals import _SIMILAR_CANDIDATES
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.tables import SignalKeyRow, SignalRow
from meldbot.storage.uow import UnitOfWorkFactory
from tests.support.chat import migrated

AT = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)
LIMIT = 40


async def _seed(db: Database, keys_of: dict[int, list[tuple[str, str]]], meldpunt: str = "bergeijk") -> None:
    """Signal n (ids 1..) with its (kind, digest) keys; content and mentions in plain, empty."""
    signal, key = SignalRow.__table__, SignalKeyRow.__table__
    async with db.engine.begin() as conn:
        await conn.execute(sa.insert(signal), [
            dict(id=n, meldpunt_id=meldpunt, ref_year=2026, ref_number=n, status="afgesloten", form="arbeid",
                 context="balie", content_sealed="{}", mentions_sealed=json.dumps([]), created_at=AT, updated_at=AT)
            for n in keys_of])
        await conn.execute(sa.insert(key), [
            dict(signal_id=n, meldpunt_id=meldpunt, kind=kind, digest=digest, source="auto")
            for n, keys in keys_of.items() for kind, digest in keys])


def _expected(keys_of: dict[int, list[tuple[str, str]]], signal: int) -> dict[int, float]:
    """Every other signal sharing a key with `signal`, with its weight: the sum of 1 / holders per shared key."""
    holders: dict[str, int] = {}
    for keys in keys_of.values():
        for digest in {d for _, d in keys}:
            holders[digest] = holders.get(digest, 0) + 1
    mine = {d for _, d in keys_of[signal]}
    return {n: sum(1 / holders[d] for d in mine & {d for _, d in keys})
            for n, keys in keys_of.items() if n != signal and mine & {d for _, d in keys}}


def _history(rng: random.Random, signals: int) -> dict[int, list[tuple[str, str]]]:
    """Signals with an exact key or two each (rare: shared by a few) and name and address blocks, some of them
    common (a first name shared by dozens), as a gemeente's history has them."""
    keys_of = {}
    for n in range(1, signals + 1):
        keys = {("adres", f"adres-{rng.randrange(signals // 3)}")}
        if rng.random() < 0.5:
            keys.add(("persoon", f"persoon-{rng.randrange(signals // 4)}"))
        keys.add((matching.BLOCK, f"blok-voornaam-{min(rng.randrange(12), rng.randrange(12))}"))   # skewed
        keys.add((matching.BLOCK, f"blok-achternaam-{rng.randrange(30)}"))
        keys.add((matching.BLOCK, f"blok-adres-{rng.randrange(signals // 8)}"))
        keys_of[n] = sorted(keys)
    return keys_of


async def test_the_candidates_are_the_signals_sharing_the_most_telling_keys(database_url):
    rng = random.Random(15)
    keys_of = _history(rng, 300)
    await migrated(database_url)
    db = Database(database_url)
    try:
        await _seed(db, keys_of)
        factory = UnitOfWorkFactory(db, PlainSealer())
        checked = 0
        for signal in rng.sample(sorted(keys_of), 25):
            expected = _expected(keys_of, signal)
            async with factory() as uow:
                found = await uow.signals.similar_candidates(SimpleNamespace(id=signal, meldpunt_id="bergeijk"), LIMIT)
            numbers = [c.reference.number for c in found]
            assert len(numbers) == len(set(numbers)) == min(LIMIT, len(expected))
            assert set(numbers) <= set(expected)
            # Whoever is left out weighs no more than whoever is in (equal weights: the newest first).
            lightest_in = min(expected[n] for n in numbers)
            heaviest_out = max((w for n, w in expected.items() if n not in numbers), default=0.0)
            assert heaviest_out <= lightest_in + 1e-9, (signal, heaviest_out, lightest_in)
            checked += len(expected) > LIMIT      # the limit mattered: a choice was made
        assert checked >= 20
    finally:
        await db.dispose()


async def test_a_signal_of_another_meldpunt_is_no_candidate_and_does_not_count_as_a_holder(database_url):
    await migrated(database_url)
    db = Database(database_url)
    try:
        # Signal 1 shares a rare key with 2 and a key with 3 that 3..12 of another meldpunt also hold.
        await _seed(db, {1: [("adres", "a"), ("blok", "b")], 2: [("adres", "a")], 3: [("blok", "b")]})
        await _seed(db, {n: [("blok", "b"), ("adres", "a")] for n in range(4, 13)}, meldpunt="eersel")
        async with UnitOfWorkFactory(db, PlainSealer())() as uow:
            found = await uow.signals.similar_candidates(SimpleNamespace(id=1, meldpunt_id="bergeijk"), LIMIT)
        assert [c.reference.number for c in found] in ([2, 3], [3, 2])
    finally:
        await db.dispose()


async def _vacuumed(db: Database) -> None:
    """What autovacuum does after a load: statistics for the planner, the visibility map for index-only scans."""
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE signal_key"))
        await conn.execute(sa.text("VACUUM ANALYZE signal"))


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


@pytest.mark.parametrize("plans", ["force_custom_plan", "force_generic_plan"])
async def test_each_key_s_holders_are_counted_once_per_key_from_the_index_not_sorted(postgres_database, plans):
    """Finding (benchmarks/growth.py, `toon` 1M/10k 1.53x and 1.94x against a target of 1.5): the query counted
    a key's holders with a window over every holder of every shared key, which sorts them all by key; at a
    million signals a common name block has a thousand holders. Now each key is counted once, from the index,
    and the holders are only added up. The statement as the app sends it, prepared with its parameters: in the
    plan made for the values, and in the generic plan PostgreSQL switches to after five runs."""
    rng = random.Random(21)
    keys_of = _history(rng, 400)
    await migrated(postgres_database)
    db = Database(postgres_database)
    signal = 7
    try:
        await _seed(db, keys_of)
        await _vacuumed(db)
        compiled = _SIMILAR_CANDIDATES.compile(dialect=asyncpg_dialect())
        values = {**compiled.params, "signal": signal, "meldpunt": "bergeijk", "limit": LIMIT}
        arguments = ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in (values[n] for n in compiled.positiontup))
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql(f"SET plan_cache_mode = {plans}")
            await conn.exec_driver_sql(f"PREPARE candidates AS {compiled.string}")
            plan = (await conn.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE candidates({arguments})")).scalar_one()
    finally:
        await db.dispose()
    nodes = list(_nodes(plan[0]["Plan"]))
    assert not [n for n in nodes if n["Node Type"] == "WindowAgg"]
    counts = [n for n in nodes if n.get("Subplan Name", "").startswith("SubPlan") and n["Node Type"] == "Aggregate"]
    assert len(counts) == 1
    # Once per key of the signal (the CTE is materialized), not once per holder.
    assert counts[0]["Actual Loops"] == len({d for _, d in keys_of[signal]})
    # The holders, counted and added up, are read from the index alone.
    holders = [n for n in nodes if n.get("Relation Name") == "signal_key" and "digest" in n.get("Index Cond", "")]
    assert len(holders) == 2 and all(n["Node Type"] == "Index Only Scan" and not n["Heap Fetches"] for n in holders)


async def test_kenmerk_s_matches_read_no_holder_of_a_blocking_key(postgres_database):
    """`kenmerk` answers which other signals hold the same key (SignalRepository.matches): only the signal's
    exact keys are looked up, so the many holders of its common blocking keys are not read and left out."""
    rng = random.Random(22)
    keys_of = _history(rng, 400)
    await migrated(postgres_database)
    db = Database(postgres_database)
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    try:
        await _seed(db, keys_of)
        await _vacuumed(db)
        signal = 7
        exact = {d for kind, d in keys_of[signal] if kind != matching.BLOCK}
        expected = sorted({(n, kind) for n, keys in keys_of.items() if n != signal
                           for kind, d in keys if d in exact})
        sa.event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
        async with UnitOfWorkFactory(db, PlainSealer())() as uow:
            found = await uow.signals.matches(SimpleNamespace(id=signal, meldpunt_id="bergeijk"))
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
        assert [(ref.number, kind) for ref, kind in found] == expected and expected
        [(statement, parameters)] = statements
        async with db.engine.connect() as conn:
            # The plan of a large table (the growth benchmark's), where the planner looks the keys up in the index.
            await conn.exec_driver_sql("SET enable_seqscan = off")
            plan = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)).scalar_one()
    finally:
        await db.dispose()
    read = sum((n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get("Actual Loops", 1)
               for n in _nodes(plan[0]["Plan"]) if n.get("Relation Name") == "signal_key")
    # The signal's own keys, then each holder of one of its exact keys (itself included); on the old code 50.
    assert read <= len(keys_of[signal]) + len(exact) + len(expected)


async def test_equal_weights_go_to_the_newest_signal_whatever_the_float_sum(database_url):
    """Review finding: the weights are float sums, and 1/2 + 1/12 comes out a hair above 1/3 + 1/4 (both 7/12),
    so the older signal won the tie that should go to the newest."""
    keys_of: dict[int, list[tuple[str, str]]] = {1: [("blok", "k2"), ("blok", "k12"), ("blok", "k3"), ("blok", "k4")],
                                                 2: [("blok", "k2"), ("blok", "k12")],      # 1/2 + 1/12
                                                 3: [("blok", "k3"), ("blok", "k4")]}       # 1/3 + 1/4
    fillers = iter(range(4, 100))
    for digest, extra in (("k12", 10), ("k3", 1), ("k4", 2)):
        for _ in range(extra):
            keys_of[next(fillers)] = [("blok", digest)]
    weights = _expected(keys_of, 1)
    assert weights[2] > weights[3] and abs(weights[2] - weights[3]) < 1e-15    # the float sums differ
    await migrated(database_url)
    db = Database(database_url)
    try:
        await _seed(db, keys_of)
        async with UnitOfWorkFactory(db, PlainSealer())() as uow:
            [found] = await uow.signals.similar_candidates(SimpleNamespace(id=1, meldpunt_id="bergeijk"), 1)
        assert found.reference.number == 3
    finally:
        await db.dispose()
