"""Appending audit records to their hash chains, and verifying the chains.

Records are appended inside a write transaction: the write's own (the audit of a write commits with
the write) or a group commit of reads' records (storage/committer.py, which fails reads closed with
503 if the commit fails: AU2, never serve unaudited).

Records form hash chains in *lanes*: each transaction appends all its records, in order, to one
lane, whose head row (in `audit_chain`) it locks until it commits, so a lane never forks. SQLite
takes one writer at a time and uses one lane; on PostgreSQL each transaction takes any lane no other
transaction holds (`FOR UPDATE SKIP LOCKED` over `LANES` lanes), so concurrent writers neither wait
for each other nor fork a chain. A transaction touches one head row however many patients its
records name. (Before migration 0019 each patient had a chain of its own; those rows, with no
`chain`, still verify as they were written.) Each record names its lane in `chain`. `verify`
re-walks every chain.

Finding every record about a patient: the home partition is indexed with the record; the other
patients a record names (a search that showed several) are indexed in `audit_patient` by
housekeeping (`index_patients`), behind the trail, so the request path writes nothing more. A query
by patient reads both indexes, and scans only the records newer than the indexed watermark.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Engine, and_, bindparam, cast, func, literal, or_, select
from sqlalchemy.engine import Connection

from sharedcare.access.audit import GENESIS, AuditRecord, chain_hash
from sharedcare.storage import dialects
from sharedcare.storage.tables import audit, audit_chain, audit_patient, node_setting

LANES = 16  # PostgreSQL: lanes concurrent writers spread over (SQLite writes one at a time: lane 0)
LANE_PREFIX = "~lane:"  # head keys of lanes ("~" is never in a patient id, the pre-0019 chain keys)

# Statements compiled once per dialect and chunk size and run on the driver: their construction and
# Core's per-row parameter handling cost more than running them (see dialects.RowsStatement).
_COLUMNS = [c.name for c in audit.columns if c.name != "seq"]
_INSERT_ROWS = dialects.RowsStatement(
    lambda n, _dialect: audit.insert().values(
        [{c: bindparam(f"{c}_{i}") for c in _COLUMNS} for i in range(n)]), _COLUMNS)
_HEAD = (audit_chain.c.partition_key, audit_chain.c.last_seq, audit_chain.c.last_hash)
# PostgreSQL: any lane nobody holds, in random order (so writers spread over the lanes). The lanes
# are named one by one (a primary-key lookup whatever the collation: `audit_chain` also holds a head
# per patient from before migration 0019, which a LIKE could scan).
_FREE_LANE = dialects.Compiled(lambda _dialect: select(*_HEAD).where(
    audit_chain.c.partition_key.in_([literal(f"{LANE_PREFIX}{n:02d}") for n in range(LANES)]))
    .order_by(func.random()).limit(1).with_for_update(skip_locked=True))
_LANE = dialects.Compiled(lambda dialect: dialects.for_update(
    select(*_HEAD).where(audit_chain.c.partition_key == bindparam("lane")), dialect))
_MOVE = dialects.Compiled(lambda _dialect: audit_chain.update().where(
    audit_chain.c.partition_key == bindparam("lane")).values(
    last_seq=bindparam("last_seq"), last_hash=bindparam("last_hash")))


def lane_key(n: int) -> str:
    return f"{LANE_PREFIX}{n:02d}"


def append(conn: Connection, records: Iterable[AuditRecord]) -> None:
    """Append records, in order, to one lane's chain inside the caller's (write) transaction."""
    rows = [rec.row() for rec in records]
    if not rows:
        return
    lane, count, prev = _take_lane(conn)
    for row in rows:
        row["chain"] = lane
        row["prev_hash"] = prev
        row["hash"] = prev = chain_hash(prev, row)
    _INSERT_ROWS.execute(conn, rows)
    _MOVE.execute(conn, {"lane": lane, "last_seq": count + len(rows), "last_hash": prev})


def _take_lane(conn: Connection) -> tuple[str, int, str]:
    """Lock a lane's head for this transaction: (lane, records so far, last hash)."""
    if not dialects.is_sqlite(conn):
        free = _FREE_LANE.execute(conn, {}).first()
        if free is not None:
            return free[0], free[1], free[2]
    lane = lane_key(0 if dialects.is_sqlite(conn) else secrets.randbelow(LANES))
    head = _LANE.execute(conn, {"lane": lane}).first()
    if head is None:  # the first records since migration 0019: create every lane, then take this one
        dialects.insert_ignore(conn, audit_chain, [{"partition_key": lane_key(n), "last_seq": 0,
                                                    "last_hash": GENESIS} for n in range(LANES)])
        head = _LANE.execute(conn, {"lane": lane}).first()
    assert head is not None
    return head[0], head[1], head[2]


WATERMARK = "audit_patient_indexed"  # node_setting: every record up to this seq is in audit_patient
SETTLE_S = 60.0  # records are indexed once this old: PostgreSQL may commit a lower seq after a higher one


def _watermark() -> Any:
    return func.coalesce(select(cast(node_setting.c.value, BigInteger)).where(
        node_setting.c.name == WATERMARK).scalar_subquery(), 0)


def touches(patients: Iterable[str]) -> ColumnElement[bool]:
    """Records naming any of `patients`: their home partition, the patient index, and a scan of the
    records newer than the index's watermark."""
    ids = sorted(set(patients))
    named = [(literal(" ") + audit.c.patients + literal(" ")).contains(f" {p} ") for p in ids]
    return or_(audit.c.partition_key.in_(ids),
               audit.c.seq.in_(select(audit_patient.c.seq).where(audit_patient.c.patient_id.in_(ids))),
               and_(audit.c.seq > _watermark(), or_(*named)))


def index_patients(engine: Engine, settled_before: str, *, limit: int = 20_000) -> int:
    """Index the non-home patients of records after the watermark recorded before `settled_before`
    (a stored timestamp, SETTLE_S ago), up to `limit` records, and move the watermark past them; the
    number of records passed (0: up to date, and nothing was written). The rows are read first and
    written in one transaction only when there is something to index; two processes doing it at once
    insert the same pairs (ignored) and set the same watermark."""
    with engine.connect() as conn:
        mark = int(conn.execute(select(_watermark())).scalar_one())
        rows = conn.execute(select(audit.c.seq, audit.c.recorded, audit.c.partition_key, audit.c.patients)
                            .where(audit.c.seq > mark).order_by(audit.c.seq).limit(limit)).all()
    pairs: list[dict[str, object]] = []
    passed = 0
    for seq, recorded, home, named in rows:
        if recorded >= settled_before:
            break  # too new: a lower seq may still be committing (PostgreSQL)
        pairs += [{"patient_id": p, "seq": seq} for p in dict.fromkeys((named or "").split()) if p != home]
        mark, passed = seq, passed + 1
    if not passed:
        return 0
    with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
            conn.begin():
        if pairs:
            dialects.insert_ignore(conn, audit_patient, pairs)
        conn.execute(dialects.upsert(node_setting, ("name",), [{"name": WATERMARK, "value": str(mark)}],
                                     conn.dialect.name))
    return passed


def verify(engine: Engine) -> list[str]:
    """Re-walk every chain, oldest record first; the keys of chains that do not verify (lanes, and
    patients' chains from before migration 0019)."""
    broken: set[str] = set()
    last: dict[str, str] = {}
    with engine.connect() as conn:
        heads = {r.partition_key: r.last_hash for r in conn.execute(select(audit_chain))}
        for r in conn.execution_options(yield_per=2000).execute(select(audit).order_by(audit.c.seq)):
            row = dict(r._mapping)
            key = row["chain"]
            if key is None:  # written before lanes: chained per patient, and without the `chain` field
                key = row["partition_key"]
                del row["chain"]
            if key in broken:
                continue
            prev = last.get(key, GENESIS)
            if row["prev_hash"] != prev or chain_hash(prev, row) != row["hash"]:
                broken.add(key)
                continue
            last[key] = row["hash"]
    for key, head in heads.items():
        if last.get(key, GENESIS) != head:
            broken.add(key)
    return sorted(broken)


@dataclass(frozen=True)
class AuditFilter:
    """What an audit search asks for; every field narrows (None: no condition)."""

    agent: str | None = None
    agent_org: str | None = None
    agent_role: str | None = None
    patients: frozenset[str] | None = None  # any of these patients is among those touched
    resource: tuple[str, str] | None = None
    interactions: tuple[str, ...] | None = None
    outcome: str | None = None
    action: str | None = None
    purpose: str | None = None
    recorded: tuple[tuple[str, str], ...] = ()  # (operator, stored timestamp): ge gt le lt
    before_seq: int | None = None  # paging: newest first, strictly older than this


def _where(f: AuditFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.agent is not None:
        where.append(audit.c.agent_id == f.agent)
    if f.agent_org is not None:
        where.append(audit.c.agent_org == f.agent_org)
    if f.agent_role is not None:
        where.append(audit.c.agent_role == f.agent_role)
    if f.patients is not None:
        where.append(touches(f.patients))
    if f.resource is not None:
        where.extend([audit.c.res_type == f.resource[0], audit.c.res_id == f.resource[1]])
    if f.interactions is not None:
        where.append(audit.c.interaction.in_(list(f.interactions)))
    for column, value in (("outcome", f.outcome), ("action", f.action), ("purpose", f.purpose)):
        if value is not None:
            where.append(audit.c[column] == value)
    ops = {"ge": "__ge__", "gt": "__gt__", "le": "__le__", "lt": "__lt__"}
    for op, stamp in f.recorded:
        where.append(getattr(audit.c.recorded, ops[op])(stamp))
    if f.before_seq is not None:
        where.append(audit.c.seq < f.before_seq)
    return where


def search(engine: Engine, f: AuditFilter, count: int) -> list[dict[str, Any]]:
    """Matching audit rows, newest first, at most `count`."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit).where(*_where(f)).order_by(audit.c.seq.desc()).limit(count))
        return [dict(r._mapping) for r in rows]


def count(engine: Engine, f: AuditFilter) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit).where(*_where(f))).scalar_one())


def read(engine: Engine, seq: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(audit).where(audit.c.seq == seq)).first()
        return dict(row._mapping) if row is not None else None
