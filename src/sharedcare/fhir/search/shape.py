"""Subsetting search results: `_summary` (true, text, data) and `_elements`.

A subsetted resource keeps `resourceType`, `id` and `meta`, and carries the SUBSETTED tag in
`meta.tag` so nobody mistakes it for the whole record (a clinician must never read a summary as
the complete resource). Mandatory top-level elements are always kept, as the R4 search page asks.
Which elements are "summary" comes from the R4 StructureDefinitions (`isSummary`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sharedcare.fhir import jsonio
from sharedcare.fhir.definitions import structure_definitions
from sharedcare.fhir.model import layouts

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
ALWAYS = frozenset({"resourceType", "id", "meta"})


def _keys(res_type: str, names: set[str]) -> frozenset[str]:
    """The JSON keys of top-level elements `names` (choice elements under each type's key, and
    primitive extensions under `_key`)."""
    out: set[str] = set()
    for name, el in layouts().get(res_type, {}).items():
        if name not in names:
            continue
        keys = [name + t[0].upper() + t[1:] for t in el.types] if el.choice else [name]
        out.update(keys)
        out.update("_" + k for k in keys)
    return frozenset(out)


@cache
def summary_keys(res_type: str) -> frozenset[str]:
    sd = structure_definitions().get(res_type, {})
    names = {el["path"].split(".", 1)[1].removesuffix("[x]") for el in sd.get("snapshot", {}).get("element", ())
             if el["path"].count(".") == 1 and el.get("isSummary")}
    return ALWAYS | _keys(res_type, names)


@cache
def mandatory_keys(res_type: str) -> frozenset[str]:
    return ALWAYS | _keys(res_type, {n for n, el in layouts().get(res_type, {}).items() if el.min > 0})


def keep_keys(res_type: str, summary: str | None, elements: tuple[str, ...]) -> frozenset[str] | None:
    """The top-level keys a result keeps, or None for the whole resource. `data` is handled apart."""
    if summary == "true":
        return summary_keys(res_type)
    if summary == "text":
        return mandatory_keys(res_type) | {"text"}
    if elements:
        return mandatory_keys(res_type) | _keys(res_type, set(elements))
    return None


def subset(data: bytes, summary: str | None, elements: tuple[str, ...]) -> bytes:
    """The stored bytes of a resource reduced as asked, tagged SUBSETTED; unchanged if nothing is
    removed by the request."""
    resource: dict[str, Any] = jsonio.loads(data)
    res_type = str(resource.get("resourceType", ""))
    if summary == "data":
        kept = {k: v for k, v in resource.items() if k not in ("text", "_text")}
    else:
        keys = keep_keys(res_type, summary, elements)
        if keys is None:
            return data
        kept = {k: v for k, v in resource.items() if k in keys}
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*[t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"], SUBSETTED]
    kept["meta"] = meta
    return jsonio.dumps(kept)
