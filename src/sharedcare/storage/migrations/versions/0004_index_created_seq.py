"""search order key in the index tables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 07:50:00

Every index row gets its resource's `created_seq` (the search order), filled for the rows already
stored, and each lookup index ends with it, so a lookup by value returns matches in search order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

LOOKUPS = {
    "idx_token": ["code"], "idx_string": ["value"], "idx_date": ["low", "high"], "idx_number": ["value"],
    "idx_quantity": ["code", "value"], "idx_reference": ["target_id"], "idx_uri": ["value"],
    "idx_composite": ["code1"],
}


def upgrade() -> None:
    for table, lookup in LOOKUPS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('created_seq', sa.BigInteger(), nullable=True))
            batch_op.drop_index(f'ix_{table}_lookup')
        op.execute(sa.text(
            f"UPDATE {table} SET created_seq = (SELECT r.created_seq FROM resource r "  # noqa: S608 (fixed names)
            f"WHERE r.res_type = {table}.res_type AND r.res_id = {table}.res_id)"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_lookup', ['res_type', 'param', *lookup, 'created_seq'], unique=False)


def downgrade() -> None:
    for table, lookup in LOOKUPS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_lookup')
            batch_op.create_index(f'ix_{table}_lookup', ['res_type', 'param', *lookup], unique=False)
            batch_op.drop_column('created_seq')
