"""SIU (scheduling information, unsolicited) to Appointment, following HL7's v2-to-FHIR SIU_S12 message
map (segment maps SCH, AIS, AIL and AIP to Appointment, NTE to its comment; table 0278 filler status to
the appointment status by the FillerStatusCodes concept map) and the way London's trusts send outpatient
bookings (v2.4, SCH-25 filler status, the clinic in AIL).

| trigger | meaning | Appointment.status |
|---|---|---|
| S12 | new booking | booked, unless SCH-25 says otherwise |
| S13 | rescheduled | booked at the new time, unless SCH-25 says otherwise |
| S14 | modified (moved, or its outcome: `Complete` is fulfilled) | as SCH-25 says, else booked |
| S15 | cancelled | cancelled, with SCH-6 as the cancelation reason |
| S17 | deleted (booked in error) | entered-in-error |
| S26 | did not attend | noshow, with SCH-6 as the reason |

| segment | what is written |
|---|---|
| PID | the Patient, created only if the source has sent none (never overwritten by a booking); a participant |
| SCH-2, SCH-1 | identifier: the filler appointment id (type FILL) is the key, else the placer's (PLAC) |
| SCH-25 | status for S12, S13, S14 (table 0278, `FILLER_STATUS`: e.g. Complete is fulfilled, Started checked-in) |
| SCH-6 | cancelationReason, when the appointment is cancelled or a no-show |
| SCH-7 | reasonCode (the appointment reason) |
| SCH-8 | appointmentType |
| SCH-9, SCH-10 | minutesDuration (units of minutes or hours) |
| TQ1-7, TQ1-8; SCH-11.4, SCH-11.5 | start, end; else the first AIS, AIG, AIL or AIP start and its duration |
| NTE after SCH and after AIS | comment, one line per NTE |
| AIS-3 | serviceType |
| AIL-3 | a Location participant (the source's Location, keyed as ADT keys it, created only if not yet held) |
| AIL-4 | specialty, unless it is a table 0305 location type (C clinic, D department ...) |
| AIP-3, AIP-4 | a practitioner participant by the source's staff identifier and name, and its role |
| the source | an organisation participant by ODS code (the relationship that lets the trust's staff see it) |

Start and end are instants: a time given without an offset is London time. An appointment that is
neither cancelled nor waitlisted must have both (R4 app-3); one with no time at all is refused.

Not mapped: the placer, filler and entering contacts (SCH-12, SCH-16, SCH-20), the order it is based on
(SCH-26, SCH-27), general resources (AIG, other than as a source of the time), the visit (PV1) and
notes on the location and personnel resources (NTE after AIG, AIL, AIP). S16 (discontinued) is not
accepted: R4 has no status for an appointment stopped part way.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2 import patient as pid_map
from sharedcare.ingest.hl7v2.mapping import (
    Context,
    Mapped,
    Transaction,
    begin,
    location,
    mapper,
    require,
    staff_key,
    staff_reference,
)
from sharedcare.ingest.hl7v2.message import REQUIRED_FIELD_MISSING, Field, Message, ParseError, Segment

TRIGGERS = ("S12", "S13", "S14", "S15", "S17", "S26")
BY_TRIGGER = {"S15": "cancelled", "S17": "entered-in-error", "S26": "noshow"}
# Table 0278 (filler status codes) to appointmentstatus, per the v2-to-FHIR FillerStatusCodes concept map;
# Blocked and Overbook, which that map leaves open, are booked slots.
FILLER_STATUS = {"pending": "pending", "waitlist": "waitlist", "booked": "booked", "started": "checked-in",
                 "complete": "fulfilled", "cancelled": "cancelled", "deleted": "entered-in-error",
                 "noshow": "noshow", "blocked": "booked", "overbook": "booked"}
NO_TIME_NEEDED = frozenset({"proposed", "cancelled", "waitlist"})  # R4 app-3
REASON_STATUSES = frozenset({"cancelled", "noshow"})  # R4 app-4: cancelationReason only for these
# Table 0305 (location type): AIL-4 coded from it is the kind of place, not a specialty.
LOCATION_TYPES = frozenset({"C", "D", "H", "N", "O", "P", "S"})
# Duration units (SCH-10, AIS-8, AIG-12, AIL-10, AIP-10: ISO+, ANSI or UCUM spellings) in minutes.
UNIT_MINUTES = {"min": 1, "mins": 1, "minute": 1, "minutes": 1, "h": 60, "hr": 60, "hrs": 60, "hour": 60,
                "hours": 60}
# Where each resource segment gives its start and duration (value, units).
RESOURCE_TIMES = {"AIS": (4, 7, 8), "AIG": (8, 11, 12), "AIL": (6, 9, 10), "AIP": (6, 9, 10)}
_OFFSET = re.compile(r"[+-]\d{4}$")
_TQ_DURATION = re.compile(r"([MH])(\d+)")


@mapper("SIU", TRIGGERS)
def siu(msg: Message, ctx: Context) -> Mapped:
    tx, mapped = begin(msg)
    sch = require(msg.first("SCH"), "SCH")
    patient_url = pid_map.add(msg, ctx, tx, mapped, update=False)
    filler = dt.entity_identifier(sch[2], ctx.ods, "appointment")
    placer = dt.entity_identifier(sch[1], ctx.ods, "placer-appointment")
    key = filler or placer
    if key is None:
        raise ParseError("SCH has neither a filler (SCH-2) nor a placer (SCH-1) appointment id",
                         REQUIRED_FIELD_MISSING, segment="SCH", position=sch.position, field_no=2)
    identifiers = [dt.typed(i, kind) for i, kind in ((filler, "FILL"), (placer, "PLAC")) if i is not None]
    status = _status(msg.trigger, sch, mapped)
    appointment: dict[str, Any] = {"resourceType": "Appointment", "identifier": identifiers, "status": status}
    resources = [s for s in msg.segments if s.name in RESOURCE_TIMES]
    start, end, minutes = _timing(msg, sch, resources)
    if start is None and status not in NO_TIME_NEEDED:
        raise ParseError("the appointment has no start time (TQ1-7, SCH-11 or a resource segment's start)",
                         REQUIRED_FIELD_MISSING, segment="SCH", position=sch.position, field_no=11)
    if start is not None and end is None and status not in NO_TIME_NEEDED:
        raise ParseError("the appointment has a start but no end or duration (TQ1-8, SCH-11, SCH-9)",
                         REQUIRED_FIELD_MISSING, segment="SCH", position=sch.position, field_no=9)
    if start is not None and end is not None:
        appointment["start"], appointment["end"] = start, end
    elif start is not None:
        mapped.warnings.append("SCH: the appointment has a start but no end or duration; neither is written")
    if minutes:
        appointment["minutesDuration"] = minutes
    if status in REASON_STATUSES:
        reason = dt.codeable(sch[6], ctx.ods)
        if reason:
            appointment["cancelationReason"] = reason
    reason_code = dt.codeable(sch[7], ctx.ods)
    if reason_code:
        appointment["reasonCode"] = [reason_code]
    appointment_type = dt.codeable(sch[8], ctx.ods)
    if appointment_type:
        appointment["appointmentType"] = appointment_type
    services = _unique(dt.codeable(s[3], ctx.ods) for s in resources if s.name == "AIS")
    if services:
        appointment["serviceType"] = services
    specialties = _unique(dt.codeable(s[4], ctx.ods) for s in resources if s.name == "AIL" and _specialty(s[4]))
    if specialties:
        appointment["specialty"] = specialties
    comment = _comment(msg)
    if comment:
        appointment["comment"] = comment
    appointment["participant"] = _participants(resources, ctx, tx, patient_url)
    tx.put(appointment, key)
    mapped.bundle = tx.bundle()
    return mapped


def _status(trigger: str, sch: Segment, mapped: Mapped) -> str:
    if trigger in BY_TRIGGER:
        return BY_TRIGGER[trigger]
    filler_status = sch[25].comp(1).strip()
    if not filler_status:
        return "booked"
    status = FILLER_STATUS.get(filler_status.lower())
    if status is None:
        mapped.warnings.append("SCH-25: the filler status is not one of table 0278's that maps to an appointment "
                               "status; booked, as the trigger event says")
        return "booked"
    return status


def _minutes(amount: str, units: Field) -> int | None:
    """A duration and its units (CE/CNE: minutes or hours; none given means minutes) in whole minutes;
    None for other units (seconds, days: not an appointment's minutesDuration)."""
    amount = amount.strip()
    unit = units.comp(1).strip().lower() or "min"
    if not amount.isdigit():
        return None
    factor = UNIT_MINUTES.get(unit)
    total = int(amount) * factor if factor else 0
    return total or None


def _plus(start: str, raw: str, minutes: int) -> str:
    """The instant `minutes` after `start` (a FHIR instant read from the v2 value `raw`): in the
    offset the source gave, else in London time (so a span across a clock change ends right)."""
    moment = datetime.fromisoformat(start) + timedelta(minutes=minutes)
    if not _OFFSET.search(raw.strip()):
        moment = moment.astimezone(dt.LONDON)
    return moment.isoformat(timespec="seconds")


def _timing(msg: Message, sch: Segment, resources: list[Segment]) -> tuple[str | None, str | None, int | None]:
    """start, end and minutesDuration. The start and end are TQ1-7 and TQ1-8, else SCH-11's (TQ
    components 4 and 5), else the first resource segment's start; the duration is SCH-9 in SCH-10's
    units (or SCH-11's, `M30`), else the first resource segment's; an end not sent is start + duration."""
    minutes = _minutes(sch[9].value, sch[10])
    tq1 = msg.first("TQ1")
    raw_start, raw_end = (tq1[7].comp(1), tq1[8].comp(1)) if tq1 is not None else ("", "")
    if not dt.instant(raw_start):
        raw_start, raw_end = sch[11].comp(4, 1), sch[11].comp(5, 1)
        tq_duration = _TQ_DURATION.fullmatch(sch[11].comp(3).strip().upper())
        if minutes is None and tq_duration:
            minutes = int(tq_duration.group(2)) * (60 if tq_duration.group(1) == "H" else 1) or None
    start = dt.instant(raw_start)
    for seg in resources:
        at, amount, units = RESOURCE_TIMES[seg.name]
        if start is None and dt.instant(seg[at].comp(1)):
            raw_start, raw_end = seg[at].comp(1), ""
            start = dt.instant(raw_start)
            minutes = minutes or _minutes(seg[amount].value, seg[units])
        elif minutes is None:
            minutes = _minutes(seg[amount].value, seg[units])
    if start is None:
        return None, None, minutes
    end = dt.instant(raw_end)
    if end is None and minutes:
        end = _plus(start, raw_start, minutes)
    return start, end, minutes


def _period(seg: Segment) -> dict[str, str] | None:
    """A resource segment's own time, as its participant's period."""
    at, amount, units = RESOURCE_TIMES[seg.name]
    raw = seg[at].comp(1)
    start = dt.instant(raw)
    if start is None:
        return None
    period = {"start": start}
    minutes = _minutes(seg[amount].value, seg[units])
    if minutes:
        period["end"] = _plus(start, raw, minutes)
    return period


def _specialty(location_type: Field) -> bool:
    """Whether AIL-4 names a specialty: anything but a table 0305 location type."""
    system = location_type.comp(3).strip().upper()
    code = location_type.comp(1).strip().upper()
    if system == "HL70305" or (not system and code in LOCATION_TYPES):
        return False
    return bool(code or location_type.comp(2).strip())


def _unique(concepts: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in concepts:
        if c and c not in out:
            out.append(c)
    return out


def _comment(msg: Message) -> str | None:
    """The NTE segments about the appointment (after SCH) and its services (after AIS), one line each."""
    lines: list[str] = []
    about_appointment = False
    for seg in msg.segments:
        if seg.name in ("SCH", "AIS"):
            about_appointment = True
        elif seg.name == "NTE":
            if about_appointment:
                lines.extend(t for t in (rep.text.strip() for rep in seg[3].reps()) if t)
        elif seg.name != "TQ1":
            about_appointment = False
    return "\n".join(lines) or None


def _participants(resources: list[Segment], ctx: Context, tx: Transaction, patient_url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"actor": {"reference": patient_url}, "status": "accepted"}]
    seen: set[str] = set()
    for seg in resources:
        if seg.name == "AIL":
            # Created only if the source has none yet: a booking does not speak for the place's details.
            url = location(seg[3], ctx, tx, update=False)
            if url is None or url in seen:
                continue
            seen.add(url)
            who: dict[str, Any] = {"actor": {"reference": url}}
        elif seg.name == "AIP":
            actor = staff_reference(seg[3], ctx)
            if actor is None or staff_key(actor) in seen:
                continue
            seen.add(staff_key(actor))
            who = {"actor": actor}
            role = dt.codeable(seg[4], ctx.ods)
            if role:
                who["type"] = [role]
        else:
            continue
        period = _period(seg)
        if period:
            who["period"] = period
        who["status"] = "accepted"
        out.append(who)
    out.append({"actor": ctx.organisation(), "status": "accepted"})
    return out
