"""ORU^R01 (unsolicited observation results: laboratory reports) to DiagnosticReport and Observation,
following HL7's v2-to-FHIR ORU_R01 message map (segment maps OBR to DiagnosticReport, OBX to
Observation; tables 0123 and 0085 to the report and observation statuses, 0078 to the v3
ObservationInterpretation codes) and the way London's laboratories send them (v2.4, SNOMED codes,
UCUM units).

| from | what is written |
|---|---|
| PID | the Patient, created only if the source has sent none: a result never overwrites their details |
| PV1-19 | the visit, referenced by identifier as `encounter` (as adt.py keys it) |
| OBR | one DiagnosticReport per OBR, category from OBR-24 (table 0074, else LAB), the source as performer |
| OBR-3, OBR-2 | identifier: the filler order number (else the placer's); the placer order as basedOn |
| OBR-4, OBR-7, OBR-22, OBR-25 | code, effectiveDateTime, issued, status (table 0123: F final, C corrected, ...) |
| NTE after OBR | the report's conclusion (R4 DiagnosticReport has no note), a line per NTE |
| OBX | one Observation per OBX in the report's result, category laboratory (imaging for a radiology OBR-24) |
| OBX-2, -5, -6 | NM: valueQuantity (UCUM when OBX-6 names it; `<5` keeps its comparator) |
| OBX-2, -5, -6 | SN: valueQuantity (`<^5`, `>^90`), valueRange (`^10^-^20`) or valueRatio (`^1^:^128`) |
| OBX-2, -5 | ST, TX, FT: valueString; CE, CWE: valueCodeableConcept; DT, TS: valueDateTime; TM: valueTime |
| OBX-7 | referenceRange: `115-165`, `4.3 to 6.2`, `<5`, `>2`, with the text as sent |
| OBX-8 | interpretation (table 0078 as v3 ObservationInterpretation: L, H, LL, HH, N, A, AA, ...) |
| OBX-11 | status (table 0085); X cancelled with a dataAbsentReason, D and W entered-in-error |
| OBX-14, OBX-17 | effectiveDateTime (else OBR-7), method |
| NTE after OBX | the Observation's note, an Annotation per NTE |

Decimals keep the precision they were sent with: `1.50` is written as `1.50`, through
`sharedcare.fhir.jsonio.FhirDecimal` (an integer stays an int), so values and range limits are never
rounded or padded. An Observation is found by its report's key, its set id (OBX-1, else its place in
the report), its code (OBX-3) and sub-id (OBX-4): a corrected report resent by the laboratory replaces
what it said. Every resource carries when the source recorded it (MSH-7, or EVN-2 when sent).
What cannot be read is said in a warning, never quoting the record: a status outside its table is
`unknown`; a numeric value that is not a number is kept as text; encapsulated data (ED) and reference
pointers (RP) get the dataAbsentReason `unsupported`.

Not mapped: the specimen (SPM, and the OBX segments of the specimen group after it), timing (TQ1),
notes on the patient (NTE after PID), OBX segments outside an OBR group, the results interpreter
(OBR-32) and the ordering provider (OBR-16). A message naming more than one patient (several PIDs) is
refused: its results could not be filed safely against one record.
"""

from __future__ import annotations

import re
from typing import Any

from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2 import patient as pid_map
from sharedcare.ingest.hl7v2.mapping import Context, Mapped, Transaction, begin, mapper, one_patient, visit_reference
from sharedcare.ingest.hl7v2.message import (
    REQUIRED_FIELD_MISSING,
    Field,
    Message,
    ParseError,
    Segment,
)

TRIGGERS = ("R01",)
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# OBR groups end at the next OBR, at the segments that open another order or patient, and at SPM,
# whose following OBX segments describe the specimen, not the report's results.
CLOSERS = ("PID", "PV1", "ORC", "SCH", "RXA", "SPM")

# Table 0123 (result status, OBR-25) to diagnostic-report-status, per the v2-to-FHIR concept map.
REPORT_STATUS = {"O": "registered", "I": "registered", "S": "registered", "A": "partial", "R": "partial",
                 "P": "preliminary", "C": "corrected", "F": "final", "X": "cancelled"}
# Table 0085 (observation result status, OBX-11) to observation-status.
OBSERVATION_STATUS = {"F": "final", "U": "final", "V": "final", "C": "corrected", "A": "amended",
                      "P": "preliminary", "R": "preliminary", "S": "preliminary", "I": "registered",
                      "O": "registered", "X": "cancelled", "D": "entered-in-error", "W": "entered-in-error"}
# Table 0078 abnormal flags that are also v3 ObservationInterpretation codes, with their displays.
INTERPRETATIONS = {
    "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high", "N": "Normal", "A": "Abnormal",
    "AA": "Critical abnormal", "<": "Off scale low", ">": "Off scale high", "S": "Susceptible",
    "R": "Resistant", "I": "Intermediate", "POS": "Positive", "NEG": "Negative", "IND": "Indeterminate",
    "DET": "Detected", "ND": "Not detected", "RR": "Reactive", "WR": "Weakly reactive", "NR": "Non-reactive",
    "E": "Equivocal", "B": "Better", "W": "Worse", "U": "Significant change up", "D": "Significant change down",
}
# Table 0074 (diagnostic service section, OBR-24); the imaging ones make imaging Observations.
SERVICE_SECTIONS = frozenset({
    "AU", "BG", "BLB", "CG", "CH", "CP", "CT", "CTH", "CUS", "EC", "EN", "GE", "HM", "ICU", "IMM", "LAB", "MB",
    "MCB", "MYC", "NMR", "NMS", "NRS", "OSL", "OT", "OTH", "OUS", "PF", "PHR", "PHY", "PT", "RAD", "RC", "RT",
    "RUS", "RX", "SP", "SR", "TX", "URN", "VR", "VUS", "XRC"})
IMAGING_SECTIONS = frozenset({"CT", "CUS", "NMR", "NMS", "OUS", "RAD", "RUS", "RX", "VUS", "XRC"})
COMPARATORS = frozenset({"<", "<=", ">=", ">"})

_NUMBER = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?")
_COMPARED = re.compile(r"(<=|>=|<|>)\s*(\S.*)")
_RANGE = re.compile(r"\s*([+-]?\d*\.?\d+)\s*(?:-|–|to|_)\s*([+-]?\d*\.?\d+)\s*", re.IGNORECASE)
_TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?")


@mapper("ORU", TRIGGERS)
def oru(msg: Message, ctx: Context) -> Mapped:
    tx, mapped = begin(msg)
    one_patient(msg, "a result message")
    patient_url = pid_map.add(msg, ctx, tx, mapped, update=False)
    groups = msg.groups("OBR", ("OBX", "NTE"), CLOSERS)
    if not groups:
        raise ParseError("a result message needs an OBR segment", REQUIRED_FIELD_MISSING, segment="OBR")
    encounter = visit_reference(msg, ctx)
    keys: set[str] = set()
    for group in groups:
        _report(group, ctx, tx, mapped, patient_url, encounter, keys)
    mapped.bundle = tx.bundle()
    return mapped


def _report(group: list[Segment], ctx: Context, tx: Transaction, mapped: Mapped, patient_url: str,
            encounter: dict[str, Any] | None, keys: set[str]) -> None:
    obr = group[0]
    filler = dt.entity_identifier(obr[3], ctx.ods, "filler-order")
    placer = dt.entity_identifier(obr[2], ctx.ods, "placer-order")
    found_by = filler or placer
    if found_by is None:
        raise ParseError("OBR has neither a filler (OBR-3) nor a placer (OBR-2) order number", REQUIRED_FIELD_MISSING,
                         segment="OBR", position=obr.position, field_no=3)
    code = dt.codeable(obr[4], ctx.ods)
    if code is None:
        raise ParseError("OBR-4 names no test", REQUIRED_FIELD_MISSING, segment="OBR", position=obr.position,
                         field_no=4)
    key_value = found_by["value"]
    if f"{found_by['system']}|{key_value}" in keys:
        mapped.warnings.append(f"OBR (segment {obr.position}): its order number repeats an earlier OBR's; the "
                               "report is keyed by the order number and its test code (OBR-4)")
        key_value = f"{key_value}/{obr[4].comp(1).strip() or obr[4].comp(4).strip() or obr.position}"
    keys.add(f"{found_by['system']}|{key_value}")
    key = {"system": found_by["system"], "value": key_value}
    status_code = obr[25].value.strip().upper()
    status = REPORT_STATUS.get(status_code)
    if status is None:
        status = "unknown"
        mapped.warnings.append(f"OBR-25 (segment {obr.position}): no result status from table 0123; the report's "
                               "status is unknown")
    section = obr[24].value.strip().upper()
    if section and section not in SERVICE_SECTIONS:
        mapped.warnings.append(f"OBR-24 (segment {obr.position}): not a table 0074 service section; laboratory "
                               "assumed")
        section = ""
    category = {"coding": [{"system": dt.hl7_table("0074"), "code": section or "LAB",
                            **({} if section else {"display": "Laboratory"})}]}
    identifiers = [dt.typed(found_by, "FILL" if filler else "PLAC")]  # the key is added by put when it differs
    report: dict[str, Any] = {"resourceType": "DiagnosticReport", "identifier": identifiers, "status": status,
                              "category": [category], "code": code, "subject": {"reference": patient_url}}
    if filler and placer:
        report["basedOn"] = [{"type": "ServiceRequest", "identifier": dt.typed(placer, "PLAC")}]
    if encounter:
        report["encounter"] = encounter
    effective = dt.datetime_(obr[7].comp(1))
    if effective:
        report["effectiveDateTime"] = effective
    issued = dt.instant(obr[22].comp(1))
    if issued:
        report["issued"] = issued
    report["performer"] = [ctx.organisation()]
    imaging = section in IMAGING_SECTIONS
    results: list[dict[str, Any]] = []
    conclusion: list[str] = []
    observation: dict[str, Any] | None = None
    seen: set[str] = set()
    place = 0
    for seg in group[1:]:
        if seg.name == "NTE":
            text = note_text(seg)
            if not text:
                continue
            if observation is None:
                conclusion.append(text)
            else:
                observation.setdefault("note", []).append({"text": text})
            continue
        place += 1
        observation, obs_key = _observation(seg, place, key_value, ctx, mapped, patient_url, encounter,
                                            effective, issued, imaging)
        if obs_key["value"] in seen:
            mapped.warnings.append(f"OBX (segment {seg.position}): the same set id, code and sub-id as an earlier "
                                   "OBX of its report; it is keyed by its place in the report as well")
            obs_key = {**obs_key, "value": f"{obs_key['value']}@{place}"}
        seen.add(obs_key["value"])
        results.append({"reference": tx.put(observation, obs_key)})
    if results:
        report["result"] = results
    if conclusion:
        report["conclusion"] = "\n".join(conclusion)
    tx.put(report, key)


def note_text(nte: Segment) -> str:
    """NTE-3 (formatted text, repeating) as one text, a line per repetition."""
    return "\n".join(r.text.strip() for r in nte[3].reps() if r.text.strip()).strip()


def _observation(obx: Segment, place: int, report_key: str, ctx: Context, mapped: Mapped, patient_url: str,
                 encounter: dict[str, Any] | None, report_effective: str | None, issued: str | None,
                 imaging: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    code = dt.codeable(obx[3], ctx.ods)
    code_key = obx[3].comp(1).strip() or obx[3].comp(4).strip()
    if code is None or not code_key:
        raise ParseError("OBX-3 names no observation code", REQUIRED_FIELD_MISSING, segment="OBX",
                         position=obx.position, field_no=3)
    set_id = obx[1].value.strip() or str(place)
    sub_id = obx[4].value.strip()
    key = {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/lab-result",
           "value": "/".join(p for p in (report_key, set_id, code_key, sub_id) if p)}
    status_code = obx[11].value.strip().upper()
    status = OBSERVATION_STATUS.get(status_code)
    if status is None:
        status = "unknown"
        mapped.warnings.append(f"OBX-11 (segment {obx.position}): no result status from table 0085; the "
                               "observation's status is unknown")
    category = ("imaging", "Imaging") if imaging else ("laboratory", "Laboratory")
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category[0], "display": category[1]}]}],
        "code": code, "subject": {"reference": patient_url}}
    if encounter:
        observation["encounter"] = encounter
    effective = dt.datetime_(obx[14].comp(1)) or report_effective
    if effective:
        observation["effectiveDateTime"] = effective
    if issued:
        observation["issued"] = issued
    observation["performer"] = [ctx.organisation()]
    value_type = obx[2].value.strip().upper()
    if status == "cancelled":
        absent: dict[str, Any] = {"coding": [{"system": DATA_ABSENT, "code": "not-performed",
                                              "display": "Not Performed"}]}
        reason = "\n".join(r.text.strip() for r in obx[5].reps() if r.text.strip())
        if reason:
            absent["text"] = reason
        observation["dataAbsentReason"] = absent
    else:
        observation.update(_value(obx, value_type, ctx, mapped))
    interpretation = [c for c in (_interpretation(rep) for rep in obx[8].reps()) if c]
    if interpretation:
        observation["interpretation"] = interpretation
    reference_range = _reference_range(obx[7], obx[6], value_type in ("NM", "SN"))
    if reference_range:
        observation["referenceRange"] = [reference_range]
    method = dt.codeable(obx[17], ctx.ods)
    if method:
        observation["method"] = method
    return observation, key


def number(text: str) -> int | FhirDecimal | None:
    """A v2 NM as a FHIR decimal, its precision kept (`1.50` stays `1.50`): an int when it has no
    fraction, else a FhirDecimal remembering its literal; None when it is not a number. A leading `+`
    and leading zeros, which JSON numbers cannot have, are dropped."""
    m = _NUMBER.fullmatch(text.strip())
    if m is None:
        return None
    sign, whole, fraction = m.groups()
    if not whole and not fraction:
        return None
    literal = ("-" if sign == "-" else "") + (whole.lstrip("0") or "0")
    if fraction:
        return FhirDecimal(f"{literal}.{fraction}")
    return int(literal)


def unit(ce: Field) -> dict[str, Any]:
    """OBX-6 (or RXA-7) as the unit parts of a Quantity: the UCUM code and system when the sender names
    UCUM as the coding system, and the unit text (the text component, else the code)."""
    code, text = ce.comp(1).strip(), ce.comp(2).strip()
    out: dict[str, Any] = {}
    if text or code:
        out["unit"] = text or code
    if code and ce.comp(3).strip().upper() == "UCUM":
        out["system"] = dt.UCUM
        out["code"] = code
    elif ce.comp(4).strip() and ce.comp(6).strip().upper() == "UCUM":
        out["system"] = dt.UCUM
        out["code"] = ce.comp(4).strip()
    return out


def _quantity(value: int | FhirDecimal, units: dict[str, Any], comparator: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if comparator:
        out["comparator"] = comparator
    return out | units


def _value(obx: Segment, value_type: str, ctx: Context, mapped: Mapped) -> dict[str, Any]:
    """Observation.value[x] from OBX-5 read as OBX-2 says (empty when there is no value)."""
    reps = obx[5].reps()
    if not reps:
        return {}
    where = f"OBX-5 (segment {obx.position})"
    first = reps[0]
    if value_type in ("ST", "TX", "FT", ""):
        if not value_type:
            mapped.warnings.append(f"OBX-2 (segment {obx.position}): no value type; the value is kept as text")
        text = "\n".join(r.text.rstrip() for r in reps).strip()
        return {"valueString": text} if text else {}
    if len(reps) > 1:
        mapped.warnings.append(f"{where}: the value repeats; only the first was mapped")
    if value_type == "NM":
        return _numeric(first.text, obx[6], where, mapped)
    if value_type == "SN":
        return _structured_numeric(first, obx[6], where, mapped)
    if value_type in ("CE", "CWE", "CNE", "CF"):
        concept = dt.codeable(first, ctx.ods)
        return {"valueCodeableConcept": concept} if concept else {}
    if value_type in ("DT", "TS", "DTM"):
        when = dt.datetime_(first.comp(1))
        if when:
            return {"valueDateTime": when}
        mapped.warnings.append(f"{where}: not a valid date or time; kept as text")
        return {"valueString": first.text.strip()}
    if value_type == "TM":
        m = _TIME.fullmatch(first.comp(1).strip())
        if m and int(m.group(1)) < 24 and int(m.group(2) or 0) < 60 and int(m.group(3) or 0) < 60:
            return {"valueTime": f"{m.group(1)}:{m.group(2) or '00'}:{m.group(3) or '00'}"}
        mapped.warnings.append(f"{where}: not a valid time; kept as text")
        return {"valueString": first.text.strip()}
    if value_type in ("ED", "RP"):
        mapped.warnings.append(f"OBX-2 (segment {obx.position}): encapsulated data and reference pointers are not "
                               "mapped")
        return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "unsupported",
                                                 "display": "Unsupported"}]}}
    mapped.warnings.append(f"OBX-2 (segment {obx.position}): a value type this mapping does not read; the value is "
                           "kept as text")
    text = first.text.strip()
    return {"valueString": text} if text else {}


def _numeric(text: str, units_field: Field, where: str, mapped: Mapped) -> dict[str, Any]:
    """An NM value: a number, or a number after a comparator (`<5`, `>=90`), as a Quantity."""
    text = text.strip()
    comparator = ""
    m = _COMPARED.fullmatch(text)
    if m:
        comparator, text = m.group(1), m.group(2)
    value = number(text)
    if value is None:
        mapped.warnings.append(f"{where}: a numeric value that is not a number; kept as text")
        return {"valueString": (comparator + text).strip()}
    return {"valueQuantity": _quantity(value, unit(units_field), comparator)}


def _structured_numeric(sn: Field, units_field: Field, where: str, mapped: Mapped) -> dict[str, Any]:
    """An SN (comparator ^ number ^ separator or suffix ^ number): a Quantity (`<^5`, `^182`), a Range
    (`^10^-^20`) or a Ratio (`^1^:^128`, `^1^/^128`); anything else (`^2^+`) as text."""
    comparator, first, separator, second = (sn.comp(i).strip() for i in (1, 2, 3, 4))
    low, high = number(first), number(second)
    units = unit(units_field)
    if comparator == "=":
        comparator = ""
    if low is not None and not separator and not second and (not comparator or comparator in COMPARATORS):
        return {"valueQuantity": _quantity(low, units, comparator)}
    if not comparator and low is not None and high is not None:
        if separator == "-":
            return {"valueRange": {"low": _quantity(low, units), "high": _quantity(high, units)}}
        if separator in (":", "/"):
            return {"valueRatio": {"numerator": {"value": low}, "denominator": {"value": high}}}
    text = "".join((comparator, first, separator, second))
    if separator != "+" or second:
        mapped.warnings.append(f"{where}: a structured numeric value that is not a quantity, range or ratio; kept "
                               "as text")
    return {"valueString": text} if text else {}


def _interpretation(flag: Field) -> dict[str, Any] | None:
    code = flag.comp(1).strip()
    if not code or code.lower() == "null":
        return None
    upper = code.upper()
    if upper in INTERPRETATIONS:
        return {"coding": [{"system": INTERPRETATION, "code": upper, "display": INTERPRETATIONS[upper]}]}
    return {"coding": [{"system": dt.hl7_table("0078"), "code": code}]}


def _reference_range(text_field: Field, units_field: Field, numeric: bool) -> dict[str, Any] | None:
    """OBX-7 as a reference range: `low-high` (also `low to high`), `<high`, `>low`, the text always
    kept as sent; the limits only for a numeric result."""
    text = text_field.text.strip()
    if not text:
        return None
    out: dict[str, Any] = {}
    if numeric:
        units = unit(units_field)
        m = _RANGE.fullmatch(text)
        compared = _COMPARED.fullmatch(text)
        if m:
            low, high = number(m.group(1)), number(m.group(2))
            if low is not None and high is not None:
                out = {"low": _quantity(low, units), "high": _quantity(high, units)}
        elif compared:
            limit = number(compared.group(2))
            if limit is not None:
                out = {"high" if compared.group(1).startswith("<") else "low": _quantity(limit, units)}
    out["text"] = text
    return out
