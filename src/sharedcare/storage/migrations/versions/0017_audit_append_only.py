"""the audit trail is append-only in the database itself

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 20:55:00

Safety property 3 and security case AU3: no path of the application changes or deletes an audit
record, and now the database refuses it too: triggers abort any UPDATE or DELETE of `audit` rows, so
a bug, an injected statement or a person with the application's database login cannot rewrite who
looked. (The hash chains still show tampering by someone who drops the triggers; a retention job
that must remove old records drops and re-creates them deliberately, as an audited change.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

MESSAGE = "the audit trail is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(sa.text(
                f"CREATE TRIGGER audit_no_{event.lower()} BEFORE {event} ON audit "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"))
        return
    op.execute(sa.text(
        "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; END $$"))
    op.execute(sa.text(
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("update", "delete"):
            op.execute(sa.text(f"DROP TRIGGER audit_no_{event}"))
        return
    op.execute(sa.text("DROP TRIGGER audit_append_only ON audit"))
    op.execute(sa.text("DROP FUNCTION audit_append_only()"))
