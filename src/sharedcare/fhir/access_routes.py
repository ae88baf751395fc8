"""FHIR routes of the access capability: the audit trail as AuditEvent (read-only), and the
operations by which staff declare a relationship or break the glass for one patient.

    GET  /fhir/AuditEvent/{id}                         read one event (privacy officers, the patient)
    GET  /fhir/AuditEvent?...                          search the audit trail
    GET  /fhir/AuditEvent/$access-report?date=...      declared relationships and break-glass, with reasons
    GET  /fhir/AuditEvent/$alerts?date=...             what a privacy officer should look at
    POST /fhir/Patient/{id}/$declare-relationship      Parameters: reason
    POST /fhir/Patient/{id}/$break-glass               Parameters: reason

The operations answer a Parameters resource naming the grant and when it ends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sharedcare.access import grants
from sharedcare.access.audit_service import AuditService
from sharedcare.access.privacy import PrivacyReports
from sharedcare.errors import BadRequest, FhirError, MethodNotAllowed, NotFound
from sharedcare.fhir import interactions
from sharedcare.fhir import responses as resp
from sharedcare.storage.grants import GrantStore

if TYPE_CHECKING:
    from sharedcare.fhir.routes import FhirApi


def install_access_routes(api: FhirApi) -> None:
    audit = AuditService(api.repo, node_id=api.settings.node_id, base_url=api.base)
    reports = PrivacyReports(audit, unusual_patients=api.settings.alert_unusual_patients)
    store = GrantStore(api.repo.engine)
    lengths = {"declared": timedelta(days=api.settings.declared_relationship_days),
               "break-glass": timedelta(minutes=api.settings.break_glass_minutes)}
    r = api.route

    @r("GET", "/AuditEvent")
    async def audit_search(request: Request) -> Response:
        fmt = api.fmt(request)
        body = await run_in_threadpool(audit.search, api.caller(request), list(request.query_params.multi_items()),
                                       api.query_string(request))
        return resp.fhir_response(body, fmt)

    @r("GET", "/AuditEvent/$access-report")
    async def access_report(request: Request) -> Response:
        fmt = api.fmt(request)
        body = await run_in_threadpool(reports.access_report, api.caller(request), api.query_string(request))
        return resp.fhir_response(body, fmt)

    @r("GET", "/AuditEvent/$alerts")
    async def alerts(request: Request) -> Response:
        fmt = api.fmt(request)
        body = await run_in_threadpool(reports.alerts, api.caller(request), api.query_string(request))
        return resp.fhir_response(body, fmt)

    @r("GET", "/AuditEvent/{event_id}")
    async def audit_read(request: Request, event_id: str) -> Response:
        fmt = api.fmt(request)
        return resp.fhir_response(await run_in_threadpool(audit.read, api.caller(request), event_id), fmt)

    async def refuse_write(request: Request, *_args: str) -> Response:
        raise MethodNotAllowed(interactions.SERVER_WRITTEN["AuditEvent"])

    for method in ("POST", "PUT", "DELETE"):
        r(method, "/AuditEvent")(refuse_write)
    for method in ("PUT", "PATCH", "DELETE"):
        r(method, "/AuditEvent/{event_id}")(refuse_write)

    async def assert_access(request: Request, res_id: str, kind: str) -> Response:
        fmt = api.fmt(request)
        interactions.check_id(res_id)
        caller = api.caller(request)
        interaction = grants.INTERACTIONS[kind]
        try:
            reason = _reason(await api.resource_body(request))
            if not await run_in_threadpool(api.repo.exists, "Patient", res_id):
                raise NotFound("Patient resource not found")
            row = await run_in_threadpool(grants.grant, store, caller, kind, res_id, reason, datetime.now(UTC),
                                          length=lengths[kind], step_up_aal=api.settings.step_up_aal)
        except FhirError as exc:
            await run_in_threadpool(api.repo.record, caller, interaction, exc.status, res_type="Patient")
            raise
        return resp.fhir_response({"resourceType": "Parameters", "parameter": [
            {"name": "grant", "valueString": row.grant_id},
            {"name": "kind", "valueCode": row.kind},
            {"name": "patient", "valueReference": {"reference": f"Patient/{res_id}"}},
            {"name": "until", "valueInstant": row.until[:19] + "Z"},
        ]}, fmt, 201)

    @r("POST", "/Patient/{res_id}/$declare-relationship")
    async def declare(request: Request, res_id: str) -> Response:
        return await assert_access(request, res_id, "declared")

    @r("POST", "/Patient/{res_id}/$break-glass")
    async def break_glass(request: Request, res_id: str) -> Response:
        return await assert_access(request, res_id, "break-glass")


def _reason(body: Any) -> str:
    """The `reason` of a Parameters body (a string), or BadRequest."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the operation takes a Parameters resource with a 'reason'")
    found = [p.get("valueString") for p in body.get("parameter") or [] if isinstance(p, dict)
             and p.get("name") == "reason"]
    if len(found) != 1 or not isinstance(found[0], str):
        raise BadRequest("give one 'reason' parameter (valueString)")
    return found[0]
