"""VXU^V04 vaccination records as Immunization (src/sharedcare/ingest/hl7v2/vxu.py).

The golden cases (tests/data/hl7v2/vxu-v04-*) are a neonatal unit's records for one baby: a dose given,
one refused, one not given, the first dose deleted again, and another baby's historical BCG. The small
messages written here each show one rule. The conformance corpus's VXU^V04 messages (US senders, v2.5.1
and v2.8) must map into valid resources, or be refused with an HL7 error code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedcare.fhir import jsonio
from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.ingest.hl7v2.message import ParseError, parse
from tests.spec.ingest import corpus, golden

DMD = "https://dmd.nhs.uk"
UCUM = "http://unitsofmeasure.org"
CONTEXT = mapping.Context("epma-rj7", "RJ7", "St George's University Hospitals NHS Foundation Trust")
HEADER = ("MSH|^~\\&|EPMA|RJ7|SHAREDCARE|LONDON|20250801103000||VXU^V04^VXU_V04|RJ7IMM1|P|2.5.1|||||GBR|"
          "UNICODE UTF-8\r"
          "PID|1||RJ70000101^^^RJ7^MR~9990000034^^^NHS^NH||Begum^Aisha^^^^^L||20250603|F\r")
BEXSERO = "23584211000001109^Bexsero vaccine suspension for injection 0.5ml pre-filled syringes^DMD"


def immunizations(got: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in got["bundle"]["entry"] if e["resource"]["resourceType"] == "Immunization"]


def one_immunization(segments: str, *, warned: bool = False) -> dict[str, Any]:
    """The Immunization a message of these ORC/RXA/RXR segments makes (no warning unless `warned`)."""
    got = mapping.map_message(parse(HEADER + segments), CONTEXT)
    assert bool(got.warnings) == warned, got.warnings
    [immunization] = [e["resource"] for e in got.bundle["entry"] if e["resource"]["resourceType"] == "Immunization"]
    validate_or_raise(immunization)
    return immunization


def rxa(completion: str = "CP", action: str = "A", *, amount: str = "0.5", source: str = "00",
        manufacturer: str = "") -> str:
    """An RXA giving Bexsero, its fields by position."""
    fields = {1: "0", 2: "1", 3: "20250801101500", 5: BEXSERO, 6: amount, 7: "mL^^UCUM", 9: source,
              17: manufacturer, 20: completion, 21: action}
    return "|".join(["RXA", *(fields.get(n, "") for n in range(1, 22))]) + "\r"


# --- the golden vaccination records ----------------------------------------------------------------

def test_a_completed_vaccination_keeps_its_product_lot_expiry_and_manufacturer() -> None:
    got = golden.mapped_json(golden.GOLDEN / "vxu-v04-completed-with-lot-and-expiry")
    [given] = immunizations(got)
    assert given["status"] == "completed"
    assert given["vaccineCode"]["coding"] == [{
        "system": DMD, "code": "34765811000001105",
        "display": "Infanrix Hexa vaccine powder and suspension for suspension for injection 0.5ml pre-filled "
                   "syringes"}]
    assert given["occurrenceDateTime"] == "2025-08-01T10:15:00+01:00"
    assert given["recorded"] == "2025-08-01T10:20:00+01:00"  # RXA-22
    assert given["lotNumber"] == "AHAVC123AB"
    assert given["expirationDate"] == "2026-11-30"
    assert given["manufacturer"] == {"type": "Organization", "display": "GlaxoSmithKline UK Ltd",
                                     "identifier": {"system": "https://sharedcare.example/Id/hl7v2/RJ7/manufacturer",
                                                    "value": "GSK"}}
    assert given["doseQuantity"] == {"value": 0.5, "unit": "mL", "system": UCUM, "code": "mL"}
    assert b'"doseQuantity":{"value":0.5,' in jsonio.dumps(given)
    assert given["primarySource"] is True
    assert "reportOrigin" not in given


def test_route_and_site_are_coded_as_sent() -> None:
    [given] = immunizations(golden.mapped_json(golden.GOLDEN / "vxu-v04-completed-with-lot-and-expiry"))
    assert given["route"]["coding"] == [{"system": "http://snomed.info/sct", "code": "78421000",
                                         "display": "Intramuscular route"}]
    assert given["site"]["coding"] == [{"system": "http://snomed.info/sct", "code": "61396006",
                                        "display": "Left thigh structure"}]


def test_the_administering_and_ordering_clinicians_are_the_performers() -> None:
    [given] = immunizations(golden.mapped_json(golden.GOLDEN / "vxu-v04-completed-with-lot-and-expiry"))
    staff = "https://sharedcare.example/Id/hl7v2/RJ7/staff"
    assert [(p["function"]["coding"][0]["code"], p["actor"]) for p in given["performer"]] == [
        ("AP", {"type": "Practitioner", "identifier": {"system": staff, "value": "N7654321"},
                "display": "Ms Funmilayo Adeyemi"}),
        ("OP", {"type": "Practitioner", "identifier": {"system": staff, "value": "C456"}, "display": "Dr Priya Shah"})]


def test_the_vaccination_is_found_by_the_filler_order_number_and_refers_to_the_admission() -> None:
    got = golden.mapped_json(golden.GOLDEN / "vxu-v04-completed-with-lot-and-expiry")
    [given] = immunizations(got)
    assert given["identifier"] == [{"system": "https://sharedcare.example/Id/hl7v2/RJ7/vaccination-order",
                                    "value": "RJ7IMM0005501",
                                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                         "code": "FILL"}]}}]
    assert given["encounter"]["identifier"]["value"] == "RJ7V000000201"
    assert given["patient"]["reference"] == got["bundle"]["entry"][0]["fullUrl"]


def test_a_vaccination_never_overwrites_the_patients_details_and_its_obx_segments_are_not_mapped() -> None:
    got = golden.mapped_json(golden.GOLDEN / "vxu-v04-completed-with-lot-and-expiry")
    assert [e["resource"]["resourceType"] for e in got["bundle"]["entry"]] == ["Patient", "Immunization"]
    assert got["bundle"]["entry"][0]["request"]["method"] == "POST"
    assert got["warnings"] == []


def test_a_refused_vaccination_is_not_done_for_the_reason_given() -> None:
    [refused] = immunizations(golden.mapped_json(golden.GOLDEN / "vxu-v04-refused"))
    assert refused["status"] == "not-done"
    assert refused["statusReason"]["coding"][0]["code"] == "00"
    assert refused["statusReason"]["text"] == "Parental decision"
    assert refused["vaccineCode"]["coding"][0]["code"] == "34609911000001106"
    assert "doseQuantity" not in refused  # 999: no amount
    assert "primarySource" not in refused  # RXA-9 empty: not said


def test_a_vaccination_not_given_is_not_done() -> None:
    [not_given] = immunizations(golden.mapped_json(golden.GOLDEN / "vxu-v04-not-administered"))
    assert not_given["status"] == "not-done"
    assert "statusReason" not in not_given
    assert "doseQuantity" not in not_given


def test_a_deleted_vaccination_replaces_the_record_as_entered_in_error() -> None:
    given = golden.mapped_json(golden.GOLDEN / "vxu-v04-completed-with-lot-and-expiry")["bundle"]["entry"][1]
    deleted = golden.mapped_json(golden.GOLDEN / "vxu-v04-entered-in-error")["bundle"]["entry"][1]
    assert deleted["resource"]["status"] == "entered-in-error"
    assert deleted["fullUrl"] == given["fullUrl"]
    assert deleted["request"] == given["request"] == {
        "method": "PUT", "url": "Immunization?identifier=https%3A%2F%2Fsharedcare.example%2FId%2Fhl7v2%2FRJ7"
                                "%2Fvaccination-order%7CRJ7IMM0005501"}


def test_a_historical_record_is_not_a_primary_source_and_says_where_it_came_from() -> None:
    [historical] = immunizations(golden.mapped_json(golden.GOLDEN / "vxu-v04-historical-record"))
    assert historical["primarySource"] is False
    assert historical["reportOrigin"]["coding"][0]["code"] == "01"
    assert historical["vaccineCode"]["coding"] == [{"system": "http://hl7.org/fhir/sid/cvx", "code": "19",
                                                    "display": "BCG"}]
    assert historical["occurrenceDateTime"] == "2025-02-12"  # a date only: no time is invented


def test_without_an_order_number_the_vaccination_is_found_by_patient_vaccine_and_date() -> None:
    [historical] = immunizations(golden.mapped_json(golden.GOLDEN / "vxu-v04-historical-record"))
    assert historical["identifier"] == [{"system": "https://sharedcare.example/Id/hl7v2/RJ7/vaccination",
                                         "value": "RJ70000102/19/20250212"}]


# --- one rule at a time -------------------------------------------------------------------------------

def test_a_refusal_without_a_reason_is_a_patient_objection() -> None:
    refused = one_immunization("ORC|RE||F1\r" + rxa("RE", amount="999", source=""))
    assert refused["statusReason"] == {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                   "code": "PATOBJ", "display": "patient objection"}]}


def test_a_partial_dose_is_completed_but_subpotent() -> None:
    partial = one_immunization("ORC|RE||F1\r" + rxa("PA", amount="0.25"))
    assert partial["status"] == "completed"
    assert partial["isSubpotent"] is True
    assert partial["subpotentReason"][0]["coding"][0]["code"] == "partial"
    assert partial["doseQuantity"]["value"] == 0.25


def test_an_empty_completion_status_means_completed() -> None:
    assert one_immunization("ORC|RE||F1\r" + rxa(""))["status"] == "completed"


def test_the_delete_action_wins_over_the_completion_status() -> None:
    assert one_immunization("ORC|RE||F1\r" + rxa("RE", "D", amount="999"))["status"] == "entered-in-error"


@pytest.mark.parametrize(("source", "origin"), [("02", "provider"), ("04", "recall"), ("07", "school")])
def test_a_historical_source_is_also_given_as_a_fhir_immunization_origin(source: str, origin: str) -> None:
    historical = one_immunization("ORC|RE||F1\r" + rxa(source=f"{source}^Historical^NIP001"))
    assert historical["primarySource"] is False
    assert [c["code"] for c in historical["reportOrigin"]["coding"]] == [source, origin]


def test_a_mvx_manufacturer_is_identified_under_the_mvx_system() -> None:
    given = one_immunization("ORC|RE||F1\r" + rxa(manufacturer="SKB^GlaxoSmithKline^MVX"))
    assert given["manufacturer"]["identifier"] == {"system": "http://hl7.org/fhir/sid/mvx", "value": "SKB"}


def test_each_rxa_is_its_own_immunization_with_its_own_order_number() -> None:
    got = mapping.map_message(parse(HEADER + "ORC|RE||F1\r" + rxa() + "ORC|RE||F2\r" + rxa("RE", amount="999")),
                              CONTEXT)
    found = [e["resource"] for e in got.bundle["entry"] if e["resource"]["resourceType"] == "Immunization"]
    assert [(i["identifier"][0]["value"], i["status"]) for i in found] == [("F1", "completed"), ("F2", "not-done")]


def test_a_dose_that_is_not_a_number_is_left_out_with_a_warning() -> None:
    given = one_immunization("ORC|RE||F1\r" + rxa(amount="half"), warned=True)
    assert "doseQuantity" not in given


@pytest.mark.parametrize(("segments", "code", "field_no"), [
    ("ORC|RE||F1\r", "101", 0),
    ("ORC|RE||F1\rRXA|0|1|20250801101500||||||00|||||||||||CP|A\r", "101", 5),
    ("ORC|RE||F1\rRXA|0|1|||" + BEXSERO + "|0.5|mL||00|||||||||||CP|A\r", "101", 3),
    ("ORC|RE||F1\rRXA|0|1|2025-08-01||" + BEXSERO + "|0.5|mL||00|||||||||||CP|A\r", "102", 3),
])
def test_a_vaccination_message_that_cannot_be_filed_is_refused_with_an_hl7_error_code(segments: str, code: str,
                                                                                       field_no: int) -> None:
    with pytest.raises(ParseError) as caught:
        mapping.map_message(parse(HEADER + segments), CONTEXT)
    assert caught.value.code == code
    assert caught.value.field_no == field_no
    assert "2025-08-01" not in str(caught.value)  # never quotes the record


def test_only_the_v04_trigger_is_accepted() -> None:
    with pytest.raises(ParseError) as caught:
        mapping.map_message(parse(HEADER.replace("VXU^V04^VXU_V04", "VXU^V03") + "ORC|RE||F1\r" + rxa()), CONTEXT)
    assert caught.value.code == "201"


# --- the conformance corpus ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", corpus.messages_of("VXU", "V04"))
def test_the_conformance_vaccination_messages_map_to_valid_resources_or_an_hl7_error(path: Path) -> None:
    msg, kinds = corpus.mapped_or_refused(path)
    if kinds is not None:
        assert kinds.count("Immunization") == len(msg.all("RXA"))
