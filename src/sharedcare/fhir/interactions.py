"""The FHIR RESTful interactions (create, update, patch, delete and their conditional forms), shared
by the single-request routes and the batch/transaction processor so both behave identically.

Each function works inside one storage `Unit` (a database transaction) and returns an `EntryResult`
(status, the stored version, location). Validation happens here, before anything is stored: the REST
API refuses invalid resources (safety property 6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jsonpatch

from sharedcare.errors import BadRequest, Issue, MethodNotAllowed, NotFound, PreconditionFailed, PreconditionRequired
from sharedcare.fhir.definitions import resource_types
from sharedcare.fhir.search import query as search_query
from sharedcare.fhir.validation import validate_or_raise
from sharedcare.storage.repository import Stored, Unit

ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
ETAG_RE = re.compile(r'\s*(?:W/)?"(\d+)"\s*')

# Types whose updates must say which version they change (If-Match): the care plan issue adds its
# types here; the mechanism (428 without If-Match) is tested now.
VERSIONED_UPDATE_TYPES: set[str] = set()


@dataclass
class EntryResult:
    status: int
    stored: Stored | None = None
    warnings: list[Issue] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        s = self.stored
        return f"{s.res_type}/{s.res_id}/_history/{s.version_id}" if s else None


def check_type(res_type: str) -> str:
    if res_type not in resource_types():
        raise NotFound(f"unknown resource type {res_type!r}")
    return res_type


# Types only the server writes: an AuditEvent comes from the audit trail (safety property 3), never
# from a client, so a client could not forge, change or delete the record of who looked.
# A Person is the patient index's (issue 6): its links change only through the index's operations.
SERVER_WRITTEN = {"AuditEvent": "AuditEvents are written by the server's audit trail, never by clients",
                  "Person": "Persons are kept by the patient index: link or separate records with its operations "
                            "($review-decide, $merge, $unmerge, $unlink)"}


def check_writable(res_type: str) -> None:
    """Refuse (405) a client write of a type only the server writes."""
    reason = SERVER_WRITTEN.get(res_type)
    if reason is not None:
        raise MethodNotAllowed(reason)


def check_id(res_id: str) -> str:
    if not ID_RE.fullmatch(res_id):
        raise BadRequest("a resource id is 1 to 64 letters, digits, '-' or '.'")
    return res_id


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = ETAG_RE.fullmatch(value)
    if not m:
        raise BadRequest('If-Match must be an ETag such as W/"3"')
    return int(m.group(1))


def prepare(body: Any, res_type: str, url_id: str | None = None) -> tuple[dict[str, Any], list[Issue]]:
    """Check a resource body against its URL and the R4 definitions; return it and any warnings."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a FHIR resource (a JSON object)")
    if body.get("resourceType") != res_type:
        raise BadRequest(f"the body's resourceType must be {res_type}")
    if url_id is not None:
        if "id" not in body:
            raise BadRequest("an update must carry the resource id in the body")
        if body["id"] != url_id:
            raise BadRequest("the id in the body does not match the id in the URL")
    warnings = validate_or_raise(body)
    return body, warnings


def conditional_query(unit: Unit, res_type: str, criteria: str, max_count: int) -> search_query.SearchQuery:
    items = parse_qsl(criteria, keep_blank_values=True)
    if not items:
        raise BadRequest("a conditional interaction needs search criteria")
    q = search_query.parse(res_type, items, default_count=2, max_count=max_count, strict=True)
    unit.lock("conditional", res_type, q.canonical())
    return q


def create(unit: Unit, res_type: str, body: Any, *, if_none_exist: str | None = None,
           res_id: str | None = None) -> EntryResult:
    """POST: a new resource with a server id (the body's id is ignored, per R4)."""
    check_writable(res_type)
    unit.require_may(res_type, "create")
    if if_none_exist is not None:
        q = conditional_query(unit, res_type, if_none_exist.lstrip("?").split("?", 1)[-1], 2)
        found = unit.find(q)
        if len(found) > 1:
            raise PreconditionFailed("If-None-Exist matched more than one resource")
        if found:
            return EntryResult(200, unit.require_exists(res_type, found[0]))
    body, warnings = prepare(body, res_type)
    body = {k: v for k, v in body.items() if k != "id"}
    outcome = unit.create(body, res_id=res_id)
    return EntryResult(201, outcome.stored, warnings)


def update(unit: Unit, res_type: str, res_id: str, body: Any, *, if_match: int | None) -> EntryResult:
    """PUT /Type/id: a new version, or create with the client's id (update-as-create)."""
    check_writable(res_type)
    check_id(res_id)
    if if_match is None and res_type in VERSIONED_UPDATE_TYPES and unit.current(res_type, res_id) is not None:
        raise PreconditionRequired(f"updates to {res_type} must send If-Match with the version they change")
    body, warnings = prepare(body, res_type, res_id)
    outcome = unit.write(res_type, res_id, body, method="PUT", if_match=if_match)
    return EntryResult(201 if outcome.created else 200, outcome.stored, warnings)


def conditional_update(unit: Unit, res_type: str, criteria: str, body: Any, *, if_match: int | None,
                       max_count: int) -> EntryResult:
    check_writable(res_type)
    unit.require_may(res_type, "update", "create")
    q = conditional_query(unit, res_type, criteria, max_count)
    found = unit.find(q)
    if len(found) > 1:
        raise PreconditionFailed("the conditional update criteria matched more than one resource")
    if not isinstance(body, dict):
        raise BadRequest("the body must be a FHIR resource (a JSON object)")
    if found:
        if "id" in body and body["id"] != found[0]:
            raise BadRequest("the id in the body does not match the resource the criteria found")
        return update(unit, res_type, found[0], {**body, "id": found[0]}, if_match=if_match)
    if "id" in body:
        return update(unit, res_type, check_id(str(body["id"])), body, if_match=if_match)
    return create(unit, res_type, body)


def patch(unit: Unit, res_type: str, res_id: str, operations: Any, *, if_match: int | None) -> EntryResult:
    """PATCH with a JSON Patch document (RFC 6902); the patched resource must still be valid."""
    check_writable(res_type)
    unit.require_may(res_type, "update")
    current = unit.require_exists(res_type, res_id)
    if if_match is not None and current.version_id != if_match:
        raise PreconditionFailed("the resource has changed since the version you sent (If-Match)")
    if not isinstance(operations, list):
        raise BadRequest("a JSON Patch document is an array of operations")
    from sharedcare.fhir import jsonio

    assert current.data is not None  # require_exists excludes deletions
    try:
        patched = jsonpatch.JsonPatch(operations).apply(jsonio.loads(current.data))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise BadRequest(f"the JSON Patch could not be applied: {type(exc).__name__}") from None
    body, warnings = prepare(patched, res_type, res_id)
    outcome = unit.write(res_type, res_id, body, method="PATCH", if_match=current.version_id)
    return EntryResult(200, outcome.stored, warnings)


def delete(unit: Unit, res_type: str, res_id: str, *, if_match: int | None = None) -> EntryResult:
    check_writable(res_type)
    check_id(res_id)
    stored = unit.delete(res_type, res_id, if_match=if_match)
    return EntryResult(204 if stored is None else 200, stored)


def conditional_delete(unit: Unit, res_type: str, criteria: str, max_count: int) -> EntryResult:
    check_writable(res_type)
    unit.require_may(res_type, "delete")
    q = conditional_query(unit, res_type, criteria, max_count)
    found = unit.find(q)
    if len(found) > 1:
        raise PreconditionFailed("the conditional delete criteria matched more than one resource")
    if not found:
        return EntryResult(204)
    return delete(unit, res_type, found[0])
