"""Recompute what the access policy keeps with stored resources (`sharedcare db relabel`).

Labels, relationships and restrictions are computed when a resource is written (access/labels.py).
When the sensitive code sets change, or for a store written before the access tables existed
(migration 0015), this recomputes them for everything stored: every version's labels, and the current
version's relationships and restrictions. It runs in batches, each its own transaction, and may be
run again at any time (it writes what a fresh write would).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, delete, select, tuple_, update
from sqlalchemy.engine import Connection

from sharedcare.access import labels
from sharedcare.fhir import jsonio
from sharedcare.storage import codec, dialects, indexing
from sharedcare.storage.tables import relationship, resource, resource_history, restriction


def relabel(engine: Engine, code_sets: labels.CodeSets, *, batch: int = 500,
            progress: Callable[[int], None] | None = None) -> int:
    """Recompute every stored resource's access facts; the number of resources done."""
    done = 0
    after: tuple[str, str] = ("", "")
    while True:
        with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
                conn.begin():
            rows = conn.execute(
                select(resource.c.res_type, resource.c.res_id, resource.c.data)
                .where(tuple_(resource.c.res_type, resource.c.res_id) > tuple_(*after))
                .order_by(resource.c.res_type, resource.c.res_id).limit(batch)).all()
            if not rows:
                return done
            known: dict[str, str | None] = {}
            for r in rows:
                _relabel_one(conn, code_sets, r.res_type, r.res_id, r.data, known)
            after = (rows[-1].res_type, rows[-1].res_id)
        done += len(rows)
        if progress is not None:
            progress(len(rows))


def _relabel_one(conn: Connection, code_sets: labels.CodeSets, res_type: str, res_id: str,
                 data: bytes | None, known: dict[str, str | None]) -> None:
    for table in (relationship, restriction):
        conn.execute(delete(table).where(table.c.res_type == res_type, table.c.res_id == res_id))
    versions = conn.execute(select(resource_history.c.seq, resource_history.c.data).where(
        resource_history.c.res_type == res_type, resource_history.c.res_id == res_id,
        resource_history.c.data.is_not(None))).all()
    for v in versions:
        facts = labels.facts(jsonio.loads(codec.decode(v.data)), code_sets)
        conn.execute(update(resource_history).where(resource_history.c.seq == v.seq).values(security=facts.security))
    if data is None:
        return  # deleted: no relationships or restrictions, and no searchable current version
    doc = jsonio.loads(codec.decode(data))
    facts = labels.facts(doc, code_sets)
    facts = indexing.with_ods_keys(conn, facts, known)
    if res_type == "Organization" and (code := labels.ods_code(doc)):
        indexing.resolve_written_organisation(conn, res_id, code)
    conn.execute(update(resource).where(resource.c.res_type == res_type, resource.c.res_id == res_id)
                 .values(security=facts.security))
    rows = indexing.IndexRows()
    indexing.add_access(rows, res_type, res_id, facts)
    for name, values in rows.access.items():
        table = relationship if name == relationship.name else restriction
        if values:
            conn.execute(table.insert(), [dict(zip(table.c.keys(), v, strict=True)) for v in values])
