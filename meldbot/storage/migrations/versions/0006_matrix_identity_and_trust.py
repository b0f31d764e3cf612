"""matrix cross-signing identity and AF trust

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import meldbot.storage.tables


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('matrix_identity',
    sa.Column('account_lookup', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('account_sealed', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('keys_sealed', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', meldbot.storage.tables.UTCDateTime(), nullable=False),
    sa.Column('updated_at', meldbot.storage.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('account_lookup')
    )
    op.create_table('matrix_trust',
    sa.Column('account_lookup', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('person_lookup', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('identity_sealed', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state_sealed', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('updated_at', meldbot.storage.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('account_lookup', 'person_lookup')
    )


def downgrade() -> None:
    op.drop_table('matrix_trust')
    op.drop_table('matrix_identity')
