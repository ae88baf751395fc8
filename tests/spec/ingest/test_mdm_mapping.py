"""MDM clinical documents as DocumentReference (src/sharedcare/ingest/hl7v2/mdm.py).

The golden cases (tests/data/hl7v2/mdm-*) are London documents: a discharge summary in text lines, a
restricted clinic letter authenticated, a corrected summary replacing the first, a letter cancelled, a
consultation letter as a PDF; the small messages written here each show one rule of the mapping. The
conformance corpus's MDM messages (US senders, v2.3 to v2.8) must map into valid resources.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.ingest.hl7v2.message import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, ParseError, parse
from tests.spec.ingest import golden
from tests.support.conformance import conformance_files

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
DOCUMENT_SYSTEM = "https://sharedcare.example/Id/hl7v2/RJ7/document"
CONTEXT = mapping.Context("epr-rj7", "RJ7", "St George's University Hospitals NHS Foundation Trust")
HEAD = ("PID|1||RJ70000002^^^RJ7^MR~9625315403^^^NHS^NH||Ibrahim^Hassan^^^Mr^^L||19660111|M",
        "PV1|1|I|Victoria Ward^^^St George's Hospital||||||||||||||||RJ7V000000001")


def document_entry(got: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in got["bundle"]["entry"]
                                   if e["resource"]["resourceType"] == "DocumentReference"]
    [entry] = found
    return entry


def golden_document(case: str) -> dict[str, Any]:
    resource: dict[str, Any] = document_entry(golden.mapped_json(golden.GOLDEN / case))["resource"]
    return resource


def text_of(attachment: dict[str, Any]) -> str:
    return base64.b64decode(attachment["data"]).decode("utf-8")


def txa(trigger: str = "T02", *, number: str = "D1", parent: str = "", completion: str = "AU",
        availability: str = "AV", confidentiality: str = "") -> str:
    fields = {1: "1", 2: "CN^Consultation^HL70270", 6: "20250805164500", 12: number, 13: parent, 17: completion,
              18: confidentiality, 19: availability}
    return "|".join(["TXA", *(fields.get(n, "") for n in range(1, 20))])


def mdm(trigger: str, *segments: str) -> mapping.Mapped:
    """The mapping of a small MDM message: the patient and visit, then `segments` (TXA, OBX ...)."""
    text = "\r".join([f"MSH|^~\\&|EPR|RJ7|SHAREDCARE|LONDON|20250805170000||MDM^{trigger}^MDM_{trigger}|C1|P|2.5",
                      *HEAD, *segments]) + "\r"
    return mapping.map_message(parse(text), CONTEXT)


def mapped_document(trigger: str, *segments: str) -> tuple[dict[str, Any], mapping.Mapped]:
    got = mdm(trigger, *segments)
    entry = document_entry({"bundle": got.bundle})
    validate_or_raise(entry["resource"])
    return entry, got


def test_a_discharge_summary_is_one_text_attachment_of_its_lines_in_order() -> None:
    document = golden_document("mdm-t02-discharge-summary")
    [content] = document["content"]
    assert content["attachment"]["contentType"] == "text/plain; charset=utf-8"
    assert text_of(content["attachment"]) == (
        "Discharge summary: Victoria Ward, St George's Hospital\n"
        "Admitted 27/07/2025 after a fall; head injury (concussion), CT head normal.\n"
        "\n"  # an empty OBX is a blank line of the document
        "Medication on discharge:\n"  # FT's \.br\ is a line break
        "Paracetamol 1 g four times a day & as required\n"  # \T\ the subcomponent separator as text
        "Follow-up: fracture clinic in 2 weeks (ref^FC-12)\n"
        "GP actions: none.")


def test_an_authenticated_document_is_final_current_and_names_its_authors_and_authenticator() -> None:
    document = golden_document("mdm-t02-discharge-summary")
    assert document["status"] == "current"
    assert document["docStatus"] == "final"
    assert [a["display"] for a in document["author"]] == ["Dr Chidi Okafor", "Dr Priya Shah"]  # TXA-9, then TXA-5
    assert document["authenticator"]["identifier"]["value"] == "C4567890"  # TXA-22
    assert document["custodian"]["identifier"] == {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                                   "value": "RJ7"}


def test_the_document_number_is_the_master_identifier_and_the_key() -> None:
    got = golden.mapped_json(golden.GOLDEN / "mdm-t02-discharge-summary")
    entry = document_entry(got)
    assert entry["resource"]["masterIdentifier"] == {"system": DOCUMENT_SYSTEM, "value": "RJ7D000000789"}
    assert entry["request"] == {"method": "PUT", "url": "DocumentReference?identifier=https%3A%2F%2Fsharedcare.example"
                                "%2FId%2Fhl7v2%2FRJ7%2Fdocument%7CRJ7D000000789"}


def test_the_document_is_about_its_patient_and_visit_with_its_type_and_times() -> None:
    got = golden.mapped_json(golden.GOLDEN / "mdm-t02-discharge-summary")
    document = document_entry(got)["resource"]
    patient = next(e for e in got["bundle"]["entry"] if e["resource"]["resourceType"] == "Patient")
    assert document["subject"] == {"reference": patient["fullUrl"]}
    assert patient["request"]["method"] == "POST"  # a document never overwrites the patient's details
    assert document["type"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "373942005",
                                             "display": "Discharge summary"}
    assert document["date"] == "2025-07-30T15:55:00+01:00"  # TXA-6, origination
    assert document["context"]["period"] == {"start": "2025-07-30T14:30:00+01:00"}  # TXA-4, the activity
    assert document["context"]["encounter"] == [{"type": "Encounter", "identifier": {
        "system": "https://sharedcare.example/Id/hl7v2/RJ7/visit", "value": "RJ7V000000001"}}]


def test_a_restricted_document_is_labelled_so_it_stays_within_its_source() -> None:
    document = golden_document("mdm-t04-status-change")
    assert document["meta"]["security"] == [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]
    assert document["securityLabel"][0]["coding"][1]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0272"
    assert document["docStatus"] == "final"  # LA: legally authenticated


def test_a_replacement_replaces_its_parent_and_is_amended() -> None:
    document = golden_document("mdm-t10-replacement")
    assert document["masterIdentifier"]["value"] == "RJ7D000000791"
    assert document["relatesTo"] == [{"code": "replaces", "target": {
        "type": "DocumentReference", "identifier": {"system": DOCUMENT_SYSTEM, "value": "RJ7D000000789"}}}]
    assert document["docStatus"] == "amended"
    assert document["status"] == "current"


def test_a_cancelled_document_is_entered_in_error_without_its_content_and_stays_restricted() -> None:
    got = golden.mapped_json(golden.GOLDEN / "mdm-t11-cancel")
    entry = document_entry(got)
    document = entry["resource"]
    assert entry["request"]["method"] == "PUT"  # a cancel always applies, even to a document already held
    assert document["status"] == "entered-in-error"
    assert document["_status"]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "CA"
    assert document["content"] == [{"attachment": {"title": "Report of clinical encounter"}}]
    # The cancel does not say how confidential the letter was, and it replaces the stored version.
    assert document["meta"]["security"] == [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]
    assert any("TXA-18" in w for w in got["warnings"])


def test_a_cancel_that_gives_the_confidentiality_is_labelled_as_it_says() -> None:
    entry, got = mapped_document("T11", txa("T11", confidentiality="U"))
    assert entry["resource"]["meta"]["security"] == [{"system": CONFIDENTIALITY, "code": "N", "display": "normal"}]
    assert not got.warnings


def test_a_pdf_letter_is_attached_as_sent() -> None:
    case = golden.GOLDEN / "mdm-t02-pdf-letter"
    sent = case.joinpath("input.hl7").read_text(encoding="utf-8").split("^Base64^")[1].split("|")[0]
    [content] = golden_document("mdm-t02-pdf-letter")["content"]
    assert content["attachment"] == {"contentType": "application/pdf", "data": sent}
    assert base64.b64decode(sent).startswith(b"%PDF-")


def test_encapsulated_data_that_is_not_base64_is_refused_as_a_data_type_error() -> None:
    with pytest.raises(ParseError) as refused:
        mdm("T02", txa(), "OBX|1|ED|11488-4^Consult note^LN||^application^pdf^Base64^JVBER*i0xLjQK||||||F")
    assert refused.value.code == DATA_TYPE_ERROR
    assert (refused.value.segment, refused.value.field_no) == ("OBX", 5)
    assert "JVBER" not in str(refused.value)  # errors never quote the message


def test_hex_and_ascii_encapsulated_data_are_carried_as_base64() -> None:
    entry, _ = mapped_document("T02", txa(), "OBX|1|ED|X^Letter^L||^TEXT^plain^Hex^48656C6C6F||||||F",
                               "OBX|2|ED|X^Letter^L||^AP^RTF^A^{\\E\\rtf1 Hi}||||||F")
    hex_content, ascii_content = entry["resource"]["content"]
    assert hex_content["attachment"] == {"contentType": "text/plain", "data": base64.b64encode(b"Hello").decode()}
    assert ascii_content["attachment"]["contentType"] == "application/rtf"
    assert text_of(ascii_content["attachment"]) == "{\\rtf1 Hi}"


def test_a_reference_pointer_becomes_the_attachments_url() -> None:
    entry, _ = mapped_document("T02", txa(), "OBX|1|RP|X^Letter^L||https://docs.rj7.nhs.uk/letters/D1.pdf^EPR^AP^PDF"
                               "||||||F")
    assert entry["resource"]["content"] == [{"attachment": {"url": "https://docs.rj7.nhs.uk/letters/D1.pdf",
                                                            "contentType": "application/pdf"}}]


def test_text_and_a_pdf_in_one_message_are_two_attachments() -> None:
    pdf = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    entry, _ = mapped_document("T02", txa(), "OBX|1|TX|X^Letter^L||Dear Dr Patel,||||||F",
                               f"OBX|2|ED|X^Letter^L||^application^pdf^Base64^{pdf}||||||F",
                               "OBX|3|TX|X^Letter^L||Yours sincerely||||||F")
    text, attached = entry["resource"]["content"]
    assert text_of(text["attachment"]) == "Dear Dr Patel,\nYours sincerely"
    assert attached["attachment"]["data"] == pdf


def test_a_notification_without_content_never_blanks_a_document_already_held() -> None:
    entry, got = mapped_document("T01", txa("T01"))
    assert entry["request"]["method"] == "POST"
    assert entry["request"]["ifNoneExist"] == ("identifier=https%3A%2F%2Fsharedcare.example%2FId%2Fhl7v2%2FRJ7"
                                               "%2Fdocument%7CD1")
    assert entry["resource"]["content"] == [{"attachment": {"title": "Consultation"}}]
    assert any("no document content" in w for w in got.warnings)


def test_an_addendum_appends_to_its_parent() -> None:
    entry, _ = mapped_document("T06", txa("T06", number="D2", parent="D1"), "OBX|1|TX|X^Addendum^L||Addendum.||||||F")
    assert entry["resource"]["relatesTo"] == [{"code": "appends", "target": {
        "type": "DocumentReference", "identifier": {"system": DOCUMENT_SYSTEM, "value": "D1"}}}]
    assert entry["resource"]["docStatus"] == "final"  # an addendum is a document of its own, not an edit


@pytest.mark.parametrize(("availability", "status"), [("AV", "current"), ("", "current"), ("OB", "superseded"),
                                                      ("CA", "entered-in-error"), ("UN", "current")])
def test_the_availability_status_says_whether_the_document_is_current(availability: str, status: str) -> None:
    entry, _ = mapped_document("T04", txa("T04", availability=availability), "OBX|1|TX|X^Letter^L||Text.||||||F")
    document = entry["resource"]
    assert document["status"] == status
    kept = document.get("_status", {}).get("extension", [{}])[0].get("valueCodeableConcept", {}).get("coding")
    assert kept == ([{"system": "http://terminology.hl7.org/CodeSystem/v2-0275", "code": availability}]
                    if availability in ("OB", "CA", "UN") else None)


@pytest.mark.parametrize(("completion", "doc_status"), [("AU", "final"), ("LA", "final"), ("DI", "preliminary"),
                                                        ("DO", "preliminary"), ("IN", "preliminary"),
                                                        ("IP", "preliminary"), ("PA", "preliminary")])
def test_the_completion_status_is_the_document_status(completion: str, doc_status: str) -> None:
    entry, _ = mapped_document("T02", txa(completion=completion), "OBX|1|TX|X^Letter^L||Text.||||||F")
    assert entry["resource"]["docStatus"] == doc_status


def test_a_document_without_a_unique_number_is_refused() -> None:
    with pytest.raises(ParseError) as refused:
        mdm("T02", txa(number=""), "OBX|1|TX|X^Letter^L||Text.||||||F")
    assert refused.value.code == REQUIRED_FIELD_MISSING
    assert (refused.value.segment, refused.value.field_no) == ("TXA", 12)


def test_a_message_without_a_document_header_is_refused() -> None:
    with pytest.raises(ParseError) as refused:
        mdm("T02", "OBX|1|TX|X^Letter^L||Text.||||||F")
    assert refused.value.code == REQUIRED_FIELD_MISSING
    assert refused.value.segment == "TXA"


@pytest.mark.parametrize("path", conformance_files("hl7v2", "MDM-*.hl7"))
def test_the_conformance_corpus_mdm_messages_map_to_valid_document_references(path: Path) -> None:
    msg = parse(path.read_text(encoding="utf-8"))
    got = mapping.map_message(msg, mapping.Context(msg.sending_facility, msg.sending_facility))
    for entry in got.bundle["entry"]:
        validate_or_raise(entry["resource"])
    document = document_entry({"bundle": got.bundle})["resource"]
    assert document["masterIdentifier"]["value"]
    assert document["content"]
    if msg.trigger in ("T05", "T06"):
        assert document["relatesTo"][0]["code"] == "appends"
