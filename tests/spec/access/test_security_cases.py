"""Security cases from ../shared/reference/security-cases.md that need more than one request (AN6,
AZ1, AZ2, AZ4, AZ9, AZ10, AZ11, AZ12, CO1, SC2), through the HTTP API with real tokens."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sharedcare.access.context import Caller
from sharedcare.access.tokens import digest
from sharedcare.app import Services, create_app
from sharedcare.settings import Settings
from sharedcare.storage.oauth import OAuthStore
from tests.conftest import token_for
from tests.spec.access.world import A_NHS, build, encounter, observation, patient, ref, source, staff

FHIR = {"Content-Type": "application/fhir+json"}


def as_(store: Services, settings: Settings, caller: Caller, token: str | None = None) -> TestClient:
    token = token or token_for(store, settings, caller)
    return TestClient(create_app(settings, store), base_url="http://testserver",
                      headers={"Authorization": f"Bearer {token}"})


def test_an6_a_revoked_token_is_refused_at_once(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    token = token_for(store, settings, staff("GP1"))
    with as_(store, settings, staff("GP1"), token) as gp:
        assert gp.get(f"/fhir/Patient/{world.ids['Patient:A']}").status_code == 200
        OAuthStore(store.engine).revoke_token(digest(token))
        refused = gp.get(f"/fhir/Patient/{world.ids['Patient:A']}")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_az1_a_hidden_record_answers_exactly_like_a_missing_one(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    with as_(store, settings, staff("TR2")) as stranger:
        for path in ("Patient/{}", "Patient/{}/_history", "Observation/{}/_history/1"):
            hidden = stranger.get("/fhir/" + path.format(world.ids["Patient:A" if "Patient" in path
                                                                    else "Observation:A-bp"]))
            missing = stranger.get("/fhir/" + path.format("no-such-id"))
            assert (hidden.status_code, hidden.content) == (missing.status_code, missing.content) == (
                404, missing.content)


def test_az2_a_patients_token_is_narrowed_to_them_and_refused_for_anyone_else(store: Services,
                                                                              settings: Settings) -> None:
    world = build(store.repo)
    b = world.ids["Patient:B"]
    with as_(store, settings, patient(A_NHS)) as ada:
        mine = ada.get("/fhir/Observation").json()
        assert {e["resource"]["subject"]["reference"] for e in mine["entry"]} == {f"Patient/{world.ids['Patient:A']}"}
        assert ada.get(f"/fhir/Observation?patient={b}").status_code == 403
        assert ada.post("/fhir/Observation/_search", data={"patient": b}).status_code == 403
        assert ada.get(f"/fhir/Observation?subject=Patient/{b}").status_code == 403


def test_az4_a_chain_or_has_through_data_the_caller_cannot_read_is_refused(store: Services,
                                                                          settings: Settings) -> None:
    build(store.repo)
    with as_(store, settings, staff("GP1", "R8009", "reception")) as reception:
        assert reception.get("/fhir/Patient?_has:Observation:patient:code=8480-6").status_code == 403
        assert reception.get("/fhir/Patient?_has:Observation:patient:value-quantity=gt100").status_code == 403
    with as_(store, settings, staff("GP1")) as gp:
        assert gp.get("/fhir/Observation?subject:Patient.no-such-param=x").status_code == 400
        assert gp.get("/fhir/Observation?subject.no-such-param=x").status_code == 400
        assert gp.get("/fhir/Patient?_has:Observation:patient:no-such-param=x").status_code == 400


def test_az9_server_controlled_fields_cannot_be_forged(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    forged = observation(world.ids["Patient:A"], "8867-4") | {"meta": {"source": "urn:ods:GP2"}}
    with as_(store, settings, source("GP1")) as feed:
        made = feed.post("/fhir/Observation", json=forged, headers=FHIR)
        assert made.status_code == 201
        assert made.json()["meta"]["source"] == "urn:ods:GP1"
    with as_(store, settings, source("GP2")) as other:  # GP2 cannot take it over by writing it
        taken = other.put(f"/fhir/Observation/{made.json()['id']}", json=made.json(), headers=FHIR)
        assert taken.status_code == 403


def test_az10_a_transaction_with_one_forbidden_entry_is_refused_whole(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    a, b = world.ids["Patient:A"], world.ids["Patient:B"]
    world.write(source("TR1"), encounter(a, "trust-one"))
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": plan | {"subject": ref("Patient", a)}, "request": {"method": "POST", "url": "CarePlan"}},
        {"resource": plan | {"subject": ref("Patient", b)}, "request": {"method": "POST", "url": "CarePlan"}}]}
    with as_(store, settings, staff("TR1")) as doctor:
        assert doctor.post("/fhir", json=bundle, headers=FHIR).status_code == 403
        match_b = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": plan | {"subject": ref("Patient", a)},
             "request": {"method": "POST", "url": "CarePlan", "ifNoneExist": f"patient={b}"}}]}
        # A match URL about B matches nothing the doctor may see (and says nothing about B): a plan is made.
        assert doctor.post("/fhir", json=match_b, headers=FHIR).status_code == 200
    with as_(store, settings, source("TR1")) as feed:  # nothing of the refused transaction was stored
        plans = feed.get("/fhir/CarePlan?_total=accurate").json()
        assert [e["resource"]["subject"]["reference"] for e in plans["entry"]] == [f"Patient/{a}"]


def test_az11_a_page_link_works_only_for_the_caller_it_was_made_for(store: Services, settings: Settings) -> None:
    world = build(store.repo)
    a = world.ids["Patient:A"]
    for i in range(5):
        world.write(source("GP1"), observation(a, "8480-6") | {"valueQuantity": {"value": 100 + i}})
    with as_(store, settings, staff("GP1")) as gp:
        first = gp.get(f"/fhir/Observation?patient={a}&_count=2").json()
        next_link = next(link["url"] for link in first["link"] if link["relation"] == "next")
    with as_(store, settings, staff("TR2", who="someone-else")) as other:
        answer = other.get(next_link.removeprefix("http://testserver"))
    assert answer.status_code in (400, 403, 404)
    assert a not in answer.text


def test_az12_a_granular_scope_grants_only_what_its_parameters_match(store: Services, settings: Settings) -> None:
    """`patient/Observation.rs?category=laboratory`: laboratory results only, nothing else, no other type."""
    world = build(store.repo)
    a = world.ids["Patient:A"]
    lab = world.write(source("GP1"), observation(a, "2339-0") | {"category": [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]})
    granular = Caller(kind="patient", agent_id="patient:ada", nhs_number=A_NHS,
                      scopes=("patient/Observation.rs?category=laboratory",))
    with as_(store, settings, granular) as app:
        assert app.get(f"/fhir/Observation/{lab}").status_code == 200
        assert app.get(f"/fhir/Observation/{world.ids['Observation:A-bp']}").status_code == 404  # vital signs
        found = app.get("/fhir/Observation?_total=accurate").json()
        assert [e["resource"]["id"] for e in found["entry"]] == [lab]
        assert found["total"] == 1
        assert app.get(f"/fhir/Patient/{a}").status_code == 404  # not a type the scope names
        assert app.get("/fhir/Condition").status_code == 403
    unknown = Caller(kind="patient", agent_id="patient:ada", nhs_number=A_NHS,
                     scopes=("patient/Observation.rs?colour=blue",))
    with as_(store, settings, unknown) as app:  # a restriction that cannot be compiled grants nothing
        assert app.get(f"/fhir/Observation/{lab}").status_code == 404


def test_co1_sc2_an_objection_and_a_confidential_label_keep_records_home(store: Services,
                                                                        settings: Settings) -> None:
    world = build(store.repo)
    a = world.ids["Patient:A"]
    world.write(source("TR1"), encounter(a, "trust-one"))
    with as_(store, settings, staff("TR1")) as doctor:
        seen = {e["resource"]["id"] for e in doctor.get(f"/fhir/Patient/{a}/$everything").json()["entry"]}
        assert world.ids["Observation:A-bp"] in seen
        assert world.ids["Observation:A-confidential"] not in seen  # SC2
    world.write(source("GP1"), {
        "resourceType": "Consent", "status": "active", "patient": ref("Patient", a),
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}], "provision": {"type": "deny"}})
    with as_(store, settings, staff("TR1")) as doctor:
        everything = doctor.get(f"/fhir/Patient/{a}/$everything")
        assert everything.status_code == 404  # A's GP Patient record is GP1's: not shared any more
        own = doctor.get(f"/fhir/Condition?patient={a}").json()
        assert [e["resource"]["id"] for e in own["entry"]] == [world.ids["Condition:A-tr1"]]  # CO1: its own only
