"""Required bindings: expanding the core value sets we hold, once per URL.

A value set that includes a code system we do not hold (SNOMED CT, UCUM, languages, MIME types ...) or
uses filters cannot be expanded here; such bindings are not checked rather than wrongly failed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sharedcare.fhir.definitions import terminology


def _codes(concepts: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for c in concepts:
        if "code" in c:
            out.add(c["code"])
        out |= _codes(c.get("concept", []))
    return out


@cache
def expansion(url: str) -> frozenset[tuple[str, str]] | None:
    """(system, code) pairs of a core value set, or None when it cannot be expanded locally."""
    vs = terminology().get(url)
    return expand(vs, terminology().get) if vs is not None else None


Resolve = Callable[[str], dict[str, Any] | None]


def expand(vs: dict[str, Any], resolve: Resolve, depth: int = 0) -> frozenset[tuple[str, str]] | None:
    """(system, code) pairs of a ValueSet resource: its `expansion.contains` when it carries one,
    otherwise its enumerated `compose` (included value sets and whole code systems found by `resolve`,
    by canonical URL). None when it cannot be expanded here (filters, code systems we do not hold)."""
    if vs.get("resourceType") != "ValueSet" or depth > 8:
        return None
    contains = (vs.get("expansion") or {}).get("contains")
    if contains:
        return frozenset(_contained(contains))
    compose = vs.get("compose") or {}
    pairs: set[tuple[str, str]] = set()
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return None
        for ref in inc.get("valueSet", []):
            sub_vs = resolve(ref.split("|")[0])
            sub = expand(sub_vs, resolve, depth + 1) if sub_vs is not None else None
            if sub is None:
                return None
            pairs |= sub
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            pairs |= {(system, c["code"]) for c in inc["concept"] if "code" in c}
        else:
            cs = resolve(system)
            if cs is None or cs.get("resourceType") != "CodeSystem" or cs.get("content") not in ("complete", None):
                return None
            pairs |= {(system, code) for code in _codes(cs.get("concept", []))}
    for exc in compose.get("exclude", []):
        system = exc.get("system")
        pairs -= {(system, c["code"]) for c in exc.get("concept", []) if "code" in c}
    return frozenset(pairs) if pairs else None


def _contained(contains: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for c in contains:
        if c.get("code") and not c.get("abstract"):
            out.add((c.get("system", ""), c["code"]))
        out |= _contained(c.get("contains", []))
    return out


@cache
def codes_only(url: str) -> frozenset[str] | None:
    pairs = expansion(url)
    return frozenset(code for _, code in pairs) if pairs is not None else None
