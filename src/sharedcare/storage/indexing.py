"""Search index rows and patient-compartment membership for one resource version.

Values come from the generated extractors (`fhir.search.extract`); this module turns them into rows of
the index tables and decides which patient compartments the resource belongs to (from the R4 Patient
CompartmentDefinition: e.g. an Observation is in the compartments of its `subject` and `performer`
patients). The first compartment is the resource's home partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Connection

from sharedcare.fhir.definitions import patient_compartment
from sharedcare.fhir.search.extract import IndexValues, extract
from sharedcare.storage.tables import (
    INDEX_TABLES,
    SHARED_PARTITION,
    compartment,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
)


@dataclass
class IndexRows:
    by_table: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    patients: tuple[str, ...] = ()

    @property
    def partition_key(self) -> str:
        return self.patients[0] if self.patients else SHARED_PARTITION


def compartments_of(res_type: str, res_id: str, values: IndexValues) -> tuple[str, ...]:
    """Patient ids whose compartment holds this resource, home compartment first."""
    # A Patient is in its own compartment (and those of patients it links to).
    out = [res_id] if res_type == "Patient" else []
    params = patient_compartment().get(res_type, ())
    refs = [r for r in values.references if r.target_type == "Patient" and r.target_id and r.url is None]
    for param in params:  # in the CompartmentDefinition's order: the first (subject/patient) is home
        for ref in refs:
            if ref.param == param and ref.target_id not in out:
                out.append(ref.target_id)
    return tuple(out)


def rows_for(res_type: str, res_id: str, resource: dict[str, Any]) -> IndexRows:
    values = extract(resource)
    key = {"res_type": res_type, "res_id": res_id}
    by_table: dict[str, list[dict[str, Any]]] = {
        idx_token.name: [
            {**key, "param": t.param, "system": t.system, "code": t.code, "text": t.text,
             "type_system": t.type_system, "type_code": t.type_code}
            for t in values.tokens
        ],
        idx_string.name: [{**key, "param": s.param, "value": s.value, "exact": s.exact} for s in values.strings],
        idx_date.name: [{**key, "param": d.param, "low": d.low, "high": d.high} for d in values.dates],
        idx_number.name: [{**key, "param": n.param, "value": n.value} for n in values.numbers],
        idx_quantity.name: [
            {**key, "param": q.param, "value": q.value, "system": q.system, "code": q.code, "unit": q.unit}
            for q in values.quantities
        ],
        idx_reference.name: [
            {**key, "param": r.param, "target_type": r.target_type, "target_id": r.target_id,
             "version": r.version, "url": r.url}
            for r in values.references
        ],
        idx_uri.name: [{**key, "param": u.param, "value": u.value} for u in values.uris],
    }
    return IndexRows(by_table, compartments_of(res_type, res_id, values))


def clear(conn: Connection, res_type: str, res_id: str) -> None:
    for table in INDEX_TABLES:
        conn.execute(delete(table).where(table.c.res_type == res_type, table.c.res_id == res_id))
    conn.execute(delete(compartment).where(compartment.c.res_type == res_type, compartment.c.res_id == res_id))


def write(conn: Connection, res_type: str, res_id: str, rows: IndexRows) -> None:
    tables = {t.name: t for t in INDEX_TABLES}
    for name, table_rows in rows.by_table.items():
        if table_rows:
            conn.execute(tables[name].insert(), table_rows)
    if rows.patients:
        conn.execute(compartment.insert(),
                     [{"res_type": res_type, "res_id": res_id, "patient_id": p} for p in rows.patients])
