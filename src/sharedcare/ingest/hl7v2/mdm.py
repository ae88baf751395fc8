"""MDM (medical document management) to DocumentReference, following HL7's v2-to-FHIR MDM_T02 message
map (segment maps TXA to DocumentReference and OBX to its content) and the way London's trusts send
clinical letters and discharge summaries (v2.4, the text in TX or FT OBX segments, sometimes a PDF).

| trigger | meaning | what is written |
|---|---|---|
| T01, T02 | original document (notification; with content) | DocumentReference, current |
| T03, T04 | status change (notification; with content) | DocumentReference with the new statuses |
| T05, T06 | addendum (notification; with content) | a new DocumentReference that appends to its parent (TXA-13) |
| T07, T08 | edit (notification; with content) | DocumentReference amended (replacing TXA-13 if another) |
| T09, T10 | replacement (notification; with content) | a new DocumentReference, amended, replacing TXA-13 |
| T11 | cancel | DocumentReference entered-in-error, its content no longer carried |

| segment | what is written |
|---|---|
| PID | the Patient, created only if the source has sent none (a document never overwrites the patient's details) |
| PV1-19 | context.encounter, by the visit number (as adt.py keys the Encounter) |
| TXA-12 | masterIdentifier and identifier, the key (under its OID when EI-4 is ISO, else the source's document ids) |
| TXA-2 | type |
| TXA-4 | context.period.start (when the documented activity took place) |
| TXA-6 | date (the origination time, when it has a time: date is an instant) |
| TXA-9, then TXA-5 | author (originator, then the primary activity provider), by staff identifier and name |
| TXA-22, else TXA-10 | authenticator (the person who authenticated it, else the one assigned to) |
| TXA-13 | relatesTo appends (T05, T06) or replaces (T07 to T10) the parent, by identifier |
| TXA-17 | docStatus (table 0271: AU and LA final, amended for edits and replacements; DI, DO, IN, IP, PA preliminary) |
| TXA-18 | securityLabel; meta.security in v3 Confidentiality (R, V; U as N): a restricted one stays in the source |
| TXA-19 | status (table 0275: AV, UN current; OB superseded; CA entered-in-error), the code kept on status |
| TXA-25 | description, and the attachments' title |
| OBX TX, FT, ST | one text/plain (UTF-8) attachment: each OBX-5 (and each repetition) a line, FT formatting undone |
| OBX ED | an attachment per value: its MIME type (ED-2, ED-3), its data (Base64 as sent, checked; Hex and A encoded) |
| OBX RP | an attachment per value with the pointer as its url |
| the source | custodian, by ODS code |

DocumentReference.content is required. A message without content (the notifications, or a document
whose OBX segments carry none) writes an attachment with only a title, and, since a conditional PUT
replaces the whole resource, is written only if the document is not already held (a conditional
create): a notification never blanks a document already received. Withdrawing a document (T11, or
TXA-19 CA or OB) always applies, and drops the content; as that replaces the stored version with its
labels, a withdrawal that does not give TXA-18 is labelled restricted (R): a cancel must never lift a
restriction the source set on the document before. A replaced parent is not rewritten (that would drop
its content): its replacement names it in relatesTo.

Not mapped: the order (ORC, OBR, TQ1), consents (CON), notes on the content (NTE after OBX), the
transcriptionist and edit times (TXA-7, TXA-8, TXA-11), TXA-3 (the content type comes from OBX-2), and
OBX segments of other value types (named in a warning).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import quote

from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2 import patient as pid_map
from sharedcare.ingest.hl7v2.mapping import (
    Context,
    Mapped,
    begin,
    mapper,
    require,
    staff_key,
    staff_reference,
    visit_reference,
)
from sharedcare.ingest.hl7v2.message import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    Field,
    Message,
    ParseError,
    Segment,
)

TRIGGERS = ("T01", "T02", "T03", "T04", "T05", "T06", "T07", "T08", "T09", "T10", "T11")
ADDENDA = frozenset({"T05", "T06"})
EDITS = frozenset({"T07", "T08", "T09", "T10"})  # edits and replacements
CANCEL = "T11"
# Table 0271 (document completion status) to composition-status.
FINAL = frozenset({"AU", "LA"})
PRELIMINARY = frozenset({"DI", "DO", "IN", "IP", "PA"})
# Table 0275 (document availability status) to document-reference-status.
AVAILABILITY = {"AV": "current", "OB": "superseded", "CA": "entered-in-error", "UN": "current"}
WITHDRAWN = frozenset({"superseded", "entered-in-error"})
ALTERNATE_CODES = "http://hl7.org/fhir/StructureDefinition/alternate-codes"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
# Table 0272 (document confidentiality status) and its v3 Confidentiality equivalent.
CONFIDENTIAL = {"V": ("V", "very restricted", "Very restricted"), "R": ("R", "restricted", "Restricted"),
                "U": ("N", "normal", "Usual control")}
TEXT_TYPES = frozenset({"TX", "FT", "ST"})
TEXT_PLAIN = "text/plain; charset=utf-8"
# Table 0191 (type of referenced data) as MIME top-level types; subtypes (table 0291) that say it alone.
MEDIA_TYPES = {"AP": "application", "APPLICATION": "application", "IM": "image", "IMAGE": "image", "SI": "image",
               "NS": "image", "AU": "audio", "AUDIO": "audio", "TX": "text", "TEXT": "text", "VIDEO": "video",
               "MODEL": "model", "MULTIPART": "multipart"}
SUBTYPE_MEDIA = {"pdf": "application", "rtf": "application", "xml": "application", "octet-stream": "application",
                 "postscript": "application", "msword": "application", "dicom": "application", "jpeg": "image",
                 "gif": "image", "tiff": "image", "png": "image", "html": "text", "plain": "text"}
_MIME = re.compile(r"[a-z]+/[a-z0-9][a-z0-9.+-]*")
_SPACE = re.compile(r"\s+")


@mapper("MDM", TRIGGERS)
def mdm(msg: Message, ctx: Context) -> Mapped:
    tx, mapped = begin(msg)
    txa = require(msg.first("TXA"), "TXA")
    patient_url = pid_map.add(msg, ctx, tx, mapped, update=False)
    key = dt.entity_identifier(txa[12], ctx.ods, "document")
    if key is None:
        raise ParseError("TXA-12 holds no unique document number", REQUIRED_FIELD_MISSING, segment="TXA",
                         position=txa.position, field_no=12)
    trigger = msg.trigger
    status, availability = _status(trigger, txa, mapped)
    document: dict[str, Any] = {"resourceType": "DocumentReference", "masterIdentifier": dict(key),
                                "status": status}
    if availability:
        document["_status"] = {"extension": [{"url": ALTERNATE_CODES, "valueCodeableConcept": {
            "coding": [{"system": dt.hl7_table("0275"), "code": availability}]}}]}
    doc_status = _doc_status(trigger, txa, mapped)
    if doc_status:
        document["docStatus"] = doc_status
    kind = dt.codeable(txa[2], ctx.ods)
    if kind:
        document["type"] = kind
    document["subject"] = {"reference": patient_url}
    created = dt.instant(txa[6].comp(1))
    if created:
        document["date"] = created
    authors = _people([*txa[9].reps(), *txa[5].reps()], ctx)
    if authors:
        document["author"] = authors
    authenticator = _people(txa[22].reps()[:1] or txa[10].reps()[:1], ctx)
    if authenticator:
        document["authenticator"] = authenticator[0]
    document["custodian"] = ctx.organisation()
    relates = _relates_to(trigger, txa, key, ctx)
    if relates:
        document["relatesTo"] = [relates]
    title = txa[25].text.strip()
    if title:
        document["description"] = title
    _confidentiality(txa, document, mapped)
    content = _content(msg, title, mapped)
    context = _context(msg, txa, ctx)
    if context:
        document["context"] = context
    if content:
        document["content"] = content
        tx.put(document, key)
    else:
        fallback = title or (kind or {}).get("text") or next(
            (c["display"] for c in (kind or {}).get("coding", []) if c.get("display")), "Document")
        document["content"] = [{"attachment": {"title": fallback}}]
        if trigger == CANCEL or status in WITHDRAWN:
            if not txa[18].value.strip():
                document["meta"] = {"security": [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]}
                mapped.warnings.append("TXA-18: a withdrawal that does not say the document's confidentiality is "
                                       "labelled restricted, since the document it replaces may have been")
            tx.put(document, key)
        else:
            mapped.warnings.append("OBX: the message carries no document content; the document is written with a "
                                   "title only, and only if it is not already held")
            tx.ensure(document, key)
    mapped.bundle = tx.bundle()
    return mapped


def _status(trigger: str, txa: Segment, mapped: Mapped) -> tuple[str, str | None]:
    """DocumentReference.status, and the TXA-19 code to keep beside it when it is not simply available."""
    code = txa[19].value.strip().upper()
    kept = code if code in AVAILABILITY and code != "AV" else None
    if trigger == CANCEL:
        return "entered-in-error", kept
    if not code:
        return "current", None
    if code not in AVAILABILITY:
        mapped.warnings.append("TXA-19: the availability status is not one of table 0275's; current assumed")
        return "current", None
    return AVAILABILITY[code], kept


def _doc_status(trigger: str, txa: Segment, mapped: Mapped) -> str | None:
    code = txa[17].value.strip().upper()
    if code in FINAL:
        return "amended" if trigger in EDITS else "final"
    if code in PRELIMINARY:
        return "preliminary"
    if code:
        mapped.warnings.append("TXA-17: the completion status is not one of table 0271's; docStatus left out")
    return None


def _people(xcns: list[Field], ctx: Context) -> list[dict[str, Any]]:
    """XCN (or PPN) values as references to the source's staff, by identifier and name, once each."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for xcn in xcns:
        ref = staff_reference(xcn, ctx)
        if ref is None or staff_key(ref) in seen:
            continue
        seen.add(staff_key(ref))
        out.append(ref)
    return out


def _relates_to(trigger: str, txa: Segment, key: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    if trigger not in ADDENDA and trigger not in EDITS:
        return None
    parent = dt.entity_identifier(txa[13], ctx.ods, "document")
    if parent is None or parent == key:
        return None
    return {"code": "appends" if trigger in ADDENDA else "replaces",
            "target": {"type": "DocumentReference", "identifier": parent}}


def _confidentiality(txa: Segment, document: dict[str, Any], mapped: Mapped) -> None:
    """TXA-18 as securityLabel (the table 0272 code and its v3 Confidentiality equivalent) and as the
    meta.security label the store reads: a restricted document stays within the source organisation."""
    code = txa[18].value.strip().upper()
    if not code:
        return
    if code not in CONFIDENTIAL:
        mapped.warnings.append("TXA-18: the confidentiality status is not one of table 0272's; no label written")
        return
    v3_code, v3_display, display = CONFIDENTIAL[code]
    v3 = {"system": CONFIDENTIALITY, "code": v3_code, "display": v3_display}
    document["securityLabel"] = [{"coding": [v3, {"system": dt.hl7_table("0272"), "code": code,
                                                  "display": display}]}]
    document["meta"] = {"security": [dict(v3)]}


def _context(msg: Message, txa: Segment, ctx: Context) -> dict[str, Any]:
    context: dict[str, Any] = {}
    encounter = visit_reference(msg, ctx)
    if encounter is not None:
        context["encounter"] = [encounter]
    activity = dt.datetime_(txa[4].comp(1))
    if activity:
        context["period"] = {"start": activity}
    return context


def _values(obx: Segment) -> list[Field]:
    """Every repetition of OBX-5, empty ones included (a blank line of a text document)."""
    field = obx[5]
    return [Field(r, field.enc) for r in field.raw.split(field.enc.repetition)]


def _content(msg: Message, title: str, mapped: Mapped) -> list[dict[str, Any]]:
    """The document's content from its OBX segments: the text ones joined into one attachment (where the
    first of them stands), each encapsulated or referenced value an attachment of its own."""
    out: list[dict[str, Any]] = []
    lines: list[str] = []
    text_at: int | None = None
    for obx in msg.all("OBX"):
        value_type = obx[2].value.strip().upper()
        if value_type in TEXT_TYPES:
            if text_at is None:
                text_at = len(out)
                out.append({})
            lines.extend(v.text for v in _values(obx))
        elif value_type == "ED":
            out.extend({"attachment": a} for v in _values(obx) if (a := _encapsulated(obx, v, mapped)))
        elif value_type == "RP":
            out.extend({"attachment": a} for v in _values(obx) if (a := _pointer(obx, v, mapped)))
        else:
            mapped.warnings.append(f"OBX (segment {obx.position}): its value type is not document content (TX, FT, "
                                   "ST, ED, RP); left out")
    if text_at is not None:
        text = "\n".join(lines)
        if text.strip():
            attachment: dict[str, Any] = {"contentType": TEXT_PLAIN,
                                          "data": base64.b64encode(text.encode("utf-8")).decode("ascii")}
            out[text_at] = {"attachment": attachment}
        else:
            mapped.warnings.append("OBX: the text segments are all empty; no text content written")
            del out[text_at]
    if title:
        for item in out:
            item["attachment"].setdefault("title", title)
    return out


def _media_type(kind: str, subtype: str) -> str | None:
    """A MIME type from ED or RP type of data (table 0191) and subtype (table 0291), when one can be told."""
    minor = subtype.strip().lower()
    if _MIME.fullmatch(minor):
        return minor  # a sender that puts the whole MIME type in the subtype
    major = MEDIA_TYPES.get(kind.strip().upper()) or SUBTYPE_MEDIA.get(minor)
    candidate = f"{major}/{minor}" if major and minor else None
    return candidate if candidate and _MIME.fullmatch(candidate) else None


def _encapsulated(obx: Segment, value: Field, mapped: Mapped) -> dict[str, Any] | None:
    """An ED value (source application^type of data^subtype^encoding^data) as an attachment."""
    encoding = value.comp(4).strip().upper()
    data = value.comp(5)
    if not data.strip():
        mapped.warnings.append(f"OBX-5 (segment {obx.position}): the encapsulated data is empty; left out")
        return None
    if encoding == "BASE64":
        data = _SPACE.sub("", data)
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ParseError("OBX-5: the encapsulated data is not valid base64", DATA_TYPE_ERROR, segment="OBX",
                             position=obx.position, field_no=5) from None
    elif encoding == "HEX":
        try:
            data = base64.b64encode(bytes.fromhex(_SPACE.sub("", data))).decode("ascii")
        except ValueError:
            raise ParseError("OBX-5: the encapsulated data is not valid hexadecimal", DATA_TYPE_ERROR, segment="OBX",
                             position=obx.position, field_no=5) from None
    elif encoding == "A":
        data = base64.b64encode(data.encode("utf-8")).decode("ascii")
    else:
        raise ParseError("OBX-5: the encapsulated data's encoding is not one of table 0299's (A, Hex, Base64)",
                         DATA_TYPE_ERROR, segment="OBX", position=obx.position, field_no=5)
    return {"contentType": _media_type(value.comp(2), value.comp(3)) or "application/octet-stream", "data": data}


def _pointer(obx: Segment, value: Field, mapped: Mapped) -> dict[str, Any] | None:
    """An RP value (pointer^application id^type of data^subtype) as an attachment with the pointer as url."""
    pointer = value.comp(1).strip()
    if not pointer:
        mapped.warnings.append(f"OBX-5 (segment {obx.position}): the reference pointer is empty; left out")
        return None
    attachment: dict[str, Any] = {"url": quote(pointer, safe=":/?#[]@!$&'()*+,;=%~")}
    media = _media_type(value.comp(3), value.comp(4))
    if media:
        attachment["contentType"] = media
    return attachment
