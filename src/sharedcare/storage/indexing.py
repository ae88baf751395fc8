"""Search index rows and patient-compartment membership for one resource version.

Values come from the generated extractors (`fhir.search.extract`); this module turns them into rows of
the index tables and decides which patient compartments the resource belongs to (from the R4 Patient
CompartmentDefinition: e.g. an Observation is in the compartments of its `subject` and `performer`
patients). The first compartment is the resource's home partition.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Numeric, Table, bindparam, delete, select, update
from sqlalchemy.engine import Connection

from sharedcare.access.labels import AccessFacts
from sharedcare.access.relationships import ODS as ODS_SYSTEM
from sharedcare.fhir.definitions import patient_compartment
from sharedcare.fhir.search import phonetic
from sharedcare.fhir.search.extract import DateValue, IndexValues, ReferenceValue, StringValue, extract
from sharedcare.storage import dialects, keys
from sharedcare.storage.tables import (
    INDEX_TABLES,
    SHARED_PARTITION,
    compartment,
    date_bucket,
    idx_composite,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    relationship,
    restriction,
)

# A row of an index table as a tuple in the table's column order: (res_type, res_id, param, ...). The
# extractor's values are NamedTuples whose fields follow the columns after res_type and res_id.
Row = tuple[Any, ...]


@dataclass
class IndexRows:
    by_table: dict[str, list[Row]] = field(default_factory=dict)
    patients: tuple[str, ...] = ()
    # Rows of the access tables (relationship, restriction): written with the index rows, but
    # without a created_seq (see access/labels.py for what they say).
    access: dict[str, list[Row]] = field(default_factory=dict)

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
    values = _keyed(extract(resource))
    key = (res_type, res_id)
    by_table: dict[str, list[Row]] = {
        idx_token.name: [key + v for v in values.tokens],
        idx_string.name: _string_rows(key, values.strings),
        idx_date.name: _date_rows(key, values.dates),
        idx_number.name: [key + v for v in values.numbers],
        idx_quantity.name: [key + v for v in values.quantities],
        idx_reference.name: [key + v for v in values.references],
        idx_uri.name: [key + v for v in values.uris],
        idx_composite.name: [key + v for v in values.composites],
    }
    return IndexRows(by_table, compartments_of(res_type, res_id, values))


_ODS_OF = dialects.Compiled(lambda _d: select(idx_token.c.code).where(
    idx_token.c.res_type == "Organization", idx_token.c.res_id == bindparam("i"), idx_token.c.param == "identifier",
    idx_token.c.system == ODS_SYSTEM).limit(1))


def ods_key(conn: Connection, organisation: str, known: dict[str, str | None]) -> str:
    """A relationship's organisation as the policy compares it: `ods:<code>`. A literal reference
    (`Organization/<id>`) is resolved through that Organization's ODS identifier (`known` first: the
    Organizations of this transaction, and earlier answers); one that cannot be resolved yet is kept as
    written, and is resolved when that Organization is written (`resolve_written_organisation`)."""
    if not organisation.startswith("Organization/"):
        return organisation
    org_id = organisation[13:]
    if org_id not in known:
        row = _ODS_OF.execute(conn, {"i": org_id}).first()
        known[org_id] = str(row[0]) if row is not None else None
    code = known[org_id]
    return f"ods:{code.upper()}" if code else organisation


def with_ods_keys(conn: Connection, facts: AccessFacts, known: dict[str, str | None]) -> AccessFacts:
    """`facts` with each relationship's organisation as `ods_key` gives it."""
    if not facts.relationships:
        return facts
    return dataclasses.replace(facts, relationships=tuple(
        dataclasses.replace(r, organisation=ods_key(conn, r.organisation, known)) for r in facts.relationships))


def resolve_written_organisation(conn: Connection, org_id: str, code: str) -> None:
    """Relationship rows stored before their Organization was: they now name its ODS code."""
    conn.execute(update(relationship).where(relationship.c.organisation == f"Organization/{org_id}")
                 .values(organisation=f"ods:{code.upper()}"))


def add_access(rows: IndexRows, res_type: str, res_id: str, facts: AccessFacts) -> None:
    """Add the relationship and restriction rows a version gives (access/labels.py)."""
    key = (res_type, res_id)
    rows.access = {
        relationship.name: [(*key, r.patient, r.organisation, r.kind, stored_instant(r.until))
                            for r in facts.relationships],
        restriction.name: [(*key, patient, kind) for patient, kind in facts.restrictions],
    }


@overload
def stored_instant(when: datetime) -> str: ...
@overload
def stored_instant(when: None) -> None: ...
def stored_instant(when: datetime | None) -> str | None:
    """A UTC instant as stored timestamps are written (fixed width, sortable as text)."""
    if when is None:
        return None
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _keyed(values: IndexValues) -> IndexValues:
    """The values with those too long for an index key made to fit (storage/keys.py). A reference
    whose type, id or version is longer than a FHIR id's 64 characters names no resource on any server: it is
    kept as its text in `url`, which is not part of any index key."""
    m = keys.KEY_MAX
    fit = keys.fit_opt
    if any(len(v.code or "") > m or len(v.system or "") > m for v in values.tokens):
        values.tokens = [v._replace(system=fit(v.system), code=fit(v.code)) for v in values.tokens]
    if any(len(v.value) > m for v in values.strings):
        values.strings = [v._replace(value=keys.fit(v.value)) for v in values.strings]
    if any(len(v.code or "") > m for v in values.quantities):
        values.quantities = [v._replace(code=fit(v.code)) for v in values.quantities]
    if any(len(v.value) > m for v in values.uris):
        values.uris = [v._replace(value=keys.fit(v.value)) for v in values.uris]
    if any(len(v.code1 or "") > m for v in values.composites):
        values.composites = [v._replace(code1=fit(v.code1)) for v in values.composites]
    if any(keys.names_no_resource(v.target_type, v.target_id, v.version) or len(v.url or "") > m
           for v in values.references):
        values.references = [_fit_reference(v) for v in values.references]
    return values


def _fit_reference(v: ReferenceValue) -> ReferenceValue:
    if keys.names_no_resource(v.target_type, v.target_id, v.version):
        return ReferenceValue(v.param, None, None, None,
                              keys.fit(reference_text(v.target_type, v.target_id, v.version, v.url)))
    return v._replace(url=keys.fit_opt(v.url))


def reference_text(target_type: str | None, target_id: str | None, version: str | None, url: str | None) -> str:
    """A reference as written, from its index row's parts."""
    text = url or "/".join(p for p in (target_type, target_id) if p)
    if version and not url:
        text += f"/_history/{version}"
    return text


def _string_rows(key: tuple[str, str], strings: list[StringValue]) -> list[Row]:
    """String rows; a `phonetic` parameter's names become one row per distinct word code (the code
    in `value`, no `exact`: see fhir/search/phonetic.py)."""
    rows: list[Row] = []
    sounds: list[str] = []
    for v in strings:
        if v.param == phonetic.PARAM:
            sounds += [c for c in map(keys.fit, phonetic.codes(v.exact or v.value)) if c not in sounds]
        else:
            rows.append(key + v)
    return rows + [(*key, phonetic.PARAM, code, None) for code in sounds]


def _date_rows(key: tuple[str, str], dates: list[DateValue]) -> list[Row]:
    several = Counter(d.param for d in dates)
    return [(*key, d.param, d.low, d.high, date_bucket(d.low, d.high, several[d.param] > 1)) for d in dates]


def clear(conn: Connection, res_type: str, res_id: str) -> None:
    """Delete the index, compartment and access rows of a resource (before its new version's are
    written): on PostgreSQL in one statement (a round trip instead of one per table), on SQLite, which
    is in the process, one statement per table."""
    if not dialects.is_sqlite(conn):
        _CLEAR_ONE_TRIP.execute(conn, {"t": res_type, "i": res_id})
        return
    for stmt in _CLEAR:
        stmt.execute(conn, {"t": res_type, "i": res_id})


def _inserter(table: Table) -> Callable[[Connection, list[Row]], object]:
    """How rows go into `table`: multi-row INSERTs on the driver. Numeric columns get the conversion
    the column's type applies for the connection's dialect (its dialect implementation's bind
    processor): none on PostgreSQL, whose NUMERIC keeps every digit of a Decimal; a float on SQLite,
    which has no decimal type (about 15 significant digits are compared there)."""
    statement = dialects.insert_rows(table)
    numeric = [i for i, c in enumerate(table.columns) if isinstance(c.type, Numeric)]
    if not numeric:
        return statement.execute_tuples
    types = [table.columns[i].type for i in numeric]

    def insert(conn: Connection, rows: list[Row]) -> object:
        processors = [t.dialect_impl(conn.dialect).bind_processor(conn.dialect) for t in types]
        if any(processors):
            converted = []
            for row in rows:
                values = list(row)
                for i, process in zip(numeric, processors, strict=True):
                    if process is not None and values[i] is not None:
                        values[i] = process(values[i])
                converted.append(tuple(values))
            rows = converted
        return statement.execute_tuples(conn, rows)
    return insert


ACCESS_TABLES = (relationship, restriction)
_INSERTS = {t.name: _inserter(t) for t in (*INDEX_TABLES, compartment, *ACCESS_TABLES)}


def _clear_statement(table: Table) -> dialects.Compiled:
    return dialects.Compiled(lambda _dialect: delete(table).where(
        table.c.res_type == bindparam("t"), table.c.res_id == bindparam("i")))


_CLEAR = [_clear_statement(t) for t in (*INDEX_TABLES, compartment, *ACCESS_TABLES)]
# A deleted resource keeps its compartment rows (its history stays in the patient's compartment) but
# no longer gives relationships or restrictions, and is found by no search.
_CLEAR_DELETED = [_clear_statement(t) for t in (*INDEX_TABLES, *ACCESS_TABLES)]


def _one_trip(tables: tuple[Table, ...]) -> dialects.Compiled:
    """DELETE from every table, as data-modifying CTEs of one statement (PostgreSQL only)."""
    def one(table: Table) -> Any:
        return delete(table).where(table.c.res_type == bindparam("t"), table.c.res_id == bindparam("i"))
    *first, last = tables
    stmt = one(last)
    for n, table in enumerate(first):
        stmt = stmt.add_cte(one(table).cte(f"d{n}"))
    return dialects.Compiled(lambda _dialect: stmt)


_CLEAR_ONE_TRIP = _one_trip((*INDEX_TABLES, compartment, *ACCESS_TABLES))


def clear_deleted(conn: Connection, res_type: str, res_id: str) -> None:
    for stmt in _CLEAR_DELETED:
        stmt.execute(conn, {"t": res_type, "i": res_id})


class PendingRows:
    """Index and compartment rows of a transaction's writes, inserted together (multi-row INSERTs).

    Index rows end with the resource's `created_seq`; a new resource's is known only once its history
    row is inserted at flush, so its rows wait until then."""

    def __init__(self) -> None:
        self.by_table: dict[str, list[Row]] = {}
        self.waiting: dict[tuple[str, str], IndexRows] = {}

    def add(self, res_type: str, res_id: str, rows: IndexRows, created_seq: int | None) -> None:
        if created_seq is None:
            self.waiting[(res_type, res_id)] = rows
        else:
            self._append(res_type, res_id, rows, created_seq)

    def _append(self, res_type: str, res_id: str, rows: IndexRows, created_seq: int) -> None:
        tail = (created_seq,)
        for name, table_rows in rows.by_table.items():
            if table_rows:
                self.by_table.setdefault(name, []).extend([r + tail for r in table_rows])
        if rows.patients:
            self.by_table.setdefault(compartment.name, []).extend((res_type, res_id, p) for p in rows.patients)
        for name, table_rows in rows.access.items():
            if table_rows:
                self.by_table.setdefault(name, []).extend(table_rows)

    def discard(self, res_type: str, res_id: str) -> None:
        """Forget pending rows of a resource that is being rewritten in the same transaction."""
        self.waiting.pop((res_type, res_id), None)
        for name, table_rows in self.by_table.items():
            self.by_table[name] = [r for r in table_rows if r[0] != res_type or r[1] != res_id]

    def settle(self, created: dict[tuple[str, str], int]) -> None:
        """Give the rows of resources first written since the last flush their created_seq."""
        for key, rows in self.waiting.items():
            self._append(key[0], key[1], rows, created[key])
        self.waiting = {}

    def flush(self, conn: Connection, created: dict[tuple[str, str], int], only_type: str | None = None) -> None:
        """Insert everything (or, with `only_type`, the rows of resources of that type, the rest kept
        for later); `created` gives the created_seq of resources first written in this flush."""
        self.settle(created)
        for name, table_rows in self.by_table.items():
            if not table_rows:
                continue
            if only_type is None:
                _INSERTS[name](conn, table_rows)
                continue
            now = [r for r in table_rows if r[0] == only_type]
            if now:
                _INSERTS[name](conn, now)
                self.by_table[name] = [r for r in table_rows if r[0] != only_type]
        if only_type is None:
            self.by_table = {}
