"""processed events: replies kept briefly, linked to the signals they showed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Replies are dropped after a short window while the row stays to recognise a redelivery.
    with op.batch_alter_table('processed_event', schema=None) as batch_op:
        batch_op.alter_column('replies_sealed', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=True)

    op.create_table('processed_event_signal',
    sa.Column('event_key', sa.String(length=128), nullable=False),
    sa.Column('signal_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['event_key'], ['processed_event.key'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['signal_id'], ['signal.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_key', 'signal_id')
    )
    with op.batch_alter_table('processed_event_signal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_processed_event_signal_signal_id'), ['signal_id'], unique=False)

    # Rows from before this revision are not linked to their signals: keep none of their replies.
    op.execute("UPDATE processed_event SET replies_sealed = NULL")


def downgrade() -> None:
    with op.batch_alter_table('processed_event_signal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_processed_event_signal_signal_id'))

    op.drop_table('processed_event_signal')
    # The older code needs replies on every row; rows without them can only be dropped.
    op.execute("DELETE FROM processed_event WHERE replies_sealed IS NULL")
    with op.batch_alter_table('processed_event', schema=None) as batch_op:
        batch_op.alter_column('replies_sealed', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
