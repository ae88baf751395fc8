"""CSV extracts to FHIR R4 through a per-source column mapping, written in YAML (docs/csv-mappings.md).

Social care councils and NHS 111 send daily CSV extracts. A mapping says, for one source's extract,
which columns it has and how each row becomes resources: Patient, EpisodeOfCare, Encounter,
ServiceRequest and CarePlan. `load` reads and checks a mapping (every mistake is an `InvalidMapping`
naming the key path); `map_row` turns one row into a `Mapped` (the same as an HL7 v2 message's: a
transaction Bundle of conditional PUTs, the patient key, when the source recorded the row, warnings);
`packaged` gives a mapping shipped with sharedcare by name (`social-care`, `nhs-111`).

The format, in full::

    description: A council's adult social care extract, one row per service
    columns: [case_id, service_id, nhs_number, given_name, family_name, birth_date, sex, postcode,
              service, start_date, end_date, hours_per_week, key_worker, updated]
    recorded: {column: updated, type: dateTime, format: "%d/%m/%Y %H:%M"}
    resources:
      - name: patient
        type: Patient
        id: {system: "https://sharedcare.example/Id/csv/{source}/case", value: case_id}
        nhs_number: nhs_number
        fields:
          active: true
          name:
            - family: {column: family_name}
              given: [{column: given_name}]
          gender: {column: sex, map: {male: male, female: female, M: male, F: female}}
          birthDate: {column: birth_date, format: "%d/%m/%Y"}
          address:
            - postalCode: {column: postcode}
      - name: episode
        type: EpisodeOfCare
        id: {system: "https://sharedcare.example/Id/csv/{source}/service", value: service_id}
        fields:
          status: {when: end_date, then: finished, else: active}
          type:
            - column: service
              type: CodeableConcept
              system: https://sharedcare.example/CodeSystem/social-care-service
              map: {Home Care: home-care, Residential: residential}
              display: {home-care: Home care, residential: Residential care}
          patient: {resource: patient}
          managingOrganization: {resource: source}
          period:
            start: {column: start_date, type: date, format: "%d/%m/%Y", required: true}
            end: {column: end_date, type: date, format: "%d/%m/%Y"}
          careManager: {display: {column: key_worker}}
      - name: plan
        type: CarePlan
        when: hours_per_week
        id: {system: "https://sharedcare.example/Id/csv/{source}/care-plan", value: service_id}
        fields:
          status: {when: end_date, then: completed, else: active}
          intent: plan
          subject: {resource: patient}
          activity:
            - detail:
                status: {when: end_date, then: completed, else: in-progress}
                quantity:
                  value: {column: hours_per_week, type: decimal}
                  unit: hours a week
                  system: http://unitsofmeasure.org
                  code: h/wk

The keys:
- `columns`: every column the extract has, by its header name. The header may order them in any way
  and carry more; a declared column it lacks is an error for the row.
- `recorded` (optional): the column saying when the source recorded the row, read as `date` or
  `dateTime`; every resource carries it (`SOURCE_RECORDED`) and the inbox never lets an older row
  overwrite a newer one. Without it, nothing is recorded.
- `resources`: what each row becomes, in the bundle's order. Each has a `name` (how others refer to it),
  a `type`, an `id` (the identifier it is found by: a `system` URI template, where `{source}` is the
  source's id and `{ods}` its ODS code, and the `value` column), `fields`, and optionally `when` (a
  column: the resource is written only if that column has a value). Exactly one is the Patient, always
  written, whose `nhs_number` names the NHS number column: a number failing its modulus 11 check is
  kept as the source's unverified identifier (`UNVERIFIED_NHS_SYSTEM`) with a warning.
- `fields`: the resource as FHIR R4 JSON (lists where FHIR has lists), where a value is a constant
  (`intent: plan`) or one of:
  `{column: NAME, type: ..., ...}` a value read from a column (below);
  `{resource: NAME}` a reference to another resource of the row (left out when that one is not
  written), `{resource: source}` to the organisation that sent the extract;
  `{when: NAME, then: A, else: B}` A when the column has a value, else B (or nothing).
- Conversions (`type`; by default the one the element's FHIR type needs): `text`; `code`; `date` and
  `dateTime` with a `format` (strptime, e.g. `%d/%m/%Y`; default ISO 8601; a time without an offset is
  London's local time and is given the offset in force then); `integer`; `decimal` (its digits kept as
  written); `Coding` and `CodeableConcept` with a `system` (the CodeableConcept's text is the value as
  sent). `map` translates the values (matched ignoring case and surrounding spaces) and `default` is for
  a value the map does not list; `display` gives a code's display text; `required: true` makes a blank
  value an error (it always is at an element FHIR requires, such as a status).

Blank values are left out, and so is an object (a name, an address, a quantity) when every column in it
is blank: its constants alone do not keep it. A value that cannot be read raises `ParseError` (HL7
table 0357 code: 101 a required value is blank, 102 a value is not of its type, 103 a value is not in
its map), naming the column and never quoting the value; the inbox keeps the row as a dead letter
with the reason, to be replayed once the mapping is fixed. No resource id is ever set (the store
assigns them); every resource carries the identifier it is found by.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import cache, lru_cache
from importlib import resources as package_files
from typing import Any

import yaml  # type: ignore[import-untyped]

from sharedcare.fhir.definitions import structure_definitions
from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.fhir.model import Element, is_primitive, keymap, required
from sharedcare.fhir.validation import bindings
from sharedcare.fhir.validation.structure import value_check
from sharedcare.ingest.hl7v2 import datatypes as dt
from sharedcare.ingest.hl7v2.mapping import Context, Mapped, Transaction
from sharedcare.ingest.hl7v2.message import (
    BOM,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    ParseError,
)
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM, nhs_number

RESOURCE_TYPES = ("Patient", "EpisodeOfCare", "Encounter", "ServiceRequest", "CarePlan")
SOURCE = "source"  # `{resource: source}`: the organisation that sent the extract
PACKAGED = ("nhs-111", "social-care")
CONVERSIONS = {  # conversion -> the FHIR types it can fill
    "text": frozenset({"string", "markdown", "uri", "url", "canonical", "id", "oid", "uuid"}),
    "code": frozenset({"code", "string"}),
    "date": frozenset({"date", "dateTime"}),
    "dateTime": frozenset({"dateTime"}),
    "integer": frozenset({"integer", "positiveInt", "unsignedInt", "decimal"}),
    "decimal": frozenset({"decimal"}),
    "Coding": frozenset({"Coding"}),
    "CodeableConcept": frozenset({"CodeableConcept"}),
}
# The conversion an element's FHIR type needs when the mapping names none.
DEFAULT_CONVERSION = {"string": "text", "markdown": "text", "uri": "text", "url": "text", "canonical": "text",
                      "id": "text", "oid": "text", "uuid": "text", "code": "code", "date": "date",
                      "dateTime": "dateTime", "integer": "integer", "positiveInt": "integer",
                      "unsignedInt": "integer", "decimal": "decimal", "Coding": "Coding",
                      "CodeableConcept": "CodeableConcept"}
CODED = frozenset({"code", "Coding", "CodeableConcept"})
ISO = "iso"

_TOP_KEYS = frozenset({"description", "columns", "recorded", "resources"})
_RESOURCE_KEYS = frozenset({"name", "type", "id", "fields", "when", "nhs_number"})
_COLUMN_KEYS = frozenset({"column", "type", "format", "map", "default", "system", "display", "required"})
_CHOICE_KEYS = frozenset({"when", "then", "else"})
_SET_BY_US = {"resourceType": "is set from the resource's type", "id": "is assigned by the store, never by a mapping",
              "meta": "is set by sharedcare (when the source recorded it)",
              "contained": "is not supported: write each resource as its own entry"}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_URI = re.compile(r"(https?://[^\s{}]+|urn:[^\s{}]+)")
_CODE = re.compile(r"[^\s]+( [^\s]+)*")
# ASCII digits only: `\d` would take any script's, which a JSON number cannot carry.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                           r"(Z|[+-][0-9]{2}:?[0-9]{2})?")
# strptime directives a format may use: no two-digit years (%y: 1951 or 2051?), no locale forms
# (%c %x %X), no zone names (%Z reads only a few, and none of London's).
_DIRECTIVES = frozenset("dmbBYHIMSfpzaAj%")


class InvalidMapping(ValueError):
    """A mapping that cannot be used: the message names the key path and what is wrong with it."""


# --- the checked mapping ------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A constant value, as the mapping wrote it."""

    value: Any
    reads = False


@dataclass(frozen=True)
class Column:
    """A value read from a column and converted."""

    column: str
    type: str  # a key of CONVERSIONS
    fhir_type: str  # the FHIR type it fills, for the final check of the value
    format: str = ISO
    map: Mapping[str, str] | None = None  # casefolded value -> code or text
    default: str | None = None
    system: str | None = None
    display: Mapping[str, str] | None = None  # code -> display
    required: bool = False
    codes: frozenset[str] | None = None  # a required binding's codes, checked when there is no map
    reads = True


@dataclass(frozen=True)
class Ref:
    """A reference to a resource of the row by its name, or to the sending organisation."""

    resource: str
    reads = True


@dataclass(frozen=True)
class Choice:
    """`then` when the column has a value, else `otherwise`."""

    when: str
    then: Node
    otherwise: Node | None

    @property
    def reads(self) -> bool:
        return self.then.reads or (self.otherwise is not None and self.otherwise.reads)


@dataclass(frozen=True)
class Obj:
    """A FHIR object; left out when it reads columns and every one of them is blank."""

    items: tuple[tuple[str, Node], ...]

    @property
    def reads(self) -> bool:
        return any(node.reads for _, node in self.items)


@dataclass(frozen=True)
class Arr:
    """A FHIR list; its left-out items are dropped, and it is left out when none is left."""

    items: tuple[Node, ...]

    @property
    def reads(self) -> bool:
        return any(node.reads for node in self.items)


Node = Const | Column | Ref | Choice | Obj | Arr


@dataclass(frozen=True)
class IdentifierSpec:
    """The identifier a resource is found by: a system template and the column holding the value."""

    system: str  # a template: {source} and {ods} are the sending source's
    column: str

    def system_for(self, ctx: Context) -> str:
        return self.system.replace("{source}", ctx.source).replace("{ods}", ctx.ods)


@dataclass(frozen=True)
class ResourceSpec:
    """One resource each row becomes (when its `when` column has a value)."""

    name: str
    type: str
    id: IdentifierSpec
    fields: Obj
    when: str | None = None
    nhs_number: str | None = None


@dataclass(frozen=True)
class CsvMapping:
    """A checked mapping, as `load` makes it: immutable, shared by every row it maps."""

    columns: tuple[str, ...]
    resources: tuple[ResourceSpec, ...]
    recorded: Column | None = None
    description: str | None = None

    @property
    def patient(self) -> ResourceSpec:
        return next(r for r in self.resources if r.type == "Patient")


# --- loading and checking -------------------------------------------------------------------------


def load(text: str) -> CsvMapping:
    """Parse and check a YAML mapping; `InvalidMapping` naming the key path of the first mistake.
    The same text gives the same (immutable) mapping, kept for the next call: the inbox maps each row
    with its source's mapping."""
    return _load(text)


@lru_cache(maxsize=64)
def _load(text: str) -> CsvMapping:
    try:
        _check_yaml_nodes(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InvalidMapping(f"{where}not valid YAML ({getattr(exc, 'problem', None) or 'unreadable'})") from None
    if not isinstance(raw, dict):
        raise InvalidMapping("the mapping is a YAML mapping of keys (columns, resources ...)")
    return _Checker(raw).mapping()


def packaged(name: str) -> CsvMapping:
    """A mapping shipped with sharedcare, by name: `social-care` (a London council's extract) or
    `nhs-111` (the 111 service's daily calls); `InvalidMapping` for any other name."""
    if name not in PACKAGED:
        raise InvalidMapping(f"no packaged CSV mapping is named {name!r}; there are: {', '.join(PACKAGED)}")
    return load((package_files.files("sharedcare.ingest.csv") / "mappings" / f"{name}.yaml").read_text(
        encoding="utf-8"))


def _check_yaml_nodes(root: Any) -> None:
    """What safe_load would silently accept: a key written twice (the last one wins) and anchors and
    aliases (a shared part is hard to review)."""
    seen: set[int] = set()
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        if id(node) in seen:
            raise InvalidMapping(f"line {node.start_mark.line + 1}: anchors and aliases (& and *) are not supported; "
                                 "write the part out")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        raise InvalidMapping(f"line {key.start_mark.line + 1}: the key {key.value!r} is written twice")
                    keys.add(key.value)
                todo.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)


@dataclass(frozen=True)
class _Slot:
    """Where a value goes: the FHIR element, the type it holds there, and where its children are."""

    el: Element | None  # None for `recorded`
    vtype: str

    @property
    def label(self) -> str:
        return self.el.path if self.el is not None else "recorded"

    @property
    def child(self) -> str:
        if self.el is not None and not self.el.choice and self.el.context:
            return self.el.context
        return self.vtype


def _a(word: str) -> str:
    """`word` with its indefinite article: an integer, a dateTime, an EpisodeOfCare, a uri."""
    return f"{'an' if word[:1].lower() in 'aeio' else 'a'} {word}"


def _cardinality(el: Element) -> str:
    return f"{el.min}..{'*' if el.max is None else el.max}"


@cache
def _targets(path: str) -> frozenset[str]:
    """The resource types a Reference element may point at (empty: any)."""
    sd = structure_definitions().get(path.split(".")[0])
    for el in (sd or {}).get("snapshot", {}).get("element", ()):
        if el["path"] == path:
            profiles = [p for t in el.get("type", ()) if t.get("code") == "Reference"
                        for p in t.get("targetProfile", ())]
            names = frozenset(p.rsplit("/", 1)[-1] for p in profiles)
            return frozenset() if "Resource" in names else names
    return frozenset()


@cache
def _binding_codes(url: str) -> frozenset[str] | None:
    pairs = bindings.expansion(url)
    return frozenset(code for _, code in pairs) if pairs else None


class _Checker:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.columns: frozenset[str] = frozenset()
        self.types: dict[str, str] = {}  # resource name -> type

    def mapping(self) -> CsvMapping:
        raw = self.raw
        self._keys(raw, _TOP_KEYS, "", required=("columns", "resources"))
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidMapping("description: a text")
        columns = self._columns(raw["columns"])
        self.columns = frozenset(columns)
        recorded = None
        if raw.get("recorded") is not None:
            recorded = self._recorded(raw["recorded"])
        resources = raw["resources"]
        if not isinstance(resources, list) or not resources:
            raise InvalidMapping("resources: a list of the resources each row becomes")
        self._names(resources)
        out = tuple(self._resource(r, f"resources[{i}]") for i, r in enumerate(resources))
        self._identifiers_distinct(out)
        return CsvMapping(columns, out, recorded, description)

    # -- the parts of the mapping --

    def _keys(self, raw: dict[str, Any], allowed: frozenset[str], path: str, required: tuple[str, ...] = ()) -> None:
        prefix = f"{path}." if path else ""
        for key in raw:
            if not isinstance(key, str) or key not in allowed:
                raise InvalidMapping(f"{prefix}{key}: unknown key (allowed here: {', '.join(sorted(allowed))})")
        for key in required:
            if raw.get(key) is None:
                raise InvalidMapping(f"{prefix}{key}: required")

    def _columns(self, raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            raise InvalidMapping("columns: a list of the extract's column names, as its header writes them")
        seen: list[str] = []
        for i, name in enumerate(raw):
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                raise InvalidMapping(f"columns[{i}]: a column name is text, without surrounding spaces")
            if name in seen:
                raise InvalidMapping(f"columns[{i}]: the column {name!r} is declared twice")
            seen.append(name)
        return tuple(seen)

    def _column_name(self, raw: Any, path: str) -> str:
        if not isinstance(raw, str):
            raise InvalidMapping(f"{path}: a column name")
        if raw not in self.columns:
            raise InvalidMapping(f"{path}: unknown column {raw!r} (not in columns)")
        return raw

    def _names(self, resources: list[Any]) -> None:
        for i, res in enumerate(resources):
            path = f"resources[{i}]"
            if not isinstance(res, dict):
                raise InvalidMapping(f"{path}: a resource is a mapping of keys (name, type, id, fields ...)")
            self._keys(res, _RESOURCE_KEYS, path, required=("name", "type", "id"))
            name, res_type = res["name"], res["type"]
            if not isinstance(name, str) or not _NAME.fullmatch(name) or name == SOURCE:
                raise InvalidMapping(f"{path}.name: lower-case letters, digits, '-' and '_', starting with a letter "
                                     f"(and not {SOURCE!r}, which names the sending organisation)")
            if name in self.types:
                raise InvalidMapping(f"{path}.name: another resource is named {name!r}")
            if res_type not in RESOURCE_TYPES:
                raise InvalidMapping(f"{path}.type: unknown resource type {res_type!r} (one of: "
                                     f"{', '.join(RESOURCE_TYPES)})")
            self.types[name] = res_type
        patients = [i for i, r in enumerate(resources) if r["type"] == "Patient"]
        if len(patients) != 1:
            raise InvalidMapping("resources: exactly one resource is the Patient the row is about "
                                 f"(there are {len(patients)})")

    def _resource(self, raw: dict[str, Any], path: str) -> ResourceSpec:
        res_type = raw["type"]
        when = None
        if raw.get("when") is not None:
            if res_type == "Patient":
                raise InvalidMapping(f"{path}.when: the Patient is always written")
            when = self._column_name(raw["when"], f"{path}.when")
        nhs = None
        if raw.get("nhs_number") is not None:
            if res_type != "Patient":
                raise InvalidMapping(f"{path}.nhs_number: only the Patient has an NHS number")
            nhs = self._column_name(raw["nhs_number"], f"{path}.nhs_number")
        ident = self._identifier(raw["id"], f"{path}.id")
        fields_raw = raw.get("fields") or {}
        if not isinstance(fields_raw, dict):
            raise InvalidMapping(f"{path}.fields: the resource's elements, as a mapping")
        fields = self._object(fields_raw, res_type, f"{path}.fields", root=True)
        return ResourceSpec(raw["name"], res_type, ident, fields, when, nhs)

    def _identifier(self, raw: Any, path: str) -> IdentifierSpec:
        if not isinstance(raw, dict):
            raise InvalidMapping(f"{path}: the identifier the resource is found by: {{system: ..., value: COLUMN}}")
        self._keys(raw, frozenset({"system", "value"}), path, required=("system", "value"))
        system = raw["system"]
        if not isinstance(system, str):
            raise InvalidMapping(f"{path}.system: a URI")
        for placeholder in _PLACEHOLDER.findall(system):
            if placeholder not in ("source", "ods"):
                raise InvalidMapping(f"{path}.system: unknown placeholder {{{placeholder}}} (only {{source}} and "
                                     "{ods})")
        if not _URI.fullmatch(_PLACEHOLDER.sub("x", system)):
            raise InvalidMapping(f"{path}.system: an absolute URI (https://... or urn:...), without spaces")
        return IdentifierSpec(system, self._column_name(raw["value"], f"{path}.value"))

    def _identifiers_distinct(self, resources: tuple[ResourceSpec, ...]) -> None:
        seen: dict[tuple[str, str, str], int] = {}
        for i, res in enumerate(resources):
            key = (res.type, res.id.system, res.id.column)
            if key in seen:
                raise InvalidMapping(f"resources[{i}].id: the same identifier as resources[{seen[key]}]: they would "
                                     "be one resource")
            seen[key] = i

    def _recorded(self, raw: Any) -> Column:
        if not isinstance(raw, dict) or "column" not in raw:
            raise InvalidMapping("recorded: {column: NAME, type: date or dateTime, format: ...}")
        node = self._column(raw, _Slot(None, "dateTime"), "recorded")
        if node.type not in ("date", "dateTime"):
            raise InvalidMapping("recorded.type: date or dateTime")
        return node

    # -- fields: FHIR JSON with values from columns --

    def _object(self, raw: dict[str, Any], context: str, path: str, *, root: bool = False) -> Obj:
        slots = keymap(context)
        items: list[tuple[str, Node]] = []
        chosen: dict[str, str] = {}  # element name -> the key (choice variant) used
        for key, value in raw.items():
            where = f"{path}.{key}"
            if root and key in _SET_BY_US:
                raise InvalidMapping(f"{where}: {key} {_SET_BY_US[key]}")
            if not isinstance(key, str) or key not in slots:
                hint = " (`when` goes with `then`: {when: COLUMN, then: ..., else: ...})" if key == "when" else ""
                raise InvalidMapping(f"{where}: {context} has no element {key!r}{hint}")
            el, vtype = slots[key]
            if el.name in chosen:
                raise InvalidMapping(f"{where}: {context}.{el.name}[x] is given twice ({chosen[el.name]} and {key})")
            chosen[el.name] = key
            node = self._value(value, _Slot(el, vtype), where)
            if root and el.min > 0 and isinstance(node, Column):
                node = replace(node, required=True)  # FHIR cannot do without it: a blank is the row's fault
            items.append((key, node))
        for el in required(context):
            if el.name not in chosen and not (root and el.name == "identifier"):
                raise InvalidMapping(f"{path}: {context} needs {el.name!r} ({_cardinality(el)})")
        return Obj(tuple(items))

    def _value(self, raw: Any, slot: _Slot, path: str) -> Node:
        el = slot.el
        assert el is not None
        if el.many:
            if isinstance(raw, dict) and "then" in raw:
                return self._choice(raw, slot, path, many=True)
            if not isinstance(raw, list):
                raise InvalidMapping(f"{path}: {el.path} is a list ({_cardinality(el)}): write it as a YAML list")
            if not raw:
                raise InvalidMapping(f"{path}: an empty list (leave the element out)")
            if el.max is not None and len(raw) > el.max:
                raise InvalidMapping(f"{path}: {el.path} holds at most {el.max}")
            return Arr(tuple(self._single(item, slot, f"{path}[{i}]") for i, item in enumerate(raw)))
        if isinstance(raw, list):
            raise InvalidMapping(f"{path}: {el.path} holds one value ({_cardinality(el)}), not a list")
        return self._single(raw, slot, path)

    def _single(self, raw: Any, slot: _Slot, path: str) -> Node:
        vtype = slot.vtype
        if isinstance(raw, dict):
            if "then" in raw or ("else" in raw and "column" not in raw):
                return self._choice(raw, slot, path, many=False)
            if "column" in raw:
                return self._column(raw, slot, path)
            if vtype == "Reference" and "resource" in raw:
                return self._reference(raw, slot, path)
            if is_primitive(vtype) or vtype == "xhtml":
                raise InvalidMapping(f"{path}: {slot.label} is {_a(vtype)}: give a constant, {{column: ...}} or "
                                     "{when: ..., then: ...}")
            if vtype in ("Resource", "DomainResource"):
                raise InvalidMapping(f"{path}: {slot.label} holds a whole resource, which a mapping cannot write")
            return self._object(raw, slot.child, path)
        if raw is None:
            raise InvalidMapping(f"{path}: no value (give one, or leave the element out)")
        if isinstance(raw, list):
            raise InvalidMapping(f"{path}: a list inside a list")
        if not is_primitive(vtype):
            raise InvalidMapping(f"{path}: {slot.label} is {_a(vtype)}: write its elements as a mapping")
        return Const(self._constant(raw, slot, path))

    def _constant(self, raw: Any, slot: _Slot, path: str) -> Any:
        value: Any = raw
        if isinstance(raw, datetime):
            raise InvalidMapping(f"{path}: write a dateTime constant in quotes, with its offset")
        if isinstance(raw, date):
            value = raw.isoformat()
        elif isinstance(raw, float):
            value = FhirDecimal(repr(raw))
        if value_check(slot.vtype)(value) is not None:
            raise InvalidMapping(f"{path}: the constant is not {_a(slot.vtype)} for {slot.label}")
        codes = self._bound_codes(slot)
        if codes is not None and value not in codes:
            raise InvalidMapping(f"{path}: {value!r} is not a code {slot.label} allows")
        return value

    def _bound_codes(self, slot: _Slot) -> frozenset[str] | None:
        el = slot.el
        if el is None or el.binding is None or slot.vtype != "code":
            return None
        return _binding_codes(el.binding)

    def _choice(self, raw: dict[str, Any], slot: _Slot, path: str, *, many: bool) -> Choice:
        self._keys(raw, _CHOICE_KEYS, path, required=("when", "then"))
        when = self._column_name(raw["when"], f"{path}.when")
        branch = self._value if many else self._single
        then = branch(raw["then"], slot, f"{path}.then")
        otherwise = branch(raw["else"], slot, f"{path}.else") if raw.get("else") is not None else None
        return Choice(when, then, otherwise)

    def _reference(self, raw: dict[str, Any], slot: _Slot, path: str) -> Ref:
        self._keys(raw, frozenset({"resource"}), path, required=("resource",))
        name = raw["resource"]
        if name == SOURCE:
            target = "Organization"
        elif isinstance(name, str) and name in self.types:
            target = self.types[name]
        else:
            raise InvalidMapping(f"{path}.resource: no resource is named {name!r} (nor is it {SOURCE!r})")
        allowed = _targets(slot.el.path) if slot.el is not None else frozenset()
        if allowed and target not in allowed:
            raise InvalidMapping(f"{path}.resource: {slot.label} cannot refer to {_a(target)} (only to "
                                 f"{', '.join(sorted(allowed))})")
        return Ref(name)

    def _column(self, raw: dict[str, Any], slot: _Slot, path: str) -> Column:
        self._keys(raw, _COLUMN_KEYS, path, required=("column",))
        column = self._column_name(raw["column"], f"{path}.column")
        vtype = slot.vtype
        conversion = raw.get("type", DEFAULT_CONVERSION.get(vtype))
        if conversion is None:
            raise InvalidMapping(f"{path}: {slot.label} is {_a(vtype)}, which no conversion reads from a column")
        if not isinstance(conversion, str) or conversion not in CONVERSIONS:
            raise InvalidMapping(f"{path}.type: unknown conversion {conversion!r} (one of: {', '.join(CONVERSIONS)})")
        if vtype not in CONVERSIONS[conversion]:
            raise InvalidMapping(f"{path}.type: {_a(conversion)} cannot fill {slot.label}, {_a(vtype)}")
        fmt = self._format(raw.get("format"), conversion, f"{path}.format")
        codes = self._bound_codes(slot)
        value_map, default = self._map(raw, conversion, codes, path)
        system = raw.get("system")
        if conversion in ("Coding", "CodeableConcept"):
            if not isinstance(system, str) or not _URI.fullmatch(system):
                raise InvalidMapping(f"{path}.system: {_a(conversion)} needs its code system's URI")
        elif system is not None:
            raise InvalidMapping(f"{path}.system: only a Coding or CodeableConcept has a system")
        display = self._display(raw.get("display"), conversion, value_map, default, f"{path}.display")
        is_required = raw.get("required", False)
        if not isinstance(is_required, bool):
            raise InvalidMapping(f"{path}.required: true or false")
        return Column(column, conversion, vtype, fmt, value_map, default, system, display, is_required,
                      codes if value_map is None else None)

    def _format(self, raw: Any, conversion: str, path: str) -> str:
        if raw is None:
            return ISO
        if conversion not in ("date", "dateTime"):
            raise InvalidMapping(f"{path}: only a date or dateTime has a format")
        if not isinstance(raw, str) or not raw:
            raise InvalidMapping(f"{path}: a strptime format such as '%d/%m/%Y', or 'iso'")
        if raw == ISO:
            return ISO
        directives = re.findall(r"%(.)", raw.replace("%%", ""))
        bad = [d for d in directives if d not in _DIRECTIVES]
        if bad:
            why = "a two-digit year is ambiguous: use %Y" if "y" in bad else "use %d %m %b %B %Y %H %I %M %S %f %p %z"
            raise InvalidMapping(f"{path}: %{bad[0]} is not accepted ({why})")
        found = set(directives)
        if "d" not in found or not found & {"m", "b", "B"} or "Y" not in found:
            raise InvalidMapping(f"{path}: a date format needs the day (%d), month (%m, %b or %B) and year (%Y)")
        if conversion == "dateTime" and not (found & {"H", "I"} and "M" in found):
            raise InvalidMapping(f"{path}: a dateTime format needs the hour (%H, or %I with %p) and minute (%M); "
                                 "for a date alone, give the column type: date")
        if "I" in found and "p" not in found:
            raise InvalidMapping(f"{path}: %I (a 12-hour clock) needs %p (AM or PM)")
        return raw

    def _map(self, raw: dict[str, Any], conversion: str, codes: frozenset[str] | None,
             path: str) -> tuple[dict[str, str] | None, str | None]:
        value_map = raw.get("map")
        default = raw.get("default")
        if value_map is None:
            if default is not None:
                raise InvalidMapping(f"{path}.default: a default is for the values a map does not list")
            return None, None
        if conversion not in ("text", *CODED):
            raise InvalidMapping(f"{path}.map: only text and coded values are mapped")
        if not isinstance(value_map, dict) or not value_map:
            raise InvalidMapping(f"{path}.map: a mapping of the source's values to what is written")
        out: dict[str, str] = {}
        for key, value in value_map.items():
            where = f"{path}.map.{key}"
            if not isinstance(key, str):
                raise InvalidMapping(f"{where}: write the source's value in quotes (YAML reads it as "
                                     f"{type(key).__name__})")
            folded = key.strip().casefold()
            if not folded:
                raise InvalidMapping(f"{where}: a blank value is never mapped (blank values are left out)")
            if folded in out:
                raise InvalidMapping(f"{where}: listed twice (values match ignoring case and spaces)")
            out[folded] = self._target(value, conversion, codes, where)
        if default is not None:
            default = self._target(default, conversion, codes, f"{path}.default")
        return out, default

    def _target(self, value: Any, conversion: str, codes: frozenset[str] | None, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidMapping(f"{path}: what is written is text (in quotes if YAML reads it otherwise)")
        if conversion in CODED and not _CODE.fullmatch(value):
            raise InvalidMapping(f"{path}: not a valid code (no surrounding or doubled spaces)")
        if codes is not None and value not in codes:
            raise InvalidMapping(f"{path}: {value!r} is not a code the element allows")
        return value

    def _display(self, raw: Any, conversion: str, value_map: dict[str, str] | None, default: str | None,
                 path: str) -> dict[str, str] | None:
        if raw is None:
            return None
        if conversion not in ("Coding", "CodeableConcept"):
            raise InvalidMapping(f"{path}: only a Coding or CodeableConcept has a display")
        if not isinstance(raw, dict) or not raw:
            raise InvalidMapping(f"{path}: a mapping of codes to their display text")
        produced = None if value_map is None else {*value_map.values(), *([default] if default else [])}
        for code, text in raw.items():
            if not isinstance(code, str) or (produced is not None and code not in produced):
                raise InvalidMapping(f"{path}.{code}: not a code the map writes")
            if not isinstance(text, str) or not text.strip():
                raise InvalidMapping(f"{path}.{code}: the display is text")
        return dict(raw)


# --- mapping a row --------------------------------------------------------------------------------


def map_row(mapping: CsvMapping, header: list[str], row: list[str], ctx: Context) -> Mapped:
    """One CSV row (its header, its cells) as a transaction Bundle of conditional PUTs, in the mapping's
    resource order. `ParseError` for a row that cannot be mapped: the reason names the column, never
    its value; the code is HL7 table 0357's (101 required, 102 data type, 103 not in the map)."""
    positions = _positions(mapping, header)
    if len(row) != len(header):
        raise ParseError(f"the row has {len(row)} cells where the header has {len(header)}", DATA_TYPE_ERROR)
    reader = _Row({name: row[i].strip() for name, i in positions.items()}, positions, ctx)
    recorded = reader.text(mapping.recorded) if mapping.recorded is not None else None
    tx = Transaction(recorded)
    mapped = Mapped({}, recorded=recorded)
    written: list[tuple[ResourceSpec, dict[str, str]]] = []
    for res in mapping.resources:
        if res.when is not None and not reader.values[res.when]:
            continue
        value = reader.values[res.id.column]
        if not value:
            raise reader.error(res.id.column, f"is blank, and the {res.type} ({res.name}) is found by it",
                               REQUIRED_FIELD_MISSING)
        reader.check_string(res.id.column)
        ident = {"system": res.id.system_for(ctx), "value": value}
        # Its fullUrl, for references from resources before it: what a transaction gives the identifier.
        reader.urls[res.name] = Transaction(None).put({"resourceType": res.type}, ident)
        written.append((res, ident))
    for res, ident in written:
        resource: dict[str, Any] = {"resourceType": res.type, **(reader.object(res.fields, keep=True) or {})}
        if res.type == "Patient":
            resource["identifier"] = _patient_identifiers(res, ident, resource.get("identifier", []), reader, mapped)
            mapped.patient_key = f"{ident['system']}|{ident['value']}"
        tx.put(resource, ident)
    mapped.bundle = tx.bundle()
    return mapped


def _positions(mapping: CsvMapping, header: list[str]) -> dict[str, int]:
    # A spreadsheet may write a byte-order mark before the first header cell.
    names = [cell.lstrip(BOM).strip() if i == 0 else cell.strip() for i, cell in enumerate(header)]
    out: dict[str, int] = {}
    for name in mapping.columns:
        found = [i for i, cell in enumerate(names) if cell == name]
        if not found:
            raise ParseError(f"the header has no column {name!r}", REQUIRED_FIELD_MISSING)
        if len(found) > 1:
            raise ParseError(f"the header names the column {name!r} more than once", DATA_TYPE_ERROR)
        out[name] = found[0]
    return out


def _patient_identifiers(res: ResourceSpec, key: dict[str, str], others: list[dict[str, Any]], reader: _Row,
                         mapped: Mapped) -> list[dict[str, Any]]:
    """The key first, then the NHS number (only when its check digit is right; otherwise kept as the
    source's unverified identifier, so the patient index never links by it), then any others."""
    out: list[dict[str, Any]] = [dict(key)]
    column = res.nhs_number
    raw = reader.values[column] if column is not None else ""
    if column is not None and raw:
        reader.check_string(column)  # kept as sent when unverified
        checked = nhs_number(raw)
        if checked is not None:
            out.append({"system": NHS_NUMBER_SYSTEM, "value": checked})
        else:
            out.append({"system": dt.UNVERIFIED_NHS_SYSTEM, "value": raw,
                        "type": {"coding": [{"system": dt.hl7_table("0203"), "code": "NH"}]}})
            mapped.warnings.append(f"column {column!r}: an NHS number fails its check digit and is kept as the "
                                   "source's unverified identifier")
    for ident in others:
        if not any(i.get("system") == ident.get("system") and i.get("value") == ident.get("value") for i in out):
            out.append(ident)
    return out


class _Row:
    """One row's values (trimmed, by column) and the fullUrls of the resources it writes."""

    def __init__(self, values: dict[str, str], positions: dict[str, int], ctx: Context) -> None:
        self.values, self.positions, self.ctx = values, positions, ctx
        self.urls: dict[str, str] = {}

    def error(self, column: str, problem: str, code: str) -> ParseError:
        return ParseError(f"column {column!r} {problem}", code, field_no=self.positions[column] + 1)

    def check_string(self, column: str) -> None:
        """A value written as it is (an identifier) must still be a valid FHIR string."""
        if value_check("string")(self.values[column]) is not None:
            raise self.error(column, "does not hold a valid string", DATA_TYPE_ERROR)

    def node(self, node: Node) -> Any:
        """The node's JSON value, or None when it is left out."""
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Column):
            return self.column(node)
        if isinstance(node, Ref):
            if node.resource == SOURCE:
                return self.ctx.organisation()
            url = self.urls.get(node.resource)
            return {"reference": url} if url else None
        if isinstance(node, Choice):
            branch = node.then if self.values[node.when] else node.otherwise
            return None if branch is None else self.node(branch)
        if isinstance(node, Obj):
            return self.object(node)
        items = [v for v in (self.node(n) for n in node.items) if v is not None]
        return items or None

    def object(self, node: Obj, *, keep: bool = False) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        data = False  # whether any value came from the row
        for key, child in node.items:
            value = self.node(child)
            if value is not None:
                out[key] = value
                data = data or child.reads
        if not out or (node.reads and not data and not keep):
            return None
        return out

    def text(self, node: Column) -> str | None:
        value = self.column(node)
        assert value is None or isinstance(value, str)
        return value

    def column(self, node: Column) -> Any:
        raw = self.values[node.column]
        if not raw:
            if node.required:
                raise self.error(node.column, "is blank, but a value is required", REQUIRED_FIELD_MISSING)
            return None
        if node.type == "CodeableConcept":
            self.check_string(node.column)  # its text is the value as sent
        value = _convert(node, raw, self)
        if node.type not in ("Coding", "CodeableConcept") and value_check(node.fhir_type)(value) is not None:
            raise self.error(node.column, f"does not hold {_a(node.fhir_type)}", DATA_TYPE_ERROR)
        return value


def _convert(node: Column, raw: str, row: _Row) -> Any:
    kind = node.type
    if kind == "date":
        return _date(node, raw, row)
    if kind == "dateTime":
        return _datetime(node, raw, row)
    if kind == "integer":
        if not _INTEGER.fullmatch(raw) or not -2**31 <= int(raw) < 2**31:
            raise row.error(node.column, "does not hold a whole number", DATA_TYPE_ERROR)
        return int(raw)
    if kind == "decimal":
        return _decimal(node, raw, row)
    value = raw
    if node.map is not None:
        mapped = node.map.get(raw.casefold(), node.default)
        if mapped is None:
            raise row.error(node.column, "holds a value its map does not list", TABLE_VALUE_NOT_FOUND)
        value = mapped
    elif kind in CODED and not _CODE.fullmatch(value):
        raise row.error(node.column, "does not hold a valid code", DATA_TYPE_ERROR)
    if node.codes is not None and value not in node.codes:
        raise row.error(node.column, "holds a value that is not a code its element allows", TABLE_VALUE_NOT_FOUND)
    if kind in ("Coding", "CodeableConcept"):
        coding: dict[str, Any] = {"system": node.system, "code": value}
        if node.display and value in node.display:
            coding["display"] = node.display[value]
        return coding if kind == "Coding" else {"coding": [coding], "text": raw}
    return value


def _date(node: Column, raw: str, row: _Row) -> str:
    try:
        if node.format == ISO:
            if not _ISO_DATE.fullmatch(raw):
                raise ValueError
            return date.fromisoformat(raw).isoformat()
        return datetime.strptime(raw, node.format).date().isoformat()  # a date: no time zone
    except ValueError:
        raise row.error(node.column, f"does not hold a date ({_format_name(node.format, 'YYYY-MM-DD')})",
                        DATA_TYPE_ERROR) from None


def _datetime(node: Column, raw: str, row: _Row) -> str:
    """A FHIR dateTime: the offset as sent, else London's in force at that local time (FHIR needs one
    once a time is given); an ISO date alone stays a date."""
    try:
        if node.format == ISO:
            if _ISO_DATE.fullmatch(raw):
                return date.fromisoformat(raw).isoformat()
            if not _ISO_DATETIME.fullmatch(raw):
                raise ValueError
            when = datetime.fromisoformat(raw)
        else:
            when = datetime.strptime(raw, node.format)  # London's local time unless %z
    except ValueError:
        raise row.error(node.column, f"does not hold a date and time ({_format_name(node.format, 'ISO 8601')})",
                        DATA_TYPE_ERROR) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.LONDON)
    return when.isoformat(timespec="microseconds" if when.microsecond else "seconds")


def _format_name(fmt: str, iso: str) -> str:
    return iso if fmt == ISO else f"format {fmt}"


def _decimal(node: Column, raw: str, row: _Row) -> int | FhirDecimal:
    """The number with the digits it was written with (`1.50` stays `1.50`); an int without a
    fraction. A leading `+` and leading zeros, which JSON numbers cannot have, are dropped."""
    m = _DECIMAL.fullmatch(raw)
    if m is None:
        raise row.error(node.column, "does not hold a number", DATA_TYPE_ERROR)
    sign, whole, fraction = m.groups()
    literal = ("-" if sign == "-" else "") + (whole.lstrip("0") or "0")
    if fraction is None:
        return int(literal)
    return FhirDecimal(f"{literal}.{fraction}")
