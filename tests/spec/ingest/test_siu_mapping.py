"""SIU outpatient bookings as Appointment (src/sharedcare/ingest/hl7v2/siu.py).

The golden cases (tests/data/hl7v2/siu-*) follow London bookings through their life: booked,
rescheduled, attended, cancelled, not attended, deleted; the small messages written here each show one
rule of the mapping. The synthetic London feed's SIU messages map as the story says, and the
conformance corpus's SIU messages (US senders, v2.8) map into valid resources or are refused with an
HL7 error code.
"""

from __future__ import annotations

from datetime import date, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.ingest.hl7v2.message import REQUIRED_FIELD_MISSING, UNSUPPORTED_EVENT_CODE, ParseError, parse
from sharedcare.synth import hl7v2 as synth
from sharedcare.synth.story import Appointment, Recorded
from tests.spec.ingest import golden
from tests.support.conformance import conformance_files

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
HL7_ERROR_CODES = {"100", "101", "102", "103", "200", "201", "202", "203", "204", "205", "206", "207"}
CONTEXT = mapping.Context("pas-rj7", "RJ7", "St George's University Hospitals NHS Foundation Trust")
PID = "PID|1||RJ70000002^^^RJ7^MR~9625315403^^^NHS^NH||Ibrahim^Hassan^^^Mr^^L||19660111|M"


def appointment_of(got: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e["resource"] for e in got["bundle"]["entry"]
                                   if e["resource"]["resourceType"] == "Appointment"]
    [appointment] = found
    return appointment


def entry_of(got: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in got["bundle"]["entry"] if e["resource"]["resourceType"] == kind)


def golden_appointment(case: str) -> dict[str, Any]:
    return appointment_of(golden.mapped_json(golden.GOLDEN / case))


def siu(trigger: str, sch: str, *after: str) -> mapping.Mapped:
    """The mapping of a small SIU message: its SCH, the patient, then `after` (RGS, AIL ...)."""
    text = "\r".join([f"MSH|^~\\&|PAS|RJ7|SHAREDCARE|LONDON|20250714090000||SIU^{trigger}^SIU_S12|C1|P|2.4",
                      sch, PID, *after]) + "\r"
    return mapping.map_message(parse(text), CONTEXT)


def mapped_appointment(trigger: str, sch: str, *after: str) -> dict[str, Any]:
    got = siu(trigger, sch, *after)
    appointment = appointment_of({"bundle": got.bundle})
    validate_or_raise(appointment)
    return appointment


def sch(status: str = "Booked", timing: str = "^^M30^20250805093000^20250805100000", reason: str = "") -> str:
    """An SCH with appointment id A1, the event reason, the timing (SCH-11) and the filler status (SCH-25)."""
    return f"SCH|A1|A1||||{reason}|||30|min|{timing}||||||||||||||{status}"


def test_a_new_booking_is_a_booked_appointment_for_the_patient_at_its_clinic() -> None:
    got = golden.mapped_json(golden.GOLDEN / "siu-s12-booked")
    appointment = appointment_of(got)
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2025-08-05T09:30:00+01:00"
    assert appointment["end"] == "2025-08-05T10:00:00+01:00"
    assert appointment["minutesDuration"] == 30
    patient, clinic, consultant, trust = appointment["participant"]
    assert patient == {"actor": {"reference": entry_of(got, "Patient")["fullUrl"]}, "status": "accepted"}
    assert clinic["actor"] == {"reference": entry_of(got, "Location")["fullUrl"]}
    assert entry_of(got, "Location")["resource"]["name"] == "Cardiology Clinic 3"
    assert consultant["actor"]["display"] == "Dr Priya Shah"
    assert consultant["actor"]["identifier"] == {"system": "https://sharedcare.example/Id/hl7v2/RJ7/staff",
                                                 "value": "C4567890"}
    assert consultant["type"][0]["coding"][0]["code"] == "CON"
    assert trust["actor"]["identifier"] == {"system": ODS, "value": "RJ7"}


def test_the_appointment_reason_type_service_and_specialty_are_kept_as_coded() -> None:
    appointment = golden_appointment("siu-s12-booked")
    assert appointment["reasonCode"][0]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "29857009", "display": "Chest pain"}]
    assert appointment["appointmentType"]["coding"][0]["code"] == "FIRST"
    assert appointment["serviceType"][0]["text"] == "Cardiology outpatients"
    assert appointment["specialty"][0]["coding"][0]["code"] == "320"
    assert "cancelationReason" not in appointment


def test_a_booking_never_overwrites_the_patients_details_or_the_clinics() -> None:
    got = golden.mapped_json(golden.GOLDEN / "siu-s12-booked")
    assert entry_of(got, "Patient")["request"]["method"] == "POST"
    assert entry_of(got, "Patient")["request"]["ifNoneExist"].startswith("identifier=")
    assert entry_of(got, "Location")["request"]["method"] == "POST"
    assert entry_of(got, "Appointment")["request"]["method"] == "PUT"


def test_the_clinic_is_the_same_location_an_admission_there_would_name() -> None:
    booked = golden.mapped_json(golden.GOLDEN / "siu-s12-booked")
    location = entry_of(booked, "Location")["resource"]
    assert location["identifier"] == [{"system": "https://sharedcare.example/Id/hl7v2/RJ7/location",
                                       "value": "St George's Hospital/Cardiology Clinic 3"}]


def test_the_filler_appointment_id_is_the_key_and_the_placers_is_kept() -> None:
    got = golden.mapped_json(golden.GOLDEN / "siu-s12-booked")
    entry = entry_of(got, "Appointment")
    assert entry["request"]["url"] == ("Appointment?identifier=https%3A%2F%2Fsharedcare.example%2FId%2Fhl7v2%2FRJ7"
                                       "%2Fappointment%7CRJ7A000000123")
    types = [i["type"]["coding"][0]["code"] for i in entry["resource"]["identifier"]]
    assert types == ["FILL", "PLAC"]


def test_only_notes_on_the_appointment_and_its_services_become_its_comment() -> None:
    comment = golden_appointment("siu-s12-booked")["comment"]
    assert comment == "Please bring a list of your current medicines.\nInterpreter needed: Arabic.\nECG on arrival."
    assert "Lanesborough" not in comment  # a note on the clinic (after AIL) is about the room, not the booking


def test_a_rescheduled_booking_is_the_same_appointment_at_its_new_time() -> None:
    booked = golden.mapped_json(golden.GOLDEN / "siu-s12-booked")
    moved = golden.mapped_json(golden.GOLDEN / "siu-s13-rescheduled")
    assert entry_of(moved, "Appointment")["fullUrl"] == entry_of(booked, "Appointment")["fullUrl"]
    appointment = appointment_of(moved)
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2025-08-12T14:15:00+01:00"  # from AIL-6: the message has no SCH-11
    assert appointment["end"] == "2025-08-12T15:00:00+01:00"  # AIL-6 plus AIL-9 (45 min)
    assert appointment["minutesDuration"] == 45


def test_an_attended_appointment_reported_by_a_modification_is_fulfilled() -> None:
    appointment = golden_appointment("siu-s14-complete")
    assert appointment["status"] == "fulfilled"
    assert "cancelationReason" not in appointment


def test_a_cancelled_booking_keeps_its_reason() -> None:
    appointment = golden_appointment("siu-s15-cancelled-with-reason")
    assert appointment["status"] == "cancelled"
    assert appointment["cancelationReason"] == {
        "coding": [{"system": "https://sharedcare.example/CodeSystem/hl7v2/RJ7/L", "code": "PATCAN",
                    "display": "Cancelled by patient: unwell"}],
        "text": "Cancelled by patient: unwell"}
    assert appointment["comment"] == "Patient phoned to cancel; rebook within four weeks."


def test_a_patient_who_did_not_attend_is_a_no_show() -> None:
    appointment = golden_appointment("siu-s26-did-not-attend")
    assert appointment["status"] == "noshow"
    assert appointment["cancelationReason"]["coding"][0]["code"] == "DNA"


def test_a_deleted_booking_is_entered_in_error() -> None:
    appointment = golden_appointment("siu-s17-deleted")
    assert appointment["status"] == "entered-in-error"
    assert appointment["end"] == "2025-09-02T11:15:00+01:00"  # SCH-11 gives only the start; SCH-9 the length
    assert "cancelationReason" not in appointment  # R4 app-4: only a cancelled or no-show appointment has one


@pytest.mark.parametrize(("filler_status", "status"), [
    ("Pending", "pending"), ("Waitlist", "waitlist"), ("Booked", "booked"), ("Started", "checked-in"),
    ("Complete", "fulfilled"), ("Cancelled", "cancelled"), ("Deleted", "entered-in-error"), ("Noshow", "noshow"),
    ("Overbook", "booked"), ("Blocked", "booked"), ("BOOKED^Booked^HL70278", "booked"), ("", "booked")])
def test_the_filler_status_says_what_became_of_a_booking(filler_status: str, status: str) -> None:
    assert mapped_appointment("S14", sch(filler_status))["status"] == status


def test_an_unknown_filler_status_leaves_the_booking_booked_with_a_warning() -> None:
    got = siu("S14", sch("Dc"))
    assert appointment_of({"bundle": got.bundle})["status"] == "booked"
    assert any("SCH-25" in w for w in got.warnings)


@pytest.mark.parametrize(("trigger", "status"), [("S15", "cancelled"), ("S17", "entered-in-error"),
                                                 ("S26", "noshow")])
def test_the_trigger_event_wins_over_a_stale_filler_status(trigger: str, status: str) -> None:
    assert mapped_appointment(trigger, sch("Booked"))["status"] == status


def test_a_time_without_an_offset_is_london_time_in_winter_and_summer() -> None:
    winter = mapped_appointment("S12", sch(timing="^^^20251210093000^20251210100000"))
    assert (winter["start"], winter["end"]) == ("2025-12-10T09:30:00+00:00", "2025-12-10T10:00:00+00:00")
    summer = mapped_appointment("S12", sch(timing="^^^20250610093000^20250610100000"))
    assert summer["start"] == "2025-06-10T09:30:00+01:00"


def test_an_end_worked_out_from_the_duration_is_right_across_the_clock_change() -> None:
    # 00:30 BST on the night the clocks go back, for two hours: it ends at 01:30 GMT.
    appointment = mapped_appointment("S12", "SCH|A1|A1" + "|" * 23 + "Booked", "RGS|1",
                                     "AIL|1||Sleep Clinic^^^St George's Hospital|||20251026003000|||120|min")
    assert appointment["start"] == "2025-10-26T00:30:00+01:00"
    assert appointment["end"] == "2025-10-26T01:30:00+00:00"
    assert appointment["minutesDuration"] == 120


def test_a_time_sent_with_an_offset_keeps_it() -> None:
    appointment = mapped_appointment("S12", "SCH|A1|A1|||||||20|min|||||||||||||||Booked", "TQ1|||||||"
                                     "20250805093000+0100")
    assert (appointment["start"], appointment["end"]) == ("2025-08-05T09:30:00+01:00", "2025-08-05T09:50:00+01:00")


def test_a_booking_with_no_time_is_refused() -> None:
    with pytest.raises(ParseError) as refused:
        siu("S12", sch(timing=""), "RGS|1", "AIL|1||Clinic 3")
    assert refused.value.code == REQUIRED_FIELD_MISSING
    assert (refused.value.segment, refused.value.field_no) == ("SCH", 11)


def test_a_cancellation_may_come_without_a_time() -> None:
    appointment = mapped_appointment("S15", sch("Cancelled", timing="", reason="PATCAN^Patient cancelled"))
    assert appointment["status"] == "cancelled"
    assert "start" not in appointment
    assert "end" not in appointment


def test_a_booking_without_any_appointment_id_is_refused() -> None:
    with pytest.raises(ParseError) as refused:
        siu("S12", "SCH|||||||||30|min|^^^20250805093000||||||||||||||Booked")
    assert refused.value.code == REQUIRED_FIELD_MISSING
    assert refused.value.segment == "SCH"


def test_a_location_type_is_not_taken_for_a_specialty() -> None:
    appointment = mapped_appointment("S12", sch(), "RGS|1", "AIL|1||Clinic 3^^^St George's Hospital|C^Clinic^HL70305")
    assert "specialty" not in appointment


def test_a_discontinued_appointment_is_not_accepted() -> None:
    with pytest.raises(ParseError) as refused:
        siu("S16", sch())
    assert refused.value.code == UNSUPPORTED_EVENT_CODE


def _synthetic(status: str, moved: bool) -> list[dict[str, Any]]:
    rec = Recorded("RJ7", "RJ70000099", "9434765919", "correct", "Grace", "Mensah", date(1981, 9, 23), "female",
                   "SW17 0RN")
    appt = Appointment("RJ7", "St George's Hospital", "RJ7A000000999", "cardiology", datetime(2025, 11, 4, 14, 30),
                       30, date(2025, 10, 1), status, datetime(2025, 11, 3, 10, 0) if moved else None)
    numbers = count(1)
    out = []
    for text in synth.siu_messages(rec, appt, "PAS", lambda: f"C{next(numbers)}"):
        got = mapping.map_message(parse(text), mapping.Context("RJ7", "RJ7"))
        for entry in got.bundle["entry"]:
            validate_or_raise(entry["resource"])
        out.append(appointment_of({"bundle": got.bundle}))
    return out


def test_the_synthetic_london_feed_of_a_moved_and_attended_appointment_maps_as_its_story() -> None:
    booked, moved, attended = _synthetic("fulfilled", moved=True)
    assert [a["status"] for a in (booked, moved, attended)] == ["booked", "booked", "fulfilled"]
    assert booked["start"] == "2025-11-03T10:00:00+00:00"
    assert moved["start"] == attended["start"] == "2025-11-04T14:30:00+00:00"
    assert attended["end"] == "2025-11-04T15:00:00+00:00"
    assert attended["specialty"][0]["coding"][0]["code"] == "cardiology"
    assert {a["identifier"][0]["value"] for a in (booked, moved, attended)} == {"RJ7A000000999"}


@pytest.mark.parametrize(("status", "last"), [("cancelled", "cancelled"), ("noshow", "noshow")])
def test_the_synthetic_london_feed_of_a_cancelled_or_missed_appointment_maps_as_its_story(status: str,
                                                                                          last: str) -> None:
    booked, outcome = _synthetic(status, moved=False)
    assert booked["status"] == "booked"
    assert outcome["status"] == last
    assert "cancelationReason" in outcome


@pytest.mark.parametrize("path", conformance_files("hl7v2", "SIU-*.hl7"))
def test_the_conformance_corpus_siu_messages_map_to_valid_appointments_or_are_refused(path: Path) -> None:
    msg = parse(path.read_text(encoding="utf-8"))
    context = mapping.Context(msg.sending_facility, msg.sending_facility)
    if msg.trigger == "S16":  # discontinuation: the one trigger refused
        with pytest.raises(ParseError) as refused:
            mapping.map_message(msg, context)
        assert refused.value.code in HL7_ERROR_CODES
        return
    got = mapping.map_message(msg, context)
    appointment = appointment_of({"bundle": got.bundle})
    for entry in got.bundle["entry"]:
        validate_or_raise(entry["resource"])
    assert appointment["participant"][0]["actor"]["reference"] == entry_of({"bundle": got.bundle}, "Patient")["fullUrl"]
    assert "start" in appointment
