"""The SQL the translation of sources' local codes needs (the service is ingest/concept_maps.py).

Two reads, neither of a patient's data: a cheap stamp that changes whenever any ConceptMap is written
(so a cache of the maps knows when to reload), and the current ConceptMaps a search finds, with the
organisation whose system wrote each (none: the node itself, for an administrator's command).

The maps are read through the caller's policy clause like any search, but not audited one by one:
they are directory resources about no patient, read by the node for its own processing (as it reads
the source registry), served to nobody. Every write of a ConceptMap goes through the Repository and
is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from sharedcare.fhir.search.query import SearchQuery
from sharedcare.storage import codec, dialects, search
from sharedcare.storage.search import Visible
from sharedcare.storage.tables import resource, resource_history

CONCEPT_MAP = "ConceptMap"
_LIMIT = 1000  # maps one source may have applied; far more than any source needs


@dataclass(frozen=True)
class StoredMap:
    res_id: str
    version_id: int
    data: bytes  # the JSON as stored
    source_org: str | None  # ODS code of the organisation whose system wrote it; None: the node


def stamp(engine: Engine) -> tuple[int, int]:
    """(how many versions of ConceptMaps are stored, the latest one's sequence number): any create,
    update or delete of a ConceptMap changes it once committed. The count matters on PostgreSQL, where
    a transaction may commit a history row numbered below one committed before it."""
    h = resource_history
    with engine.connect().execution_options(**dialects.read_options(engine)) as conn:
        row = conn.execute(select(func.count(), func.coalesce(func.max(h.c.seq), 0))
                           .where(h.c.res_type == CONCEPT_MAP)).one()
    return int(row[0]), int(row[1])


def current(engine: Engine, query: SearchQuery, visible: Visible) -> list[StoredMap]:
    """The current (not deleted) ConceptMaps matching `query`'s criteria that `visible` lets through,
    oldest first."""
    assert query.res_type == CONCEPT_MAP
    with engine.connect().execution_options(**dialects.read_options(engine)) as conn:
        ctx = search.Context(conn, visible)
        stmt = (select(resource.c.res_id, resource.c.version_id, resource.c.data, resource.c.source_org)
                .where(visible(resource), *search.criteria_clause(query, ctx))
                .order_by(resource.c.created_seq).limit(_LIMIT))
        return [StoredMap(r.res_id, r.version_id, codec.decode(r.data), r.source_org)
                for r in conn.execute(stmt) if r.data is not None]
