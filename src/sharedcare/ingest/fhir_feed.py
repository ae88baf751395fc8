"""FHIR feeds: transaction and batch Bundles, and NDJSON of resources or Bundles, put into the inbox
by a source (`sharedcare ingest --source ID FILE`), as GP and ambulance systems send them.

Each message is one inbox row, keyed for idempotency within its source:
- a Bundle by `Bundle.identifier` (system|value), else its `id`, else the file's SHA-256 and its
  position (line) in the file;
- a batch Bundle is split into one message per entry (`key#n`), so one entry's fault is retried and
  dead-lettered alone, as batch semantics say each entry stands alone;
- a single resource (an NDJSON line, or a JSON file holding one) by the file's SHA-256 and line;
  it becomes an update of its id when it has one (update-as-create), else a create.

What is checked before a message is stored is only what makes it a message (JSON, a resource type, a
Bundle's type and entries); validation against R4 happens when it is processed, and a resource that
fails it is a dead letter naming the path, so nothing is lost for a defect a source can fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharedcare.errors import FhirError
from sharedcare.fhir import jsonio
from sharedcare.ingest.hl7v2.mapping import Mapped
from sharedcare.ingest.hl7v2.message import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, ParseError
from sharedcare.storage.inbox_store import Incoming
from sharedcare.storage.tables import INBOX_KEY

_NOT_JSON = object()


@dataclass
class Split:
    items: list[Incoming]
    problems: list[str]


def _key(doc: dict[str, Any], fallback: str) -> str:
    ident = doc.get("identifier") if doc.get("resourceType") == "Bundle" else None
    if isinstance(ident, dict) and ident.get("value"):
        key = f"{ident.get('system', '')}|{ident['value']}"
    elif isinstance(doc.get("id"), str) and doc["id"]:
        key = f"{doc['resourceType']}/{doc['id']}"
    else:
        key = fallback
    return key if len(key) <= INBOX_KEY else hashlib.sha256(key.encode()).hexdigest()


def bundle_key(doc: dict[str, Any], fallback: str) -> str:
    """A Bundle's inbox key: its identifier (system|value), else Type/id, else `fallback`."""
    return _key(doc, fallback)


def _patient_key(bundle: dict[str, Any]) -> str | None:
    """The bundle's Patient (the first one it writes), for ordering one patient's messages."""
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            url = (entry.get("request") or {}).get("url") or entry.get("fullUrl") or ""
            return str(url)[:300] or None
    return None


def split(source_id: str, data: bytes, name: str) -> Split:
    """The inbox messages in a file: `.ndjson` one JSON document a line, otherwise one document."""
    checksum = hashlib.sha256(data).hexdigest()
    problems: list[str] = []
    items: list[Incoming] = []
    docs: list[tuple[int, Any]] = []
    if name.endswith(".ndjson"):
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                docs.append((n, jsonio.loads(line)))
            except (ValueError, FhirError):
                docs.append((n, _NOT_JSON))
    else:
        try:
            docs.append((1, jsonio.loads(data)))
        except (ValueError, FhirError):
            docs.append((1, _NOT_JSON))
    for n, doc in docs:
        where = f"{name}, line {n}" if name.endswith(".ndjson") else name
        if doc is _NOT_JSON:
            problems.append(f"{where}: not JSON")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            problems.append(f"{where}: not a FHIR resource")
            continue
        fallback = f"sha256:{checksum}:{n}"
        if doc["resourceType"] == "Bundle" and doc.get("type") == "batch":
            entries = doc.get("entry")
            if not isinstance(entries, list):
                problems.append(f"{where}: a batch Bundle needs entries")
                continue
            base = _key(doc, fallback)
            for i, entry in enumerate(entries):
                one = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
                items.append(Incoming(source_id, f"{base}#{i}", "fhir", jsonio.dumps(one), _patient_key(one)))
            continue
        if doc["resourceType"] == "Bundle" and doc.get("type") != "transaction":
            problems.append(f"{where}: a Bundle must be a transaction or a batch")
            continue
        key = _key(doc, fallback) if doc["resourceType"] == "Bundle" else fallback
        items.append(Incoming(source_id, key, "fhir", jsonio.dumps(doc),
                              _patient_key(doc) if doc["resourceType"] == "Bundle" else None))
    return Split(items, problems)


def split_file(source_id: str, path: Path) -> Split:
    return split(source_id, path.read_bytes(), path.name)


def as_transaction(payload: bytes) -> Mapped:
    """A stored FHIR message as the transaction to apply."""
    try:
        doc = jsonio.loads(payload)
    except (ValueError, FhirError):
        raise ParseError("the stored message is not JSON", DATA_TYPE_ERROR) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise ParseError("the stored message is not a FHIR resource", REQUIRED_FIELD_MISSING)
    if doc["resourceType"] == "Bundle":
        return Mapped(doc)
    res_id = doc.get("id")
    request = ({"method": "PUT", "url": f"{doc['resourceType']}/{res_id}"} if isinstance(res_id, str)
               else {"method": "POST", "url": doc["resourceType"]})
    return Mapped({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": doc, "request": request}]})
