"""Hospital and mental health trusts send HL7 v2.4 (issue 4): ADT for visits and person changes, ORU^R01
for laboratory results and SIU for outpatient bookings, in batch files that a standard parser reads.
Messages are read back here with python-hl7, as a receiver would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from itertools import count
from pathlib import Path

import hl7
import pytest

from sharedcare.synth import codes
from sharedcare.synth.hl7v2 import (
    BatchFile,
    a31_message,
    a40_message,
    adt_messages,
    escape,
    oru_message,
    siu_messages,
)
from sharedcare.synth.story import Appointment, LabReport, Recorded, Visit

SITE = "Royal London Hospital"
REC = Recorded("R1H", "RLH0012345", "9990001234", "correct", "Siobhan", "Okafor", date(1950, 3, 2), "female",
               "E1 1BB")
ARRIVED = datetime(2025, 1, 5, 10, 0)
ADMITTED = datetime(2025, 1, 5, 15, 0)
MOVED = datetime(2025, 1, 6, 9, 30)
LEFT = datetime(2025, 1, 9, 11, 0)


def _control() -> Callable[[], str]:
    numbers = count(1)
    return lambda: f"MSG{next(numbers):06d}"


def _visit(**changes: object) -> Visit:
    fields: dict[str, object] = {
        "kind": "emergency", "provider": "R1H", "site": SITE, "visit_id": "V0001", "arrived": ARRIVED,
        "admitted": ADMITTED, "left": LEFT, "diagnosis": "pneumonia",
        "wards": ((ADMITTED, "Ward 9E"), (MOVED, "Ward 12F")), "by_ambulance": True, "consultant": "Amara Okafor"}
    return Visit(**(fields | changes))  # type: ignore[arg-type]


def _appointment(status: str, moved_from: datetime | None = None) -> Appointment:
    return Appointment("R1H", SITE, "APT0001", "cardiology", datetime(2025, 3, 10, 14, 0), 30, date(2025, 2, 1),
                       status, moved_from)


def _lab(results: tuple[tuple[str, float], ...]) -> LabReport:
    return LabReport("R1H", "ORD0001", datetime(2025, 1, 5, 11, 0), "urea_electrolytes", results, "F84001")


def _field(message: hl7.Message, segment: str, n: int, index: int = 0) -> str:
    """Field `n` of the `index`th such segment; empty when the segment ends before it."""
    found = message.segments(segment)[index]
    return str(found[n]) if n < len(found) else ""


def _events(messages: list[str]) -> list[str]:
    return [_field(hl7.parse(m), "MSH", 9).split("^")[1] for m in messages]


def test_a_batch_file_of_several_messages_parses_into_one_batch_holding_them_all(tmp_path: Path) -> None:
    control = _control()
    messages = [*adt_messages(REC, _visit(), "PAS", control), a31_message(REC, LEFT, "PAS", control),
                oru_message(REC, _lab((("potassium", 4.1),)), "LIMS", control),
                *siu_messages(REC, _appointment("fulfilled"), "PAS", control)]
    path = tmp_path / "R1H-adt.hl7"
    with BatchFile(path, "R1H", "PAS", datetime(2025, 1, 10, 2, 0)) as batch:
        for message in messages:
            batch.write(message)
    raw = path.read_bytes()
    assert b"\n" not in raw
    assert raw.startswith(b"FHS|^~\\&|PAS|R1H|SHAREDCARE|LONDON|20250110020000")
    assert raw.endswith(f"BTS|{len(messages)}\rFTS|1\r".encode())
    parsed = hl7.parse_file(raw.decode("utf-8"))
    assert len(parsed) == 1
    assert len(parsed[0]) == len(messages)
    assert [str(m) for m in parsed[0]] == [str(hl7.parse(m)) for m in messages]
    assert str(parsed[0].trailer[1]) == str(len(messages))


def test_every_message_names_its_type_has_its_own_control_id_and_says_who_sent_it_when() -> None:
    control = _control()
    sent = [*adt_messages(REC, _visit(updated_at=datetime(2025, 1, 7, 8, 0)), "PAS", control),
            a31_message(REC, LEFT, "PAS", control), a40_message(REC, "RLH0099999", LEFT, "PAS", control),
            oru_message(REC, _lab((("sodium", 140),)), "LIMS", control),
            *siu_messages(REC, _appointment("cancelled", datetime(2025, 3, 3, 9, 0)), "PAS", control)]
    parsed = [hl7.parse(m) for m in sent]
    assert [_field(m, "MSH", 9) for m in parsed] == [
        "ADT^A04^ADT_A01", "ADT^A01^ADT_A01", "ADT^A02^ADT_A02", "ADT^A08^ADT_A01", "ADT^A03^ADT_A03",
        "ADT^A31^ADT_A05", "ADT^A40^ADT_A39", "ORU^R01^ORU_R01", "SIU^S12^SIU_S12", "SIU^S14^SIU_S12",
        "SIU^S15^SIU_S12"]
    assert len({_field(m, "MSH", 10) for m in parsed}) == len(sent)
    for m in parsed:
        assert [_field(m, "MSH", n) for n in (4, 5, 6, 11, 12)] == ["R1H", "SHAREDCARE", "LONDON", "P", "2.4"]
    assert _field(parsed[0], "MSH", 7) == "20250105100000"  # the event's time, not the time of generation
    assert _field(parsed[7], "MSH", 7) == "20250105170000"  # results reported six hours after collection
    assert all(m.endswith("\r") and "\n" not in m for m in sent)


def test_the_same_events_give_the_same_messages() -> None:
    assert adt_messages(REC, _visit(), "PAS", _control()) == adt_messages(REC, _visit(), "PAS", _control())


def test_pid_carries_the_hospital_number_and_the_nhs_number_only_when_the_source_holds_one() -> None:
    known = hl7.parse(a31_message(REC, LEFT, "PAS", _control()))
    assert _field(known, "PID", 3) == "RLH0012345^^^R1H^MR~9990001234^^^NHS^NH"
    assert [_field(known, "PID", n) for n in (5, 7, 8, 11, 32)] == [
        "Okafor^Siobhan^^^^^L", "19500302", "F", "^^London^^E1 1BB^GB^H", ""]
    unknown = Recorded("RAL", "RF777", None, "missing", "Tom", "Reed", None, "male", None)
    pid = hl7.parse(a31_message(unknown, LEFT, "PAS", _control()))
    assert _field(pid, "PID", 3) == "RF777^^^RAL^MR"
    assert len(pid.segment("PID")[3]) == 1  # one repetition: no empty NHS number
    assert [_field(pid, "PID", n) for n in (7, 8, 11)] == ["", "M", ""]


def test_an_emergency_admission_moved_once_and_discharged_gives_a04_a01_a02_a03_in_order() -> None:
    messages = [hl7.parse(m) for m in adt_messages(REC, _visit(disposition="care-home"), "PAS", _control())]
    assert _events([str(m) for m in messages]) == ["A04", "A01", "A02", "A03"]
    assert [_field(m, "EVN", 6) for m in messages] == [f"{t:%Y%m%d%H%M%S}" for t in (ARRIVED, ADMITTED, MOVED, LEFT)]
    assert {_field(m, "PV1", 19) for m in messages} == {"V0001"}
    a04, a01, a02, a03 = messages
    assert (_field(a04, "PV1", 2), _field(a04, "PV1", 3)) == ("E", f"ED^^^{SITE}")
    assert _field(a04, "PV2", 38).startswith("A^")  # arrived by ambulance
    reason = codes.CONDITIONS["pneumonia"].snomed
    assert _field(a04, "PV2", 3) == f"{reason.code}^{escape(reason.display)}^SCT"
    assert [_field(a01, "PV1", n) for n in (2, 3, 4, 44)] == ["I", f"Ward 9E^^^{SITE}", "E", "20250105150000"]
    assert (_field(a02, "PV1", 3), _field(a02, "PV1", 6)) == (f"Ward 12F^^^{SITE}", f"Ward 9E^^^{SITE}")
    assert [_field(a03, "PV1", n) for n in (3, 36, 45)] == [f"Ward 12F^^^{SITE}", "03", "20250109110000"]
    icd10 = codes.CONDITIONS["pneumonia"].icd10
    assert _field(a03, "DG1", 3).split("^")[0::2] == [icd10.code, "I10"]
    assert _field(a03, "DG1", 6) == "F"
    assert _field(a01, "PV1", 7) == "^Okafor^Amara"


@pytest.mark.parametrize(("disposition", "code"), [("home", "01"), ("transferred", "02"), ("care-home", "03"),
                                                   ("died", "20")])
def test_the_discharge_disposition_is_coded_from_hl7_table_0112(disposition: str, code: str) -> None:
    a03 = hl7.parse(adt_messages(REC, _visit(disposition=disposition), "PAS", _control())[-1])
    assert _field(a03, "PV1", 36) == code


def test_an_ed_attendance_sent_home_gives_a04_and_a03_only_and_never_an_inpatient_class() -> None:
    messages = adt_messages(REC, _visit(admitted=None, wards=(), by_ambulance=False), "PAS", _control())
    assert _events(messages) == ["A04", "A03"]
    assert [_field(hl7.parse(m), "PV1", 2) for m in messages] == ["E", "E"]
    assert not _field(hl7.parse(messages[0]), "PV2", 38).startswith("A^")


def test_an_elective_admission_is_routine_and_a_correction_falls_in_time_order_with_the_diagnosis() -> None:
    visit = _visit(kind="elective", admitted=None, wards=((ARRIVED, "Day Surgery"), (MOVED, "Ward 3")),
                   updated_at=ADMITTED, by_ambulance=False, left=None)
    messages = adt_messages(REC, visit, "PAS", _control())
    assert _events(messages) == ["A01", "A08", "A02"]
    a01, a08 = hl7.parse(messages[0]), hl7.parse(messages[1])
    assert [_field(a01, "PV1", n) for n in (2, 3, 4)] == ["I", f"Day Surgery^^^{SITE}", "R"]
    assert _field(a08, "PV1", 3) == f"Day Surgery^^^{SITE}"
    assert _field(a08, "DG1", 3).startswith(codes.CONDITIONS["pneumonia"].icd10.code + "^")


def test_a_mental_health_crisis_contact_is_an_outpatient_attendance_until_admitted() -> None:
    messages = adt_messages(REC, _visit(kind="mh-crisis"), "MHPAS", _control())
    assert _events(messages) == ["A04", "A01", "A02", "A03"]
    assert [_field(hl7.parse(m), "PV1", 2) for m in messages] == ["O", "I", "I", "I"]


def test_a_merge_names_the_retired_hospital_number_and_the_survivor() -> None:
    a40 = hl7.parse(a40_message(REC, "RLH0099999", LEFT, "PAS", _control()))
    assert _field(a40, "MRG", 1) == "RLH0099999^^^R1H^MR"
    assert _field(a40, "PID", 3).startswith("RLH0012345^^^R1H^MR")
    assert _field(a40, "EVN", 6) == "20250109110000"


def test_escape_replaces_each_separator_the_escape_character_and_line_breaks() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("one\r\ntwo") == "one\\X0D\\\\X0A\\two"
    assert escape("Zoë O'Neil") == "Zoë O'Neil"


@pytest.mark.parametrize("family", ["O'Brien-Smith ^ & |", "back\\slash ~ tilde", "two\r\nlines"])
def test_a_name_with_separators_survives_the_round_trip_through_a_parser(family: str) -> None:
    rec = Recorded("R1H", "RLH1", None, "missing", "Anne-Marie", family, None, "female", None)
    message = hl7.parse(a31_message(rec, LEFT, "PAS", _control()))
    name = message.segment("PID")[5]
    assert len(message.segment("PID")[3]) == 1  # the separators did not split the fields around it
    assert message.unescape(str(name[0][0])) == family
    assert str(name[0][1]) == "Anne-Marie"


def test_result_flags_follow_the_reference_range_of_each_test() -> None:
    cases: list[tuple[str, float, str]] = []
    for key in ("sodium", "potassium", "creatinine", "haemoglobin", "platelets", "white_cell_count"):
        test = codes.TESTS[key]
        assert test.low is not None, key
        assert test.high is not None, key
        cases += [(key, (test.low + test.high) / 2, "N"), (key, test.high * 1.5 + 1, "H")]
        if test.low > 1:
            cases.append((key, test.low / 2, "L"))
    report = _lab(tuple((key, value) for key, value, _ in cases))
    oru = hl7.parse(oru_message(REC, report, "LIMS", _control()))
    observations = oru.segments("OBX")
    assert len(observations) == len(cases)
    for obx, (key, value, flag) in zip(observations, cases, strict=True):
        test = codes.TESTS[key]
        assert str(obx[2]) == "NM"
        assert str(obx[3]).split("^")[0::2] == [test.code, "SCT"]
        assert abs(float(str(obx[5])) - value) <= 0.051  # rounded to one decimal
        assert oru.unescape(str(obx[6][0][0])) == test.unit
        assert str(obx[6][0][2]) == "UCUM"
        assert str(obx[7]) == f"{test.low:g}-{test.high:g}"
        assert (key, str(obx[8])) == (key, flag)
        assert (str(obx[11]), str(obx[14])) == ("F", "20250105110000")


def test_a_one_sided_range_is_written_as_below_or_above_a_limit_and_flags_follow_it() -> None:
    cases: list[tuple[str, float, str, str]] = []
    for key in ("egfr", "crp", "total_cholesterol"):
        test = codes.TESTS[key]
        if test.low is None:
            assert test.high is not None, key
            cases += [(key, test.high * 2, f"<{test.high:g}", "H"), (key, test.high / 2, f"<{test.high:g}", "N")]
        else:
            assert test.high is None, key
            cases += [(key, test.low / 2, f">{test.low:g}", "L"), (key, test.low * 2, f">{test.low:g}", "N")]
    oru = hl7.parse(oru_message(REC, _lab(tuple((key, value) for key, value, _, _ in cases)), "LIMS", _control()))
    assert [(str(obx[7]), str(obx[8])) for obx in oru.segments("OBX")] == [(r, f) for _, _, r, f in cases]


def test_a_report_names_its_order_panel_collection_and_report_times() -> None:
    oru = hl7.parse(oru_message(REC, _lab((("sodium", 139.96),)), "LIMS", _control()))
    panel = codes.PANELS["urea_electrolytes"]
    assert [_field(oru, "ORC", n) for n in (1, 2, 21)] == ["RE", "ORD0001", "F84001"]
    assert [_field(oru, "OBR", n) for n in (2, 3, 7, 22, 25)] == [
        "ORD0001", "ORD0001", "20250105110000", "20250105170000", "F"]
    assert _field(oru, "OBR", 4).split("^")[0::2] == [panel.code, "SCT"]
    assert _field(oru, "OBX", 5) == "140"  # one decimal at most, and no trailing .0


@pytest.mark.parametrize(("status", "events", "statuses"), [
    ("booked", ["S12"], ["Booked"]),
    ("fulfilled", ["S12", "S14"], ["Booked", "Complete"]),
    ("noshow", ["S12", "S26"], ["Booked", "Noshow"]),
    ("cancelled", ["S12", "S15"], ["Booked", "Cancelled"]),
])
def test_each_appointment_status_gives_its_sequence_of_scheduling_messages(
        status: str, events: list[str], statuses: list[str]) -> None:
    messages = siu_messages(REC, _appointment(status), "PAS", _control())
    parsed = [hl7.parse(m) for m in messages]
    assert _events(messages) == events
    assert [_field(m, "SCH", 25) for m in parsed] == statuses
    times = [_field(m, "MSH", 7) for m in parsed]
    assert times == sorted(times)
    assert times[0] == "20250201090000"
    for m in parsed:
        assert (_field(m, "SCH", 1), _field(m, "SCH", 2), _field(m, "SCH", 7)) == ("APT0001", "APT0001", "cardiology")
        assert (_field(m, "SCH", 9), _field(m, "SCH", 11)) == ("30", "^^M30^20250310140000^20250310143000")
        assert _field(m, "AIL", 3) == f"{SITE}^^^R1H"
        assert _field(m, "PID", 3).startswith("RLH0012345^")
    expected_last = {"booked": "20250201090000", "fulfilled": "20250310143000", "noshow": "20250310140000",
                     "cancelled": "20250309140000"}
    assert times[-1] == expected_last[status]


def test_a_moved_appointment_is_booked_for_the_old_time_then_moved_to_the_new_one() -> None:
    old = datetime(2025, 3, 3, 9, 0)
    messages = [hl7.parse(m) for m in siu_messages(REC, _appointment("noshow", old), "PAS", _control())]
    assert _events([str(m) for m in messages]) == ["S12", "S14", "S26"]
    assert [_field(m, "SCH", 11).split("^")[3] for m in messages] == ["20250303090000", "20250310140000",
                                                                       "20250310140000"]
    assert _field(messages[1], "MSH", 7) == "20250202100000"  # 10:00 the day after booking
    assert _field(messages[1], "SCH", 25) == "Booked"


def test_a_move_is_never_sent_after_the_new_start() -> None:
    appt = Appointment("R1H", SITE, "APT2", "dermatology", datetime(2025, 2, 1, 11, 0), 15, date(2025, 2, 1),
                       "booked", datetime(2025, 2, 1, 10, 0))
    sent = [_field(hl7.parse(m), "MSH", 7) for m in siu_messages(REC, appt, "PAS", _control())]
    assert sent == ["20250201090000", "20250201110000"]
    assert datetime.strptime(sent[1], "%Y%m%d%H%M%S") - appt.start <= timedelta(0)
