"""HL7 v2 data types as FHIR R4 data types, following HL7's v2-to-FHIR data type maps (CX to
Identifier, XPN to HumanName, XAD to Address, XTN to ContactPoint, CWE/CE to CodeableConcept, TS/DTM
to dateTime) and the NHS's ADT conventions (the NHS number in PID-3 with assigning authority NHS and
identifier type NH; organisations by ODS code).

Times: a v2 timestamp without an offset is local time where the source is, which for London's
systems is Europe/London, so it is given the offset in force then (FHIR needs one once a time is
present). Precision is kept: `2025` stays a year, `202507` a month.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sharedcare.ingest.hl7v2.message import Field
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM, nhs_number

LONDON = ZoneInfo("Europe/London")
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_USER_SYSTEM = "https://fhir.nhs.uk/Id/sds-user-id"
# A number a source sent as an NHS number that fails its check digit: kept as the source's own
# identifier, never used as an NHS number (and so never for linking).
UNVERIFIED_NHS_SYSTEM = "https://sharedcare.example/Id/unverified-nhs-number"
LOCAL_ID_BASE = "https://sharedcare.example/Id/hl7v2"
SOURCE_CODES_BASE = "https://sharedcare.example/CodeSystem/hl7v2"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
# Coding systems named in CWE-3 (HL7 table 0396 and common local spellings) and their FHIR URIs.
CODING_SYSTEMS = {
    "SCT": SNOMED, "SNM": SNOMED, "SNOMED": SNOMED, "SNOMEDCT": SNOMED, "SNOMED-CT": SNOMED,
    "LN": LOINC, "LOINC": LOINC,
    "UCUM": UCUM,
    "I10": ICD10, "ICD10": ICD10, "ICD-10": ICD10, "I10C": ICD10,
    "I9": "http://hl7.org/fhir/sid/icd-9-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "DMD": "https://dmd.nhs.uk", "DM+D": "https://dmd.nhs.uk",
    "READ": "http://read.info/readv2", "CTV3": "http://read.info/ctv3",
}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")


def hl7_table(number: str) -> str:
    return f"http://terminology.hl7.org/CodeSystem/v2-{number}"


def coding_system(name: str, source: str) -> str:
    """The FHIR system for a v2 coding system name; an unknown (local) one is the source's own."""
    if not name:
        return f"{SOURCE_CODES_BASE}/{_slug(source)}/local"
    upper = name.upper()
    if upper in CODING_SYSTEMS:
        return CODING_SYSTEMS[upper]
    if upper.startswith("HL7") and upper[3:].isdigit():
        return hl7_table(upper[3:])
    if re.fullmatch(r"\d+(\.\d+)+", name):
        return f"urn:oid:{name}"
    return f"{SOURCE_CODES_BASE}/{_slug(source)}/{_slug(name)}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "local"


def datetime_(value: str) -> str | None:
    """A v2 TS/DTM as a FHIR dateTime (or None when empty or malformed)."""
    m = _TS.match(value.strip()) if value else None
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    if month and not 1 <= int(month) <= 12:
        return None
    if hour is None:
        if day:
            try:
                datetime(int(year), int(month), int(day))
            except ValueError:
                return None
        return "-".join(p for p in (year, month, day) if p)
    try:
        naive = datetime(int(year), int(month or 1), int(day or 1), int(hour), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if offset:
        zone = f"{offset[0]}{offset[1:3]}:{offset[3:]}"
        if int(offset[1:3]) > 14 or int(offset[3:]) > 59:
            return None
    else:
        utc = naive.replace(tzinfo=LONDON).utcoffset()
        assert utc is not None
        minutes = int(utc.total_seconds() // 60)
        zone = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    text = f"{naive:%Y-%m-%dT%H:%M:%S}"
    if fraction:
        text += fraction
    return text + zone


def date_(value: str) -> str | None:
    """A v2 DT (or the date of a TS) as a FHIR date."""
    full = datetime_(value)
    return full[:10] if full else None


def instant(value: str) -> str | None:
    """A v2 TS as a FHIR instant: `datetime_(value)` only when it gives a time (an instant cannot be
    just a date); None for a date alone, an empty value or a malformed one."""
    full = datetime_(value)
    return full if full and "T" in full else None


def identifier(cx: Field, source: str) -> tuple[dict[str, Any] | None, bool]:
    """A CX as an Identifier: (identifier, whether it is a valid NHS number). An NHS number (type NH,
    or authority NHS) that fails its check digit is kept under the unverified system."""
    value = cx.comp(1).strip()
    if not value:
        return None, False
    authority, authority_id, authority_kind = cx.comp(4, 1), cx.comp(4, 2), cx.comp(4, 3)
    kind = cx.comp(5).strip().upper()
    if kind == "NH" or authority.upper() == "NHS" or authority_id == "2.16.840.1.113883.2.1.4.1":
        checked = nhs_number(value)
        if checked is not None:
            return {"system": NHS_NUMBER_SYSTEM, "value": checked}, True
        return {"system": UNVERIFIED_NHS_SYSTEM, "value": value,
                "type": {"coding": [{"system": hl7_table("0203"), "code": "NH"}]}}, False
    if authority_id and authority_kind.upper() == "ISO":
        system = f"urn:oid:{authority_id}"
    else:
        system = f"{LOCAL_ID_BASE}/{_slug(source)}/{_slug(authority or kind or 'id')}"
    out: dict[str, Any] = {"system": system, "value": value}
    if kind:
        out["type"] = {"coding": [{"system": hl7_table("0203"), "code": kind}]}
    return out, False


def entity_identifier(ei: Field, source: str, kind: str) -> dict[str, Any] | None:
    """An EI (entity identifier: an order number, an appointment or document id) as an Identifier, or
    None when EI-1 is empty: under `urn:oid:` its universal id (EI-3) when EI-4 says ISO and EI-3 is an
    OID, else under the source's own system for `kind`, `LOCAL_ID_BASE/{source}/{kind}` (`source` is
    the sender's ODS code, used as it is)."""
    value = ei.comp(1).strip()
    if not value:
        return None
    universal, universal_type = ei.comp(3).strip(), ei.comp(4).strip().upper()
    if universal_type == "ISO" and _OID.fullmatch(universal):
        return {"system": f"urn:oid:{universal}", "value": value}
    return {"system": f"{LOCAL_ID_BASE}/{source}/{kind}", "value": value}


def typed(ident: dict[str, Any], code: str) -> dict[str, Any]:
    """A copy of the identifier with its v2 identifier type (table 0203: FILL, PLAC, ...) as `type`,
    replacing any it had."""
    return {**ident, "type": {"coding": [{"system": hl7_table("0203"), "code": code}]}}


NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "A": "anonymous", "B": "old",
            "C": "old", "S": "anonymous", "U": "temp", "T": "temp"}


def human_name(xpn: Field) -> dict[str, Any] | None:
    """An XPN as a HumanName (family, given and middle names, prefix, suffix, use)."""
    family = xpn.comp(1, 1).strip()
    given = [g for g in (xpn.comp(2).strip(), xpn.comp(3).strip()) if g]
    if not family and not given:
        return None
    out: dict[str, Any] = {}
    use = NAME_USE.get(xpn.comp(7).upper())
    if use:
        out["use"] = use
    if family:
        out["family"] = family
    if given:
        out["given"] = given
    if xpn.comp(5).strip():
        out["prefix"] = [xpn.comp(5).strip()]
    suffixes = [s for s in (xpn.comp(4).strip(), xpn.comp(6).strip()) if s]
    if suffixes:
        out["suffix"] = suffixes
    return out


ADDRESS_USE = {"H": ("home", None), "B": ("work", None), "O": ("work", None), "C": ("temp", None),
               "M": (None, "postal"), "P": ("home", None), "BA": ("billing", None), "BI": ("billing", None),
               "OLD": ("old", None), "BDL": (None, None), "L": ("home", None)}


def address(xad: Field) -> dict[str, Any] | None:
    """An XAD as an Address (lines, city, district, postcode, country, use)."""
    lines_ = [x.strip() for x in (xad.comp(1, 1), xad.comp(2)) if x.strip()]
    city, district, postcode, country = (xad.comp(3).strip(), xad.comp(4).strip(), xad.comp(5).strip(),
                                         xad.comp(6).strip())
    if not (lines_ or city or district or postcode):
        return None
    out: dict[str, Any] = {}
    use, kind = ADDRESS_USE.get(xad.comp(7).upper(), (None, None))
    if use:
        out["use"] = use
    if kind:
        out["type"] = kind
    if lines_:
        out["line"] = lines_
    if city:
        out["city"] = city
    if district:
        out["district"] = district
    if postcode:
        out["postalCode"] = postcode.upper()
    if country:
        out["country"] = country
    return out


TELECOM_USE = {"PRN": "home", "ORN": "home", "WPN": "work", "VHN": "home", "ASN": "temp", "EMR": "temp",
               "NET": None, "BPN": "work", "PRS": "mobile"}


def contact_point(xtn: Field) -> dict[str, Any] | None:
    """An XTN as a ContactPoint: the number (XTN-1, or the parts of v2.5 XTN-6/7) or email (XTN-4)."""
    equipment = xtn.comp(3).upper()
    email = xtn.comp(4).strip()
    number = xtn.comp(1).strip() or "".join(p for p in (xtn.comp(6), xtn.comp(7)) if p).strip()
    use_code = xtn.comp(2).upper()
    if email and (equipment == "INTERNET" or use_code == "NET" or not number):
        out: dict[str, Any] = {"system": "email", "value": email}
    elif number:
        out = {"system": "fax" if equipment == "FX" else "phone", "value": number}
    else:
        return None
    use = "mobile" if equipment == "CP" else TELECOM_USE.get(use_code)
    if use:
        out["use"] = use
    return out


def codeable(cwe: Field, source: str) -> dict[str, Any] | None:
    """A CE/CWE as a CodeableConcept: the identifier (components 1-3) and the alternate (4-6) as
    codings, the text kept; the original coding is always kept as sent."""
    codings = []
    for code_i, text_i, system_i in ((1, 2, 3), (4, 5, 6)):
        code = cwe.comp(code_i).strip()
        if code:
            coding: dict[str, Any] = {"system": coding_system(cwe.comp(system_i).strip(), source), "code": code}
            if cwe.comp(text_i).strip():
                coding["display"] = cwe.comp(text_i).strip()
            codings.append(coding)
    text = cwe.comp(2).strip() or cwe.comp(5).strip() or cwe.comp(9).strip()
    if not codings and not text:
        return None
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


def practitioner_name(xcn: Field) -> dict[str, Any] | None:
    """An XCN's name part (components 2-6) as a HumanName."""
    family = xcn.comp(2, 1).strip()
    given = [g for g in (xcn.comp(3).strip(), xcn.comp(4).strip()) if g]
    if not family and not given:
        return None
    out: dict[str, Any] = {}
    if family:
        out["family"] = family
    if given:
        out["given"] = given
    if xcn.comp(6).strip():
        out["prefix"] = [xcn.comp(6).strip()]
    return out


def display_name(name: dict[str, Any] | None) -> str | None:
    if not name:
        return None
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    text = " ".join(p for p in parts if p)
    return text or None


GENDER = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}


def gender(value: str) -> str | None:
    return GENDER.get(value.strip().upper()[:1]) if value.strip() else None
