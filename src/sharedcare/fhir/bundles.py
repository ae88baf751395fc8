"""Batch and transaction bundles (R4 http.html#transaction).

A transaction is one database transaction: every entry succeeds or nothing is stored (CV4, CF1).
Entries are processed in the order the specification fixes: DELETE, POST, PUT/PATCH, then GET/HEAD;
`urn:uuid:` (and other) fullUrls of created resources and conditional references (`Patient?identifier=`)
are resolved to the ids they end up with, everywhere in the bundle, before anything is written.
A batch runs each entry in its own transaction and reports each entry's outcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sharedcare.access.context import Caller
from sharedcare.errors import BadRequest, FhirError, Issue, PayloadTooLarge, PreconditionFailed, operation_outcome
from sharedcare.fhir import interactions
from sharedcare.fhir.search import query as search_query
from sharedcare.storage import repository
from sharedcare.storage.repository import Repository, Stored, Unit

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    full_url: str | None
    resource: Any
    request: dict[str, Any]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.strip("/")

    @property
    def query(self) -> str:
        return urlsplit(self.url).query


def parse_entries(bundle: dict[str, Any], max_entries: int) -> list[Entry]:
    """A bundle's entries, each checked to carry a request with a FHIR method and a URL."""
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise BadRequest("Bundle.entry must be a list")
    if len(raw) > max_entries:
        raise PayloadTooLarge(f"a bundle may hold at most {max_entries} entries")
    out = []
    for i, e in enumerate(raw):
        req = e.get("request") if isinstance(e, dict) else None
        if not isinstance(req, dict) or not req.get("method") or not req.get("url"):
            raise BadRequest(f"Bundle.entry[{i}].request needs a method and a url")
        method = str(req["method"]).upper()
        if method not in ORDER:
            raise BadRequest(f"Bundle.entry[{i}].request.method is not a FHIR HTTP verb")
        out.append(Entry(i, method, str(req["url"]), e.get("fullUrl"), e.get("resource"), req))
    return out


_QUOTED = re.compile(r'"([^"]*)"')  # attribute values in narrative XHTML (href="urn:uuid:...")


# Where a string sits in a resource: its container (dict or list), its key or index, and the string.
Slot = tuple[Any, Any, str]


def _slots(resource: Any, full_urls: set[str]) -> list[Slot]:
    """The strings of a resource that resolving a bundle may change, found in one pass: those equal to
    a fullUrl of the bundle (references, uris), conditional references (`Type?criteria`) and
    narrative (for its links)."""
    found: list[Slot] = []
    stack = [resource] if isinstance(resource, (dict, list)) else []
    while stack:
        current = stack.pop()
        for k, v in (current.items() if isinstance(current, dict) else enumerate(current)):
            if isinstance(v, str):
                if v in full_urls or k == "div" or (k == "reference" and "?" in v):
                    found.append((current, k, v))
            elif isinstance(v, (dict, list)):
                stack.append(v)
    return found


def _apply(slots: list[Slot], mapping: dict[str, str]) -> None:
    """Replace, in place, every slot's string that is mapped, and mapped links in narrative."""
    if not mapping:
        return
    for current, k, v in slots:
        if k == "div":
            current[k] = _QUOTED.sub(lambda m: f'"{mapping[m[1]]}"' if m[1] in mapping else m[0], v)
        elif v in mapping:
            current[k] = mapping[v]  # an existing key or index: the container does not change size


class BundleProcessor:
    def __init__(self, repo: Repository, base_url: str, max_entries: int, max_count: int,
                 read_entry: Callable[[Unit, Entry], tuple[int, Any]]) -> None:
        self.repo = repo
        self.base_url = base_url.rstrip("/")
        self.max_entries = max_entries
        self.max_count = max_count
        self.read_entry = read_entry

    def process(self, caller: Caller, bundle: dict[str, Any]) -> dict[str, Any]:
        kind = bundle.get("type")
        if kind == "transaction":
            return self.transaction(caller, parse_entries(bundle, self.max_entries))
        if kind == "batch":
            return self.batch(caller, parse_entries(bundle, self.max_entries))
        raise BadRequest("POST to the base URL takes a Bundle of type batch or transaction")

    # -- transaction -------------------------------------------------------------------------------
    def transaction(self, caller: Caller, entries: list[Entry]) -> dict[str, Any]:
        with self.repo.unit(caller, "transaction") as unit:
            return self.transaction_in(unit, entries)

    def transaction_in(self, unit: Unit, entries: list[Entry],
                       keep: Callable[[Stored, dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """A transaction's entries inside a unit the caller holds (which rolls back whole on an error).

        `keep(current, incoming)`, when given, may keep a stored resource instead of an update to it
        (ingestion keeps what a source recorded later than the message being applied)."""
        results: dict[int, dict[str, Any]] = {}
        mapping, slots = self._resolve_ids(unit, entries)
        seen: set[str] = set()
        for entry in sorted(entries, key=lambda e: (ORDER[e.method], e.index)):
            _apply(slots.get(entry.index, []), mapping)
            target = self._target(entry, mapping)
            if target and target in seen and entry.method != "GET":
                raise BadRequest(f"Bundle.entry[{entry.index}] changes a resource another entry changes")
            if target:
                seen.add(target)
            try:
                results[entry.index] = self._run(unit, entry, mapping, keep)
            except FhirError as exc:
                # Name the entry; the whole transaction rolls back with this status.
                issue = exc.issues[0]
                exc.issues[0] = Issue(issue.severity, issue.code,
                                      f"Bundle.entry[{entry.index}]: {issue.diagnostics}", issue.expression)
                raise
        return {"resourceType": "Bundle", "type": "transaction-response",
                "entry": [results[i] for i in sorted(results)]}

    def _target(self, entry: Entry, mapping: dict[str, str]) -> str | None:
        if entry.method in ("PUT", "PATCH", "DELETE") and "?" not in entry.url:
            return entry.path
        if entry.method in ("POST", "PUT") and entry.full_url:
            return mapping.get(entry.full_url)
        return None

    def _resolve_ids(self, unit: Unit, entries: list[Entry]) -> tuple[dict[str, str], dict[int, list[Slot]]]:
        """Assign ids to POSTed resources and resolve conditional references, before any write: the
        mapping from each fullUrl and conditional reference to `Type/id`, and per entry the strings of
        its resource that may need rewriting."""
        full_urls = {e.full_url for e in entries if e.full_url}
        slots = {e.index: _slots(e.resource, full_urls) for e in entries if e.resource is not None}
        mapping: dict[str, str] = {}
        for e in entries:
            if e.method == "POST":
                res_type = interactions.check_type(e.path)
                if e.request.get("ifNoneExist"):
                    q = interactions.conditional_query(unit, res_type, str(e.request["ifNoneExist"]), 2)
                    found = unit.find(q)
                    if len(found) > 1:
                        raise PreconditionFailed(f"Bundle.entry[{e.index}] ifNoneExist matched several resources")
                    new_id = found[0] if found else repository.new_id()
                else:
                    new_id = repository.new_id()
                e.request["_assigned_id"] = new_id
                if e.full_url:
                    mapping[e.full_url] = f"{res_type}/{new_id}"
            elif e.method == "PUT" and e.full_url and "?" not in e.url:
                mapping[e.full_url] = e.path
            elif e.method == "PUT" and "?" in e.url:
                # A conditional update: references to its fullUrl are to whatever resource it ends up
                # updating (the one its criteria find) or creating (with an id assigned now).
                res_type = interactions.check_type(e.path)
                q = interactions.conditional_query(unit, res_type, e.query, 2)
                found = unit.find(q)
                if len(found) > 1:
                    raise PreconditionFailed(f"Bundle.entry[{e.index}]: the conditional update criteria matched "
                                             "more than one resource")
                given = e.resource.get("id") if isinstance(e.resource, dict) else None
                e.request["_assigned_id"] = found[0] if found else (
                    interactions.check_id(str(given)) if given is not None else repository.new_id())
                e.request["_exists"] = bool(found)
                if e.full_url:
                    mapping[e.full_url] = f"{res_type}/{e.request['_assigned_id']}"
        # Conditional references: any reference "Type?criteria" must match exactly one resource.
        for e in entries:
            for _, key, ref in slots.get(e.index, ()):
                if key == "reference" and "?" in ref and ref not in mapping and \
                        not ref.startswith(("http:", "https:", "urn:")):
                    res_type, _, criteria = ref.partition("?")
                    interactions.check_type(res_type)
                    q = search_query.parse(res_type, parse_qsl(criteria, keep_blank_values=True),
                                           default_count=2, max_count=2, strict=True)
                    found = unit.find(q)
                    if len(found) != 1:
                        raise PreconditionFailed(
                            f"Bundle.entry[{e.index}]: a conditional reference matched {len(found)} resources")
                    mapping[ref] = f"{res_type}/{found[0]}"
        # Absolute fullUrls on this server (base/Type/id) map to relative references too.
        for e in entries:
            if e.full_url and e.full_url.startswith(self.base_url + "/") and e.full_url not in mapping:
                mapping[e.full_url] = e.full_url[len(self.base_url) + 1:]
        return mapping, slots

    def _run(self, unit: Unit, entry: Entry, mapping: dict[str, str],
             keep: Callable[[Stored, dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        req = entry.request
        if_match = interactions.parse_if_match(req.get("ifMatch"))
        parts = entry.path.split("/")
        if entry.method == "GET" or entry.method == "HEAD":
            status, body = self.read_entry(unit, entry)
            return {"resource": body, "response": {"status": str(status)}}
        res_type = interactions.check_type(parts[0])
        if entry.method == "POST":
            assigned = str(req["_assigned_id"])
            existing = unit.current(res_type, assigned) if req.get("ifNoneExist") else None
            if existing is not None:
                result = interactions.EntryResult(200, existing)
            else:
                result = interactions.create(unit, res_type, entry.resource, res_id=assigned)
        elif entry.method == "PUT":
            if len(parts) == 2:
                result = interactions.update(unit, res_type, parts[1], entry.resource, if_match=if_match)
            else:
                res_id = str(req["_assigned_id"])
                current = unit.current(res_type, res_id) if req["_exists"] else None
                if not isinstance(entry.resource, dict):
                    raise BadRequest("the body must be a FHIR resource (a JSON object)")
                if "id" in entry.resource and entry.resource["id"] != res_id:
                    raise BadRequest("the id in the body does not match the resource the criteria found")
                if current is not None and not current.deleted and keep is not None and keep(current,
                                                                                              entry.resource):
                    result = interactions.EntryResult(200, current)
                else:
                    unit.require_may(res_type, "update", "create")
                    result = interactions.update(unit, res_type, res_id, {**entry.resource, "id": res_id},
                                                 if_match=if_match)
        elif entry.method == "PATCH":
            if len(parts) != 2:
                raise BadRequest(f"Bundle.entry[{entry.index}]: PATCH needs Type/id")
            result = interactions.patch(unit, res_type, parts[1], _patch_body(entry.resource), if_match=if_match)
        else:  # DELETE
            if len(parts) == 2:
                result = interactions.delete(unit, res_type, parts[1], if_match=if_match)
            else:
                result = interactions.conditional_delete(unit, res_type, entry.query, self.max_count)
        return self._response(result)

    def _response(self, result: interactions.EntryResult) -> dict[str, Any]:
        response: dict[str, Any] = {"status": STATUS_TEXT.get(result.status, str(result.status))}
        out: dict[str, Any] = {"response": response}
        s = result.stored
        if s is not None:
            response["location"] = result.location
            response["etag"] = s.etag
            response["lastModified"] = s.instant
            out["fullUrl"] = f"{self.base_url}/{s.res_type}/{s.res_id}"
        if result.warnings:
            response["outcome"] = operation_outcome(result.warnings)
        return out

    # -- batch ---------------------------------------------------------------------------------
    def batch(self, caller: Caller, entries: list[Entry]) -> dict[str, Any]:
        out = []
        for entry in entries:
            try:
                with self.repo.unit(caller, "batch") as unit:
                    mapping, slots = self._resolve_ids(unit, [entry])
                    _apply(slots.get(entry.index, []), mapping)
                    out.append(self._run(unit, entry, mapping))
            except FhirError as exc:
                out.append({"response": {"status": str(exc.status), "outcome": exc.outcome()}})
        return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def _patch_body(resource: Any) -> Any:
    """In a bundle, a JSON Patch travels as a Binary whose data is the base64 patch document."""
    import base64

    from sharedcare.fhir import jsonio

    if isinstance(resource, dict) and resource.get("resourceType") == "Binary" and resource.get("data"):
        try:
            return jsonio.loads(base64.b64decode(resource["data"]))
        except ValueError:
            raise BadRequest("the PATCH entry's Binary.data is not base64 JSON") from None
    raise BadRequest("a PATCH entry carries its JSON Patch as a Binary resource")
