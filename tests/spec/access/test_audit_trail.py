"""The audit trail as AuditEvent (issue 5 items 8-10; security cases AU1, AU3, AU4, BG1-BG3).

Every interaction leaves one audit record, allowed or denied; privacy officers search their
organisation's staff's records; a patient sees which organisations and roles looked at their record
and when, nothing more; break-glass is a security alert with purpose of use ETREAT.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sharedcare.access.context import Caller
from sharedcare.app import Services, create_app
from sharedcare.fhir.validation import validate
from sharedcare.settings import Settings
from sharedcare.storage import audit_store
from tests.conftest import token_for
from tests.spec.access.world import A_NHS, B_NHS, World, build, encounter, patient, source, staff

FHIR = {"Content-Type": "application/fhir+json"}
OFFICER_GP1 = staff("GP1", "R0001", "privacy-officer")


@pytest.fixture
def world(store: Services) -> World:
    return build(store.repo)


def as_(store: Services, settings: Settings, caller: Caller) -> TestClient:
    token = token_for(store, settings, caller)
    return TestClient(create_app(settings, store), base_url="http://testserver",
                      headers={"Authorization": f"Bearer {token}"})


def events(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    r = client.get(f"/fhir/AuditEvent?{query}")
    assert r.status_code == 200, r.text[:300]
    return [e["resource"] for e in r.json().get("entry", [])]


def test_each_look_is_an_audit_event_in_the_balp_shapes(store: Services, settings: Settings, world: World) -> None:
    """AU1: a read, a refused read, a search and a write each leave one event that is valid R4, with
    the user, their SDS role, their organisation, the purpose of use, the patient and the outcome."""
    a = world.ids["Patient:A"]
    with as_(store, settings, staff("GP1", who="dr.ada")) as gp:
        assert gp.get(f"/fhir/Patient/{a}").status_code == 200
        assert gp.get(f"/fhir/Observation/{world.ids['Observation:B-bp']}").status_code == 404
        assert gp.get(f"/fhir/Observation?patient={a}").status_code == 200
    with as_(store, settings, OFFICER_GP1) as officer:
        found = events(officer, "agent=user:dr.ada@gp1")
    assert [e["subtype"][0]["code"] for e in found] == ["search-type", "read", "read"]  # newest first
    for event in found:
        assert validate(event) == [], event
        user = event["agent"][0]
        assert user["who"]["identifier"]["value"] == "user:dr.ada@gp1"
        assert user["role"][0]["coding"][0]["code"] == "R8000"
        assert user["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
        assert event["agent"][1]["who"]["identifier"]["value"] == "GP1"
        assert event["type"]["code"] == "rest"
    search, refused, read = found
    assert read["outcome"] == "0"
    assert {"reference": f"Patient/{a}"} in [e["what"] for e in read["entity"]]
    assert refused["outcome"] == "4"  # the refused read is there too
    assert any(e["role"]["code"] == "24" and e.get("query") for e in search["entity"])


def test_a_privacy_officer_sees_only_their_own_organisations_staff(store: Services, settings: Settings,
                                                                   world: World) -> None:
    a = world.ids["Patient:A"]
    with as_(store, settings, staff("GP1", who="gp-one")) as gp:
        gp.get(f"/fhir/Patient/{a}")
    with as_(store, settings, staff("GP2", who="gp-two")) as other:
        other.get(f"/fhir/Patient/{world.ids['Patient:B']}")
    with as_(store, settings, OFFICER_GP1) as officer:
        agents = {e["agent"][0]["who"]["identifier"]["value"] for e in events(officer, "_count=100")}
        assert agents == {"user:gp-one@gp1", "client:gp1"}  # GP1's staff and GP1's own feed
        assert officer.get("/fhir/AuditEvent?agent-organization=GP2").status_code == 403
        assert officer.get("/fhir/AuditEvent?unknown-param=1").status_code == 400
        assert officer.get(f"/fhir/Patient/{a}").status_code == 404  # no records through this role


def test_staff_and_clients_without_the_privacy_role_may_not_search_the_audit(store: Services, settings: Settings,
                                                                              world: World) -> None:
    with as_(store, settings, staff("GP1")) as gp:
        assert gp.get("/fhir/AuditEvent").status_code == 403
        assert gp.get("/fhir/AuditEvent/1").status_code == 404
    with as_(store, settings, source("GP1")) as feed:
        assert feed.get("/fhir/AuditEvent").status_code == 403


def test_a_patient_sees_who_looked_at_their_record_and_nothing_else(store: Services, settings: Settings,
                                                                    world: World) -> None:
    """AU4: organisation, role and time; no staff identity, address or query; nobody else's record."""
    a, b = world.ids["Patient:A"], world.ids["Patient:B"]
    world.write(source("TR1"), encounter(a, "trust-one"))
    for caller in (staff("GP1", who="dr.one"), staff("TR1", who="dr.two"), staff("TR1", "R8001", "nurse.three")):
        with as_(store, settings, caller) as c:
            assert c.get(f"/fhir/Patient/{a}").status_code == 200
    with as_(store, settings, staff("GP2", who="dr.four")) as c:
        c.get(f"/fhir/Patient/{b}")
    with as_(store, settings, patient(A_NHS)) as ada:
        seen = events(ada, "_count=100")
        assert ada.get(f"/fhir/AuditEvent?patient={b}").status_code == 403
    looks = [(e["agent"][1]["who"]["identifier"]["value"], e["agent"][0]["role"][0]["coding"][0]["code"])
             for e in seen if len(e["agent"]) > 1 and e["subtype"][0]["code"] == "read"]
    assert sorted(looks) == [("GP1", "R8000"), ("TR1", "R8000"), ("TR1", "R8001")]
    text = str(seen)
    for hidden in ("dr.one", "dr.two", "nurse.three", "dr.four", b, "testclient", "query"):
        assert hidden not in text
    for event in seen:
        assert validate(event) == [], event


def test_break_glass_through_the_api_is_a_security_alert_for_one_patient(store: Services, settings: Settings,
                                                                         world: World) -> None:
    """BG1-BG3: a reason is required; the grant is for that patient only; it is audited as an
    emergency override with purpose ETREAT."""
    a, b = world.ids["Patient:A"], world.ids["Patient:B"]
    doctor = staff("TR2", "R8000", "ed.doctor")
    reason = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "   "}]}
    with as_(store, settings, doctor) as c:
        assert c.get(f"/fhir/Patient/{a}").status_code == 404
        assert c.post(f"/fhir/Patient/{a}/$break-glass", json=reason, headers=FHIR).status_code == 400
        assert c.get(f"/fhir/Patient/{a}").status_code == 404  # no grant, no data
        assert c.post("/fhir/Patient/no-such-patient/$break-glass", json=reason, headers=FHIR).status_code == 404
        reason["parameter"][0]["valueString"] = "Unconscious, brought in by ambulance"
        granted = c.post(f"/fhir/Patient/{a}/$break-glass", json=reason, headers=FHIR)
        assert granted.status_code == 201, granted.text
        assert c.get(f"/fhir/Patient/{a}").status_code == 200
        assert c.get(f"/fhir/Patient/{b}").status_code == 404
    rows = audit_store.search(store.engine, audit_store.AuditFilter(agent=doctor.agent_id,
                                                                     interactions=("break-glass",)), 10)
    assert [(r["status"], r["purpose"]) for r in rows] == [(201, "ETREAT"), (404, "TREAT"), (400, "TREAT")]
    with as_(store, settings, staff("TR2", "R0001", "officer")) as officer:
        alert = events(officer, "subtype=break-glass")[0]
    assert alert["type"]["code"] == "110113"
    assert alert["subtype"][0]["code"] == "110127"
    assert alert["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert validate(alert) == []


def test_the_audit_trail_cannot_be_changed_through_the_api(store: Services, settings: Settings, world: World) -> None:
    """AU3: 405 for every write of an AuditEvent, and the hash chains still verify afterwards."""
    with as_(store, settings, staff("GP1")) as gp:
        gp.get(f"/fhir/Patient/{world.ids['Patient:A']}")
        for method in ("put", "delete"):
            assert getattr(gp, method)("/fhir/AuditEvent/1").status_code == 405
        assert gp.post("/fhir/AuditEvent", json={}, headers=FHIR).status_code == 405
    assert audit_store.verify(store.engine) == []


def test_a_patient_with_no_record_sees_no_events(store: Services, settings: Settings, world: World) -> None:
    with as_(store, settings, staff("GP1")) as gp:
        gp.get(f"/fhir/Patient/{world.ids['Patient:A']}")
    with as_(store, settings, patient("9000000025")) as nobody:
        assert events(nobody) == []
    with as_(store, settings, patient(B_NHS)) as ben:
        assert all(world.ids["Patient:A"] not in str(e) for e in events(ben, "_count=100"))


def test_the_access_report_lists_every_grant_with_its_reason_and_the_looks_it_allowed(
        store: Services, settings: Settings, world: World) -> None:
    """BG5: every declared relationship and break-glass, with user, role, organisation, reason and
    the number of looks at that patient while it held (equal to the audit's count)."""
    a, b = world.ids["Patient:A"], world.ids["Patient:B"]
    nurse, doctor = staff("TR2", "R8001", "nurse"), staff("TR2", "R8000", "doctor")
    declare = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "Referred to our ward"}]}
    glass = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "Cardiac arrest, no notes"}]}
    with as_(store, settings, nurse) as c:
        assert c.post(f"/fhir/Patient/{a}/$declare-relationship", json=declare, headers=FHIR).status_code == 201
        for _ in range(3):
            assert c.get(f"/fhir/Patient/{a}").status_code == 200
    with as_(store, settings, doctor) as c:
        assert c.post(f"/fhir/Patient/{b}/$break-glass", json=glass, headers=FHIR).status_code == 201
        assert c.get(f"/fhir/Observation?patient={b}").status_code == 200
    with as_(store, settings, staff("TR2", "R0001", "officer")) as officer:
        r = officer.get("/fhir/AuditEvent/$access-report")
        assert r.status_code == 200, r.text
        report = [e["resource"] for e in r.json()["entry"]]
        assert officer.get("/fhir/AuditEvent/$access-report?colour=red").status_code == 400
    rows = [(e["subtype"][0]["code"], e["agent"][0]["who"]["identifier"]["value"],
             e["agent"][0]["role"][0]["coding"][0]["code"], e["agent"][1]["who"]["identifier"]["value"],
             {d["type"]: d["valueString"] for d in e["entity"][-1]["detail"]}) for e in report]
    assert [(kind, who, role, org, d["reason"], d["records-viewed"]) for kind, who, role, org, d in rows] == [
        ("declare-relationship", "user:nurse@tr2", "R8001", "TR2", "Referred to our ward", "3"),
        ("110127", "user:doctor@tr2", "R8000", "TR2", "Cardiac arrest, no notes", "1")]
    for event in report:
        assert validate(event) == []
    with as_(store, settings, staff("TR2")) as clinician:
        assert clinician.get("/fhir/AuditEvent/$access-report").status_code == 403
    with as_(store, settings, staff("GP1", "R0001", "officer")) as other_officer:
        assert other_officer.get("/fhir/AuditEvent/$access-report").json()["total"] == 0


def test_alerts_name_grants_looks_at_flagged_people_and_unusual_volumes(store: Services, settings: Settings,
                                                                        world: World) -> None:
    """AU5 and item 9: each alert is an AuditEvent tagged with why."""
    from tests.spec.access.world import NHS

    celebrity = world.write(source("GP1"), {
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": "9000000033"}],
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CEL"}]},
        "generalPractitioner": [{"reference": "Organization/gp-one"}]})
    busy = staff("GP1", who="busy")
    glass = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "Found collapsed at home"}]}
    with as_(store, settings, busy) as c:
        assert c.get(f"/fhir/Patient/{celebrity}").status_code == 200
        assert c.get(f"/fhir/Patient/{world.ids['Patient:A']}").status_code == 200
        assert c.post(f"/fhir/Patient/{world.ids['Patient:B']}/$break-glass", json=glass,
                      headers=FHIR).status_code == 201
        assert c.get(f"/fhir/Patient/{world.ids['Patient:B']}").status_code == 200
    quiet = settings.model_copy(update={"alert_unusual_patients": 2})
    with as_(store, quiet, OFFICER_GP1) as officer:
        alerts = [e["resource"] for e in officer.get("/fhir/AuditEvent/$alerts").json()["entry"]]
    kinds = [a["meta"]["tag"][0]["code"] for a in alerts]
    assert sorted(kinds) == ["break-glass", "flagged-person", "unusual-volume"]
    flagged = next(a for a in alerts if a["meta"]["tag"][0]["code"] == "flagged-person")
    assert {"reference": f"Patient/{celebrity}"} in [e.get("what") for e in flagged["entity"]]
    volume = next(a for a in alerts if a["meta"]["tag"][0]["code"] == "unusual-volume")
    assert volume["entity"][-1]["detail"] == [{"type": "distinct-patients", "valueString": "3"}]
    for alert in alerts:
        assert validate(alert) == []
    with as_(store, settings, OFFICER_GP1) as officer:  # the default threshold: no unusual volume
        entries = officer.get("/fhir/AuditEvent/$alerts").json()["entry"]
    kinds = [e["resource"]["meta"]["tag"][0]["code"] for e in entries]
    assert sorted(kinds) == ["break-glass", "flagged-person"]


def test_staff_looking_at_their_own_or_a_family_members_record_is_alerted(store: Services, settings: Settings,
                                                                           world: World) -> None:
    """Item 9: a member of staff whose person is recorded (NHS number, family name, postcode) is
    alerted when they look at a Patient record with their NHS number, or at someone with their family
    name at their postcode (compared as letters only, and postcodes without spaces). Others are not."""
    from sharedcare.access import privacy
    from tests.spec.access.world import NHS

    nurse = staff("GP1", "R8001", "nurse.obrien")
    own = world.write(source("GP1"), {
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": "9000000025"}],
        "name": [{"family": "O'Brien", "given": ["Niamh"]}], "address": [{"postalCode": "N1 9GU"}],
        "generalPractitioner": [{"reference": "Organization/gp-one"}]})
    mother = world.write(source("GP1"), {
        "resourceType": "Patient", "name": [{"family": "OBRIEN", "given": ["Máire"]}],
        "address": [{"postalCode": "n19gu"}], "generalPractitioner": [{"reference": "Organization/gp-one"}]})
    neighbour = world.write(source("GP1"), {
        "resourceType": "Patient", "name": [{"family": "Okafor"}], "address": [{"postalCode": "N1 9GU"}],
        "generalPractitioner": [{"reference": "Organization/gp-one"}]})
    namesake = world.write(source("GP1"), {
        "resourceType": "Patient", "name": [{"family": "O'Brien"}], "address": [{"postalCode": "SE1 7PB"}],
        "generalPractitioner": [{"reference": "Organization/gp-one"}]})
    privacy.record_person(store.engine, nurse.agent_id, nhs_number="9000000025", family_name="O’Brien",
                          postcode="N1 9GU")
    with as_(store, settings, nurse) as c:
        for pid in (own, mother, neighbour, namesake, world.ids["Patient:A"]):
            assert c.get(f"/fhir/Patient/{pid}").status_code == 200
    with as_(store, settings, staff("GP1", who="colleague")) as c:  # no person recorded: no such alert
        assert c.get(f"/fhir/Patient/{own}").status_code == 200
    with as_(store, settings, OFFICER_GP1) as officer:
        alerts = [e["resource"] for e in officer.get("/fhir/AuditEvent/$alerts").json()["entry"]]
    found = sorted((a["meta"]["tag"][0]["code"], next(e["what"]["reference"] for e in a["entity"] if "what" in e),
                    a["agent"][0]["who"]["identifier"]["value"]) for a in alerts)
    assert found == sorted([("own-record", f"Patient/{own}", nurse.agent_id),
                            ("family-record", f"Patient/{mother}", nurse.agent_id)])
    for alert in alerts:
        assert validate(alert) == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"nhs_number": "9000000026", "family_name": None, "postcode": None}, "NHS number is not valid"),
    ({"nhs_number": None, "family_name": "Smith", "postcode": None}, "give an NHS number, or a family name"),
    ({"nhs_number": None, "family_name": "Smith", "postcode": "not a postcode"}, "not a UK postcode"),
    ({"nhs_number": None, "family_name": "--", "postcode": "N1 9GU"}, "no letters"),
])
def test_a_staff_person_with_bad_details_is_refused_and_nothing_changes(store: Services, fields: dict[str, Any],
                                                                        message: str) -> None:
    from sharedcare.access import privacy as staff_privacy
    from sharedcare.storage import privacy as stored

    staff_privacy.record_person(store.engine, "user:kept", nhs_number="9000000009", family_name=None, postcode=None)
    with pytest.raises(ValueError, match=message):
        staff_privacy.record_person(store.engine, "user:kept", **fields)
    kept = stored.staff_person_row(store.engine, "user:kept")
    assert kept is not None
    assert kept["nhs_number"] == "9000000009"


def test_housekeeping_announces_new_grants_in_the_log_with_counts_only(store: Services, world: World,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """AU5/BG1: besides `$alerts`, each housekeeping round says in the log how many break-glass and
    declared relationships were granted since the last (for the operator's alerting); never who,
    whom or why. The first round starts from then; a round with nothing new says nothing."""
    import logging
    from datetime import UTC, datetime

    from sharedcare.access import grants
    from sharedcare.app import housekeep
    from sharedcare.storage.grants import GrantStore

    housekeep(store)  # the first round: nothing before it is announced
    doctor = staff("TR2", "R8000", "ed.doctor")
    reason = "Unconscious in resus, no records"
    grants.grant(GrantStore(store.engine), doctor, "break-glass", world.ids["Patient:A"], reason, datetime.now(UTC))
    grants.grant(GrantStore(store.engine), doctor, "declared", world.ids["Patient:B"], "Admitted to my ward today",
                 datetime.now(UTC))
    with caplog.at_level(logging.WARNING, logger="sharedcare"):
        housekeep(store)
        housekeep(store)
    said = [r.getMessage() for r in caplog.records if "privacy alerts" in r.getMessage()]
    assert said == ["privacy alerts: 1 break-glass, 1 declare-relationship since the last round "
                    "(see AuditEvent/$alerts)"]
    for secret in (world.ids["Patient:A"], world.ids["Patient:B"], doctor.agent_id, reason):
        assert secret not in said[0]
