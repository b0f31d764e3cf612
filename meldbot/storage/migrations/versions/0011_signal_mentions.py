"""signal: what its answers mention, sealed, for "reeds bekend"

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

The addresses, persons and organisations found in a signal's answers (meldbot.core.matching.mentions), as
sealed JSON beside the sealed content. Its answers do not change after sending, so this is computed once;
`toon` unseals it for each candidate instead of reading every candidate's free text again. Rows from before
this revision have NULL and are read from their content as before.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mentions_sealed', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.drop_column('mentions_sealed')
