"""Dialog state per conversation, sealed and keyed by a keyed hash of the conversation."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import select

from meldbot.core.messaging import Identity
from meldbot.core.ports import PersonSettings
from meldbot.storage.fast import CHANGED_MARK, CHECK_SAVEPOINT
from meldbot.storage.tables import ConversationRow, PersonRow, ProcessedEventRow

if TYPE_CHECKING:
    from meldbot.storage.uow import SqlUnitOfWork


# The statements of every turn, built once: constructing a statement costs more than running it.
_CONVERSATION = ConversationRow.__table__
_CONVERSATION_BY_KEYS = sa.select(
    _CONVERSATION.c.key, _CONVERSATION.c.updated_at, _CONVERSATION.c.meldpunt_id, _CONVERSATION.c.state_sealed,
).where(_CONVERSATION.c.key.in_(sa.bindparam("keys", expanding=True)))
CONVERSATION_UPDATE = sa.update(_CONVERSATION).where(_CONVERSATION.c.key == sa.bindparam("k")).values(
    state_sealed=sa.bindparam("state"), updated_at=sa.bindparam("at", type_=_CONVERSATION.c.updated_at.type),
    meldpunt_id=sa.bindparam("meldpunt"))
# A turn's first reads in one statement: the conversation, the person who writes and the platform event (was
# it handled before?), each or all absent.
_PERSON = PersonRow.__table__
_PROCESSED = ProcessedEventRow.__table__
_ONE = sa.select(sa.literal(1).label("one")).subquery("one")
_CONVERSATION_AND_PERSON = sa.select(
    _CONVERSATION.c.key, _CONVERSATION.c.updated_at, _CONVERSATION.c.meldpunt_id, _CONVERSATION.c.state_sealed,
    _PERSON.c.lookup, _PERSON.c.language, _PERSON.c.meldpunt_id.label("person_meldpunt_id"),
    _PROCESSED.c.key.label("event_key"), _PROCESSED.c.replies_sealed, _PROCESSED.c.at,
).select_from(
    _ONE.outerjoin(_CONVERSATION, _CONVERSATION.c.key.in_(sa.bindparam("keys", expanding=True)))
    .outerjoin(_PERSON, _PERSON.c.lookup.in_(sa.bindparam("lookups", expanding=True)))
    .outerjoin(_PROCESSED, _PROCESSED.c.key.in_(sa.bindparam("events", expanding=True)))
).limit(1)
NO_EVENT = "-"   # the event key asked for when a message has no event id: no row has it
_CONVERSATION_INSERT = sa.insert(_CONVERSATION)
_CONVERSATION_DELETE = sa.delete(_CONVERSATION).where(_CONVERSATION.c.key.in_(sa.bindparam("keys", expanding=True)))

# The conversation's advisory lock on PostgreSQL: two int4 keys, meldbot's class id for conversations
# ("mb", 1) and 32 bits of the conversation's keyed lookup hash, never its clear id. (The two-int4 form
# is a lock space of its own, apart from the one-bigint form.) Two conversations whose 32 bits happen to
# agree only wait for each other's turns; nothing is mixed up.
CONVERSATION_LOCK_CLASS = 0x6D620001
# How long a turn waits for its conversation's lock: the lock_timeout of the turn's transaction (SET LOCAL, so
# the pooled connection keeps its default). A process cut off while its turn's transaction is open keeps the
# lock until PostgreSQL notices the dead connection (TCP keepalive: hours); without a limit the waiting turns
# would each keep one of the bot's turn slots, and a few such conversations would block the whole process.
# Past it the turn fails as StorageUnavailable: the person is asked to resend, nothing is stored. A turn
# holds the lock for milliseconds; 15 s is a queue of hundreds of turns of one conversation.
CONVERSATION_LOCK_TIMEOUT_SECONDS = 15.0
# The limit and the locks in one statement: PostgreSQL evaluates a select list in order, so the limit is set
# before a lock is waited for, and the locks are taken in the order given. Written out with its values
# (integers, nothing from outside), so it can go in one round trip with the transaction's BEGIN
# (FastStatements.begin_with, begin_later).
def _lock_with_timeout(timeout_ms: int, keys: list[int]) -> str:
    locks = ", ".join(f"pg_advisory_xact_lock({CONVERSATION_LOCK_CLASS:d}, {int(key):d})" for key in keys)
    return f"SELECT set_config('lock_timeout', '{int(timeout_ms):d}ms', true), {locks}"


# An optimistic turn (ConversationRepository.lock) reads its conversation and its person before it takes the
# lock, with each row's version: PostgreSQL's xmin, the transaction that wrote the row, which every update
# changes. (The event's row needs none: its unique key makes a second record fail, see AlreadyHandled.)
_TURN_READ_WITH_VERSION = _CONVERSATION_AND_PERSON.add_columns(
    sa.cast(sa.literal_column(f"{_CONVERSATION.name}.xmin"), sa.Text).label("version"),
    sa.cast(sa.literal_column(f"{_PERSON.name}.xmin"), sa.Text).label("person_version"))
_LOOKUP_HASH = re.compile(r"[0-9A-Za-z_=-]{1,128}")
_VERSION = re.compile(r"[0-9]{1,20}")
_DIGEST = re.compile(r"[0-9a-f]{32}")


def state_digest(state_sealed: str) -> str:
    """What the check compares for a conversation this process wrote itself (its xmin is not known here): the
    MD5 of the sealed state, as PostgreSQL's md5() gives it. Any other write with a data key seals anew, with a
    fresh random nonce, so its text differs; MD5 only tells two of them apart (nobody can choose what it
    hashes)."""
    return hashlib.md5(state_sealed.encode(), usedforsecurity=False).hexdigest()


def _unchanged(keys: list[str], lookups: list[str], seen: list[str], events: list[str] = ()) -> list[str] | None:
    """The check, after the lock, that the conversation under `keys` and the person under `lookups` are as an
    optimistic turn read them: `seen` holds "c/<key>/<xmin>" and "p/<lookup>/<xmin>" of the rows it read
    (none: no row), or, for a conversation this process wrote in its last turn of it (TurnMemory),
    "d/<key>/<state_digest>"; and, with `events` (the keys of the turn's platform event, under every key the
    process knows), that the event has no record. A statement of its own, so it sees what a turn it waited for
    committed; it fails with CHANGED_MARK (FastStatements turns that into ConversationChanged). Written out
    with its values, which must be keyed hashes, numbers and digests (None otherwise: the caller takes the
    lock at once instead).

    It goes between a savepoint (CHECK_SAVEPOINT) and its release: when it fails, the transaction rolls back to
    the savepoint and keeps the lock, and the turn is handled again in it (SqlUnitOfWork.restart), ahead of
    the turns that wait for the lock; when it passes, the savepoint is released at once, so the turn's writes
    take no second transaction id."""
    if not all(_LOOKUP_HASH.fullmatch(k) for k in [*keys, *lookups, *events]):
        return None
    for entry in seen:
        kind, key, version = entry.split("/") if entry.count("/") == 2 else ("", "", "")
        pattern = _DIGEST if kind == "d" else _VERSION
        if kind not in ("c", "d", "p") or not _LOOKUP_HASH.fullmatch(key) or not pattern.fullmatch(version):
            return None
    expected = ",".join(sorted(seen))
    if any(entry.startswith("d/") for entry in seen):
        conversation = "'d/' || key || '/' || md5(state_sealed)"
    else:
        conversation = "'c/' || key || '/' || xmin::text"
    return [f"SAVEPOINT {CHECK_SAVEPOINT}",
            f"SELECT CASE WHEN coalesce(string_agg(seen, ',' ORDER BY seen), '') = '{expected}' THEN 1 "
            f"ELSE CAST('{CHANGED_MARK} ' || count(*) AS integer) END FROM ("
            f"SELECT {conversation} AS seen FROM {_CONVERSATION.name} "
            f"WHERE key IN ({', '.join(_quoted(k) for k in keys)}) UNION ALL "
            f"SELECT 'p/' || lookup || '/' || xmin::text FROM {_PERSON.name} "
            f"WHERE lookup IN ({', '.join(_quoted(k) for k in lookups)})"
            + (f" UNION ALL SELECT 'e/' || key FROM {_PROCESSED.name} "
               f"WHERE key IN ({', '.join(_quoted(k) for k in events)})" if events else "")
            + ") AS rows",
            f"RELEASE SAVEPOINT {CHECK_SAVEPOINT}"]


def _quoted(value: str) -> str:
    """A keyed hash as an SQL literal (checked by the caller to hold no quote)."""
    return f"'{value}'"


def conversation_lock_key(lookup: str) -> int:
    """The second int4 of a conversation's advisory lock: the first 32 bits of its lookup hash (hex)."""
    value = int(lookup[:8], 16)
    return value - (1 << 32) if value >= (1 << 31) else value


@dataclass(frozen=True)
class _Conversation:
    key: str
    updated_at: datetime
    meldpunt_id: str | None
    state_sealed: str


@dataclass(frozen=True)
class _Remembered:
    """A conversation as this process's last committed turn of it left it (TurnMemory)."""
    keys: tuple[str, ...]           # the conversation's lookups then (a key rotation since: not used)
    lookups: tuple[str, ...]        # the person's
    row: _Conversation | None
    seen: tuple[str, ...]           # what the check compares (see _unchanged)
    settings: PersonSettings


# How many conversations a process remembers: their sealed state (a few kB each), under their lookup hash.
TURN_MEMORY_SIZE = 2048


class TurnMemory:
    """Per process, on PostgreSQL: each conversation as this process's last committed turn of it left it, so
    that its next turn needs no read before its writes, and is one round trip instead of two: a person's next
    message comes to the same process with Matrix (one process syncs) and, with Teams, as often as the load
    balancer sends it there (always with one process). Safe because nothing is trusted: the turn's check under
    the conversation's lock, sent with its writes (or, in a turn that writes nothing, with its COMMIT),
    compares the rows with what is remembered (the state's digest, the person's xmin) and looks whether the
    platform event has a record already. A write by anyone else (another process, a job, a key rotation,
    retention) seals the state anew with a fresh random nonce, so it fails the check, and the turn is handled
    again after a real read. Keyless databases (local testing; their state is stored as is, so two writes
    can leave the same text) get no memory. What is remembered is taken by the turn that uses it, and put back
    only by a turn that committed."""

    def __init__(self, size: int = TURN_MEMORY_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[str, _Remembered] = OrderedDict()   # by the conversation's lookup hash

    def take(self, key: str) -> _Remembered | None:
        return self._entries.pop(key, None)

    def put(self, key: str, entry: _Remembered) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class ConversationRepository:
    lock_timeout_seconds = CONVERSATION_LOCK_TIMEOUT_SECONDS   # a class attribute, so a test can shorten it

    def __init__(self, uow: "SqlUnitOfWork") -> None:
        self._uow = uow
        # Rows read in this unit of work: a turn loads its conversation and saves it again, one SELECT.
        self._rows: dict[tuple[str, str], _Conversation | None] = {}
        self._optimistic: tuple[str, str] | None = None   # the conversation of an optimistic lock (see lock)
        # For TurnMemory, of the optimistic turn's conversation: what it read (keys, lookups, seen), and
        # whether this unit of work wrote the conversation (its row in _rows is then what it wrote).
        self._versions: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], Identity] | None = None
        self._written = False
        self.remembered = False   # the optimistic turn took its conversation from TurnMemory (no read)

    def _keys(self, platform: str, conversation_id: str) -> list[str]:
        return self._uow.sealer.lookups("conversation", f"{platform}:{conversation_id}")

    async def _row(self, platform: str, conversation_id: str) -> _Conversation | None:
        if (platform, conversation_id) in self._rows:
            return self._rows[(platform, conversation_id)]
        result = await self._uow.run(_CONVERSATION_BY_KEYS, {"keys": self._keys(platform, conversation_id)})
        found = result.first()
        row = _Conversation(*found) if found else None
        self._rows[(platform, conversation_id)] = row
        return row

    async def lock(self, platform: str, conversation_id: str, optimistic: bool = False) -> None:
        """Wait for the conversation and hold it until this transaction ends (pg_advisory_xact_lock): one turn
        at a time across processes, waiters in arrival order (PostgreSQL queues them first come, first served).
        The wait is bounded (lock_timeout_seconds, the transaction's lock_timeout, which also bounds the rest of
        the turn's lock waits); past it the unit of work raises StorageUnavailable.

        `optimistic` (a chat turn): the lock waits for the transaction's BEGIN and goes with it; `prefetch`
        reads before it, with the conversation's version, and the BEGIN then also checks that the
        conversation is still as read. An ordinary turn is two round trips: the read, and BEGIN, lock,
        check, the turn's writes and COMMIT in one; one, when this process remembers what the read would give
        (TurnMemory: the last turn of the conversation was handled here). When another turn changed the conversation in between
        (on another process: this process's turns of a conversation wait for each other), the check fails,
        nothing is kept and ConversationChanged is raised; the turn is then handled again without
        `optimistic`.

        On SQLite it does nothing: a SQLite database has one meldbot process (several cannot share its file
        safely), every transaction there takes the write lock at BEGIN, and the bot's in-process lock keeps
        the turns of a conversation in order."""
        if self._uow.dialect != "postgresql":
            return
        # Under every key this process knows (one, but during a key rotation): in a rolling rotation a process
        # that knows only the old key and one that knows both still meet on the old one. Sorted, so two
        # turns never take two keys in opposite orders.
        self._optimistic = None
        keys = sorted({conversation_lock_key(k) for k in self._keys(platform, conversation_id)})
        sql = _lock_with_timeout(round(self.lock_timeout_seconds * 1000), keys)
        if optimistic and self._uow.fast.begin_later(sql):
            self._optimistic = (platform, conversation_id)
            return
        await self._uow.begin_with(sql)

    async def prefetch(self, platform: str, conversation_id: str, reader: Identity, event_id: str | None = None) -> None:
        """The conversation, the reader's settings and whether the platform event `event_id` was handled before,
        in one statement (two round trips less per turn), kept for `load`, `people.get` and
        `processed.replies_for` in this unit of work. After `lock`: a statement sees what was committed when
        it began, so a read in the locking statement could miss the turn it waited for. After an optimistic
        `lock`, before it, with the check that goes with the lock."""
        if (platform, conversation_id) in self._rows:
            return
        processed = self._uow.processed
        events = processed.keys_for(platform, event_id) if event_id else [NO_EVENT]
        keys = self._keys(platform, conversation_id)
        params = {"keys": keys, "lookups": self._uow.person_lookups(reader), "events": events}
        result = None
        if self._optimistic == (platform, conversation_id):
            if self._from_memory(platform, conversation_id, reader, event_id, keys, params["lookups"]):
                return
            result = await self._uow.read_before_begin(_TURN_READ_WITH_VERSION, params, self.lock_timeout_seconds)
        found = None
        if result is not None:
            found = result.first()
            seen = []
            if found and found[0]:
                seen.append(f"c/{found[0]}/{found[10]}")
            if found and found[4]:
                seen.append(f"p/{found[4]}/{found[11]}")
            check = _unchanged(keys, params["lookups"], seen)
            if check is None:
                await self._uow.fast.begin_now()   # cannot be checked: the lock now, and the read again after it
                result = None
            else:
                self._check_with_begin(check)
                self._versions = (tuple(keys), tuple(params["lookups"]), tuple(seen), reader)
        if result is None:
            found = (await self._uow.run(_CONVERSATION_AND_PERSON, params)).first()
        self._rows[(platform, conversation_id)] = _Conversation(*found[:4]) if found and found[0] else None
        self._uow.people.keep(reader, PersonSettings(found[5], found[6]) if found and found[4] else PersonSettings())
        if event_id:
            processed.keep(platform, event_id, (found[8], found[9]) if found and found[7] else None)

    def _check_with_begin(self, check: list[str]) -> None:
        """The check (see _unchanged) goes with the transaction's BEGIN, after the conversation's lock."""
        if not all(self._uow.fast.begin_later(statement) for statement in check):
            raise RuntimeError("the conversation's check could not wait for the BEGIN")

    def _from_memory(self, platform: str, conversation_id: str, reader: Identity, event_id: str | None,
                     keys: list[str], lookups: list[str]) -> bool:
        """An optimistic turn of a conversation this process's last turn of it left in TurnMemory: what it read
        is taken from there, with the check (under the lock, with the BEGIN, at the latest with the COMMIT:
        SqlUnitOfWork.commit) that the rows are still so and that the platform event has no record. True when
        that was done. A redelivered event fails the check: the turn is handled again after a real read, which
        finds the stored answer."""
        memory = self._uow.memory
        entry = memory.take(keys[0]) if memory is not None else None
        if entry is None or entry.keys != tuple(keys) or entry.lookups != tuple(lookups):
            return False
        fast = self._uow.fast
        events = self._uow.processed.keys_for(platform, event_id) if event_id else []
        check = _unchanged(keys, lookups, list(entry.seen), events)
        if check is None or not fast.waiting_for_begin or self._uow.has_deferred:
            return False
        self._check_with_begin(check)
        self._rows[(platform, conversation_id)] = entry.row
        self._uow.people.keep(reader, entry.settings)
        if event_id:
            self._uow.processed.keep(platform, event_id, None)
        self._versions = (entry.keys, entry.lookups, entry.seen, reader)
        self.remembered = True
        return True

    def committed(self) -> None:
        """After the unit of work's COMMIT: what its optimistic turn leaves goes to TurnMemory, unless the person
        was written (their row's new xmin is not known here)."""
        memory, conversation, versions = self._uow.memory, self._optimistic, self._versions
        if memory is None or conversation is None or versions is None or conversation not in self._rows:
            return
        keys, lookups, seen, reader = versions
        settings = self._uow.people.read(reader)
        if settings is None or self._uow.people.written:
            return
        row = self._rows[conversation]
        if self._written:
            mine = (f"d/{row.key}/{state_digest(row.state_sealed)}",) if row is not None else ()
        else:
            mine = tuple(entry for entry in seen if not entry.startswith("p/"))
        person = tuple(entry for entry in seen if entry.startswith("p/"))
        memory.put(keys[0], _Remembered(keys, lookups, row, mine + person, settings))

    async def load(self, platform: str, conversation_id: str) -> tuple[dict[str, Any], datetime] | None:
        row = await self._row(platform, conversation_id)
        if row is None:
            return None
        return json.loads(self._uow.sealer.open(row.state_sealed)), row.updated_at

    async def save(
        self, platform: str, conversation_id: str, state: dict[str, Any], at: datetime, meldpunt_id: str | None = None
    ) -> None:
        sealer = self._uow.sealer
        row = await self._row(platform, conversation_id)
        self._wrote(platform, conversation_id)
        key = sealer.lookup("conversation", f"{platform}:{conversation_id}")
        state_sealed = sealer.seal(json.dumps(state, ensure_ascii=False))
        meldpunt_id = meldpunt_id or (row.meldpunt_id if row else None)
        if row is not None and row.key == key:
            values = {"k": key, "state": state_sealed, "at": at, "meldpunt": meldpunt_id}
            if self._uow.dialect == "postgresql":
                # Sent with the turn's next statement, the record of its platform event in the same one
                # (ProcessedEventRepository.remember), or with the COMMIT: one round trip less per turn. What
                # waits already is sent first, so that remember finds the update alone.
                await self._uow.send_deferred()
                self._uow.defer(CONVERSATION_UPDATE, values)
            else:
                await self._uow.run(CONVERSATION_UPDATE, values)
        else:
            values = dict(key=key, conversation_sealed=sealer.seal(json.dumps([platform, conversation_id])),
                          state_sealed=state_sealed, updated_at=at, meldpunt_id=meldpunt_id)
            if row is not None:   # written under a key being rotated away
                await self._uow.run(_CONVERSATION_DELETE, {"keys": [row.key]})
                await self._uow.run(_CONVERSATION_INSERT, values)
            elif self._uow.dialect == "postgresql":
                # A new conversation (`melden` in a new chat): as the update above, with the COMMIT (and the
                # record of the platform event) in one statement. In a turn the conversation's lock and the check
                # that it is still absent go before it in the same transaction: if another turn inserted it
                # meanwhile, the check fails and the turn starts over; without them, a unique violation at the
                # COMMIT is a failed write (StorageUnavailable), never taken for an event handled before.
                self._uow.defer(_CONVERSATION_INSERT, values)
            else:
                await self._uow.run(_CONVERSATION_INSERT, values)
        self._rows[(platform, conversation_id)] = _Conversation(key, at, meldpunt_id, state_sealed)

    def _wrote(self, platform: str, conversation_id: str) -> None:
        if self._uow.memory is not None:
            for key in self._keys(platform, conversation_id):
                self._uow.memory.forget(key)
        if self._optimistic == (platform, conversation_id):
            self._written = True

    async def delete(self, platform: str, conversation_id: str) -> None:
        self._wrote(platform, conversation_id)
        self._rows[(platform, conversation_id)] = None   # gone, once this unit of work's writes are sent
        await self._uow.write(_CONVERSATION_DELETE, {"keys": self._keys(platform, conversation_id)})

    async def forget_markers_before(self, moment: datetime) -> int:
        """Drop rows untouched for long (an expired-draft marker nobody came back to)."""
        self._rows.clear()
        if self._uow.memory is not None:
            self._uow.memory.clear()   # not needed for the check; what was removed is not kept here either
        result = await self._uow.session.exec(sa.delete(ConversationRow).where(ConversationRow.updated_at < moment))
        return result.rowcount or 0

    async def untouched_since(self, moment: datetime, limit: int = 500) -> list[tuple[str, str, str | None, dict[str, Any]]]:
        stmt = select(ConversationRow).where(ConversationRow.updated_at < moment).order_by(ConversationRow.updated_at).limit(limit)
        rows = (await self._uow.session.exec(stmt)).all()
        opened = self._uow.sealer.open
        return [
            (*json.loads(opened(r.conversation_sealed)), r.meldpunt_id, json.loads(opened(r.state_sealed)))
            for r in rows
        ]
