"""Compiling a `SearchQuery` into SQL over the resource and index tables, with keyset paging.

Results are ordered by `created_seq` (the history sequence number of a resource's first version),
which never changes, and bounded by a snapshot sequence taken on the first page, so paging while
others write neither skips nor repeats entries. Cursors are HMAC-signed with the node's key and bound
to the caller's agent id (AZ11), so a page link cannot be replayed by someone else or edited.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.engine import Connection

from sharedcare.errors import BadRequest
from sharedcare.fhir.search.query import Criterion, SearchQuery, date_range, split_token
from sharedcare.storage.tables import idx_token, resource, resource_history


@dataclass(frozen=True, slots=True)
class Cursor:
    after: int  # created_seq/seq boundary
    snapshot: int
    backwards: bool = False


def sign_cursor(key: bytes, agent: str, cur: Cursor) -> str:
    payload = orjson.dumps([cur.after, cur.snapshot, int(cur.backwards)])
    mac = hmac.new(key, agent.encode() + b"\x1f" + payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def open_cursor(key: bytes, agent: str, token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload, mac = raw[:-16], raw[-16:]
        expect = hmac.new(key, agent.encode() + b"\x1f" + payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expect):
            raise ValueError
        after, snapshot, backwards = orjson.loads(payload)
        return Cursor(int(after), int(snapshot), bool(backwards))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("the paging link is not valid for this caller; run the search again") from None


def _token_clause(res_type: str, crit: Criterion) -> ColumnElement[bool]:
    ors = []
    for value in crit.values:
        system, code = split_token(value)
        conds = [idx_token.c.res_type == res_type, idx_token.c.res_id == resource.c.res_id,
                 idx_token.c.param == crit.name]
        if code is not None:
            conds.append(idx_token.c.code == code)
        if system == "":
            conds.append(idx_token.c.system.is_(None))
        elif system is not None:
            conds.append(idx_token.c.system == system)
        ors.append(exists().where(*conds))
    clause = or_(*ors)
    return ~clause if crit.modifier == "not" else clause


def _date_clause(column: ColumnElement[str], value: str) -> ColumnElement[bool]:
    """A single-instant column against a prefixed date value (R4 search, date parameters)."""
    prefix, low, high = date_range(value)
    match prefix:
        case "eq" | "ap":
            return and_(column >= low, column <= high)
        case "ne":
            return or_(column < low, column > high)
        case "gt" | "sa":
            return column > high
        case "lt" | "eb":
            return column < low
        case "ge":
            return column >= low
        case _:  # le
            return column <= high


def criteria_clause(query: SearchQuery) -> list[ColumnElement[bool]]:
    if query.res_type is None:
        raise BadRequest("a search needs a resource type here")
    clauses: list[ColumnElement[bool]] = [resource.c.res_type == query.res_type, resource.c.deleted.is_(False)]
    for crit in query.criteria:
        if crit.name == "_id":
            clauses.append(resource.c.res_id.in_(crit.values))
        elif crit.name == "_lastUpdated":
            clauses.append(or_(*(_date_clause(resource.c.last_updated, v) for v in crit.values)))
        else:
            clauses.append(_token_clause(query.res_type, crit))
    return clauses


def find_ids(conn: Connection, query: SearchQuery, visible: ColumnElement[bool], limit: int) -> list[str]:
    """Ids of current resources matching the criteria (for conditional interactions)."""
    stmt = select(resource.c.res_id).where(visible, *criteria_clause(query)).limit(limit)
    return [r.res_id for r in conn.execute(stmt)]


@dataclass(frozen=True, slots=True)
class PageRows:
    rows: list[Any]
    total: int | None
    next: Cursor | None
    previous: Cursor | None


def page(conn: Connection, query: SearchQuery, visible: ColumnElement[bool], cursor: Cursor | None) -> PageRows:
    where = [visible, *criteria_clause(query)]
    # The newest history sequence number bounds every created_seq, and is a primary-key lookup.
    snapshot = cursor.snapshot if cursor else conn.execute(
        select(func.coalesce(func.max(resource_history.c.seq), 0))).scalar_one()
    where.append(resource.c.created_seq <= snapshot)
    total = None
    if query.total != "none" or query.summary_count:
        total = conn.execute(select(func.count()).select_from(resource).where(*where)).scalar_one()
    if query.summary_count:
        return PageRows([], total, None, None)
    cols = (resource.c.res_type, resource.c.res_id, resource.c.version_id, resource.c.last_updated,
            resource.c.data, resource.c.created_seq)
    stmt: Select[Any] = select(*cols).where(*where)
    if cursor and cursor.backwards:
        stmt = stmt.where(resource.c.created_seq < cursor.after).order_by(resource.c.created_seq.desc())
        rows: list[Any] = list(reversed(conn.execute(stmt.limit(query.count + 1)).all()))
        more_before = len(rows) > query.count
        rows = rows[-query.count:] if query.count else []
        has_next, has_prev = True, more_before
    else:
        if cursor:
            stmt = stmt.where(resource.c.created_seq > cursor.after)
        rows = list(conn.execute(stmt.order_by(resource.c.created_seq).limit(query.count + 1)).all())
        has_next = len(rows) > query.count
        rows = rows[:query.count]
        has_prev = cursor is not None
    nxt = Cursor(rows[-1].created_seq, snapshot) if has_next and rows else None
    prev = Cursor(rows[0].created_seq, snapshot, backwards=True) if has_prev and rows else None
    return PageRows(rows, total, nxt, prev)
