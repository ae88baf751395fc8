"""CSV extracts to FHIR through a per-source YAML column mapping (src/sharedcare/ingest/csv/mapping.py,
docs/csv-mappings.md).

The golden cases (tests/data/csv) are synthetic London extracts mapped by the packaged mappings
(`social-care`, `nhs-111`) and by a council's own mapping written without code; each must equal its
reviewed expected file and every resource must pass the store's R4 validation. The small mappings
written here each show one rule of the format, and every mistake in a mapping is refused with its
key path. Last, both packaged mappings map every row of a freshly generated synthetic London.
"""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest.csv import mapping as csv_mapping
from sharedcare.ingest.csv.mapping import InvalidMapping
from sharedcare.ingest.hl7v2.datatypes import UNVERIFIED_NHS_SYSTEM
from sharedcare.ingest.hl7v2.mapping import SOURCE_RECORDED, Context
from sharedcare.ingest.hl7v2.message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    ParseError,
)
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM
from sharedcare.synth import generate
from tests.spec.ingest import csv_golden

COUNCIL = Context("E09000002-social-care", "E09000002", "London Borough of Barking and Dagenham")
NHS111 = Context("nhs-111-london", "Y111L", "NHS 111 London")
CARE_HEADER = ["case_id", "service_id", "nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode",
               "service", "start_date", "end_date", "hours_per_week", "key_worker", "team"]
CALL_HEADER = ["call_id", "call_time", "case_ref", "nhs_number", "given_name", "family_name", "birth_date", "sex",
               "postcode", "symptom_group", "disposition", "ambulance_incident"]
DOCS = Path(__file__).resolve().parents[3] / "docs" / "csv-mappings.md"


def care_row(**changes: str) -> list[str]:
    """A council extract row (a current home care package of 14 hours a week), with `changes`."""
    row = {"case_id": "PE090000020000009", "service_id": "SCBDG0000009", "nhs_number": "9990000018",
           "given_name": "Tyrone", "family_name": "Mensah", "birth_date": "1951-05-17", "sex": "male",
           "postcode": "IG11 6YN", "service": "home-care", "start_date": "2025-04-20", "end_date": "",
           "hours_per_week": "14", "key_worker": "Jacob Chen",
           "team": "Adult Social Care - Barking and Dagenham Locality Team"} | changes
    return [row[c] for c in CARE_HEADER]


def call_row(**changes: str) -> list[str]:
    """A 111 call row (contact GP urgently, no ambulance), with `changes`."""
    row = {"call_id": "111C000000099", "call_time": "2025-06-13T03:14:00+01:00", "case_ref": "CY111L0000099",
           "nhs_number": "9990000026", "given_name": "Jack", "family_name": "Nwosu", "birth_date": "1987-09-30",
           "sex": "male", "postcode": "BR4 4TU", "symptom_group": "urinary problems",
           "disposition": "contact-gp-urgently", "ambulance_incident": ""} | changes
    return [row[c] for c in CALL_HEADER]


def social_care(**changes: str) -> dict[str, dict[str, Any]]:
    """The council row's resources by type."""
    got = csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER, care_row(**changes), COUNCIL)
    return {e["resource"]["resourceType"]: e["resource"] for e in got.bundle["entry"]}


def nhs_111(**changes: str) -> dict[str, dict[str, Any]]:
    got = csv_mapping.map_row(csv_mapping.packaged("nhs-111"), CALL_HEADER, call_row(**changes), NHS111)
    return {e["resource"]["resourceType"]: e["resource"] for e in got.bundle["entry"]}


def full_urls(got: Any) -> dict[str, str]:
    return {e["resource"]["resourceType"]: e["fullUrl"] for e in got.bundle["entry"]}


SMALL = """
columns: [ref, born, seen, sex, weight, postcode, ended]
recorded: {column: seen, type: dateTime, format: "%d/%m/%Y %H:%M"}
resources:
  - name: patient
    type: Patient
    id: {system: "https://sharedcare.example/Id/csv/{source}/person", value: ref}
    fields:
      birthDate: {column: born, format: "%d/%m/%Y"}
      gender: {column: sex, map: {M: male, F: female}}
      address: [{use: home, postalCode: {column: postcode}}]
      extension:
        - url: https://sharedcare.example/StructureDefinition/weight-kg
          valueDecimal: {column: weight, type: decimal}
      deceasedBoolean: {when: ended, then: true}
"""


def small(**values: str) -> csv_mapping.Mapped:
    """The SMALL mapping's Patient from a row of `values` (the others blank)."""
    header = ["ref", "born", "seen", "sex", "weight", "postcode", "ended"]
    row = {"ref": "P1", "born": "", "seen": "", "sex": "", "weight": "", "postcode": "", "ended": ""} | values
    return csv_mapping.map_row(csv_mapping.load(SMALL), header, [row[c] for c in header], COUNCIL)


def small_patient(**values: str) -> dict[str, Any]:
    resource: dict[str, Any] = small(**values).bundle["entry"][0]["resource"]
    return resource


def refusal(row_values: dict[str, str]) -> ParseError:
    with pytest.raises(ParseError) as caught:
        small(**row_values)
    return caught.value


# --- the golden extracts ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", csv_golden.cases())
def test_each_golden_extract_maps_to_its_expected_bundles(case: Path) -> None:
    got = csv_golden.check(case)
    for row in got:
        for entry in row.get("bundle", {}).get("entry", []):
            validate_or_raise(entry["resource"])  # raises InvalidResource naming the path
            assert "id" not in entry["resource"]  # the store assigns ids
            assert entry["resource"]["identifier"]


def test_a_service_row_is_the_patient_their_episode_of_care_and_its_care_plan() -> None:
    got = csv_golden.mapped_json(csv_golden.GOLDEN / "social-care-home-care")[0]
    assert [e["resource"]["resourceType"] for e in got["bundle"]["entry"]] == ["Patient", "EpisodeOfCare", "CarePlan"]
    assert got["patient_key"] == "https://sharedcare.example/Id/csv/E09000002-social-care/case|PE090000020000001"


# --- the social care mapping ------------------------------------------------------------------------


def test_a_current_service_is_an_active_episode_of_care() -> None:
    episode = social_care()["EpisodeOfCare"]
    assert episode["status"] == "active"
    assert episode["period"] == {"start": "2025-04-20"}


def test_an_ended_service_is_a_finished_episode_of_care() -> None:
    got = social_care(end_date="2025-11-30")
    assert got["EpisodeOfCare"]["status"] == "finished"
    assert got["EpisodeOfCare"]["period"] == {"start": "2025-04-20", "end": "2025-11-30"}
    assert got["CarePlan"]["status"] == "completed"
    assert got["CarePlan"]["activity"][0]["detail"]["status"] == "completed"


def test_the_service_is_coded_in_the_councils_local_code_system() -> None:
    [service_type] = social_care(service="direct-payment")["EpisodeOfCare"]["type"]
    assert service_type["coding"] == [{"system": "https://sharedcare.example/CodeSystem/social-care-service",
                                       "code": "direct-payment", "display": "Direct payments"}]


def test_the_key_worker_and_team_are_named_on_the_episode_of_care() -> None:
    episode = social_care()["EpisodeOfCare"]
    assert episode["careManager"] == {"display": "Jacob Chen"}
    assert episode["team"] == [{"display": "Adult Social Care - Barking and Dagenham Locality Team"}]
    assert episode["managingOrganization"]["identifier"]["value"] == "E09000002"


def test_a_package_with_hours_is_a_care_plan_with_the_hours_a_week_as_a_quantity() -> None:
    plan = social_care(hours_per_week="10.5")["CarePlan"]
    assert plan["intent"] == "plan"
    assert plan["status"] == "active"
    assert plan["activity"][0]["detail"]["quantity"] == {
        "value": 10.5, "unit": "hours a week", "system": "http://unitsofmeasure.org", "code": "h/wk"}


def test_a_service_without_hours_has_no_care_plan() -> None:
    assert set(social_care(service="residential", hours_per_week="")) == {"Patient", "EpisodeOfCare"}


def test_references_between_resources_of_a_row_resolve_to_their_full_urls() -> None:
    got = csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER, care_row(), COUNCIL)
    urls = full_urls(got)
    resources = {e["resource"]["resourceType"]: e["resource"] for e in got.bundle["entry"]}
    assert resources["EpisodeOfCare"]["patient"] == {"reference": urls["Patient"]}
    assert resources["CarePlan"]["subject"] == {"reference": urls["Patient"]}
    assert resources["CarePlan"]["supportingInfo"] == [{"reference": urls["EpisodeOfCare"]}]


def test_a_valid_nhs_number_is_kept_as_the_nhs_number_after_the_councils_own_identifier() -> None:
    assert social_care(nhs_number="999 000 0018")["Patient"]["identifier"] == [
        {"system": "https://sharedcare.example/Id/csv/E09000002-social-care/case", "value": "PE090000020000009"},
        {"system": NHS_NUMBER_SYSTEM, "value": "9990000018"}]


def test_a_wrong_nhs_number_is_kept_only_as_the_sources_unverified_identifier() -> None:
    got = csv_golden.mapped_json(csv_golden.GOLDEN / "social-care-invalid-nhs-number")[0]
    systems = {i["system"] for i in got["bundle"]["entry"][0]["resource"]["identifier"]}
    assert NHS_NUMBER_SYSTEM not in systems
    assert UNVERIFIED_NHS_SYSTEM in systems
    assert got["warnings"] == ["column 'nhs_number': an NHS number fails its check digit and is kept as the "
                               "source's unverified identifier"]


def test_blank_optional_values_are_left_out() -> None:
    patient = social_care(nhs_number="", postcode="", sex="")["Patient"]
    assert "gender" not in patient
    assert "address" not in patient  # the address had nothing but the postcode
    assert [i["system"] for i in patient["identifier"]] == [
        "https://sharedcare.example/Id/csv/E09000002-social-care/case"]


def test_the_same_case_at_another_council_is_another_patient() -> None:
    other = Context("E09000028-social-care", "E09000028", "London Borough of Southwark")
    ours = csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER, care_row(), COUNCIL)
    theirs = csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER, care_row(), other)
    assert ours.patient_key != theirs.patient_key
    assert full_urls(ours)["Patient"] != full_urls(theirs)["Patient"]


# --- the 111 mapping ---------------------------------------------------------------------------------


def test_a_call_is_a_virtual_encounter_starting_at_the_call_time() -> None:
    encounter = nhs_111()["Encounter"]
    assert encounter["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR",
                                  "display": "virtual"}
    assert encounter["period"] == {"start": "2025-06-13T03:14:00+01:00"}
    assert encounter["identifier"] == [{"system": "https://sharedcare.example/Id/csv/nhs-111-london/call",
                                        "value": "111C000000099"}]


def test_the_symptom_group_is_the_calls_reason_with_its_text_as_sent() -> None:
    [reason] = nhs_111()["Encounter"]["reasonCode"]
    assert reason == {"coding": [{"system": "https://sharedcare.example/CodeSystem/nhs-111-symptom-group",
                                  "code": "urinary-problems", "display": "Urinary problems"}],
                      "text": "urinary problems"}


def test_a_symptom_group_the_map_does_not_list_is_other_with_its_text_kept() -> None:
    [reason] = nhs_111(symptom_group="eye problems")["Encounter"]["reasonCode"]
    assert reason["coding"][0]["code"] == "other"
    assert reason["text"] == "eye problems"


def test_the_disposition_is_an_active_order_made_on_the_call() -> None:
    got = csv_mapping.map_row(csv_mapping.packaged("nhs-111"), CALL_HEADER, call_row(), NHS111)
    request = got.bundle["entry"][2]["resource"]
    assert request["resourceType"] == "ServiceRequest"
    assert (request["status"], request["intent"]) == ("active", "order")
    assert request["code"]["coding"][0] == {"system": "https://sharedcare.example/CodeSystem/nhs-111-disposition",
                                            "code": "contact-gp-urgently", "display": "Contact GP urgently"}
    assert request["encounter"] == {"reference": full_urls(got)["Encounter"]}


def test_an_ambulance_dispatch_points_at_the_ambulance_services_incident() -> None:
    dispatched = nhs_111(disposition="ambulance-dispatched", ambulance_incident="LAS000000031")["ServiceRequest"]
    assert dispatched["supportingInfo"] == [{"type": "Encounter", "identifier": {
        "system": "https://sharedcare.example/Id/ambulance-incident/RRU", "value": "LAS000000031"}}]
    assert "supportingInfo" not in nhs_111()["ServiceRequest"]  # no incident: the reference is left out


def test_when_111_recorded_the_call_is_on_every_resource() -> None:
    got = csv_mapping.map_row(csv_mapping.packaged("nhs-111"), CALL_HEADER, call_row(), NHS111)
    assert got.recorded == "2025-06-13T03:14:00+01:00"
    for entry in got.bundle["entry"]:
        assert entry["resource"]["meta"]["extension"] == [{"url": SOURCE_RECORDED,
                                                           "valueDateTime": "2025-06-13T03:14:00+01:00"}]


def test_a_disposition_the_map_does_not_list_is_refused_naming_the_column() -> None:
    with pytest.raises(ParseError) as caught:
        nhs_111(disposition="see a vet")
    assert caught.value.code == TABLE_VALUE_NOT_FOUND
    assert caught.value.reason == "column 'disposition' holds a value its map does not list"
    assert caught.value.field_no == CALL_HEADER.index("disposition") + 1


# --- conversions, blanks and bad values ----------------------------------------------------------------


def test_a_local_time_is_given_londons_offset_in_force_then() -> None:
    assert small(seen="14/07/2025 09:30").recorded == "2025-07-14T09:30:00+01:00"  # British Summer Time
    assert small(seen="20/01/2026 16:05").recorded == "2026-01-20T16:05:00+00:00"  # Greenwich Mean Time


def test_a_date_in_the_sources_format_is_a_fhir_date() -> None:
    assert small_patient(born="06/07/1950")["birthDate"] == "1950-07-06"


def test_a_decimal_keeps_the_digits_it_was_written_with() -> None:
    [weight] = small_patient(weight="61.50")["extension"]
    assert str(weight["valueDecimal"]) == "61.50"


def test_a_mapped_code_matches_ignoring_case_and_spaces() -> None:
    assert small_patient(sex=" f ")["gender"] == "female"


def test_an_object_whose_columns_are_all_blank_is_left_out_despite_its_constants() -> None:
    assert "address" not in small_patient()
    assert small_patient(postcode="RM9 6JU")["address"] == [{"use": "home", "postalCode": "RM9 6JU"}]


def test_a_value_chosen_by_whether_a_column_has_a_value() -> None:
    assert small_patient(ended="2025-01-01")["deceasedBoolean"] is True
    assert "deceasedBoolean" not in small_patient()


def test_a_bad_date_names_the_column_and_not_the_value() -> None:
    error = refusal({"born": "31/02/1950"})
    assert error.code == DATA_TYPE_ERROR
    assert error.reason == "column 'born' does not hold a date (format %d/%m/%Y)"
    assert "1950" not in error.reason
    assert error.field_no == 2


def test_a_value_outside_the_map_is_refused_without_quoting_it() -> None:
    error = refusal({"sex": "Xenomorph"})
    assert error.code == TABLE_VALUE_NOT_FOUND
    assert "sex" in error.reason
    assert "Xenomorph" not in error.reason


@pytest.mark.parametrize(("values", "column"), [
    ({"weight": "sixty"}, "weight"), ({"weight": "1e3"}, "weight"), ({"seen": "2025-07-14 09:30"}, "seen"),
    ({"weight": "\u0666\u0661"}, "weight"), ({"born": "1950-07-06"}, "born"), ({"seen": "31/06/2025 09:30"}, "seen"),
    ({"ref": "P\x001"}, "ref")])
def test_a_value_not_of_its_type_is_a_data_type_error_naming_only_the_column(values: dict[str, str],
                                                                          column: str) -> None:
    error = refusal(values)
    assert error.code == DATA_TYPE_ERROR
    assert f"column {column!r}" in error.reason
    for value in values.values():
        assert value not in error.reason


def test_a_blank_required_value_is_a_required_field_missing_error() -> None:
    with pytest.raises(ParseError) as caught:
        social_care(start_date="")
    assert caught.value.code == REQUIRED_FIELD_MISSING
    assert caught.value.reason == "column 'start_date' is blank, but a value is required"


CODED = """
columns: [ref, state, sex]
resources:
  - name: patient
    type: Patient
    id: {system: "https://sharedcare.example/Id/csv/{source}/person", value: ref}
    fields:
      gender: {column: sex}
  - name: episode
    type: EpisodeOfCare
    id: {system: "https://sharedcare.example/Id/csv/{source}/episode", value: ref}
    fields:
      status: {column: state, map: {open: active, closed: finished}}
      patient: {resource: patient}
"""


def coded(state: str, sex: str) -> csv_mapping.Mapped:
    return csv_mapping.map_row(csv_mapping.load(CODED), ["ref", "state", "sex"], ["R1", state, sex], COUNCIL)


def test_a_blank_value_for_an_element_fhir_requires_is_a_required_field_missing_error() -> None:
    assert coded("closed", "")
    with pytest.raises(ParseError) as caught:
        coded("", "")
    assert caught.value.code == REQUIRED_FIELD_MISSING
    assert caught.value.reason == "column 'state' is blank, but a value is required"


def test_an_unmapped_code_outside_its_elements_value_set_is_refused() -> None:
    assert coded("open", "female").bundle["entry"][0]["resource"]["gender"] == "female"
    with pytest.raises(ParseError) as caught:
        coded("open", "F")
    assert caught.value.code == TABLE_VALUE_NOT_FOUND
    assert caught.value.reason == "column 'sex' holds a value that is not a code its element allows"


def test_a_blank_identifier_column_is_refused_since_nothing_finds_the_resource() -> None:
    with pytest.raises(ParseError) as caught:
        social_care(case_id="")
    assert caught.value.code == REQUIRED_FIELD_MISSING
    assert "case_id" in caught.value.reason


def test_the_header_may_order_the_columns_its_own_way_and_add_others() -> None:
    header = [*reversed(CARE_HEADER), "locality"]
    row = [*reversed(care_row()), "North"]
    got = csv_mapping.map_row(csv_mapping.packaged("social-care"), header, row, COUNCIL)
    assert got.bundle == csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER, care_row(),
                                             COUNCIL).bundle


def test_a_byte_order_mark_before_the_header_is_ignored() -> None:
    header = ["\ufeff" + CARE_HEADER[0], *CARE_HEADER[1:]]
    assert csv_mapping.map_row(csv_mapping.packaged("social-care"), header, care_row(), COUNCIL).patient_key


def test_a_header_without_a_declared_column_is_refused() -> None:
    with pytest.raises(ParseError) as caught:
        csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER[:-1], care_row()[:-1], COUNCIL)
    assert caught.value.code == REQUIRED_FIELD_MISSING
    assert caught.value.reason == "the header has no column 'team'"


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ParseError) as caught:
        csv_mapping.map_row(csv_mapping.packaged("social-care"), CARE_HEADER, care_row()[:5], COUNCIL)
    assert caught.value.code == DATA_TYPE_ERROR


def test_no_error_for_a_bad_row_quotes_the_row() -> None:
    for row in csv_golden.mapped_json(csv_golden.GOLDEN / "social-care-bad-rows"):
        reason = row["error"]["reason"]
        assert not re.search(r"\d{4}|SCSTN|Sharma|Kowalski|reablement|ten\b|\bx\b", reason), reason


# --- checking a mapping ----------------------------------------------------------------------------------

BASE = """
columns: [ref, start, finish, kind]
resources:
  - name: patient
    type: Patient
    id: {system: "https://sharedcare.example/Id/csv/{source}/person", value: ref}
  - name: episode
    type: EpisodeOfCare
    id: {system: "https://sharedcare.example/Id/csv/{source}/episode", value: ref}
    fields:
      status: {when: finish, then: finished, else: active}
      patient: {resource: patient}
      period: {start: {column: start}}
"""


def refused(old: str, new: str) -> str:
    """The InvalidMapping message for BASE with `old` replaced by `new`."""
    assert old in BASE
    with pytest.raises(InvalidMapping) as caught:
        csv_mapping.load(BASE.replace(old, new))
    return str(caught.value)


def test_the_base_mapping_of_these_checks_loads() -> None:
    assert [r.type for r in csv_mapping.load(BASE).resources] == ["Patient", "EpisodeOfCare"]


def test_a_mapping_naming_an_unknown_column_is_refused_with_its_path() -> None:
    assert refused("{column: start}", "{column: started}") == (
        "resources[1].fields.period.start.column: unknown column 'started' (not in columns)")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("columns:", "colums:", "colums: unknown key (allowed here: columns, description, recorded, resources)"),
    ("type: EpisodeOfCare", "type: Episode", "resources[1].type: unknown resource type 'Episode' (one of: Patient, "
     "EpisodeOfCare, Encounter, ServiceRequest, CarePlan)"),
    ("type: EpisodeOfCare", "type: Observation", "resources[1].type: unknown resource type 'Observation'"),
    ("{resource: patient}", "{resource: person}", "resources[1].fields.patient.resource: no resource is named "
     "'person'"),
    ("{resource: patient}", "{resource: episode}", "resources[1].fields.patient.resource: EpisodeOfCare.patient "
     "cannot refer to an EpisodeOfCare (only to Patient)"),
    ("period: {start", "perod: {start", "resources[1].fields.perod: EpisodeOfCare has no element 'perod'"),
    ("then: finished", "then: done", "resources[1].fields.status.then: 'done' is not a code EpisodeOfCare.status "
     "allows"),
    ("{column: start}", "{column: start, format: '%d/%m/%y'}", "resources[1].fields.period.start.format: %y is "
     "not accepted (a two-digit year is ambiguous: use %Y)"),
    ("{column: start}", "{column: start, type: date, format: '%m/%Y'}", "resources[1].fields.period.start.format: a "
     "date format needs the day"),
    ("{column: start}", "{column: start, format: '%d/%m/%Y'}", "resources[1].fields.period.start.format: a dateTime "
     "format needs the hour"),
    ("{column: start}", "{column: start, type: integer}", "resources[1].fields.period.start.type: an integer cannot "
     "fill Period.start, a dateTime"),
    ("{column: start}", "{column: start, type: number}", "resources[1].fields.period.start.type: unknown conversion "
     "'number'"),
    ("{column: start}", "{column: start, required: yes please}", "resources[1].fields.period.start.required: true "
     "or false"),
    ("{column: start}", "{column: start, map: {a: b}}", "resources[1].fields.period.start.map: only text and coded "
     "values are mapped"),
    ("{column: start}", "{column: start, colour: red}", "resources[1].fields.period.start.colour: unknown key"),
    ("      patient: {resource: patient}\n", "", "resources[1].fields: EpisodeOfCare needs 'patient' (1..1)"),
    ("period: {start: {column: start}}", "type: {column: kind, type: CodeableConcept, system: x}",
     "resources[1].fields.type: EpisodeOfCare.type is a list (0..*): write it as a YAML list"),
    ("period: {start: {column: start}}", "type: [{column: kind, type: CodeableConcept}]",
     "resources[1].fields.type[0].system: a CodeableConcept needs its code system's URI"),
    ("period: {start: {column: start}}", "team: {display: {column: kind}}",
     "resources[1].fields.team: EpisodeOfCare.team is a list (0..*)"),
    ("period: {start: {column: start}}", "careManager: [{display: {column: kind}}]",
     "resources[1].fields.careManager: EpisodeOfCare.careManager holds one value (0..1), not a list"),
    ("period: {start: {column: start}}", "id: abc", "resources[1].fields.id: id is assigned by the store"),
    ("period: {start: {column: start}}", "period: 2025", "resources[1].fields.period: EpisodeOfCare.period is a "
     "Period: write its elements as a mapping"),
    ("{when: finish, then: finished, else: active}", "{when: finished, then: finished}",
     "resources[1].fields.status.when: unknown column 'finished'"),
    ("{when: finish, then: finished, else: active}", "{when: finish, else: active}",
     "resources[1].fields.status.then: required"),
    ("value: ref}\n  - name: episode", "value: reference}\n  - name: episode",
     "resources[0].id.value: unknown column 'reference'"),
    ("{source}/person", "{council}/person", "resources[0].id.system: unknown placeholder {council}"),
    ('"https://sharedcare.example/Id/csv/{source}/person"', "case ids", "resources[0].id.system: an absolute URI"),
    ("{source}/episode", "{source}/person", ""),  # a different type may share a system
    ("name: episode", "name: patient", "resources[1].name: another resource is named 'patient'"),
    ("name: episode", "name: source", "resources[1].name: lower-case letters"),
    ("type: Patient", "type: Encounter", "resources: exactly one resource is the Patient"),
    ("    fields:\n      status", "    nhs_number: ref\n    fields:\n      status",
     "resources[1].nhs_number: only the Patient has an NHS number"),
    ("columns: [ref, start, finish, kind]", "columns: [ref, start, finish, ref]",
     "columns[3]: the column 'ref' is declared twice"),
    ("columns: [ref, start, finish, kind]", "columns: [ref, start, finish, kind]\nrecorded: {column: kind, "
     "type: text}", "recorded.type: a text cannot fill recorded"),
    ("resources:", "resources: []\nxresources:", "xresources: unknown key"),
])
def test_each_mistake_in_a_mapping_is_refused_naming_its_path(old: str, new: str, message: str) -> None:
    if not message:
        csv_mapping.load(BASE.replace(old, new))
        return
    assert refused(old, new).startswith(message)


def test_two_resources_found_by_the_same_identifier_are_refused() -> None:
    mapping = BASE + """
  - name: again
    type: EpisodeOfCare
    id: {system: "https://sharedcare.example/Id/csv/{source}/episode", value: ref}
    fields: {status: active, patient: {resource: patient}}
"""
    with pytest.raises(InvalidMapping, match=r"^resources\[2\]\.id: the same identifier as resources\[1\]"):
        csv_mapping.load(mapping)


def test_a_map_key_yaml_reads_as_a_number_or_boolean_must_be_quoted() -> None:
    mapping = BASE.replace("period: {start: {column: start}}",
                           "type: [{column: kind, type: CodeableConcept, system: 'urn:x', map: {1: a, yes: b}}]")
    with pytest.raises(InvalidMapping, match=r"^resources\[1\]\.fields\.type\[0\]\.map\.1: write the source's value "
                                             r"in quotes \(YAML reads it as int\)"):
        csv_mapping.load(mapping)


def test_a_key_written_twice_is_refused_with_its_line() -> None:
    with pytest.raises(InvalidMapping, match=r"^line 12: the key 'status' is written twice"):
        csv_mapping.load(BASE.replace("      patient:", "      status: active\n      patient:"))


def test_yaml_that_cannot_be_read_is_an_invalid_mapping_with_its_line() -> None:
    with pytest.raises(InvalidMapping, match=r"^line \d+, column \d+: not valid YAML"):
        csv_mapping.load("columns: [ref\nresources: {")


def test_anchors_and_aliases_are_refused() -> None:
    with pytest.raises(InvalidMapping, match="anchors and aliases"):
        csv_mapping.load(BASE.replace("columns: [ref, start, finish, kind]", "columns: &c [ref, start, finish, kind]\n"
                                                                           "description: *c"))


def test_a_mapping_that_is_not_a_yaml_mapping_is_refused() -> None:
    with pytest.raises(InvalidMapping, match="a YAML mapping of keys"):
        csv_mapping.load("- just\n- a list\n")


# --- the packaged mappings and the documented format ------------------------------------------------------


@pytest.mark.parametrize("name", csv_mapping.PACKAGED)
def test_each_packaged_mapping_loads_by_name(name: str) -> None:
    assert csv_mapping.packaged(name).patient.type == "Patient"


def test_an_unknown_packaged_name_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(InvalidMapping, match="there are: nhs-111, social-care"):
        csv_mapping.packaged("ambulance")


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_modules_documented_example_is_a_valid_mapping() -> None:
    doc = csv_mapping.__doc__ or ""
    example = doc.split("The format, in full::\n\n", 1)[1].split("\n\n", 1)[0]
    mapping = csv_mapping.load("\n".join(line.removeprefix("    ") for line in example.splitlines()))
    assert [r.name for r in mapping.resources] == ["patient", "episode", "plan"]


def test_every_example_in_the_administrators_guide_is_a_valid_mapping() -> None:
    blocks = yaml_blocks(DOCS.read_text(encoding="utf-8"))
    assert blocks
    for block in blocks:
        if block.lstrip().startswith("columns:") or "\nresources:" in block:
            csv_mapping.load(block)


# --- the synthetic London's extracts ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def london(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("london-csv")
    generate(2_000, 11, date(2026, 4, 1), root)  # ~2 s; 300 people make only a handful of social care rows
    return root


@pytest.mark.parametrize(("name", "folder"), [("social-care", "social-care"), ("nhs-111", "111")])
def test_every_synthetic_extract_row_maps_to_valid_resources(london: Path, name: str, folder: str) -> None:
    mapping = csv_mapping.packaged(name)
    files = sorted((london / "feeds" / folder).glob("*.csv"))
    assert files
    rows = 0
    for path in files:
        ctx = Context(f"{path.stem}-{name}", path.stem if folder == "social-care" else "Y111L")
        with path.open(encoding="utf-8", newline="") as f:
            header, *data = csv.reader(f)
        for row in data:
            got = csv_mapping.map_row(mapping, header, row, ctx)  # a ParseError fails the test
            for entry in got.bundle["entry"]:
                validate_or_raise(entry["resource"])
            rows += 1
    assert rows >= 20
