"""key canary: whether the database is sealed, and with which key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import meldbot.storage.tables


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Left empty: only a process that knows the data key (or knows it has none) can write the row.
    op.create_table('key_canary',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('updated_at', meldbot.storage.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('key_canary')
