"""The master patient index's tables (tables.py: mpi_record, mpi_person, mpi_link, mpi_link_history,
mpi_review): written in each Patient's own write transaction (`link_written`, `unlink_deleted`), and
read for `Patient/$match`, Person, the review queue and merges (mpi/service.py).

Linking a record reads other records' links and writes its own, so on PostgreSQL two transactions
linking at once would each miss the other's new record: linking takes one advisory lock, held to the
end of the transaction (SQLite serialises writers already). A record whose demographics did not change
is not linked again, so most updates never take it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from sqlalchemy import String, and_, bindparam, delete, func, insert, or_, select, union_all, update
from sqlalchemy.engine import Connection, Engine

from sharedcare.fhir import jsonio
from sharedcare.mpi import index
from sharedcare.mpi.comparisons import Features, features
from sharedcare.mpi.decide import Thresholds
from sharedcare.mpi.model import MatchModel
from sharedcare.mpi.normalise import from_patient
from sharedcare.storage import dialects, keys
from sharedcare.storage.indexing import stored_instant
from sharedcare.storage.search import Visible
from sharedcare.storage.tables import (
    MPI_KEY,
    mpi_link,
    mpi_link_history,
    mpi_person,
    mpi_record,
    mpi_review,
    node_setting,
    resource,
)

MATCHER = "mpi:matcher"  # the agent recorded for automatic links
LOCK = "mpi-link"
KEY_COLUMNS = index.KEY_COLUMNS
# How a link was made; only automatic links are re-decided when a record changes.
AUTOMATIC, MANUAL, MERGE = "automatic", "manual", "merge"


@dataclass(frozen=True)
class Matcher:
    model: MatchModel
    thresholds: Thresholds


@lru_cache(maxsize=1)
def shipped_matcher() -> Matcher:
    """The packaged model (mpi/data/model.json) and its thresholds."""
    from sharedcare.mpi import packaged

    shipped = packaged.load()
    return Matcher(shipped.model, shipped.thresholds)


def record_values(res_id: str, doc: Mapping[str, Any], *, restricted: bool, node: str, now: str) -> dict[str, Any]:
    """The mpi_record row of a Patient version."""
    d = from_patient(doc)
    f = features(d)
    k = index.keys(d, f)
    return {"res_id": res_id, "node": node, "features": jsonio.dumps(f).decode(), "restricted": restricted,
            "updated": now, **{c: keys.fit(v)[:MPI_KEY] if v is not None else None for c, v in k.items()},
            "pds_status": None, "pds_number": None, "pds_checked": None}


@lru_cache(maxsize=1 << 16)  # a record is read back as a candidate of every record it is blocked with
def _features(text: str) -> Features:
    """A stored record's features (shared between callers: never changed in place)."""
    loaded: Features = MappingProxyType(jsonio.loads(text))
    return loaded


def _effective(text: str, pds_status: str | None, pds_number: str | None) -> Features:
    """A stored record's features with its national tracing applied (index.with_trace)."""
    return index.with_trace(_features(text), pds_status, pds_number)


def _blocked(key: Any, *, exclude: Any = None, visible: Visible | None = None) -> Any:
    """The ids of records sharing a blocking key, at most index.PER_KEY per key: `key(column)` is what
    each key column must equal; `exclude` a record to leave out; `visible` the caller's rule, applied
    inside each key's part so the limit counts only records the caller may see."""
    parts = []
    for column in KEY_COLUMNS:
        wanted = key(column)
        if wanted is None:
            continue
        stmt = select(mpi_record.c.res_id).where(mpi_record.c[column] == wanted)
        if exclude is not None:
            stmt = stmt.where(mpi_record.c.res_id != exclude)
        if visible is not None:
            stmt = stmt.join(resource, and_(resource.c.res_type == "Patient",
                                            resource.c.res_id == mpi_record.c.res_id)).where(
                visible(resource), resource.c.deleted.is_(False))
        parts.append(stmt.limit(index.PER_KEY))
    if not parts:
        return None
    ids = union_all(*[select(p.subquery()) for p in parts]).subquery()
    return select(ids.c[0])


def _candidates_statement(_dialect: str) -> Any:
    """Compiled once with every key as a parameter (a NULL key matches nothing)."""
    ids = _blocked(lambda column: bindparam(column, type_=String), exclude=bindparam("exclude", type_=String))
    return select(mpi_record.c.res_id, mpi_record.c.features, mpi_record.c.pds_status, mpi_record.c.pds_number,
                  mpi_link.c.person_id).select_from(
        mpi_record.outerjoin(mpi_link, mpi_link.c.res_id == mpi_record.c.res_id)).where(mpi_record.c.res_id.in_(ids))


_CANDIDATES = dialects.Compiled(_candidates_statement)


def candidates(conn: Connection, values: Mapping[str, Any], *, exclude: str | None = None) -> list[index.Candidate]:
    """Every record (whoever may see it) sharing a blocking key with `values`, with its person."""
    if not any(values.get(c) for c in KEY_COLUMNS):
        return []
    rows = _CANDIDATES.rows(conn, {"exclude": exclude or "", **{c: values.get(c) for c in KEY_COLUMNS}})
    return [index.Candidate(res_id, person, _effective(text, status, number))
            for res_id, text, status, number, person in rows]


def visible_candidates(conn: Connection, values: Mapping[str, Any], visible: Visible) -> list[tuple[str, Features]]:
    """Patient/$match's candidates: records the caller may see sharing a blocking key with `values`,
    each with its features as compared for a caller (a restricted address's place left out)."""
    wanted = _blocked(values.get, visible=visible)
    if wanted is None:
        return []
    rows = conn.execute(select(mpi_record.c.res_id, mpi_record.c.features, mpi_record.c.restricted,
                               mpi_record.c.pds_status, mpi_record.c.pds_number)
                        .where(mpi_record.c.res_id.in_(wanted)).order_by(mpi_record.c.res_id))
    return [(r.res_id, index.shown(_effective(r.features, r.pds_status, r.pds_number), bool(r.restricted)))
            for r in rows]


_MEMBERS = dialects.Compiled(lambda _d: select(mpi_record.c.res_id, mpi_record.c.features, mpi_record.c.pds_status,
                                                mpi_record.c.pds_number).select_from(
    mpi_link.join(mpi_record, mpi_record.c.res_id == mpi_link.c.res_id)).where(mpi_link.c.person_id == bindparam("p")))


def members(conn: Connection, person_id: str) -> list[index.Candidate]:
    return [index.Candidate(res_id, person_id, _effective(text, status, number))
            for res_id, text, status, number in _MEMBERS.rows(conn, {"p": person_id})]


_INSERT_PERSON = dialects.Compiled(lambda _d: insert(mpi_person).values(person_id=bindparam("p"),
                                                                        created=bindparam("now")))
_INSERT_LINK = dialects.Compiled(lambda _d: insert(mpi_link))
_UPDATE_LINK = dialects.Compiled(lambda _d: update(mpi_link).where(mpi_link.c.res_id == bindparam("i")).values(
    person_id=bindparam("person_id"), how=bindparam("how"), grade=bindparam("grade"), score=bindparam("score"),
    agent_id=bindparam("agent_id"), linked=bindparam("linked")))
_INSERT_HISTORY = dialects.Compiled(lambda _d: insert(mpi_link_history).values(
    {c.name: bindparam(c.name) for c in mpi_link_history.columns if c.name != "seq"}))
_LINK_OF = dialects.Compiled(lambda _d: select(mpi_link.c.person_id, mpi_link.c.how).where(
    mpi_link.c.res_id == bindparam("i")))
_UPDATE_RECORD = dialects.Compiled(lambda _d: update(mpi_record).where(mpi_record.c.res_id == bindparam("i")).values(
    {c.name: bindparam(c.name) for c in mpi_record.columns if c.name != "res_id"}))
_WITHDRAW = dialects.Compiled(lambda _d: update(mpi_review).where(
    mpi_review.c.status == "open", or_(mpi_review.c.res_id == bindparam("i"), mpi_review.c.other_id == bindparam("i")))
    .values(status="withdrawn", decided=bindparam("now"), reason=bindparam("reason")))
_KEPT_OR_OPEN = dialects.Compiled(lambda _d: select(mpi_review.c.res_id, mpi_review.c.other_id, mpi_review.c.status)
                                  .where(or_(mpi_review.c.status == "open", mpi_review.c.status == "kept-apart"),
                                         or_(mpi_review.c.res_id == bindparam("i"),
                                             mpi_review.c.other_id == bindparam("i"))))
_INSERT_REVIEW = dialects.Compiled(lambda _d: insert(mpi_review))


class Changes:
    """Link changes of one transaction's step, each kept in mpi_link_history under one change id."""

    def __init__(self, conn: Connection, agent: str, now: str, *, reason: str | None = None) -> None:
        self.conn, self.agent, self.now, self.reason = conn, agent, now, reason
        self.change_id = str(uuid.uuid4())

    def new_person(self) -> str:
        person = str(uuid.uuid4())
        _INSERT_PERSON.execute(self.conn, {"p": person, "now": self.now})
        return person

    def link(self, res_id: str, person: str, *, how: str, grade: str, score: float | None, event: str,
             old: tuple[str, str] | None) -> None:
        """Link `res_id` to `person` (it was linked as `old`: (person, how), or not at all)."""
        values = {"person_id": person, "how": how, "grade": grade, "score": score, "agent_id": self.agent,
                  "linked": self.now}
        if old is None:
            _INSERT_LINK.execute(self.conn, {"res_id": res_id, **values})
        else:
            _UPDATE_LINK.execute(self.conn, {"i": res_id, **values})
        self._history(event, res_id, old, (person, how))

    def unlink(self, res_id: str, old: tuple[str, str]) -> None:
        self.conn.execute(delete(mpi_link).where(mpi_link.c.res_id == res_id))
        self._history("unlinked", res_id, old, None)

    def _history(self, event: str, res_id: str, old: tuple[str, str] | None, new: tuple[str, str] | None) -> None:
        _INSERT_HISTORY.execute(self.conn, _history_row(self.change_id, event, res_id, old, new, self.agent,
                                                        self.reason, self.now))


def _history_row(change_id: str, event: str, res_id: str, old: tuple[str, str] | None, new: tuple[str, str] | None,
                 agent: str, reason: str | None, now: str) -> dict[str, Any]:
    """An mpi_link_history row: `old` and `new` are (person, how), or None for no link."""
    return {"change_id": change_id, "event": event, "res_id": res_id, "old_person": old[0] if old else None,
            "new_person": new[0] if new else None, "old_how": old[1] if old else None,
            "new_how": new[1] if new else None, "agent_id": agent, "reason": reason, "at": now}


def _review_row(res_id: str, review: index.Review, now: str) -> dict[str, Any]:
    """An open mpi_review row: `res_id` may be the same person as `review.other_id`."""
    d = review.decision
    return {"review_id": str(uuid.uuid4()), "res_id": res_id, "other_id": review.other_id,
            "score": d.score.probability, "grade": d.grade, "held_back": " ".join(d.held_back) or None,
            "status": "open", "created": now, "decided_by": None, "decided": None, "reason": None}


def current_link(conn: Connection, res_id: str) -> tuple[str, str] | None:
    row = _LINK_OF.execute(conn, {"i": res_id}).first()
    return (row.person_id, row.how) if row else None


def _withdraw(conn: Connection, res_ids: Iterable[str], now: str, reason: str) -> None:
    for res_id in res_ids:
        _WITHDRAW.execute(conn, {"i": res_id, "now": now, "reason": reason})


def kept_apart(conn: Connection, res_id: str) -> frozenset[str]:
    """Records a member of staff decided are not the same person as `res_id`."""
    return frozenset(other for other, status in _reviewed(conn, res_id).items() if status == "kept-apart")


def _reviewed(conn: Connection, res_id: str) -> dict[str, str]:
    """The records `res_id` has an open review with, or was kept apart from: other record -> status."""
    found: dict[str, str] = {}
    for r in _KEPT_OR_OPEN.execute(conn, {"i": res_id}):
        other = r.other_id if r.res_id == res_id else r.res_id
        if found.get(other) != "kept-apart":
            found[other] = r.status
    return found


def _queue(conn: Connection, res_id: str, reviews: Sequence[index.Review], now: str) -> None:
    if not reviews:
        return
    already = _reviewed(conn, res_id)  # waiting for a person, or decided by one
    for r in reviews:
        if r.other_id in already:
            continue
        _INSERT_REVIEW.execute(conn, _review_row(res_id, r, now))


def _known(conn: Connection, res_ids: Sequence[str]) -> dict[str, Any]:
    """The index's rows (features, restricted, person_id, how) of these records, where it holds them."""
    found: dict[str, Any] = {}
    ids = list(dict.fromkeys(res_ids))
    for start in range(0, len(ids), 500):
        for row in conn.execute(select(mpi_record.c.res_id, mpi_record.c.features, mpi_record.c.restricted,
                                       mpi_link.c.person_id, mpi_link.c.how)
                                .select_from(mpi_record.outerjoin(mpi_link, mpi_link.c.res_id == mpi_record.c.res_id))
                                .where(mpi_record.c.res_id.in_(ids[start:start + 500]))):
            found[row.res_id] = row
    return found


class _Arrivals:
    """Records new to the index in one transaction, decided one after another and written together at
    the end (a few multi-row INSERTs, not several statements a record). Each is decided against the
    stored records and the arrivals before it, so two records of one person in one bundle link."""

    def __init__(self, conn: Connection, matcher: Matcher, now: str) -> None:
        self.conn, self.matcher, self.now = conn, matcher, now
        self.ids: set[str] = set()
        self.by_key: dict[tuple[str, str], list[index.Candidate]] = {}
        self.members: dict[str, list[index.Candidate]] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def _row(self, table: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)

    def add(self, res_id: str, values: dict[str, Any]) -> None:
        f = _features(values["features"])
        found = candidates(self.conn, values, exclude=res_id)
        seen = {c.res_id for c in found}
        for column in KEY_COLUMNS:
            for c in self.by_key.get((column, values[column]), []) if values.get(column) else []:
                if c.res_id not in seen:
                    found.append(c)
                    seen.add(c.res_id)
        planned = index.plan(self.matcher.model, self.matcher.thresholds, f, found,
                             lambda person: [*members(self.conn, person), *self.members.get(person, [])])
        person = planned.person
        if person is None:
            person = str(uuid.uuid4())
            self._row(mpi_person.name, {"person_id": person, "created": self.now})
        d = planned.decision
        self._row(mpi_record.name, values)
        self._row(mpi_link.name, {"res_id": res_id, "person_id": person, "how": AUTOMATIC, "grade": "certain",
                                  "score": d.score.probability if d else None, "agent_id": MATCHER, "linked": self.now})
        self._row(mpi_link_history.name, _history_row(str(uuid.uuid4()), "linked", res_id, None, (person, AUTOMATIC),
                                                      MATCHER, None, self.now))
        for r in planned.reviews:
            self._row(mpi_review.name, _review_row(res_id, r, self.now))
        me = index.Candidate(res_id, person, f)
        self.ids.add(res_id)
        self.members.setdefault(person, []).append(me)
        for column in KEY_COLUMNS:
            if values.get(column):
                self.by_key.setdefault((column, values[column]), []).append(me)

    def write(self) -> None:
        for table in (mpi_person, mpi_record, mpi_link, mpi_link_history, mpi_review):
            rows = self.rows.pop(table.name, [])
            if rows:
                _ARRIVAL_INSERTS[table.name].execute(self.conn, rows)
        self.ids.clear()
        self.by_key.clear()
        self.members.clear()


_ARRIVAL_INSERTS = {t.name: dialects.insert_rows(t, [c.name for c in t.columns if c.name != "seq"])
                    for t in (mpi_person, mpi_record, mpi_link, mpi_link_history, mpi_review)}


def link_written(conn: Connection, matcher: Matcher, written: Sequence[tuple[str, Mapping[str, Any], bool]], *,
                 node: str, now: str, defer_new: bool = False) -> None:
    """Index and link Patients written in this transaction: (id, the Patient as stored, whether its
    address is restricted), in the order written. With `defer_new` (a bulk first load), Patients the
    index does not hold yet are left for `rebuild`."""
    known = _known(conn, [w[0] for w in written])
    arrivals = _Arrivals(conn, matcher, now)
    locked = False
    for res_id, doc, restricted in written:
        before = known.get(res_id)
        if before is None and res_id in arrivals.ids:  # written twice in one transaction
            arrivals.write()
            before = _known(conn, [res_id]).get(res_id)
        if before is None and defer_new:
            continue
        values = record_values(res_id, doc, restricted=restricted, node=node, now=now)
        if not locked and (before is None or before.features != values["features"]):
            dialects.lock_key(conn, LOCK)
            locked = True
        if before is None:
            arrivals.add(res_id, values)
            continue
        arrivals.write()  # what is decided next reads the index as it now stands
        old = (before.person_id, before.how) if before.person_id is not None else None
        unchanged = before.features == values["features"] and old is not None
        if not unchanged or bool(before.restricted) != restricted:
            _UPDATE_RECORD.execute(conn, {"i": res_id, **{k: v for k, v in values.items() if k != "res_id"}})
        if unchanged:
            continue  # the demographics did not change: nor does the link
        if old is not None and old[1] != AUTOMATIC:
            continue  # a person decided this link: it stays until a person changes it
        _withdraw(conn, [res_id], now, "the record changed")
        relink(conn, matcher, res_id, values, old, now=now)
    arrivals.write()
    for res_id, doc, _ in written:
        if doc.get("link"):
            _source_merges(conn, res_id, doc, now)


def _source_merges(conn: Connection, res_id: str, doc: Mapping[str, Any], now: str) -> None:
    """A source saying two of its own records are one patient (FHIR `Patient.link` of type replaced-by
    on the retired record, or replaces on the survivor: what an HL7 v2 A34/A40 merge maps to) merges
    their persons. A record of another source is never merged this way: each source speaks only for
    its own records; the matcher and the review queue join records across sources."""
    for link in doc.get("link") or []:
        if not isinstance(link, Mapping) or link.get("type") not in ("replaced-by", "replaces"):
            continue
        ref = (link.get("other") or {}).get("reference") if isinstance(link.get("other"), Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("Patient/") or ref[8:] == res_id:
            continue
        retired, survivor = (res_id, ref[8:]) if link["type"] == "replaced-by" else (ref[8:], res_id)
        orgs = dict(conn.execute(select(resource.c.res_id, resource.c.source_org).where(
            resource.c.res_type == "Patient", resource.c.res_id.in_([retired, survivor]),
            resource.c.deleted.is_(False))).all())
        if len(orgs) != 2 or orgs[retired] != orgs[survivor]:
            continue
        source, target = person_of(conn, retired), person_of(conn, survivor)
        if source is None or target is None or source == target:
            continue
        dialects.lock_key(conn, LOCK)
        changes = Changes(conn, f"source:{orgs[survivor] or 'node'}", now,
                          reason="the source merged its records (Patient.link " + str(link["type"]) + ")")
        merge_persons(changes, source, target)


def relink(conn: Connection, matcher: Matcher, res_id: str, values: Mapping[str, Any], old: tuple[str, str] | None,
           *, now: str) -> None:
    """Decide a record against its candidates and link it (automatically), queueing possible matches."""
    found = candidates(conn, values, exclude=res_id)
    f = _features(values["features"])
    apart = kept_apart(conn, res_id)
    planned = index.plan(matcher.model, matcher.thresholds, f, found,
                         lambda person: [m for m in members(conn, person) if m.res_id != res_id], apart=apart)
    changes = Changes(conn, MATCHER, now)
    if planned.person is not None:
        person = planned.person
    elif old is not None and not [m for m in members(conn, old[0]) if m.res_id != res_id]:
        person = old[0]  # alone in its person before and after: the person stays the same
    else:
        person = changes.new_person()
    d = planned.decision
    if old is None or old[0] != person:
        changes.link(res_id, person, how=AUTOMATIC, grade="certain", score=d.score.probability if d else None,
                     event="linked" if old is None else "relinked", old=old)
    else:
        _UPDATE_LINK.execute(conn, {"i": res_id, "person_id": person, "how": AUTOMATIC, "grade": "certain",
                                    "score": d.score.probability if d else None, "agent_id": MATCHER, "linked": now})
    _queue(conn, res_id, planned.reviews, now)


def unlink_deleted(conn: Connection, res_ids: Sequence[str], *, now: str) -> None:
    """A deleted Patient leaves the index: its record, its link (kept in history) and its open reviews."""
    changes = Changes(conn, MATCHER, now, reason="the source record was deleted")
    for res_id in res_ids:
        old = current_link(conn, res_id)
        if old is not None:
            changes.unlink(res_id, old)
        conn.execute(delete(mpi_record).where(mpi_record.c.res_id == res_id))
    _withdraw(conn, res_ids, now, "the record was deleted")


def count_records(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(mpi_record)).scalar_one())



REBUILD_CHUNK = 2_000


def rebuild(target: Connection | Engine, *, node: str, matcher: Matcher | None = None, now: str | None = None,
            max_chunks: int | None = None, after: int = -1) -> int:
    """Index and link every current Patient not yet in the index, oldest first, as if each had just
    arrived (the migration that made the index, and `sharedcare mpi rebuild`). On a connection it all
    runs in that connection's transaction; on an engine each chunk commits on its own, so writers are
    held back for one chunk at a time; `max_chunks` bounds the work and `after` skips Patients first
    written at or before that history sequence number (housekeeping). Returns how many."""
    matcher = matcher or shipped_matcher()
    now = now or stored_instant(datetime.now(UTC))
    done, last, chunks = 0, after, 0
    while max_chunks is None or chunks < max_chunks:
        chunks += 1
        if isinstance(target, Connection):
            count, last = _rebuild_chunk(target, matcher, node, now, last)
        else:
            with dialects.writer(target), target.connect().execution_options(**dialects.write_options()) as conn, \
                    conn.begin():
                count, last = _rebuild_chunk(conn, matcher, node, now, last)
        if not count:
            return done
        done += count
    return done


def _rebuild_chunk(conn: Connection, matcher: Matcher, node: str, now: str, after: int) -> tuple[int, int]:
    from sharedcare.access.labels import RESTRICTED_ADDRESS
    from sharedcare.storage.codec import decode
    from sharedcare.storage.tables import restriction

    rows = conn.execute(
        select(resource.c.res_id, resource.c.data, resource.c.created_seq)
        .where(resource.c.res_type == "Patient", resource.c.deleted.is_(False), resource.c.created_seq > after,
               ~select(mpi_record.c.res_id).where(mpi_record.c.res_id == resource.c.res_id).exists())
        .order_by(resource.c.created_seq).limit(REBUILD_CHUNK)).all()
    if not rows:
        return 0, after
    restricted = {r[0] for r in conn.execute(select(restriction.c.patient_id).where(
        restriction.c.kind == RESTRICTED_ADDRESS, restriction.c.res_type == "Patient",
        restriction.c.patient_id.in_([r.res_id for r in rows])))}
    link_written(conn, matcher, [(r.res_id, jsonio.loads(decode(r.data)), r.res_id in restricted) for r in rows],
                 node=node, now=now)
    return len(rows), rows[-1].created_seq


CHECKED = "mpi_checked_seq"  # node_setting: every Patient first written up to this seq is in the index


def link_missing(engine: Engine, *, node: str, max_chunks: int) -> int:
    """Housekeeping: link Patients the index does not hold (a store restored without it, a load that
    deferred linking), looking only at Patients first written since the last round that found none
    missing, so a round costs what was written since, not the whole store (`sharedcare mpi rebuild`
    looks at every Patient). A Patient still being written when the mark moves is linked by its own
    transaction, or by its deferred load's closing pass. Returns how many."""
    with engine.connect() as conn:
        mark = int(conn.execute(select(node_setting.c.value).where(node_setting.c.name == CHECKED)).scalar() or -1)
        top = conn.execute(select(func.max(resource.c.created_seq)).where(resource.c.res_type == "Patient")).scalar()
    if top is None or top <= mark:
        return 0
    done = rebuild(engine, node=node, max_chunks=max_chunks, after=mark)
    with dialects.writer(engine), engine.connect().execution_options(**dialects.write_options()) as conn, \
            conn.begin():
        missing = conn.execute(select(resource.c.res_id).where(
            resource.c.res_type == "Patient", resource.c.deleted.is_(False), resource.c.created_seq > mark,
            resource.c.created_seq <= top,
            ~select(mpi_record.c.res_id).where(mpi_record.c.res_id == resource.c.res_id).exists()).limit(1)).first()
        if missing is None:
            conn.execute(dialects.upsert(node_setting, ("name",), [{"name": CHECKED, "value": str(top)}],
                                         conn.dialect.name))
    return done


def count_persons(conn: Connection) -> int:
    """Persons with at least one record linked."""
    return int(conn.execute(select(func.count(func.distinct(mpi_link.c.person_id)))).scalar_one())


# -- what staff and the record view read --------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    res_id: str
    person_id: str
    how: str
    grade: str
    score: float | None
    agent_id: str
    linked: str


def person_links(conn: Connection, person_id: str) -> list[Link]:
    rows = conn.execute(select(mpi_link).where(mpi_link.c.person_id == person_id).order_by(mpi_link.c.linked,
                                                                                            mpi_link.c.res_id))
    return [Link(r.res_id, r.person_id, r.how, r.grade, r.score, r.agent_id, r.linked) for r in rows]


def person_of(conn: Connection, res_id: str) -> str | None:
    found = current_link(conn, res_id)
    return found[0] if found else None


def visible_records(conn: Connection, res_ids: Sequence[str], visible: Visible) -> set[str]:
    """Which of these Patients (current, not deleted) the `visible` rule lets through."""
    if not res_ids:
        return set()
    return {r[0] for r in conn.execute(select(resource.c.res_id).where(
        resource.c.res_type == "Patient", resource.c.res_id.in_(list(res_ids)), resource.c.deleted.is_(False),
        visible(resource)))}


def same_person(conn: Connection, patient_id: str, visible: Visible) -> list[str]:
    """`patient_id`, then every other Patient linked to its person that the `visible` rule lets through."""
    person = person_of(conn, patient_id)
    others = [link.res_id for link in person_links(conn, person) if link.res_id != patient_id] if person else []
    seen = visible_records(conn, others, visible)
    return [patient_id, *[i for i in others if i in seen]]


def record_numbers(conn: Connection, res_ids: Sequence[str]) -> list[str]:
    """The checked NHS numbers of these records, each once."""
    rows = conn.execute(select(mpi_record.c.k_nhs).where(mpi_record.c.res_id.in_(list(res_ids)),
                                                         mpi_record.c.k_nhs.is_not(None)).distinct())
    return sorted(r[0] for r in rows)


def record_features(conn: Connection, res_id: str) -> tuple[Features, bool] | None:
    row = conn.execute(select(mpi_record.c.features, mpi_record.c.restricted, mpi_record.c.pds_status,
                              mpi_record.c.pds_number).where(mpi_record.c.res_id == res_id)).first()
    return (_effective(row.features, row.pds_status, row.pds_number), bool(row.restricted)) if row else None


@dataclass(frozen=True)
class ReviewRow:
    review_id: str
    res_id: str
    other_id: str
    score: float
    grade: str
    held_back: tuple[str, ...]
    status: str
    created: str
    decided_by: str | None
    decided: str | None
    reason: str | None


def _review(r: Any) -> ReviewRow:
    return ReviewRow(r.review_id, r.res_id, r.other_id, r.score, r.grade, tuple((r.held_back or "").split()),
                     r.status, r.created, r.decided_by, r.decided, r.reason)


def reviews(conn: Connection, *, status: str, count: int, after: str | None = None) -> list[ReviewRow]:
    """Reviews with this status, oldest first (the queue's order), after the review id `after`."""
    stmt = select(mpi_review).where(mpi_review.c.status == status)
    if after is not None:
        stmt = stmt.where(or_(mpi_review.c.created > select(mpi_review.c.created).where(
            mpi_review.c.review_id == after).scalar_subquery(), and_(
            mpi_review.c.created == select(mpi_review.c.created).where(
                mpi_review.c.review_id == after).scalar_subquery(), mpi_review.c.review_id > after)))
    rows = conn.execute(stmt.order_by(mpi_review.c.created, mpi_review.c.review_id).limit(count))
    return [_review(r) for r in rows]


def count_reviews(conn: Connection, status: str) -> int:
    return int(conn.execute(select(func.count()).select_from(mpi_review)
                            .where(mpi_review.c.status == status)).scalar_one())


def review(conn: Connection, review_id: str, *, lock: bool = False) -> ReviewRow | None:
    stmt = select(mpi_review).where(mpi_review.c.review_id == review_id)
    row = conn.execute(dialects.for_update(stmt, conn) if lock else stmt).first()
    return _review(row) if row else None


def close_review(conn: Connection, review_id: str, status: str, *, agent: str, now: str, reason: str) -> None:
    conn.execute(update(mpi_review).where(mpi_review.c.review_id == review_id).values(
        status=status, decided_by=agent, decided=now, reason=reason))


# -- what staff change ----------------------------------------------------------------------------------

def merge_persons(changes: Changes, source: str, target: str) -> list[str]:
    """Move every record of `source` to `target` (a merge); returns the records moved."""
    moved = []
    for link in person_links(changes.conn, source):
        changes.link(link.res_id, target, how=MERGE, grade="certain", score=None, event="merged",
                     old=(link.person_id, link.how))
        moved.append(link.res_id)
    return moved


def move_record(changes: Changes, res_id: str, target: str | None) -> str:
    """Link one record to `target` by hand (None: to a new person of its own); returns the person."""
    old = current_link(changes.conn, res_id)
    person = target or changes.new_person()
    changes.link(res_id, person, how=MANUAL, grade="certain", score=None,
                 event="unlinked" if target is None else "relinked", old=old)
    return person


def change(conn: Connection, change_id: str) -> list[Any]:
    return list(conn.execute(select(mpi_link_history).where(mpi_link_history.c.change_id == change_id)
                             .order_by(mpi_link_history.c.seq)))


def link_history(conn: Connection, res_ids: Sequence[str]) -> list[Any]:
    return list(conn.execute(select(mpi_link_history).where(mpi_link_history.c.res_id.in_(list(res_ids)))
                             .order_by(mpi_link_history.c.seq)))



# -- national tracing --------------------------------------------------------------------------------------

def untraced(conn: Connection, limit: int) -> list[tuple[str, Features]]:
    """Records not yet checked against PDS (new, or changed since), oldest change first."""
    rows = conn.execute(select(mpi_record.c.res_id, mpi_record.c.features).where(mpi_record.c.pds_checked.is_(None))
                        .order_by(mpi_record.c.updated, mpi_record.c.res_id).limit(limit))
    return [(r.res_id, _features(r.features)) for r in rows]


def record_trace(conn: Connection, matcher: Matcher, res_id: str, status: str, number: str | None, *,
                 checked: Features, now: str) -> bool:
    """Keep what PDS said of a record (checked as `checked`: a record changed since is left for the
    next round). When that changes the number the record links by, an automatic link is decided again.
    Returns whether the record was relinked."""
    row = conn.execute(dialects.for_update(select(mpi_record).where(mpi_record.c.res_id == res_id), conn)).first()
    if row is None or _features(row.features) != dict(checked):
        return False  # deleted or changed since it was checked
    before = _effective(row.features, row.pds_status, row.pds_number)
    after = index.with_trace(checked, status, number)
    conn.execute(update(mpi_record).where(mpi_record.c.res_id == res_id).values(
        pds_status=status, pds_number=number, pds_checked=now, k_nhs=after.get("nhs_number")))
    if before.get("nhs_number") == after.get("nhs_number"):
        return False
    old = current_link(conn, res_id)
    if old is not None and old[1] != AUTOMATIC:
        return False  # a person decided this link
    dialects.lock_key(conn, LOCK)
    _withdraw(conn, [res_id], now, "national tracing changed its NHS number")
    values = {c: getattr(row, c) for c in KEY_COLUMNS} | {"k_nhs": after.get("nhs_number"),
                                                          "features": jsonio.dumps(after).decode()}
    relink(conn, matcher, res_id, values, old, now=now)
    return True


def trace_counts(conn: Connection) -> dict[str, int]:
    """Records by tracing status ("unchecked" for those not yet checked)."""
    rows = conn.execute(select(mpi_record.c.pds_status, mpi_record.c.pds_checked.is_(None), func.count())
                        .group_by(mpi_record.c.pds_status, mpi_record.c.pds_checked.is_(None)))
    out: dict[str, int] = {}
    for status, unchecked, n in rows:
        key = "unchecked" if unchecked else str(status)
        out[key] = out.get(key, 0) + int(n)
    return out
