"""Privacy officers' reports and alerts (issue 5 item 9; security cases BG5, AU5).

- `$access-report`: every declared relationship and break-glass in a window, each as its AuditEvent
  with the grant (an entity of role Security Resource) carrying the reason, its end, and how many
  times the member of staff looked at that patient's data while it held.
- `$alerts`: what a privacy officer should look at, each an AuditEvent tagged with why
  (`ALERT` code system): `break-glass` and `declared-relationship` (every one), `flagged-person` (a
  member of staff looked at a person labelled celebrity or employee), `unusual-volume` (a member of
  staff looked at more different patients in the window than the threshold; the event shown is their
  latest, with the number of patients), `own-record` (a member of staff looked at a Patient record
  with their own NHS number) and `family-record` (at a person with their family name and postcode).

Both cover a window given by `date` (ge/gt/le/lt, default the last 7 days), newest organisation
scope as for audit searches: a privacy officer sees their own organisation's staff; the node sees all.
Own- and family-record alerts need to know who the member of staff is as a person: their NHS number,
family name and postcode, recorded with `sharedcare users person` (`record_person`). Names are compared
as letters only, ignoring case and accents ("O'Brien" is "OBRIEN"); postcodes without spaces. Staff
with no recorded person get no such alerts.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine, true

from sharedcare.access import audit_events
from sharedcare.access.audit_service import AuditService, date_bounds
from sharedcare.access.context import Caller
from sharedcare.access.policy import NHS_NUMBER
from sharedcare.errors import BadRequest, FhirError, Forbidden
from sharedcare.fhir.jsonio import dumps, loads
from sharedcare.fhir.search import query as search_query
from sharedcare.mpi import normalise
from sharedcare.storage import dialects, privacy, search
from sharedcare.storage.codec import decode
from sharedcare.storage.indexing import stored_instant

ALERT = "https://sharedcare.example/CodeSystem/privacy-alert"
GRANT_ID = "https://sharedcare.example/Id/access-grant"
DEFAULT_WINDOW = timedelta(days=7)
KINDS = {"break-glass": "break-glass", "declare-relationship": "declared-relationship",
         "launch-context": "launch-context"}


class PrivacyReports:
    def __init__(self, audit: AuditService, *, unusual_patients: int) -> None:
        self.audit = audit
        self.engine = audit.repo.engine
        self.unusual = unusual_patients

    def _window(self, caller: Caller, items: list[tuple[str, str]], operation: str) -> privacy.Window:
        view = self.audit.view(caller)
        if view is None or view.kind == "patient":
            self.audit.repo.record(caller, "operation", 403, res_type="AuditEvent", query=operation)
            raise Forbidden("privacy reports are for privacy officers")
        now = datetime.now(UTC)
        start, end = stored_instant(now - DEFAULT_WINDOW), stored_instant(now + timedelta(seconds=1))
        try:
            for key, value in items:
                if key == "_format":
                    continue
                if key != "date":
                    raise BadRequest(f"{operation} takes only 'date' (ge/gt/le/lt), not {key[:60]!r}")
                for op, stamp in date_bounds(value):
                    if op in ("ge", "gt"):
                        start = stamp
                    else:
                        end = stamp
        except FhirError as exc:
            self.audit.repo.record(caller, "operation", exc.status, res_type="AuditEvent", query=operation)
            raise
        return privacy.Window(start, end, view.organisation)

    def _bundle(self, caller: Caller, operation: str, events: list[dict[str, Any]]) -> bytes:
        self.audit.repo.record(caller, "operation", 200, res_type="AuditEvent", query=operation)
        return dumps({"resourceType": "Bundle", "type": "collection", "total": len(events),
                      "entry": [{"fullUrl": f"{self.audit.base}/AuditEvent/{e['id']}", "resource": e}
                                for e in events]})

    def _event(self, row: dict[str, Any]) -> dict[str, Any]:
        return audit_events.to_audit_event(row, node_id=self.audit.node_id, base_url=self.audit.base)

    def access_report(self, caller: Caller, query: str) -> bytes:
        """BG5: every grant in the window, with reason, end and the looks it allowed."""
        w = self._window(caller, parse_qsl(query, keep_blank_values=True), "$access-report")
        rows = privacy.grant_events(self.engine, w)
        by_id = privacy.grants(self.engine, [g for r in rows if (g := _grant_id(r)) is not None])
        events = []
        for row in rows:
            event = self._event(row)
            grant = by_id.get(_grant_id(row) or "")
            if grant is not None:
                ended = grant["ended"] or grant["until"]
                looks = privacy.views(self.engine, grant["agent_id"], grant["patient_id"], grant["created"], ended)
                event.setdefault("entity", []).append({
                    "what": {"identifier": {"system": GRANT_ID, "value": grant["grant_id"]}},
                    "type": {"system": audit_events.ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": audit_events.OBJECT_ROLE, "code": "13", "display": "Security Resource"},
                    "detail": [{"type": "reason", "valueString": grant["reason"]},
                               {"type": "until", "valueString": grant["until"][:19] + "Z"},
                               {"type": "records-viewed", "valueString": str(looks)}]})
            events.append(event)
        return self._bundle(caller, "$access-report", events)

    def alerts(self, caller: Caller, query: str) -> bytes:
        w = self._window(caller, parse_qsl(query, keep_blank_values=True), "$alerts")
        found: list[tuple[int, str, dict[str, Any], str | None]] = []
        for row in privacy.grant_events(self.engine, w):
            found.append((row["seq"], KINDS[row["interaction"]], row, None))
        for row in privacy.looks_at(self.engine, w, privacy.flagged_patients(self.engine)):
            found.append((row["seq"], "flagged-person", row, None))
        for person in privacy.people_looking(self.engine, w):
            own, family = relatives(self.engine, person)
            for kind, theirs in (("own-record", own), ("family-record", family - own)):
                for row in privacy.looks_at(self.engine, w, sorted(theirs), agent=person["agent_id"]):
                    found.append((row["seq"], kind, row, None))
        volumes = privacy.volumes(self.engine, w, self.unusual)
        latest = privacy.audit_rows(self.engine, [last for _, _, last in volumes])
        for _agent, patients, last in volumes:
            if last in latest:
                found.append((last, "unusual-volume", latest[last], str(patients)))
        events = []
        for _, kind, row, distinct_patients in sorted(found, key=lambda f: (f[0], f[1])):
            event = self._event(row)
            event["meta"]["tag"] = [{"system": ALERT, "code": kind}]
            if distinct_patients is not None:
                event.setdefault("entity", []).append({
                    "type": {"system": audit_events.ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": audit_events.OBJECT_ROLE, "code": "11", "display": "Security User Entity"},
                    "detail": [{"type": "distinct-patients", "valueString": distinct_patients}]})
            events.append(event)
        return self._bundle(caller, "$alerts", events)


def _grant_id(row: dict[str, Any]) -> str | None:
    query = row.get("query") or ""
    return query[6:] if query.startswith("grant=") else None


# -- who a member of staff is, and whose records are theirs or their family's --------------------------

MAX_MATCHES = 1000  # Patient records looked at per person and question (an NHS number; everyone at a postcode)


def family_key(name: str) -> str:
    """A family name as compared for family-record alerts: letters only, upper case, no accents."""
    plain = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in plain if ch.isalpha() and not unicodedata.combining(ch)).upper()


def postcode_key(postcode: str) -> str:
    return "".join(postcode.split()).upper()


def record_person(engine: Engine, agent_id: str, *, nhs_number: str | None, family_name: str | None,
                  postcode: str | None) -> dict[str, Any]:
    """Record who a member of staff (`agent_id` as the audit names them) is as a person; ValueError
    for an invalid NHS number or postcode, or when nothing is given."""
    if not agent_id.strip() or len(agent_id) > 400:
        raise ValueError("give the member of staff's id as the audit trail names them (e.g. user:jo.bloggs)")
    number = normalise.nhs_number(nhs_number)
    if nhs_number is not None and number is None:
        raise ValueError("the NHS number is not valid (10 digits with a correct check digit)")
    family = family_key(family_name) if family_name else None
    if family_name is not None and not family:
        raise ValueError("the family name has no letters")
    standard = normalise.postcode(postcode)
    if postcode is not None and standard is None:
        raise ValueError("the postcode is not a UK postcode")
    code = postcode_key(standard) if standard else None
    if number is None and (family is None or code is None):
        raise ValueError("give an NHS number, or a family name with a postcode (or all three)")
    row = {"agent_id": agent_id, "nhs_number": number, "family_name": family, "postcode": code,
           "updated": stored_instant(datetime.now(UTC))}
    privacy.set_staff_person(engine, row)
    return row


def relatives(engine: Engine, person: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(Patient ids with the person's NHS number, Patient ids with their family name at their postcode).
    Found by the search engine as the node (no audit: nothing is shown to anyone), then checked exactly."""
    own: set[str] = set()
    family: set[str] = set()
    if person.get("nhs_number"):
        own = {pid for pid, _ in _patients(engine, [("identifier", f"{NHS_NUMBER}|{person['nhs_number']}")])}
    if person.get("family_name") and person.get("postcode"):
        code = person["postcode"]  # searched as written with and without its space, then compared exactly
        for pid, doc in _patients(engine, [("address-postalcode", f"{code[:-3]} {code[-3:]},{code}")]):
            names = {family_key(n.get("family") or "") for n in doc.get("name") or [] if isinstance(n, dict)}
            codes = {postcode_key(a.get("postalCode") or "") for a in doc.get("address") or [] if isinstance(a, dict)}
            if person["family_name"] in names and person["postcode"] in codes:
                family.add(pid)
    return own, family


def _patients(engine: Engine, params: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    q = search_query.parse("Patient", params, default_count=MAX_MATCHES, max_count=MAX_MATCHES)
    with engine.connect().execution_options(**dialects.read_options(engine)) as conn:
        result = search.page(conn, q, lambda _table: true(), None)
    return [(r.res_id, loads(decode(r.data))) for r in result.rows if r.data is not None]
