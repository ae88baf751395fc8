"""audit records are hash-chained in lanes, not one chain per patient

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28 23:00:00

A transaction appended each record to its patient's chain: a group commit of 32 reads of 32 patients
locked, and rewrote, 32 chain heads scattered through `audit_chain` (a table as big as the patient
population). Now a transaction appends all its records to one lane (storage/audit_store.py) and each
record names its lane in the new `chain` column; the lanes' heads are created here. Existing records
keep their per-patient chains (`chain` is NULL) and still verify; their heads stay in `audit_chain`.
Adding a column does not touch the rows, so the append-only triggers of 0017 are not involved.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


LANES = 16  # as storage/audit_store.LANES when this was written
GENESIS = "0" * 64


def upgrade() -> None:
    op.add_column('audit', sa.Column('chain', sa.String(16), nullable=True))
    # The lanes' heads exist from the start, so concurrent first writers find them (none creates them).
    heads = sa.table('audit_chain', sa.column('partition_key', sa.String), sa.column('last_seq', sa.BigInteger),
                     sa.column('last_hash', sa.String))
    op.bulk_insert(heads, [{"partition_key": f"~lane:{n:02d}", "last_seq": 0, "last_hash": GENESIS}
                           for n in range(LANES)])


def downgrade() -> None:
    raise NotImplementedError("records chained in lanes cannot be put back into per-patient chains")
