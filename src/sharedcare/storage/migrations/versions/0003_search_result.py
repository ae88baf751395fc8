"""sorted search results kept for paging

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('search_result',
    sa.Column('search_id', sa.String(length=36), nullable=False),
    sa.Column('pos', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('created', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('search_id', 'pos', name=op.f('pk_search_result'))
    )
    with op.batch_alter_table('search_result', schema=None) as batch_op:
        batch_op.create_index('ix_search_result_created', ['created'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('search_result', schema=None) as batch_op:
        batch_op.drop_index('ix_search_result_created')
    op.drop_table('search_result')
