"""who members of staff are as people, for own- and family-record alerts

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28 22:45:00

Issue 5 item 9: privacy officers are alerted when staff look at their own record or a family
member's (same surname and address). That needs each member of staff's NHS number, family name and
postcode, recorded by `sharedcare users person` from the organisation's records.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'staff_person',
        sa.Column('agent_id', sa.String(400), nullable=False),
        sa.Column('nhs_number', sa.String(10), nullable=True),
        sa.Column('family_name', sa.String(200), nullable=True),
        sa.Column('postcode', sa.String(16), nullable=True),
        sa.Column('updated', sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_staff_person')),
    )


def downgrade() -> None:
    op.drop_table('staff_person')
