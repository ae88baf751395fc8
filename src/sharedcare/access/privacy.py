"""Privacy officers' reports and alerts (issue 5 item 9; security cases BG5, AU5).

- `$access-report`: every declared relationship and break-glass in a window, each as its AuditEvent
  with the grant (an entity of role Security Resource) carrying the reason, its end, and how many
  times the member of staff looked at that patient's data while it held.
- `$alerts`: what a privacy officer should look at, each an AuditEvent tagged with why
  (`ALERT` code system): `break-glass` and `declared-relationship` (every one), `flagged-person` (a
  member of staff looked at a person labelled celebrity or employee), `unusual-volume` (a member of
  staff looked at more different patients in the window than the threshold; the event shown is their
  latest, with the number of patients).

Both cover a window given by `date` (ge/gt/le/lt, default the last 7 days), newest organisation
scope as for audit searches: a privacy officer sees their own organisation's staff; the node sees all.
Looking at one's own or a family member's record is not detected yet (staff have no demographics here).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sharedcare.access import audit_events
from sharedcare.access.audit_service import AuditService, date_bounds
from sharedcare.access.context import Caller
from sharedcare.errors import BadRequest, FhirError, Forbidden
from sharedcare.fhir.jsonio import dumps
from sharedcare.storage import privacy
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
