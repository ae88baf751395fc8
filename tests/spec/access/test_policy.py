"""Who may see what (issue 5): the access policy, compiled into every query the Repository runs.

The world (world.py): patient A is registered at practice GP1, patient B at GP2. GP1 holds A's blood
pressure, an assisted-conception item (sensitive) and an item it labelled confidential; trust TR1 holds a
diagnosis of A's of its own. Staff see another organisation's records about a person only while their
organisation has a legitimate relationship with that person; never sensitive or confidential items of
another organisation; and what they may not see is answered exactly as if it did not exist.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sharedcare.access import grants
from sharedcare.app import Services, create_app
from sharedcare.errors import BadRequest, Forbidden, NotFound
from sharedcare.settings import Settings
from sharedcare.storage import audit_store
from sharedcare.storage.grants import GrantStore
from sharedcare.storage.repository import Repository
from tests.conftest import BASE_URL
from tests.spec.access.world import (
    A_NHS,
    B_NHS,
    NODE,
    SETS,
    World,
    build,
    condition,
    encounter,
    iso,
    observation,
    patient,
    ref,
    source,
    staff,
)

A_GP_RECORDS = {"Observation:A-bp"}
NOW = datetime.now(UTC)


@pytest.fixture
def world(store: Services) -> World:
    return build(Repository(store.engine, store.committer, base_url=BASE_URL, code_sets=SETS))


def a(world: World) -> str:
    return world.ids["Patient:A"]


# -- own organisation, registered practice ----------------------------------------------------------

def test_the_registered_practice_sees_its_patients_whole_record(world: World) -> None:
    gp = staff("GP1")
    assert world.read(gp, "Patient:A").res_id == a(world)
    assert world.found(gp, "Observation", ("patient", a(world))) == {"Observation:A-bp", "Observation:A-confidential"}
    # The practice's own sensitive item, and the trust's diagnosis (GP1 is A's registered practice).
    assert world.found(gp, "Condition", ("patient", a(world))) == {"Condition:A-ivf", "Condition:A-tr1"}


def test_staff_always_see_what_their_own_organisation_wrote(world: World) -> None:
    trust = staff("TR1")  # no relationship with A
    assert world.found(trust, "Condition") == {"Condition:A-tr1"}


# -- no relationship: as if nothing existed ----------------------------------------------------------

def test_without_a_relationship_another_organisations_records_are_not_found(world: World) -> None:
    trust = staff("TR1")
    with pytest.raises(NotFound) as hidden:
        world.read(trust, "Patient:A")
    with pytest.raises(NotFound) as missing:
        world.repo.read(trust, "Patient", "no-such-patient")
    assert str(hidden.value) == str(missing.value)  # the same answer as for an id that does not exist
    assert world.found(trust, "Observation", ("patient", a(world))) == set()
    assert world.search(trust, "Observation").total == 0
    with pytest.raises(NotFound):
        world.read(trust, "Observation:A-bp")


def test_without_a_relationship_history_and_everything_are_not_found_either(world: World) -> None:
    trust = staff("TR1")
    with pytest.raises(NotFound):
        world.repo.history(trust, "Patient", a(world), count=10)
    with pytest.raises(NotFound):
        world.repo.everything(trust, a(world), count=10)
    assert world.repo.history(trust, "Observation", None, count=10).total == 0


# -- relationships from the records -------------------------------------------------------------

def test_an_open_encounter_at_the_trust_opens_the_shared_record_but_not_sensitive_items(world: World) -> None:
    world.write(source("TR1"), encounter(a(world), "trust-one"), "Encounter:A")
    trust = staff("TR1")
    assert world.read(trust, "Patient:A").res_id == a(world)
    assert world.found(trust, "Observation", ("patient", a(world))) == A_GP_RECORDS  # not the confidential one
    assert world.found(trust, "Condition", ("patient", a(world))) == {"Condition:A-tr1"}  # not the sensitive one
    with pytest.raises(NotFound):
        world.read(trust, "Condition:A-ivf")
    with pytest.raises(NotFound):
        world.read(trust, "Observation:A-confidential")
    # B is not the trust's patient.
    assert world.found(trust, "Observation", ("patient", world.ids["Patient:B"])) == set()


def test_everything_and_includes_show_only_what_the_caller_may_see(world: World) -> None:
    world.write(source("TR1"), encounter(a(world), "trust-one"), "Encounter:A")
    trust = staff("TR1")
    page = world.repo.everything(trust, a(world), count=100)
    names = {v: k for k, v in world.ids.items()}
    seen = {names.get(s.res_id, s.res_id) for s in (*page.items, *page.included)}
    assert {"Condition:A-ivf", "Observation:A-confidential", "Observation:B-bp"}.isdisjoint(seen)
    assert {"Patient:A", "Observation:A-bp", "Condition:A-tr1", "Encounter:A"} <= seen
    revinclude = world.search(trust, "Patient", ("_id", a(world)), ("_revinclude", "*"))
    included = {names.get(s.res_id, s.res_id) for s in revinclude.included}
    assert "Condition:A-ivf" not in included
    assert "Observation:A-confidential" not in included
    assert "Observation:A-bp" in included


def test_urgent_care_opens_the_record_for_72_hours_after_it_ends(world: World) -> None:
    ambulance = staff("AMB", "R8003", "paramedic")
    world.write(source("AMB"), encounter(a(world), "ambulance", status="finished", cls="FLD",
                                         ended=NOW - timedelta(hours=80)))
    assert world.found(ambulance, "Observation", ("patient", a(world))) == set()
    world.write(source("AMB"), encounter(a(world), "ambulance", status="finished", cls="FLD",
                                         ended=NOW - timedelta(hours=10)))
    assert world.found(ambulance, "Observation", ("patient", a(world))) == A_GP_RECORDS


def test_a_relationship_by_ods_code_counts_like_one_by_resource(world: World) -> None:
    world.write(source("GP1"), {"resourceType": "Patient", "identifier": [{"system": "x", "value": "1"}],
                                "generalPractitioner": [{"identifier": {
                                    "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "GP2"}}]},
                "Patient:C")
    assert world.read(staff("GP2"), "Patient:C").res_id == world.ids["Patient:C"]
    with pytest.raises(NotFound):
        world.read(staff("TR2"), "Patient:C")


# -- objections ------------------------------------------------------------------------------------

def objection(patient_id: str) -> dict[str, object]:
    return {"resourceType": "Consent", "status": "active", "patient": ref("Patient", patient_id),
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "provision": {"type": "deny"}}


def test_an_objection_keeps_other_organisations_records_from_staff_with_a_relationship(world: World) -> None:
    world.write(source("TR1"), encounter(a(world), "trust-one"))
    objected = world.write(source("GP1"), objection(a(world)))
    trust = staff("TR1")
    assert world.found(trust, "Observation", ("patient", a(world))) == set()
    assert world.found(trust, "Condition", ("patient", a(world))) == {"Condition:A-tr1"}  # its own, still
    # Withdrawing the objection (the Consent made inactive) shares the record again.
    body = objection(a(world)) | {"id": objected, "status": "inactive"}
    with world.repo.unit(source("GP1"), "update", "Consent") as unit:
        unit.write("Consent", objected, body, method="PUT")
    assert world.found(trust, "Observation", ("patient", a(world))) == A_GP_RECORDS


# -- declared relationships and break-glass ------------------------------------------------------------

def test_a_declared_relationship_opens_the_record_for_its_declarer_only(world: World) -> None:
    store = GrantStore(world.repo.engine)
    nurse, colleague = staff("TR2", "R8001", "nurse"), staff("TR2", "R8001", "colleague")
    row = grants.grant(store, nurse, "declared", a(world), "  Referred to our clinic by phone today  ", NOW)
    assert row.reason == "Referred to our clinic by phone today"
    assert world.found(nurse, "Observation", ("patient", a(world))) == A_GP_RECORDS
    assert world.found(colleague, "Observation", ("patient", a(world))) == set()


def test_break_glass_overrides_an_objection_for_one_patient_but_never_sensitive_items(world: World) -> None:
    world.write(source("GP1"), objection(a(world)))
    store = GrantStore(world.repo.engine)
    doctor = staff("TR2", "R8000", "ed-doctor")
    grants.grant(store, doctor, "break-glass", a(world), "Unconscious in resus, no records", NOW)
    assert world.found(doctor, "Observation", ("patient", a(world))) == A_GP_RECORDS
    assert world.found(doctor, "Condition", ("patient", a(world))) == {"Condition:A-tr1"}  # not the IVF item
    assert world.found(doctor, "Observation", ("patient", world.ids["Patient:B"])) == set()


def test_break_glass_ends_when_its_time_is_up(world: World) -> None:
    store = GrantStore(world.repo.engine)
    doctor = staff("TR2", "R8000", "ed-doctor")
    grants.grant(store, doctor, "break-glass", a(world), "Collapsed at the station", NOW - timedelta(hours=5))
    assert world.found(doctor, "Observation", ("patient", a(world))) == set()
    ended = grants.end_expired(store, NOW)
    assert [g.kind for g in ended] == ["break-glass"]
    assert grants.end_expired(store, NOW) == []  # each grant ends once


@pytest.mark.parametrize("reason", ["", "   ", "urgent"])
def test_break_glass_needs_a_reason_and_grants_nothing_without_one(world: World, reason: str) -> None:
    store = GrantStore(world.repo.engine)
    doctor = staff("TR2", "R8000", "ed-doctor")
    with pytest.raises(BadRequest):
        grants.grant(store, doctor, "break-glass", a(world), reason, NOW)
    assert store.active(doctor.agent_id, iso(NOW)) == []
    assert world.found(doctor, "Observation", ("patient", a(world))) == set()


def test_only_roles_that_allow_it_may_break_the_glass(world: World) -> None:
    store = GrantStore(world.repo.engine)
    with pytest.raises(Forbidden):
        grants.grant(store, staff("TR2", "R8009", "receptionist"), "break-glass", a(world), "Patient at the desk",
                     NOW)
    with pytest.raises(Forbidden):
        grants.grant(store, staff("TR2", "R8014", "social-worker"), "break-glass", a(world), "Safeguarding call", NOW)


# -- roles -------------------------------------------------------------------------------------------

def test_demographics_only_roles_see_the_person_but_not_the_clinical_record(world: World) -> None:
    reception = staff("GP1", "R8009", "receptionist")
    assert world.read(reception, "Patient:A").res_id == a(world)
    with pytest.raises(Forbidden):
        world.search(reception, "Condition", ("patient", a(world)))
    with pytest.raises(NotFound):
        world.read(reception, "Observation:A-bp")
    with pytest.raises(Forbidden):  # nor may a search test clinical data through _has
        world.search(reception, "Patient", ("_has:Observation:patient:code", "8480-6"))


def test_roles_without_record_access_see_nothing(world: World) -> None:
    for role in ("R0001", "R8012", "R8015"):  # privacy officer, information officer, systems support
        with pytest.raises(NotFound):
            world.read(staff("GP1", role, "back-office"), "Patient:A")


# -- patients ------------------------------------------------------------------------------------------

def test_a_patient_sees_their_own_record_and_nobody_elses(world: World) -> None:
    ada = patient(A_NHS)
    assert world.read(ada, "Patient:A").res_id == a(world)
    # Their own sensitive item, but not what a source labelled confidential.
    assert world.found(ada, "Observation") == A_GP_RECORDS
    assert world.found(ada, "Condition") == {"Condition:A-ivf", "Condition:A-tr1"}
    with pytest.raises(NotFound):
        world.read(ada, "Patient:B")
    with pytest.raises(NotFound):
        world.read(ada, "Observation:B-bp")


def test_a_patient_searching_for_someone_else_is_refused_whatever_exists(world: World) -> None:
    ada = patient(A_NHS)
    for target in (world.ids["Patient:B"], f"Patient/{world.ids['Patient:B']}", "no-such-patient"):
        with pytest.raises(Forbidden):
            world.search(ada, "Observation", ("patient", target))
    assert world.found(ada, "Observation", ("patient", a(world))) == A_GP_RECORDS


def test_a_patient_with_no_records_sees_only_the_directory(world: World) -> None:
    nobody = patient("9000000025")
    assert world.search(nobody, "Observation").total == 0
    assert world.found(nobody, "Organization") == {f"Organization:{o}" for o in ("GP1", "GP2", "TR1", "TR2", "AMB")}


def test_a_resource_about_two_patients_is_seen_only_by_those_who_may_see_both(world: World) -> None:
    both = world.write(source("GP1"), {
        "resourceType": "Appointment", "status": "booked",
        "participant": [{"actor": ref("Patient", a(world)), "status": "accepted"},
                        {"actor": ref("Patient", world.ids["Patient:B"]), "status": "accepted"}]})
    with pytest.raises(NotFound):
        world.repo.read(patient(A_NHS), "Appointment", both)
    with pytest.raises(NotFound):
        world.repo.read(patient(B_NHS), "Appointment", both)
    assert world.repo.read(staff("GP1"), "Appointment", both).res_id == both  # GP1 wrote it


# -- restricted addresses ---------------------------------------------------------------------------------

def test_a_restricted_patients_address_is_never_shown_outside_the_source(world: World) -> None:
    restricted = world.write(source("GP1"), {
        "resourceType": "Patient", "meta": {"security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
        "address": [{"postalCode": "N1 9GU"}], "telecom": [{"system": "phone", "value": "2"}],
        "contact": [{"name": {"family": "Kin"}, "address": {"postalCode": "N1 9GU"}}],
        "generalPractitioner": [ref("Organization", "gp-one")]})
    world.write(source("TR1"), encounter(restricted, "trust-one"))
    seen = world.repo.read(staff("TR1"), "Patient", restricted).data or b""
    assert b"N1 9GU" not in seen
    assert b'"telecom"' not in seen
    assert b"REDACTED" in seen
    found = world.search(staff("TR1"), "Patient", ("_id", restricted)).items
    assert b"N1 9GU" not in (found[0].data or b"")
    assert b"N1 9GU" in (world.repo.read(staff("GP1"), "Patient", restricted).data or b"")


# -- writing ----------------------------------------------------------------------------------------------

def test_a_source_system_writes_as_its_own_organisation_whatever_it_sends(world: World) -> None:
    forged = observation(a(world), "8867-4") | {"meta": {"source": "urn:ods:GP2"}}
    written = world.write(source("GP1"), forged)
    stored = world.repo.read(NODE, "Observation", written)
    assert b'"source":"urn:ods:GP1"' in (stored.data or b"")
    with pytest.raises(Forbidden), world.repo.unit(source("GP2"), "update", "Observation") as unit:
        unit.write("Observation", written, observation(a(world), "8867-4"), method="PUT")


def test_clinicians_write_care_plans_only_for_patients_they_may_see(world: World) -> None:
    world.write(source("TR1"), encounter(a(world), "trust-one"))
    doctor = staff("TR1")
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan"}
    assert world.write(doctor, plan | {"subject": ref("Patient", a(world))})
    with pytest.raises(Forbidden):
        world.write(doctor, plan | {"subject": ref("Patient", world.ids["Patient:B"])})
    assert world.found(NODE, "CarePlan", ("patient", world.ids["Patient:B"])) == set()  # nothing was stored
    with pytest.raises(Forbidden):
        world.write(doctor, observation(a(world), "8480-6"))  # not a care-plan type
    with pytest.raises(Forbidden):
        world.write(staff("TR1", "R8003", "physio"), plan | {"subject": ref("Patient", a(world))})


def test_patients_do_not_write_through_the_api(world: World) -> None:
    with pytest.raises(Forbidden):
        world.write(patient(A_NHS), condition(a(world), ("http://snomed.info/sct", "59621000")))


def test_the_server_ends_grants_whose_time_is_up_and_audits_each(store: Services, settings: Settings) -> None:
    """BG3: a break-glass that ran out gets its "override stopped" audit record from the server's
    housekeeping, without anyone asking (here every 0.1 s)."""
    world = build(store.repo)
    doctor = staff("TR2", "R8000", "ed-doctor")
    grants.grant(GrantStore(store.engine), doctor, "break-glass", world.ids["Patient:A"],
                 "Collapsed at the station", NOW - timedelta(hours=5))
    with TestClient(create_app(settings.model_copy(update={"housekeeping_seconds": 0.1}), store)):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not audit_store.search(
                store.engine, audit_store.AuditFilter(interactions=("break-glass-ended",)), 1):
            time.sleep(0.1)
    stopped = audit_store.search(store.engine, audit_store.AuditFilter(interactions=("break-glass-ended",)), 5)
    assert [(r["agent_id"], r["purpose"]) for r in stopped] == [(doctor.agent_id, "ETREAT")]
    assert GrantStore(store.engine).active(doctor.agent_id, iso(NOW)) == []
