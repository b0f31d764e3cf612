"""Key rotation: re-seal everything and rebuild the keyed hashes under the current data key.

Batches of one transaction each, in id order, selecting only rows not yet under the current key: an
interrupted run is resumed by running it again. Every process involved holds both keys (the new one as
MELDBOT_DATA_KEY, the old one in MELDBOT_DATA_KEY_PREVIOUS), so no row is unreadable at any moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core import matching, similar
from meldbot.core.domain import Content, EventKind
from meldbot.core.messaging import Identity
from meldbot.storage import canary
from meldbot.storage.db import Database
from meldbot.storage.sealing import PREFIX, KeyringSealer
from meldbot.storage.tables import (
    AuditRow, ConversationReferenceRow, ConversationRow, EventRow, MatrixIdentityRow, MatrixSyncRow, MatrixTrustRow,
    MelderRow,
    OutboxRow, PersonRow, ProcessedEventRow, SignalKeyRow, SignalRow,
)
from meldbot.storage.uow import SqlUnitOfWork


class RepairSealer(KeyringSealer):
    """For `meldbot seal-plaintext`: also reads values stored in clear, so that the rotation seals them.

    Only a database started without a key by a version before the key canary holds such a mix."""

    def open(self, sealed: str) -> str:
        return super().open(sealed) if sealed.startswith(PREFIX) else sealed


@dataclass
class RotationProgress:
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    done: bool = False

    def add(self, table: str, n: int) -> None:
        self.counts[table] = self.counts.get(table, 0) + n


class Rotation:
    def __init__(self, db: Database, sealer: KeyringSealer, *, batch_size: int = 200) -> None:
        self._db = db
        self._sealer = sealer
        self._batch = batch_size
        self._current = f"{PREFIX}{sealer.key_id}.%"

    def _stale(self, column):
        return sa.not_(column.like(self._current))

    # Every batch reads its rows FOR NO KEY UPDATE (PostgreSQL; SQLite has one writer at a time anyway): the bot
    # runs meanwhile (docs/beheer.md, "Sleutel wisselen"), and a row it wrote between this read and this write
    # would otherwise be written over with the copy from before it: a signal that retention erased came back
    # with its content and keys. A writer of such a row waits for the batch, and then writes on top of it (a row
    # it changed meanwhile is under the current key, so no later batch picks it up). Not FOR UPDATE: that also
    # blocks the key-share lock every insert of an audit line, event or key takes on its signal, so `toon` and
    # `lijst` waited for a whole batch, and a merge (two signals, the kept one first) could deadlock with it.

    async def run(self, max_batches: int | None = None) -> RotationProgress:
        progress = RotationProgress()
        steps = [
            ("signal", self._signals),
            ("signal_event", self._events),
            ("audit", self._audit),
            ("conversation", self._conversations),
            ("outbox", self._outbox),
            ("person", self._people),
            ("processed_event", self._processed),
            ("conversation_reference", self._references),
            ("matrix_identity", self._matrix_identities),
            ("matrix_sync", self._matrix_sync),
            ("matrix_trust", self._matrix_trust),
        ]
        for table, step in steps:
            while True:
                if max_batches is not None and progress.batches >= max_batches:
                    return progress
                async with SqlUnitOfWork(self._db, self._sealer) as uow:
                    n = await step(uow)
                    await uow.commit()
                if n == 0:
                    break
                progress.batches += 1
                progress.add(table, n)
        # Last: only once every row is under the current key may the canary say so.
        await canary.write(self._db, self._sealer)
        progress.done = True
        return progress

    async def _replace(self, s, stale, fresh, key) -> None:
        """Put `fresh` in place of `stale`. A database that held plaintext beside sealed values can hold the
        same conversation or person under both keys: the newer row stays (a person's settings are merged)."""
        await s.delete(stale)
        await s.flush()
        existing = await s.get(type(fresh), key)
        if existing is not None:
            if isinstance(existing, PersonRow):
                existing.language = existing.language or fresh.language
                existing.meldpunt_id = existing.meldpunt_id or fresh.meldpunt_id
                s.add(existing)
                return
            if fresh.updated_at <= existing.updated_at:
                return
            await s.delete(existing)
            await s.flush()
        s.add(fresh)

    async def _signals(self, uow: SqlUnitOfWork) -> int:
        s, sealer = uow.session, self._sealer
        # Saving a signal seals its content again, not its mentions: either may be under an older key.
        stale = sa.or_(self._stale(SignalRow.content_sealed),
                       sa.and_(SignalRow.mentions_sealed.is_not(None), self._stale(SignalRow.mentions_sealed)))
        rows = (await s.exec(select(SignalRow).where(stale).order_by(SignalRow.id).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            content = sealer.open(row.content_sealed)
            row.content_sealed = sealer.seal(content)
            if row.erased_at is None:   # found again from the answers: a row from before revision 0011 gets it too
                row.mentions_sealed = sealer.seal(similar.dump_mentions(
                    similar.content_mentions(Content.from_dict(json.loads(content)))))
            s.add(row)
            melder = await s.get(MelderRow, row.id)
            if melder is not None:
                data = json.loads(sealer.open(melder.identity_sealed))
                melder.identity_sealed = sealer.seal(json.dumps(data, ensure_ascii=False))
                melder.lookup = uow.person_lookup(Identity(data["platform"], data["user_id"]))
                s.add(melder)
            await self._rebuild_keys(uow, row, Content.from_dict(json.loads(content)))
        return len(rows)

    async def _rebuild_keys(self, uow: SqlUnitOfWork, row: SignalRow, content: Content) -> None:
        s = uow.session
        await s.exec(sa.delete(SignalKeyRow).where(SignalKeyRow.signal_id == row.id))
        found = {("auto", k) for k in matching.extract(content.texts(), names=[content.wie])}
        tags = (await s.exec(select(EventRow).where(EventRow.signal_id == row.id,
                                                    EventRow.kind == str(EventKind.TAG)))).all()
        for tag in tags:
            data = json.loads(self._sealer.open(tag.data_sealed))
            key = matching.normalise(data.get("kind", ""), data.get("value", ""))
            if key is not None:
                found.add(("kenmerk", key))
        found |= {(source, block) for source, key in list(found) for block in matching.blocks([key])}
        for source, key in sorted(found):
            s.add(SignalKeyRow(signal_id=row.id, meldpunt_id=row.meldpunt_id, kind=key.kind,
                               digest=self._sealer.lookup("match", key.value), source=source))

    async def _events(self, uow: SqlUnitOfWork) -> int:
        rows = (await uow.session.exec(select(EventRow).where(self._stale(EventRow.data_sealed))
                                       .order_by(EventRow.id).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            row.data_sealed = self._sealer.seal(self._sealer.open(row.data_sealed))
            uow.session.add(row)
        return len(rows)

    async def _audit(self, uow: SqlUnitOfWork) -> int:
        rows = (await uow.session.exec(select(AuditRow).where(self._stale(AuditRow.actor_sealed))
                                       .order_by(AuditRow.id).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            row.actor_sealed = self._sealer.seal(self._sealer.open(row.actor_sealed))
            if row.detail_sealed is not None:
                row.detail_sealed = self._sealer.seal(self._sealer.open(row.detail_sealed))
            uow.session.add(row)
        return len(rows)

    async def _conversations(self, uow: SqlUnitOfWork) -> int:
        s = uow.session
        rows = (await s.exec(select(ConversationRow).where(self._stale(ConversationRow.state_sealed))
                             .limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            platform, conversation_id = json.loads(self._sealer.open(row.conversation_sealed))
            fresh = ConversationRow(
                key=self._sealer.lookup("conversation", f"{platform}:{conversation_id}"),
                conversation_sealed=self._sealer.seal(json.dumps([platform, conversation_id])),
                meldpunt_id=row.meldpunt_id,
                state_sealed=self._sealer.seal(self._sealer.open(row.state_sealed)),
                updated_at=row.updated_at,
            )
            await self._replace(s, row, fresh, fresh.key)
        return len(rows)

    async def _outbox(self, uow: SqlUnitOfWork) -> int:
        rows = (await uow.session.exec(select(OutboxRow).where(self._stale(OutboxRow.payload_sealed))
                                       .order_by(OutboxRow.id).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            recipient = json.loads(self._sealer.open(row.recipient_sealed))
            row.recipient_sealed = self._sealer.seal(json.dumps(recipient))
            row.recipient_lookup = uow.person_lookup(Identity(*recipient))
            row.payload_sealed = self._sealer.seal(self._sealer.open(row.payload_sealed))
            uow.session.add(row)
        return len(rows)

    async def _people(self, uow: SqlUnitOfWork) -> int:
        s = uow.session
        rows = (await s.exec(select(PersonRow).where(self._stale(PersonRow.identity_sealed)).limit(self._batch)
                             .with_for_update(key_share=True))).all()
        for row in rows:
            identity = Identity(*json.loads(self._sealer.open(row.identity_sealed)))
            fresh = PersonRow(lookup=uow.person_lookup(identity),
                              identity_sealed=self._sealer.seal(json.dumps([identity.platform, identity.user_id])),
                              language=row.language, meldpunt_id=row.meldpunt_id)
            await self._replace(s, row, fresh, fresh.lookup)
        return len(rows)

    async def _processed(self, uow: SqlUnitOfWork) -> int:
        """The replies still kept (an hour at most) are re-sealed under the current key. The rows keep
        their key: it cannot be rebuilt, the event id is not stored. Deleting them instead would let a
        redelivered event be handled twice; under their old key they are still found, through the previous
        key, as long as MELDBOT_DATA_KEY_PREVIOUS is set. After that a marker from before the rotation no
        longer matches, and ages out like any (retention.PROCESSED_EVENTS_KEPT). Platforms redeliver within
        minutes of a restart, and the restart that put the previous key in place came first: an event
        handled before it was recognised (or redelivered) then."""
        s = uow.session
        rows = (await s.exec(select(ProcessedEventRow).where(
            ProcessedEventRow.replies_sealed.is_not(None), self._stale(ProcessedEventRow.replies_sealed))
            .order_by(ProcessedEventRow.key).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            row.replies_sealed = self._sealer.seal(self._sealer.open(row.replies_sealed))
            s.add(row)
        return len(rows)

    async def _references(self, uow: SqlUnitOfWork) -> int:
        s = uow.session
        rows = (await s.exec(select(ConversationReferenceRow)
                             .where(self._stale(ConversationReferenceRow.reference_sealed)).limit(self._batch)
                             .with_for_update(key_share=True))).all()
        for row in rows:
            platform, user_id = json.loads(self._sealer.open(row.identity_sealed))
            fresh = ConversationReferenceRow(
                key=self._sealer.lookup("reference", f"{platform}:{user_id}"),
                identity_sealed=self._sealer.seal(json.dumps([platform, user_id])),
                reference_sealed=self._sealer.seal(self._sealer.open(row.reference_sealed)),
                updated_at=row.updated_at)
            await self._replace(s, row, fresh, fresh.key)
        return len(rows)

    async def _matrix_identities(self, uow: SqlUnitOfWork) -> int:
        s = uow.session
        rows = (await s.exec(select(MatrixIdentityRow)
                             .where(self._stale(MatrixIdentityRow.keys_sealed)).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            bot_user_id = self._sealer.open(row.account_sealed)
            fresh = MatrixIdentityRow(
                account_lookup=uow.person_lookup(Identity("matrix", bot_user_id)),
                account_sealed=self._sealer.seal(bot_user_id),
                keys_sealed=self._sealer.seal(self._sealer.open(row.keys_sealed)),
                created_at=row.created_at, updated_at=row.updated_at)
            await self._replace(s, row, fresh, fresh.account_lookup)
        return len(rows)

    async def _matrix_sync(self, uow: SqlUnitOfWork) -> int:
        """The shared sync position and holder (nothing sealed) move to the bot account's current keyed hash.
        The bot's Matrix id comes from its identity row (re-keyed just before); a sync row without one is
        moved by the next holder's write, while the previous key is still configured."""
        s, moved = uow.session, 0
        for identity in (await s.exec(select(MatrixIdentityRow))).all():
            account = Identity("matrix", self._sealer.open(identity.account_sealed))
            current = uow.person_lookup(account)
            stale = (await s.exec(select(MatrixSyncRow).where(
                MatrixSyncRow.account_lookup.in_(uow.person_lookups(account)),
                MatrixSyncRow.account_lookup != current).with_for_update(key_share=True))).all()
            for row in stale:
                fresh = MatrixSyncRow(account_lookup=current, position=row.position, holder=row.holder,
                                      holder_since=row.holder_since, updated_at=row.updated_at)
                await self._replace(s, row, fresh, current)
                moved += 1
        return moved

    async def _matrix_trust(self, uow: SqlUnitOfWork) -> int:
        s = uow.session
        rows = (await s.exec(select(MatrixTrustRow)
                             .where(self._stale(MatrixTrustRow.state_sealed)).limit(self._batch).with_for_update(key_share=True))).all()
        for row in rows:
            bot_user_id, af_id = json.loads(self._sealer.open(row.identity_sealed))
            fresh = MatrixTrustRow(
                account_lookup=uow.person_lookup(Identity("matrix", bot_user_id)),
                person_lookup=uow.person_lookup(Identity("matrix", af_id)),
                identity_sealed=self._sealer.seal(json.dumps([bot_user_id, af_id])),
                state_sealed=self._sealer.seal(self._sealer.open(row.state_sealed)),
                updated_at=row.updated_at)
            await self._replace(s, row, fresh, (fresh.account_lookup, fresh.person_lookup))
        return len(rows)
