"""signal: a log per partner (passed on, consulted, feedback), and pseudonyms found by meldpunt

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Partners are chased one by one: each partner the signal was passed to has its own reminder series, stopped
by that partner's feedback. `partner_log` keeps, per partner key, the moments it was passed to, discussed with
and answered by that partner (JSON, content-free like `partners`). Rows from before this revision have NULL:
the code derives the log from their history, or from `partners`, `forwarded_at` and `partner_feedback_at`,
and keeps chasing those as one series, as before. The index finds a meldpunt's pseudonyms, so a new one
can differ from them.
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partner_log', sa.Text(), nullable=True))
        batch_op.create_index('ix_signal_pseudonym', ['meldpunt_id', 'pseudonym'], unique=False)


def downgrade() -> None:
    # The older code reads `partners`, `forwarded_at` and `partner_feedback_at`, which stay as they were.
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.drop_index('ix_signal_pseudonym')
        batch_op.drop_column('partner_log')
