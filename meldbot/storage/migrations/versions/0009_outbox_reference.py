"""outbox: the reference of the signal a message is about, beside its key

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Retention erased a signal's messages by reading keys (LIKE '%:MH-2026-0001:%'), a scan of the whole outbox;
the column is indexed. Rows already queued get it from their key, as that search found them.
"""
import re

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# A copy, not an import: a migration must keep meaning what it meant when it was written. The first
# reference between colons, as the LIKE of OutboxRepository.forget_signal matched it.
_REFERENCE = re.compile(r":(MH-\d{4}-\d{4,})(?=:)")

_OUTBOX = sa.table('outbox', sa.column('id', sa.Integer()), sa.column('idempotency_key', sa.String()),
                   sa.column('reference', sa.String()))


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_reference'), ['reference'], unique=False)

    conn = op.get_bind()
    rows = conn.execute(sa.select(_OUTBOX.c.id, _OUTBOX.c.idempotency_key)
                        .where(_OUTBOX.c.idempotency_key.like('%:MH-%'))).all()
    found = [{"row_id": row_id, "ref": match.group(1)}
             for row_id, key in rows if (match := _REFERENCE.search(key))]
    if found:
        conn.execute(_OUTBOX.update().where(_OUTBOX.c.id == sa.bindparam('row_id'))
                     .values(reference=sa.bindparam('ref')), found)


def downgrade() -> None:
    # Nothing is lost: a key names its reference too, and the older code finds the rows by their keys.
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_reference'))
        batch_op.drop_column('reference')
