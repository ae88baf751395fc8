"""Compiling a `SearchQuery` into SQL over the resource and index tables, with keyset paging.

Each criterion becomes an EXISTS over its parameter's index table, correlated with the resource it
tests (the searched resource, or one reached through a chain or `_has` link); the values of one
criterion are ORed inside that EXISTS, criteria are ANDed. Every value is a bound parameter.

Results are ordered by `created_seq` (the history sequence number of a resource's first version),
which never changes, and bounded by a snapshot sequence taken on the first page (read with or after
its rows, so at least every created_seq it showed), so paging while others write neither skips nor
repeats entries. With `_sort` the order is the sort keys, then
`created_seq`; the cursor carries the last row's keys. Cursors are HMAC-signed with the node's key and
bound to the caller's agent id (AZ11), so a page link cannot be replayed by someone else or edited.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Engine,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import True_
from sqlalchemy.sql.selectable import Exists

from sharedcare.errors import BadRequest
from sharedcare.fhir import jsonio
from sharedcare.fhir.definitions import terminology
from sharedcare.fhir.search import phonetic
from sharedcare.fhir.search.extract import component_types, normalise, parameters_for
from sharedcare.fhir.search.query import (
    FMT,
    Criterion,
    Include,
    Link,
    SearchQuery,
    SortKey,
    date_range,
    instant_text,
    number_value,
    quantity_value,
    split_token,
    split_values,
    unescape,
)
from sharedcare.fhir.validation.bindings import expand
from sharedcare.storage import codec, dialects, keys
from sharedcare.storage.tables import (
    LONG_DATES,
    SEVERAL_DATES,
    SHARED_PARTITION,
    compartment,
    idx_composite,
    idx_date,
    idx_number,
    idx_quantity,
    idx_reference,
    idx_string,
    idx_token,
    idx_uri,
    resource,
    resource_history,
    search_result,
)

MAX_INCLUDED = 1000  # included resources per page
ESTIMATE_CAP = 1000  # _total=estimate (the default) counts up to this many matches
SORT_KEEP_CAP = 10_000  # a sorted result up to this size is kept for its paging links
DATE_DRIVE_CAP = 5000  # a date criterion drives a search when one end of its range has fewer index rows
MAX_ITERATE = 4  # rounds of _include:iterate / _revinclude:iterate
# The newest history sequence number: it bounds every created_seq (a primary-key lookup). A search's
# paging links carry it, so later pages show nothing created after the first.
_SNAPSHOT = select(func.coalesce(func.max(resource_history.c.seq), 0)).scalar_subquery()
UNBOUNDED = 2**62  # above every sequence number

Visible = Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True, slots=True)
class Cursor:
    after: int  # created_seq boundary
    snapshot: int
    backwards: bool = False
    keys: tuple[Any, ...] = ()  # the boundary row's sort keys (with _sort)
    search_id: str | None = None  # a kept sorted result: `after` is then a position in it


def sign_cursor(key: bytes, agent: str, cur: Cursor) -> str:
    payload = orjson.dumps([cur.after, cur.snapshot, int(cur.backwards), [_plain(k) for k in cur.keys],
                            cur.search_id])
    mac = hmac.new(key, agent.encode() + b"\x1f" + payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def open_cursor(key: bytes, agent: str, token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload, mac = raw[:-16], raw[-16:]
        expect = hmac.new(key, agent.encode() + b"\x1f" + payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expect):
            raise ValueError
        after, snapshot, backwards, keys, search_id = orjson.loads(payload)
        return Cursor(int(after), int(snapshot), bool(backwards), tuple(keys),
                      str(search_id) if search_id is not None else None)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise BadRequest("the paging link is not valid for this caller; run the search again") from None


# -- compiling criteria ------------------------------------------------------------------------------

@dataclass
class Context:
    """What compiling needs besides the query: the connection (value sets for :in), the caller's
    visibility rule for resources reached through links, and this server's base URL."""

    conn: Connection
    visible: Visible
    base_url: str = ""
    _valuesets: dict[str, frozenset[tuple[str, str]] | None] = field(default_factory=dict)

    def valueset(self, url: str) -> frozenset[tuple[str, str]]:
        if url not in self._valuesets:
            self._valuesets[url] = expand_stored(self.conn, url)
        found = self._valuesets[url]
        if found is None:
            raise BadRequest(f"the value set {url[:200]!r} is not on this server or cannot be expanded here")
        return found


def expand_stored(conn: Connection, url: str) -> frozenset[tuple[str, str]] | None:
    """A value set's codes: one stored on this server (by canonical URL), else a core R4 one."""
    def resolve(canonical: str) -> dict[str, Any] | None:
        for res_type in ("ValueSet", "CodeSystem"):
            row = conn.execute(
                select(resource.c.data).join(idx_uri, and_(idx_uri.c.res_type == resource.c.res_type,
                                                           idx_uri.c.res_id == resource.c.res_id))
                .where(resource.c.res_type == res_type, resource.c.deleted.is_(False), idx_uri.c.param == "url",
                       idx_uri.c.value == canonical).limit(1)).first()
            if row is not None:
                found: dict[str, Any] = jsonio.loads(codec.decode(row.data))
                return found
        return terminology().get(canonical)
    vs = resolve(url.split("|")[0])
    return expand(vs, resolve) if vs is not None else None


def _exists() -> Exists:
    """EXISTS (SELECT 1 ...): SQLite answers it from a covering index (with SELECT * it reads the row)."""
    return exists(literal_column("1"))


class Owner:
    """The resource a criterion tests: its type (a literal or a column) and id column."""

    def __init__(self, res_type: str | ColumnElement[Any], res_id: ColumnElement[Any],
                 types: tuple[str, ...], last_updated: ColumnElement[Any] | None = None,
                 seq: ColumnElement[Any] | None = None, probe: bool = False) -> None:
        self.res_type = res_type
        self.res_id = res_id
        self.types = types  # the resource types it can be
        self.last_updated = last_updated
        self.seq = seq  # its created_seq, where known: unique per resource, and in every index row
        # A chain's few thousand references at most: test each by an index probe, never by joining
        # them to every index row of a common code (PostgreSQL chose a merge join over the code's
        # 75,000 rows, 10 ms, where probing the first few hundred references in order takes 1 ms).
        self.probe = probe

    def rows_of(self, table: Any) -> list[ColumnElement[bool]]:
        return [table.c.res_type == self.res_type, table.c.res_id == self.res_id]


def _looked_up(crit: Criterion) -> bool:
    """A token criterion whose every value names a code: its rows for one resource are found in the
    lookup index by (type, param, code, created_seq). Testing the code of each of a chain's thousands
    of observations there probes the one code's part of the index, where the per-resource index
    would be read at random (the chained searches at 10M resources waited on the disk)."""
    return crit.type == "token" and crit.modifier is None and not crit.links \
        and all(split_token(v)[1] is not None for v in crit.values)


def criterion_clause(crit: Criterion, owner: Owner, ctx: Context) -> ColumnElement[bool]:
    if crit.links and owner.res_id is resource.c.res_id and (chained := _chain_in(crit, owner, ctx)) is not None:
        return chained
    if crit.links:
        return _link_clause(crit.links[0], Criterion(crit.name, crit.modifier, crit.values, crit.type,
                                                     crit.links[1:], crit.key, crit.target), owner, ctx)
    if crit.name == "_id":
        return _id_clause(crit, owner)
    if crit.name == "_lastUpdated":
        return _last_updated_clause(crit, owner, ctx)
    table = _TABLES[crit.type]
    t = table.alias()
    if owner.seq is None or not _looked_up(crit):
        mine = [*owner.rows_of(t), t.c.param == crit.name]
    else:
        mine = [t.c.res_type == owner.res_type, t.c.param == crit.name, t.c.created_seq == owner.seq]
        if owner.probe:  # a scalar subquery with LIMIT is never turned into a join
            match = or_(*[_token_value(t, v, None, ctx) for v in crit.values])
            return select(literal(1)).where(*mine, match).limit(1).scalar_subquery().is_not(None)
    if crit.modifier == "missing":
        has = _exists().where(*mine)
        return or_(*[~has if v == "true" else has for v in crit.values])
    if crit.type == "reference" and crit.modifier == "identifier":
        t = idx_token.alias()
        mine = [*owner.rows_of(t), t.c.param == crit.name]
        return _exists().where(*mine, or_(*[_token_value(t, v, None, ctx) for v in crit.values]))
    if crit.type == "composite":
        kinds = component_types(_param_info(crit.target or owner.types[0], crit.name))
        return _exists().where(*mine, or_(*[_composite_value(t, v, kinds, ctx) for v in crit.values]))
    if crit.type == "reference":
        return _exists().where(*mine, or_(*[_reference_value(t, v, crit.modifier, ctx) for v in crit.values]))
    build = _VALUE_CLAUSES[crit.type]
    if crit.type == "token" and crit.modifier in ("not", "not-in"):
        modifier = "in" if crit.modifier == "not-in" else None
        return ~_exists().where(*mine, or_(*[build(t, v, modifier, ctx) for v in crit.values]))
    return _exists().where(*mine, or_(*[build(t, v, crit.modifier, ctx) for v in crit.values]))


def _chain_in(crit: Criterion, owner: Owner, ctx: Context,
              also: Callable[[Owner], list[ColumnElement[bool]]] | None = None) -> ColumnElement[bool] | None:
    """A one-link chain to one target type as nested IN lists (`subject:Patient.family=x`): the
    database can start from the few targets that match instead of testing every searched resource.
    `also` gives clauses on the referring resource (the search's other criteria) to test inside the
    list, on its reference rows, before any resource row is read. None when the chain does not have
    that shape (then it is tested per resource with EXISTS)."""
    if not _chains_in(crit):
        return None
    r = idx_reference.alias()
    extra = also(Owner(owner.res_type, r.c.res_id, owner.types, seq=r.c.created_seq, probe=True)) if also else []
    return owner.res_id.in_(select(r.c.res_id).where(
        *_referring(r, owner.res_type, crit, ctx), r.c.target_id.in_(_chain_targets(crit, ctx)), *extra))


def _referring(r: Any, res_type: Any, crit: Criterion, ctx: Context) -> list[ColumnElement[bool]]:
    """Reference rows (alias `r`) of a one-link chain's link, to resources on this server."""
    link = crit.links[0]
    return [r.c.res_type == res_type, r.c.param == link.param, r.c.target_type == link.types[0],
            local_reference(r, ctx.base_url)]


def _chain_targets(crit: Criterion, ctx: Context) -> Any:
    """The ids of a one-link chain's targets that match its criterion and the caller may see."""
    target = crit.links[0].types[0]
    if crit.name == "_id":
        id_col: Any = resource.c.res_id
        targets: Any = select(id_col).where(resource.c.res_type == target,
                                            resource.c.res_id.in_([unescape(v) for v in crit.values]))
    else:
        t = _TABLES[crit.type].alias()
        if crit.type == "reference":
            match = or_(*[_reference_value(t, v, crit.modifier, ctx) for v in crit.values])
        else:
            match = or_(*[_VALUE_CLAUSES[crit.type](t, v, crit.modifier, ctx) for v in crit.values])
        id_col = t.c.res_id
        targets = select(id_col).where(t.c.res_type == target, t.c.param == crit.name, match)
    seen = resource.alias()
    if not isinstance(ctx.visible(seen), True_):  # targets the caller may not see do not match
        targets = targets.where(id_col.in_(select(seen.c.res_id).where(seen.c.res_type == target,
                                                                     ctx.visible(seen))))
    return targets


def _param_info(res_type: str, name: str) -> Any:
    return parameters_for(res_type)[name]


def local_reference(r: Any, base_url: str) -> ColumnElement[bool]:
    """Index rows of references to resources on this server: relative, or absolute under its base."""
    if not base_url:
        return r.c.url.is_(None)  # type: ignore[no-any-return]
    return or_(r.c.url.is_(None), r.c.url.like(_like_prefix(base_url.rstrip("/") + "/") + "%", escape="\\"))


def _link_clause(link: Link, rest: Criterion, owner: Owner, ctx: Context) -> ColumnElement[bool]:
    r = idx_reference.alias()
    target = resource.alias()
    if link.kind == "chain":
        inner_owner = Owner(r.c.target_type, r.c.target_id, link.types, target.c.last_updated)
        return _exists().where(
            *owner.rows_of(r), r.c.param == link.param, r.c.target_type.in_(link.types),
            local_reference(r, ctx.base_url),
            target.c.res_type == r.c.target_type, target.c.res_id == r.c.target_id, target.c.deleted.is_(False),
            ctx.visible(target), criterion_clause(rest, inner_owner, ctx))
    source = link.types[0]
    inner_owner = Owner(source, r.c.res_id, (source,), target.c.last_updated)
    return _exists().where(
        r.c.res_type == source, r.c.param == link.param, r.c.target_type == owner.res_type,
        r.c.target_id == owner.res_id, local_reference(r, ctx.base_url), target.c.res_type == source,
        target.c.res_id == r.c.res_id,
        target.c.deleted.is_(False), ctx.visible(target), criterion_clause(rest, inner_owner, ctx))


def _id_clause(crit: Criterion, owner: Owner) -> ColumnElement[bool]:
    if crit.modifier == "missing":
        return or_(*[false() if v == "true" else true() for v in crit.values])
    ids = [unescape(v) for v in crit.values]
    clause = owner.res_id.in_(ids)
    return ~clause if crit.modifier == "not" else clause


def _last_updated_clause(crit: Criterion, owner: Owner, ctx: Context) -> ColumnElement[bool]:
    if crit.modifier == "missing":
        return or_(*[false() if v == "true" else true() for v in crit.values])
    if owner.last_updated is not None:
        return or_(*[_instant_clause(owner.last_updated, v) for v in crit.values])
    r = resource.alias()
    return _exists().where(*owner.rows_of(r), or_(*[_instant_clause(r.c.last_updated, v) for v in crit.values]))


def _instant_clause(column: ColumnElement[str], value: str) -> ColumnElement[bool]:
    """A single-instant column against a prefixed date value (meta.lastUpdated)."""
    return _range_clause(column, column, value)


def _range_clause(low: ColumnElement[str], high: ColumnElement[str], value: str) -> ColumnElement[bool]:
    """A stored range [low, high] against a prefixed search date (R4 search, date parameters)."""
    return _range_expr(low, high, *_range_values(value))


def _range_values(value: str) -> tuple[str, str, str]:
    """A date criterion's prefix and the bounds `_range_expr` compares with (`ap`: widened)."""
    prefix, slo, shi = date_range(value)
    return (prefix, *_approximate(slo, shi)) if prefix == "ap" else (prefix, slo, shi)


def _range_expr(low: ColumnElement[str], high: ColumnElement[str], prefix: str, slo: str | ColumnElement[str],
                shi: str | ColumnElement[str]) -> ColumnElement[bool]:
    """`_range_clause` with the bounds given (values, or bound parameters of a cached statement)."""
    contained = and_(low >= slo, high <= shi)
    match prefix:
        case "eq":
            return contained
        case "ne":
            return not_(contained)
        case "gt":
            return high > shi
        case "lt":
            return low < slo
        case "ge":
            return or_(high > shi, contained)
        case "le":
            return or_(low < slo, contained)
        case "sa":
            return low > shi
        case "eb":
            return high < slo
        case _:  # ap: overlaps the value widened by 10% of its distance from now (at least a day)
            return and_(low <= shi, high >= slo)


def _approximate(slo: str, shi: str) -> tuple[str, str]:
    now = datetime.now(UTC)
    lo = datetime.strptime(slo, FMT).replace(tzinfo=UTC)
    hi = datetime.strptime(shi, FMT).replace(tzinfo=UTC)
    gap = max(abs(now - lo) * 0.1, abs(now - hi) * 0.1, timedelta(days=1))
    # Clamped to the calendar without computing past its ends (date=ap0002-01-01 widens by ~200 years).
    first, last = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    wlo = lo - gap if gap < lo - first else first
    whi = hi + gap if gap < last - hi else last
    return instant_text(wlo), instant_text(whi)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _string_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    text = unescape(value)
    if modifier == "exact":
        return t.c.exact == text  # type: ignore[no-any-return]
    norm = normalise(text)
    if modifier == "contains":
        return t.c.value.like(f"%{_like_prefix(norm)}%", escape="\\")  # type: ignore[no-any-return]
    return _prefix_clause(t.c.value, norm, ctx)


def _prefix_clause(column: Any, prefix: str, ctx: Context) -> ColumnElement[bool]:
    """Keyed values (storage/keys.py) starting with `prefix`: a long prefix also finds the one long
    value equal to it."""
    clause = and_(column.like(f"{_like_prefix(prefix)}%", escape="\\"),
                  *dialects.prefix_bounds(column, prefix, ctx.conn))
    return or_(clause, column == keys.fit(prefix)) if len(prefix) > keys.KEY_KEEP else clause


def _phonetic_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    """A row with the first word's code, of a resource that has every other word's code too."""
    first, *rest = map(keys.fit, phonetic.codes(unescape(value)))
    clause: ColumnElement[bool] = t.c.value == first
    for code in rest:
        other = idx_string.alias()
        clause = and_(clause, _exists().where(other.c.res_type == t.c.res_type, other.c.res_id == t.c.res_id,
                                             other.c.param == t.c.param, other.c.value == code))
    return clause


def _token_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    if modifier == "text":
        return t.c.text.like(f"{_like_prefix(normalise(unescape(value)))}%", escape="\\")  # type: ignore[no-any-return]
    if modifier == "in":
        # A code element (no system of its own) takes its system from its binding: its code alone counts.
        pairs = ctx.valueset(unescape(value))
        return or_(and_(t.c.system.is_(None), t.c.code.in_(sorted({keys.fit(c) for _, c in pairs}))),
                   *[and_(t.c.system == keys.fit(s), t.c.code == keys.fit(c)) for s, c in sorted(pairs) if s])
    if modifier == "of-type":
        type_system, type_code, ident = (unescape(p) for p in split_values(value, "|"))
        return and_(t.c.type_system == type_system, t.c.type_code == type_code, t.c.code == keys.fit(ident))
    system, code = split_token(value)
    conds = []
    if code is not None:
        conds.append(t.c.code == keys.fit(code))
    if system == "":
        conds.append(t.c.system.is_(None))
    elif system is not None:
        conds.append(t.c.system == keys.fit(system))
    return and_(*conds) if conds else false()


def _number_clause(column: ColumnElement[Any], value: str) -> ColumnElement[bool]:
    n = number_value(value)
    match n.prefix:
        case "eq":
            return and_(column >= n.low, column < n.high)
        case "ne":
            return or_(column < n.low, column >= n.high)
        case "gt" | "sa":
            return column > n.value
        case "lt" | "eb":
            return column < n.value
        case "ge":
            return column >= n.value
        case "le":
            return column <= n.value
        case _:  # ap: within 10% of the value
            margin = abs(n.value) / 10
            return and_(column >= n.value - margin, column <= n.value + margin)


def _number_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    return _number_clause(t.c.value, value)


def _quantity_parts(number: ColumnElement[Any], system: ColumnElement[Any], code: ColumnElement[Any],
                    unit: ColumnElement[Any], value: str, *, keyed: bool = False) -> ColumnElement[bool]:
    """`keyed`: `code` is an index key column (storage/keys.py)."""
    q = quantity_value(value)
    parts = [_number_clause(number, split_values(value, "|")[0])]
    stored_code = keys.fit(q.code) if keyed and q.code else q.code
    if q.system and q.code:
        parts += [system == q.system, code == stored_code]
    elif q.code:
        parts.append(or_(code == stored_code, unit == q.code))
    elif q.system:
        parts.append(system == q.system)
    return and_(*parts)


def _quantity_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    return _quantity_parts(t.c.value, t.c.system, t.c.code, t.c.unit, value, keyed=True)


def _date_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    return _range_clause(t.c.low, t.c.high, value)


def _uri_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    text = unescape(value)
    if modifier == "below":
        return _prefix_clause(t.c.value, text, ctx)
    if modifier == "above":
        return func.substr(literal(text), 1, func.length(t.c.value)) == t.c.value  # type: ignore[no-any-return]
    return t.c.value == keys.fit(text)  # type: ignore[no-any-return]


def _reference_value(t: Any, value: str, modifier: str | None, ctx: Context) -> ColumnElement[bool]:
    ref = unescape(value)
    base = ctx.base_url.rstrip("/") + "/"
    if ctx.base_url and ref.startswith(base):
        ref = ref[len(base):]
    if ref.startswith(("http://", "https://", "urn:")):
        url, _, version = ref.partition("|")
        conds = [t.c.url == keys.fit(url)]
        if version:
            conds.append(t.c.version == version)
        return and_(*conds)
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    rtype: str | None = modifier
    rid = ref
    if len(parts) == 2:
        rtype, rid = parts
        if modifier and modifier != rtype:
            return false()
    if keys.names_no_resource(rtype, rid):  # kept as its text (indexing._fit_reference)
        return t.c.url == keys.fit(ref)  # type: ignore[no-any-return]
    # A relative reference, or an absolute one to this server; not Patient/77 on another server.
    local = t.c.url.is_(None)
    if ctx.base_url and rtype:
        local = or_(local, t.c.url == keys.fit(f"{base}{rtype}/{rid}"))
    return and_(t.c.target_type == rtype, t.c.target_id == rid, local) if rtype else \
        and_(t.c.target_id == rid, local)


def _composite_value(t: Any, value: str, kinds: tuple[str, ...], ctx: Context) -> ColumnElement[bool]:
    parts = split_values(value, "$")
    conds: list[ColumnElement[bool]] = []
    system, code = split_token(parts[0])
    if code is not None:
        conds.append(t.c.code1 == keys.fit(code))
    if system == "":
        conds.append(t.c.system1.is_(None))
    elif system is not None:
        conds.append(t.c.system1 == system)
    if len(parts) > 1:
        part = parts[1]
        match kinds[1]:
            case "token":
                s2, c2 = split_token(part)
                if c2 is not None:
                    conds.append(t.c.code2 == c2)
                if s2 == "":
                    conds.append(t.c.system2.is_(None))
                elif s2 is not None:
                    conds.append(t.c.system2 == s2)
            case "quantity":
                conds.append(_quantity_parts(t.c.number2, t.c.system2, t.c.code2, t.c.text2, part))
            case "date":
                conds.append(_range_clause(t.c.low2, t.c.high2, part))
            case "number":
                conds.append(_number_clause(t.c.number2, part))
            case "string":
                conds.append(t.c.text2.like(f"{_like_prefix(normalise(unescape(part)))}%", escape="\\"))
            case _:
                conds.append(t.c.text2 == unescape(part))
    if len(parts) > 2:
        conds.append(_number_clause(t.c.number3, parts[2]))
    return and_(*conds)


_TABLES: dict[str, Table] = {"token": idx_token, "string": idx_string, "date": idx_date, "number": idx_number,
                             "quantity": idx_quantity, "reference": idx_reference, "uri": idx_uri,
                             "composite": idx_composite, "phonetic": idx_string}
_VALUE_CLAUSES: dict[str, Callable[[Any, str, str | None, Context], ColumnElement[bool]]] = {
    "token": _token_value, "string": _string_value, "date": _date_value, "number": _number_value,
    "quantity": _quantity_value, "uri": _uri_value, "phonetic": _phonetic_value,
}


def criteria_clause(query: SearchQuery, ctx: Context,
                    skip: Criterion | Sequence[Criterion] = ()) -> list[ColumnElement[bool]]:
    """The WHERE clauses on `resource` of a query's criteria (all of them but those in `skip`)."""
    skipped = [skip] if isinstance(skip, Criterion) else list(skip)
    if query.res_type is None:
        raise BadRequest("a search needs a resource type here")
    clauses: list[ColumnElement[bool]] = [resource.c.res_type == query.res_type, resource.c.deleted.is_(False)]
    owner = Owner(query.res_type, resource.c.res_id, (query.res_type,), resource.c.last_updated,
                  resource.c.created_seq)
    if query.compartment is not None:
        kind, cid = query.compartment
        if kind != "Patient":
            raise BadRequest("compartment searches are supported for the Patient compartment")
        clauses.append(resource.c.res_id.in_(select(compartment.c.res_id).where(
            compartment.c.patient_id == cid, compartment.c.res_type == query.res_type)))
    rest = [c for c in query.criteria if not any(c is k for k in skipped)]
    head = next((c for c in rest if _chains_in(c)), None)
    if head is not None and len(rest) > 1:
        # The other criteria are tested inside the chain's list, on its reference rows: a name shared
        # by hundreds of patients names thousands of their resources, and reading each resource row
        # before testing a code cost ~150 ms at 3M resources.
        others = [c for c in rest if c is not head]
        chained = _chain_in(head, owner, ctx, lambda o: [criterion_clause(c, o, ctx) for c in others])
        assert chained is not None
        return [*clauses, chained]
    clauses += [criterion_clause(c, owner, ctx) for c in rest]
    return clauses


# A criterion that names one value looked up by equality in its index drives the search: its lookup
# index (which ends with created_seq) yields the matches already in search order, so the first page
# reads a handful of index entries whether ten or a million resources match. The other criteria
# are checked on each candidate. Reference first (usually one patient's), then token, phonetic code,
# composite, uri; a string prefix last (its matches come from a range of values, so they are sorted,
# not read in order).
_DRIVERS = ("reference", "token", "phonetic", "composite", "uri", "string")


def _driver(query: SearchQuery) -> Criterion | None:
    def drivable(c: Criterion) -> bool:
        if c.links or len(c.values) != 1 or c.type not in _DRIVERS or c.name in ("_id", "_lastUpdated"):
            return False
        value = c.values[0]
        if c.type == "reference":
            return c.modifier is None or c.modifier[0].isupper()
        if c.modifier is not None:
            return False
        if c.type == "string":
            return bool(normalise(unescape(value)))
        if c.type in ("token", "composite"):
            return split_token(split_values(value, "$")[0])[1] is not None  # a code to look up
        return True
    found = [c for c in query.criteria if drivable(c)]
    best = min(found, key=lambda c: _DRIVERS.index(c.type)) if found else None
    if best is not None and best.type != "reference" and any(_chains_in(c) for c in query.criteria):
        # A chain names a few targets (a patient by name or identifier): the database is better off
        # starting from its IN list than from every resource with a common code.
        return None
    return best


def _chains_in(c: Criterion) -> bool:
    """Whether `_chain_in` compiles this criterion to nested IN lists."""
    return len(c.links) == 1 and c.links[0].kind == "chain" and len(c.links[0].types) == 1 \
        and c.name != "_lastUpdated" and c.type != "composite" \
        and c.modifier not in ("not", "not-in", "missing", "identifier")


@dataclass
class Source:
    """Where a page's rows come from: `resource` alone, or an index table's lookup joined to it."""

    from_: Any
    seq: Any  # the created_seq column the rows are ordered and paged by
    where: list[ColumnElement[bool]]
    driven: bool = False  # an index row per matching value: a resource can come more than once
    # When the driving criterion is the whole search and the caller sees everything: its index rows
    # alone (they exist only for current, undeleted resources), so a count needs no resource rows.
    index_only: tuple[Any, list[ColumnElement[bool]]] | None = None
    cols: tuple[Any, ...] | None = None  # the row columns, when `from_` is not `resource` itself
    window: Window | None = None  # a date window: candidates from index ranges, then checked
    # Counting means checking every candidate (a chain: each reference of the named patients), so
    # `_total=estimate` gives no total beyond one page; `_total=accurate` still counts.
    costly_count: bool = False


class Window:
    """A date window's candidates: one index range per arm (each month, the long rows, the several-valued
    rows), each read in search order with its own LIMIT and merged (one ordered index scan per arm,
    also where a planner would rather gather a whole month and sort it). Candidates from the month and
    long arms already meet the parameter's criteria (checked on their index row) and are checked for
    the others; several-valued ones for every criterion. The statements are cached by their shape
    (number of months, prefixes) and run on the driver; the checks are built only when needed."""

    def __init__(self, res_type: str, param: str, months: list[str], ranges: list[tuple[str, str, str]],
                 snapshot: int, check: Callable[[bool], list[ColumnElement[bool]]], exact: bool) -> None:
        self.shape = (len(months) + 1, tuple(r[0] for r in ranges))  # the arms (months, long rows), prefixes
        self.params: dict[str, Any] = {"rt": res_type, "param": param, "snap": snapshot, "several": SEVERAL_DATES}
        for j, bucket in enumerate([*months, LONG_DATES]):
            self.params[f"b{j}"] = bucket
        for i, (_, lo, hi) in enumerate(ranges):
            self.params[f"v{i}lo"], self.params[f"v{i}hi"] = lo, hi
        self._check = check
        self._checks: dict[bool, list[ColumnElement[bool]]] = {}
        self.exact = exact  # the parameter's criteria are the whole search, for a caller who sees all

    def check(self, several: bool) -> list[ColumnElement[bool]]:
        """Clauses on `resource` for candidates of the several-valued arm (True) or of the others."""
        if several not in self._checks:
            self._checks[several] = self._check(several)
        return self._checks[several]

    def candidates(self, conn: Connection, bound: int | None, backwards: bool, n: int) -> list[Any]:
        """The next `n` index rows after `bound` in search order: (res_id, created_seq, several)."""
        stmt = _window_statement("candidates", self.shape, bound is not None, backwards)
        values = {**self.params, "n": n} if bound is None else {**self.params, "n": n, "bound": bound}
        return list(stmt.execute(conn, values).all())

    def count(self, conn: Connection, cap: int | None) -> int:
        """The number of matches, up to `cap` (each arm read as an ordered index scan that stops at the
        cap: PostgreSQL would otherwise gather a whole month into a bitmap first)."""
        if self.exact and cap is not None:
            stmt = _window_statement("count", self.shape, False, False)
            return int(stmt.execute(conn, {**self.params, "cap": cap}).scalar_one())
        arms, several = _window_arms(self.shape, False, False)
        on = and_(resource.c.res_type == several.c.res_type, resource.c.res_id == several.c.res_id)
        parts = [select(a.c.created_seq).join(resource, and_(resource.c.res_type == a.c.res_type,
                                                             resource.c.res_id == a.c.res_id))
                 .where(*where, *self.check(False)) for a, where in arms]
        parts.append(select(several.c.created_seq).join(resource, on).where(*_several_where(several),
                                                                               *self.check(True)).distinct())
        ids: Any = union_all(*parts)
        if cap is not None:
            ids = ids.limit(cap)
        counted = select(func.count()).select_from(ids.subquery())
        return int(conn.execute(counted, self.params).scalar_one())


def _several_where(t: Any) -> list[ColumnElement[bool]]:
    """The several-valued arm's rows (an alias of idx_date), with bound parameters."""
    return [t.c.res_type == bindparam("rt"), t.c.param == bindparam("param"), t.c.created_seq <= bindparam("snap"),
            t.c.bucket == bindparam("several")]


def _window_arms(shape: tuple[int, tuple[str, ...]], bounded: bool,
                 backwards: bool) -> tuple[list[tuple[Any, list[ColumnElement[bool]]]], Any]:
    """The month and long arms (each an alias of idx_date with its WHERE clauses: the parameter's
    criteria on the row, as bound parameters) and the several-valued arm's alias."""
    arms_n, prefixes = shape
    out = []
    for j in range(arms_n):
        t = idx_date.alias()
        where = [t.c.res_type == bindparam("rt"), t.c.param == bindparam("param"),
                 t.c.created_seq <= bindparam("snap"), t.c.bucket == bindparam(f"b{j}"),
                 *[_range_expr(t.c.low, t.c.high, p, bindparam(f"v{i}lo"), bindparam(f"v{i}hi"))
                   for i, p in enumerate(prefixes)]]
        if bounded:
            where.append(t.c.created_seq < bindparam("bound") if backwards else t.c.created_seq > bindparam("bound"))
        out.append((t, where))
    return out, idx_date.alias()


_WINDOW_STATEMENTS: dict[tuple[Any, ...], dialects.Compiled] = {}


def _window_statement(kind: str, shape: tuple[int, tuple[str, ...]], bounded: bool,
                      backwards: bool) -> dialects.Compiled:
    key = (kind, shape, bounded, backwards)
    found = _WINDOW_STATEMENTS.get(key)
    if found is None:
        found = dialects.Compiled(lambda _dialect: _build_window(kind, shape, bounded, backwards))
        if len(_WINDOW_STATEMENTS) < 2000:  # shapes are few in practice; never grow without bound
            _WINDOW_STATEMENTS[key] = found
    return found


def _build_window(kind: str, shape: tuple[int, tuple[str, ...]], bounded: bool, backwards: bool) -> Any:
    arms, several = _window_arms(shape, bounded, backwards)
    several_clauses = _several_where(several)
    if bounded:
        seq = several.c.created_seq
        several_clauses.append(seq < bindparam("bound") if backwards else seq > bindparam("bound"))
    parts: list[Any]
    if kind == "candidates":
        limit: Any = bindparam("n")
        parts = [select(a.c.res_id, a.c.created_seq, literal_column("0").label("several")).where(*where)
                 .order_by(a.c.created_seq.desc() if backwards else a.c.created_seq).limit(limit).subquery()
                 for a, where in arms]
        parts.append(select(several.c.res_id, several.c.created_seq, literal_column("1").label("several"))
                     .where(*several_clauses)
                     .order_by(several.c.created_seq.desc() if backwards else several.c.created_seq)
                     .limit(limit).subquery())
        merged = union_all(*[select(p.c.res_id, p.c.created_seq, p.c.several) for p in parts]).subquery()
        seq = merged.c.created_seq
        return select(merged.c.res_id, seq, merged.c.several).order_by(seq.desc() if backwards else seq).limit(limit)
    # count: the month and long arms from their index rows; several-valued resources each once, with
    # every criterion of the parameter met by one of their rows
    cap: Any = bindparam("cap")
    parts = [select(a.c.created_seq).where(*where).order_by(a.c.created_seq).limit(cap).subquery()
             for a, where in arms]
    _, prefixes = shape
    tests = []
    for i, p in enumerate(prefixes):
        d = idx_date.alias()
        tests.append(_exists().where(d.c.res_type == several.c.res_type, d.c.res_id == several.c.res_id,
                                    d.c.param == bindparam("param"),
                                    _range_expr(d.c.low, d.c.high, p, bindparam(f"v{i}lo"), bindparam(f"v{i}hi"))))
    parts.append(select(several.c.created_seq).where(*several_clauses, *tests).distinct()
                 .order_by(several.c.created_seq).limit(cap).subquery())
    merged = union_all(*[select(p.c.created_seq) for p in parts]).subquery()
    return select(func.count()).select_from(select(merged.c.created_seq).limit(cap).subquery())


WINDOW_MAX_MONTHS = 36  # a date window spanning more months is found by the other routes


def _month(instant: str) -> str:
    return instant[:7]


def _months(first: str, last: str) -> list[str]:
    """The months from `first` to `last` ("YYYY-MM"), at most WINDOW_MAX_MONTHS + 1 of them."""
    year, month = int(first[:4]), int(first[5:7])
    out: list[str] = []
    while len(out) <= WINDOW_MAX_MONTHS:
        current = f"{year:04d}-{month:02d}"
        if current > last:
            break
        out.append(current)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _low_bounds(prefix: str, slo: str, shi: str) -> tuple[str | None, str | None]:
    """For a range that starts and ends in one month and is its resource's only value: the first and
    last instants its start can have if it meets this date criterion (its `_range_values`; None:
    unbounded)."""
    match prefix:
        case "eq" | "ap":  # contained in, or (ap, already widened) overlapping [slo, shi]
            return slo, shi
        case "ge":
            return slo, None  # ends on or after slo, so (same month) starts in slo's month or later
        case "gt" | "sa":
            return shi, None
        case "le":
            return None, shi
        case "lt" | "eb":
            before = datetime.strptime(slo, FMT) - timedelta(microseconds=1) if slo[:4] != "0001" else None
            return None, instant_text(before) if before else slo
        case _:  # ne
            return None, None


def _window_source(query: SearchQuery, ctx: Context, snapshot: int) -> Source | None:
    """A date window (`date=ge2020-04&date=lt2020-05`, `date=2020-04`) merges the months it can
    touch, each read from the window index in search order, with the long and several-valued rows
    (see `tables.idx_date`). A month's rows are their resources' only values, so all of the
    parameter's criteria are checked exactly on the index row; the several-valued rows only name
    candidates, checked like any other criterion. Used when the window spans few months."""
    by_param: dict[str, list[tuple[Criterion, tuple[str, str, str]]]] = {}
    for c in query.criteria:
        if c.type == "date" and not c.links and c.modifier is None and c.name != "_lastUpdated" \
                and len(c.values) == 1:
            by_param.setdefault(c.name, []).append((c, _range_values(c.values[0])))
    best: tuple[list[str], list[tuple[Criterion, tuple[str, str, str]]]] | None = None
    for found in by_param.values():
        first, last = "0001-01", "9999-12"
        for _, bounds in found:
            lo, hi = _low_bounds(*bounds)
            first = max(first, _month(lo)) if lo else first
            last = min(last, _month(hi)) if hi else last
        months = _months(first, last)
        if len(months) <= WINDOW_MAX_MONTHS and (best is None or len(months) < len(best[0])):
            best = (months, found)
    if best is None:
        return None
    months, found = best
    crits = [c for c, _ in found]

    def check(several: bool) -> list[ColumnElement[bool]]:
        return [ctx.visible(resource), *criteria_clause(query, ctx, skip=() if several else crits)]
    alone = len(crits) == len(query.criteria) and query.compartment is None \
        and isinstance(ctx.visible(resource), True_)
    window = Window(query.res_type or "", crits[0].name, months, [bounds for _, bounds in found], snapshot, check,
                    alone)
    return Source(resource, resource.c.created_seq, [], driven=True, window=window)


def _date_source(query: SearchQuery, ctx: Context, snapshot: int) -> Source | None:
    """Dates drive a search from one end of their range: `ge`/`gt`/`sa` from the values ending on or
    after the date, `lt`/`le`/`eb` from those starting on or before it, `eq` from those starting
    within it. Each is a superset of that criterion's matches; every criterion is still checked
    exactly on each candidate. The end with the fewest index rows (counted up to a cap) is used; if
    every end has more, scanning in search order and checking each resource is cheaper."""
    t = idx_date.alias()
    options = []
    for c in query.criteria:
        if c.type != "date" or c.links or c.modifier is not None or c.name == "_lastUpdated" or len(c.values) != 1:
            continue
        prefix, slo, shi = date_range(c.values[0])
        if prefix in ("ge", "gt", "sa"):
            cond = t.c.high >= slo
        elif prefix in ("lt", "le", "eb"):
            cond = t.c.low <= shi
        elif prefix == "eq":
            cond = and_(t.c.low >= slo, t.c.low <= shi)
        else:
            continue
        mine = [t.c.res_type == query.res_type, t.c.param == c.name, cond, t.c.created_seq <= snapshot]
        found = ctx.conn.execute(select(func.count()).select_from(
            select(t.c.created_seq).where(*mine).limit(DATE_DRIVE_CAP).subquery())).scalar_one()
        options.append((found, mine))
    if not options or min(options, key=lambda o: o[0])[0] >= DATE_DRIVE_CAP:
        return None
    mine = min(options, key=lambda o: o[0])[1]
    joined = _joined(t)
    return Source(joined, t.c.created_seq, [*mine, ctx.visible(resource), *criteria_clause(query, ctx)], driven=True)


def _joined(t: Any) -> Any:
    """Index rows joined to their resources: by created_seq, unique per resource and in the lookup
    indexes, so a candidate is tested without reading its index row."""
    return t.join(resource, and_(resource.c.res_type == t.c.res_type, resource.c.created_seq == t.c.created_seq))


CHAIN_DRIVE_CAP = 1000  # a chain naming up to this many targets drives the search from their references


def _chain_source(query: SearchQuery, ctx: Context, snapshot: int) -> Source | None:
    """A chain that names few targets (a family name: a few patients) drives the search: their ids
    are fetched first, then the references to them are read and sorted into search order, and the
    other criteria checked on each in turn. Left to itself, PostgreSQL sometimes misjudged how many
    resources such a chain names and walked every Observation in order instead (3 s at 3M)."""
    for crit in query.criteria:
        if not _chains_in(crit):
            continue
        ids = [row[0] for row in ctx.conn.execute(_chain_targets(crit, ctx).limit(CHAIN_DRIVE_CAP + 1))]
        if len(ids) > CHAIN_DRIVE_CAP:
            continue
        r = idx_reference.alias()
        res_type = query.res_type or ""
        others = [c for c in query.criteria if c is not crit]
        base = [*_referring(r, query.res_type, crit, ctx), r.c.target_id.in_(ids), r.c.created_seq <= snapshot]
        # Index rows exist only for current resources: a caller who sees everything is served from them.
        if query.compartment is None and isinstance(ctx.visible(resource), True_):
            # The references in search order behind a fence (OFFSET 0: the database may not move the
            # checks into the scan), then the other criteria checked on each in that order until the
            # page is full: a name shared by 150 patients names 7,400 references, and probing every
            # one of them before sorting took 34 ms where the first page needs a few hundred.
            by_id = any(not _looked_up(c) for c in others)
            fenced = select(r.c.res_type, r.c.created_seq, *([r.c.res_id] if by_id else [])) \
                .where(*base).order_by(r.c.created_seq).offset(0).subquery()
            owner = Owner(res_type, fenced.c.res_id if by_id else fenced.c.created_seq, (res_type,),
                          seq=fenced.c.created_seq, probe=True)
            checks = [criterion_clause(c, owner, ctx) for c in others]
            return Source(_joined(r), fenced.c.created_seq, [], driven=True, index_only=(fenced, checks),
                          costly_count=bool(others))
        # The other criteria are tested on the reference rows' resource ids (from index rows alone).
        owner = Owner(res_type, r.c.res_id, (res_type,), seq=r.c.created_seq, probe=True)
        where = [*base, *[criterion_clause(c, owner, ctx) for c in others], ctx.visible(resource),
                 *criteria_clause(query, ctx, skip=query.criteria)]
        return Source(_joined(r), r.c.created_seq, where, driven=True, costly_count=bool(others))
    return None


def _source(query: SearchQuery, ctx: Context, snapshot: int) -> Source:
    driver = _driver(query)
    if driver is None and (chained := _chain_source(query, ctx, snapshot)) is not None:
        return chained
    if driver is None:
        if not any(_chains_in(c) for c in query.criteria):
            dated = _window_source(query, ctx, snapshot) or _date_source(query, ctx, snapshot)
            if dated is not None:
                return dated
        where = [ctx.visible(resource), *criteria_clause(query, ctx), resource.c.created_seq <= snapshot]
        return Source(resource, resource.c.created_seq, where)
    t = _TABLES[driver.type].alias()
    value = driver.values[0]
    if driver.type == "reference":
        match = _reference_value(t, value, driver.modifier, ctx)
    elif driver.type == "composite":
        match = _composite_value(t, value, component_types(_param_info(query.res_type or "", driver.name)), ctx)
    else:
        match = _VALUE_CLAUSES[driver.type](t, value, None, ctx)
    joined = _joined(t)
    mine = [t.c.res_type == query.res_type, t.c.param == driver.name, match, t.c.created_seq <= snapshot]
    where = [*mine, ctx.visible(resource), *criteria_clause(query, ctx, skip=driver)]
    alone = len(query.criteria) == 1 and query.compartment is None and isinstance(ctx.visible(resource), True_)
    return Source(joined, t.c.created_seq, where, driven=True, index_only=(t, mine) if alone else None)


def single_token(query: SearchQuery) -> tuple[str, str] | None:
    """(system, code) when the query is one token criterion with one `system|code` value and nothing
    else (no modifier, chain, compartment or `_id`): what a conditional lookup by identifier sends."""
    if len(query.criteria) != 1 or query.compartment is not None or query.res_type is None:
        return None
    crit = query.criteria[0]
    if crit.type != "token" or crit.modifier is not None or crit.links or len(crit.values) != 1 \
            or crit.name.startswith("_"):
        return None
    system, code = split_token(crit.values[0])
    return (system, code) if system and code is not None else None


def find_ids(conn: Connection, query: SearchQuery, visible: Visible, limit: int, base_url: str = "") -> list[str]:
    """Ids of current resources matching the criteria (for conditional interactions)."""
    ctx = Context(conn, visible, base_url)
    stmt = select(resource.c.res_id).where(visible(resource), *criteria_clause(query, ctx)).limit(limit)
    return [r.res_id for r in conn.execute(stmt)]


# -- pages ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PageRows:
    rows: list[Any]
    total: int | None
    next: Cursor | None
    previous: Cursor | None
    included: list[Any] = field(default_factory=list)


_COLS = (resource.c.res_type, resource.c.res_id, resource.c.version_id, resource.c.last_updated,
         resource.c.data, resource.c.created_seq, resource.c.partition_key)


_SORT_COLUMN = {"token": "code", "string": "value", "number": "value", "quantity": "value",
                "reference": "target_id", "uri": "value"}


def _sort_expr(key: SortKey, res_type: str) -> ColumnElement[Any]:
    """A resource's value for one sort key: its lowest value ascending, its highest descending."""
    if key.name == "_id":
        return resource.c.res_id
    if key.name == "_lastUpdated":
        return resource.c.last_updated
    t = _TABLES[key.type].alias()
    column = (t.c.high if key.descending else t.c.low) if key.type == "date" else t.c[_SORT_COLUMN[key.type]]
    agg = func.max(column) if key.descending else func.min(column)
    return select(agg).where(t.c.res_type == res_type, t.c.res_id == resource.c.res_id,
                             t.c.param == key.name).scalar_subquery()


def _after(col: Any, value: Any, descending: bool, nulls_last: bool) -> ColumnElement[bool]:
    """Rows strictly after `value` in one key's order."""
    if value is None:
        return col.isnot(None) if not nulls_last else false()
    beyond = col < value if descending else col > value
    return or_(beyond, col.is_(None)) if nulls_last else beyond


def _keyset(cols: list[Any], values: Sequence[Any], directions: list[bool], nulls_last: bool,
            seq: Any, after_seq: int, seq_desc: bool) -> ColumnElement[bool]:
    """Lexicographic 'after this row' over the sort keys, then created_seq."""
    clause: ColumnElement[bool] = seq < after_seq if seq_desc else seq > after_seq
    for col, value, desc in reversed(list(zip(cols, values, directions, strict=True))):
        same = col.is_(None) if value is None else col == value
        clause = or_(_after(col, value, desc, nulls_last), and_(same, clause))
    return clause


def _decode_keys(keys: Sequence[Any], sort: Sequence[SortKey]) -> list[Any]:
    out = []
    for value, key in zip(keys, sort, strict=False):
        out.append(Decimal(value) if value is not None and key.type in ("number", "quantity") else value)
    if len(out) != len(sort):
        raise BadRequest("the paging link does not match this search; run the search again")
    return out


Keep = Callable[[list[tuple[str, str]]], str]


def page(conn: Connection, query: SearchQuery, visible: Visible, cursor: Cursor | None,
         base_url: str = "", keep: Keep | None = None) -> PageRows:
    """One page of a search. `keep` stores the ordered matches of a sorted search that spans several
    pages (its id goes into the paging links); without it sorted pages use keyset paging."""
    if cursor is not None and cursor.search_id is not None:
        return _kept_page(conn, query, cursor, visible, base_url)
    ctx = Context(conn, visible, base_url)
    if cursor is None and not query.sort and not query.summary_count:
        return _first_page(conn, query, ctx)
    snapshot = cursor.snapshot if cursor else conn.execute(select(_SNAPSHOT)).scalar_one()
    if query.summary_count:
        return PageRows([], _count(conn, _source(query, ctx, snapshot), None), None, None)
    assert query.res_type is not None
    if query.sort:
        where = [visible(resource), *criteria_clause(query, ctx), resource.c.created_seq <= snapshot]
        src = Source(resource, resource.c.created_seq, where)
        rows, nxt, prev = _sorted_page(conn, query, where, cursor, snapshot)
        if cursor is None and nxt is not None and keep is not None:
            kept = _sorted_ids(conn, query, where, SORT_KEEP_CAP + 1)
            if len(kept) <= SORT_KEEP_CAP:
                search_id = keep(kept)
                rows = _fetch(conn, kept[:query.count], visible)
                nxt = Cursor(query.count, snapshot, False, (), search_id)
                total = len(kept) if query.total != "none" else None
                included = _included(conn, query, rows, visible, base_url) if query.includes and rows else []
                return PageRows(rows, total, nxt, None, included)
    else:
        src = _source(query, ctx, snapshot)
        rows, nxt, prev = _seq_page(conn, query, src, cursor, snapshot)
    total = None
    if query.total == "accurate":
        total = _count(conn, src, None)
    elif query.total == "estimate":
        # The whole result on one first page needs no count; otherwise count up to the cap.
        if cursor is None and nxt is None:
            total = len(rows)
        elif not src.costly_count:
            total = _count(conn, src, ESTIMATE_CAP)
    included = _included(conn, query, rows, visible, base_url) if query.includes and rows else []
    return PageRows(rows, total, nxt, prev, included)


def _first_page(conn: Connection, query: SearchQuery, ctx: Context) -> PageRows:
    """The first page of an unsorted search. It reads what is committed when it runs, so it needs no
    snapshot bound; the snapshot its paging links carry (the newest sequence number, read after the
    page, so at least every created_seq it saw) comes with the count when one is made, saving a round
    trip, and is read on its own otherwise."""
    src = _source(query, ctx, UNBOUNDED)
    rows, nxt, _ = _seq_page(conn, query, src, None, UNBOUNDED)
    total, snapshot = None, None
    if query.total == "accurate" or (query.total == "estimate" and nxt is not None and not src.costly_count):
        total, snapshot = _count_and_snapshot(conn, src, None if query.total == "accurate" else ESTIMATE_CAP)
    elif query.total == "estimate" and nxt is None:
        total = len(rows)
    if nxt is not None:
        if snapshot is None:
            snapshot = conn.execute(select(_SNAPSHOT)).scalar_one()
        nxt = Cursor(nxt.after, snapshot)
    included = _included(conn, query, rows, ctx.visible, ctx.base_url) if query.includes and rows else []
    return PageRows(rows, total, nxt, None, included)


def _count_and_snapshot(conn: Connection, src: Source, cap: int | None) -> tuple[int | None, int | None]:
    """`_count`, with the newest sequence number read in the same statement where it can be."""
    if src.window is not None:
        return _count(conn, src, cap), None
    found, snapshot = conn.execute(select(func.count(), _SNAPSHOT).select_from(_count_ids(src, cap).subquery())).one()
    return (found if cap is None or found < cap else None), snapshot


def _count_ids(src: Source, cap: int | None) -> Any:
    ids: Any
    if src.index_only is not None:
        ids = select(src.seq).select_from(src.index_only[0]).where(*src.index_only[1]).distinct()
    else:
        ids = select(src.seq).select_from(src.from_).where(*src.where)
        if src.driven:
            ids = ids.distinct()
    return ids.limit(cap) if cap is not None else ids


def _count(conn: Connection, src: Source, cap: int | None) -> int | None:
    """The number of matches; with a cap, None when there are at least that many."""
    if src.window is not None:
        found = src.window.count(conn, cap)
    else:
        found = int(conn.execute(select(func.count()).select_from(_count_ids(src, cap).subquery())).scalar_one())
    return found if cap is None or found < cap else None


def _seq_page(conn: Connection, query: SearchQuery, src: Source, cursor: Cursor | None,
              snapshot: int) -> tuple[list[Any], Cursor | None, Cursor | None]:
    """A page in created_seq order after (or, going back, before) the cursor."""
    backwards = bool(cursor and cursor.backwards)
    want = query.count + 1  # one more than a page tells whether there is a next (or previous) one
    rows: list[Any] = []
    bound = cursor.after if cursor else None
    batch_size = want
    while src.window is not None:  # candidates in batches (growing while few of them match)
        found, next_bound = _window_batch(conn, query.res_type or "", src.window, bound, backwards, batch_size)
        rows += found
        if next_bound is None or len(rows) >= want:
            break
        bound, batch_size = next_bound, min(batch_size * 2, 2000)
    while src.window is None:
        after = [] if bound is None else [src.seq < bound if backwards else src.seq > bound]
        if src.index_only is not None and src.cols is None:
            # The page is cut on the index rows alone and only its rows are read from `resource`:
            # matches of several values (a chain's dozens of patients) come out of the index unsorted,
            # and sorting them after the join read every match's row first (973 ms at 10M resources
            # when those rows were not cached; 20 of the 1,500 were kept).
            # The cut reads only lookup-index columns (a resource's created_seq is unique: its first
            # version's history seq), so it never visits the index table's rows.
            t, mine = src.index_only
            cut = select(t.c.res_type, t.c.created_seq).where(*mine, *after) \
                .order_by(src.seq.desc() if backwards else src.seq).limit(want).subquery()
            stmt = select(*_COLS).join_from(cut, resource, and_(resource.c.res_type == cut.c.res_type,
                                                                resource.c.created_seq == cut.c.created_seq)) \
                .order_by(cut.c.created_seq.desc() if backwards else cut.c.created_seq)
        else:
            stmt = select(*(src.cols or _COLS)).select_from(src.from_).where(*src.where, *after) \
                .order_by(src.seq.desc() if backwards else src.seq).limit(want)
        batch = conn.execute(stmt).all()
        for row in batch:  # a driven lookup gives a resource once per matching value: keep the first
            if not rows or rows[-1].created_seq != row.created_seq:
                rows.append(row)
        if len(batch) < want or len(rows) >= want or not src.driven:
            break
        bound = batch[-1].created_seq
    more = len(rows) > query.count
    rows = rows[:query.count]
    if backwards:
        rows.reverse()
        has_next, has_prev = True, more
    else:
        has_next, has_prev = more, cursor is not None
    nxt = Cursor(rows[-1].created_seq, snapshot) if has_next and rows else None
    prev = Cursor(rows[0].created_seq, snapshot, backwards=True) if has_prev and rows else None
    return rows, nxt, prev


def _window_batch(conn: Connection, res_type: str, w: Window, bound: int | None, backwards: bool,
                  n: int) -> tuple[list[Any], int | None]:
    """The next `n` candidates of a date window after `bound`, checked: the matching resource rows in
    search order, and the bound for the next batch (None when the candidates have run out)."""
    candidates = w.candidates(conn, bound, backwards, n)
    rows: list[Any] = []
    for several in (False, True):
        ids = list(dict.fromkeys(c.res_id for c in candidates if c.several == several))  # once per resource
        for chunk in _chunks(ids):
            rows += conn.execute(select(*_COLS).where(
                resource.c.res_type == res_type, resource.c.res_id.in_(chunk), *w.check(several))).all()
    rows.sort(key=lambda r: r.created_seq, reverse=backwards)
    return rows, (candidates[-1].created_seq if len(candidates) == n else None)


def _sorted_inner(query: SearchQuery, where: list[ColumnElement[bool]]) -> Any:
    assert query.res_type is not None
    exprs = [_sort_expr(k, query.res_type).label(f"k{i}") for i, k in enumerate(query.sort)]
    return select(*_COLS, *exprs).where(*where).subquery()


def _sort_order(query: SearchQuery, inner: Any, backwards: bool) -> list[Any]:
    order: list[Any] = []
    for i, k in enumerate(query.sort):
        key = inner.c[f"k{i}"]
        ordered = key.desc() if k.descending != backwards else key.asc()
        order.append(ordered.nulls_first() if backwards else ordered.nulls_last())
    order.append(inner.c.created_seq.desc() if backwards else inner.c.created_seq.asc())
    return order


def _sorted_ids(conn: Connection, query: SearchQuery, where: list[ColumnElement[bool]],
                limit: int) -> list[tuple[str, str]]:
    inner = _sorted_inner(query, where)
    stmt = select(inner.c.res_type, inner.c.res_id).order_by(*_sort_order(query, inner, False)).limit(limit)
    return [(r.res_type, r.res_id) for r in conn.execute(stmt)]


def keep_sorted(engine: Engine, ids: list[tuple[str, str]], now: str, expire_before: str) -> str:
    """Store a sorted search's ordered matches durably (its own short write transaction); its id.
    Results made before `expire_before` are deleted on the way."""
    search_id = str(uuid.uuid4())
    with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
            conn.begin():
        conn.execute(search_result.delete().where(search_result.c.created < expire_before))
        rows = [(search_id, pos, t, i, now) for pos, (t, i) in enumerate(ids)]
        _KEEP_ROWS.execute_tuples(conn, rows)
    return search_id


_KEEP_ROWS = dialects.insert_rows(search_result, ("search_id", "pos", "res_type", "res_id", "created"))


def _kept_page(conn: Connection, query: SearchQuery, cursor: Cursor, visible: Visible, base_url: str) -> PageRows:
    """A later page of a kept sorted result: the matches at the next (or previous) positions, as they
    are now (a match deleted since is left out; none is skipped or repeated)."""
    sr = search_result
    size = conn.execute(select(func.count()).select_from(sr).where(sr.c.search_id == cursor.search_id)).scalar_one()
    if not size:
        raise BadRequest("the paging link has expired; run the search again")
    start = max(cursor.after - query.count, 0) if cursor.backwards else cursor.after
    end = cursor.after if cursor.backwards else cursor.after + query.count
    keys = [(r.res_type, r.res_id) for r in conn.execute(
        select(sr.c.res_type, sr.c.res_id).where(sr.c.search_id == cursor.search_id, sr.c.pos >= start,
                                                 sr.c.pos < end).order_by(sr.c.pos))]
    rows = _fetch(conn, keys, visible)
    nxt = Cursor(end, cursor.snapshot, False, (), cursor.search_id) if end < size else None
    prev = Cursor(start, cursor.snapshot, True, (), cursor.search_id) if start > 0 else None
    included = _included(conn, query, rows, visible, base_url) if query.includes and rows else []
    return PageRows(rows, size if query.total != "none" else None, nxt, prev, included)


def _sorted_page(conn: Connection, query: SearchQuery, where: list[ColumnElement[bool]], cursor: Cursor | None,
                 snapshot: int) -> tuple[list[Any], Cursor | None, Cursor | None]:
    inner = _sorted_inner(query, where)
    keys = [inner.c[f"k{i}"] for i in range(len(query.sort))]
    desc = [k.descending for k in query.sort]
    backwards = bool(cursor and cursor.backwards)
    # Going backwards walks the same order reversed: each key flips, and nulls come first.
    order_desc = [d != backwards for d in desc]
    stmt = select(inner)
    if cursor is not None:
        values = _decode_keys(cursor.keys, query.sort)
        stmt = stmt.where(_keyset(keys, values, order_desc, not backwards, inner.c.created_seq, cursor.after,
                                  backwards))
    rows = list(conn.execute(stmt.order_by(*_sort_order(query, inner, backwards)).limit(query.count + 1)).all())
    more = len(rows) > query.count
    rows = rows[:query.count]
    if backwards:
        rows.reverse()
        has_next, has_prev = True, more
    else:
        has_next, has_prev = more, cursor is not None

    def at(row: Any, back: bool) -> Cursor:
        return Cursor(row.created_seq, snapshot, back, tuple(getattr(row, f"k{i}") for i in range(len(keys))))
    nxt = at(rows[-1], False) if has_next and rows else None
    prev = at(rows[0], True) if has_prev and rows else None
    return rows, nxt, prev


# -- Patient/$everything ------------------------------------------------------------------------------

def everything_page(conn: Connection, patient_ids: Sequence[str], *, types: Sequence[str], since: str | None,
                    count: int, cursor: Cursor | None, visible: Visible, base_url: str) -> PageRows:
    """One page of a patient's record: every current resource in the patient's compartment (the
    Patient itself included), plus the resources they reference that sit in no patient's compartment
    (practitioners, organisations, locations, medications ...), so nothing of another patient is ever
    included. Ordered by created_seq and bounded by a snapshot like any search. Several `patient_ids`
    (source records of one person) give the union of their compartments, each resource once."""
    snapshot = cursor.snapshot if cursor else conn.execute(select(_SNAPSHOT)).scalar_one()
    common = [visible(resource), resource.c.deleted.is_(False), resource.c.created_seq <= snapshot]
    if types:
        common.append(resource.c.res_type.in_(types))
    if since:
        common.append(resource.c.last_updated >= since)
    # Two disjoint parts (a shared resource is in no compartment), each driven by its own join: one
    # list of keys or an OR of two would make one database or the other scan every resource.
    ids = list(patient_ids)
    in_patients = compartment.c.patient_id == ids[0] if len(ids) == 1 else compartment.c.patient_id.in_(ids)
    if len(ids) == 1:
        in_compartment = select(*_COLS).join(compartment, and_(
            compartment.c.res_type == resource.c.res_type, compartment.c.res_id == resource.c.res_id)).where(
            in_patients, *common)
    else:  # a resource in two of the compartments (it names both records) is listed once
        in_compartment = select(*_COLS).where(exists().where(
            compartment.c.res_type == resource.c.res_type, compartment.c.res_id == resource.c.res_id, in_patients),
            *common)
    r = idx_reference
    targets = select(r.c.target_type, r.c.target_id).join(compartment, and_(
        compartment.c.res_type == r.c.res_type, compartment.c.res_id == r.c.res_id)).where(
        in_patients, r.c.target_id.isnot(None), local_reference(r, base_url)
    ).distinct().subquery()
    referenced = select(*_COLS).join(targets, and_(
        targets.c.target_type == resource.c.res_type, targets.c.target_id == resource.c.res_id)).where(
        resource.c.partition_key == SHARED_PARTITION, *common)
    both = union_all(in_compartment, referenced).subquery()
    src = Source(both, both.c.created_seq, [], cols=tuple(both.c))
    total = _count(conn, src, None)
    rows, nxt, prev = _seq_page(conn, SearchQuery(None, count=count), src, cursor, snapshot)
    return PageRows(rows, total, nxt, prev)


# -- _include and _revinclude ------------------------------------------------------------------------

def _included(conn: Connection, query: SearchQuery, rows: list[Any], visible: Visible, base_url: str) -> list[Any]:
    """Resources named by the query's _include and _revinclude for this page's matches, each once
    and never one already in the page; :iterate repeats on what was included."""
    seen = {(r.res_type, r.res_id) for r in rows}
    frontier = set(seen)
    out: list[Any] = []
    for round_ in range(MAX_ITERATE + 1):
        wanted = [i for i in query.includes if round_ == 0 or i.iterate]
        if not wanted or not frontier:
            break
        found: set[tuple[str, str]] = set()
        for inc in wanted:
            found |= _include_targets(conn, inc, frontier, base_url)
        new = sorted(found - seen)[:MAX_INCLUDED - len(out)]
        if not new:
            break
        fetched = _fetch(conn, new, visible)
        out += fetched
        seen |= set(new)
        frontier = {(r.res_type, r.res_id) for r in fetched}
        if len(out) >= MAX_INCLUDED:
            break
    return out


def _include_targets(conn: Connection, inc: Include, frontier: set[tuple[str, str]],
                     base_url: str) -> set[tuple[str, str]]:
    r = idx_reference
    if not inc.reverse:
        sources = [rid for t, rid in frontier if t == inc.source]
        if not sources:
            return set()
        # Looked up by the including resources' ids (their index rows); references without a type and
        # id (logical or external) are dropped here rather than in SQL.
        # The parameter and target type are checked here too: in SQL they would lead the planner to
        # scan the lookup index by parameter instead of reading these resources' few rows.
        conds = [r.c.res_type == inc.source, local_reference(r, base_url)]
        out: set[tuple[str, str]] = set()
        for chunk in _chunks(sources):
            for param, t, i in conn.execute(select(r.c.param, r.c.target_type, r.c.target_id).where(
                    *conds, r.c.res_id.in_(chunk))):
                if t and i and inc.param in (None, param) and inc.target in (None, t):
                    out.add((t, i))
        return out
    conds = [local_reference(r, base_url)]
    if inc.param is not None:
        conds += [r.c.res_type == inc.source, r.c.param == inc.param]
    by_type: dict[str, list[str]] = {}
    for target_type, target_id in sorted(frontier):
        if inc.target is None or inc.target == target_type:
            by_type.setdefault(target_type, []).append(target_id)
    out = set()
    for target_type, ids in by_type.items():
        for chunk in _chunks(ids):
            out |= {(t, i) for t, i in conn.execute(select(r.c.res_type, r.c.res_id).where(
                *conds, r.c.target_type == target_type, r.c.target_id.in_(chunk)))}
    return out


def _chunks(items: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _fetch(conn: Connection, keys: list[tuple[str, str]], visible: Visible) -> list[Any]:
    """Current resources by (type, id), in the order given; deleted and invisible ones left out."""
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    out: list[Any] = []
    for res_type, ids in by_type.items():
        for chunk in _chunks(ids):
            out += conn.execute(select(*_COLS).where(
                visible(resource), resource.c.deleted.is_(False), resource.c.res_type == res_type,
                resource.c.res_id.in_(chunk))).all()
    order = {k: i for i, k in enumerate(keys)}
    return sorted(out, key=lambda r: order[(r.res_type, r.res_id)])

