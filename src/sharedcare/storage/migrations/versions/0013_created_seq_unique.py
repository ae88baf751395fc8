"""one resource per search order key

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28 16:40:00

Search pages find their resources by (res_type, created_seq) since migration 0012: the key is the
history sequence number of each resource's first version, so no two resources share it. The index
on it becomes UNIQUE so that the database itself guarantees what a page's join relies on (two rows
with one key would put another resource on a page in place of the one that matched).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def _rebuild(unique: bool) -> None:
    op.drop_index('ix_resource_type_created', table_name='resource')
    op.create_index('ix_resource_type_created', 'resource', ['res_type', 'created_seq'], unique=unique)
    op.execute(sa.text('ANALYZE resource'))


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
