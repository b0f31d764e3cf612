"""Signals: the row, its melder apart, its event history and matching keys, mapped to the domain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core.domain import Content, Context, Event, EventKind, Form, Outcome, Reference, RefQuery, Signal, Status
from meldbot.core.domain import PartnerLog, derive_partner_log
from meldbot.core.matching import Mention
from meldbot.core.messaging import Identity
from meldbot.core import matching, similar
from meldbot.core.ports import Melder, SignalFacts, SimilarCandidate
from meldbot.storage.repositories._sql import dialect_insert
from meldbot.storage.tables import (
    REMINDER_CANDIDATE_SQL,
    AuditRow,
    CounterRow,
    EventRow,
    MelderRow,
    SignalKeyRow,
    SignalRow,
)

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


_SIGNAL_INSERT = sa.insert(SignalRow.__table__).returning(SignalRow.__table__.c.id)
_MELDER = MelderRow.__table__
_MELDER_INSERT = sa.insert(_MELDER)
_EVENT = EventRow.__table__
_EVENT_INSERT = sa.insert(_EVENT)
_SIGNAL_KEY = SignalKeyRow.__table__
_SIGNAL_KEY_INSERT = sa.insert(_SIGNAL_KEY)
_SIGNAL = SignalRow.__table__
_PSEUDONYMS_TAKEN = sa.select(_SIGNAL.c.pseudonym).where(
    _SIGNAL.c.meldpunt_id == sa.bindparam("meldpunt"),
    _SIGNAL.c.pseudonym.in_(sa.bindparam("drawn", expanding=True))).distinct()
# "Reeds bekend" (similar_candidates): built once, run straight on the driver (meldbot/storage/fast.py); building
# these per call cost about as much as running them. Other signals of the meldpunt sharing a key or a blocking
# key with signal :signal, each shared key weighing 1 / the signals that hold it; at most :limit.
# First each of the signal's keys with its weight, counted from the index alone (MATERIALIZED: counted once per
# key, not once per holder); then every holder of those keys adds the key's weight. A window count over the
# holders sorted them all by key first: at a million signals a common name block has a thousand holders, and
# the statement took 1.9-2.3 ms (p50, now 1.0 ms; at 10k 0.3 ms both; benchmarks/growth.py). The sums are rounded
# before they are ordered: 1/2 + 1/12 and 1/3 + 1/4 are a tie, and a tie goes to the newest signal.
_MINE = sa.select(_SIGNAL_KEY.c.digest).where(_SIGNAL_KEY.c.signal_id == sa.bindparam("signal"),
                                              _SIGNAL_KEY.c.meldpunt_id == sa.bindparam("meldpunt")).distinct().subquery()
_HELD = sa.alias(_SIGNAL_KEY, "held")
_WEIGHTS = (
    sa.select(_MINE.c.digest, (sa.literal_column("1.0", sa.Float) / sa.cast(
        sa.select(sa.func.count()).where(_HELD.c.meldpunt_id == sa.bindparam("meldpunt"),
                                         _HELD.c.digest == _MINE.c.digest).scalar_subquery(), sa.Float)).label("weight"))
    .cte("weights").prefix_with("MATERIALIZED")
)
# (In billionths, as a float: a NUMERIC cast and round() of every candidate's sum took 0.7 ms at a million.)
_WEIGHT = sa.func.round(sa.func.sum(_WEIGHTS.c.weight) * sa.literal_column("1000000000.0", sa.Float)).label("weight")
_RANKED = (
    sa.select(_SIGNAL_KEY.c.signal_id, _WEIGHT)
    .select_from(_WEIGHTS.join(_SIGNAL_KEY, sa.and_(_SIGNAL_KEY.c.meldpunt_id == sa.bindparam("meldpunt"),
                                                   _SIGNAL_KEY.c.digest == _WEIGHTS.c.digest)))
    .where(_SIGNAL_KEY.c.signal_id != sa.bindparam("signal"))
    .group_by(_SIGNAL_KEY.c.signal_id)
    .order_by(_WEIGHT.desc(), _SIGNAL_KEY.c.signal_id.desc())
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .subquery()
)
_SIMILAR_CANDIDATES = (
    sa.select(_SIGNAL.c.id, _SIGNAL.c.ref_year, _SIGNAL.c.ref_number, _SIGNAL.c.mentions_sealed,
              # the answers only for a row from before revision 0011, which has no mentions
              sa.case((_SIGNAL.c.mentions_sealed.is_(None), _SIGNAL.c.content_sealed)))
    .select_from(_SIGNAL.join(_RANKED, _RANKED.c.signal_id == _SIGNAL.c.id))
    .where(_SIGNAL.c.erased_at.is_(None))
)
# The AF's kenmerken (tag events) of those candidates, oldest first.
_TAGS_OF = (
    sa.select(_EVENT.c.signal_id, _EVENT.c.data_sealed)
    .where(_EVENT.c.signal_id.in_(sa.bindparam("ids", expanding=True)), _EVENT.c.kind == str(EventKind.TAG))
    .order_by(_EVENT.c.id)
)
# A signal by its number (and year), as the AF types it: `toon 12`, `toon MH-2026-0012`; the newest year first.
_FIND = {
    with_year: select(SignalRow).where(
        SignalRow.ref_number == sa.bindparam("number"), SignalRow.meldpunt_id.in_(sa.bindparam("meldpunts", expanding=True)),
        *([SignalRow.ref_year == sa.bindparam("year")] if with_year else [])).order_by(SignalRow.ref_year.desc()).limit(1)
    for with_year in (False, True)
}
_EVENTS_OF_SIGNAL = select(EventRow).where(EventRow.signal_id == sa.bindparam("signal")).order_by(EventRow.id)
# The year's next reference number: one upsert, which locks the year's counter row until commit. On the table,
# not the ORM class: a Core statement on both databases (no flush of pending ORM changes first).
_COUNTER = CounterRow.__table__
_NEXT_REFERENCE = {
    dialect: dialect_insert(dialect)(_COUNTER).values(year=sa.bindparam("year"), last=1).on_conflict_do_update(
        index_elements=[_COUNTER.c.year], set_={"last": _COUNTER.c.last + 1}).returning(_COUNTER.c.last)
    for dialect in ("postgresql", "sqlite")
}


class SignalRepository:
    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow

    @property
    def _s(self):
        return self._uow.session

    async def next_reference(self, year: int) -> Reference:
        """The next number for `year`, unique across the deployment even under concurrency.

        The UPDATE takes a row lock on PostgreSQL (and the write lock on SQLite), so concurrent
        submitters queue here for the rest of their short transaction.
        """
        result = await self._uow.run(_NEXT_REFERENCE[self._uow.dialect], {"year": year})
        return Reference(year, result.scalar_one())

    async def add(self, signal: Signal, melder: Melder, mentions: tuple[Mention, ...] | None = None) -> Signal:
        """`mentions`: what the answers mention (meldbot.core.similar.content_mentions), if already found."""
        sealer, now = self._uow.sealer, signal.created_at
        if mentions is None:
            mentions = similar.content_mentions(signal.content)
        # Core statements, no ORM objects or flush: a submission is the dearest turn of a report.
        result = await self._uow.run(_SIGNAL_INSERT, dict(
            meldpunt_id=signal.meldpunt_id,
            ref_year=signal.reference.year,
            ref_number=signal.reference.number,
            status=str(signal.status),
            form=str(signal.form),
            context=str(signal.context),
            urgent=signal.urgent,
            anonymous=signal.anonymous,
            pseudonym=signal.pseudonym,
            handler=signal.handler,
            content_sealed=sealer.seal(json.dumps(signal.content.to_dict(), ensure_ascii=False)),
            mentions_sealed=sealer.seal(similar.dump_mentions(mentions)),
            created_at=now,
            updated_at=now,
        ))
        signal.id = result.scalar_one()
        self._uow.signals_seen.add(signal.id)
        await self._uow.write(_MELDER_INSERT, dict(
            signal_id=signal.id,
            meldpunt_id=signal.meldpunt_id,
            lookup=self._uow.person_lookup(melder.identity),
            identity_sealed=sealer.seal(
                json.dumps(
                    {"platform": melder.identity.platform, "user_id": melder.identity.user_id, "name": melder.display_name},
                    ensure_ascii=False,
                )
            ),
        ))
        await self._add_events(signal)
        return signal

    async def _add_events(self, signal: Signal) -> None:
        rows = [dict(signal_id=signal.id, meldpunt_id=signal.meldpunt_id, at=event.at, actor=event.actor,
                     kind=str(event.kind), data_sealed=self._uow.sealer.seal(json.dumps(event.data, ensure_ascii=False)))
                for event in signal.new_events]
        signal.new_events.clear()
        if rows:
            await self._uow.write(_EVENT_INSERT, rows)

    async def save(self, signal: Signal, at: datetime) -> None:
        row = await self._s.get(SignalRow, signal.id)
        row.status = str(signal.status)
        row.handler = signal.handler
        row.outcome = str(signal.outcome) if signal.outcome else None
        row.closed_at = signal.closed_at
        row.urgent = signal.urgent
        row.partners = ",".join(signal.partners)
        row.forwarded_at = signal.forwarded_at
        row.partner_feedback_at = signal.partner_feedback_at
        row.melder_informed_at = signal.melder_informed_at
        row.melder_last_informed_at = signal.melder_last_informed_at
        row.merged_into = signal.merged_into
        if signal.partner_log_exact:   # a guessed log (an older row read without its history) is not stored
            row.partner_log = json.dumps({p: log.to_dict() for p, log in signal.partner_log.items()})
        row.content_sealed = self._uow.sealer.seal(json.dumps(signal.content.to_dict(), ensure_ascii=False))
        row.updated_at = at
        self._s.add(row)
        await self._add_events(signal)

    def _to_domain(self, row: SignalRow, events: list[EventRow] | None = None) -> Signal:
        self._uow.signals_seen.add(row.id)   # a reply of this turn may show it (see ProcessedEventRepository)
        opened = self._uow.sealer.open
        history = [Event(EventKind(e.kind), e.at, e.actor, json.loads(opened(e.data_sealed))) for e in (events or [])]
        partners = tuple(p for p in row.partners.split(",") if p)
        if row.partner_log is not None:
            partner_log, exact = {p: PartnerLog.from_dict(d) for p, d in json.loads(row.partner_log).items()}, True
        else:
            partner_log, exact = derive_partner_log(partners, row.forwarded_at, row.partner_feedback_at, history)
        return Signal(
            id=row.id,
            meldpunt_id=row.meldpunt_id,
            reference=Reference(row.ref_year, row.ref_number),
            status=Status(row.status),
            form=Form(row.form),
            context=Context(row.context),
            urgent=row.urgent,
            anonymous=row.anonymous,
            pseudonym=row.pseudonym,
            content=Content.from_dict(json.loads(opened(row.content_sealed))),
            created_at=row.created_at,
            handler=row.handler,
            outcome=Outcome(row.outcome) if row.outcome else None,
            closed_at=row.closed_at,
            partners=partners,
            forwarded_at=row.forwarded_at,
            partner_feedback_at=row.partner_feedback_at,
            melder_informed_at=row.melder_informed_at,
            melder_last_informed_at=row.melder_last_informed_at,
            merged_into=row.merged_into,
            erased_at=row.erased_at,
            partner_log=partner_log,
            partner_log_exact=exact,
            events=history,
        )

    async def find(self, query: RefQuery, meldpunt_ids: list[str], *, with_events: bool = False) -> Signal | None:
        params = {"number": query.number, "meldpunts": list(meldpunt_ids)}
        if query.year is not None:
            params["year"] = query.year
        row = (await self._s.exec(_FIND[query.year is not None], params=params)).first()
        if row is None:
            return None
        events = None
        if with_events:
            events = list((await self._s.exec(_EVENTS_OF_SIGNAL, params={"signal": row.id})).all())
        return self._to_domain(row, events)

    async def melder_of(self, signal: Signal) -> Melder:
        row = await self._s.get(MelderRow, signal.id)
        data = json.loads(self._uow.sealer.open(row.identity_sealed))
        return Melder(Identity(data["platform"], data["user_id"]), data.get("name"))

    async def of_melder(self, identity: Identity) -> list[Signal]:
        stmt = (
            select(SignalRow)
            .join(MelderRow, MelderRow.signal_id == SignalRow.id)
            .where(MelderRow.lookup.in_(self._uow.person_lookups(identity)))
            .order_by(SignalRow.id)
        )
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def find_for_melder(self, query: RefQuery, identity: Identity) -> Signal | None:
        """One of the melder's own signals; another person's reference finds nothing."""
        stmt = (
            select(SignalRow)
            .join(MelderRow, MelderRow.signal_id == SignalRow.id)
            .where(MelderRow.lookup.in_(self._uow.person_lookups(identity)), SignalRow.ref_number == query.number)
        )
        if query.year is not None:
            stmt = stmt.where(SignalRow.ref_year == query.year)
        row = (await self._s.exec(stmt.order_by(SignalRow.ref_year.desc()).limit(1))).first()
        return self._to_domain(row) if row else None

    async def events_of(self, signal_ids: list[int], kinds: list[EventKind]) -> dict[int, list[Event]]:
        if not signal_ids:
            return {}
        stmt = (
            select(EventRow)
            .where(EventRow.signal_id.in_(signal_ids), EventRow.kind.in_([str(k) for k in kinds]))
            .order_by(EventRow.id)
        )
        found: dict[int, list[Event]] = {}
        opened = self._uow.sealer.open
        for e in (await self._s.exec(stmt)).all():
            found.setdefault(e.signal_id, []).append(Event(EventKind(e.kind), e.at, e.actor, json.loads(opened(e.data_sealed))))
        return found

    async def set_keys(self, signal: Signal, keys, source: str, *, new: bool = False) -> None:
        """Store matching keys for `signal` as keyed hashes, with their blocking keys (matching.blocks);
        `auto` keys are replaced as a set."""
        if source == "auto" and not new:
            await self._s.exec(
                sa.delete(SignalKeyRow).where(SignalKeyRow.signal_id == signal.id, SignalKeyRow.source == "auto")
            )
        keys = set(keys)
        rows = [dict(signal_id=signal.id, meldpunt_id=signal.meldpunt_id, kind=key.kind,
                     digest=self._uow.sealer.lookup("match", key.value), source=source)
                for key in sorted(keys | matching.blocks(keys))]
        if rows:
            await self._uow.write(_SIGNAL_KEY_INSERT, rows)

    async def matches(self, signal: Signal) -> list[tuple[Reference, str]]:
        """Other signals of the meldpunt sharing a key with `signal`: (reference, kind), oldest first."""
        # Its own exact keys only: the holders of its blocking keys (a common name's, a thousand at a million
        # signals) would each be read from the table only to be left out.
        mine = select(SignalKeyRow.digest).where(SignalKeyRow.signal_id == signal.id, SignalKeyRow.kind != matching.BLOCK)
        stmt = (
            select(SignalRow.ref_year, SignalRow.ref_number, SignalKeyRow.kind)
            .join(SignalKeyRow, SignalKeyRow.signal_id == SignalRow.id)
            .where(SignalKeyRow.meldpunt_id == signal.meldpunt_id, SignalKeyRow.digest.in_(mine),
                   SignalKeyRow.signal_id != signal.id, SignalKeyRow.kind != matching.BLOCK)
            .distinct()
            .order_by(SignalRow.ref_year, SignalRow.ref_number, SignalKeyRow.kind)
        )
        return [(Reference(y, n), kind) for y, n, kind in (await self._s.exec(stmt)).all()]

    async def similar_candidates(self, signal: Signal, limit: int) -> list[SimilarCandidate]:
        """Other signals of the meldpunt sharing a key or a blocking key with `signal`, unsealed in memory with
        the AF's kenmerken, for meldbot.core.similar: at most `limit`, those sharing the most telling keys first.
        Each shared key weighs 1 / the number of signals that hold it, so one rare block (a look-alike address)
        is not pushed out by dozens of signals that share only common name blocks."""
        params = {"signal": signal.id, "meldpunt": signal.meldpunt_id, "limit": limit}
        rows = (await self._uow.run(_SIMILAR_CANDIDATES, params)).all()
        opened = self._uow.sealer.open
        tags: dict[int, list[tuple[str, str]]] = {}
        if rows:
            for signal_id, sealed in (await self._uow.run(_TAGS_OF, {"ids": [r[0] for r in rows]})).all():
                data = json.loads(opened(sealed))
                tags.setdefault(signal_id, []).append((str(data.get("kind", "")), str(data.get("value", ""))))

        def mentions(sealed: str | None, content: str | None) -> tuple:
            if sealed is not None:
                return similar.load_mentions(opened(sealed))
            return similar.content_mentions(Content.from_dict(json.loads(opened(content or ""))))

        return [
            SimilarCandidate(Reference(y, n), mentions(sealed, content), tuple(tags.get(i, ())))
            for i, y, n, sealed, content in rows
        ]

    async def merged_into(self, signal: Signal) -> list[Signal]:
        """Duplicates merged into `signal`: their melders are told too."""
        stmt = select(SignalRow).where(SignalRow.merged_into == str(signal.reference),
                                       SignalRow.meldpunt_id == signal.meldpunt_id).order_by(SignalRow.id)
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def facts(self, meldpunt_ids: list[str]):
        """Content-free monitoring facts; reads no sealed column."""
        stmt = select(SignalRow.meldpunt_id, SignalRow.created_at, SignalRow.form, SignalRow.context,
                      SignalRow.partners, SignalRow.forwarded_at, SignalRow.partner_feedback_at,
                      SignalRow.melder_informed_at).where(SignalRow.meldpunt_id.in_(meldpunt_ids),
                                                          SignalRow.merged_into.is_(None))
        return [
            SignalFacts(meldpunt_id=m, created_at=c, form=f, context=x,
                        partners=tuple(p for p in (ps or "").split(",") if p), forwarded_at=fa,
                        partner_feedback_at=pf, melder_informed_at=mi)
            for m, c, f, x, ps, fa, pf, mi in (await self._s.exec(stmt)).all()
        ]

    async def handled_by_others(self, meldpunt_id: str, names: list[str]) -> list[Signal]:
        """Open signals whose handler is not one of `names` (an AF removed from the configuration)."""
        stmt = select(SignalRow).where(SignalRow.meldpunt_id == meldpunt_id, SignalRow.status != str(Status.CLOSED),
                                       SignalRow.handler.is_not(None), SignalRow.handler.not_in(names))
        # Every process releases after a reload within seconds: each signal goes to the one that locks it first
        # (the others skip it, or find it released), so it is handed over, audited and told once.
        stmt = stmt.with_for_update(skip_locked=True)
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def reminder_candidates(self, meldpunt_id: str, *, lock: bool = False) -> list[Signal]:
        """Signals a reminder may be about: open ones, and closed ones whose melder was not told yet.

        With `lock`, rows another bot process is working on are skipped (PostgreSQL)."""
        # The same condition as the partial index ix_signal_reminder_candidates, with the status as a
        # literal (a bound parameter would hide from the planner that the index applies).
        stmt = select(SignalRow).where(SignalRow.meldpunt_id == meldpunt_id,
                                       sa.text(f"({REMINDER_CANDIDATE_SQL})")).order_by(SignalRow.id)
        if lock:
            stmt = stmt.with_for_update(skip_locked=True)
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def closed_before(self, meldpunt_id: str, cutoff: datetime) -> list[tuple[int, str]]:
        stmt = select(SignalRow.id, SignalRow.ref_year, SignalRow.ref_number).where(
            SignalRow.meldpunt_id == meldpunt_id, SignalRow.status == str(Status.CLOSED),
            SignalRow.closed_at < cutoff, SignalRow.erased_at.is_(None))
        return [(i, str(Reference(y, n))) for i, y, n in (await self._s.exec(stmt)).all()]

    async def erase(self, signal_id: int, reference: str, at: datetime) -> None:
        """Retention: everything personal about one signal goes; its row stays, content-free."""
        s = self._s
        # The row first: its lock makes a key rotation busy with this signal finish before anything goes
        # (meldbot.storage.rotation), or what it re-sealed (content, melder, keys) would come back after it.
        await s.exec(sa.update(SignalRow).where(SignalRow.id == signal_id).values(
            content_sealed=self._uow.sealer.seal("{}"), mentions_sealed=None, pseudonym=None, erased_at=at,
            updated_at=at))
        for table in (EventRow, MelderRow, SignalKeyRow, AuditRow):
            await s.exec(sa.delete(table).where(table.signal_id == signal_id))
        await self._uow.processed.forget_signal(signal_id)   # replies that showed it
        await self._uow.outbox.forget_signal(reference)        # messages about it, delivered or not
        s.add(EventRow(signal_id=signal_id, meldpunt_id=(await s.get(SignalRow, signal_id)).meldpunt_id, at=at,
                       actor="systeem", kind="gewist", data_sealed=self._uow.sealer.seal("{}")))

    async def open_signals(self, meldpunt_ids: list[str]) -> list[Signal]:
        stmt = (
            select(SignalRow)
            .where(SignalRow.meldpunt_id.in_(meldpunt_ids),
                   SignalRow.status.in_([str(Status.RECEIVED), str(Status.IN_PROGRESS), str(Status.FORWARDED)]))
            .order_by(SignalRow.id)
        )
        return [self._to_domain(r) for r in (await self._s.exec(stmt)).all()]

    async def count(self) -> int:
        return (await self._s.exec(select(sa.func.count()).select_from(SignalRow))).one()

    async def pseudonyms_taken(self, meldpunt_id: str, pseudonyms: list[str]) -> set[str]:
        # A prebuilt statement: part of `versturen` for an anonymous melder, which then needs no ORM session.
        rows = (await self._uow.run(_PSEUDONYMS_TAKEN, {"meldpunt": meldpunt_id, "drawn": pseudonyms})).all()
        return {p for (p,) in rows if p is not None}
