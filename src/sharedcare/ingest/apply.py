"""Writing what a message says, as its source, in one transaction with its inbox row.

The mapped transaction Bundle goes through the FHIR transaction processor (fhir/bundles.py) inside a
unit held here, so the resources, their provenance, any merge for the patient index, the audit
records and the inbox row's `done` commit together or not at all: a crash at any point leaves the
message pending, to be processed again, never half-applied and never applied twice.

What a source recorded later is never overwritten by what it recorded earlier: a resource whose stored
version says (`meta.extension` source-recorded) the source recorded it after the message being applied
is kept as it is (a resent A08, or one the network reordered, cannot undo a discharge).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sharedcare.errors import FhirError
from sharedcare.fhir import interactions, jsonio
from sharedcare.fhir.bundles import BundleProcessor, parse_entries
from sharedcare.fhir.search import query as search_query
from sharedcare.ingest.hl7v2.datatypes import ODS_SYSTEM
from sharedcare.ingest.hl7v2.mapping import SOURCE_RECORDED, Mapped, token_value
from sharedcare.ingest.hl7v2.message import ParseError
from sharedcare.storage.repository import Stored, Unit

PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
MESSAGE_SYSTEM = "https://sharedcare.example/Id/inbox-message"


def _recorded(doc: dict[str, Any]) -> datetime | None:
    for ext in (doc.get("meta") or {}).get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == SOURCE_RECORDED:
            return instant(str(ext.get("valueDateTime") or ""))
    return None


def instant(value: str) -> datetime | None:
    """A FHIR dateTime as a moment (a date alone as its midnight UTC), for ordering."""
    if not value:
        return None
    try:
        if len(value) <= 10:
            parts = [int(p) for p in value.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def keep_newer(current: Stored, incoming: dict[str, Any]) -> bool:
    """Keep the stored version when its source recorded it after the incoming one."""
    if current.data is None:
        return False
    stored_at = _recorded(jsonio.loads(current.data))
    incoming_at = _recorded(incoming)
    return stored_at is not None and incoming_at is not None and stored_at > incoming_at


def apply(unit: Unit, processor: BundleProcessor, mapped: Mapped, *, ods: str | None, message_ref: dict[str, str],
          activity: str) -> dict[str, Any]:
    """Write `mapped` in `unit` (whose caller is the source's system); what was written, as the
    inbox's outcome: references written and kept, merges made, and validation warnings."""
    entries = parse_entries(mapped.bundle, processor.max_entries)
    response = processor.transaction_in(unit, entries, keep=keep_newer)
    written: list[str] = []
    by_full_url: dict[str, str] = {}
    warnings = list(mapped.warnings)
    for entry, result in zip(entries, response["entry"], strict=True):
        location = result["response"].get("location") or ""
        ref = "/".join(location.split("/")[:2])
        if ref:
            written.append(ref)
            if entry.full_url:
                by_full_url[entry.full_url] = ref
        for issue in (result["response"].get("outcome") or {}).get("issue", []):
            warnings.append(f"{ref}: {issue.get('diagnostics', '')}")
    merged = 0
    for merge in mapped.merges:
        survivor = by_full_url.get(merge.survivor)
        if survivor is None:
            continue
        old = _find_patient(unit, merge.old)
        if old is None:
            warnings.append("a merge names a record this source has not sent: nothing to merge")
            continue
        if old == survivor.split("/")[1]:
            continue
        _link(unit, old, survivor, "replaced-by", active=False)
        _link(unit, survivor.split("/")[1], f"Patient/{old}", "replaces")
        written.append(f"Patient/{old}")
        merged += 1
    if written:
        unit.create(provenance(written, mapped, ods, message_ref, activity))
    return {"written": written, "merged": merged, "warnings": warnings}


def _find_patient(unit: Unit, ident: dict[str, Any]) -> str | None:
    q = search_query.parse("Patient", [("identifier", token_value(ident["system"], ident["value"]))],
                           default_count=2, max_count=2, strict=True)
    found = unit.find(q)
    return found[0] if len(found) == 1 else None


def _link(unit: Unit, res_id: str, other: str, kind: str, *, active: bool | None = None) -> None:
    current = unit.require_exists("Patient", res_id)
    assert current.data is not None
    doc = jsonio.loads(current.data)
    links = [ln for ln in doc.get("link", []) if (ln.get("other") or {}).get("reference") != other]
    doc["link"] = [*links, {"other": {"reference": other}, "type": kind}]
    if active is not None:
        doc["active"] = active
    # The rest of meta stays: its security labels (a restriction the source set) and when the source
    # recorded the record; the version and time are the store's to set.
    meta = {k: v for k, v in (doc.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    doc["meta"] = meta
    interactions.update(unit, "Patient", res_id, doc, if_match=None)


def provenance(targets: list[str], mapped: Mapped, ods: str | None, message_ref: dict[str, str],
               activity: str) -> dict[str, Any]:
    """One Provenance per inbound message: what it produced, who sent it (the source organisation, or
    for the operator's own loads the node), when it was recorded."""
    who = {"identifier": {"system": ODS_SYSTEM, "value": ods}} if ods else {"display": "this node's operator"}
    doc: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in dict.fromkeys(targets)],
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "activity": {"coding": [{"system": PROVENANCE_ACTIVITY, "code": activity}]},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "author"}]},
                   "who": who}],
        "entity": [{"role": "source", "what": {"identifier": message_ref}}]}
    if mapped.recorded:
        doc["occurredDateTime"] = mapped.recorded
    return doc


def describe(exc: BaseException) -> str:
    """Why a message failed, for its dead letter: our own words only, never the message's content."""
    if isinstance(exc, ParseError):
        return f"HL7 error {exc.code}: {exc.reason}" + (f" ({exc.segment}-{exc.field_no})" if exc.field_no else "")
    if isinstance(exc, FhirError):
        return f"{exc.status}: " + "; ".join(i.diagnostics for i in exc.issues)
    return f"internal error ({type(exc).__name__})"


def message_identifier(source_id: str, message_key: str) -> dict[str, str]:
    return {"system": f"{MESSAGE_SYSTEM}/{source_id}", "value": message_key}

