"""Legitimate relationships read from the records (issue 5): which organisations a stored resource
ties to a person, and until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sharedcare.access.relationships import Relationship, active, relationships

PATIENT = {"reference": "Patient/p1"}
GP = {"reference": "Organization/gp1"}
TRUST = {"reference": "Organization/trust1"}
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_the_registered_practice_is_a_relationship_while_the_registration_stands() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "generalPractitioner": [GP, {"reference": "Practitioner/x"}]}
    assert relationships(patient) == [Relationship("p1", "Organization/gp1", "registered", None)]


@pytest.mark.parametrize("status", ["planned", "arrived", "triaged", "in-progress", "onleave"])
def test_an_open_encounter_ties_its_provider_while_open(status: str) -> None:
    encounter = {"resourceType": "Encounter", "status": status, "class": {"code": "IMP"}, "subject": PATIENT,
                 "serviceProvider": TRUST}
    assert relationships(encounter) == [Relationship("p1", "Organization/trust1", "encounter", None)]


@pytest.mark.parametrize("cls", ["EMER", "FLD", "VR"])
def test_urgent_care_ties_its_provider_for_72_hours_after_it_ends(cls: str) -> None:
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": cls}, "subject": PATIENT,
                 "serviceProvider": TRUST, "period": {"start": "2026-03-08T09:00:00+00:00",
                                                      "end": "2026-03-08T10:15:00+00:00"}}
    found = relationships(encounter)
    end = datetime(2026, 3, 8, 10, 15, tzinfo=UTC)
    assert [(r.organisation, r.kind) for r in found] == [("Organization/trust1", "urgent-care")]
    assert found[0].until is not None
    assert timedelta(hours=72) <= found[0].until - end < timedelta(hours=72, seconds=1)
    assert active(found, "Organization/trust1", end + timedelta(hours=71))
    assert not active(found, "Organization/trust1", end + timedelta(hours=73))
    assert not active(found, "Organization/gp1", end)


def test_a_finished_outpatient_or_inpatient_encounter_ties_nobody() -> None:
    for cls in ("AMB", "IMP"):
        encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": cls}, "subject": PATIENT,
                     "serviceProvider": TRUST, "period": {"end": "2026-03-08"}}
        assert relationships(encounter) == []


@pytest.mark.parametrize(("resource", "kind", "orgs"), [
    ({"resourceType": "EpisodeOfCare", "status": "active", "patient": PATIENT, "managingOrganization": TRUST},
     "episode", ["Organization/trust1"]),
    ({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": PATIENT,
      "requester": GP, "performer": [TRUST, GP]}, "referral", ["Organization/gp1", "Organization/trust1"]),
])
def test_open_episodes_and_referrals_tie_their_organisations(resource: dict[str, Any], kind: str,
                                                             orgs: list[str]) -> None:
    assert [(r.organisation, r.kind, r.until) for r in relationships(resource)] == [(o, kind, None) for o in orgs]


def test_closed_episodes_referrals_and_appointments_tie_nobody() -> None:
    assert relationships({"resourceType": "EpisodeOfCare", "status": "finished", "patient": PATIENT,
                          "managingOrganization": TRUST}) == []
    assert relationships({"resourceType": "ServiceRequest", "status": "completed", "intent": "order",
                          "subject": PATIENT, "performer": [TRUST]}) == []
    assert relationships({"resourceType": "Appointment", "status": "cancelled",
                          "participant": [{"actor": PATIENT}, {"actor": TRUST}]}) == []


def test_a_booked_appointment_ties_its_organisation_until_72_hours_after_it_ends() -> None:
    appointment = {"resourceType": "Appointment", "status": "booked", "start": "2026-03-20T09:00:00Z",
                   "end": "2026-03-20T09:20:00Z", "participant": [{"actor": PATIENT}, {"actor": TRUST}]}
    found = relationships(appointment)
    assert [(r.patient, r.organisation, r.kind) for r in found] == [("p1", "Organization/trust1", "appointment")]
    assert active(found, "Organization/trust1", NOW)
    assert not active(found, "Organization/trust1", datetime(2026, 3, 23, 10, 0, tzinfo=UTC))


def test_resources_without_a_patient_or_an_organisation_tie_nobody() -> None:
    assert relationships({"resourceType": "Encounter", "status": "in-progress", "serviceProvider": TRUST}) == []
    assert relationships({"resourceType": "Encounter", "status": "in-progress", "subject": PATIENT}) == []
    assert relationships({"resourceType": "Encounter", "status": "in-progress", "subject": {"reference": "Group/g"},
                          "serviceProvider": TRUST}) == []
    assert relationships({"resourceType": "Observation", "status": "final", "subject": PATIENT,
                          "performer": [TRUST]}) == []
    assert relationships({"resourceType": "Patient", "generalPractitioner": [GP]}) == []  # no id yet


def test_an_urgent_encounter_with_a_bad_or_missing_end_ties_nobody() -> None:
    for period in ({}, {"end": "yesterday"}, {"end": ""}, None):
        encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "EMER"},
                     "subject": PATIENT, "serviceProvider": TRUST, "period": period}
        assert relationships(encounter) == []


def test_an_organisation_referenced_by_its_ods_code_is_a_relationship_with_that_code() -> None:
    """NHS systems often name the registered practice by ODS code rather than by a resource id."""
    patient = {"resourceType": "Patient", "id": "p1", "generalPractitioner": [
        {"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                "value": "y12345"}},
        {"identifier": {"system": "https://example.org/other", "value": "Y99999"}}]}
    assert relationships(patient) == [Relationship("p1", "ods:Y12345", "registered", None)]
