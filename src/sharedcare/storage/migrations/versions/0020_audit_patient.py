"""an index of the patients audit records name besides their home partition

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-28 23:30:00

A search's audit record names every patient whose data the page showed; only the first (its home
partition) was indexed, so finding every look at a patient (a patient's "who accessed my record", a
privacy officer's search by patient) scanned the whole trail's `patients` column. `audit_patient`
holds the others, filled by housekeeping behind the trail; records newer than its watermark are
scanned (a short tail). Existing records are indexed by the first housekeeping rounds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_patient',
        sa.Column('patient_id', sa.String(64), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('patient_id', 'seq', name=op.f('pk_audit_patient')),
    )


def downgrade() -> None:
    op.drop_table('audit_patient')
