"""the master patient index: records, persons, links, link history and the review queue

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29 04:30:00

Issue 6: each source Patient is linked to a person. `mpi_record` holds what the matcher compares and
the blocking keys; `mpi_person`, `mpi_link` and `mpi_link_history` the persons and every change to
their links; `mpi_review` the possible matches for staff to decide. Patients already stored are
indexed and linked here, oldest first, as if they had just arrived (storage/mpi_store.rebuild).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mpi_record',
        sa.Column('res_id', sa.String(64), nullable=False),
        sa.Column('node', sa.String(64), nullable=False),
        sa.Column('features', sa.Text(), nullable=False),
        sa.Column('restricted', sa.Boolean(), nullable=False),
        sa.Column('k_nhs', sa.String(10), nullable=True),
        sa.Column('k_birth_sound', sa.String(160), nullable=True),
        sa.Column('k_birth_given', sa.String(160), nullable=True),
        sa.Column('k_name', sa.String(160), nullable=True),
        sa.Column('k_place', sa.String(160), nullable=True),
        sa.Column('updated', sa.String(32), nullable=False),
        sa.Column('pds_status', sa.String(16), nullable=True),
        sa.Column('pds_number', sa.String(10), nullable=True),
        sa.Column('pds_checked', sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint('res_id', name=op.f('pk_mpi_record')),
    )
    for column in ('k_nhs', 'k_birth_sound', 'k_birth_given', 'k_name', 'k_place', 'pds_checked'):
        op.create_index(f'ix_mpi_record_{column}', 'mpi_record', [column])
    op.create_table(
        'mpi_person',
        sa.Column('person_id', sa.String(36), nullable=False),
        sa.Column('created', sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint('person_id', name=op.f('pk_mpi_person')),
    )
    op.create_table(
        'mpi_link',
        sa.Column('res_id', sa.String(64), nullable=False),
        sa.Column('person_id', sa.String(36), nullable=False),
        sa.Column('how', sa.String(16), nullable=False),
        sa.Column('grade', sa.String(16), nullable=False),
        sa.Column('score', sa.Float(), nullable=True),
        sa.Column('agent_id', sa.Text(), nullable=False),
        sa.Column('linked', sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint('res_id', name=op.f('pk_mpi_link')),
    )
    op.create_index('ix_mpi_link_person', 'mpi_link', ['person_id'])
    op.create_table(
        'mpi_link_history',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('change_id', sa.String(36), nullable=False),
        sa.Column('event', sa.String(24), nullable=False),
        sa.Column('res_id', sa.String(64), nullable=False),
        sa.Column('old_person', sa.String(36), nullable=True),
        sa.Column('new_person', sa.String(36), nullable=True),
        sa.Column('old_how', sa.String(16), nullable=True),
        sa.Column('new_how', sa.String(16), nullable=True),
        sa.Column('agent_id', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('at', sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_mpi_link_history')),
    )
    op.create_index('ix_mpi_link_history_change', 'mpi_link_history', ['change_id'])
    op.create_index('ix_mpi_link_history_res', 'mpi_link_history', ['res_id', 'seq'])
    op.create_table(
        'mpi_review',
        sa.Column('review_id', sa.String(36), nullable=False),
        sa.Column('res_id', sa.String(64), nullable=False),
        sa.Column('other_id', sa.String(64), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('grade', sa.String(16), nullable=False),
        sa.Column('held_back', sa.Text(), nullable=True),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('created', sa.String(32), nullable=False),
        sa.Column('decided_by', sa.Text(), nullable=True),
        sa.Column('decided', sa.String(32), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('review_id', name=op.f('pk_mpi_review')),
    )
    op.create_index('ix_mpi_review_status', 'mpi_review', ['status', 'created'])
    op.create_index('ix_mpi_review_res', 'mpi_review', ['res_id'])
    op.create_index('ix_mpi_review_other', 'mpi_review', ['other_id'])

    from sharedcare.settings import get_settings
    from sharedcare.storage import mpi_store

    mpi_store.rebuild(op.get_bind(), node=get_settings().node_id)


def downgrade() -> None:
    for table in ('mpi_review', 'mpi_link_history', 'mpi_link', 'mpi_person', 'mpi_record'):
        op.drop_table(table)
