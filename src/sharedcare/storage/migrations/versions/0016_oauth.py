"""SMART on FHIR clients, tokens, authorization codes and web sessions

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 19:45:00

Clients (system and app), issued tokens and one-use authorization codes, and web sign-in sessions
(issue 5). Every secret handed out (client secrets, tokens, codes, session cookies) is kept only as
its SHA-256 hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'oauth_client',
        sa.Column('client_id', sa.String(64), nullable=False),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('auth_method', sa.String(32), nullable=False),
        sa.Column('secret_hash', sa.String(64), nullable=True),
        sa.Column('jwks', sa.Text(), nullable=True),
        sa.Column('redirect_uris', sa.Text(), nullable=True),
        sa.Column('scope', sa.Text(), nullable=False),
        sa.Column('organisation', sa.String(32), nullable=True),
        sa.Column('created', sa.String(32), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('client_id', name=op.f('pk_oauth_client')),
    )
    op.create_table(
        'oauth_token',
        sa.Column('token_hash', sa.String(64), nullable=False),
        sa.Column('kind', sa.String(8), nullable=False),
        sa.Column('family', sa.String(36), nullable=False),
        sa.Column('client_id', sa.String(64), nullable=False),
        sa.Column('scope', sa.Text(), nullable=False),
        sa.Column('context', sa.Text(), nullable=False),
        sa.Column('issued', sa.String(32), nullable=False),
        sa.Column('expires', sa.String(32), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.Column('used', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_oauth_token')),
    )
    op.create_index('ix_oauth_token_family', 'oauth_token', ['family'])
    op.create_index('ix_oauth_token_expires', 'oauth_token', ['expires'])
    op.create_table(
        'oauth_code',
        sa.Column('code_hash', sa.String(64), nullable=False),
        sa.Column('client_id', sa.String(64), nullable=False),
        sa.Column('redirect_uri', sa.Text(), nullable=False),
        sa.Column('code_challenge', sa.String(128), nullable=False),
        sa.Column('scope', sa.Text(), nullable=False),
        sa.Column('context', sa.Text(), nullable=False),
        sa.Column('expires', sa.String(32), nullable=False),
        sa.Column('used', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_oauth_code')),
    )
    op.create_table(
        'web_session',
        sa.Column('session_hash', sa.String(64), nullable=False),
        sa.Column('username', sa.String(200), nullable=False),
        sa.Column('context', sa.Text(), nullable=False),
        sa.Column('csrf', sa.String(64), nullable=False),
        sa.Column('created', sa.String(32), nullable=False),
        sa.Column('expires', sa.String(32), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('session_hash', name=op.f('pk_web_session')),
    )
    op.create_index('ix_web_session_expires', 'web_session', ['expires'])


def downgrade() -> None:
    op.drop_table('web_session')
    op.drop_table('oauth_code')
    op.drop_table('oauth_token')
    op.drop_table('oauth_client')
