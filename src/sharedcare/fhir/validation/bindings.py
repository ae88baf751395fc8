"""Required bindings: expanding the core value sets we hold, once per URL.

A value set that includes a code system we do not hold (SNOMED CT, UCUM, languages, MIME types ...) or
uses filters cannot be expanded here; such bindings are not checked rather than wrongly failed.
"""

from __future__ import annotations

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
    """(system, code) pairs of a value set, or None when it cannot be expanded locally."""
    vs = terminology().get(url)
    if vs is None or vs.get("resourceType") != "ValueSet":
        return None
    compose = vs.get("compose") or {}
    pairs: set[tuple[str, str]] = set()
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return None
        for ref in inc.get("valueSet", []):
            sub = expansion(ref.split("|")[0])
            if sub is None:
                return None
            pairs |= sub
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            pairs |= {(system, c["code"]) for c in inc["concept"]}
        else:
            cs = terminology().get(system)
            if cs is None or cs.get("resourceType") != "CodeSystem" or cs.get("content") not in ("complete", None):
                return None
            pairs |= {(system, code) for code in _codes(cs.get("concept", []))}
    for exc in compose.get("exclude", []):
        system = exc.get("system")
        pairs -= {(system, c["code"]) for c in exc.get("concept", [])}
    return frozenset(pairs) if pairs else None


@cache
def codes_only(url: str) -> frozenset[str] | None:
    pairs = expansion(url)
    return frozenset(code for _, code in pairs) if pairs is not None else None
