"""FHIR routes of the patient index (mpi/service.py): Person, read-only, and the operations by which
staff keep the index.

    GET  /fhir/Person/{id}                         the person, with the links the caller may see
    GET  /fhir/Person?link=Patient/{id}            the person of a Patient (also `patient=`)
    GET  /fhir/Person/$review-queue                possible matches (status, _count, after)
    GET  /fhir/Person/$review-queue?review={id}    one, side by side
    GET  /fhir/Person/$link-history?patient=Patient/{id}   every change to the links of that Patient's person
    POST /fhir/Person/$review-decide               Parameters: review, decision (link | apart), reason
    POST /fhir/Person/$merge                       Parameters: source, target (Person references), reason
    POST /fhir/Person/$unmerge                     Parameters: change, reason
    POST /fhir/Person/$unlink                      Parameters: patient (a Patient reference), reason

Persons are kept by the index, never written by clients (405). The operations answer Parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sharedcare.errors import BadRequest, MethodNotAllowed
from sharedcare.fhir import interactions
from sharedcare.fhir import responses as resp
from sharedcare.mpi.service import MpiService, ReviewItem
from sharedcare.storage.mpi_store import ReviewRow

if TYPE_CHECKING:
    from sharedcare.fhir.routes import FhirApi

KEPT_BY_INDEX = interactions.SERVER_WRITTEN["Person"]
PERSON_SEARCH = ("link", "patient", "_format")


def install_mpi_routes(api: FhirApi) -> MpiService:
    service = MpiService(api.repo)
    r = api.route

    @r("GET", "/Person/{person_id}")
    async def person_read(request: Request, person_id: str) -> Response:
        fmt = api.fmt(request)
        interactions.check_id(person_id)
        return resp.fhir_response(await run_in_threadpool(service.person, api.caller(request), person_id), fmt)

    @r("GET", "/Person")
    async def person_search(request: Request) -> Response:
        fmt = api.fmt(request)
        items = list(request.query_params.multi_items())
        unknown = sorted({k for k, _ in items if k not in PERSON_SEARCH})
        if unknown:
            raise BadRequest(f"Person is searched by link or patient (a Patient reference), not {unknown[0][:60]!r}")
        targets = {_patient_id(v) for k, v in items if k in ("link", "patient")}
        if len(targets) != 1:
            raise BadRequest("Person is searched by one Patient: link=Patient/{id} (or patient=)")
        query = api.query_string(request)
        found = await run_in_threadpool(service.person_of, api.caller(request), targets.pop(), query)
        return resp.fhir_response(_searchset(found, api.base, f"{api.base}/Person?{query}"), fmt)

    @r("GET", "/Person/$review-queue")
    async def review_queue(request: Request) -> Response:
        fmt = api.fmt(request)
        params = request.query_params
        caller = api.caller(request)
        await run_in_threadpool(service.check_keeper, caller, "$review-queue")
        if params.get("review"):
            item = await run_in_threadpool(service.review, caller, params["review"])
            return resp.fhir_response(_item_parameters(item), fmt)
        count = params.get("_count", "20")
        if not count.isdigit() or not 1 <= int(count) <= api.settings.max_page_size:
            raise BadRequest(f"_count is a whole number from 1 to {api.settings.max_page_size}")
        rows, total = await run_in_threadpool(lambda: service.queue(
            caller, status=params.get("status", "open"), count=int(count), after=params.get("after")))
        return resp.fhir_response({"resourceType": "Parameters", "parameter": [
            {"name": "total", "valueInteger": total}, *[_review_part(row) for row in rows]]}, fmt)

    @r("GET", "/Person/$link-history")
    async def link_history(request: Request) -> Response:
        fmt = api.fmt(request)
        caller = api.caller(request)
        await run_in_threadpool(service.check_keeper, caller, "$link-history")
        patient = request.query_params.get("patient")
        if not patient:
            raise BadRequest("$link-history takes patient=Patient/{id}")
        rows = await run_in_threadpool(service.history, caller, _patient_id(patient))
        return resp.fhir_response({"resourceType": "Parameters", "parameter": [_change_part(r) for r in rows]}, fmt)

    @r("POST", "/Person/$review-decide")
    async def review_decide(request: Request) -> Response:
        fmt = api.fmt(request)
        await run_in_threadpool(service.check_keeper, api.caller(request), "$review-decide")
        args = _arguments(await api.resource_body(request), {"review": "valueString", "decision": "valueCode",
                                                            "reason": "valueString"})
        row = await run_in_threadpool(service.decide, api.caller(request), args["review"], args["decision"],
                                      args["reason"])
        return resp.fhir_response({"resourceType": "Parameters", "parameter": [_review_part(row)]}, fmt)

    @r("POST", "/Person/$merge")
    async def merge(request: Request) -> Response:
        fmt = api.fmt(request)
        await run_in_threadpool(service.check_keeper, api.caller(request), "$merge")
        args = _arguments(await api.resource_body(request), {"source": "valueReference", "target": "valueReference",
                                                            "reason": "valueString"})
        source, target = _person_id(args["source"]), _person_id(args["target"])
        change, moved = await run_in_threadpool(service.merge, api.caller(request), source, target, args["reason"])
        return resp.fhir_response(_change_parameters(change, f"Person/{target}", moved), fmt)

    @r("POST", "/Person/$unmerge")
    async def unmerge(request: Request) -> Response:
        fmt = api.fmt(request)
        await run_in_threadpool(service.check_keeper, api.caller(request), "$unmerge")
        args = _arguments(await api.resource_body(request), {"change": "valueString", "reason": "valueString"})
        change, restored = await run_in_threadpool(service.unmerge, api.caller(request), args["change"],
                                                   args["reason"])
        return resp.fhir_response(_change_parameters(change, None, restored), fmt)

    @r("POST", "/Person/$unlink")
    async def unlink(request: Request) -> Response:
        fmt = api.fmt(request)
        await run_in_threadpool(service.check_keeper, api.caller(request), "$unlink")
        args = _arguments(await api.resource_body(request), {"patient": "valueReference", "reason": "valueString"})
        patient = _patient_id(args["patient"])
        change, person = await run_in_threadpool(service.unlink, api.caller(request), patient, args["reason"])
        return resp.fhir_response(_change_parameters(change, f"Person/{person}", [patient]), fmt)

    async def refuse_write(request: Request, *_args: str) -> Response:
        raise MethodNotAllowed(KEPT_BY_INDEX)

    for method in ("POST", "PUT", "DELETE"):
        r(method, "/Person")(refuse_write)
    for method in ("PUT", "PATCH", "DELETE"):
        r(method, "/Person/{person_id}")(refuse_write)
    for path in ("/Person/_history", "/Person/{person_id}/_history"):
        r("GET", path)(refuse_history)
    r("GET", "/Person/{person_id}/_history/{version}")(refuse_history)
    return service


async def refuse_history(request: Request, *_args: str) -> Response:
    raise MethodNotAllowed("a Person has no versions of its own: its links' changes are kept in the index's "
                           "link history")


def _patient_id(value: Any) -> str:
    text = value.get("reference", "") if isinstance(value, dict) else str(value)
    text = text.rsplit("/Patient/", 1)[-1] if "/Patient/" in text else text.removeprefix("Patient/")
    return interactions.check_id(text)


def _person_id(value: Any) -> str:
    text = value.get("reference", "") if isinstance(value, dict) else str(value)
    if not text.startswith("Person/"):
        raise BadRequest("source and target are Person references (Person/{id})")
    return interactions.check_id(text.removeprefix("Person/"))


def _arguments(body: Any, wanted: dict[str, str]) -> dict[str, Any]:
    """The named parameters of a Parameters body, each exactly once and of its type."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the operation takes a Parameters resource")
    found: dict[str, Any] = {}
    for p in body.get("parameter") or []:
        name = p.get("name") if isinstance(p, dict) else None
        if name not in wanted:
            raise BadRequest(f"the operation has no parameter {str(name)[:60]!r}; it takes {', '.join(wanted)}")
        value = p.get(wanted[name])
        if value is None or name in found:
            raise BadRequest(f"give '{name}' once, as {wanted[name]}")
        found[name] = value
    missing = [n for n in wanted if n not in found]
    if missing:
        raise BadRequest(f"the operation needs {', '.join(missing)}")
    return found


def _review_part(row: ReviewRow) -> dict[str, Any]:
    part: list[dict[str, Any]] = [
        {"name": "id", "valueString": row.review_id},
        {"name": "status", "valueCode": row.status},
        {"name": "patient", "valueReference": {"reference": f"Patient/{row.res_id}"}},
        {"name": "other", "valueReference": {"reference": f"Patient/{row.other_id}"}},
        {"name": "score", "valueDecimal": round(row.score, 6)},
        {"name": "grade", "valueCode": row.grade},
        *[{"name": "heldBack", "valueCode": guard} for guard in row.held_back],
        {"name": "created", "valueInstant": row.created[:23] + "Z"},
    ]
    if row.decided:
        part += [{"name": "decided", "valueInstant": row.decided[:23] + "Z"},
                 {"name": "decidedBy", "valueString": row.decided_by or ""},
                 {"name": "reason", "valueString": row.reason or ""}]
    return {"name": "review", "part": part}


def _item_parameters(item: ReviewItem) -> dict[str, Any]:
    params: list[dict[str, Any]] = [_review_part(item.row)]
    if item.patients is not None:
        params += [{"name": "patientResource", "resource": item.patients[0]},
                   {"name": "otherResource", "resource": item.patients[1]}]
    params += [{"name": "comparison", "part": [{"name": "field", "valueString": name},
                                               {"name": "agreement", "valueString": label}]}
               for name, label in item.levels.items()]
    return {"resourceType": "Parameters", "parameter": params}


def _change_part(row: Any) -> dict[str, Any]:
    part: list[dict[str, Any]] = [
        {"name": "change", "valueString": row.change_id},
        {"name": "event", "valueCode": row.event},
        {"name": "patient", "valueReference": {"reference": f"Patient/{row.res_id}"}},
    ]
    if row.old_person:
        part.append({"name": "from", "valueReference": {"reference": f"Person/{row.old_person}"}})
    if row.new_person:
        part.append({"name": "to", "valueReference": {"reference": f"Person/{row.new_person}"}})
    part += [{"name": "how", "valueCode": row.new_how or row.old_how},
             {"name": "by", "valueString": row.agent_id},
             {"name": "at", "valueInstant": row.at[:23] + "Z"}]
    if row.reason:
        part.append({"name": "reason", "valueString": row.reason})
    return {"name": "linkChange", "part": part}


def _change_parameters(change: str, person: str | None, records: list[str]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "change", "valueString": change}]
    if person:
        params.append({"name": "person", "valueReference": {"reference": person}})
    params += [{"name": "patient", "valueReference": {"reference": f"Patient/{i}"}} for i in records]
    return {"resourceType": "Parameters", "parameter": params}


def _searchset(found: list[dict[str, Any]], base: str, self_link: str) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                              "link": [{"relation": "self", "url": self_link}]}
    if found:
        bundle["entry"] = [{"fullUrl": f"{base}/Person/{p['id']}", "resource": p, "search": {"mode": "match"}}
                           for p in found]
    return bundle
