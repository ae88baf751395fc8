"""A source organisation's system reading on behalf of its staff, and the launch context it opens a
record in (issue 5 items 2 and 4): an ambulance service's patient-record system opens a patient's
shared record for the paramedic at an incident."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sharedcare.access.context import Caller
from sharedcare.access.oauth import register_client
from sharedcare.app import Services, create_app
from sharedcare.settings import Settings
from sharedcare.storage import audit_store
from sharedcare.storage.oauth import OAuthStore
from tests.conftest import token_for
from tests.spec.access.world import build, staff

EPCR = Caller(kind="system", agent_id="client:epcr", organisation="AMB", client_id="epcr",
              scopes=("system/*.cruds", "user/*.rs"))
PARAMEDIC = {"X-On-Behalf-Of": "p.jones", "X-On-Behalf-Of-Role": "R8003"}
INCIDENT = {"X-Launch-Context": "incident 2026-11-28-0457"}


def client_for(store: Services, settings: Settings, caller: Caller) -> TestClient:
    return TestClient(create_app(settings, store), base_url="http://testserver",
                      headers={"Authorization": f"Bearer {token_for(store, settings, caller)}"})


def test_the_system_reads_as_its_paramedic_and_the_incident_opens_the_record(store: Services,
                                                                             settings: Settings) -> None:
    world = build(store.repo)
    a = world.ids["Patient:A"]
    with client_for(store, settings, EPCR) as epcr:
        assert epcr.get(f"/fhir/Patient/{a}", headers=PARAMEDIC).status_code == 404  # no relationship yet
        launched = {**PARAMEDIC, **INCIDENT, "X-Launch-Patient": a}
        assert epcr.get(f"/fhir/Patient/{a}", headers=launched).status_code == 200
        assert epcr.get(f"/fhir/Observation?patient={a}", headers=launched).json()["total"] == 1
        assert epcr.get(f"/fhir/Patient/{a}", headers=PARAMEDIC).status_code == 200  # it lasts
        # another paramedic of the same service has no such relationship
        other = {"X-On-Behalf-Of": "s.khan", "X-On-Behalf-Of-Role": "R8003"}
        assert epcr.get(f"/fhir/Patient/{a}", headers=other).status_code == 404
    rows = audit_store.search(store.engine, audit_store.AuditFilter(agent="client:epcr/user:p.jones"), 20)
    assert [r["interaction"] for r in rows].count("launch-context") == 1  # asserted once, then reused
    assert {(r["agent_role"], r["agent_org"], r["on_behalf_of"]) for r in rows} == {("R8003", "AMB", "p.jones")}


def test_a_system_acts_for_staff_only_when_it_is_a_source_with_user_scopes(store: Services,
                                                                          settings: Settings) -> None:
    world = build(store.repo)
    a = world.ids["Patient:A"]
    without_user_scopes = Caller(kind="system", agent_id="client:plain", organisation="AMB",
                                 scopes=("system/*.rs",))
    node_client = Caller(kind="system", agent_id="client:node", scopes=("system/*.rs", "user/*.rs"))
    for caller in (without_user_scopes, node_client):
        with client_for(store, settings, caller) as c:
            assert c.get(f"/fhir/Patient/{a}", headers=PARAMEDIC).status_code == 403
    with client_for(store, settings, staff("GP1")) as person:  # a person cannot become someone else
        assert person.get(f"/fhir/Patient/{a}", headers=PARAMEDIC).status_code == 403


def test_bad_or_half_given_context_is_refused(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    a = world.ids["Patient:A"]
    with client_for(store, settings, EPCR) as epcr:
        bad_role = {**PARAMEDIC, "X-On-Behalf-Of-Role": "R9999"}
        assert epcr.get(f"/fhir/Patient/{a}", headers=bad_role).status_code == 400
        assert epcr.get(f"/fhir/Patient/{a}", headers={"X-On-Behalf-Of-Role": "R8003"}).status_code == 400
        assert epcr.get(f"/fhir/Patient/{a}", headers={**PARAMEDIC, "X-Launch-Patient": a}).status_code == 400
        assert epcr.get("/fhir/Patient/x", headers={**PARAMEDIC, **INCIDENT, "X-Launch-Patient": "x"}).status_code \
            == 404
        call_handler = {"X-On-Behalf-Of": "c.handler", "X-On-Behalf-Of-Role": "R8008"}  # may not declare
        assert epcr.get(f"/fhir/Patient/{a}", headers={**call_handler, **INCIDENT,
                                                       "X-Launch-Patient": a}).status_code == 403


def test_the_privacy_officer_sees_launch_context_relationships(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    a = world.ids["Patient:A"]
    with client_for(store, settings, EPCR) as epcr:
        epcr.get(f"/fhir/Patient/{a}", headers={**PARAMEDIC, **INCIDENT, "X-Launch-Patient": a})
    with client_for(store, settings, staff("AMB", "R0001", "officer")) as officer:
        report = [e["resource"] for e in officer.get("/fhir/AuditEvent/$access-report").json()["entry"]]
    assert [e["subtype"][0]["code"] for e in report] == ["launch-context"]
    details = {d["type"]: d["valueString"] for d in report[0]["entity"][-1]["detail"]}
    assert details["reason"] == "launch context: incident 2026-11-28-0457"
    assert details["records-viewed"] == "1"


def test_a_source_organisations_system_may_be_registered_with_user_scopes(store: Services,
                                                                          settings: Settings) -> None:
    oauth = OAuthStore(store.engine)
    client, secret = register_client(oauth, "ePCR", scope="system/*.cruds user/*.rs", organisation="AMB")
    with TestClient(create_app(settings, store), base_url="http://testserver") as c:
        token = c.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs user/*.rs"},
                       auth=(client.client_id, secret or ""))
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "system/*.rs user/*.rs"


def test_a_refused_attempt_to_act_for_someone_is_audited_as_the_client(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    plain = Caller(kind="system", agent_id="client:plain", organisation="AMB", scopes=("system/*.rs",))
    with client_for(store, settings, plain) as c:
        assert c.get(f"/fhir/Patient/{world.ids['Patient:A']}", headers=PARAMEDIC).status_code == 403
    rows = audit_store.search(store.engine, audit_store.AuditFilter(agent="client:plain"), 5)
    assert [(r["status"], r["agent_org"]) for r in rows] == [(403, "AMB")]
