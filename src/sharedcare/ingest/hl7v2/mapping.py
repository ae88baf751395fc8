"""What every HL7 v2 mapping shares: the context it maps in, the transaction it builds, and the table
of mappers by message type.

A mapper turns one parsed message into a `Mapped`: a FHIR transaction Bundle of conditional PUTs
(`Patient?identifier=system|value`), each entry with a `urn:uuid:` fullUrl derived from its
identifier so references between entries resolve to whatever resource the identifier finds, plus
what the inbox needs to know (the patient the message is about, for ordering; when the source
recorded it; merges for the patient index; warnings). Mappers read no database: the same message
always maps to the same bundle, which is what the golden files in tests/data/hl7v2 pin down.

Each resource carries, in `meta.extension`, when the source recorded what it says
(`SOURCE_RECORDED`: EVN-2, else MSH-7): the record view shows freshness from it, and the inbox never
lets an older message overwrite what a newer one said (a resent or reordered A08 after an A03).
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2.message import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    Field,
    Message,
    ParseError,
    Segment,
)

SOURCE_RECORDED = "https://sharedcare.example/StructureDefinition/source-recorded"
_NAMESPACE = uuid.UUID("6f0f8a52-6a4c-4f55-9b51-8f1f3c2a9d10")  # sharedcare's HL7 v2 mappings


@dataclass(frozen=True)
class Context:
    """Who sent the message: the source's id in the registry and its organisation's ODS code."""

    source: str
    ods: str
    name: str | None = None  # the organisation's name, for display on references

    def organisation(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"identifier": {"system": dt.ODS_SYSTEM, "value": self.ods}}
        if self.name:
            ref["display"] = self.name
        return ref


@dataclass
class Merge:
    """A source's own merge (A34, A39, A40): the record known by `old` is the same patient as the
    message's PID patient, which survives."""

    old: dict[str, Any]  # the retired record's identifier (system, value)
    survivor: str  # fullUrl of the surviving Patient in the bundle


@dataclass
class Mapped:
    bundle: dict[str, Any]
    patient_key: str | None = None  # the source's identifier of the patient, "system|value"
    recorded: str | None = None  # when the source recorded it (FHIR dateTime)
    merges: list[Merge] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def token_value(system: str, value: str) -> str:
    """`system|value` as a token search value, with FHIR's backslash escapes."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
    return f"{esc(system)}|{esc(value)}"


def token(system: str, value: str) -> str:
    """`token_value` URL-encoded, for a search URL."""
    return quote(token_value(system, value), safe="")


class Transaction:
    """A transaction Bundle of conditional PUTs, one per resource identifier."""

    def __init__(self, recorded: str | None) -> None:
        self.recorded = recorded
        self.entries: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    def put(self, resource: dict[str, Any], ident: dict[str, Any]) -> str:
        """Add (or replace) the resource found by `ident`; its fullUrl, to reference it by."""
        res_type = resource["resourceType"]
        url = f"{res_type}?identifier={token(ident['system'], ident['value'])}"
        full_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, url)}"
        if self.recorded:
            meta = resource.setdefault("meta", {})
            meta["extension"] = [{"url": SOURCE_RECORDED, "valueDateTime": self.recorded}]
        if not any(i.get("system") == ident["system"] and i.get("value") == ident["value"]
                   for i in resource.get("identifier", [])):
            resource.setdefault("identifier", []).insert(0, dict(ident))
        entry = {"fullUrl": full_url, "resource": resource, "request": {"method": "PUT", "url": url}}
        if full_url in self._index:
            self.entries[self._index[full_url]] = entry
        else:
            self._index[full_url] = len(self.entries)
            self.entries.append(entry)
        return full_url

    def ensure(self, resource: dict[str, Any], ident: dict[str, Any]) -> str:
        """Add the resource found by `ident` only if there is none yet (a conditional create): for a
        message that names a patient but does not speak for their details (a result, a booking),
        so a thin PID never overwrites what the source's ADT said. Its fullUrl."""
        full_url = self.put(resource, ident)
        entry = self.entries[self._index[full_url]]
        entry["request"] = {"method": "POST", "url": resource["resourceType"],
                            "ifNoneExist": f"identifier={token(ident['system'], ident['value'])}"}
        return full_url

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def recorded_at(msg: Message) -> str | None:
    """When the source recorded the event: EVN-2 (recorded date/time), else MSH-7."""
    evn = msg.first("EVN")
    return (dt.datetime_(evn[2].comp(1)) if evn is not None else None) or dt.datetime_(msg.sent_at)


def begin(msg: Message) -> tuple[Transaction, Mapped]:
    """What a mapper begins with: an empty transaction and an empty `Mapped` for `msg`, both carrying
    when the source recorded it (`recorded_at`). The mapper sets `Mapped.bundle` when it is done."""
    recorded = recorded_at(msg)
    return Transaction(recorded), Mapped({}, recorded=recorded)


def require(seg: Segment | None, name: str) -> Segment:
    if seg is None:
        raise ParseError(f"the message has no {name} segment", REQUIRED_FIELD_MISSING, segment=name)
    return seg


def one_patient(msg: Message, what: str) -> None:
    """Refuse a message naming more than one patient (several PIDs), whose content could not be filed
    safely against one record: a segment sequence error at the second PID. `what` names the message in
    the error's text ("a result message")."""
    pids = msg.all("PID")
    if len(pids) > 1:
        raise ParseError(f"{what} may name only one patient", SEGMENT_SEQUENCE_ERROR, segment="PID",
                         position=pids[1].position)


def visit_identifier(pv1: Segment, ctx: Context) -> dict[str, Any] | None:
    """The identifier of the visit PV1-19 (the visit number) names, which is what the source's Encounter
    is keyed by: the CX's value under its `urn:oid:` system when it has one, else under the source's
    own visit numbers (`LOCAL_ID_BASE/{ods}/visit`); None when PV1-19 is empty. ADT writes the Encounter
    under it; the other messages refer to the Encounter by it (`visit_reference`)."""
    visit, _ = dt.identifier(pv1[19], ctx.ods)
    if visit is None:
        return None
    system = visit["system"] if visit["system"].startswith("urn:oid:") else f"{dt.LOCAL_ID_BASE}/{ctx.ods}/visit"
    return {"system": system, "value": visit["value"]}


def visit_reference(msg: Message, ctx: Context) -> dict[str, Any] | None:
    """The visit the message's (first) PV1 names by PV1-19, as a reference to the Encounter by
    identifier (`visit_identifier`, as ADT keys it); None without a PV1 or a visit number."""
    pv1 = msg.first("PV1")
    ident = visit_identifier(pv1, ctx) if pv1 is not None else None
    return {"type": "Encounter", "identifier": ident} if ident is not None else None


def location(pl: Field, ctx: Context, tx: Transaction, *, update: bool) -> str | None:
    """A PL (point of care^room^bed^facility^...) as the source's Location in the transaction; its
    fullUrl, or None when PL-1 (the point of care) is empty. Named `ward, room R, bed B`, the facility
    as its description, managed by the source's organisation, and keyed by `facility/ward/room/bed`
    (the parts given) under `LOCAL_ID_BASE/{ods}/location`, so every message type finds the same
    Location.

    `update`: the message speaks for the place (ADT), so the Location is replaced by what it says
    (`Transaction.put`); otherwise it is created only if the source has none yet (`Transaction.ensure`)."""
    ward, room, bed = pl.comp(1).strip(), pl.comp(2).strip(), pl.comp(3).strip()
    facility = pl.comp(4).strip()
    if not ward:
        return None
    name = ward + (f", room {room}" if room else "") + (f", bed {bed}" if bed else "")
    place: dict[str, Any] = {"resourceType": "Location", "status": "active", "name": name, "mode": "instance",
                             "managingOrganization": ctx.organisation()}
    if facility:
        place["description"] = facility
    key = {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/location",
           "value": "/".join(p for p in (facility, ward, room, bed) if p)}
    return tx.put(place, key) if update else tx.ensure(place, key)


def staff_reference(xcn: Field, ctx: Context) -> dict[str, Any] | None:
    """An XCN (or PPN) as a reference to one of the source's staff: type Practitioner, by the source's
    staff identifier (XCN-1, under `LOCAL_ID_BASE/{ods}/staff`) when there is one and with the name
    (XCN-2 to XCN-6, `dt.display_name`) as display when there is one; None with neither."""
    staff_id = xcn.comp(1).strip()
    name = dt.display_name(dt.practitioner_name(xcn))
    if not staff_id and not name:
        return None
    ref: dict[str, Any] = {"type": "Practitioner"}
    if staff_id:
        ref["identifier"] = {"system": f"{dt.LOCAL_ID_BASE}/{ctx.ods}/staff", "value": staff_id}
    if name:
        ref["display"] = name
    return ref


def staff_key(ref: dict[str, Any]) -> str:
    """Who a `staff_reference` names, to list each person once: by the staff identifier when it has
    one, else by the name (prefixed, so the two never collide with each other or with a fullUrl)."""
    return f"staff:{ref['identifier']['value']}" if "identifier" in ref else f"name:{ref['display']}"


def optional_date(field: Field, mapped: Mapped, warning: str) -> str | None:
    """The DT (or the date of the TS) in `field` as a FHIR date; None when there is none, and then, if
    the field was sent but is not a valid date, `warning` (which must not quote the value) is added to
    the warnings: the date is left out rather than refusing the message."""
    value = dt.date_(field.comp(1))
    if value is None and field:
        mapped.warnings.append(warning)
    return value


Mapper = Callable[[Message, Context], Mapped]
MAPPERS: dict[str, Mapper] = {}  # by message type, e.g. "ADT"
TRIGGERS: dict[str, frozenset[str]] = {}  # the trigger events each type's mapper takes


def mapper(message_type: str, triggers: tuple[str, ...]) -> Callable[[Mapper], Mapper]:
    def register(fn: Mapper) -> Mapper:
        MAPPERS[message_type] = fn
        TRIGGERS[message_type] = frozenset(triggers)
        return fn
    return register


def check_supported(msg: Message) -> None:
    """Refuse (AR) a message type or trigger event no mapper takes, before it is stored."""
    _load_mappers()
    if msg.message_type not in MAPPERS:
        raise ParseError("this message type is not accepted", UNSUPPORTED_MESSAGE_TYPE, segment="MSH", position=1,
                         field_no=9)
    if msg.trigger not in TRIGGERS[msg.message_type]:
        raise ParseError("this trigger event is not accepted for its message type", UNSUPPORTED_EVENT_CODE,
                         segment="MSH", position=1, field_no=9)


def map_message(msg: Message, ctx: Context) -> Mapped:
    check_supported(msg)
    return MAPPERS[msg.message_type](msg, ctx)


# One module per message type; importing it registers its mapper.
MAPPER_MODULES = ("adt", "oru", "vxu", "siu", "mdm")


def _load_mappers() -> None:
    for name in MAPPER_MODULES:
        importlib.import_module(f"sharedcare.ingest.hl7v2.{name}")
