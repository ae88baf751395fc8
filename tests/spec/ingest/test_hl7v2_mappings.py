"""HL7 v2 mappings, pinned by golden files (tests/data/hl7v2; how to refresh them: golden.py).

Each case is one message as a source sends it. Its mapping must equal the reviewed expected file, and
every resource it makes must pass the store's R4 validation, since the inbox writes them through it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedcare.fhir.validation import validate_or_raise
from tests.spec.ingest import golden


@pytest.mark.parametrize("case", golden.cases())
def test_each_golden_message_maps_to_its_expected_bundle(case: Path) -> None:
    got = golden.check(case)
    for entry in got["bundle"]["entry"]:
        validate_or_raise(entry["resource"])  # raises InvalidResource naming the path


def test_an_admission_makes_the_patient_the_encounter_its_ward_and_its_diagnosis() -> None:
    got = golden.mapped_json(golden.GOLDEN / "adt-a01-admission")
    types = [e["resource"]["resourceType"] for e in got["bundle"]["entry"]]
    assert types == ["Patient", "Location", "Encounter", "Condition"]
    encounter = got["bundle"]["entry"][2]["resource"]
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"]["reference"] == got["bundle"]["entry"][0]["fullUrl"]
    assert encounter["diagnosis"][0]["condition"]["reference"] == got["bundle"]["entry"][3]["fullUrl"]


def test_a_wrong_nhs_number_is_kept_only_as_the_sources_unverified_identifier() -> None:
    got = golden.mapped_json(golden.GOLDEN / "adt-a28-invalid-nhs-number")
    patient = got["bundle"]["entry"][0]["resource"]
    systems = {i["system"] for i in patient["identifier"]}
    assert "https://fhir.nhs.uk/Id/nhs-number" not in systems
    assert "https://sharedcare.example/Id/unverified-nhs-number" in systems
    assert any("check digit" in w for w in got["warnings"])
    assert "birthDate" not in patient
    assert any("PID-7" in w for w in got["warnings"])


def test_escape_sequences_are_undone_and_z_segments_ignored() -> None:
    patient = golden.mapped_json(golden.GOLDEN / "adt-a31-new-address-escaped")["bundle"]["entry"][0]["resource"]
    assert patient["name"][0] == {"use": "official", "family": "O&Brien", "given": ["Sean"]}
    assert patient["address"][0]["line"] == ["Flat 3^4 Mill Lane"]


def test_a_merge_names_the_retired_record_for_the_patient_index() -> None:
    got = golden.mapped_json(golden.GOLDEN / "adt-a40-merge")
    assert got["merges"] == [{"old": {"system": "https://sharedcare.example/Id/hl7v2/RJ7/RJ7", "value": "RJ7U0000005"},
                              "survivor": got["bundle"]["entry"][0]["fullUrl"]}]


def test_cancelling_a_discharge_reopens_the_encounter() -> None:
    encounter = golden.mapped_json(golden.GOLDEN / "adt-a13-cancel-discharge")["bundle"]["entry"][-1]["resource"]
    assert encounter["status"] == "in-progress"
    assert "end" not in encounter["period"]
