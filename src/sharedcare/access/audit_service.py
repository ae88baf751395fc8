"""The audit trail served read-only as AuditEvent (issue 5 items 8-10): who may search it and how.

- Privacy officers (the privacy-officer activity) search the events of their own organisation's
  staff: by user (`agent`), role (`agent-role`), patient, resource (`entity`), interaction
  (`subtype`), outcome, action and time (`date`); the node's own system callers search everything.
- A patient sees who looked at their own record (`for_patient`: organisation, role, time), and asking
  about anyone else is refused.
- Nobody else may read the audit trail (search 403, read 404), and nobody may write it (405 elsewhere).
Reading the audit trail is itself audited.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from sharedcare.access import audit_events
from sharedcare.access.context import Caller
from sharedcare.access.roles import Activity
from sharedcare.errors import BadRequest, Forbidden, NotFound
from sharedcare.fhir.jsonio import dumps
from sharedcare.fhir.search.query import date_range
from sharedcare.storage import audit_store
from sharedcare.storage.audit_store import AuditFilter
from sharedcare.storage.repository import Repository

PARAMS = frozenset({"date", "agent", "agent-role", "agent-organization", "patient", "entity", "subtype",
                    "outcome", "action", "_count", "_cursor", "_total", "_format"})
DEFAULT_COUNT, MAX_COUNT = 50, 1000


@dataclass(frozen=True)
class AuditView:
    """How a caller may see the audit trail: everything, their organisation's staff, or their own record."""

    kind: str  # all, organisation, patient
    organisation: str | None = None
    own: frozenset[str] = frozenset()


class AuditService:
    def __init__(self, repo: Repository, *, node_id: str, base_url: str) -> None:
        self.repo = repo
        self.node_id = node_id
        self.base = base_url.rstrip("/")

    def view(self, caller: Caller) -> AuditView | None:
        if caller.kind == "system" and caller.organisation is None:
            return AuditView("all")
        if caller.kind == "user" and caller.organisation and Activity.PRIVACY_OFFICER in caller.activities:
            return AuditView("organisation", caller.organisation)
        if caller.kind == "patient":
            return AuditView("patient", own=self.repo.own_patients(caller))
        return None

    def _event(self, view: AuditView, row: dict[str, Any]) -> dict[str, Any]:
        if view.kind == "patient":
            return audit_events.for_patient(row, node_id=self.node_id, own=view.own)
        return audit_events.to_audit_event(row, node_id=self.node_id, base_url=self.base)

    def _allowed(self, view: AuditView, row: dict[str, Any]) -> bool:
        if view.kind == "organisation":
            return bool(row.get("agent_org") == view.organisation)
        if view.kind == "patient":
            return bool(view.own & set((row.get("patients") or "").split()))
        return True

    def read(self, caller: Caller, event_id: str) -> bytes:
        view = self.view(caller)
        row = audit_store.read(self.repo.engine, int(event_id)) if event_id.isdigit() else None
        if view is None or row is None or not self._allowed(view, row):
            self.repo.record(caller, "read", 404, res_type="AuditEvent")
            raise NotFound("AuditEvent resource not found")
        self.repo.record(caller, "read", 200, res_type="AuditEvent")
        return dumps(self._event(view, row))

    def search(self, caller: Caller, items: list[tuple[str, str]], query_string: str) -> bytes:
        view = self.view(caller)
        if view is None:
            self.repo.record(caller, "search-type", 403, res_type="AuditEvent", query=query_string)
            raise Forbidden("you may not search the audit trail")
        try:
            f, count, total = _parse(items, view)
        except (BadRequest, Forbidden) as exc:
            self.repo.record(caller, "search-type", exc.status, res_type="AuditEvent", query=query_string)
            raise
        rows = audit_store.search(self.repo.engine, f, count + 1)
        more, rows = len(rows) > count, rows[:count]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if total:
            bundle["total"] = audit_store.count(self.repo.engine, replace(f, before_seq=None))
        keep = [(k, v) for k, v in items if k not in ("_cursor", "_count", "_format")] + [("_count", str(count))]
        links = [{"relation": "self", "url": f"{self.base}/AuditEvent?" + urlencode(keep)}]
        if more and rows:
            links.append({"relation": "next",
                          "url": f"{self.base}/AuditEvent?" + urlencode([*keep, ("_cursor", str(rows[-1]["seq"]))])})
        bundle["link"] = links
        bundle["entry"] = [{"fullUrl": f"{self.base}/AuditEvent/{r['seq']}", "resource": self._event(view, r),
                            "search": {"mode": "match"}} for r in rows]
        self.repo.record(caller, "search-type", 200, res_type="AuditEvent", query=query_string)
        return dumps(bundle)


def date_bounds(value: str) -> list[tuple[str, str]]:
    """A `date` search value as bounds on when audit records were recorded: (ge|gt|le|lt, stored
    timestamp); `eq` (or no prefix) is the whole range the value covers."""
    prefix, low, high = date_range(value)
    if prefix in ("ge", "gt"):
        return [(prefix, low if prefix == "ge" else high)]
    if prefix in ("le", "lt"):
        return [(prefix, high if prefix == "le" else low)]
    if prefix == "eq":
        return [("ge", low), ("le", high)]
    raise BadRequest("date takes eq, ge, gt, le or lt")


def _parse(items: list[tuple[str, str]], view: AuditView) -> tuple[AuditFilter, int, bool]:
    f = AuditFilter()
    count, total = DEFAULT_COUNT, False
    recorded: list[tuple[str, str]] = []
    patients: set[str] = set()
    for key, value in items:
        if key not in PARAMS:
            raise BadRequest(f"the audit trail cannot be searched by {key[:60]!r} (it can by: "
                             f"{', '.join(sorted(p for p in PARAMS if not p.startswith('_')))})")
        if not value:
            raise BadRequest(f"{key} needs a value")
        if key == "agent":
            f = replace(f, agent=value)
        elif key == "agent-organization":
            f = replace(f, agent_org=value)
        elif key == "outcome":
            f = replace(f, outcome=value)
        elif key == "action":
            f = replace(f, action=value)
        elif key == "agent-role":
            f = replace(f, agent_role=value.split("|")[-1])
        elif key == "subtype":
            f = replace(f, interactions=tuple(v.split("|")[-1] for v in value.split(",")))
        elif key == "patient":
            patients |= {v.removeprefix("Patient/") for v in value.split(",")}
        elif key == "entity":
            res_type, _, res_id = value.partition("/")
            if not res_type or not res_id or "/" in res_id:
                raise BadRequest("entity is a reference Type/id")
            f = replace(f, resource=(res_type, res_id))
        elif key == "date":
            recorded += date_bounds(value)
        elif key == "_count":
            if not value.isdigit():
                raise BadRequest("_count is a whole number")
            count = max(1, min(int(value), MAX_COUNT))
        elif key == "_cursor":
            if not value.isdigit():
                raise BadRequest("_cursor is not valid")
            f = replace(f, before_seq=int(value))
        elif key == "_total":
            total = value == "accurate"
    if view.kind == "organisation":
        if f.agent_org is not None and f.agent_org != view.organisation:
            raise Forbidden("a privacy officer searches the audit of their own organisation")
        f = replace(f, agent_org=view.organisation)
    if view.kind == "patient":
        if patients and not patients <= view.own:
            raise Forbidden("a patient may see only who looked at their own record")
        patients = patients or set(view.own)
        if not patients:
            patients = {""}  # no records: nothing to show
    if patients:
        f = replace(f, patients=frozenset(patients))
    return replace(f, recorded=tuple(recorded)), count, total
