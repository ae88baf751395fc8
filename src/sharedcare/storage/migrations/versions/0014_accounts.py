"""local sign-in accounts

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 18:40:00

Accounts for the embedded default and the demo (issue 5): the username, whether staff or patient,
the argon2id hash of the password (never the password), a patient's NHS number, and each staff
account's role profiles (an SDS job role held at an ODS organisation).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'account',
        sa.Column('username', sa.String(200), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=False),
        sa.Column('nhs_number', sa.String(10), nullable=True),
        sa.Column('created', sa.String(32), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('username', name=op.f('pk_account')),
    )
    op.create_table(
        'account_role',
        sa.Column('username', sa.String(200), nullable=False),
        sa.Column('organisation', sa.String(32), nullable=False),
        sa.Column('job_role', sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint('username', 'organisation', 'job_role', name=op.f('pk_account_role')),
    )


def downgrade() -> None:
    op.drop_table('account_role')
    op.drop_table('account')
