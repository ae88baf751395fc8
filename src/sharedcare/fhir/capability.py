"""The CapabilityStatement, generated from what this server really does.

Interactions, search parameters and operations are listed only if the code paths exist; a test
exercises every listed interaction for a sample of types, so the statement cannot claim more than works.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sharedcare import __version__
from sharedcare.fhir.definitions import FHIR_VERSION, resource_types, search_parameters

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type",
                     "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
COMMON_PARAMS = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"),
    ("_lastUpdated", "date", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"),
)


@cache
def _identifier_types() -> frozenset[str]:
    return frozenset(
        base for sp in search_parameters() if sp["code"] == "identifier" for base in sp.get("base", ())
    )


def capability_statement(base_url: str, software_date: str = "2026-11-24") -> dict[str, Any]:
    identifier_types = _identifier_types()
    resources = []
    for res_type in sorted(resource_types()):
        params = [{"name": n, "type": t, "definition": d} for n, t, d in COMMON_PARAMS]
        if res_type in identifier_types:
            params.append({"name": "identifier", "type": "token",
                           "definition": f"http://hl7.org/fhir/SearchParameter/{res_type}-identifier"})
        resources.append({
            "type": res_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "searchParam": params,
            "operation": [{"name": "validate",
                           "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        })
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": software_date,
        "publisher": "sharedcare",
        "kind": "instance",
        "software": {"name": "sharedcare", "version": __version__},
        "implementation": {"description": "sharedcare FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
        }],
    }
