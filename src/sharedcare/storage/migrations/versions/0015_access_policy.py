"""access policy tables

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 19:40:00

What the access policy joins on inside every query (issue 5): the organisation whose system wrote each
resource version (`source_org`), legitimate relationships and restrictions derived from resources at
write time, and the access staff assert themselves (declared relationships, break-glass).
Existing rows get no relationships or restrictions until rewritten: `sharedcare db relabel`
derives them for a store written before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('resource', sa.Column('source_org', sa.String(32), nullable=True))
    op.add_column('resource_history', sa.Column('source_org', sa.String(32), nullable=True))
    op.create_table(
        'relationship',
        sa.Column('res_type', sa.String(64), nullable=False),
        sa.Column('res_id', sa.String(64), nullable=False),
        sa.Column('patient_id', sa.String(64), nullable=False),
        sa.Column('organisation', sa.String(80), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('until', sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint('res_type', 'res_id', 'patient_id', 'organisation', 'kind',
                                name=op.f('pk_relationship')),
    )
    op.create_index('ix_relationship_patient', 'relationship', ['patient_id', 'organisation', 'until'])
    op.create_index('ix_relationship_organisation', 'relationship', ['organisation'])
    op.create_table(
        'restriction',
        sa.Column('res_type', sa.String(64), nullable=False),
        sa.Column('res_id', sa.String(64), nullable=False),
        sa.Column('patient_id', sa.String(64), nullable=False),
        sa.Column('kind', sa.String(24), nullable=False),
        sa.PrimaryKeyConstraint('patient_id', 'kind', 'res_type', 'res_id', name=op.f('pk_restriction')),
    )
    op.create_index('ix_restriction_resource', 'restriction', ['res_type', 'res_id'])
    op.create_table(
        'access_grant',
        sa.Column('grant_id', sa.String(36), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('agent_id', sa.Text(), nullable=False),
        sa.Column('organisation', sa.String(32), nullable=False),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('patient_id', sa.String(64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created', sa.String(32), nullable=False),
        sa.Column('until', sa.String(32), nullable=False),
        sa.Column('ended', sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint('grant_id', name=op.f('pk_access_grant')),
    )
    op.create_index('ix_access_grant_agent', 'access_grant', ['agent_id', 'patient_id', 'until'])
    op.create_index('ix_access_grant_created', 'access_grant', ['created'])


def downgrade() -> None:
    op.drop_table('access_grant')
    op.drop_table('restriction')
    op.drop_table('relationship')
    op.drop_column('resource_history', 'source_org')
    op.drop_column('resource', 'source_org')
