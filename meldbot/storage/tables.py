"""SQLModel tables. Personal data lives only in the `*_sealed` columns, which the repositories seal."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no time zone)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def _dt(**kw) -> object:
    nullable = kw.pop("nullable", False)
    index = kw.pop("index", False)
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index), **kw)


# Open signals, and closed ones whose melder has not been told the outcome (see reminder_candidates).
# The status is a literal so that the query planner can match the query to the partial index.
REMINDER_CANDIDATE_SQL = (
    "status <> 'afgesloten' OR (erased_at IS NULL AND merged_into IS NULL AND "
    "(melder_last_informed_at IS NULL OR melder_last_informed_at < closed_at))"
)


class SignalRow(SQLModel, table=True):
    __tablename__ = "signal"
    __table_args__ = (
        sa.UniqueConstraint("ref_year", "ref_number", name="uq_signal_reference"),
        sa.Index("ix_signal_meldpunt_status", "meldpunt_id", "status"),
        sa.Index("ix_signal_ref_number", "ref_number"),
        # A new pseudonym is checked against the meldpunt's earlier ones (services.new_pseudonym).
        sa.Index("ix_signal_pseudonym", "meldpunt_id", "pseudonym"),
        # The reminder sweep's candidates: a few dozen rows among millions of closed ones.
        sa.Index("ix_signal_reminder_candidates", "meldpunt_id", "id",
                 postgresql_where=sa.text(REMINDER_CANDIDATE_SQL), sqlite_where=sa.text(REMINDER_CANDIDATE_SQL)),
    )

    id: int | None = Field(default=None, primary_key=True)
    meldpunt_id: str = Field(max_length=64)
    ref_year: int
    ref_number: int
    status: str = Field(max_length=32)
    form: str = Field(max_length=32)
    context: str = Field(max_length=32)
    urgent: bool = False
    anonymous: bool = False
    pseudonym: str | None = Field(default=None, max_length=32)
    handler: str | None = Field(default=None, max_length=64)
    outcome: str | None = Field(default=None, max_length=32)
    content_sealed: str
    # What the answers mention (meldbot.core.matching.mentions), sealed JSON; NULL: read it from the content.
    mentions_sealed: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = _dt()
    updated_at: datetime = _dt()
    closed_at: datetime | None = _dt(nullable=True)
    # Content-free monitoring facts; they stay when retention erases the content.
    partners: str = Field(default="", max_length=500)     # comma-separated partner keys
    forwarded_at: datetime | None = _dt(nullable=True)
    partner_feedback_at: datetime | None = _dt(nullable=True)
    melder_informed_at: datetime | None = _dt(nullable=True)
    melder_last_informed_at: datetime | None = _dt(nullable=True)
    merged_into: str | None = Field(default=None, max_length=32)
    erased_at: datetime | None = _dt(nullable=True)   # retention: content gone, this line stays
    # Per partner key, when the signal was passed to, discussed with and answered by that partner (JSON of
    # domain.PartnerLog, content-free like `partners`). NULL: stored before it existed, derived from the above.
    partner_log: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class MelderRow(SQLModel, table=True):
    """Who reported a signal: kept apart from the content, shown to AFs only."""

    __tablename__ = "melder"
    __table_args__ = (sa.Index("ix_melder_lookup", "lookup"),)

    signal_id: int = Field(sa_column=sa.Column(sa.ForeignKey("signal.id", ondelete="CASCADE"), primary_key=True))
    meldpunt_id: str = Field(max_length=64)
    # A stable, non-reversible key of (platform, user id) so "my signals" works without decrypting.
    lookup: str = Field(max_length=128)
    identity_sealed: str


class EventRow(SQLModel, table=True):
    __tablename__ = "signal_event"

    id: int | None = Field(default=None, primary_key=True)
    signal_id: int = Field(sa_column=sa.Column(sa.ForeignKey("signal.id", ondelete="CASCADE"), index=True, nullable=False))
    meldpunt_id: str = Field(max_length=64)
    at: datetime = _dt()
    actor: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    data_sealed: str


class CounterRow(SQLModel, table=True):
    """The last reference number handed out per year, for the whole deployment."""

    __tablename__ = "reference_counter"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last: int = 0


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_pending", "delivered_at", "parked_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    meldpunt_id: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=200, unique=True)
    # The signal the message is about ("MH-2026-0007"), or none. Not sealed, like the signal's own reference
    # columns: it says which signal, nothing of what is in it (the key names it as well). Retention erases a
    # signal's messages by it.
    reference: str | None = Field(default=None, max_length=32, index=True)
    kind: str = Field(max_length=32)
    recipient_platform: str = Field(max_length=16)
    recipient_sealed: str
    # A keyed hash of the recipient, so waiting rows can be found for one person without decrypting.
    recipient_lookup: str = Field(max_length=128, index=True)
    payload_sealed: str
    created_at: datetime = _dt()
    next_attempt_at: datetime = _dt()
    attempts: int = 0
    claimed_until: datetime | None = _dt(nullable=True)
    delivered_at: datetime | None = _dt(nullable=True)
    parked_at: datetime | None = _dt(nullable=True)
    # A reason without content, for the administrator.
    last_error: str | None = Field(default=None, max_length=300)
    # A long message goes as several parts: how many of them the platform has accepted, so any process
    # continues after them (not only the one that sent them).
    parts_done: int = 0
    # Written just before a platform call, cleared after it is recorded: a row found with it set after a
    # crash may already have been shown (Teams offers no way to ask). Content-free.
    sending_since: datetime | None = _dt(nullable=True)


class SignalKeyRow(SQLModel, table=True):
    """A "reeds bekend" matching key of a signal: a keyed hash of a normalised address, person or organisation."""

    __tablename__ = "signal_key"
    # With signal_id: "reeds bekend" counts a key's holders from the index alone (revision 0013).
    __table_args__ = (sa.Index("ix_signal_key_digest_signal", "meldpunt_id", "digest", "signal_id"),)

    id: int | None = Field(default=None, primary_key=True)
    signal_id: int = Field(sa_column=sa.Column(sa.ForeignKey("signal.id", ondelete="CASCADE"), index=True, nullable=False))
    meldpunt_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    digest: str = Field(max_length=128)
    source: str = Field(max_length=16)          # "auto" (found in the answers) or "kenmerk" (added by an AF)


class AuditRow(SQLModel, table=True):
    """Append-only: every read of and action on a signal, with who and when."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    meldpunt_id: str = Field(max_length=64)
    signal_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.ForeignKey("signal.id", ondelete="CASCADE"), index=True, nullable=True)
    )
    at: datetime = _dt()
    actor_kind: str = Field(max_length=16)      # af | melder | cli | other | system
    actor_sealed: str
    action: str = Field(max_length=32)
    detail_sealed: str | None = None


class ConversationRow(SQLModel, table=True):
    """Dialog state per conversation; survives restarts. Keyed by a keyed hash of the conversation."""

    __tablename__ = "conversation"

    key: str = Field(primary_key=True, max_length=128)
    conversation_sealed: str
    meldpunt_id: str | None = Field(default=None, max_length=64)
    state_sealed: str
    updated_at: datetime = _dt(index=True)


class PersonRow(SQLModel, table=True):
    """Per-person settings: reply language and, with several meldpunten, the chosen one."""

    __tablename__ = "person"

    lookup: str = Field(primary_key=True, max_length=128)
    identity_sealed: str
    language: str | None = Field(default=None, max_length=8)
    meldpunt_id: str | None = Field(default=None, max_length=64)


class ReminderSentRow(SQLModel, table=True):
    """One row per reminder slot sent: the unique key makes a reminder go out once, whatever the
    number of bot processes."""

    __tablename__ = "reminder_sent"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    meldpunt_id: str = Field(max_length=64)
    signal_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.ForeignKey("signal.id", ondelete="CASCADE"), index=True, nullable=True)
    )
    kind: str = Field(max_length=32)
    slot: int
    due_at: datetime = _dt()
    sent_at: datetime = _dt()


class ProcessedEventRow(SQLModel, table=True):
    """Platform events already handled, with the replies given: a redelivered event is not handled twice.

    The replies are kept only for a short while (retention.PROCESSED_REPLIES_KEPT; then NULL), the row
    itself a few days as a content-free marker. When retention erases a signal the replies showed, the
    replies go at once and the marker stays, so a redelivery is still recognised."""

    __tablename__ = "processed_event"

    key: str = Field(primary_key=True, max_length=128)
    at: datetime = _dt(index=True)
    replies_sealed: str | None = None


class ProcessedEventSignalRow(SQLModel, table=True):
    """Which signals a processed event's replies showed, so erasing a signal erases those replies too."""

    __tablename__ = "processed_event_signal"

    event_key: str = Field(sa_column=sa.Column(
        sa.String(128), sa.ForeignKey("processed_event.key", ondelete="CASCADE"), primary_key=True))
    signal_id: int = Field(sa_column=sa.Column(
        sa.ForeignKey("signal.id", ondelete="CASCADE"), primary_key=True, index=True))


class ConversationReferenceRow(SQLModel, table=True):
    """How to reach a person later on a platform (e.g. a Teams conversation reference), kept so
    proactive messages survive restarts. Keyed by a keyed hash of (platform, user id); sealed."""

    __tablename__ = "conversation_reference"

    key: str = Field(primary_key=True, max_length=128)
    identity_sealed: str
    reference_sealed: str
    updated_at: datetime = _dt()


class MatrixIdentityRow(SQLModel, table=True):
    """The Matrix bot account's cross-signing private keys, sealed; one row per bot account."""

    __tablename__ = "matrix_identity"

    account_lookup: str = Field(primary_key=True, max_length=128)   # keyed hash of the bot's Matrix id
    account_sealed: str        # the bot's Matrix id, to rebuild the keyed hash at key rotation
    keys_sealed: str
    created_at: datetime = _dt()
    updated_at: datetime = _dt()


class MatrixTrustRow(SQLModel, table=True):
    """What the Matrix bot account trusts of one AF (pinned identity, known devices...), sealed."""

    __tablename__ = "matrix_trust"

    account_lookup: str = Field(primary_key=True, max_length=128)   # keyed hash of the bot's Matrix id
    person_lookup: str = Field(primary_key=True, max_length=128)    # the AF, as person.lookup
    identity_sealed: str       # [bot id, AF id], to rebuild both keyed hashes at key rotation
    state_sealed: str
    updated_at: datetime = _dt()


class MatrixSyncRow(SQLModel, table=True):
    """Where the Matrix sync stream of a bot account stands, shared by all processes: the process that
    holds the stream (PostgreSQL advisory lock) writes its position; a process that takes over catches up
    from it. No content: a sync position and a process name."""

    __tablename__ = "matrix_sync"

    account_lookup: str = Field(primary_key=True, max_length=128)   # keyed hash of the bot's Matrix id
    position: str | None = Field(default=None, max_length=512)      # the last next_batch fully handled
    holder: str | None = Field(default=None, max_length=128)        # the process that holds the stream
    holder_since: datetime | None = _dt(nullable=True)
    updated_at: datetime = _dt()


class KeyCanaryRow(SQLModel, table=True):
    """One row: a known text sealed with the data key, or "plaintext"; see storage/canary.py."""

    __tablename__ = "key_canary"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    value: str
    updated_at: datetime = _dt()
