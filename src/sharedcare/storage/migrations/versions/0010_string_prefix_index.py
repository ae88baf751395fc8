"""string prefixes found through the index on PostgreSQL

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 13:30:00

A string search is a prefix match (`family=smi` is `value LIKE 'smi%'`). PostgreSQL compares text
by the database collation, in whose order the values starting with a prefix need not be together,
so it cannot use an ordinary B-tree for LIKE and read every row of the parameter instead (every
patient's family name, for each search by name and each chain through one). The lookup index is
rebuilt there with `text_pattern_ops` on `value`, which orders by character and serves LIKE
prefixes and equality alike. SQLite already finds prefixes by range (`dialects.prefix_bounds`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index('ix_idx_string_lookup', table_name='idx_string')
    op.create_index('ix_idx_string_lookup', 'idx_string', ['res_type', 'param', 'value', 'created_seq'],
                    unique=False, postgresql_ops={'value': 'text_pattern_ops'})
    op.execute(sa.text('ANALYZE idx_string'))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index('ix_idx_string_lookup', table_name='idx_string')
    op.create_index('ix_idx_string_lookup', 'idx_string', ['res_type', 'param', 'value', 'created_seq'],
                    unique=False)
