"""instants with four-digit years

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 12:30:00

Dates before the year 1000 were indexed with short years ("999-01-01T..."), which sort after
"2020-..." as text, so date searches compared them wrongly. Such rows get their years padded to
four digits (as `query.instant_text` now writes them), and a date row's window bucket follows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COLUMNS = {"idx_date": ("low", "high"), "idx_composite": ("low2", "high2")}


def _padded(column: str, position: str) -> str:
    """SQL: the column with its year padded to four digits (the year ends at the first '-')."""
    return (f"CASE {position} WHEN 2 THEN '000' || {column} WHEN 3 THEN '00' || {column} "
            f"WHEN 4 THEN '0' || {column} ELSE {column} END")


def statements(dialect: str) -> list[str]:
    """The updates, in order (a test runs them on rows written the old way)."""
    find = "instr({c}, '-')" if dialect == "sqlite" else "strpos({c}, '-')"
    out = []
    for table, columns in COLUMNS.items():
        for column in columns:
            pos = find.format(c=column)
            out.append(f"UPDATE {table} SET {column} = {_padded(column, pos)} "  # noqa: S608 (fixed names)
                       f"WHERE {pos} BETWEEN 2 AND 4")
    out.append("UPDATE idx_date SET bucket = substr(low, 1, 7) WHERE bucket NOT IN ('L', 'M') "
               "AND bucket <> substr(low, 1, 7)")
    return out


def upgrade() -> None:
    for statement in statements(op.get_bind().dialect.name):
        op.execute(sa.text(statement))


def downgrade() -> None:
    pass  # padded years are as valid for the older code
