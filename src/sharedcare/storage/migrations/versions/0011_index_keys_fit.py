"""index keys of any length

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 15:30:00

Index columns now hold values of more than 200 characters in a keyed form (storage/keys.py), and a
reference whose type, id or version is longer than a FHIR id's 64 characters as its text in `url`
(storage/indexing.py). Searches look long values up in that form, so rows written before are
re-keyed here. PostgreSQL refused such values in indexed columns (an index entry over its size
limit, a value over a VARCHAR(64)), so there only `url`, not indexed until migration 0012, can hold
them; SQLite accepted them everywhere. Keyed values are at most 200 characters, so running it twice
changes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

KEYED = {"idx_token": ("system", "code"), "idx_string": ("value",), "idx_quantity": ("code",),
         "idx_uri": ("value",), "idx_composite": ("code1",), "idx_reference": ("url",)}
ID = 64


def _row(name: str, *columns: str) -> Any:
    return sa.table(name, sa.column("res_type"), sa.column("res_id"), sa.column("param"),
                    *(sa.column(c) for c in columns))


def rekey(conn: Any) -> int:
    """Re-key the long values; returns how many rows changed."""
    from sharedcare.storage.indexing import reference_text
    from sharedcare.storage.keys import KEY_MAX, fit

    changed = 0
    sqlite = conn.dialect.name == "sqlite"
    r = _row("idx_reference", "target_type", "target_id", "version", "url")
    if sqlite:  # references too long to name a resource: their text goes to `url`
        for row in conn.execute(sa.select(r).where(sa.or_(
                sa.func.length(r.c.target_type) > ID, sa.func.length(r.c.target_id) > ID,
                sa.func.length(r.c.version) > ID))).all():
            conn.execute(r.update().where(*_same(r, row, ("target_type", "target_id", "version", "url"))).values(
                target_type=None, target_id=None, version=None,
                url=reference_text(row.target_type, row.target_id, row.version, row.url)))  # keyed below
            changed += 1
    for name, columns in KEYED.items():
        if not sqlite and name != "idx_reference":
            continue
        for column in columns:
            t = _row(name, column)
            for row in conn.execute(sa.select(t).where(sa.func.length(t.c[column]) > KEY_MAX)).all():
                conn.execute(t.update().where(*_same(t, row, (column,))).values({column: fit(row[3])}))
                changed += 1
    return changed


def _same(t: Any, row: Any, columns: tuple[str, ...]) -> list[Any]:
    key = [t.c.res_type == row.res_type, t.c.res_id == row.res_id, t.c.param == row.param]
    return key + [t.c[c].is_(None) if getattr(row, c) is None else t.c[c] == getattr(row, c) for c in columns]


def upgrade() -> None:
    rekey(op.get_bind())


def downgrade() -> None:
    pass  # keyed rows are still valid rows; the older code would only miss long values, as before
