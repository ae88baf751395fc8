"""The FHIR R4 element model, built once per process from the StructureDefinitions and shared by
validation, XML conversion and search-parameter extraction.

A *context* is a type name (`Patient`, `CodeableConcept`) or a backbone element's path
(`Observation.component`); `layouts()[context]` lists its elements in StructureDefinition order, with
cardinality, types (every allowed type for a choice element `value[x]`), where each element's own
children are described, its required binding and its invariants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from sharedcare.fhir.definitions import structure_definitions

REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    severity: str
    expression: str
    human: str


@dataclass(frozen=True, slots=True)
class Element:
    name: str  # without [x]
    path: str  # as in the StructureDefinition, e.g. Observation.value[x]
    min: int
    max: int | None  # None = unbounded
    types: tuple[str, ...]
    choice: bool
    context: str | None  # where this element's own children are described
    binding: str | None  # a required binding's value set URL (version stripped)
    constraints: tuple[Constraint, ...]

    @property
    def many(self) -> bool:
        return self.max is None or self.max > 1


def _fhir_type(t: dict[str, Any]) -> str:
    code: str = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or "string")
        return "string"
    return code


@cache
def layouts() -> dict[str, dict[str, Element]]:
    out: dict[str, dict[str, Element]] = {}
    for sd in structure_definitions().values():
        if sd["kind"] == "primitive-type":
            continue
        for el in sd["snapshot"]["element"]:
            path: str = el["path"]
            if "." not in path:
                continue
            parent, raw = path.rsplit(".", 1)
            if parent.count(".") == 0 and parent != sd["id"]:
                continue
            choice = raw.endswith("[x]")
            name = raw.removesuffix("[x]")
            types = tuple(_fhir_type(t) for t in el.get("type", ()))
            context: str | None
            if el.get("contentReference"):
                context, types = el["contentReference"].lstrip("#"), ("BackboneElement",)
            elif len(types) == 1 and types[0] in ("BackboneElement", "Element") and not choice:
                context = path
            elif len(types) == 1:
                context = types[0]
            else:
                context = None
            binding = el.get("binding") or {}
            vs = binding.get("valueSet") if binding.get("strength") == "required" else None
            mx = el.get("max", "*")
            out.setdefault(parent, {})[name] = Element(
                name, path, int(el.get("min", 0)), None if mx == "*" else int(mx), types, choice, context,
                vs.split("|")[0] if vs else None,
                tuple(Constraint(c["key"], c.get("severity", "error"), c.get("expression", ""), c.get("human", ""))
                      for c in el.get("constraint", ()) if c.get("expression")),
            )
    return out


@cache
def root_constraints(type_name: str) -> tuple[Constraint, ...]:
    """Invariants declared on a type's root element (e.g. ref-1 on Reference, obs-6 on Observation)."""
    sd = structure_definitions().get(type_name)
    if not sd:
        return ()
    root = sd["snapshot"]["element"][0]
    return tuple(Constraint(c["key"], c.get("severity", "error"), c.get("expression", ""), c.get("human", ""))
                 for c in root.get("constraint", ()) if c.get("expression"))


@cache
def primitive_regex(type_name: str) -> re.Pattern[str] | None:
    sd = structure_definitions().get(type_name)
    if not sd or sd["kind"] != "primitive-type":
        return None
    for el in sd["snapshot"]["element"]:
        if el["path"] == f"{type_name}.value":
            for t in el.get("type", ()):
                for ext in t.get("extension", ()):
                    if ext.get("url") == REGEX_EXT:
                        return re.compile(ext["valueString"])
    return None


@cache
def is_primitive(type_name: str) -> bool:
    sd = structure_definitions().get(type_name)
    return bool(sd) and sd["kind"] == "primitive-type"  # type: ignore[index]


@cache
def keymap(context: str) -> dict[str, tuple[Element, str]]:
    """Every JSON key an object of this context may carry (choice variants spelled out) -> element, type."""
    out: dict[str, tuple[Element, str]] = {}
    for el in layouts().get(context, {}).values():
        if el.choice:
            for t in el.types:
                out[el.name + t[0].upper() + t[1:]] = (el, t)
        else:
            out[el.name] = (el, el.types[0] if el.types else "string")
    return out


@cache
def required(context: str) -> tuple[Element, ...]:
    return tuple(el for el in layouts().get(context, {}).values() if el.min > 0)
