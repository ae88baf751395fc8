"""The source registry and the inbox, in SQL (the service is ingest/inbox.py; docs/ingest.md).

Safety property 6 is kept here: a message is committed to `inbox_message` before anyone is told it
was received, is stored once per (source, message key) however often it is delivered, and leaves the
inbox only as `done` (in the same transaction as what it wrote) or as a dead letter with its reason.
Timestamps are stored as fixed-width UTC text (`now()`), so they compare as strings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sharedcare.storage import dialects
from sharedcare.storage.tables import feed_source, inbox_message

FEEDS = ("hl7v2", "fhir", "csv")
SOURCE_STATUSES = ("active", "review", "disabled")
PENDING, DONE, DEAD = "pending", "done", "dead"
# The node's own source: what its operator loads (`sharedcare load` without --source) goes through the
# inbox like any feed but is written as the node itself, with no source organisation.
NODE_SOURCE = "node"


def now(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def later(seconds: float, at: datetime | None = None) -> str:
    return now((at or datetime.now(UTC)) + timedelta(seconds=seconds))


# -- the source registry -------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    source_id: str
    ods: str
    name: str
    feeds: tuple[str, ...]
    system: str | None = None
    expected_minutes: int | None = None
    cert_sha256: str | None = None
    client_id: str | None = None
    code_systems: tuple[str, ...] = ()
    csv_mapping: str | None = None
    status: str = "active"
    created: str = ""
    last_received: str | None = None
    silence_alerted: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ("active", "review")


_SPACED = ("feeds", "code_systems")


def _source(row: Any) -> Source:
    values = dict(row._mapping)
    for name in _SPACED:
        values[name] = tuple((values[name] or "").split())
    return Source(**values)


def _row(source: Source) -> dict[str, Any]:
    values = {f.name: getattr(source, f.name) for f in fields(source)}
    for name in _SPACED:
        values[name] = " ".join(values[name]) or None
    values["feeds"] = values["feeds"] or ""
    return values


class SourceExists(ValueError):
    """A source with that id is registered already."""


def add_source(engine: Engine, source: Source) -> Source:
    stored = replace(source, created=source.created or now())
    try:
        with dialects.writer(engine), engine.begin() as conn:
            conn.execute(insert(feed_source).values(_row(stored)))
    except IntegrityError:
        raise SourceExists(source.source_id) from None
    return stored


def node_source(engine: Engine) -> Source:
    """The node's own source, registered the first time it is needed."""
    found = get_source(engine, NODE_SOURCE)
    if found is not None:
        return found
    try:
        return add_source(engine, Source(NODE_SOURCE, "NODE", "this node's operator (sharedcare load)", ("fhir",)))
    except SourceExists:
        again = get_source(engine, NODE_SOURCE)
        assert again is not None
        return again


def source_for_client(engine: Engine, client_id: str) -> Source | None:
    """The source whose FHIR pushes use this SMART system client."""
    with engine.connect() as conn:
        row = conn.execute(select(feed_source).where(feed_source.c.client_id == client_id)).first()
    return _source(row) if row is not None else None


def get_source(engine: Engine, source_id: str) -> Source | None:
    with engine.connect() as conn:
        row = conn.execute(select(feed_source).where(feed_source.c.source_id == source_id)).first()
    return _source(row) if row is not None else None


def sources(engine: Engine) -> list[Source]:
    with engine.connect() as conn:
        return [_source(r) for r in conn.execute(select(feed_source).order_by(feed_source.c.source_id))]


def find_source(engine: Engine, ods: str, system: str | None) -> Source | None:
    """The source registered for an organisation's sending application: the one naming that
    application, else the organisation's source that names none (any of its systems)."""
    with engine.connect() as conn:
        rows = [_source(r) for r in conn.execute(select(feed_source).where(
            func.upper(feed_source.c.ods) == ods.upper()))]
    exact = [s for s in rows if s.system is not None and system is not None and s.system.upper() == system.upper()]
    if exact:
        return exact[0]
    anyone = [s for s in rows if s.system is None]
    return anyone[0] if anyone else None


def change_source(engine: Engine, source_id: str, **values: Any) -> bool:
    """Change a source's registration; False when there is no such source."""
    for name in _SPACED:
        if name in values and not isinstance(values[name], str):
            values[name] = " ".join(values[name]) or None
    with dialects.writer(engine), engine.begin() as conn:
        return conn.execute(update(feed_source).where(feed_source.c.source_id == source_id)
                            .values(**values)).rowcount == 1


def silent_sources(engine: Engine, at: datetime | None = None) -> list[Source]:
    """Active sources expected to send every so often that have sent nothing for longer, and have not
    been alerted about since they last sent."""
    moment = at or datetime.now(UTC)
    out = []
    for s in sources(engine):
        if s.status != "active" or not s.expected_minutes:
            continue
        last = s.last_received or s.created
        if last >= now(moment - timedelta(minutes=s.expected_minutes)):
            continue
        if s.silence_alerted is not None and s.silence_alerted >= last:
            continue
        out.append(s)
    return out


# -- the inbox ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Incoming:
    source_id: str
    message_key: str
    kind: str
    payload: bytes
    patient_key: str | None = None
    event_time: str | None = None
    digest: str = ""  # what the message says, to tell a resend from a reused key; "" -> SHA-256 of the payload


@dataclass(frozen=True)
class Received:
    seq: int
    duplicate: bool
    ack_code: str | None
    conflict: bool = False  # the key was used before for a message that says something else


@dataclass(frozen=True)
class Message:
    seq: int
    source_id: str
    message_key: str
    kind: str
    received: str
    payload: bytes
    digest: str
    patient_key: str | None
    event_time: str | None
    status: str
    attempts: int
    next_attempt: str | None
    error: str | None
    ack_code: str | None
    processed: str | None
    outcome: str | None


def _message(row: Any) -> Message:
    values = dict(row._mapping)
    values["payload"] = bytes(values.get("payload") or b"")
    return Message(**values)


def receive(engine: Engine, items: list[Incoming], *, ack_code: str, at: datetime | None = None) -> list[Received]:
    """Store the messages in one transaction (committed when this returns): see `receive_on`."""
    with dialects.writer(engine), engine.begin() as conn:
        return receive_on(conn, items, ack_code=ack_code, at=at)


def receive_on(conn: Connection, items: list[Incoming], *, ack_code: str, at: datetime | None = None) -> list[Received]:
    """Inside a transaction: store each new message as pending, leave each already stored (the same
    source and key) as it is and report it as a duplicate with the acknowledgement it was given, or as
    a conflict when the stored one says something else."""
    stamp = now(at)
    out: list[Received] = []
    for item in items:
        item_digest = item.digest or hashlib.sha256(item.payload).hexdigest()
        inserted = dialects.insert_new(conn, inbox_message, {
            "source_id": item.source_id, "message_key": item.message_key, "kind": item.kind,
            "received": stamp, "payload": item.payload, "digest": item_digest, "patient_key": item.patient_key,
            "event_time": item.event_time, "status": PENDING, "attempts": 0, "ack_code": ack_code},
            inbox_message.c.seq)
        if inserted is not None:
            out.append(Received(int(inserted), False, ack_code))
            continue
        row = conn.execute(select(inbox_message.c.seq, inbox_message.c.ack_code, inbox_message.c.digest).where(
            inbox_message.c.source_id == item.source_id,
            inbox_message.c.message_key == item.message_key)).one()
        out.append(Received(row.seq, True, row.ack_code, row.digest != item_digest))
    sources_seen = {i.source_id for i in items}
    if sources_seen:
        conn.execute(update(feed_source).where(feed_source.c.source_id.in_(sorted(sources_seen)))
                     .values(last_received=stamp))
    return out


_M = inbox_message
_E = inbox_message.alias("earlier")


def due(engine: Engine, limit: int = 100, at: datetime | None = None) -> list[Message]:
    """Pending messages whose time has come, each the earliest still pending of its patient from its
    source (by the time the source gave the event, then arrival), oldest first."""
    stamp = now(at)
    earlier = select(_E.c.seq).where(
        _E.c.source_id == _M.c.source_id, _E.c.patient_key == _M.c.patient_key, _E.c.status == PENDING,
        _E.c.seq != _M.c.seq,
        or_(func.coalesce(_E.c.event_time, "") < func.coalesce(_M.c.event_time, ""),
            and_(func.coalesce(_E.c.event_time, "") == func.coalesce(_M.c.event_time, ""), _E.c.seq < _M.c.seq)))
    stmt = (select(_M).where(_M.c.status == PENDING, or_(_M.c.next_attempt.is_(None), _M.c.next_attempt <= stamp),
                             or_(_M.c.patient_key.is_(None), ~earlier.exists()))
            .order_by(_M.c.seq).limit(limit))
    with engine.connect() as conn:
        return [_message(r) for r in conn.execute(stmt)]


def claim(conn: Connection, seq: int) -> bool:
    """Inside the processing transaction: lock the message's row and say whether it is still pending
    (False: another worker has processed it, or it was dead-lettered, since it was picked)."""
    stmt = dialects.for_update(select(_M.c.status).where(_M.c.seq == seq), conn)
    return conn.execute(stmt).scalar_one_or_none() == PENDING


def mark_done(conn: Connection, seq: int, outcome: str, at: datetime | None = None) -> None:
    """Inside the transaction that wrote what the message said: it is done, once."""
    conn.execute(update(_M).where(_M.c.seq == seq).values(status=DONE, processed=now(at), outcome=outcome,
                                                          error=None, next_attempt=None))


def mark_failed(engine: Engine, seq: int, error: str, *, retry_in: float | None, at: datetime | None = None) -> str:
    """A failed attempt: retried after `retry_in` seconds, or (None) a dead letter. The new status."""
    status = PENDING if retry_in is not None else DEAD
    with dialects.writer(engine), engine.begin() as conn:
        conn.execute(update(_M).where(_M.c.seq == seq).values(
            status=status, attempts=_M.c.attempts + 1, error=error,
            next_attempt=later(retry_in, at) if retry_in is not None else None,
            processed=None if retry_in is not None else now(at)))
    return status


def replay(engine: Engine, seqs: list[int] | None = None, *, source_id: str | None = None) -> int:
    """Put dead letters back to be processed (those named, or all of a source, or all); how many."""
    stmt = update(_M).where(_M.c.status == DEAD)
    if seqs is not None:
        stmt = stmt.where(_M.c.seq.in_(seqs))
    if source_id is not None:
        stmt = stmt.where(_M.c.source_id == source_id)
    with dialects.writer(engine), engine.begin() as conn:
        return conn.execute(stmt.values(status=PENDING, attempts=0, next_attempt=None, processed=None)).rowcount


def messages(engine: Engine, *, status: str | None = None, source_id: str | None = None,
             limit: int = 100, offset: int = 0, payload: bool = True) -> list[Message]:
    """Messages, newest first (with `payload` False their payloads are left unread, as b"")."""
    columns = [c for c in _M.c if payload or c.name != "payload"]
    stmt = select(*columns).order_by(_M.c.seq.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(_M.c.status == status)
    if source_id is not None:
        stmt = stmt.where(_M.c.source_id == source_id)
    with engine.connect() as conn:
        return [_message(r) for r in conn.execute(stmt)]


def message(engine: Engine, seq: int) -> Message | None:
    with engine.connect() as conn:
        row = conn.execute(select(_M).where(_M.c.seq == seq)).first()
    return _message(row) if row is not None else None


def counts(engine: Engine) -> dict[str, int]:
    """Messages by status."""
    with engine.connect() as conn:
        return {r.status: r.n for r in conn.execute(select(_M.c.status, func.count().label("n")).group_by(_M.c.status))}


def oldest_pending(engine: Engine) -> str | None:
    with engine.connect() as conn:
        oldest: str | None = conn.execute(select(func.min(_M.c.received)).where(_M.c.status == PENDING)).scalar_one()
    return oldest


def store_dead(conn: Connection, items: list[tuple[Incoming, str]], at: datetime | None = None) -> None:
    """Inside a processing transaction: keep messages split off a larger one (a bulk import's line that
    cannot be written) as dead letters with our reason, so they are listed and can be replayed. One
    already kept (the same source and key) is left as it is."""
    stamp = now(at)
    for item, reason in items:
        dialects.insert_new(conn, inbox_message, {
            "source_id": item.source_id, "message_key": item.message_key, "kind": item.kind, "received": stamp,
            "payload": item.payload, "digest": item.digest or hashlib.sha256(item.payload).hexdigest(),
            "patient_key": item.patient_key, "event_time": item.event_time, "status": DEAD, "attempts": 1,
            "error": reason, "processed": stamp, "ack_code": None}, inbox_message.c.seq)


@dataclass(frozen=True)
class Part:
    """One message of a group (a bulk import's chunks and split-off lines), without its payload."""

    seq: int
    source_id: str
    message_key: str
    status: str
    error: str | None
    outcome: str | None
    received: str
    processed: str | None


def parts(engine: Engine, prefix: str, source_id: str | None = None) -> list[Part]:
    """The messages whose keys start with `prefix` (of one source, or of any), in key order."""
    stmt = (select(_M.c.seq, _M.c.source_id, _M.c.message_key, _M.c.status, _M.c.error, _M.c.outcome,
                   _M.c.received, _M.c.processed)
            .where(_M.c.message_key.startswith(prefix, autoescape=True)).order_by(_M.c.message_key))
    if source_id is not None:
        stmt = stmt.where(_M.c.source_id == source_id)
    with engine.connect() as conn:
        stmt = stmt.where(*dialects.prefix_bounds(_M.c.message_key, prefix, conn))
        return [Part(**dict(r._mapping)) for r in conn.execute(stmt)]


def by_key(conn: Connection, source_id: str, message_key: str) -> Message | None:
    """Inside a transaction: the message a source sent under this key, if any, its row locked (a worker
    that picked it waits, then finds it done)."""
    stmt = dialects.for_update(select(_M).where(_M.c.source_id == source_id, _M.c.message_key == message_key), conn)
    row = conn.execute(stmt).first()
    return _message(row) if row is not None else None


def store_done(conn: Connection, item: Incoming) -> int:
    """Inside the transaction that writes what the message says: keep it (pending until `mark_done`
    in the same transaction); its sequence number."""
    return int(receive_on(conn, [item], ack_code="AA")[0].seq)
