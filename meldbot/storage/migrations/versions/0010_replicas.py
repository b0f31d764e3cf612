"""replicas: outbox parts and send intent, the shared Matrix sync position

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

Several processes on one database: a long message's parts already shown and the moment a send began
are kept on the outbox row (another process continues after them, and knows a send was in doubt); the
Matrix sync stream's position and holder are kept in the database, so the process that takes over
catches up from where the last one stopped.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from meldbot.storage.tables import UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parts_done', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('sending_since', UTCDateTime(), nullable=True))
    op.create_table(
        'matrix_sync',
        sa.Column('account_lookup', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('position', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True),
        sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('holder_since', UTCDateTime(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account_lookup'),
    )


def downgrade() -> None:
    op.drop_table('matrix_sync')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('sending_since')
        batch_op.drop_column('parts_done')
