"""The structural walk: JSON types, unknown properties, cardinality, choice types, primitive formats,
required bindings, the NHS number rule and the invariants of each element present."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from functools import cache
from typing import Any

from nhs_number.validate import is_valid as nhs_number_is_valid

from sharedcare.errors import Issue
from sharedcare.fhir.definitions import resource_types
from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.fhir.model import (
    Element,
    is_primitive,
    keymap,
    layouts,
    primitive_regex,
    required,
    root_constraints,
)
from sharedcare.fhir.validation import bindings, invariants

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MAX_DEPTH = 40
INTEGER_TYPES = {"integer", "positiveInt", "unsignedInt"}


# A path is built only when an issue needs it: while walking it is the root's name or a pair
# (parent path, segment), where a str segment is an element name and an int an array index.
Path = str | tuple[Any, str | int]


def render(path: Path) -> str:
    """`Patient.name[0].given` from the walk's lazy path."""
    parts: list[str] = []
    while isinstance(path, tuple):
        path, seg = path
        parts.append(f"[{seg}]" if isinstance(seg, int) else f".{seg}")
    parts.append(path)
    return "".join(reversed(parts))


# What the walk does for each JSON key of each context, worked out once per context from the
# StructureDefinitions (instead of asking the model and the invariant tables at every element).
PRIMITIVE, RESOURCE, XHTML, COMPLEX = range(4)
_COMPLEX_RULE_TYPES = {"Coding", "CodeableConcept", "Quantity", "Identifier", "Extension"}
Check = tuple[Any, invariants.Evaluator]  # (Constraint, how to evaluate it)


class Slot:
    """One JSON key an object of a context may carry."""

    __slots__ = ("checks", "child", "code_binding", "el", "kind", "many", "rules", "value_check", "vtype")

    def __init__(self, el: Element, vtype: str) -> None:
        self.el, self.vtype, self.many = el, vtype, el.many
        if is_primitive(vtype):
            self.kind = PRIMITIVE
        elif vtype in ("Resource", "DomainResource"):
            self.kind = RESOURCE
        elif vtype == "xhtml":
            self.kind = XHTML
        else:
            self.kind = COMPLEX
        self.child = el.context if not el.choice and el.context else vtype
        self.code_binding = el.binding if self.kind == PRIMITIVE and vtype == "code" else None
        self.rules = self.kind == COMPLEX and vtype in _COMPLEX_RULE_TYPES
        self.checks = _checks(el.constraints) if self.kind == COMPLEX else ()
        self.value_check = value_check(vtype) if self.kind == PRIMITIVE else _no_value_check


class Plan:
    """The slots of a context by JSON key, its required elements and its root invariants."""

    __slots__ = ("required", "root_checks", "slots")

    def __init__(self, ctx: str) -> None:
        self.slots = {key: Slot(el, vtype) for key, (el, vtype) in keymap(ctx).items()}
        self.required = required(ctx)
        self.root_checks = _checks(root_constraints(ctx))


def _checks(constraints: tuple[Any, ...]) -> tuple[Check, ...]:
    found = ((c, invariants.evaluator(c)) for c in constraints)
    return tuple((c, fn) for c, fn in found if fn is not None)


@cache
def plan(ctx: str) -> Plan | None:
    return Plan(ctx) if ctx in layouts() else None


class Walk:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.issues: list[Issue] = []
        # Local references ('#id') met in each resource being walked (innermost last), for ref-1.
        self.local_refs: list[list[str]] = []

    def error(self, code: str, path: Path, message: str, severity: str = "error") -> None:
        self.issues.append(Issue(severity, code, message, (render(path),)))

    # -- resources ----------------------------------------------------------------------------------
    def resource(self, node: Any, path: Path, depth: int = 0) -> None:
        if not isinstance(node, dict):
            self.error("structure", path, "a resource must be a JSON object")
            return
        rtype = node.get("resourceType")
        if not isinstance(rtype, str) or rtype not in resource_types():
            self.error("structure", path, "resourceType is missing or not an R4 resource type")
            return
        here = path if path else rtype
        self.local_refs.append([])
        self.object(node, rtype, here, depth, is_resource=True)
        local_refs = self.local_refs.pop()
        if "contained" in node:
            for key, where, message in invariants.dom_checks(node, render(here)):
                self.error("invariant", where, f"{key}: {message}")
        if local_refs:
            self._contained_refs(node, here, local_refs)

    def _contained_refs(self, node: dict[str, Any], path: Path, local_refs: list[str]) -> None:
        """ref-1: a local reference '#id' must point at a contained resource. The walk gathers the local
        references of each resource (a nested resource, contained or a bundle entry, gathers its own)."""
        raw = node.get("contained")
        contained: list[Any] = raw if isinstance(raw, list) else []
        ids = {c.get("id") for c in contained if isinstance(c, dict)}
        for ref in local_refs:
            if ref[1:] not in ids:
                self.error("invariant", path, "ref-1: a local reference must point at a contained resource")

    # -- complex values -----------------------------------------------------------------------------
    def object(self, node: dict[str, Any], ctx: str, path: Path, depth: int, *, is_resource: bool = False) -> None:
        if depth > MAX_DEPTH:
            self.error("structure", path, "nested too deeply")
            return
        p = plan(ctx)
        if p is None:
            self.error("structure", path, "unknown type")
            return
        if not node and not is_resource:
            self.error("structure", path, "an element must have a value or children (ele-1)")
            return
        slots = p.slots
        # The common case: every key names a known element by its value (no "_x" primitive extension)
        # and no element twice (no two types of one choice): check each key's values directly.
        single: dict[str, str] = {}  # element name -> its JSON name
        for key in node:
            if key == "resourceType" and is_resource:
                continue
            slot = slots.get(key)
            if slot is None or slot.el.name in single:
                break
            single[slot.el.name] = key
        else:
            for key in single.values():
                slot = slots[key]
                total = self.element(node, key, slot, path, depth)
                if slot.el.max is not None and total > slot.el.max:
                    self.error("structure", (path, slot.el.name), f"allows at most {slot.el.max}")
            self._close(node, p, single, path)
            return
        present = self._grouped(node, slots, path, is_resource)
        for names in present.values():
            el = slots[names[0]].el
            if len(names) > 1:
                self.error("structure", (path, f"{el.name}[x]"), "only one type of a choice element may be present")
            total = sum(self.element(node, name, slots[name], path, depth) for name in names)
            if el.max is not None and total > el.max:
                self.error("structure", (path, el.name), f"allows at most {el.max}")
        self._close(node, p, present, path)

    def _close(self, node: dict[str, Any], p: Plan, present: Mapping[str, Any], path: Path) -> None:
        """An object's required elements (by element name, among those present) and its own invariants."""
        for el in p.required:
            if el.name not in present:
                self.error("required", (path, el.name), f"is required (at least {el.min})")
        for c, check in p.root_checks:
            self._check(c, check, node, path)

    def _grouped(self, node: dict[str, Any], slots: dict[str, Slot], path: Path,
                 is_resource: bool) -> dict[str, list[str]]:
        """Element name -> the JSON names an object uses for it, when some key is a "_x" primitive
        extension, unknown (reported here) or a second type of one choice element."""
        present: dict[str, list[str]] = {}
        for key in node:
            if key == "resourceType" and is_resource:
                continue
            name = key[1:] if key.startswith("_") else key
            slot = slots.get(name)
            if slot is None:
                self.error("structure", (path, key), "unknown element")
                continue
            names = present.get(slot.el.name)
            if names is None:
                present[slot.el.name] = [name]
            elif name not in names:
                names.append(name)
        return present

    def element(self, node: dict[str, Any], key: str, slot: Slot, path: Path, depth: int) -> int:
        """Check one element's values; return how many there are."""
        value, ext = node.get(key), node.get("_" + key)
        many = slot.many
        if ext is None and value is not None and many == isinstance(value, list) and value:
            for i, v in enumerate(value) if many else ((0, value),):
                self._value(v, slot, ((path, key), i) if many else (path, key), depth)
            return len(value) if many else 1
        if many != (isinstance(value, list) or (value is None and isinstance(ext, list))):
            self.error("structure", (path, key), "must be an array" if many else "must not be an array")
            return 0
        values = value if isinstance(value, list) else [value]
        exts = ext if isinstance(ext, list) else [ext] * len(values) if ext is not None else [None] * len(values)
        if value is None:
            values = [None] * len(exts)
        if len(exts) != len(values):
            self.error("structure", (path, f"_{key}"), "must line up with the values of the element")
            return 0
        if not values:
            self.error("structure", (path, key), "arrays must not be empty")
            return 0
        where: Path = (path, key)
        for i, v in enumerate(values):
            x = exts[i]
            item: Path = (where, i) if many else where
            if v is None and x is None:
                self.error("structure", item, "an element must have a value or an extension")
                continue
            if v is not None:
                self._value(v, slot, item, depth)
            if x is not None and slot.kind == PRIMITIVE:
                self._primitive_ext(x, (path, f"_{key}"), depth)
        return len(values)

    def _value(self, v: Any, slot: Slot, item: Path, depth: int) -> None:
        """One value of an element (not null), by the kind of its slot."""
        kind, vtype = slot.kind, slot.vtype
        if kind == PRIMITIVE:
            problem = slot.value_check(v)
            if problem is not None:
                self.error("value", item, problem)
            if slot.code_binding:
                self._binding(slot.code_binding, None, v, item)
        elif kind == COMPLEX:
            if not isinstance(v, dict):
                self.error("structure", item, f"must be a JSON object ({vtype})")
                return
            self.object(v, slot.child, item, depth + 1)
            if vtype == "Reference":
                ref = v.get("reference")
                if isinstance(ref, str) and len(ref) > 1 and ref[0] == "#" and self.local_refs:
                    self.local_refs[-1].append(ref)
            if slot.rules:
                self._complex_rules(slot.el, vtype, v, item)
            for c, check in slot.checks:
                self._check(c, check, v, item)
        elif kind == RESOURCE:
            self.resource(v, item, depth + 1)
        elif not isinstance(v, str) or not v.lstrip().startswith("<div"):
            self.error("value", item, "narrative must be an XHTML div")
        elif "\x00" in v:
            self.error("value", item, "must not contain NUL characters")

    def _primitive_ext(self, x: Any, path: Path, depth: int) -> None:
        if not isinstance(x, dict):
            self.error("structure", path, "must be a JSON object")
            return
        self.object(x, "Element", path, depth + 1)

    def _complex_rules(self, el: Element, vtype: str, v: dict[str, Any], path: Path) -> None:
        if el.binding and vtype in ("Coding", "CodeableConcept", "Quantity"):
            codings = v.get("coding", []) if vtype == "CodeableConcept" else [v]
            codings = [c for c in codings if isinstance(c, dict) and "code" in c]
            if codings and not any(self._binding(el.binding, c.get("system"), c["code"], None) for c in codings):
                self.error("code-invalid", path, f"has no code from the required value set {el.binding}")
        if vtype == "Identifier" and v.get("system") == NHS_SYSTEM:
            value = v.get("value")
            if not isinstance(value, str) or not value.isdigit() or len(value) != 10 or not nhs_number_is_valid(value):
                self.error("value", (path, "value"), "is not a valid NHS number (10 digits, modulus 11 check)")
        if vtype == "Extension":
            has_value = any(k.startswith("value") for k in v)
            if has_value == bool(v.get("extension")):
                self.error("invariant", path, "ext-1: an extension has either a value or extensions, not both")

    def _binding(self, url: str, system: str | None, code: Any, path: Path | None) -> bool:
        allowed = bindings.expansion(url)
        if allowed is None or not isinstance(code, str):
            return True
        ok = (system, code) in allowed if system else code in bindings.codes_only(url)  # type: ignore[operator]
        if not ok and path is not None:
            self.error("code-invalid", path, f"is not a code in the required value set {url}")
        return ok

    def _check(self, c: Any, check: invariants.Evaluator, node: Any, path: Path) -> None:
        if check(node, self.root) is False:
            self.error("invariant", path, f"{c.key}: {c.human}", "error" if c.severity == "error" else "warning")


def _no_value_check(_v: Any) -> str | None:
    return None


BLANK = "must not be empty or only white space"
NUL = "must not contain NUL characters"  # no FHIR value needs it, and PostgreSQL text cannot hold it


@cache
def value_check(vtype: str) -> Callable[[Any], str | None]:
    """How a JSON value of primitive type `vtype` is checked, worked out once per type: the function
    returns None for a valid value, else what is wrong with it."""
    invalid = f"is not a valid {vtype}"
    if vtype == "boolean":
        return lambda v: None if isinstance(v, bool) else invalid
    if vtype in INTEGER_TYPES:
        low = {"positiveInt": 1, "unsignedInt": 0}.get(vtype, -2**31)
        return lambda v: None if isinstance(v, int) and not isinstance(v, bool) and low <= v < 2**31 else invalid
    if vtype == "decimal":
        return lambda v: None if isinstance(v, (int, FhirDecimal)) and not isinstance(v, bool) else invalid
    rx = primitive_regex(vtype)
    match = rx.fullmatch if rx is not None else None
    dated = vtype in ("date", "dateTime", "instant")

    def check_text(v: Any) -> str | None:
        if not isinstance(v, str):
            return invalid
        if not v or v.isspace():
            return BLANK
        if "\x00" in v:
            return NUL
        if match is not None and match(v) is None:
            return invalid
        if dated and len(v) >= 10 and not _real_date(v[:10]):
            return invalid
        return None
    return check_text


def _real_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
