"""ingestion: the source registry and the inbox

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08 02:00:00

Issue 7: `feed_source` registers each sending system (ODS code, application, feeds, credentials,
expected frequency); `inbox_message` holds every inbound message from before its acknowledgement until
it is processed, idempotent by source and message key, with retries and dead letters.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'feed_source',
        sa.Column('source_id', sa.String(64), nullable=False),
        sa.Column('ods', sa.String(16), nullable=False),
        sa.Column('system', sa.String(64), nullable=True),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('feeds', sa.Text(), nullable=False),
        sa.Column('expected_minutes', sa.Integer(), nullable=True),
        sa.Column('cert_sha256', sa.String(64), nullable=True),
        sa.Column('client_id', sa.String(64), nullable=True),
        sa.Column('code_systems', sa.Text(), nullable=True),
        sa.Column('csv_mapping', sa.Text(), nullable=True),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('created', sa.String(32), nullable=False),
        sa.Column('last_received', sa.String(32), nullable=True),
        sa.Column('silence_alerted', sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint('source_id', name=op.f('pk_feed_source')),
    )
    op.create_index('ix_feed_source_ods', 'feed_source', ['ods', 'system'])
    op.create_table(
        'inbox_message',
        sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('source_id', sa.String(64), nullable=False),
        sa.Column('message_key', sa.String(200), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('received', sa.String(32), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('digest', sa.String(64), nullable=False),
        sa.Column('patient_key', sa.String(300), nullable=True),
        sa.Column('event_time', sa.String(32), nullable=True),
        sa.Column('status', sa.String(12), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt', sa.String(32), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('ack_code', sa.String(2), nullable=True),
        sa.Column('processed', sa.String(32), nullable=True),
        sa.Column('outcome', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('seq', name=op.f('pk_inbox_message')),
        sa.UniqueConstraint('source_id', 'message_key', name='uq_inbox_message_source_key'),
    )
    op.create_index('ix_inbox_message_status', 'inbox_message', ['status', 'next_attempt'])
    op.create_index('ix_inbox_message_patient', 'inbox_message', ['source_id', 'patient_key', 'status'])


def downgrade() -> None:
    op.drop_index('ix_inbox_message_patient', table_name='inbox_message')
    op.drop_index('ix_inbox_message_status', table_name='inbox_message')
    op.drop_table('inbox_message')
    op.drop_index('ix_feed_source_ods', table_name='feed_source')
    op.drop_table('feed_source')
