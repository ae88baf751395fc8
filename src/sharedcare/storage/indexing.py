"""Search index rows and patient-compartment membership for one resource version.

Values come from the generated extractors (`fhir.search.extract`); this module turns them into rows of
the index tables and decides which patient compartments the resource belongs to (from the R4 Patient
CompartmentDefinition: e.g. an Observation is in the compartments of its `subject` and `performer`
patients). The first compartment is the resource's home partition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Numeric, Table, bindparam, delete
from sqlalchemy.engine import Connection

from sharedcare.fhir.definitions import patient_compartment
from sharedcare.fhir.search.extract import IndexValues, extract
from sharedcare.storage import dialects
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
    refs = [(r.param, r.target_id) for r in values.references
            if r.target_type == "Patient" and r.target_id and r.url is None]
    for param in params:  # in the CompartmentDefinition's order: the first (subject/patient) is home
        for ref_param, target in refs:
            if ref_param == param and target not in out:
                out.append(target)
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
    """Delete the index and compartment rows of a resource (before its new version's are written)."""
    for stmt in _CLEAR:
        stmt.execute(conn, {"t": res_type, "i": res_id})


def _inserter(table: Table) -> Callable[[Connection, list[dict[str, Any]]], object]:
    """How rows go into `table`: multi-row INSERTs on the driver, except for tables with Numeric
    columns, whose Decimal values need the Core type's conversion (executemany through Core)."""
    if any(isinstance(c.type, Numeric) for c in table.columns):
        stmt = table.insert()
        return lambda conn, rows: conn.execute(stmt, rows)
    return dialects.insert_rows(table).execute


_INSERTS = {t.name: _inserter(t) for t in (*INDEX_TABLES, compartment)}


def _clear_statement(table: Table) -> dialects.Compiled:
    return dialects.Compiled(lambda _dialect: delete(table).where(
        table.c.res_type == bindparam("t"), table.c.res_id == bindparam("i")))


_CLEAR = [_clear_statement(t) for t in (*INDEX_TABLES, compartment)]


class PendingRows:
    """Index and compartment rows of a transaction's writes, inserted together (executemany)."""

    def __init__(self) -> None:
        self.by_table: dict[str, list[dict[str, Any]]] = {}

    def add(self, res_type: str, res_id: str, rows: IndexRows) -> None:
        for name, table_rows in rows.by_table.items():
            if table_rows:
                self.by_table.setdefault(name, []).extend(table_rows)
        if rows.patients:
            self.by_table.setdefault(compartment.name, []).extend(
                {"res_type": res_type, "res_id": res_id, "patient_id": p} for p in rows.patients)

    def discard(self, res_type: str, res_id: str) -> None:
        """Forget pending rows of a resource that is being rewritten in the same transaction."""
        for name, table_rows in self.by_table.items():
            self.by_table[name] = [r for r in table_rows if (r["res_type"], r["res_id"]) != (res_type, res_id)]

    def flush(self, conn: Connection) -> None:
        for name, table_rows in self.by_table.items():
            if table_rows:
                _INSERTS[name](conn, table_rows)
        self.by_table = {}
