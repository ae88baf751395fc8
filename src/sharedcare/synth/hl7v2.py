"""HL7 v2.4 messages as London's trusts send them (ITK conventions): ADT for hospital and mental health
visits and person updates, ORU^R01 for laboratory results, SIU for outpatient bookings, and the batch
file (FHS/BHS ... BTS/FTS) they travel in.

Messages are built as plain strings: `\\r` ends every segment, encoding characters are `^~\\&`, and text
taken from a record goes through `escape`. Every builder takes `control`, which returns the next
message control id (MSH-10), so the output depends on its inputs only. Times are local and naive,
written `YYYYMMDDHHMMSS`. MSH-17 is GBR and MSH-18 declares UTF-8, the encoding of the files.

Code tables used (HL7 v2.4 unless said): 0004 patient class (E, I, O, N); 0007 admission type
(E emergency, R routine, for elective); 0112 discharge disposition (`DISPOSITION`); 0430 mode of
arrival in PV2-38, where arrival by ambulance is reported (`A`) and a walk-in as `O` (other); 0078
abnormal flags (L, H, N); 0278 filler status in SCH-25.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import TracebackType

from sharedcare.ingest.hl7v2.message import escape  # text as it may stand in a field
from sharedcare.synth import codes
from sharedcare.synth.story import Appointment, LabReport, Recorded, Visit

Control = Callable[[], str]

VERSION = "2.4"
ENCODING = "^~\\&"
RECEIVER = {5: "SHAREDCARE", 6: "LONDON"}  # receiving application and facility (MSH, FHS, BHS)
_HEADERS = ("MSH", "FHS", "BHS")  # their field 1 is the field separator itself
SEX = {"female": "F", "male": "M"}  # table 0001; anything else is U
# Table 0112 (HL7 suggested values, the UB-92 codes): 01 discharged home or to self care, 02 transferred to
# another short-term general hospital, 03 transferred to a skilled nursing facility (nearest to a care
# home), 20 expired.
DISPOSITION = {"home": "01", "transferred": "02", "care-home": "03", "died": "20"}
ADMITTED_KINDS = ("elective", "mh-admission")  # inpatient from arrival
ATTENDANCE = {"emergency": ("E", "ED"), "mh-crisis": ("O", "CRISIS")}  # patient class, point of care
TITLES = ("Dr", "Mr", "Mrs", "Ms", "Miss", "Prof", "Professor")
# SCH-6 event reason (user-defined) for each kind of SIU message.
_SIU_REASON = {"booked": "NEW^New booking", "moved": "MOVED^Rescheduled", "Cancelled": "CANCELLED^Cancelled",
               "Noshow": "NOSHOW^Did not attend", "Complete": "COMPLETE^Attended"}


def _ts(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S")


def _date(day: date | None) -> str:
    return day.strftime("%Y%m%d") if day is not None else ""


def _components(*parts: str) -> str:
    return "^".join(parts).rstrip("^")


def _segment(name: str, fields: dict[int, str]) -> str:
    """One segment from its fields by position (already escaped); trailing empty fields left out."""
    first = 2 if name in _HEADERS else 1
    values = [fields.get(i, "") for i in range(first, max(fields, default=0) + 1)]
    while values and not values[-1]:
        values.pop()
    return "|".join([name, *values])


def _message(*segments: str) -> str:
    return "".join(segment + "\r" for segment in segments)


def _coded(code: str, display: str, system: str) -> str:
    return _components(escape(code), escape(display), system)


def _cx(identifier: str, authority: str, kind: str) -> str:
    return _components(escape(identifier), "", "", escape(authority), kind)


def _msh(application: str, facility: str, when: datetime, kind: str, control: Control) -> str:
    return _segment("MSH", {2: ENCODING, 3: escape(application), 4: escape(facility), **RECEIVER, 7: _ts(when),
                            9: kind, 10: escape(control()), 11: "P", 12: VERSION, 17: "GBR", 18: "UNICODE UTF-8"})


def _evn(trigger: str, when: datetime) -> str:
    return _segment("EVN", {1: trigger, 2: _ts(when), 6: _ts(when)})


def _pid(rec: Recorded) -> str:
    """The person as the source holds them. PID-32 (identity reliability) stays empty: a trust cannot
    know whether the NHS number it holds was mistyped."""
    ids = [_cx(rec.local_id, rec.source, "MR")]
    if rec.nhs_number:
        ids.append(_cx(rec.nhs_number, "NHS", "NH"))
    address = _components("", "", "London", "", escape(rec.postcode), "GB", "H") if rec.postcode else ""
    return _segment("PID", {1: "1", 3: "~".join(ids), 5: _components(escape(rec.family), escape(rec.given),
                                                                       "", "", "", "", "L"),
                            7: _date(rec.birth_date), 8: SEX.get(rec.sex, "U"), 11: address})


def _doctor(name: str) -> str:
    """XCN without an id: `^family^given`, split on the last space; a leading title goes to the prefix."""
    given, _, family = name.strip().rpartition(" ")
    first, _, rest = given.partition(" ")
    prefix = ""
    if first.rstrip(".") in TITLES:
        prefix, given = first, rest
    return _components("", escape(family), escape(given), "", "", escape(prefix)) if family else ""


# --- ADT ----------------------------------------------------------------------------------------------

def _inpatient(visit: Visit, when: datetime) -> bool:
    return visit.kind in ADMITTED_KINDS or (visit.admitted is not None and when >= visit.admitted)


def _ward(visit: Visit, when: datetime) -> str:
    """The ward the patient is on at `when` (the admitting ward until the first move); empty if none."""
    current = visit.wards[0][1] if visit.wards else ""
    for moved, ward in visit.wards:
        if moved <= when:
            current = ward
    return current


def _location(visit: Visit, ward: str | None) -> str:
    """PL: point of care (the ward, or ED / CRISIS before admission) and the site as facility."""
    point = ward if ward is not None else ATTENDANCE[visit.kind][1]
    return _components(escape(point), "", "", escape(visit.site))


def _pv1(visit: Visit, when: datetime, extra: dict[int, str]) -> str:
    """PV1 at `when`: class and location as they are then; admit time (PV1-44) is the admission from ED
    or crisis care once admitted, arrival otherwise."""
    inpatient = _inpatient(visit, when)
    admitted = visit.admitted if inpatient and visit.kind in ATTENDANCE and visit.admitted else visit.arrived
    fields = {1: "1", 2: "I" if inpatient else ATTENDANCE[visit.kind][0],
              3: _location(visit, _ward(visit, when) if inpatient else None),
              4: "R" if visit.kind == "elective" else "E", 7: _doctor(visit.consultant), 19: escape(visit.visit_id),
              44: _ts(admitted)}
    return _segment("PV1", fields | extra)


def _pv2(visit: Visit) -> str:
    reason = codes.CONDITIONS[visit.diagnosis].snomed
    arrival = "A^Ambulance^HL70430" if visit.by_ambulance else "O^Other^HL70430" if visit.kind in ATTENDANCE else ""
    return _segment("PV2", {3: _coded(reason.code, reason.display, "SCT"), 38: arrival})


def _dg1(visit: Visit) -> str:
    diagnosis = codes.CONDITIONS[visit.diagnosis].icd10
    return _segment("DG1", {1: "1", 3: _coded(diagnosis.code, diagnosis.display, "I10"), 6: "F"})


def adt_messages(rec: Recorded, visit: Visit, application: str, control: Control) -> list[str]:
    """The ADT messages a visit gives, in time order: A04 (attendance) or A01 (admission) at arrival,
    A01 on admission from ED or crisis care, A02 per ward move, A08 when details were corrected, A03
    at discharge."""
    if visit.kind in ATTENDANCE:
        events = [(visit.arrived, 0, "A04")]
        if visit.admitted is not None:
            events.append((visit.admitted, 1, "A01"))
    elif visit.kind in ADMITTED_KINDS:
        events = [(visit.arrived, 1, "A01")]
    else:
        raise ValueError(f"unknown visit kind {visit.kind!r}")
    events += [(moved, 2, "A02") for moved, _ in visit.wards[1:]]
    if visit.updated_at is not None:
        events.append((visit.updated_at, 3, "A08"))
    if visit.left is not None:
        events.append((visit.left, 4, "A03"))
    structures = {"A01": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03", "A04": "ADT_A01", "A08": "ADT_A01"}
    moves = iter(range(1, len(visit.wards)))
    messages = []
    for when, _, trigger in sorted(events):
        segments = [_msh(application, visit.provider, when, f"ADT^{trigger}^{structures[trigger]}", control),
                    _evn(trigger, when), _pid(rec)]
        if trigger == "A02":
            move = next(moves)
            prior = _location(visit, visit.wards[move - 1][1])
            segments.append(_pv1(visit, when, {3: _location(visit, visit.wards[move][1]), 6: prior}))
        elif trigger == "A03":
            segments += [_pv1(visit, when, {36: DISPOSITION[visit.disposition], 45: _ts(when)}), _dg1(visit)]
        else:
            segments += [_pv1(visit, when, {}), _pv2(visit)]
            if trigger == "A08":
                segments.append(_dg1(visit))
        messages.append(_message(*segments))
    return messages


def a31_message(rec: Recorded, when: datetime, application: str, control: Control) -> str:
    """ADT^A31: the source's details of the person changed."""
    return _message(_msh(application, rec.source, when, "ADT^A31^ADT_A05", control), _evn("A31", when), _pid(rec),
                    _segment("PV1", {1: "1", 2: "N"}))


def a40_message(rec: Recorded, old_local_id: str, when: datetime, application: str, control: Control) -> str:
    """ADT^A40: the record `old_local_id` was merged into `rec`, which survives."""
    return _message(_msh(application, rec.source, when, "ADT^A40^ADT_A39", control), _evn("A40", when), _pid(rec),
                    _segment("MRG", {1: _cx(old_local_id, rec.source, "MR")}))


# --- ORU ----------------------------------------------------------------------------------------------

def _number(value: float) -> str:
    """At most one decimal, none when it is .0."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def _plain(value: float) -> str:
    """A range limit as written in codes.py, without trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _range(low: float | None, high: float | None) -> str:
    """OBX-7: `low-high`, `<high` or `>low`."""
    if low is not None and high is not None:
        return f"{_plain(low)}-{_plain(high)}"
    if high is not None:
        return f"<{_plain(high)}"
    return f">{_plain(low)}" if low is not None else ""


def _flag(value: float, low: float | None, high: float | None) -> str:
    """Table 0078: L below the range, H above it, N within; empty when the test has no range."""
    if low is None and high is None:
        return ""
    if low is not None and value < low:
        return "L"
    return "H" if high is not None and value > high else "N"


def oru_message(rec: Recorded, report: LabReport, application: str, control: Control) -> str:
    """ORU^R01: a laboratory report, sent six hours after collection. Flags follow the value as
    reported (rounded), so a reader comparing value and range sees the same thing."""
    reported = report.collected + timedelta(hours=6)
    panel = codes.PANELS[report.panel]
    order = escape(report.order_id)
    segments = [_msh(application, report.provider, reported, "ORU^R01^ORU_R01", control), _pid(rec),
                # ORC-21 ordering facility: the requester's ODS code as XON-1 (XON-3 is numeric in v2.4)
                _segment("ORC", {1: "RE", 2: order, 3: order, 5: "CM", 9: _ts(reported), 21: escape(report.requester)}),
                _segment("OBR", {1: "1", 2: order, 3: order, 4: _coded(panel.code, panel.display, "SCT"),
                                 7: _ts(report.collected), 22: _ts(reported), 25: "F"})]
    for n, (key, value) in enumerate(report.results, start=1):
        test = codes.TESTS[key]
        shown = _number(value)
        segments.append(_segment("OBX", {1: str(n), 2: "NM", 3: _coded(test.code, test.display, "SCT"), 5: shown,
                                         6: _components(escape(test.unit), "", "UCUM"),
                                         7: _range(test.low, test.high), 8: _flag(float(shown), test.low, test.high),
                                         11: "F", 14: _ts(report.collected)}))
    return _message(*segments)


# --- SIU ----------------------------------------------------------------------------------------------

def _siu(trigger: str, when: datetime, rec: Recorded, appt: Appointment, start: datetime, status: str,
         reason: str, application: str, control: Control) -> str:
    end = start + timedelta(minutes=appt.minutes)
    ident = escape(appt.appointment_id)
    specialty = escape(appt.specialty)
    return _message(
        _msh(application, appt.provider, when, f"SIU^{trigger}^SIU_S12", control),
        _segment("SCH", {1: ident, 2: ident, 6: _SIU_REASON[reason], 7: specialty, 9: str(appt.minutes), 10: "min",
                         11: _components("", "", f"M{appt.minutes}", _ts(start), _ts(end)), 25: status}),
        _pid(rec),
        _segment("RGS", {1: "1"}),
        _segment("AIL", {1: "1", 3: _components(escape(appt.site), "", "", escape(appt.provider)), 4: specialty,
                         6: _ts(start), 9: str(appt.minutes), 10: "min", 12: status}))


def siu_messages(rec: Recorded, appt: Appointment, application: str, control: Control) -> list[str]:
    """The SIU messages of an outpatient appointment, in time order: S12 when booked (09:00 on the
    booking day, for the original time if it was moved), S14 moving it (10:00 the next day, not after
    the new start), then S15 cancelled (a day before), S26 no-show (at the start) or S14 complete (at
    the end) by status."""
    booked = datetime.combine(appt.booked_on, time(9))
    last = booked
    messages = [_siu("S12", booked, rec, appt, appt.moved_from or appt.start, "Booked", "booked", application,
                     control)]
    if appt.moved_from is not None:
        last = max(booked, min(datetime.combine(appt.booked_on + timedelta(days=1), time(10)), appt.start))
        messages.append(_siu("S14", last, rec, appt, appt.start, "Booked", "moved", application, control))
    outcome = {"cancelled": ("S15", appt.start - timedelta(days=1), "Cancelled"),
               "noshow": ("S26", appt.start, "Noshow"),
               "fulfilled": ("S14", appt.start + timedelta(minutes=appt.minutes), "Complete")}
    if appt.status in outcome:
        trigger, when, status = outcome[appt.status]
        messages.append(_siu(trigger, max(when, last), rec, appt, appt.start, status, status, application, control))
    elif appt.status != "booked":
        raise ValueError(f"unknown appointment status {appt.status!r}")
    return messages


# --- batch files --------------------------------------------------------------------------------------

class BatchFile:
    """One HL7 batch file (FHS, BHS, messages, BTS, FTS) being written; a context manager."""

    def __init__(self, path: Path, sender: str, application: str, created: datetime) -> None:
        self._file = path.open("w", encoding="utf-8", newline="")  # newline="": CRs stay CRs
        self._count = 0
        header = {2: ENCODING, 3: escape(application), 4: escape(sender), **RECEIVER, 7: _ts(created)}
        self._file.write(_message(_segment("FHS", header | {9: escape(path.name)}), _segment("BHS", header)))

    def write(self, message: str) -> None:
        """Append one message (as the builders return it)."""
        if not message.startswith("MSH|"):
            raise ValueError("an HL7 v2 message starts with its MSH segment")
        self._file.write(message if message.endswith("\r") else message + "\r")
        self._count += 1

    def close(self) -> None:
        """Write the trailers (BTS with the message count, FTS) and close; closing twice is harmless."""
        if self._file.closed:
            return
        self._file.write(_message(f"BTS|{self._count}", "FTS|1"))
        self._file.close()

    def __enter__(self) -> BatchFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
