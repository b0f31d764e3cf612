"""Partner chasing per partner (issue 18, item 2): one reminder series for each partner a signal was passed to,
stopped by that partner's feedback; `feedback` only from a partner the signal went to or was discussed with;
the weekly overview counts what waits for each partner."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from meldbot.core.clock import ManualClock
from meldbot.core.config import load_config
from meldbot.core.domain import EventKind
from meldbot.service.reminders import Reminders, upcoming
from meldbot.service.services import work_calendar
from meldbot.storage.db import Database
from meldbot.storage.sealing import PlainSealer
from meldbot.storage.uow import UnitOfWorkFactory as SqlUnitOfWorkFactory
from tests.service.office import MELDPUNT, PLATFORMS, Office
from tests.support import EXAMPLE, make_config
from tests.support.chat import migrated
from tests.support.older_rows import signal_at_0011

AMS = ZoneInfo("Europe/Amsterdam")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


class Chaser:
    """The reminder sweep at chosen moments, and the partner reminders (or weekly overviews) it queued for the
    AF since the last look."""

    def __init__(self, office: Office) -> None:
        self.office = office
        self.reminders = Reminders(office.uow, office.config, office.clock, PLATFORMS)
        self.seen: set[str] = set()

    async def sweep_at(self, moment: datetime, *, overview: bool = False) -> list[str]:
        self.office.clock.set(moment)
        await self.reminders.sweep()
        found = []
        for item in await self.office.outbox():
            key = item.idempotency_key
            if key in self.seen or not key.startswith("reminder:") or item.recipient.user_id != "af":
                continue
            self.seen.add(key)
            if key.startswith("reminder:overzicht" if overview else "reminder:partner"):
                found.append(item.reply.text)
        return found


async def _forwarded_to_politie_and_nla(office: Office) -> None:
    await office.submit("piet")                                         # Wednesday 18 November 2026, 10:30
    await office.af("af", "doorzetten 1 politie")
    await office.af("af", "doorzetten 1 nla")


async def test_a_partner_without_feedback_is_chased_although_another_partner_answered(office: Office,
                                                                                        clock: ManualClock) -> None:
    await _forwarded_to_politie_and_nla(office)
    clock.set(at(2026, 11, 20, 9, 0))
    assert "opgeslagen" in await office.af("af", "feedback 1 politie Onderzoek gestart")
    chaser = Chaser(office)
    assert await chaser.sweep_at(at(2026, 12, 2, 10, 29)) == []
    day_15 = await chaser.sweep_at(at(2026, 12, 2, 10, 31))             # 10 working days after passing on
    assert len(day_15) == 1
    assert "doorgezet naar nla" in day_15[0] and "feedback 1 nla" in day_15[0] and "politie" not in day_15[0]
    assert len(await chaser.sweep_at(at(2026, 12, 9, 10, 31))) == 1     # weekly
    assert await chaser.sweep_at(at(2026, 12, 9, 16, 0)) == []          # once per slot
    day_60 = await chaser.sweep_at(at(2027, 1, 18, 10, 31))
    assert len(day_60) == 1 and "nla" in day_60[0]
    await office.af("af", "feedback 1 nla Controle gedaan")
    assert await chaser.sweep_at(at(2027, 1, 25, 10, 31)) == []         # its own feedback stops it


async def test_each_partner_has_its_own_series_from_the_day_it_was_passed_to(office: Office,
                                                                              clock: ManualClock) -> None:
    await office.submit("piet")
    await office.af("af", "doorzetten 1 politie")
    clock.set(at(2026, 11, 23, 11, 0))                                  # the next Monday
    await office.af("af", "doorzetten 1 kmar")
    chaser = Chaser(office)
    first = await chaser.sweep_at(at(2026, 12, 2, 10, 31))
    assert len(first) == 1 and "doorgezet naar politie" in first[0] and "kmar" not in first[0]
    second = await chaser.sweep_at(at(2026, 12, 7, 11, 1))              # 10 working days after Monday 23
    assert len(second) == 1 and "doorgezet naar kmar" in second[0] and "politie" not in second[0]
    signal = await office.signal(1, events=False)
    settings = office.config.reminders_for(MELDPUNT)
    upcoming_kinds = sorted(d.kind for d in upcoming(signal, settings, work_calendar(office.config, MELDPUNT),
                                                     clock.now()))
    assert upcoming_kinds == ["melder", "partner:kmar", "partner:politie"]


async def test_feedback_from_a_partner_it_was_not_passed_to_is_refused_naming_the_partners(office: Office) -> None:
    await office.submit("piet")
    out = await office.af("af", "feedback 1 kmar Niets bekend")
    assert "kmar" in out and "doorzetten 1" in out and "opgeslagen" not in out
    await office.af("af", "doorzetten 1 politie")
    await office.af("af", "overleggen 1 zorg")
    out = await office.af("af", "feedback 1 kmar Niets bekend")
    assert "opgeslagen" not in out and "politie" in out and "zorgcoordinator" in out
    signal = await office.signal(1)
    assert not [e for e in signal.events if e.kind is EventKind.PARTNER_FEEDBACK]
    assert "feedback" not in await office.actions(1)
    assert "opgeslagen" in await office.af("af", "feedback 1 zorg Bekend bij de zorgcoordinator")
    assert "opgeslagen" in await office.af("af", "feedback 1 avim Onderzoek gestart")   # an alias of politie


async def test_the_weekly_overview_counts_what_waits_for_each_partner(office: Office, clock: ManualClock) -> None:
    await _forwarded_to_politie_and_nla(office)
    await office.submit("klaas")
    await office.af("af", "doorzetten 2 politie")
    await office.af("af", "feedback 1 nla Controle gedaan")
    chaser = Chaser(office)
    monday = await chaser.sweep_at(at(2026, 11, 23, 9, 1), overview=True)
    assert len(monday) == 1
    assert "Politie, team AVIM: 2" in monday[0]
    assert "Nederlandse Arbeidsinspectie" not in monday[0]


async def test_a_partner_with_a_long_key_is_chased_on_every_database(database_url: str, clock: ManualClock,
                                                                      tmp_path: Path) -> None:
    """Partner keys have no length limit; the reminder's claim row must still fit (reminder_sent.kind)."""
    long_key = "arbeidsmarktinspectiezuidoost1"
    assert len(long_key) == 30
    example = EXAMPLE.read_text(encoding="utf-8").replace('key = "kmar"', f'key = "{long_key}"')
    (tmp_path / "config.toml").write_text(example, encoding="utf-8")
    config = load_config(tmp_path / "config.toml", {"MELDBOT_STORAGE__URL": database_url,
                                                     "MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS": "true"})
    await migrated(database_url)
    db = Database(database_url)
    try:
        office = Office(SqlUnitOfWorkFactory(db, PlainSealer()), config, clock)
        await office.submit("piet")
        await office.af("af", f"doorzetten 1 {long_key}")
        assert long_key in (await office.signal(1, events=False)).waiting_partners()
        chased = await Chaser(office).sweep_at(at(2026, 12, 2, 10, 31))
        assert len(chased) == 1 and f"feedback 1 {long_key}" in chased[0]
    finally:
        await db.dispose()


async def test_a_slot_the_joint_series_sent_is_not_sent_again_once_the_partner_log_is_stored(
        database_url: str, clock: ManualClock) -> None:
    """Slot 0 went out under the older row's joint key (partner:MH-2026-0001:0); after `feedback` stores the
    log, the same slot for nla (partner:nla:MH-2026-0001:0) is already sent. The next week's slot goes out."""
    db = Database(database_url)
    office = Office(SqlUnitOfWorkFactory(db, PlainSealer()), make_config(database_url), clock)
    chaser = Chaser(office)
    try:
        await signal_at_0011(db)
        await db.migrate()
        assert len(await chaser.sweep_at(at(2026, 12, 2, 10, 31))) == 1        # the joint series, slot 0
        assert "opgeslagen" in await office.af("af", "feedback 1 politie Onderzoek gestart")
        assert (await office.signal(1, events=False)).partner_log_exact
        assert await chaser.sweep_at(at(2026, 12, 2, 10, 45)) == []
        next_week = await chaser.sweep_at(at(2026, 12, 9, 10, 31))
        assert len(next_week) == 1 and "nla" in next_week[0] and "politie" not in next_week[0]
        assert await chaser.sweep_at(at(2026, 12, 9, 16, 0)) == []
    finally:
        await db.dispose()
