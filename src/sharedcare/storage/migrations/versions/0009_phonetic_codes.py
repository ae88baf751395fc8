"""phonetic parameters indexed by sound

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 13:00:00

The `phonetic` parameters (Patient, Person, Practitioner, RelatedPerson, Organization, InsurancePlan)
were indexed and searched as plain strings. Their rows now hold one Metaphone code per distinct
word of the resource's names, with no `exact` (fhir/search/phonetic.py). Rows written the old way
(they have `exact`) are re-encoded from their `exact` text, a chunk of resources at a time; rows in
the new form are left alone, so running it twice changes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

PARAM = "phonetic"
CHUNK = 5_000  # resources per step

_rows = sa.table("idx_string", sa.column("res_type"), sa.column("res_id"), sa.column("param"),
                 sa.column("value"), sa.column("exact"), sa.column("created_seq"))


def recode(conn: Any) -> int:
    """Re-encode the old-form rows; returns how many resources were re-encoded."""
    from sharedcare.fhir.search.phonetic import codes

    old = sa.and_(_rows.c.param == PARAM, _rows.c.exact.is_not(None))
    types = [r[0] for r in conn.execute(sa.select(_rows.c.res_type).where(old).distinct())]
    done = 0
    for res_type in types:
        last = ""
        while True:
            ids = [r[0] for r in conn.execute(
                sa.select(_rows.c.res_id).where(old, _rows.c.res_type == res_type, _rows.c.res_id > last)
                .group_by(_rows.c.res_id).order_by(_rows.c.res_id).limit(CHUNK))]
            if not ids:
                break
            span = sa.and_(old, _rows.c.res_type == res_type, _rows.c.res_id > last, _rows.c.res_id <= ids[-1])
            found: dict[str, tuple[list[str], Any]] = {}
            for res_id, exact, seq in conn.execute(sa.select(_rows.c.res_id, _rows.c.exact, _rows.c.created_seq)
                                                   .where(span).order_by(_rows.c.res_id)):
                got, _ = found.setdefault(res_id, ([], seq))
                got += [c for c in codes(exact) if c not in got]
            conn.execute(_rows.delete().where(span))
            new = [{"res_type": res_type, "res_id": res_id, "param": PARAM, "value": code, "exact": None,
                    "created_seq": seq} for res_id, (got, seq) in found.items() for code in got]
            if new:
                conn.execute(_rows.insert(), new)
            done += len(found)
            last = ids[-1]
    return done


def upgrade() -> None:
    recode(op.get_bind())


def downgrade() -> None:
    pass  # the older code would search these rows as names (no match); upgrade again to use them
