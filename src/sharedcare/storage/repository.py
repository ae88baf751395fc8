"""The Repository: every read, search and write of resources goes through here.

Each call carries the caller context, asks the access policy (compiled into the query), and leaves
exactly one audit record per interaction: in the same transaction for writes, group-committed before
the data is returned for reads (see storage/committer.py). Resources are stored as JSON bytes and
read back as those same bytes.

Writes happen inside a `Unit`: a transaction bundle uses one unit (one transaction) for all its
entries, so it is all-or-nothing; a single write interaction uses one unit of its own, which on
SQLite is a savepoint inside a group commit shared with other single writes (`write_async`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sharedcare.access import assurance, labels
from sharedcare.access.audit import AuditRecord, mark_audited
from sharedcare.access.context import Caller
from sharedcare.access.policy import AccessPolicy, Policy, own_patients, query_refusal
from sharedcare.errors import FhirError, Forbidden, Gone, NotFound, PreconditionFailed, ServiceUnavailable
from sharedcare.fhir import jsonio
from sharedcare.fhir.search.query import SearchQuery
from sharedcare.storage import audit_store, codec, dialects, indexing, keys, mpi_store, search
from sharedcare.storage.committer import Committer, Job
from sharedcare.storage.search import Cursor, Visible
from sharedcare.storage.tables import (
    SHARED_PARTITION,
    compartment,
    idx_token,
    node_setting,
    resource,
    resource_history,
    restriction,
)

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_MAX_COMPILED = 4096
# meta.source of what an organisation's system or staff wrote: set by the server, never taken from the
# client (a client cannot write as another source).
SOURCE_PREFIX = "urn:ods:"
T = TypeVar("T")

# Built once: constructing a statement costs more than running it on the read path.
_READ = select(resource.c.version_id, resource.c.last_updated, resource.c.data, resource.c.partition_key).where(
    resource.c.res_type == bindparam("t"), resource.c.res_id == bindparam("i"))
_READ_IN_UNIT = _READ.add_columns(resource.c.created_seq)  # a write needs the search order key too
_CURRENT_COLUMNS = ("version_id", "last_updated", "partition_key", "source", "security", "deleted", "data",
                    "source_org")
_HISTORY_COLUMNS = ("res_type", "res_id", "version_id", "last_updated", "method", "partition_key", "source",
                    "security", "deleted", "data", "author", "source_org")
# Writes compiled once and run on the driver (see dialects.RowsStatement); every value here is a str,
# int, bool, bytes or None, which the drivers take as they are.
_INSERT_HISTORY = dialects.Compiled(lambda _d: insert(resource_history).values(
    {c: bindparam(c) for c in _HISTORY_COLUMNS}).returning(resource_history.c.seq))
_INSERT_CURRENT = dialects.Compiled(lambda _d: insert(resource).values(
    {c: bindparam(c) for c in ("res_type", "res_id", "created_seq", *_CURRENT_COLUMNS)}))
_UPDATE_CURRENT = dialects.Compiled(lambda _d: update(resource).where(
    resource.c.res_type == bindparam("b_t"), resource.c.res_id == bindparam("b_i")).values(
    {c: bindparam(c) for c in _CURRENT_COLUMNS}))
_NEW_HISTORY = dialects.insert_rows(resource_history, _HISTORY_COLUMNS, returning=("seq", "res_type", "res_id"))
_NEW_CURRENT = dialects.insert_rows(resource, ("res_type", "res_id", "created_seq", *_CURRENT_COLUMNS))
# A Patient whose address is restricted, written by an organisation other than :o (one indexed probe).
# Whether a Patient row's contact details are hidden from a caller of organisation `o`: the person's
# address is restricted and the row was written by another organisation (or by none).
_HIDES_CONTACT = and_(
    or_(resource.c.source_org.is_(None), resource.c.source_org != bindparam("o")),
    exists(select(restriction.c.patient_id).where(
        restriction.c.patient_id == resource.c.res_id, restriction.c.kind == labels.RESTRICTED_ADDRESS)))
_RESTRICTED = dialects.Compiled(lambda _d: select(resource.c.res_id).where(
    resource.c.res_type == "Patient", resource.c.res_id == bindparam("i"), _HIDES_CONTACT))
# A Patient read by a caller who may have to see it redacted: the answer comes with the row (one round
# trip instead of two on the hottest path).
_READ_PATIENT = _READ.add_columns(_HIDES_CONTACT.label("hide_contact"))
_VREAD = select(resource_history.c.last_updated, resource_history.c.data, resource_history.c.method,
                resource_history.c.partition_key).where(
    resource_history.c.res_type == bindparam("t"), resource_history.c.res_id == bindparam("i"),
    resource_history.c.version_id == bindparam("v"))


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A server-assigned resource id: a time-ordered UUID (RFC 9562 version 7: 48 bits of Unix time in
    milliseconds, then 74 random bits). Every table keyed by resource id (current, history, index and
    compartment rows) then grows at its right edge instead of at random pages, which roughly halves
    the pages a bulk load writes to the log. The id reveals when it was made, to the millisecond, as
    meta.lastUpdated of the first version does; it carries nothing about the patient."""
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = ((time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
             | rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ts: str) -> str:
    """Stored fixed-width UTC timestamp -> HTTP date (RFC 9110 IMF-fixdate), e.g. for Last-Modified.
    Built from the fixed positions: parsing and formatting through datetime costs more than a read."""
    month = int(ts[5:7])
    weekday = date(int(ts[0:4]), month, int(ts[8:10])).weekday()
    return f"{_DAYS[weekday]}, {ts[8:10]} {_MONTHS[month - 1]} {ts[0:4]} {ts[11:19]} GMT"


def fhir_instant(ts: str) -> str:
    """Stored fixed-width UTC timestamp -> FHIR instant."""
    return ts + "+00:00"


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored. `data` is None for a deletion."""

    res_type: str
    res_id: str
    version_id: int
    last_updated: str
    data: bytes | None
    method: str | None = None
    seq: int | None = None
    partition: str | None = None  # the home patient compartment (search results), for the audit

    @property
    def deleted(self) -> bool:
        return self.data is None

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def last_modified(self) -> str:
        return http_date(self.last_updated)

    @property
    def instant(self) -> str:
        return fhir_instant(self.last_updated)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    stored: Stored
    created: bool  # a new resource (201), not a new version of an existing one
    changed: bool = True  # False when a conditional create matched an existing resource


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Stored]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None
    included: list[Stored] = field(default_factory=list)  # _include / _revinclude


def _stored(r: Any) -> Stored:
    return Stored(r.res_type, r.res_id, r.version_id, r.last_updated, codec.decode_opt(r.data), seq=r.created_seq,
                  partition=r.partition_key)


def _page(result: search.PageRows, next_cursor: str | None = None, previous_cursor: str | None = None) -> Page:
    return Page([_stored(r) for r in result.rows], result.total, next_cursor, previous_cursor,
                [_stored(r) for r in result.included])


def _patients_of(page: Page, compartment_id: str | None = None) -> tuple[str, ...]:
    """Patients a search page shows, for its audit record (whose record was looked at): the
    compartment searched, then each resource's home compartment (a Patient's is itself). Other
    compartments of resources in several are not looked up on the read path."""
    found = [compartment_id] if compartment_id else []
    found += [s.partition for s in (*page.items, *page.included) if s.partition and s.partition != SHARED_PARTITION]
    return tuple(dict.fromkeys(found))


def _may_be_redacted(caller: Caller) -> bool:
    """Whether restricted-address patients' contact details may be hidden from this caller: staff and
    source organisations' systems (not the patients themselves, nor the node)."""
    return caller.kind == "user" or (caller.kind == "system" and caller.organisation is not None)


class Repository:
    def __init__(self, engine: Engine, committer: Committer, policy: Policy | None = None,
                 clock: Callable[[], datetime] = utcnow, base_url: str = "",
                 code_sets: labels.CodeSets | None = None, step_up_aal: int = assurance.DEFAULT_STEP_UP,
                 node_id: str = "local", matcher: mpi_store.Matcher | None = None) -> None:
        self.engine = engine
        self.node_id = node_id  # recorded in the patient index with each source record it holds
        # Off only for a bulk first load: Patients new to the index are then linked afterwards by
        # mpi_store.rebuild (those it holds are still relinked, and deletions still leave it, at once).
        self.link_patients = True
        self._matcher = matcher
        self.step_up_aal = step_up_aal  # the sign-in a person needs to change a care plan
        self.base_url = base_url  # absolute references to this server are searched as local ones
        self.committer = committer
        self.policy: Policy = policy or AccessPolicy()
        self.code_sets = code_sets if code_sets is not None else labels.load_code_sets()
        self.clock = clock
        self._cursor_key = self._node_secret("cursor_key")
        self._compiled: dict[tuple[str, Hashable], dialects.RawStatement] = {}

    def _raw(self, name: str, stmt: Any, table: Any, caller: Caller) -> dialects.RawStatement:
        """`stmt` restricted by the caller's policy clause, compiled once per policy key."""
        key = self.policy.visible_key(caller)
        found = self._compiled.get((name, key)) if key is not None else None
        if found is None:
            found = dialects.RawStatement(self.engine, stmt.where(self.policy.visible_clause(caller, table)))
            if key is not None:
                if len(self._compiled) >= _MAX_COMPILED:
                    self._compiled.clear()  # one per caller context and statement: bounded, rebuilt on demand
                self._compiled[(name, key)] = found
        return found

    # -- node facts ---------------------------------------------------------------------------
    def _node_secret(self, name: str) -> bytes:
        with self.engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
            dialects.insert_ignore(conn, node_setting, {"name": name, "value": secrets.token_hex(32)})
            value = conn.execute(select(node_setting.c.value).where(node_setting.c.name == name)).scalar_one()
        return bytes.fromhex(value)

    @property
    def matcher(self) -> mpi_store.Matcher:
        """The patient index's model and thresholds (the packaged model unless one was given)."""
        if self._matcher is None:
            self._matcher = mpi_store.shipped_matcher()
        return self._matcher

    def now(self) -> str:
        """The clock as a stored timestamp (TS_FORMAT: fixed width, UTC, microseconds)."""
        return self.clock().astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")

    # -- reads ----------------------------------------------------------------------------------
    def _audit_read(self, caller: Caller, interaction: str, status: int, *, res_type: str | None = None,
                    res_id: str | None = None, version_id: int | None = None,
                    patients: tuple[str, ...] = (), query: str | None = None) -> None:
        self.committer.record(AuditRecord(interaction, status, caller, self.now(), res_type, res_id, version_id,
                                          patients, query))
        mark_audited()

    def record(self, caller: Caller, interaction: str, status: int, *, res_type: str | None = None,
               res_id: str | None = None, patients: tuple[str, ...] = (), query: str | None = None) -> None:
        """Audit an interaction that did not reach the store (refused early, or an operation; with the
        patients whose data it showed)."""
        self._audit_read(caller, interaction, status, res_type=res_type, res_id=res_id, patients=patients,
                         query=query)

    def _patients(self, conn: Connection, res_type: str, res_id: str) -> tuple[str, ...]:
        rows = conn.execute(select(compartment.c.patient_id).where(
            compartment.c.res_type == res_type, compartment.c.res_id == res_id))
        return tuple(r.patient_id for r in rows)

    def _read(self, caller: Caller, res_type: str, res_id: str) -> tuple[Stored | None, FhirError | None,
                                                                         AuditRecord]:
        """One read without its audit: the stored version or the error to raise, and the audit record."""
        redacting = res_type == "Patient" and _may_be_redacted(caller)
        if redacting:
            row = self._raw("read-patient", _READ_PATIENT, resource, caller).fetch_one(
                self.engine, {"t": res_type, "i": res_id, "o": caller.organisation or ""})
        else:
            row = self._raw("read", _READ, resource, caller).fetch_one(self.engine, {"t": res_type, "i": res_id})
        if row is None:
            return None, NotFound(f"{res_type} resource not found"), self._record(caller, "read", 404, res_type,
                                                                                  res_id)
        version_id, last_updated, data, partition_key = row[:4]
        patients = (partition_key,) if partition_key != SHARED_PARTITION else ()
        if data is None:
            return (None, Gone(f"{res_type} resource was deleted", headers={"ETag": f'W/"{version_id}"'}),
                    self._record(caller, "read", 410, res_type, res_id, version_id, patients))
        body = codec.decode(data)
        if redacting and row[4]:
            body = labels.without_contact_details(body)
        stored = Stored(res_type, res_id, version_id, last_updated, body)
        return stored, None, self._record(caller, "read", 200, res_type, res_id, version_id, patients)

    def _vread(self, caller: Caller, res_type: str, res_id: str, version_id: int) -> tuple[
            Stored | None, FhirError | None, AuditRecord]:
        row = self._raw("vread", _VREAD, resource_history, caller).fetch_one(
            self.engine, {"t": res_type, "i": res_id, "v": version_id})
        if row is None:
            return (None, NotFound(f"{res_type} version not found"),
                    self._record(caller, "vread", 404, res_type, res_id, version_id))
        last_updated, data, method, partition_key = row
        patients = (partition_key,) if partition_key != SHARED_PARTITION else ()
        if data is None:
            return (None, Gone(f"{res_type} version is a deletion"),
                    self._record(caller, "vread", 410, res_type, res_id, version_id, patients))
        stored = Stored(res_type, res_id, version_id, last_updated, codec.decode(data), method)
        if res_type == "Patient":
            stored = self.redacted(caller, [stored])[0]
        return stored, None, self._record(caller, "vread", 200, res_type, res_id, version_id, patients)

    def _record(self, caller: Caller, interaction: str, status: int, res_type: str | None = None,
                res_id: str | None = None, version_id: int | None = None,
                patients: tuple[str, ...] = ()) -> AuditRecord:
        return AuditRecord(interaction, status, caller, self.now(), res_type, res_id, version_id, patients)

    @staticmethod
    def _settle(outcome: tuple[T | None, FhirError | None, AuditRecord]) -> T:
        """What a read or search serves, once its audit record is committed: the result, or its error."""
        mark_audited()
        result, error, _ = outcome
        if error is not None:
            raise error
        assert result is not None  # each outcome holds a result or an error
        return result

    def read(self, caller: Caller, res_type: str, res_id: str) -> Stored:
        outcome = self._read(caller, res_type, res_id)
        self.committer.record(outcome[2])
        return self._settle(outcome)

    def vread(self, caller: Caller, res_type: str, res_id: str, version_id: int) -> Stored:
        outcome = self._vread(caller, res_type, res_id, version_id)
        self.committer.record(outcome[2])
        return self._settle(outcome)

    async def read_async(self, caller: Caller, res_type: str, res_id: str) -> Stored:
        """read() for the event loop. On SQLite the single indexed SELECT runs inline (tens of
        microseconds, cheaper than a thread hand-off); elsewhere in a worker thread. The response
        waits for the audit group commit without holding a thread."""
        if self.engine.dialect.name == "sqlite":
            outcome = self._read(caller, res_type, res_id)
        else:
            outcome = await asyncio.to_thread(self._read, caller, res_type, res_id)
        await self.committer.record_async(outcome[2])
        return self._settle(outcome)

    async def vread_async(self, caller: Caller, res_type: str, res_id: str, version_id: int) -> Stored:
        if self.engine.dialect.name == "sqlite":
            outcome = self._vread(caller, res_type, res_id, version_id)
        else:
            outcome = await asyncio.to_thread(self._vread, caller, res_type, res_id, version_id)
        await self.committer.record_async(outcome[2])
        return self._settle(outcome)

    def refusal(self, caller: Caller, query: SearchQuery) -> str | None:
        """Why the caller may not run this search at all (403 whatever exists), or None."""
        if query.res_type is None or not self.policy.may_search(caller, query.res_type):
            return "you may not search this resource type"
        return query_refusal(self.policy, caller, query, lambda: self.own_patients(caller), self.base_url)

    def redacted(self, caller: Caller, items: list[Stored], conn: Connection | None = None) -> list[Stored]:
        """`items` as the caller may see them: a restricted-address patient's Patient record loses its
        address and contact details for anyone outside the organisation that wrote it (the patient
        themselves and the node keep them)."""
        if not _may_be_redacted(caller):
            return items
        ids = [s.res_id for s in items if s.res_type == "Patient" and s.data is not None]
        if not ids:
            return items
        values = [{"i": i, "o": caller.organisation or ""} for i in ids]
        if conn is not None:
            hidden = {v["i"] for v in values if _RESTRICTED.execute(conn, v).first() is not None}
        else:
            raw = _RESTRICTED.get(self.engine)
            hidden = {v["i"] for v in values if raw.fetch_one(self.engine, v) is not None}
        if not hidden:
            return items
        return [dataclasses.replace(s, data=labels.without_contact_details(s.data))
                if s.res_type == "Patient" and s.res_id in hidden and s.data is not None else s for s in items]

    def _redacted_page(self, caller: Caller, page: Page, conn: Connection | None = None) -> Page:
        items = self.redacted(caller, page.items, conn)
        included = self.redacted(caller, page.included, conn) if page.included else page.included
        if items is page.items and included is page.included:
            return page
        return dataclasses.replace(page, items=items, included=included)

    def exists(self, res_type: str, res_id: str) -> bool:
        """Whether a current (not deleted) resource is stored, whoever may see it: for operations on a
        patient that staff may invoke without seeing the record (break-glass)."""
        with self.engine.connect() as conn:
            return conn.execute(select(resource.c.res_id).where(
                resource.c.res_type == res_type, resource.c.res_id == res_id, resource.c.deleted.is_(False))
            ).first() is not None

    def own_patients(self, caller: Caller) -> frozenset[str]:
        """A patient caller's own Patient records (every record with their NHS number)."""
        if caller.kind != "patient" or not caller.nhs_number:
            return frozenset()
        with self.engine.connect() as conn:
            return frozenset(conn.execute(own_patients(caller.nhs_number)).scalars())

    def _search(self, caller: Caller, query: SearchQuery,
                query_string: str) -> tuple[Page | None, FhirError | None, AuditRecord]:
        """A search's page (or why it is refused) and the audit record to commit before it is served."""
        interaction = "search-type"
        refused = self.refusal(caller, query)
        if refused is not None:
            return None, Forbidden(refused), AuditRecord(interaction, 403, caller, self.now(), query.res_type,
                                                         query=query_string)
        cursor = search.open_cursor(self._cursor_key, caller.agent_id, query.cursor) if query.cursor else None
        with self.engine.connect().execution_options(**dialects.read_options(self.engine)) as conn:
            result = search.page(conn, query, self.visible(caller), cursor, self.base_url, keep=self._keep_sorted)
        sign = self._sign(caller)
        page = self._redacted_page(caller, _page(result, sign(result.next), sign(result.previous)))
        return page, None, AuditRecord(interaction, 200, caller, self.now(), query.res_type,
                                       patients=_patients_of(page, query.compartment[1] if query.compartment
                                                             else None), query=query_string)

    def search(self, caller: Caller, query: SearchQuery, query_string: str) -> Page:
        outcome = self._search(caller, query, query_string)
        self.committer.record(outcome[2])
        return self._settle(outcome)

    async def search_async(self, caller: Caller, query: SearchQuery, query_string: str) -> Page:
        """search() for the event loop: the query runs in a worker thread, and the response waits for
        the audit record's group commit on the loop, batched with the other requests' records."""
        outcome = await asyncio.to_thread(self._search, caller, query, query_string)
        await self.committer.record_async(outcome[2])
        return self._settle(outcome)

    def match(self, caller: Caller, values: dict[str, Any],
              choose: Callable[[list[tuple[str, Mapping[str, Any]]]], list[tuple[int, T]]]) -> list[tuple[Stored, T]]:
        """Patient/$match: the patient index's records the caller may see that share a blocking key
        with the input (`values`: mpi_store.record_values of the input), narrowed by `choose`
        (indexes into the (id, features) candidates, best first, each with what the caller is told);
        the chosen Patients are returned as the caller may see them. One audit record for the
        operation names every patient returned."""
        if not self.policy.may_search(caller, "Patient"):
            self._audit_read(caller, "operation", 403, res_type="Patient", query="$match")
            raise Forbidden("you may not search this resource type")
        visible = self.visible(caller)
        with self.engine.connect().execution_options(**dialects.read_options(self.engine)) as conn:
            candidates = mpi_store.visible_candidates(conn, values, visible)
            picked = choose(candidates)
            ids = [candidates[i][0] for i, _ in picked]
            rows = {r.res_id: r for r in conn.execute(select(
                resource.c.res_id, resource.c.version_id, resource.c.last_updated, resource.c.data).where(
                resource.c.res_type == "Patient", resource.c.res_id.in_(ids), resource.c.deleted.is_(False),
                visible(resource)))} if ids else {}
            found = [Stored("Patient", i, rows[i].version_id, rows[i].last_updated, codec.decode(rows[i].data))
                     for i in ids if i in rows]
            shown = {s.res_id: s for s in self.redacted(caller, found, conn)}
        chosen = [(shown[candidates[i][0]], told) for i, told in picked if candidates[i][0] in shown]
        self._audit_read(caller, "operation", 200, res_type="Patient", query="$match",
                         patients=tuple(stored.res_id for stored, _ in chosen))
        return chosen

    def everything(self, caller: Caller, patient_id: str, *, types: Sequence[str] = (), since: str | None = None,
                   count: int, cursor_token: str | None = None, query_string: str = "", mdm: bool = False) -> Page:
        """Patient/$everything: the patient's record, paged (see search.everything_page). A patient
        the caller may not see, or that does not exist, is 404 either way. With `mdm`, the records of
        every Patient the patient index links to the same person, as far as the caller may see them."""
        cursor = search.open_cursor(self._cursor_key, caller.agent_id, cursor_token) if cursor_token else None
        with self.engine.connect().execution_options(**dialects.read_options(self.engine)) as conn:
            visible = self.visible(caller)
            exists_ = conn.execute(select(resource.c.res_id).where(
                visible(resource), resource.c.res_type == "Patient", resource.c.res_id == patient_id,
                resource.c.deleted.is_(False))).first()
            if exists_ is None:
                self._audit_read(caller, "operation", 404, res_type="Patient", res_id=patient_id, query=query_string)
                raise NotFound("Patient resource not found")
            patients = mpi_store.same_person(conn, patient_id, visible) if mdm else [patient_id]
            result = search.everything_page(conn, patients, types=types, since=since, count=count, cursor=cursor,
                                            visible=visible, base_url=self.base_url)
        sign = self._sign(caller)
        page = self._redacted_page(caller, _page(result, sign(result.next), sign(result.previous)))
        self._audit_read(caller, "operation", 200, res_type="Patient", res_id=patient_id, patients=tuple(patients),
                         query=query_string)
        return page

    def _keep_sorted(self, ids: list[tuple[str, str]]) -> str:
        """Keep a sorted result for its paging links (a day; older ones are dropped on the way)."""
        day_ago = (self.clock() - timedelta(days=1)).astimezone(UTC).replace(tzinfo=None)
        return search.keep_sorted(self.engine, ids, self.now(), day_ago.isoformat(timespec="microseconds"))

    def visible(self, caller: Caller) -> Visible:
        """The caller's visibility rule, for any alias of the resource table."""
        return lambda table: self.policy.visible_clause(caller, table)

    def _sign(self, caller: Caller) -> Callable[[Cursor | None], str | None]:
        def sign(cur: Cursor | None) -> str | None:
            return search.sign_cursor(self._cursor_key, caller.agent_id, cur) if cur else None
        return sign

    def history(self, caller: Caller, res_type: str | None, res_id: str | None, *, count: int,
                since: str | None = None, cursor_token: str | None = None, query_string: str = "") -> Page:
        """History newest first; stable paging by history sequence number with a snapshot bound."""
        interaction = "history-instance" if res_id else "history-type" if res_type else "history-system"
        h = resource_history
        where = [self.policy.visible_clause(caller, h)]
        if res_type:
            where.append(h.c.res_type == res_type)
        if res_id:
            where.append(h.c.res_id == res_id)
        if since:
            where.append(h.c.last_updated >= since)
        cursor = search.open_cursor(self._cursor_key, caller.agent_id, cursor_token) if cursor_token else None
        with self.engine.connect() as conn:
            snapshot = cursor.snapshot if cursor else conn.execute(
                select(func.coalesce(func.max(h.c.seq), 0))).scalar_one()
            where.append(h.c.seq <= snapshot)
            total = conn.execute(select(func.count()).select_from(h).where(*where)).scalar_one()
            stmt = select(h.c.res_type, h.c.res_id, h.c.version_id, h.c.last_updated, h.c.data, h.c.method,
                          h.c.seq).where(*where)
            if cursor:
                stmt = stmt.where(h.c.seq < cursor.after)
            rows = conn.execute(stmt.order_by(h.c.seq.desc()).limit(count + 1)).all()
        if res_id and total == 0:
            self._audit_read(caller, interaction, 404, res_type=res_type, res_id=res_id, query=query_string)
            raise NotFound(f"{res_type} resource not found")
        more = len(rows) > count
        rows = rows[:count]
        items = self.redacted(caller, [
            Stored(r.res_type, r.res_id, r.version_id, r.last_updated, codec.decode_opt(r.data), r.method, r.seq)
            for r in rows])
        self._audit_read(caller, interaction, 200, res_type=res_type, res_id=res_id, query=query_string)
        nxt = Cursor(rows[-1].seq, snapshot) if more and rows else None
        return Page(items, total, self._sign(caller)(nxt), None)

    # -- writes ---------------------------------------------------------------------------------
    @contextmanager
    def unit(self, caller: Caller, interaction: str, res_type: str | None = None) -> Iterator[Unit]:
        """A write transaction. On a FHIR error it rolls back and audits the failure; on success the
        audit records of every write in it are committed with the data."""
        try:
            with dialects.writer(self.engine), \
                    self.engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
                unit = Unit(self, conn, caller)
                yield unit
                unit.flush()
                audit_store.append(conn, unit.audits)
        except FhirError as exc:
            self._audit_read(caller, interaction, exc.status, res_type=res_type)
            raise

    @contextmanager
    def savepoints(self, caller: Caller) -> Iterator[Savepoints]:
        """One transaction holding several independent units, each in a savepoint of its own
        (`Savepoints.unit`): a unit that fails rolls back alone, and the rest commit together with
        their audit records when the block ends (a feed's messages, one commit for many)."""
        with dialects.writer(self.engine), \
                self.engine.connect().execution_options(**dialects.write_options()) as conn, conn.begin():
            batch = Savepoints(self, conn, caller)
            yield batch
            audit_store.append(conn, batch.audits)

    async def write_async(self, caller: Caller, interaction: str, res_type: str | None,
                          action: Callable[[Unit], T]) -> T:
        """One write interaction in a unit of its own, awaited without blocking the event loop.

        Where the dialect batches writes (SQLite) the unit is a savepoint in the committer's next group
        commit; elsewhere it is a transaction of its own in a worker thread. Either way the action runs
        once, its audit records commit with it, and a FHIR error rolls it back and is audited."""
        if not dialects.batches_writes(self.engine):
            def run_alone() -> T:
                with self.unit(caller, interaction, res_type) as unit:
                    return action(unit)
            return await asyncio.to_thread(run_alone)

        def run(conn: Connection) -> tuple[T, list[AuditRecord]]:
            unit = Unit(self, conn, caller)
            result = action(unit)
            unit.flush()
            return result, unit.audits

        def on_error(exc: FhirError) -> list[AuditRecord]:
            return [self._record(caller, interaction, exc.status, res_type)]
        try:
            result: T = await self.committer.submit_async(Job(run=run, on_error=on_error))
        except ServiceUnavailable:
            raise  # the batch did not commit, so neither did any audit of this write
        except FhirError:
            mark_audited()  # audited by on_error, in the batch
            raise
        mark_audited()
        return result


_SOURCE_ORG = dialects.Compiled(lambda _dialect: select(resource.c.source_org).where(
    resource.c.res_type == bindparam("t"), resource.c.res_id == bindparam("i")))
_TOKEN_ROW = idx_token.alias("t")
_FIND_TOKEN = select(resource.c.res_id).where(
    resource.c.res_type == bindparam("t"),
    exists().where(_TOKEN_ROW.c.res_type == resource.c.res_type, _TOKEN_ROW.c.res_id == resource.c.res_id,
                   _TOKEN_ROW.c.param == bindparam("p"), _TOKEN_ROW.c.code == bindparam("c"),
                   _TOKEN_ROW.c.system == bindparam("s"))).limit(bindparam("n"))


class Savepoints:
    """Units in savepoints of one transaction (`Repository.savepoints`)."""

    def __init__(self, repo: Repository, conn: Connection, caller: Caller) -> None:
        self.repo = repo
        self.conn = conn
        self.caller = caller
        self.audits: list[AuditRecord] = []

    @contextmanager
    def unit(self, caller: Caller | None = None) -> Iterator[Unit]:
        """A unit (acting as `caller`, by default the batch's) that commits with the others, or (on any
        exception, which is raised on) not at all."""
        savepoint = self.conn.begin_nested()
        unit = Unit(self.repo, self.conn, caller or self.caller)
        try:
            yield unit
            unit.flush()
        except BaseException:
            savepoint.rollback()
            raise
        savepoint.commit()
        self.audits.extend(unit.audits)


class Unit:
    """Writes within one transaction. Not thread-safe; lives only inside `Repository.unit`."""

    def __init__(self, repo: Repository, conn: Connection, caller: Caller) -> None:
        self.repo = repo
        self.conn = conn
        self.caller = caller
        self.audits: list[AuditRecord] = []
        self.pending = indexing.PendingRows()
        self.new_rows: list[dict[str, Any]] = []  # history rows of resources created in this unit
        self.org_ods: dict[str, str | None] = {}  # Organization id -> ODS code, as relationships name them
        # Patients written or deleted in this unit, in order, for the patient index (at flush):
        # (id, the Patient as stored or None once deleted, whether its address is restricted).
        self.mpi_pending: list[tuple[str, dict[str, Any] | None, bool]] = []
        self._alongside: list[Unit] = []  # units acting as other callers in this transaction (`alongside`)

    def flush(self, only_type: str | None = None) -> None:
        """Write what this unit has gathered: new resources (history, then current rows with the
        history sequence number of their first version), then index rows, each as one executemany.
        Anything that reads inside the unit flushes first, so the unit always sees its own writes:
        with `only_type`, the index rows of other types wait (a lookup of one type by its own index
        rows, for a caller whose view depends on nothing else)."""
        seqs = self._flush_new()
        self.pending.flush(self.conn, seqs, only_type)
        if self.mpi_pending:
            self._index_patients()
        for other in self._alongside:
            other.flush()
            self.audits.extend(other.audits)
            other.audits.clear()

    def alongside(self, caller: Caller) -> Unit:
        """A unit in this one's transaction acting as `caller`: for a record the server keeps beside a
        client's writes (a pushed message's Provenance), which the client's scopes need not cover. It is
        flushed with this one, and its audit records commit with this one's."""
        other = Unit(self.repo, self.conn, caller)
        self._alongside.append(other)
        return other

    @cached_property
    def _lean(self) -> bool:
        """What this caller may see depends only on each resource's own row and index rows (a system
        without granular scopes), so a lookup need not wait for other resources' index rows."""
        return self.caller.kind == "system" and not any("?" in scope for scope in self.caller.scopes)

    def _flush_new(self) -> dict[tuple[str, str], int]:
        """Insert the resources first written since the last flush (their index rows wait, settled
        with their created_seq); the sequence numbers given."""
        seqs: dict[tuple[str, str], int] = {}
        if self.new_rows:
            rows, self.new_rows = self.new_rows, []
            try:
                seqs = {(r[1], r[2]): r[0] for r in _NEW_HISTORY.execute(self.conn, rows)}
                _NEW_CURRENT.execute(self.conn, [
                    {"res_type": r["res_type"], "res_id": r["res_id"],
                     "created_seq": seqs[(r["res_type"], r["res_id"])], **{k: r[k] for k in _CURRENT_COLUMNS}}
                    for r in rows])
            except IntegrityError:
                raise PreconditionFailed("a resource with this id already exists") from None
        self.pending.settle(seqs)
        return seqs

    def _index_patients(self) -> None:
        """Link the Patients written since the last flush in the patient index, in the order written."""
        pending, self.mpi_pending = self.mpi_pending, []
        now = self.repo.now()
        run: list[tuple[str, dict[str, Any], bool]] = []
        for res_id, doc, restricted in pending:
            if doc is not None:
                run.append((res_id, doc, restricted))
                continue
            if run:
                mpi_store.link_written(self.conn, self.repo.matcher, run, node=self.repo.node_id, now=now,
                                       defer_new=not self.repo.link_patients)
                run = []
            mpi_store.unlink_deleted(self.conn, [res_id], now=now)
        if run:
            mpi_store.link_written(self.conn, self.repo.matcher, run, node=self.repo.node_id, now=now,
                                   defer_new=not self.repo.link_patients)

    def audit(self, interaction: str, status: int, stored: Stored | None, patients: tuple[str, ...] = (),
              query: str | None = None, res_type: str | None = None) -> None:
        self.audits.append(AuditRecord(
            interaction, status, self.caller, self.repo.now(),
            stored.res_type if stored else res_type, stored.res_id if stored else None,
            stored.version_id if stored else None, patients, query))
        mark_audited()

    def current(self, res_type: str, res_id: str, *, lock: bool = False) -> Stored | None:
        self.flush(res_type if self._lean else None)  # a system's read of one resource needs its type's rows only
        # Compiled once per caller policy (building the statement cost more than running it).
        if lock and not dialects.is_sqlite(self.conn):
            stmt = self.repo._raw("current-locked", _READ_IN_UNIT.with_for_update(), resource, self.caller)
        else:
            stmt = self.repo._raw("current", _READ_IN_UNIT, resource, self.caller)
        row = self.conn.exec_driver_sql(stmt.sql, stmt.args({"t": res_type, "i": res_id})).first()
        return Stored(res_type, res_id, row.version_id, row.last_updated, codec.decode_opt(row.data),
                      seq=row.created_seq) if row else None

    def find(self, query: SearchQuery, limit: int = 2) -> list[str]:
        """Ids matching a conditional-interaction query (within this transaction). The match URL is
        a search like any other: the caller may match only what they may search and see."""
        refused = self.repo.refusal(self.caller, query)
        if refused is not None:
            raise Forbidden(refused)
        token = search.single_token(query)
        # Earlier writes in this transaction must be searchable: for one token of one type, by a
        # system, its type's rows are enough.
        self.flush(query.res_type if token is not None and self._lean else None)
        if token is not None:
            # The commonest conditional criterion (`identifier=system|value`, what every feed looks its
            # records up by), from a statement compiled once per caller policy: the same rows as the
            # search below, without building its clauses for each lookup.
            system, code = token
            stmt = self.repo._raw("find-token", _FIND_TOKEN, resource, self.caller)
            return [r[0] for r in self.conn.exec_driver_sql(stmt.sql, stmt.args(
                {"t": query.res_type, "p": query.criteria[0].name, "s": keys.fit(system), "c": keys.fit(code),
                 "n": limit})).fetchall()]
        return search.find_ids(self.conn, query, self.repo.visible(self.caller), limit, self.repo.base_url)

    def search(self, query: SearchQuery) -> Page:
        """A search inside this transaction (a GET entry of a batch or transaction): one page, audited
        with the transaction, seeing the transaction's own writes."""
        refused = self.repo.refusal(self.caller, query)
        if refused is not None:
            raise Forbidden(refused)
        self.flush()
        result = search.page(self.conn, query, self.repo.visible(self.caller), None, self.repo.base_url)
        page = self.repo._redacted_page(self.caller, _page(result), self.conn)
        self.audit("search-type", 200, None, _patients_of(page), query=query.canonical(), res_type=query.res_type)
        return page

    def lock(self, *parts: str) -> None:
        dialects.lock_key(self.conn, *parts)

    def _organisation_written(self, res_id: str, doc: dict[str, Any]) -> None:
        """Relationships name organisations by ODS code: remember this one's, and resolve rows written
        before it (flushed first, so rows gathered in this transaction are included)."""
        code = labels.ods_code(doc)
        self.org_ods[res_id] = code
        if code:
            self.flush()
            indexing.resolve_written_organisation(self.conn, res_id, code)

    def require_may(self, res_type: str, *interactions: str) -> None:
        """Refuse (403) before anything is looked up when the caller may do none of `interactions`
        on the type, so the answer cannot depend on what exists."""
        if not any(self.repo.policy.may_write(self.caller, res_type, None, i) for i in interactions):
            raise Forbidden(f"you may not {' or '.join(interactions)} {res_type} resources")
        self._step_up(res_type)

    def _check_write(self, res_type: str, body: dict[str, Any] | None, interaction: str) -> None:
        if not self.repo.policy.may_write(self.caller, res_type, body, interaction):
            raise Forbidden(f"you may not {interaction} {res_type} resources")
        self._step_up(res_type)

    def _step_up(self, res_type: str) -> None:
        """A person changes a care plan only after a strong enough sign-in (AN3: 401, nothing changed)."""
        if res_type in assurance.STEP_UP_TYPES:
            assurance.require(self.caller, self.repo.step_up_aal, f"changing a {res_type}")

    @property
    def _unrestricted(self) -> bool:
        """The node acting for itself: nothing to check after a write."""
        return self.caller.kind == "system" and self.caller.organisation is None

    def _source_org(self, res_type: str, res_id: str) -> tuple[str | None] | None:
        """(source organisation,) of a stored resource, whoever may see it; None when there is none."""
        row = _SOURCE_ORG.execute(self.conn, {"t": res_type, "i": res_id}).first()
        return (row.source_org,) if row is not None else None

    def source_orgs(self, res_type: str, ids: list[str]) -> dict[str, str | None]:
        """Which of `ids` are stored as `res_type` (deleted or not), with their source organisations,
        whoever may see them: a bulk load's one lookup for many resources, so that those not stored
        yet are inserted together."""
        self._flush_new()
        out: dict[str, str | None] = {}
        for start in range(0, len(ids), 500):
            rows = self.conn.execute(select(resource.c.res_id, resource.c.source_org).where(
                resource.c.res_type == res_type, resource.c.res_id.in_(ids[start:start + 500])))
            out.update((r.res_id, r.source_org) for r in rows)
        return out

    def _check_visible(self, res_type: str, res_id: str, patients: tuple[str, ...]) -> None:
        """A write may not leave the writer's own view (e.g. move a record to a patient they may not
        see): checked on the written version, inside the transaction, so a refusal rolls it back.
        Staff may also write only about patients they may see (their own organisation's writing
        alone does not let them reach a patient's record)."""
        self.flush()
        visible = self.repo.policy.visible_clause(self.caller, resource)
        found = self.conn.execute(select(resource.c.res_id).where(
            resource.c.res_type == res_type, resource.c.res_id == res_id, visible)).first()
        if found is None:
            raise Forbidden("you may not write a resource you could not then see")
        if self.caller.kind == "user" and patients:
            seen = self.conn.execute(select(func.count()).select_from(resource).where(
                resource.c.res_type == "Patient", resource.c.res_id.in_(list(patients)), visible)).scalar_one()
            if seen != len(set(patients)):
                raise Forbidden("you may write only about patients whose records you may see")

    def write(self, res_type: str, res_id: str, body: dict[str, Any], *, method: str,
              if_match: int | None = None, expect_new: bool = False) -> WriteOutcome:
        """Store a new version of res_type/res_id (creating it if absent). The caller has validated body.

        What the access policy keeps with each version is computed here, from the caller and the
        content, never taken from the client: the source organisation (`source_org`, and `meta.source`
        for an organisation's writes), security labels, relationships and restrictions. A caller that
        acts for an organisation may change only what that organisation wrote, and may not write a
        version it could not then see (the policy is checked again after the write)."""
        # A new server-assigned id cannot exist yet: the primary key guards it, no lookup needed.
        prev = None if expect_new else self.current(res_type, res_id, lock=True)
        self._check_write(res_type, body, "create" if prev is None else "update")
        org = self.caller.organisation
        if not self._unrestricted and not expect_new:
            stored_org = self._source_org(res_type, res_id)
            if (prev is None and stored_org is not None) or (prev is not None and org is not None
                                                             and stored_org != (org,)):
                raise Forbidden("you may change only what your own organisation wrote")
        if if_match is not None and (prev is None or prev.version_id != if_match or prev.deleted):
            raise PreconditionFailed("the resource has changed since the version you sent (If-Match)")
        if expect_new and prev is not None:
            raise PreconditionFailed("a resource with this id already exists")
        version = (prev.version_id + 1) if prev else 1
        now = self.repo.now()
        meta = dict(body.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = fhir_instant(now)
        if org is not None:
            meta["source"] = SOURCE_PREFIX + org
        doc = {"resourceType": res_type, "id": res_id, "meta": meta}
        doc.update((k, v) for k, v in body.items() if k not in doc)
        data = jsonio.dumps(doc)
        rows = indexing.rows_for(res_type, res_id, doc)
        facts = labels.facts(doc, self.repo.code_sets)
        if res_type == "Organization":
            self._organisation_written(res_id, doc)
        indexing.add_access(rows, res_type, res_id, indexing.with_ods_keys(self.conn, facts, self.org_ods))
        if res_type == "Patient":
            self.mpi_pending.append((res_id, doc, any(kind == labels.RESTRICTED_ADDRESS
                                                      for _, kind in facts.restrictions)))
        source = meta.get("source")
        hist = {
            "res_type": res_type, "res_id": res_id, "version_id": version, "last_updated": now,
            "method": method, "partition_key": rows.partition_key, "source": source, "security": facts.security,
            "deleted": False, "data": codec.encode(data), "author": self.caller.agent_id, "source_org": org,
        }
        seq: int | None = None
        try:
            if expect_new:
                self.new_rows.append(hist)  # inserted with the unit's other new resources at flush
            else:
                seq = _INSERT_HISTORY.execute(self.conn, hist).scalar_one()
            current = {k: hist[k] for k in _CURRENT_COLUMNS}
            if expect_new:
                pass  # the current row follows at flush, with the sequence number of this first version
            elif prev is None:
                _INSERT_CURRENT.execute(self.conn, {"res_type": res_type, "res_id": res_id, "created_seq": seq,
                                                    **current})
            else:
                _UPDATE_CURRENT.execute(self.conn, {"b_t": res_type, "b_i": res_id, **current})
                self.pending.discard(res_type, res_id)
                indexing.clear(self.conn, res_type, res_id)
        except IntegrityError:
            # Only reachable on PostgreSQL when another transaction created the same id first.
            raise PreconditionFailed("the resource was changed by someone else at the same time") from None
        # The search order key: version 1's history sequence number (known at flush for a new resource).
        self.pending.add(res_type, res_id, rows, prev.seq if prev is not None else seq)
        if self.caller.kind != "system":  # a system sees what its organisation wrote: nothing to check
            self._check_visible(res_type, res_id, rows.patients)
        stored = Stored(res_type, res_id, version, now, data, method, seq)
        self.audit("create" if prev is None or method == "POST" else "update", 201 if prev is None else 200,
                   stored, rows.patients)
        return WriteOutcome(stored, created=prev is None)

    def create(self, body: dict[str, Any], *, res_id: str | None = None) -> WriteOutcome:
        return self.write(body["resourceType"], res_id or new_id(), body, method="POST", expect_new=True)

    def delete(self, res_type: str, res_id: str, *, if_match: int | None = None) -> Stored | None:
        """Delete the current version; None if there was nothing to delete (still a success in FHIR)."""
        self._check_write(res_type, None, "delete")
        prev = self.current(res_type, res_id, lock=True)
        org = self.caller.organisation
        if prev is not None and org is not None and self._source_org(res_type, res_id) != (org,):
            raise Forbidden("you may change only what your own organisation wrote")
        if if_match is not None and (prev is None or prev.version_id != if_match):
            raise PreconditionFailed("the resource has changed since the version you sent (If-Match)")
        if prev is None or prev.deleted:
            self.audit("delete", 204, prev, res_type=res_type)
            return None
        now = self.repo.now()
        version = prev.version_id + 1
        patients = self.repo._patients(self.conn, res_type, res_id)
        partition = patients[0] if patients else SHARED_PARTITION
        seq = self.conn.execute(insert(resource_history).values(
            res_type=res_type, res_id=res_id, version_id=version, last_updated=now, method="DELETE",
            partition_key=partition, deleted=True, data=None, author=self.caller.agent_id, source_org=org,
        ).returning(resource_history.c.seq)).scalar_one()
        self.conn.execute(update(resource).where(resource.c.res_type == res_type, resource.c.res_id == res_id)
                          .values(version_id=version, last_updated=now, deleted=True, data=None))
        # The compartment rows stay (history stays in the patient's compartment); search rows go, and
        # so do the relationships and restrictions the resource gave.
        self.pending.discard(res_type, res_id)
        indexing.clear_deleted(self.conn, res_type, res_id)
        if res_type == "Patient":
            self.mpi_pending.append((res_id, None, False))
        stored = Stored(res_type, res_id, version, now, None, "DELETE", seq)
        self.audit("delete", 204, stored, patients)
        return stored

    def read(self, res_type: str, res_id: str) -> Stored:
        """A read inside this transaction (a GET entry of a batch or transaction), as the caller may
        see it."""
        stored = self.require_exists(res_type, res_id)
        return self.repo.redacted(self.caller, [stored], self.conn)[0]

    def require_exists(self, res_type: str, res_id: str) -> Stored:
        prev = self.current(res_type, res_id)
        if prev is None:
            raise NotFound(f"{res_type} resource not found")
        if prev.deleted:
            raise Gone(f"{res_type} resource was deleted")
        return prev
