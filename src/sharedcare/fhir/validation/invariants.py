"""FHIRPath invariants (ElementDefinition.constraint), compiled once and cached.

The universal ones run natively because they apply to nearly every element and fhirpathpy costs tens of
microseconds per evaluation: ele-1 (an element has a value or children) and ext-1 (an extension has a
value or nested extensions, not both) are enforced by the structure walk itself; dom-2..dom-5 are below.
dom-6 (narrative, a best-practice warning) is not reported. Expressions fhirpathpy cannot compile or
evaluate are skipped, never turned into errors: a validator fault must not refuse a good resource.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from sharedcare.fhir.model import Constraint

log = logging.getLogger("sharedcare.validation")

# Enforced natively elsewhere, or not applicable to stored resources.
NATIVE = {"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "dom-6"}
# Invariants whose R4 expressions use functions fhirpathpy does not implement, or that are known to be
# wrong in R4 4.0.1; skipped with the reason.
SKIPPED = {
    "txt-1": "htmlChecks() is not implemented by fhirpathpy; narrative is checked to be a div string",
    "txt-2": "htmlChecks() is not implemented by fhirpathpy",
    "ref-1": "native: a '#' reference must point at a contained resource (checked in the walk)",
    "csd-1": "fhirpathpy's combine()/descendants() disagree with the specification's own CodeSystem example",
}


def _qty_3(node: Any, root: dict[str, Any]) -> bool:
    """qty-3: if a code for the unit is present, the system SHALL also be present."""
    return "code" not in node or "system" in node


def _obs_6(node: Any, root: dict[str, Any]) -> bool:
    """obs-6: dataAbsentReason SHALL only be present if Observation.value[x] is not present."""
    return "dataAbsentReason" not in node or not any(k.startswith("value") and k[5:6].isupper() for k in node)


def _codings(concept: Any) -> list[tuple[Any, Any]]:
    if not isinstance(concept, dict):
        return []
    raw = concept.get("coding", [])
    # FHIRPath sees a lone object where an array belongs as a collection of one (the walk reports it).
    return [(c.get("system"), c.get("code")) for c in (raw if isinstance(raw, list) else [raw]) if isinstance(c, dict)]


def _obs_7(node: Any, root: dict[str, Any]) -> bool:
    """obs-7: if a component has the same code as the observation, value SHALL NOT be on the observation."""
    if not any(k.startswith("value") and k[5:6].isupper() for k in node):
        return True
    own = {(s, c) for s, c in _codings(node.get("code"))}
    components = node.get("component", []) if isinstance(node.get("component"), list) else []
    return not any(own & set(_codings(comp.get("code"))) for comp in components if isinstance(comp, dict))


def _inv_1(node: Any, root: dict[str, Any]) -> bool:
    """inv-1 (Parameters.parameter): exactly one of value[x], resource or part."""
    has_value = any(k.startswith("value") and k[5:6].isupper() for k in node)
    return (has_value + ("resource" in node) + ("part" in node)) == 1


def _per_1(node: Any, root: dict[str, Any]) -> bool:
    """per-1: if both are present, start SHALL be no later than end (compared as the ranges they cover)."""
    from sharedcare.errors import BadRequest
    from sharedcare.fhir.search.query import date_range

    start, end = node.get("start"), node.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True
    try:
        return date_range(start)[1] <= date_range(end)[2]
    except BadRequest:
        return True  # a malformed date is reported by the primitive check, not here


CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def _coded(concept: Any, system: str, *codes: str) -> bool:
    """concept.coding.where(system = S and (code = C1 or ...)).exists()"""
    return any(s == system and c in codes for s, c in _codings(concept))


def _con_3(node: Any, root: dict[str, Any]) -> bool:
    """con-3: clinicalStatus is required unless entered in error or the condition is not a problem-list
    item. As written in R4 the last clause compares each category (a CodeableConcept) with a string,
    which is never true, so any category at all fails it; the reference engine agrees."""
    return ("clinicalStatus" in node or _coded(node.get("verificationStatus"), CONDITION_VER, "entered-in-error")
            or not node.get("category"))


def _con_4(node: Any, root: dict[str, Any]) -> bool:
    """con-4: if abatement is present, the clinical status must be resolved, remission or inactive."""
    return (_keys_of("abatement").isdisjoint(node)
            or _coded(node.get("clinicalStatus"), CONDITION_CLINICAL, "resolved", "remission", "inactive"))


def _con_5(node: Any, root: dict[str, Any]) -> bool:
    """con-5: a condition entered in error has no clinical status."""
    return not _coded(node.get("verificationStatus"), CONDITION_VER, "entered-in-error") or "clinicalStatus" not in node


def _ait_1(node: Any, root: dict[str, Any]) -> bool:
    """ait-1: clinicalStatus is required unless the allergy was entered in error."""
    return _coded(node.get("verificationStatus"), ALLERGY_VER, "entered-in-error") or "clinicalStatus" in node


def _ait_2(node: Any, root: dict[str, Any]) -> bool:
    """ait-2: an allergy entered in error has no clinical status."""
    return not _coded(node.get("verificationStatus"), ALLERGY_VER, "entered-in-error") or "clinicalStatus" not in node


def _org_1(node: Any, root: dict[str, Any]) -> bool:
    """org-1: an organization has at least a name or an identifier."""
    identifiers = node.get("identifier")
    return bool(identifiers if isinstance(identifiers, list) else identifiers is not None) or "name" in node


def _not_home(node: Any, root: dict[str, Any]) -> bool:
    """org-2 / org-3: an organization's address and telecom are never 'home'."""
    return bool(node.get("use") != "home")


# Hot invariants (every Quantity, every Observation, every Condition) run natively; tests prove they agree
# with fhirpathpy.
NATIVE_RULES = {"qty-3": _qty_3, "obs-6": _obs_6, "obs-7": _obs_7, "inv-1": _inv_1, "per-1": _per_1,
                "con-3": _con_3, "con-4": _con_4, "con-5": _con_5, "ait-1": _ait_1, "ait-2": _ait_2,
                "org-1": _org_1, "org-2": _not_home, "org-3": _not_home}


# The commonest shape of invariant, "A.empty() or B.exists()" over two child elements (prr-1, cpt-2,
# tim-1, tim-6..8 ...), runs natively too; tests check it agrees with fhirpathpy on every conformance example.
_EMPTY_OR_EXISTS = re.compile(r"(\w+)\.empty\(\) or (\w+)\.exists\(\)")
# ... and "A.empty() or B.empty()" (not both: cpl-3, ...).
_EMPTY_OR_EMPTY = re.compile(r"(\w+)\.empty\(\) or (\w+)\.empty\(\)")


@cache
def _choice_suffixes() -> tuple[str, ...]:
    from sharedcare.fhir.model import layouts

    types = {t for elements in layouts().values() for el in elements.values() if el.choice for t in el.types}
    return tuple(t[0].upper() + t[1:] for t in sorted(types))


@cache
def _keys_of(name: str) -> frozenset[str]:
    """The JSON keys that carry element `name`: its value, a primitive's extension, or a choice-type
    variant such as valueString."""
    return frozenset((name, "_" + name, *(name + suffix for suffix in _choice_suffixes())))


@cache
def _pattern_rule(expression: str) -> Any:
    if m := _EMPTY_OR_EXISTS.fullmatch(expression.strip()):
        a, b = (_keys_of(name) for name in m.groups())
        return lambda node, root: a.isdisjoint(node) or not b.isdisjoint(node)
    if m := _EMPTY_OR_EMPTY.fullmatch(expression.strip()):
        a, b = (_keys_of(name) for name in m.groups())
        return lambda node, root: a.isdisjoint(node) or b.isdisjoint(node)
    return None


def _portable(expression: str) -> str:
    """fhirpathpy lacks hasValue(); for the primitives invariants apply it to, exists() is equivalent
    except for a primitive carrying only extensions, which FHIR JSON rarely sends."""
    return re.sub(r"(?<![\w.])hasValue\(\)", "$this.exists()", expression).replace(".hasValue()", ".exists()")


@cache
def _compiled(expression: str) -> Any:
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    try:
        return fp_compile(_portable(expression), models["r4"])
    except Exception:
        log.debug("invariant expression does not compile")
        return None


Evaluator = Callable[[Any, dict[str, Any]], "bool | None"]


@cache
def evaluator(constraint: Constraint) -> Evaluator | None:
    """How to check one invariant: a function (node, root resource) -> True/False, or None when it
    could not be evaluated; None instead of a function when the invariant is not checked here at all
    (enforced natively elsewhere, or skipped with a reason). Chosen once per constraint."""
    if constraint.key in NATIVE or constraint.key in SKIPPED:
        return None
    rule = NATIVE_RULES.get(constraint.key) or _pattern_rule(constraint.expression)
    if rule is not None:
        native = rule
        return lambda node, root: native(node, root) if isinstance(node, dict) else None
    expression, key = constraint.expression, constraint.key

    def with_fhirpath(node: Any, root: dict[str, Any]) -> bool | None:
        fn = _compiled(expression)
        if fn is None:
            return None
        try:
            result = fn(node, {"rootResource": root, "resource": root})
        except Exception:
            log.debug("invariant %s could not be evaluated", key)
            return None
        if result == [] or result is None:
            return True  # an empty result means the rule does not apply
        return all(r is True for r in result)
    return with_fhirpath


def dom_checks(resource: dict[str, Any], path: str) -> list[tuple[str, str, str]]:
    """dom-2..dom-5 for a DomainResource: (key, path, message)."""
    out = []
    raw = resource.get("contained")
    contained_list: list[Any] = raw if isinstance(raw, list) else []
    for i, contained in enumerate(contained_list):
        if not isinstance(contained, dict):
            continue
        where = f"{path}.contained[{i}]"
        if "contained" in contained:
            out.append(("dom-2", where, "a contained resource must not contain other resources"))
        meta: dict[str, Any] = contained["meta"] if isinstance(contained.get("meta"), dict) else {}
        if "versionId" in meta or "lastUpdated" in meta:
            out.append(("dom-4", where, "a contained resource must not have meta.versionId or meta.lastUpdated"))
        if "security" in meta:
            out.append(("dom-5", where, "a contained resource must not have security labels"))
        if "text" in contained:
            out.append(("dom-2", where, "a contained resource must not have narrative"))
    return out
