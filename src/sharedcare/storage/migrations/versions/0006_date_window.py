"""date windows found month by month

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 10:30:00

Each date row gets a `bucket` (see `tables.idx_date`): its month when its range starts and ends in
that month and it is its resource's only value for the parameter, "L" when it crosses a month, "M"
when the resource has several values for the parameter. Filled here for the rows already stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The same buckets as `tables.date_bucket` gives rows as they are written (a test holds them equal).
FILL = ("UPDATE idx_date SET bucket = CASE "
        "WHEN (SELECT count(*) FROM idx_date d WHERE d.res_type = idx_date.res_type "
        "AND d.res_id = idx_date.res_id AND d.param = idx_date.param) > 1 THEN 'M' "
        "WHEN substr(low, 1, 7) = substr(high, 1, 7) THEN substr(low, 1, 7) ELSE 'L' END")


def upgrade() -> None:
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bucket', sa.String(length=8), nullable=True))
    op.execute(sa.text(FILL))
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_window', ['res_type', 'param', 'bucket', 'created_seq', 'low', 'high'],
                              unique=False)
    # Statistics for the new index: without them SQLite's planner may scan it whole (seen: a chained
    # search's join read every Observation token row).
    op.execute(sa.text('ANALYZE idx_date'))


def downgrade() -> None:
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_window')
        batch_op.drop_column('bucket')
