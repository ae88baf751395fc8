"""Appending audit records to their hash chains, and verifying the chains.

Records are appended inside a write transaction: the write's own (the audit of a write commits with
the write) or a group commit of reads' records (storage/committer.py, which fails reads closed with
503 if the commit fails: AU2, never serve unaudited).

Each partition's records form a hash chain: the chain head row is locked while a batch is appended,
so concurrent writers (several processes on PostgreSQL) cannot fork a chain. `verify` re-walks chains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, bindparam, func, literal, or_, select
from sqlalchemy.engine import Connection

from sharedcare.access.audit import GENESIS, AuditRecord, chain_hash
from sharedcare.storage import dialects
from sharedcare.storage.tables import audit, audit_chain

# Statements compiled once per dialect and chunk size and run on the driver: their construction and
# Core's per-row parameter handling cost more than running them (see dialects.RowsStatement).
_COLUMNS = [c.name for c in audit.columns if c.name != "seq"]
_HEAD_COLUMNS = ("partition_key", "last_seq", "last_hash")
_INSERT_ROWS = dialects.RowsStatement(
    lambda n, _dialect: audit.insert().values(
        [{c: bindparam(f"{c}_{i}") for c in _COLUMNS} for i in range(n)]), _COLUMNS)
_LOCK_HEADS = dialects.RowsStatement(
    lambda n, dialect: dialects.for_update(
        select(audit_chain.c.partition_key, audit_chain.c.last_seq, audit_chain.c.last_hash).where(
            audit_chain.c.partition_key.in_([bindparam(f"partition_key_{i}") for i in range(n)])
        ).order_by(audit_chain.c.partition_key), dialect), ("partition_key",), lookup=True)
_MOVE_HEADS = dialects.RowsStatement(
    lambda n, dialect: dialects.upsert(
        audit_chain, ("partition_key",), [{c: bindparam(f"{c}_{i}") for c in _HEAD_COLUMNS} for i in range(n)],
        dialect), _HEAD_COLUMNS)


def append(conn: Connection, records: Iterable[AuditRecord]) -> None:
    """Append records to their partitions' chains inside the caller's (write) transaction.

    A batch touches many partitions (reads of many patients), so the chain heads are locked with one
    SELECT ... FOR UPDATE per chunk (in partition order: no deadlocks between batches), the rows are
    inserted with multi-row INSERTs and the heads moved with multi-row upserts of rows already locked."""
    by_partition: dict[str, list[dict[str, object]]] = {}
    for rec in records:
        by_partition.setdefault(rec.partition_key, []).append(rec.row())
    if not by_partition:
        return
    partitions = sorted(by_partition)
    heads = _lock_heads(conn, partitions)
    missing = [p for p in partitions if p not in heads]
    if missing:
        # A partition's first record: create its head, then lock it like the others (on PostgreSQL a
        # concurrent batch creating the same head waits here and then sees the winner's head).
        dialects.insert_ignore(conn, audit_chain, [{"partition_key": p, "last_seq": 0, "last_hash": GENESIS}
                                                   for p in missing])
        heads.update(_lock_heads(conn, missing))
    all_rows: list[dict[str, object]] = []
    moves: list[dict[str, object]] = []
    for partition in partitions:
        count, prev = heads[partition]
        rows = by_partition[partition]
        for row in rows:
            row["prev_hash"] = prev
            row["hash"] = prev = chain_hash(prev, row)
        all_rows.extend(rows)
        moves.append({"partition_key": partition, "last_seq": count + len(rows), "last_hash": prev})
    _INSERT_ROWS.execute(conn, all_rows)
    _MOVE_HEADS.execute(conn, moves)


def _lock_heads(conn: Connection, partitions: list[str]) -> dict[str, tuple[int, str]]:
    rows = _LOCK_HEADS.execute(conn, [{"partition_key": p} for p in partitions])
    return {r[0]: (r[1], r[2]) for r in rows}


def verify(engine: Engine) -> list[str]:
    """Re-walk every partition's chain; return the partitions whose chain does not verify."""
    broken: list[str] = []
    with engine.connect() as conn:
        heads = {r.partition_key: r.last_hash for r in conn.execute(select(audit_chain))}
        for partition, last_hash in heads.items():
            prev = GENESIS
            rows = conn.execute(select(audit).where(audit.c.partition_key == partition).order_by(audit.c.seq))
            ok = True
            for r in rows:
                row = dict(r._mapping)
                if row["prev_hash"] != prev or chain_hash(prev, row) != row["hash"]:
                    ok = False
                    break
                prev = row["hash"]
            if not ok or prev != last_hash:
                broken.append(partition)
    return broken


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
        # The home partition is the first patient touched (indexed); a search that showed several
        # patients names the others in `patients` (a scan: see docs/access.md).
        where.append(or_(audit.c.partition_key.in_(sorted(f.patients)),
                         *[(literal(" ") + audit.c.patients + literal(" ")).contains(f" {p} ")
                           for p in sorted(f.patients)]))
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
