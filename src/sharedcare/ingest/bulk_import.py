"""Bulk loads of NDJSON (`POST /fhir/$import`, `sharedcare load`): a file of resources, one a line,
put into the inbox in chunks and written chunk by chunk, as its source sent it.

Receiving stores the whole file before anyone is told it was received: one inbox message per chunk of
`CHUNK_LINES` lines, all in one transaction, keyed by the file's SHA-256 and the chunk's first line, so
the same file sent again is stored once and answers with the same job. The job is the file's
checksum: `import:{job}:c{first line}` names a chunk and `import:{job}:l{line}` a line split off it.

Processing a chunk writes its resources in one transaction with the chunk's `done` (as every inbox
message is written): each line is read and validated against R4 on its own, and a line that cannot be
written (not JSON, not a resource we store, invalid, or naming a record another source wrote) is kept
as a dead letter of its own with our reason, so the rest of the chunk is written and nothing is lost.
New resources are inserted together (one statement per table), which is what makes a bulk load
faster than resources sent one by one; a resource that exists is updated as its own version, unless
its source recorded the stored version later (ingest/apply.keep_newer). One Provenance per chunk names
what it wrote.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sharedcare.errors import FhirError
from sharedcare.fhir import interactions, jsonio
from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest import apply
from sharedcare.ingest.apply import describe
from sharedcare.ingest.hl7v2.mapping import Mapped
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import Incoming
from sharedcare.storage.repository import Unit, new_id

KIND = "ndjson"
CHUNK_LINES = 250  # resources written in one transaction: on SQLite it holds the write lock
MAX_WARNINGS = 20  # warnings kept in a chunk's outcome


class NotNdjson(ValueError):
    """A body or file that is not NDJSON of FHIR resources at all (nothing is stored)."""


@dataclass
class Job:
    """A file as stored in the inbox: its id, how many chunks and resource lines it holds, and the
    resource types it names (for checking the sender may write them)."""

    job_id: str
    items: list[Incoming]
    lines: int
    types: set[str] = field(default_factory=set)


def job_prefix(job_id: str) -> str:
    return f"import:{job_id}:"


def split(source_id: str, data: bytes) -> Job:
    """The inbox messages of an NDJSON file: chunks of up to `CHUNK_LINES` lines (blank lines kept in
    place, so line numbers stay the file's). Raises NotNdjson when no line is a FHIR resource."""
    checksum = hashlib.sha256(data).hexdigest()
    job_id = checksum[:40]
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")  # a byte-order mark is no part of line 1
    items: list[Incoming] = []
    types: set[str] = set()
    count = 0
    for start in range(0, len(lines), CHUNK_LINES):
        chunk = lines[start:start + CHUNK_LINES]
        filled = 0
        for raw in chunk:
            if not raw.strip():
                continue
            filled += 1
            res_type = _resource_type(raw)
            if res_type is not None:
                types.add(res_type)
        if filled:
            count += filled
            items.append(Incoming(source_id, f"{job_prefix(job_id)}c{start + 1:09d}", KIND, b"\n".join(chunk)))
    if not types:
        raise NotNdjson("the file holds no FHIR resource: NDJSON is one JSON resource a line")
    return Job(job_id, items, count, types)


def _resource_type(raw: bytes) -> str | None:
    try:
        doc = jsonio.loads(raw)
    except (ValueError, FhirError):
        return None
    res_type = doc.get("resourceType") if isinstance(doc, dict) else None
    return res_type if isinstance(res_type, str) else None


@dataclass
class _Line:
    number: int
    raw: bytes
    doc: dict[str, Any]


def _first_line(message_key: str) -> int:
    return int(message_key.rsplit(":c", 1)[1])


def _split_off(source_id: str, message_key: str, number: int, raw: bytes) -> Incoming:
    """A line of a chunk kept on its own (as a FHIR message: replayed, it is written like one)."""
    prefix = message_key.rsplit(":c", 1)[0]
    return Incoming(source_id, f"{prefix}:l{number:09d}", "fhir", raw)


@dataclass
class Prepared:
    """A chunk read and validated, before anything is written: its writable lines, the lines to keep as
    dead letters (with our reasons), and validation warnings."""

    good: list[_Line]
    dead: list[tuple[Incoming, str]]
    warnings: list[str]


def prepare(message: inbox_store.Message) -> Prepared:
    """Read and validate every line of a chunk (no database work: done before the write transaction,
    so that it holds the database's write lock only for the writing)."""
    dead: list[tuple[Incoming, str]] = []
    good: list[_Line] = []
    warnings: list[str] = []
    start = _first_line(message.message_key)
    for offset, raw in enumerate(message.payload.split(b"\n")):
        if not raw.strip():
            continue
        number = start + offset
        reason = None
        try:
            doc = jsonio.loads(raw)
        except (ValueError, FhirError):
            doc, reason = None, "not JSON"
        if reason is None and not (isinstance(doc, dict) and isinstance(doc.get("resourceType"), str)):
            reason = "not a FHIR resource"
        if reason is None and isinstance(doc, dict):
            try:
                res_type = interactions.check_type(doc["resourceType"])
                interactions.check_writable(res_type)
                if "id" in doc:
                    interactions.check_id(str(doc["id"]))
                issues = validate_or_raise(doc)
            except FhirError as exc:
                reason = describe(exc)
            else:
                warnings += [f"line {number}: {i.diagnostics}" for i in issues][:MAX_WARNINGS]
                good.append(_Line(number, raw, doc))
                continue
        dead.append((_split_off(message.source_id, message.message_key, number, raw), f"line {number}: {reason}"))
    return Prepared(good, dead, warnings[:MAX_WARNINGS])


def apply_chunk(unit: Unit, message: inbox_store.Message, ready: Prepared, *, ods: str | None) -> dict[str, Any]:
    """Write one chunk, as `prepare` read it, in `unit` (whose caller is the source's system, or the
    node's own for an operator's load); the chunk's outcome: resources written by type, lines split
    off, warnings."""
    good, dead, warnings = ready.good, list(ready.dead), ready.warnings
    written: list[str] = []
    kept = 0
    by_type: Counter[str] = Counter()
    ids_by_type: dict[str, list[str]] = {}
    for line in good:
        if isinstance(line.doc.get("id"), str):
            ids_by_type.setdefault(line.doc["resourceType"], []).append(line.doc["id"])
    stored = {t: unit.source_orgs(t, ids) for t, ids in ids_by_type.items()}
    restricted = unit.caller.organisation is not None
    for res_type in sorted({line.doc["resourceType"] for line in good}):
        unit.require_may(res_type, "create", "update")
    for line in good:
        res_type = line.doc["resourceType"]
        res_id = line.doc.get("id")
        if not isinstance(res_id, str):
            res_id = unit.write(res_type, new_id(), line.doc, method="POST", expect_new=True).stored.res_id
        elif res_id in stored[res_type]:
            if restricted and stored[res_type][res_id] != unit.caller.organisation:
                dead.append((_split_off(message.source_id, message.message_key, line.number, line.raw),
                             f"line {line.number}: {res_type}/{res_id} is a record another source wrote"))
                continue
            current = unit.current(res_type, res_id)
            if current is not None and apply.keep_newer(current, line.doc):
                kept += 1
                continue
            unit.write(res_type, res_id, line.doc, method="PUT")
        else:
            unit.write(res_type, res_id, line.doc, method="PUT", expect_new=True)
            stored[res_type][res_id] = unit.caller.organisation  # a repeat later in the chunk is an update
        written.append(f"{res_type}/{res_id}")
        by_type[res_type] += 1
    if written:
        unit.create(apply.provenance(written, Mapped({}), ods, apply.message_identifier(
            message.source_id, message.message_key), "CREATE"))
    if dead:
        inbox_store.store_dead(unit.conn, dead)
    return {"written": dict(sorted(by_type.items())), "kept": kept, "rejected": len(dead),
            "warnings": warnings[:MAX_WARNINGS]}

