"""a resource's token rows tested from the index alone

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 11:40:00

`ix_idx_token_resource` gains `param` and `code`: a token criterion tested on one resource (e.g.
the code of each observation of the patients a chain names) no longer reads every token row of it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_resource')
        batch_op.create_index('ix_idx_token_resource', ['res_type', 'res_id', 'param', 'code'], unique=False)
    # Statistics for the new index: without them SQLite's planner may scan it whole (seen: a chained
    # search's join read every Observation token row).
    op.execute(sa.text('ANALYZE idx_token'))


def downgrade() -> None:
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_resource')
        batch_op.create_index('ix_idx_token_resource', ['res_type', 'res_id'], unique=False)
