"""Search-parameter index values of a resource, from extractors generated from the R4 definitions.

Every SearchParameter expression of R4 is a union (`|`) of paths with, at most, a type filter
(`.ofType(T)` / `as T`), a reference-target filter (`.where(resolve() is T)`) or an equality filter
(`.where(system='phone')`). We compile each into steps over the JSON, typed by the StructureDefinitions
(so `Observation.value` finds `valueQuantity` and knows it is a Quantity), and generate each
parameter's steps as a small Python function of nested loops, once per resource type. `evaluate`
interprets the same steps; tests hold it to fhirpathpy and the generated code to it. Anything else
falls back to fhirpathpy (compiled once): today only `Patient.deceased`. Evaluating compiled fhirpathpy
for dozens of parameters per write would cost milliseconds; the generated code costs about 25 µs for
a whole Synthea resource.

Values are converted by the FHIR type found: Coding/CodeableConcept/Identifier/ContactPoint/code to
tokens, HumanName/Address parts to normalised strings, dates to the UTC instant range they cover,
Quantity/Money to exact decimals, Reference/canonical to references.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from itertools import count, product
from typing import Any, NamedTuple

from sharedcare.errors import BadRequest
from sharedcare.fhir.definitions import search_parameters
from sharedcare.fhir.jsonio import FhirDecimal
from sharedcare.fhir.model import layouts
from sharedcare.fhir.search.query import date_range

MAX_INSTANT = "9999-12-31T23:59:59.999999"
MIN_INSTANT = "0001-01-01T00:00:00.000000"

# Index values are NamedTuples: built and hashed (de-duplication) in C, thousands of them per bundle.


class TokenValue(NamedTuple):
    param: str
    system: str | None
    code: str | None
    text: str | None = None
    type_system: str | None = None
    type_code: str | None = None


class StringValue(NamedTuple):
    param: str
    value: str
    exact: str


class DateValue(NamedTuple):
    param: str
    low: str
    high: str


class NumberValue(NamedTuple):
    param: str
    value: Decimal


class QuantityValue(NamedTuple):
    param: str
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None


class ReferenceValue(NamedTuple):
    param: str
    target_type: str | None
    target_id: str | None
    version: str | None = None
    url: str | None = None


class UriValue(NamedTuple):
    param: str
    value: str


class CompositeValue(NamedTuple):
    """One combination of a composite parameter's components, all taken from the same element. The
    first component is a token in every R4 composite; the second is whichever type its parameter has
    (a token or quantity uses system2/code2, and a quantity also number2 and unit2; a date low2/high2;
    a string or reference text2; a number number2); a third component (MolecularSequence
    coordinates) is a number."""

    param: str
    system1: str | None
    code1: str | None
    system2: str | None = None
    code2: str | None = None
    text2: str | None = None
    number2: Decimal | None = None
    low2: str | None = None
    high2: str | None = None
    number3: Decimal | None = None


@dataclass
class IndexValues:
    tokens: list[TokenValue] = field(default_factory=list)
    strings: list[StringValue] = field(default_factory=list)
    dates: list[DateValue] = field(default_factory=list)
    numbers: list[NumberValue] = field(default_factory=list)
    quantities: list[QuantityValue] = field(default_factory=list)
    references: list[ReferenceValue] = field(default_factory=list)
    uris: list[UriValue] = field(default_factory=list)
    composites: list[CompositeValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SearchParamInfo:
    code: str
    type: str
    expression: str
    url: str
    targets: tuple[str, ...] = ()
    components: tuple[dict[str, Any], ...] = ()


# -- walking the element model ---------------------------------------------------------------------

@cache
def _child_keys(ctx: str, name: str) -> tuple[tuple[str, str], ...]:
    """The JSON keys child `name` of a `ctx` node may have, each with its type or path: one key, or one
    per type of a choice element (valueQuantity, valueString ...). Worked out once per (ctx, name)."""
    el = layouts().get(ctx, {}).get(name)
    if el is None:
        return ()
    if el.choice:
        return tuple((name + t[0].upper() + t[1:], t) for t in el.types)
    return ((name, el.context or (el.types[0] if el.types else "string")),)


def _children(node: Any, ctx: str, name: str) -> list[tuple[Any, str]]:
    """Values of child `name` of a JSON node whose type/path is `ctx`, each with its type or path."""
    if not isinstance(node, dict):
        return []
    found: list[tuple[Any, str]] = []
    for key, kind in _child_keys(ctx, name):
        value = node.get(key)
        if value is None:
            continue
        if isinstance(value, list):
            found.extend((v, kind) for v in value)
        else:
            found.append((value, kind))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- compiling expressions ---------------------------------------------------------------------------

_WHERE_RESOLVE = re.compile(r"^where\(resolve\(\) is (\w+)\)$")
_WHERE_EQ = re.compile(r"^where\((\w+)\s*=\s*'([^']*)'\)$")
_OF_TYPE = re.compile(r"^(?:ofType|as)\((\w+)\)$")
_AS = re.compile(r"^(.*\S) as (\w+)$")
_NAME = re.compile(r"^[A-Za-z]\w*$")

# One operation of a compiled path: ("child", name) | ("type", T) | ("where", key, value) | ("target", T)
Op = tuple[str, ...]


@dataclass(frozen=True)
class Step:
    root: str
    ops: tuple[Op, ...]


def _split_top(expr: str, sep: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    depth, quoted = 0, False
    for ch in expr:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def _split_union(expr: str) -> list[str]:
    return _split_top(expr, "|")


def _unwrap(text: str) -> str:
    """Drop parentheses that enclose the whole expression."""
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


# FHIRPath's System type names, which some R4 expressions use where FHIR's own are meant
# (`value.as(DateTime)` in Observation's composite parameters).
_SYSTEM_TYPES = {"Boolean": "boolean", "String": "string", "Integer": "integer", "Decimal": "decimal",
                 "Date": "date", "DateTime": "dateTime", "Time": "time"}


def _fhir_type_name(name: str) -> str:
    return _SYSTEM_TYPES.get(name, name)


def compile_part(part: str) -> Step | None:
    """A Step for one union member, or None if it is outside the subset (use the fallback)."""
    text = _unwrap(part.strip())
    suffix: list[Op] = []
    if m := _AS.match(text):
        text, suffix = _unwrap(m.group(1)), [("type", _fhir_type_name(m.group(2)))]
    segments = _split_top(text, ".")
    if not segments:
        return None
    ops: list[Op] = []
    root = segments[0]
    if root.startswith("("):  # "(A.b.ofType(T)).c": a parenthesised head, then more path
        head = compile_part(root)
        if head is None:
            return None
        root, ops = head.root, list(head.ops)
    elif not _NAME.match(root):
        return None
    for seg in segments[1:]:
        if _NAME.match(seg):
            ops.append(("child", seg))
        elif m := _OF_TYPE.match(seg):
            ops.append(("type", _fhir_type_name(m.group(1))))
        elif m := _WHERE_RESOLVE.match(seg):
            ops.append(("target", m.group(1)))
        elif m := _WHERE_EQ.match(seg):
            ops.append(("where", m.group(1), m.group(2)))
        else:
            return None
    return Step(root, tuple(ops + suffix))


def _refers_to(value: Any, target: str) -> bool:
    if not isinstance(value, dict):
        return False
    ref = value.get("reference")
    if isinstance(ref, str) and "/" in ref:
        parts = ref.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return parts[-2] == target
    return value.get("type") == target


def evaluate(step: Step, resource: dict[str, Any]) -> list[tuple[Any, str]]:
    return _follow([(resource, step.root)], step.ops)


def _follow(nodes: list[tuple[Any, str]], ops: tuple[Op, ...]) -> list[tuple[Any, str]]:
    """The nodes `ops` select from `nodes` (each a JSON value with its type or element path)."""
    for op in ops:
        if op[0] == "child":
            nodes = [child for value, ctx in nodes for child in _children(value, ctx, op[1])]
        elif op[0] == "type":
            nodes = [(v, t) for v, t in nodes if t == op[1]]
        elif op[0] == "where":
            nodes = [(v, t) for v, t in nodes if isinstance(v, dict) and v.get(op[1]) == op[2]]
        else:
            nodes = [(v, t) for v, t in nodes if _refers_to(v, op[1])]
        if not nodes:
            return []
    return nodes


@dataclass(frozen=True)
class Compiled:
    info: SearchParamInfo
    steps: tuple[Step, ...]
    fallback: str | None  # an expression for fhirpathpy when the subset does not cover it
    # The resource's own JSON keys the steps start from: a resource holding none of them has no value
    # for this parameter (most parameters of a type are absent from any one resource). None: no shortcut.
    keys: frozenset[str] | None = None
    # The steps generated as Python code (see _generate): run(resource, out) adds the index values.
    run: Callable[[dict[str, Any], IndexValues], None] | None = field(default=None, compare=False, repr=False)


def _first_keys(resource_type: str, steps: list[Step]) -> frozenset[str] | None:
    keys: set[str] = set()
    for step in steps:
        if step.root != resource_type or not step.ops or step.ops[0][0] != "child":
            return None
        keys.update(key for key, _ in _child_keys(resource_type, step.ops[0][1]))
    return frozenset(keys)


@cache
def parameters_for(resource_type: str) -> dict[str, SearchParamInfo]:
    out: dict[str, SearchParamInfo] = {}
    for sp in search_parameters():
        if resource_type in sp.get("base", ()) or "Resource" in sp.get("base", ()):
            out[sp["code"]] = SearchParamInfo(sp["code"], sp["type"], sp.get("expression", ""), sp["url"],
                                              tuple(sp.get("target", ())), tuple(sp.get("component", ())))
    return out


def _generate(resource_type: str, info: SearchParamInfo, steps: list[Step]) -> Callable[
        [dict[str, Any], IndexValues], None]:
    """The steps of one parameter as a Python function: nested loops over the JSON keys each step
    reaches, typed by the StructureDefinitions when generated, so choice types and type filters are
    settled once, not per resource. It selects exactly what `evaluate` selects, in the same order (a
    test runs both over the conformance resources), then converts each value by the parameter's type.
    The source is built only from the R4 definitions; JSON keys and filter values are written as
    Python literals (repr)."""
    convert = {"token": "_token(P, {v}, {k!r}, out)", "string": "_string(P, {v}, out)",
               "date": "_date(P, {v}, out)", "reference": "_reference(P, {v}, out)",
               "quantity": "_quantity(P, {v}, {k!r}, out)"}.get(info.type, "_add(INFO, {v}, {k!r}, out)")
    names = count()

    def walk(step: Step, i: int, var: str, kind: str, depth: int) -> list[str]:
        """The code selecting ops[i:] from `var` (of type or path `kind`); none when nothing can match
        (a type filter that excludes every type reached)."""
        pad = "    " * depth
        if i == len(step.ops):
            return [pad + convert.format(v=var, k=kind)]
        op = step.ops[i]
        if op[0] == "type":
            return walk(step, i + 1, var, kind, depth) if kind == op[1] else []
        if op[0] in ("where", "target"):
            test = (f"isinstance({var}, dict) and {var}.get({op[1]!r}) == {op[2]!r}" if op[0] == "where"
                    else f"_refers_to({var}, {op[1]!r})")
            body = walk(step, i + 1, var, kind, depth + 1)
            return [f"{pad}if {test}:", *body] if body else []
        guarded = var != "resource"  # the resource is a dict; a nested value may be anything
        inner = depth + 1 if guarded else depth
        ipad = "    " * inner
        code: list[str] = []
        for key, child_kind in _child_keys(kind, op[1]):
            n = next(names)
            body = walk(step, i + 1, f"v{n}", child_kind, inner + 2)
            if body:
                code += [f"{ipad}x{n} = {var}.get({key!r})", f"{ipad}if x{n} is not None:",
                         f"{ipad}    for v{n} in (x{n} if isinstance(x{n}, list) else (x{n},)):", *body]
        if code and guarded:
            code.insert(0, f"{pad}if isinstance({var}, dict):")
        return code

    lines = ["def run(resource, out):"]
    for step in steps:
        lines += walk(step, 0, "resource", step.root, 1)
    lines.append("    return None")
    namespace: dict[str, Any] = {"P": info.code, "INFO": info, "_token": _token, "_string": _string, "_date": _date,
                                 "_reference": _reference, "_quantity": _quantity, "_add": _add,
                                 "_refers_to": _refers_to}
    exec(compile("\n".join(lines), f"<search parameter {resource_type}.{info.code}>", "exec"), namespace)  # noqa: S102
    run: Callable[[dict[str, Any], IndexValues], None] = namespace["run"]
    return run


@cache
def compiled_for(resource_type: str) -> tuple[Compiled, ...]:
    out = []
    for code, info in parameters_for(resource_type).items():
        if info.type in ("composite", "special") or code in ("_id", "_lastUpdated") or not info.expression:
            continue
        parts = [p for p in _split_union(info.expression)
                 if p.lstrip("(").startswith((resource_type + ".", "Resource."))]
        if not parts:
            continue
        steps = [compile_part(p.replace("Resource.", resource_type + ".", 1)) for p in parts]
        if all(s is not None for s in steps):
            compiled = [s for s in steps if s is not None]
            out.append(Compiled(info, tuple(compiled), None, _first_keys(resource_type, compiled),
                                _generate(resource_type, info, compiled)))
        else:
            out.append(Compiled(info, (), " | ".join(parts)))
    return tuple(out)


@dataclass(frozen=True)
class CompiledComposite:
    """A composite parameter: its base elements, and each component's type and steps. A component's
    steps run from each base element (`relative`) or from the resource (`%resource...`).

    One per base path: `Observation | Observation.component` gives two. `needs` holds, per component,
    the JSON keys one of which its relative steps start from (None: no shortcut); an element holding
    none of a component's keys has no value for the composite, which settles most composites of most
    resources without walking them."""

    info: SearchParamInfo
    base: Step
    components: tuple[tuple[SearchParamInfo, tuple[tuple[Step, bool], ...]], ...]
    needs: tuple[frozenset[str] | None, ...]
    kinds: tuple[str, ...]  # the components' parameter types


def _component_keys(base: Step, steps: tuple[tuple[Step, bool], ...]) -> frozenset[str] | None:
    """The keys of an element of `base` that a component's relative steps start from."""
    nodes_kind = base.root if not base.ops else None
    if nodes_kind is None:
        last = base.ops[-1]
        if last[0] != "child" or len(base.ops) != 1:
            return None
        keys_kinds = _child_keys(base.root, last[1])
        if len(keys_kinds) != 1:
            return None
        nodes_kind = keys_kinds[0][1]
    keys: set[str] = set()
    for step, relative in steps:
        if not relative or not step.ops or step.ops[0][0] != "child":
            return None
        wanted = step.ops[1][1] if len(step.ops) > 1 and step.ops[1][0] == "type" else None
        keys.update(key for key, kind in _child_keys(nodes_kind, step.ops[0][1]) if wanted in (None, kind))
    return frozenset(keys)


@cache
def _parameters_by_url() -> dict[str, SearchParamInfo]:
    return {sp["url"]: SearchParamInfo(sp["code"], sp["type"], sp.get("expression", ""), sp["url"],
                                       tuple(sp.get("target", ())), tuple(sp.get("component", ())))
            for sp in search_parameters()}


def component_types(info: SearchParamInfo) -> tuple[str, ...]:
    """The types of a composite parameter's components, in order."""
    return tuple(_parameters_by_url()[c["definition"]].type for c in info.components)


@cache
def composites_for(resource_type: str) -> tuple[CompiledComposite, ...]:
    out = []
    for info in parameters_for(resource_type).values():
        if info.type != "composite":
            continue
        bases = [compile_part(p) for p in _split_union(info.expression) if p == resource_type
                 or p.startswith(resource_type + ".")]
        components = []
        for comp in info.components:
            part_info = _parameters_by_url()[comp["definition"]]
            steps: list[tuple[Step, bool]] = []
            for part in _split_union(comp["expression"]):
                absolute = part.startswith("%resource")
                step = compile_part(part.replace("%resource", resource_type, 1) if absolute else "Base." + part)
                if step is not None:
                    steps.append((step, not absolute))
            components.append((part_info, tuple(steps)))
        if bases and all(b is not None for b in bases):
            for base in bases:
                assert base is not None
                needs = tuple(_component_keys(base, steps) for _, steps in components)
                out.append(CompiledComposite(info, base, tuple(components), needs, component_types(info)))
    return tuple(out)


def _component_atoms(info: SearchParamInfo, values: IndexValues) -> list[tuple[Any, ...]]:
    """A component's values as the composite columns it fills: (system, code) for a token; (system,
    code, unit, value) for a quantity; (low, high) for a date; (text,) for a string or reference;
    (value,) for a number."""
    match info.type:
        case "token":
            return [(t.system, t.code) for t in values.tokens]
        case "quantity":
            return [(q.system, q.code, q.unit, q.value) for q in values.quantities]
        case "date":
            return [(d.low, d.high) for d in values.dates]
        case "string":
            return [(v.value,) for v in values.strings]
        case "reference":
            return [(f"{r.target_type}/{r.target_id}" if r.target_id else r.url,) for r in values.references]
        case "number":
            return [(n.value,) for n in values.numbers]
    return []


def _composite_value(param: str, kind2: str, atoms: tuple[tuple[Any, ...], ...]) -> CompositeValue:
    system1, code1 = atoms[0][:2]
    fields: dict[str, Any] = {}
    if len(atoms) > 1:
        a = atoms[1]
        match kind2:
            case "token":
                fields = {"system2": a[0], "code2": a[1]}
            case "quantity":
                fields = {"system2": a[0], "code2": a[1], "text2": a[2], "number2": a[3]}
            case "date":
                fields = {"low2": a[0], "high2": a[1]}
            case "number":
                fields = {"number2": a[0]}
            case _:
                fields = {"text2": a[0]}
    if len(atoms) > 2:
        fields["number3"] = atoms[2][0]
    return CompositeValue(param, system1, code1, **fields)


def extract_composites(resource: dict[str, Any], res_type: str, out: IndexValues) -> None:
    """Composite index values: every combination of component values taken from the same element."""
    for comp in composites_for(res_type):
        base = comp.base
        if base.ops:
            if base.ops[0][0] == "child" and base.ops[0][1] not in resource:
                continue
            nodes = evaluate(base, resource)
        else:
            nodes = [(resource, base.root)]  # the resource itself is the element
        kind2 = comp.kinds[1] if len(comp.kinds) > 1 else ""
        for node in nodes:
            if isinstance(node[0], dict) and any(keys is not None and keys.isdisjoint(node[0]) for keys in comp.needs):
                continue  # the element lacks a component
            per_component: list[list[tuple[Any, ...]]] = []
            for part_info, steps in comp.components:
                scratch = IndexValues()
                for step, relative in steps:
                    for value, kind in (_follow([node], step.ops) if relative else evaluate(step, resource)):
                        _add(part_info, value, kind, scratch)
                atoms = _component_atoms(part_info, scratch)
                if not atoms:
                    break
                per_component.append(atoms)
            else:
                out.composites.extend(_composite_value(comp.info.code, kind2, combo)
                                      for combo in product(*per_component))


def _deceased(resource: dict[str, Any]) -> list[bool]:
    """Patient.deceased.exists() and Patient.deceased != false: true when a death is recorded."""
    recorded = "deceasedDateTime" in resource or resource.get("deceasedBoolean") is True
    return [recorded]


# Expressions outside the walker subset that run on every write of their type get a native version;
# a test checks each against fhirpathpy.
NATIVE_EXPRESSIONS = {"Patient.deceased.exists() and Patient.deceased != false": _deceased}


@cache
def _fhirpath(expression: str) -> Any:
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    return fp_compile(expression, models["r4"])


# -- converting selected values into index values ------------------------------------------------------

def normalise(text: str) -> str:
    """Case-, accent- and whitespace-insensitive form used by string search."""
    if text.isascii():  # no accents to strip; casefold is lower for ASCII
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def _decimal(value: Any) -> Decimal | None:
    try:
        if isinstance(value, FhirDecimal):
            return Decimal(value.literal)
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return Decimal(str(value))
    except InvalidOperation:
        return None
    return None


def _date(param: str, value: Any, out: IndexValues) -> None:
    if isinstance(value, str):
        try:
            _, low, high = date_range(value)
        except BadRequest:
            return
        out.dates.append(DateValue(param, low, high))
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period
            low = _bound(value.get("start"), 1) or MIN_INSTANT
            high = _bound(value.get("end"), 2) or MAX_INSTANT
            out.dates.append(DateValue(param, low, high))
        for event in _as_list(value.get("event", [])):  # Timing
            _date(param, event, out)


def _bound(value: Any, index: int) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return date_range(value)[index]
    except BadRequest:
        return None


def _text(value: Any) -> str | None:
    return normalise(value) if isinstance(value, str) else None


def _token(param: str, value: Any, kind: str, out: IndexValues) -> None:
    """Token rows; their text (for `:text`) is normalised like string search values."""
    if kind == "CodeableConcept" and isinstance(value, dict):
        text = value.get("text")
        for coding in _as_list(value.get("coding", [])):
            if isinstance(coding, dict):
                out.tokens.append(TokenValue(param, coding.get("system"), coding.get("code"),
                                             _text(text or coding.get("display"))))
        if text and not value.get("coding"):
            out.tokens.append(TokenValue(param, None, None, _text(text)))
    elif kind == "Coding" and isinstance(value, dict):
        out.tokens.append(TokenValue(param, value.get("system"), value.get("code"), _text(value.get("display"))))
    elif kind == "Identifier" and isinstance(value, dict):
        itype: dict[str, Any] = value["type"] if isinstance(value.get("type"), dict) else {}
        coding = next((c for c in _as_list(itype.get("coding", [])) if isinstance(c, dict)), {})
        out.tokens.append(TokenValue(param, value.get("system"), value.get("value"), _text(itype.get("text")),
                                     coding.get("system"), coding.get("code")))
    elif kind == "ContactPoint" and isinstance(value, dict):
        out.tokens.append(TokenValue(param, value.get("system"), value.get("value")))
    elif isinstance(value, bool):
        out.tokens.append(TokenValue(param, None, "true" if value else "false"))
    elif isinstance(value, str):
        out.tokens.append(TokenValue(param, None, value))


def _string(param: str, value: Any, out: IndexValues) -> None:
    if isinstance(value, str):
        out.strings.append(StringValue(param, normalise(value), value))
    elif isinstance(value, dict):
        for key in ("family", "given", "prefix", "suffix", "text", "line", "city", "district", "state",
                    "postalCode", "country"):
            for part in _as_list(value.get(key, [])):
                if isinstance(part, str):
                    out.strings.append(StringValue(param, normalise(part), part))


def _reference(param: str, value: Any, out: IndexValues) -> None:
    if isinstance(value, str):  # canonical / uri
        url, _, version = value.partition("|")
        out.references.append(ReferenceValue(param, None, None, version or None, url))
    elif isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and not ref.startswith("#"):
            parts = ref.split("/")
            version = None
            if len(parts) >= 4 and parts[-2] == "_history":
                version, parts = parts[-1], parts[:-2]
            absolute = ref.startswith(("http://", "https://", "urn:"))
            rtype, rid = (parts[-2], parts[-1]) if len(parts) >= 2 else (value.get("type"), None)
            out.references.append(ReferenceValue(param, rtype, rid, version, ref if absolute else None))
        ident = value.get("identifier")
        if isinstance(ident, dict):
            _token(param, ident, "Identifier", out)


def _quantity(param: str, value: Any, kind: str, out: IndexValues) -> None:
    if not isinstance(value, dict):
        return
    if kind == "Range":
        for end in ("low", "high"):
            _quantity(param, value.get(end), "Quantity", out)
        return
    number = _decimal(value.get("value"))
    if number is None:
        return
    if kind == "Money":
        out.quantities.append(QuantityValue(param, number, "urn:iso:std:iso:4217", value.get("currency"), None))
    else:
        out.quantities.append(QuantityValue(param, number, value.get("system"), value.get("code"),
                                            value.get("unit")))


def _add(info: SearchParamInfo, value: Any, kind: str, out: IndexValues) -> None:
    p = info.code
    match info.type:
        case "token":
            _token(p, value, kind, out)
        case "string":
            _string(p, value, out)
        case "date":
            _date(p, value, out)
        case "reference":
            _reference(p, value, out)
        case "quantity":
            _quantity(p, value, kind, out)
        case "number":
            if (number := _decimal(value)) is not None:
                out.numbers.append(NumberValue(p, number))
        case "uri":
            if isinstance(value, str):
                out.uris.append(UriValue(p, value))


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def extract(resource: dict[str, Any]) -> IndexValues:
    """Every search-parameter value of a resource (the current version), de-duplicated per parameter."""
    out = IndexValues()
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        return out
    for comp in compiled_for(res_type):
        if comp.keys is not None and comp.keys.isdisjoint(resource):
            continue
        if comp.run is not None:
            comp.run(resource, out)
            continue
        native = NATIVE_EXPRESSIONS.get(comp.fallback or "")
        if native is not None:
            for v in native(resource):
                _add(comp.info, v, "boolean", out)
            continue
        if comp.fallback is not None:
            try:
                values = _fhirpath(comp.fallback)(resource)
            except Exception:
                values = []
            for v in values:
                _add(comp.info, v, "boolean" if isinstance(v, bool) else "string", out)
    extract_composites(resource, res_type, out)
    for name in ("tokens", "strings", "dates", "numbers", "quantities", "references", "uris", "composites"):
        setattr(out, name, _dedupe(getattr(out, name)))
    return out
