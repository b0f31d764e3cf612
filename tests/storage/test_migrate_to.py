"""Issue 20 item 1: `meldbot migrate --to <revision>`, the rollback docs/beheer.md promises, through the command
on a database with signals (SQLite and PostgreSQL): down one revision and up again keeps every row and the bot
works after; a downgrade that deletes data needs --yes; an unknown revision is one Dutch line.

A revision counts as lossless (DOWNGRADE_KEEPS_DATA) only if down and up again gives back every column of every
table, as it was; the one exception is a cache the code fills again itself (DERIVED)."""

from __future__ import annotations


import pytest
import sqlalchemy as sa

from meldbot.core.clock import ManualClock
from meldbot.run.app import build_app
from meldbot.storage.db import DOWNGRADE_KEEPS_DATA, Database, downgrades_between, head_revision, revisions
from tests.support import FakeNotifier, make_config
from tests.support.chat import SCRIPT, migrated, report_as, run_cli

# The revision before 0012 (the partner log); later ones (0013: an index) lose nothing on the way down.
BEFORE_PARTNER_LOG = "0011"
# Columns a lossless downgrade drops that the code derives again when it finds them empty: they come back NULL.
DERIVED = {"0011": {("signal", "mentions_sealed")}}


async def migrate(monkeypatch, url: str, *args: str) -> int:
    """`meldbot migrate <args>` through meldbot.run.cli.main."""
    return await run_cli(monkeypatch, url, "migrate", *args)


async def with_signals(url: str, clock: ManualClock) -> None:
    await migrated(url)
    async with build_app(make_config(url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat") as app:
        await report_as(app, "piet")
        await report_as(app, "klaas")
        await app.bot.handle(_say("af", "toon 1"))
        await app.bot.handle(_say("af", "doorzetten 1 politie"))


def _say(user: str, text: str):
    from tests.support.chat import say

    return say(user, text)


async def rows(url: str) -> dict[str, list[dict]]:
    """Every column of every row of every table (but Alembic's own), by column name, in a stable order."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            out = {}
            for table in sorted(set(tables) - {"alembic_version"}):
                result = await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))
                out[table] = [dict(row._mapping) for row in result.all()]
            return out
    finally:
        await db.dispose()


def without(snapshot: dict[str, list[dict]], columns: set[tuple[str, str]]) -> dict[str, list[dict]]:
    return {table: [{k: v for k, v in row.items() if (table, k) not in columns} for row in found]
            for table, found in snapshot.items()}


async def revision(url: str) -> str | None:
    db = Database(url)
    try:
        return await db.current_revision()
    finally:
        await db.dispose()


@pytest.mark.parametrize("lossless", sorted(DOWNGRADE_KEEPS_DATA))
async def test_down_through_a_lossless_revision_and_up_again_gives_back_every_column(
        lossless, database_url, clock, monkeypatch, capsys):
    await with_signals(database_url, clock)
    assert await migrate(monkeypatch, database_url, "--to", lossless, "--yes") == 0
    before = await rows(database_url)
    assert len(before["signal"]) == 2
    below = revisions()[revisions().index(lossless) - 1]
    capsys.readouterr()

    assert await migrate(monkeypatch, database_url, "--to", below) == 0, capsys.readouterr().err   # no --yes needed
    assert await migrate(monkeypatch, database_url, "--to", lossless) == 0
    assert await revision(database_url) == lossless
    after = await rows(database_url)
    derived = DERIVED.get(lossless, set())
    assert without(after, derived) == without(before, derived)
    for table, column in derived:
        assert all(row[column] is None for row in after[table])


async def test_migrate_to_before_the_partner_log_loses_only_the_partner_log_and_the_bot_works(
        database_url, clock, monkeypatch, capsys):
    await with_signals(database_url, clock)
    before = await rows(database_url)
    assert len(before["signal"]) == 2 and before["signal"][0]["partners"] == "politie"
    assert before["signal"][0]["partner_log"] and before["signal"][0]["mentions_sealed"]
    capsys.readouterr()

    # 0012's downgrade drops the partner log, for an erased signal the only copy of its per-partner dates.
    assert await migrate(monkeypatch, database_url, "--to", BEFORE_PARTNER_LOG) == 1
    err = capsys.readouterr().err
    assert "0012: de partnerlog" in err and "--yes" in err
    assert await revision(database_url) == head_revision()

    assert await migrate(monkeypatch, database_url, "--to", BEFORE_PARTNER_LOG, "--yes") == 0
    out = capsys.readouterr().out.strip()
    assert out.splitlines() == [out] and f"{head_revision()} -> {BEFORE_PARTNER_LOG}" in out and "teruggezet" in out
    assert await revision(database_url) == BEFORE_PARTNER_LOG
    lost = {("signal", "partner_log")}
    assert await rows(database_url) == without(before, lost)

    assert await migrate(monkeypatch, database_url) == 0
    assert f"{BEFORE_PARTNER_LOG} -> {head_revision()}" in capsys.readouterr().out
    assert await revision(database_url) == head_revision()
    after = await rows(database_url)
    assert without(after, lost) == without(before, lost)
    assert [row["partner_log"] for row in after["signal"]] == [None, None]

    async with build_app(make_config(database_url), clock=clock, notifiers={"console": FakeNotifier()},
                         mode="chat") as app:
        shown = "\n".join(r.text for r in await app.bot.handle(_say("af", "toon 1")))
        last = await report_as(app, "jan")
    assert SCRIPT[1] in shown and "MH-2026-0003" in last[-1].text


async def test_migrate_to_an_unknown_revision_lists_the_known_ones(sqlite_url, monkeypatch, capsys):
    await migrated(sqlite_url)
    assert await migrate(monkeypatch, sqlite_url, "--to", "0099") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "'0099' bestaat niet" in err
    assert all(known in err for known in [*revisions(), "head", "base"])
    assert await revision(sqlite_url) == head_revision()


async def test_a_downgrade_that_deletes_data_needs_yes(database_url, clock, monkeypatch, capsys):
    await with_signals(database_url, clock)
    before = await rows(database_url)
    capsys.readouterr()
    assert await migrate(monkeypatch, database_url, "--to", "0009") == 1       # through 0010: Matrix sync state
    err = capsys.readouterr().err
    assert "--yes" in err and "0010" in err and "back-up" in err
    assert await revision(database_url) == head_revision()

    assert await migrate(monkeypatch, database_url, "--to", "0009", "--yes") == 0
    assert f"{head_revision()} -> 0009" in capsys.readouterr().out
    assert await revision(database_url) == "0009"
    assert await migrate(monkeypatch, database_url, "--to", "head") == 0
    assert await revision(database_url) == head_revision()
    # What 0006-0012 added is gone (Matrix state, key mark, partner log, mentions); the signals and their
    # history, melders, audit and outbox are as they were.
    kept = ("signal", "signal_event", "melder", "audit", "outbox", "reference_counter")
    dropped = {("signal", "partner_log"), ("signal", "mentions_sealed")}
    after = await rows(database_url)
    assert without({t: after[t] for t in kept}, dropped) == without({t: before[t] for t in kept}, dropped)
    assert {(row["partner_log"], row["mentions_sealed"]) for row in after["signal"]} == {(None, None)}


async def test_migrate_to_an_older_revision_on_a_new_database_and_then_to_where_it_is(sqlite_url, monkeypatch,
                                                                                      capsys):
    assert await migrate(monkeypatch, sqlite_url, "--to", "0003") == 0
    assert "leeg -> 0003" in capsys.readouterr().out
    assert await migrate(monkeypatch, sqlite_url, "--to", "0003") == 0
    assert "al op versie 0003" in capsys.readouterr().out
    assert await migrate(monkeypatch, sqlite_url) == 0
    assert await revision(sqlite_url) == head_revision()


def test_every_downgrade_that_deletes_data_says_what_it_deletes():
    from meldbot.core.i18n import texts

    lossy = [rev for rev in downgrades_between(head_revision(), None) if rev not in DOWNGRADE_KEEPS_DATA]
    assert set(DOWNGRADE_KEEPS_DATA) <= set(revisions()) and lossy
    for language in ("nl", "en"):
        assert [rev for rev in lossy if not texts(language).has(f"cli.migrate.lost.{rev}")] == []
