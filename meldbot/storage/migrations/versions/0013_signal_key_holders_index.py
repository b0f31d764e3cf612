"""signal_key: the digest index also holds the signal, so "reeds bekend" reads only the index

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

`toon` ranks its candidates by every signal that holds one of the signal's keys (the weight of a key is
1 / its holders). A coarse blocking key is held by hundreds of signals at a million, and with the index on
(meldpunt_id, digest) each holder was one more table page read: the statement grew from 0.6 ms at 10k
signals to 4-5 ms at a million (benchmarks/growth.py). With signal_id in the index they are an index-only
scan. The new index serves every lookup the old one did (same leading columns), so it replaces it.
Building it takes about 2 s at a million signals (1M signal_key rows) and blocks writes to signal_key
meanwhile; `meldbot migrate` runs with the bot stopped.
"""
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_signal_key_digest_signal', 'signal_key', ['meldpunt_id', 'digest', 'signal_id'], unique=False)
    op.drop_index('ix_signal_key_digest', table_name='signal_key')


def downgrade() -> None:
    op.create_index('ix_signal_key_digest', 'signal_key', ['meldpunt_id', 'digest'], unique=False)
    op.drop_index('ix_signal_key_digest_signal', table_name='signal_key')
