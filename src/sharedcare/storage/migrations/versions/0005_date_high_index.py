"""dates found by the end of their range too

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 08:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_high', ['res_type', 'param', 'high'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_high')
