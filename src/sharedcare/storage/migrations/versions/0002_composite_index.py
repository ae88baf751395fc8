"""composite search index; token text normalised for :text

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 07:20:00

Adds the index table of composite search parameters and fills it for the resources already stored
(from their stored JSON, with the same extractor writes use), and rewrites the text of token rows in
the normalised form `:text` searches compare with.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idx_composite',
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('param', sa.String(length=100), nullable=False),
    sa.Column('system1', sa.Text(), nullable=True),
    sa.Column('code1', sa.Text(), nullable=True),
    sa.Column('system2', sa.Text(), nullable=True),
    sa.Column('code2', sa.Text(), nullable=True),
    sa.Column('text2', sa.Text(), nullable=True),
    sa.Column('number2', sa.Numeric(asdecimal=True), nullable=True),
    sa.Column('low2', sa.String(length=32), nullable=True),
    sa.Column('high2', sa.String(length=32), nullable=True),
    sa.Column('number3', sa.Numeric(asdecimal=True), nullable=True)
    )
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.create_index('ix_idx_composite_lookup', ['res_type', 'param', 'code1'], unique=False)
        batch_op.create_index('ix_idx_composite_resource', ['res_type', 'res_id'], unique=False)
    _fill_composites()
    _normalise_token_text()


def _fill_composites() -> None:
    from sharedcare.fhir import jsonio
    from sharedcare.fhir.search.extract import IndexValues, composites_for, extract_composites
    from sharedcare.storage.tables import idx_composite

    conn = op.get_bind()
    for res_type in [t for t in _resource_types(conn) if composites_for(t)]:
        rows = conn.execute(sa.text("SELECT res_id, data FROM resource WHERE res_type = :t AND deleted = :f"),
                            {"t": res_type, "f": False}).all()
        batch: list[dict[str, object]] = []
        for res_id, data in rows:
            out = IndexValues()
            extract_composites(jsonio.loads(bytes(data)), res_type, out)
            batch += [{"res_type": res_type, "res_id": res_id, **v._asdict()} for v in dict.fromkeys(out.composites)]
            if len(batch) >= 1000:
                conn.execute(idx_composite.insert(), batch)
                batch = []
        if batch:
            conn.execute(idx_composite.insert(), batch)


def _resource_types(conn: sa.engine.Connection) -> list[str]:
    return [r[0] for r in conn.execute(sa.text("SELECT DISTINCT res_type FROM resource"))]


def _normalise_token_text() -> None:
    from sharedcare.fhir.search.extract import normalise

    conn = op.get_bind()
    for (text,) in conn.execute(sa.text("SELECT DISTINCT text FROM idx_token WHERE text IS NOT NULL")).all():
        if normalise(text) != text:
            conn.execute(sa.text("UPDATE idx_token SET text = :n WHERE text = :t"), {"n": normalise(text), "t": text})


def downgrade() -> None:
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_composite_resource')
        batch_op.drop_index('ix_idx_composite_lookup')
    op.drop_table('idx_composite')
