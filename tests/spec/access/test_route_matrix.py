"""Every route × every kind of caller × own patient, another patient (issue 5; security cases AN1,
AZ1, AZ2, AZ5, AZ8, AZ10; goal: 0 BOLA findings).

`MATRIX` holds one row per route the app serves: how to call it about a patient, and what each caller
must get for their own patient (A) and for a patient they may not see (B). A route added without a row
fails `test_every_route_has_a_policy_row`. Whatever the status, a response about B never carries B's
ids to a caller who may not see B.

Callers: `gp` is a clinician at A's registered practice (GP1) with no relationship with B (registered at
GP2); `reception` is a receptionist there (demographics only); `patient` is A signed in to the portal;
`feed` is GP1's own system (a source organisation's client: its own records and the directory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from sharedcare.app import Services, create_app
from sharedcare.fhir.routes import FhirApi
from sharedcare.settings import Settings
from sharedcare.storage import audit_store, mpi_store
from tests.conftest import token_for
from tests.spec.access.world import A_NHS, B_NHS, World, build, observation, patient, ref, source, staff

FHIR = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
CALLERS = {"gp": staff("GP1"), "patient": patient(A_NHS), "reception": staff("GP1", "R8009", "reception"),
           "feed": source("GP1")}


@dataclass
class Ctx:
    client: TestClient
    world: World
    target: str  # "A" or "B"

    def id(self, name: str) -> str:
        return self.world.ids[f"{name.split(':')[0]}:{name.split(':')[1].replace('X', self.target)}"]

    @property
    def patient(self) -> str:
        return self.world.ids[f"Patient:{self.target}"]


Call = Callable[[Ctx], Response]


@dataclass(frozen=True)
class Row:
    call: Call
    # status codes allowed per caller: (about their own patient A, about patient B)
    expect: dict[str, tuple[set[int], set[int]]]
    names_target: bool = False  # the caller names B in the request, so B's id may be echoed back


OK, NONE, EMPTY = {200}, {404}, {200}
DENIED = {403}
READ = {"gp": (OK, NONE), "patient": (OK, NONE)}
SEARCH = {"gp": (OK, EMPTY), "patient": (OK, DENIED)}  # a patient naming someone else is refused
NO_WRITE = {"gp": (DENIED, DENIED), "patient": (DENIED, DENIED)}


def care_plan(ctx: Ctx) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "identifier": [{"system": "https://example.org/plans", "value": f"plan-{ctx.target}"}],
            "subject": ref("Patient", ctx.patient)}


def params(reason: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]}


def match(c: Ctx) -> Response:
    """Patient/$match with the target's demographics (never their id)."""
    given, family, nhs = ("Ada", "Able", A_NHS) if c.target == "A" else ("Ben", "Baker", B_NHS)
    wanted = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
              "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}]}
    return c.client.post("/fhir/Patient/$match", headers=FHIR,
                         json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": wanted}]})


def batch_read(c: Ctx) -> Response:
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": f"Patient/{c.patient}"}}]}
    return c.client.post("/fhir", json=bundle, headers=FHIR)


def bulk_import(c: Ctx) -> Response:
    """$import of an Observation about the target (only a registered source's own client may import:
    tests/spec/ingest/test_import.py)."""
    line = ('{"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}, '
            f'"subject": {{"reference": "Patient/{c.patient}"}}}}\n')
    return c.client.post("/fhir/$import", content=line, headers={"Content-Type": "application/fhir+ndjson"})


NO_IMPORT = {"gp": (DENIED, DENIED), "patient": (DENIED, DENIED)}
NO_JOB = {"gp": (NONE, NONE), "patient": (NONE, NONE)}

MATRIX: dict[tuple[str, str], Row] = {
    ("POST", "/$import"): Row(bulk_import, NO_IMPORT, names_target=True),
    ("GET", "/$import-poll-status/{job_id}"): Row(
        lambda c: c.client.get("/fhir/$import-poll-status/" + "a" * 40), NO_JOB),
    ("GET", "/$import-poll-status/{job_id}/errors"): Row(
        lambda c: c.client.get("/fhir/$import-poll-status/" + "a" * 40 + "/errors"), NO_JOB),
    ("POST", "/"): Row(batch_read, {"gp": (OK, OK), "patient": (OK, OK)}),  # entry status checked below
    ("GET", "/metadata"): Row(lambda c: c.client.get("/fhir/metadata"), {"gp": (OK, OK), "patient": (OK, OK)}),
    ("GET", "/_history"): Row(lambda c: c.client.get("/fhir/_history?_count=100"),
                              {"gp": (OK, OK), "patient": (OK, OK)}),
    ("GET", "/AuditEvent"): Row(lambda c: c.client.get(f"/fhir/AuditEvent?patient={c.patient}"),
                                {"gp": (DENIED, DENIED), "patient": (OK, DENIED)}, names_target=True),
    ("POST", "/AuditEvent"): Row(lambda c: c.client.post("/fhir/AuditEvent", json={}, headers=FHIR),
                                 {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("PUT", "/AuditEvent"): Row(lambda c: c.client.put("/fhir/AuditEvent?outcome=0", json={}, headers=FHIR),
                                {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("DELETE", "/AuditEvent"): Row(lambda c: c.client.delete("/fhir/AuditEvent?outcome=0"),
                                   {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("GET", "/{res_type}"): Row(lambda c: c.client.get(f"/fhir/Observation?patient={c.patient}"), SEARCH,
                                names_target=True),
    ("POST", "/{res_type}"): Row(lambda c: c.client.post("/fhir/CarePlan", json=care_plan(c), headers=FHIR),
                                 {"gp": ({201}, DENIED), "patient": (DENIED, DENIED)}, names_target=True),
    ("PUT", "/{res_type}"): Row(
        lambda c: c.client.put(f"/fhir/CarePlan?identifier=https://example.org/plans|plan-{c.target}",
                               json=care_plan(c), headers=FHIR),
        {"gp": ({201}, DENIED), "patient": (DENIED, DENIED)}, names_target=True),
    ("DELETE", "/{res_type}"): Row(lambda c: c.client.delete(f"/fhir/Observation?patient={c.patient}"),
                                   NO_WRITE, names_target=True),
    ("POST", "/{res_type}/_search"): Row(
        lambda c: c.client.post("/fhir/Observation/_search", data={"patient": c.patient}), SEARCH,
        names_target=True),
    ("POST", "/{res_type}/$validate"): Row(
        lambda c: c.client.post("/fhir/Observation/$validate", json=observation(c.patient, "8480-6"),
                                headers=FHIR), {"gp": (OK, OK), "patient": (OK, OK)}, names_target=True),
    ("GET", "/{res_type}/_history"): Row(lambda c: c.client.get("/fhir/Observation/_history?_count=100"),
                                         {"gp": (OK, OK), "patient": (OK, OK)}),
    ("GET", "/AuditEvent/$access-report"): Row(lambda c: c.client.get("/fhir/AuditEvent/$access-report"),
                                               {"gp": (DENIED, DENIED), "patient": (DENIED, DENIED)}),
    ("GET", "/AuditEvent/$alerts"): Row(lambda c: c.client.get("/fhir/AuditEvent/$alerts"),
                                        {"gp": (DENIED, DENIED), "patient": (DENIED, DENIED)}),
    ("GET", "/AuditEvent/{event_id}"): Row(lambda c: c.client.get(f"/fhir/AuditEvent/{c.id('AuditEvent:X')}"),
                                           {"gp": (NONE, NONE), "patient": (OK, NONE)}),
    ("PUT", "/AuditEvent/{event_id}"): Row(lambda c: c.client.put("/fhir/AuditEvent/1", json={}, headers=FHIR),
                                           {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("PATCH", "/AuditEvent/{event_id}"): Row(
        lambda c: c.client.patch("/fhir/AuditEvent/1", json=[], headers=JSON_PATCH),
        {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("DELETE", "/AuditEvent/{event_id}"): Row(lambda c: c.client.delete("/fhir/AuditEvent/1"),
                                              {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("GET", "/{res_type}/{res_id}"): Row(lambda c: c.client.get(f"/fhir/Observation/{c.id('Observation:X-bp')}"),
                                         READ),
    ("PUT", "/{res_type}/{res_id}"): Row(
        lambda c: c.client.put(f"/fhir/Observation/{c.id('Observation:X-bp')}",
                               json=observation(c.patient, "8867-4") | {"id": c.id("Observation:X-bp")}, headers=FHIR),
        NO_WRITE),
    ("PATCH", "/{res_type}/{res_id}"): Row(
        lambda c: c.client.patch(f"/fhir/Observation/{c.id('Observation:X-bp')}",
                                 json=[{"op": "replace", "path": "/status", "value": "amended"}],
                                 headers=JSON_PATCH), NO_WRITE),
    ("DELETE", "/{res_type}/{res_id}"): Row(lambda c: c.client.delete(f"/fhir/Observation/{c.id('Observation:X-bp')}"),
                                            NO_WRITE),
    ("GET", "/Patient/{res_id}/$everything"): Row(lambda c: c.client.get(f"/fhir/Patient/{c.patient}/$everything"),
                                                  READ),
    ("POST", "/Patient/$match"): Row(match, {"gp": (OK, EMPTY), "patient": (OK, EMPTY)}),
    ("POST", "/Patient/{res_id}/$declare-relationship"): Row(
        lambda c: c.client.post(f"/fhir/Patient/{c.patient}/$declare-relationship",
                                json=params("Seen in clinic today on referral"), headers=FHIR),
        {"gp": ({201}, {201}), "patient": (DENIED, DENIED)}, names_target=True),
    ("POST", "/Patient/{res_id}/$break-glass"): Row(
        lambda c: c.client.post(f"/fhir/Patient/{c.patient}/$break-glass",
                                json=params("Collapsed in the waiting room"), headers=FHIR),
        {"gp": ({201}, {201}), "patient": (DENIED, DENIED)}, names_target=True),
    ("POST", "/{res_type}/{res_id}/$validate"): Row(
        lambda c: c.client.post(f"/fhir/Observation/{c.id('Observation:X-bp')}/$validate",
                                json=observation(c.patient, "8480-6"), headers=FHIR),
        {"gp": (OK, OK), "patient": (OK, OK)}, names_target=True),
    ("GET", "/{res_type}/{res_id}/_history"): Row(
        lambda c: c.client.get(f"/fhir/Observation/{c.id('Observation:X-bp')}/_history"), READ),
    ("GET", "/{comp_type}/{comp_id}/{res_type}"): Row(
        lambda c: c.client.get(f"/fhir/Patient/{c.patient}/Observation"), SEARCH, names_target=True),
    ("GET", "/{res_type}/{res_id}/_history/{version}"): Row(
        lambda c: c.client.get(f"/fhir/Observation/{c.id('Observation:X-bp')}/_history/1"), READ),
    # The patient index's Person (read-only: only the links the caller may see) and its operations.
    ("GET", "/Person/{person_id}"): Row(lambda c: c.client.get(f"/fhir/Person/{c.id('Person:X')}"), READ),
    ("GET", "/Person"): Row(lambda c: c.client.get(f"/fhir/Person?link=Patient/{c.patient}"),
                            {"gp": (OK, EMPTY), "patient": (OK, EMPTY)}, names_target=True),
    ("GET", "/Person/$review-queue"): Row(lambda c: c.client.get("/fhir/Person/$review-queue"), NO_WRITE),
    ("GET", "/Person/$link-history"): Row(lambda c: c.client.get(f"/fhir/Person/$link-history?patient={c.patient}"),
                                          NO_WRITE, names_target=True),
    ("POST", "/Person/$review-decide"): Row(lambda c: c.client.post("/fhir/Person/$review-decide", headers=FHIR, json={
        "resourceType": "Parameters", "parameter": [{"name": "review", "valueString": "r"},
                                                    {"name": "decision", "valueCode": "link"},
                                                    {"name": "reason", "valueString": "same"}]}), NO_WRITE),
    ("POST", "/Person/$merge"): Row(lambda c: c.client.post("/fhir/Person/$merge", headers=FHIR, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "source", "valueReference": {"reference": f"Person/{c.id('Person:X')}"}},
            {"name": "target", "valueReference": {"reference": f"Person/{c.id('Person:A')}"}},
            {"name": "reason", "valueString": "same"}]}), NO_WRITE),
    ("POST", "/Person/$unmerge"): Row(lambda c: c.client.post("/fhir/Person/$unmerge", headers=FHIR, json={
        "resourceType": "Parameters", "parameter": [{"name": "change", "valueString": "c"},
                                                    {"name": "reason", "valueString": "undo"}]}), NO_WRITE),
    ("POST", "/Person/$unlink"): Row(lambda c: c.client.post("/fhir/Person/$unlink", headers=FHIR, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{c.patient}"}},
            {"name": "reason", "valueString": "wrong"}]}), NO_WRITE, names_target=True),
    ("POST", "/Person"): Row(lambda c: c.client.post("/fhir/Person", json={"resourceType": "Person"}, headers=FHIR),
                             {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("PUT", "/Person"): Row(lambda c: c.client.put("/fhir/Person?link=x", json={"resourceType": "Person"},
                                                   headers=FHIR), {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("DELETE", "/Person"): Row(lambda c: c.client.delete("/fhir/Person?link=x"),
                               {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("PUT", "/Person/{person_id}"): Row(lambda c: c.client.put(f"/fhir/Person/{c.id('Person:X')}", headers=FHIR,
                                                               json={"resourceType": "Person"}),
                                        {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("PATCH", "/Person/{person_id}"): Row(lambda c: c.client.patch(f"/fhir/Person/{c.id('Person:X')}", json=[],
                                                                   headers=JSON_PATCH),
                                          {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("DELETE", "/Person/{person_id}"): Row(lambda c: c.client.delete(f"/fhir/Person/{c.id('Person:X')}"),
                                           {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("GET", "/Person/_history"): Row(lambda c: c.client.get("/fhir/Person/_history"),
                                     {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("GET", "/Person/{person_id}/_history"): Row(lambda c: c.client.get(f"/fhir/Person/{c.id('Person:X')}/_history"),
                                                 {"gp": ({405}, {405}), "patient": ({405}, {405})}),
    ("GET", "/Person/{person_id}/_history/{version}"): Row(
        lambda c: c.client.get(f"/fhir/Person/{c.id('Person:X')}/_history/1"),
        {"gp": ({405}, {405}), "patient": ({405}, {405})}),
}
H405 = {405}
# What the receptionist (demographics only) and GP1's own feed get, route by route.
MORE: dict[tuple[str, str], dict[str, tuple[set[int], set[int]]]] = {
    ("POST", "/"): {"reception": (OK, OK), "feed": (OK, OK)},
    ("GET", "/metadata"): {"reception": (OK, OK), "feed": (OK, OK)},
    ("GET", "/_history"): {"reception": (OK, OK), "feed": (OK, OK)},
    ("GET", "/AuditEvent"): {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)},
    ("POST", "/AuditEvent"): {"reception": (H405, H405), "feed": (H405, H405)},
    ("PUT", "/AuditEvent"): {"reception": (H405, H405), "feed": (H405, H405)},
    ("DELETE", "/AuditEvent"): {"reception": (H405, H405), "feed": (H405, H405)},
    ("GET", "/{res_type}"): {"reception": (DENIED, DENIED), "feed": (OK, EMPTY)},
    ("POST", "/{res_type}"): {"reception": (DENIED, DENIED), "feed": ({201}, {201})},  # its own plan about B
    ("PUT", "/{res_type}"): {"reception": (DENIED, DENIED), "feed": ({201}, {201})},
    # A has two GP1 observations (412: more than one match); B's are not GP1's to see (nothing deleted).
    ("DELETE", "/{res_type}"): {"reception": (DENIED, DENIED), "feed": ({412}, {204})},
    ("POST", "/{res_type}/_search"): {"reception": (DENIED, DENIED), "feed": (OK, EMPTY)},
    ("POST", "/{res_type}/$validate"): {"reception": (OK, OK), "feed": (OK, OK)},
    ("GET", "/{res_type}/_history"): {"reception": (OK, OK), "feed": (OK, OK)},
    ("GET", "/AuditEvent/$access-report"): {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)},
    ("GET", "/AuditEvent/$alerts"): {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)},
    ("GET", "/AuditEvent/{event_id}"): {"reception": (NONE, NONE), "feed": (NONE, NONE)},
    ("PUT", "/AuditEvent/{event_id}"): {"reception": (H405, H405), "feed": (H405, H405)},
    ("PATCH", "/AuditEvent/{event_id}"): {"reception": (H405, H405), "feed": (H405, H405)},
    ("DELETE", "/AuditEvent/{event_id}"): {"reception": (H405, H405), "feed": (H405, H405)},
    ("GET", "/{res_type}/{res_id}"): {"reception": (NONE, NONE), "feed": READ["gp"]},
    ("PUT", "/{res_type}/{res_id}"): {"reception": (DENIED, DENIED), "feed": (OK, DENIED)},
    ("PATCH", "/{res_type}/{res_id}"): {"reception": (DENIED, DENIED), "feed": (OK, NONE)},
    ("DELETE", "/{res_type}/{res_id}"): {"reception": (DENIED, DENIED), "feed": ({204}, {204})},  # B's: nothing
    ("GET", "/Patient/{res_id}/$everything"): {"reception": READ["gp"], "feed": READ["gp"]},
    ("POST", "/Patient/$match"): {"reception": (OK, EMPTY), "feed": (OK, EMPTY)},
    ("POST", "/Patient/{res_id}/$declare-relationship"): {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)},
    ("POST", "/Patient/{res_id}/$break-glass"): {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)},
    ("POST", "/{res_type}/{res_id}/$validate"): {"reception": (OK, OK), "feed": (OK, OK)},
    ("GET", "/{res_type}/{res_id}/_history"): {"reception": (NONE, NONE), "feed": READ["gp"]},
    ("GET", "/{comp_type}/{comp_id}/{res_type}"): {"reception": (DENIED, DENIED), "feed": (OK, EMPTY)},
    ("GET", "/{res_type}/{res_id}/_history/{version}"): {"reception": (NONE, NONE), "feed": READ["gp"]},
    ("POST", "/$import"): {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)},  # not a source's client
    ("GET", "/$import-poll-status/{job_id}"): {"reception": (NONE, NONE), "feed": (NONE, NONE)},
    ("GET", "/$import-poll-status/{job_id}/errors"): {"reception": (NONE, NONE), "feed": (NONE, NONE)},
    ("GET", "/Person/{person_id}"): {"reception": READ["gp"], "feed": READ["gp"]},
    ("GET", "/Person"): {"reception": (OK, EMPTY), "feed": (OK, EMPTY)},
    **{route: {"reception": (DENIED, DENIED), "feed": (DENIED, DENIED)} for route in (
        ("GET", "/Person/$review-queue"), ("GET", "/Person/$link-history"), ("POST", "/Person/$review-decide"),
        ("POST", "/Person/$merge"),
        ("POST", "/Person/$unmerge"), ("POST", "/Person/$unlink"))},
    **{route: {"reception": (H405, H405), "feed": (H405, H405)} for route in (
        ("POST", "/Person"), ("PUT", "/Person"), ("DELETE", "/Person"), ("PUT", "/Person/{person_id}"),
        ("PATCH", "/Person/{person_id}"), ("DELETE", "/Person/{person_id}"), ("GET", "/Person/_history"),
        ("GET", "/Person/{person_id}/_history"), ("GET", "/Person/{person_id}/_history/{version}"))},
}
for _route, _more in MORE.items():  # a new dict per row: rows share READ, SEARCH, NO_WRITE
    MATRIX[_route] = dataclasses.replace(MATRIX[_route], expect={**MATRIX[_route].expect, **_more})

# Routes outside the FHIR API, and why they need no row.
NOT_FHIR = {
    "/fhir/.well-known/smart-configuration": "public discovery (AN1)",
    "/openapi.json": "the schema of the non-FHIR routes", "/": "the home page", "/health/live": "no data",
    "/health/ready": "no data", "/fhir": "the FHIR API (MATRIX)", "/fhir/{path:path}": "the FHIR API (MATRIX)",
    "/auth/token": "test_smart.py", "/auth/revoke": "test_smart.py", "/auth/authorize": "test_signin.py",
    "/auth/login": "test_signin.py", "/auth/role": "test_signin.py", "/auth/session": "test_signin.py",
    "/auth/logout": "test_signin.py", "/auth/oidc/{provider}/start": "test_oidc.py",
    "/auth/oidc/{provider}/callback": "test_oidc.py",
    "/mpi/review": "test_review_page.py", "/mpi/review/{review_id}": "test_review_page.py",
    "/admin/feeds": "test_feeds_pages.py", "/admin/feeds/{source_id}/status": "test_feeds_pages.py",
    "/admin/inbox": "test_feeds_pages.py", "/admin/inbox/replay": "test_feeds_pages.py",
    "/admin/inbox/{seq}": "test_feeds_pages.py",
}


def registered(api: FhirApi) -> set[tuple[str, str]]:
    return {(method, "/" + "/".join(segments)) for candidates in api._table.values()
            for segments, _, method, _ in candidates}


def test_every_route_has_a_policy_row(store: Services, settings: Settings) -> None:
    """Adding a route or an interaction without deciding (and testing) who may use it fails here."""
    assert registered(FhirApi(store.repo, settings)) == set(MATRIX)
    assert all(set(row.expect) == set(CALLERS) for row in MATRIX.values())  # every caller, every route
    app = create_app(settings, store)
    assert {getattr(r, "path", "") for r in app.router.routes} == set(NOT_FHIR)


@pytest.fixture
def world(store: Services) -> World:
    w = build(store.repo)
    # A's and B's audit events (something looked at each), for the AuditEvent rows.
    for name in ("A", "B"):
        w.repo.read(staff("GP1" if name == "A" else "GP2"), "Patient", w.ids[f"Patient:{name}"])
    for name in ("A", "B"):
        events = audit_store.search(store.engine, audit_store.AuditFilter(
            patients=frozenset({w.ids[f"Patient:{name}"]}), interactions=("read",)), 1)
        w.ids[f"AuditEvent:{name}"] = str(events[0]["seq"])
    with store.engine.connect() as conn:  # the patient index's person of each
        for name in ("A", "B"):
            w.ids[f"Person:{name}"] = str(mpi_store.person_of(conn, w.ids[f"Patient:{name}"]))
    return w


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_caller_gets_what_the_matrix_says_and_never_anyone_elses_data(
        store: Services, settings: Settings, world: World, route: tuple[str, str], caller: str) -> None:
    row = MATRIX[route]
    token = token_for(store, settings, CALLERS[caller])
    with TestClient(create_app(settings, store), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as client:
        own_ok, other_ok = row.expect[caller]
        own = row.call(Ctx(client, world, "A"))
        assert own.status_code in own_ok, (route, caller, "own", own.status_code, own.text[:300])
        other = row.call(Ctx(client, world, "B"))
        assert other.status_code in other_ok, (route, caller, "other", other.text[:300])
        secrets = {world.ids["Observation:B-bp"]} | (set() if row.names_target else {world.ids["Patient:B"]})
        assert not any(s in other.text for s in secrets), (route, caller, "leak")
        if route == ("POST", "/"):
            assert other.json()["entry"][0]["response"]["status"].startswith("404")
    # Nothing about B was changed by anyone here.
    assert store.repo.read(source("GP2"), "Observation", world.ids["Observation:B-bp"]).version_id == 1


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_without_a_token_every_route_but_metadata_is_401_and_audited(
        anonymous_client: TestClient, store: Services, world: World, route: tuple[str, str]) -> None:
    response = MATRIX[route].call(Ctx(anonymous_client, world, "A"))
    if route == ("GET", "/metadata"):
        assert response.status_code == 200
        return
    assert response.status_code == 401, response.text[:300]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert world.ids["Patient:A"] not in response.text or MATRIX[route].names_target
    denied = audit_store.search(store.engine, audit_store.AuditFilter(agent="anonymous"), 5)
    assert [r["status"] for r in denied] == [401]


def test_the_discovery_document_is_public(anonymous_client: TestClient) -> None:
    assert anonymous_client.get("/fhir/.well-known/smart-configuration").status_code == 200
