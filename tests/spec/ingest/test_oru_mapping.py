"""ORU^R01 laboratory results as DiagnosticReport and Observation (src/sharedcare/ingest/hl7v2/oru.py).

The golden cases (tests/data/hl7v2/oru-r01-*) are London laboratory reports; the small messages
written here each show one rule of the mapping. The conformance corpus's ORU^R01 messages (US
senders, v2.5+) must map into valid resources, or be refused with an HL7 error code.
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

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CONTEXT = mapping.Context("winpath-rj7", "RJ7", "St George's University Hospitals NHS Foundation Trust")

HEADER = ("MSH|^~\\&|WINPATH|RJ7|SHAREDCARE|LONDON|20250728143000||ORU^R01^ORU_R01|RJ7LAB1|P|2.4|||||GBR|"
          "UNICODE UTF-8\r"
          "PID|1||RJ70000002^^^RJ7^MR~9625315403^^^NHS^NH||Ibrahim^Hassan^^^Mr^^L||19660111|M\r")
OBR = "OBR|1|P1|F1|26604007^Full blood count^SCT|||20250728091500|||||||||||||||20250728142900|||F\r"


def resources(got: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in got["bundle"]["entry"] if e["resource"]["resourceType"] == kind]


def full_url(got: dict[str, Any], resource: dict[str, Any]) -> str:
    return next(e["fullUrl"] for e in got["bundle"]["entry"] if e["resource"] is resource)


def map_text(text: str) -> mapping.Mapped:
    return mapping.map_message(parse(text), CONTEXT)


def one_observation(obx: str, obr: str = OBR, *, warned: bool = False) -> dict[str, Any]:
    """The Observation a message of one OBR and this one OBX makes (with no warning, unless `warned`:
    a field out of place shows as one)."""
    got = map_text(HEADER + obr + obx + "\r")
    assert bool(got.warnings) == warned, got.warnings
    [observation] = [e["resource"] for e in got.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    validate_or_raise(observation)
    return observation


def report_of(obr: str) -> dict[str, Any]:
    got = map_text(HEADER + obr)
    [report] = [e["resource"] for e in got.bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    validate_or_raise(report)
    return report


# --- the golden laboratory reports ------------------------------------------------------------------

def test_a_numeric_result_keeps_its_unit_range_and_flag() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-full-blood-count")
    haemoglobin = resources(got, "Observation")[0]
    assert haemoglobin["code"]["coding"][0] == {"system": SNOMED, "code": "1022431000000105",
                                                "display": "Haemoglobin estimation"}
    assert haemoglobin["valueQuantity"] == {"value": 112, "unit": "g/L", "system": UCUM, "code": "g/L"}
    assert haemoglobin["referenceRange"] == [{"low": {"value": 115, "unit": "g/L", "system": UCUM, "code": "g/L"},
                                              "high": {"value": 165, "unit": "g/L", "system": UCUM, "code": "g/L"},
                                              "text": "115-165"}]
    assert haemoglobin["interpretation"] == [{"coding": [{"system": V3_INTERPRETATION, "code": "L", "display": "Low"}]}]
    assert haemoglobin["status"] == "final"
    assert haemoglobin["category"][0]["coding"][0]["code"] == "laboratory"
    assert haemoglobin["effectiveDateTime"] == "2025-07-28T09:15:00+01:00"  # OBX-14, British Summer Time
    white_cells = resources(got, "Observation")[1]
    assert white_cells["interpretation"][0]["coding"][0]["code"] == "H"


def test_the_report_is_found_by_the_filler_order_number_and_lists_its_results() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-full-blood-count")
    [report] = resources(got, "DiagnosticReport")
    entry = next(e for e in got["bundle"]["entry"] if e["resource"] is report)
    assert entry["request"]["method"] == "PUT"
    assert entry["request"]["url"] == ("DiagnosticReport?identifier=https%3A%2F%2Fsharedcare.example%2FId%2Fhl7v2"
                                       "%2FRJ7%2Ffiller-order%7C25L0012345")
    assert report["identifier"][0]["value"] == "25L0012345"
    assert report["identifier"][0]["type"]["coding"][0]["code"] == "FILL"
    assert report["basedOn"][0]["identifier"]["value"] == "RJ7OCS0001234"  # the placer's order (OBR-2)
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "26604007"
    assert report["effectiveDateTime"] == "2025-07-28T09:15:00+01:00"  # OBR-7, when the sample was taken
    assert report["issued"] == "2025-07-28T14:29:00+01:00"  # OBR-22
    assert report["performer"] == [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                   "value": "RJ7"}}]
    assert [r["reference"] for r in report["result"]] == [full_url(got, o) for o in resources(got, "Observation")]
    patient_url = got["bundle"]["entry"][0]["fullUrl"]
    assert all(r["subject"]["reference"] == patient_url for r in [report, *resources(got, "Observation")])


def test_a_result_never_overwrites_the_patients_details() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-full-blood-count")
    patient_entry = got["bundle"]["entry"][0]
    assert patient_entry["resource"]["resourceType"] == "Patient"
    assert patient_entry["request"]["method"] == "POST"
    assert patient_entry["request"]["ifNoneExist"].startswith("identifier=")
    assert got["patient_key"] == "https://sharedcare.example/Id/hl7v2/RJ7/RJ7|RJ70000002"


def test_results_refer_to_the_visit_the_pv1_names() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-full-blood-count")
    visit = {"type": "Encounter", "identifier": {"system": "https://sharedcare.example/Id/hl7v2/RJ7/visit",
                                                 "value": "RJ7V000000001"}}
    assert all(r["encounter"] == visit for r in resources(got, "Observation") + resources(got, "DiagnosticReport"))


def test_each_obr_makes_its_own_report_with_its_own_results() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-two-reports")
    hba1c, crp = resources(got, "DiagnosticReport")
    assert (hba1c["code"]["coding"][0]["code"], crp["code"]["coding"][0]["code"]) == ("43396009", "55235003")
    assert (hba1c["identifier"][0]["value"], crp["identifier"][0]["value"]) == ("25L0012500", "25L0012501")
    observations = resources(got, "Observation")
    assert [r["reference"] for r in hba1c["result"]] == [full_url(got, observations[0])]
    assert [r["reference"] for r in crp["result"]] == [full_url(got, observations[1])]


def test_an_observation_without_its_own_time_takes_the_collection_time_of_its_report() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-two-reports")
    assert [o["effectiveDateTime"] for o in resources(got, "Observation")] == ["2025-07-30T09:00:00+01:00"] * 2


def test_a_numeric_result_below_the_limit_of_detection_keeps_its_comparator() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-two-reports")
    crp = resources(got, "Observation")[1]
    assert crp["valueQuantity"] == {"value": 4, "comparator": "<", "unit": "mg/L", "system": UCUM, "code": "mg/L"}
    assert crp["referenceRange"] == [{"high": {"value": 5, "unit": "mg/L", "system": UCUM, "code": "mg/L"},
                                      "text": "<5"}]


def test_an_egfr_over_90_sent_as_a_structured_numeric_is_a_quantity_with_its_comparator() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-egfr-structured-numeric")
    egfr = resources(got, "Observation")[1]
    assert egfr["valueQuantity"] == {"value": 90, "comparator": ">", "unit": "mL/min/{1.73_m2}", "system": UCUM,
                                     "code": "mL/min/{1.73_m2}"}
    assert "referenceRange" not in egfr
    assert "interpretation" not in egfr
    assert egfr["effectiveDateTime"] == "2026-01-14T09:30:00+00:00"  # Greenwich Mean Time in January


def test_decimals_keep_the_precision_they_were_sent_with() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-decimal-precision")
    cholesterol, hdl = resources(got, "Observation")
    assert b'"valueQuantity":{"value":5.20,' in jsonio.dumps(cholesterol)
    assert b'"valueQuantity":{"value":1.50,' in jsonio.dumps(hdl)
    assert b'"low":{"value":1.0,' in jsonio.dumps(hdl["referenceRange"])
    assert b'"high":{"value":5.0,' in jsonio.dumps(cholesterol["referenceRange"])
    # and what the store reads back is the same literal
    assert jsonio.dumps(jsonio.loads(jsonio.dumps(hdl))) == jsonio.dumps(hdl)


def test_a_corrected_report_replaces_the_earlier_one_under_the_same_identifiers() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-corrected-result")
    [report] = resources(got, "DiagnosticReport")
    sodium, potassium, creatinine = resources(got, "Observation")
    assert report["status"] == "corrected"
    assert (sodium["status"], potassium["status"], creatinine["status"]) == ("final", "corrected", "final")
    assert potassium["identifier"] == [{"system": "https://sharedcare.example/Id/hl7v2/RJ7/lab-result",
                                        "value": "25L0012399/2/1000651000000109"}]
    assert potassium["valueQuantity"]["value"] == 4.6
    entries = {e["resource"]["resourceType"] + e["resource"]["identifier"][0]["value"]: e["request"]["method"]
               for e in got["bundle"]["entry"][1:]}
    assert set(entries.values()) == {"PUT"}  # each replaces what the identifier finds


def test_notes_after_a_result_are_its_notes_and_after_the_request_the_reports_conclusion() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-text-result-with-notes")
    [report] = resources(got, "DiagnosticReport")
    microscopy, culture = resources(got, "Observation")
    assert report["conclusion"] == "No evidence of urinary tract infection."
    assert culture["note"] == [{"text": "Please send a repeat specimen if symptoms persist."},
                               {"text": "Mid-stream urine in a boric acid container is preferred."}]
    assert "note" not in microscopy


def test_text_results_are_strings_with_escapes_and_line_breaks_undone() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-text-result-with-notes")
    microscopy, culture = resources(got, "Observation")
    assert microscopy["valueString"] == "White cells <10 x10^6/L; red cells <10 x10^6/L"
    assert culture["valueString"] == ("No significant growth.\n"
                                      "Mixed growth of doubtful significance not identified further.")
    assert "referenceRange" not in microscopy
    assert microscopy["code"]["coding"][0]["system"] == "https://sharedcare.example/CodeSystem/hl7v2/RJ7/WINPATH"


def test_a_result_that_could_not_be_obtained_is_cancelled_with_a_data_absent_reason() -> None:
    got = golden.mapped_json(golden.GOLDEN / "oru-r01-result-not-obtained")
    sodium, potassium = resources(got, "Observation")
    assert sodium["status"] == "final"
    assert potassium["status"] == "cancelled"
    assert potassium["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert not any(k.startswith("value") for k in potassium)
    assert potassium["note"] == [{"text": "Sample haemolysed. Please repeat."}]


# --- one rule at a time -------------------------------------------------------------------------------

@pytest.mark.parametrize(("sn", "expected"), [
    ("<^5", {"valueQuantity": {"value": 5, "comparator": "<", "unit": "mmol/L", "system": UCUM,
                               "code": "mmol/L"}}),
    (">=^2.50", {"valueQuantity": {"value": 2.5, "comparator": ">=", "unit": "mmol/L", "system": UCUM,
                                   "code": "mmol/L"}}),
    ("^182", {"valueQuantity": {"value": 182, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}),
    ("=^7", {"valueQuantity": {"value": 7, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}),
    ("^10^-^20", {"valueRange": {"low": {"value": 10, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
                                 "high": {"value": 20, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}}),
    ("^1^:^128", {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 128}}}),
    ("^1^/^64", {"valueRatio": {"numerator": {"value": 1}, "denominator": {"value": 64}}}),
    ("^2^+", {"valueString": "2+"}),
])
def test_a_structured_numeric_is_a_quantity_range_ratio_or_text(sn: str, expected: dict[str, Any]) -> None:
    observation = one_observation(f"OBX|1|SN|1000651000000109^Serum potassium level^SCT||{sn}|mmol/L^^UCUM|||||F")
    assert {k: v for k, v in observation.items() if k.startswith("value")} == expected


def test_a_numeric_value_keeps_its_literal_even_with_a_leading_zero_or_plus_dropped() -> None:
    observation = one_observation("OBX|1|NM|1000651000000109^Serum potassium level^SCT||+04.50|mmol/L^^UCUM|||||F")
    assert b'"value":4.50' in jsonio.dumps(observation)


def test_a_numeric_value_that_is_not_a_number_is_kept_as_text_with_a_warning() -> None:
    got = map_text(HEADER + OBR + "OBX|1|NM|1000651000000109^Serum potassium level^SCT||see comment|mmol/L|||||F\r")
    [observation] = [e["resource"] for e in got.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert observation["valueString"] == "see comment"
    assert got.warnings == ["OBX-5 (segment 4): a numeric value that is not a number; kept as text"]


def test_a_unit_not_declared_as_ucum_is_kept_as_text_only() -> None:
    observation = one_observation("OBX|1|NM|1022431000000105^Haemoglobin estimation^SCT||112|g/L|115-165|L|||F")
    assert observation["valueQuantity"] == {"value": 112, "unit": "g/L"}


def test_a_coded_result_keeps_its_coding() -> None:
    observation = one_observation("OBX|1|CWE|ORG^Organism isolated^WINPATH||112283007^Escherichia coli^SCT|||A|||F")
    assert observation["valueCodeableConcept"] == {"coding": [{"system": SNOMED, "code": "112283007",
                                                               "display": "Escherichia coli"}],
                                                   "text": "Escherichia coli"}


@pytest.mark.parametrize(("flag", "code", "display"), [
    ("L", "L", "Low"), ("H", "H", "High"), ("LL", "LL", "Critical low"), ("HH", "HH", "Critical high"),
    ("N", "N", "Normal"), ("A", "A", "Abnormal"), ("AA", "AA", "Critical abnormal"), ("<", "<", "Off scale low"),
    (">", ">", "Off scale high"), ("POS", "POS", "Positive"), ("NEG", "NEG", "Negative"),
])
def test_abnormal_flags_are_v3_observation_interpretations(flag: str, code: str, display: str) -> None:
    observation = one_observation(f"OBX|1|NM|1000651000000109^Serum potassium level^SCT||4.1|mmol/L||{flag}|||F")
    assert observation["interpretation"] == [{"coding": [{"system": V3_INTERPRETATION, "code": code,
                                                          "display": display}]}]


def test_a_flag_outside_the_v3_codes_is_kept_under_table_0078() -> None:
    observation = one_observation("OBX|1|NM|1000651000000109^Serum potassium level^SCT||4.1|mmol/L||XX|||F")
    assert observation["interpretation"] == [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0078",
                                                          "code": "XX"}]}]


@pytest.mark.parametrize(("status", "expected"), [
    ("F", "final"), ("C", "corrected"), ("P", "preliminary"), ("R", "preliminary"), ("S", "preliminary"),
    ("I", "registered"), ("A", "amended"), ("D", "entered-in-error"), ("W", "entered-in-error"),
    ("X", "cancelled"), ("", "unknown"),
])
def test_the_result_status_follows_table_0085(status: str, expected: str) -> None:
    observation = one_observation(f"OBX|1|NM|1000651000000109^Serum potassium level^SCT||4.1|mmol/L|||||{status}",
                                  warned=not status)
    assert observation["status"] == expected


@pytest.mark.parametrize(("status", "expected"), [
    ("F", "final"), ("C", "corrected"), ("P", "preliminary"), ("X", "cancelled"), ("I", "registered"),
    ("O", "registered"), ("S", "registered"), ("A", "partial"), ("R", "partial"), ("", "unknown"),
])
def test_the_report_status_follows_table_0123(status: str, expected: str) -> None:
    report = report_of(f"OBR|1|P1|F1|26604007^Full blood count^SCT|||20250728091500||||||||||||||||||{status}\r")
    assert report["status"] == expected


@pytest.mark.parametrize(("text", "low", "high"), [
    ("115-165", 115, 165), ("4.3 to 6.2", 4.3, 6.2), ("<5", None, 5), ("<=5", None, 5), (">2", 2, None),
    ("-2-2", -2, 2), ("0.0 - 0.45", 0.0, 0.45),
])
def test_a_reference_range_gives_its_limits_and_keeps_its_text(text: str, low: float | None,
                                                                high: float | None) -> None:
    observation = one_observation(f"OBX|1|NM|1000651000000109^Serum potassium level^SCT||4.1|mmol/L|{text}||||F")
    [reference_range] = observation["referenceRange"]
    assert reference_range["text"] == text
    assert reference_range.get("low", {}).get("value") == low
    assert reference_range.get("high", {}).get("value") == high


def test_a_reference_range_that_is_not_numeric_is_kept_as_text() -> None:
    observation = one_observation("OBX|1|NM|1000651000000109^Serum potassium level^SCT||4.1|mmol/L|see report||||F")
    assert observation["referenceRange"] == [{"text": "see report"}]


def test_the_observation_identifier_is_the_report_set_id_code_and_sub_id() -> None:
    observation = one_observation("OBX|3|NM|1000651000000109^Serum potassium level^SCT|2|4.1|mmol/L|||||F")
    assert observation["identifier"][0]["value"] == "F1/3/1000651000000109/2"


def test_without_a_filler_number_the_report_is_found_by_the_placers() -> None:
    report = report_of("OBR|1|P1||26604007^Full blood count^SCT|||20250728091500||||||||||||||||||F\r")
    assert report["identifier"][0]["value"] == "P1"
    assert report["identifier"][0]["type"]["coding"][0]["code"] == "PLAC"
    assert "basedOn" not in report


def test_a_radiology_report_makes_imaging_observations() -> None:
    obr = "OBR|1|P1|F1|168537006^Plain chest X-ray^SCT|||20250728091500|||||||||||||||20250728142900||RAD|F\r"
    observation = one_observation("OBX|1|TX|REP^Report^CRIS||No active lung lesion.||||||F", obr)
    assert observation["category"][0]["coding"][0]["code"] == "imaging"


def test_specimen_observations_after_spm_are_not_results() -> None:
    got = map_text(HEADER + OBR + "OBX|1|NM|1000651000000109^Serum potassium level^SCT||4.1|mmol/L|||||F\r"
                   "SPM|1|S1||119297000^Blood specimen^SCT\r"
                   "OBX|1|NM|SPECVOL^Specimen volume^WINPATH||5|mL|||||F\r")
    assert len([e for e in got.bundle["entry"] if e["resource"]["resourceType"] == "Observation"]) == 1


@pytest.mark.parametrize(("text", "code", "field_no"), [
    (HEADER + "ORC|RE|P1|F1\r", "101", 0),
    (HEADER + "OBR|1|||26604007^Full blood count^SCT||||||||||||||||||||F\r", "101", 3),
    (HEADER + "OBR|1|P1|F1|||||||||||||||||||||F\r", "101", 4),
    (HEADER + OBR + "OBX|1|NM|||4.1|mmol/L|||||F\r", "101", 3),
    (HEADER + OBR + "PID|2||RJ70000009^^^RJ7^MR\r" + OBR, "100", 0),
])
def test_a_result_message_that_cannot_be_filed_is_refused_with_an_hl7_error_code(text: str, code: str,
                                                                                  field_no: int) -> None:
    with pytest.raises(ParseError) as caught:
        map_text(text)
    assert caught.value.code == code
    assert caught.value.field_no == field_no
    assert "Ibrahim" not in str(caught.value)
    assert "RJ7000000" not in str(caught.value)


def test_only_the_r01_trigger_is_accepted() -> None:
    with pytest.raises(ParseError) as caught:
        map_text(HEADER.replace("ORU^R01^ORU_R01", "ORU^R30^ORU_R30") + OBR)
    assert caught.value.code == "201"


# --- the conformance corpus ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", corpus.messages_of("ORU", "R01"))
def test_the_conformance_result_messages_map_to_valid_resources_or_an_hl7_error(path: Path) -> None:
    _, kinds = corpus.mapped_or_refused(path)
    if kinds is not None:
        assert "DiagnosticReport" in kinds
