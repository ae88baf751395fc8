"""The CapabilityStatement, generated from what this server really does.

Interactions, search parameters and operations are listed only if the code paths exist; a test
exercises every listed interaction for a sample of types, so the statement cannot claim more than works.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sharedcare import __version__
from sharedcare.fhir.definitions import FHIR_VERSION, resource_types
from sharedcare.fhir.interactions import SERVER_WRITTEN

TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type",
                     "create", "search-type")
READ_INTERACTIONS = ("read", "vread", "history-instance", "history-type", "search-type")  # server-written types
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")


def searchable(res_type: str) -> list[dict[str, str]]:
    """The search parameters a type really supports: every R4 parameter with an expression (the
    query parser refuses, or ignores, the others: _content, _query, near)."""
    from sharedcare.fhir.search.extract import parameters_for

    return [{"name": code, "type": info.type, "definition": info.url}
            for code, info in sorted(parameters_for(res_type).items())
            if info.expression and info.type != "special"]


@cache
def _reference_params(res_type: str) -> tuple[str, ...]:
    from sharedcare.fhir.search.extract import parameters_for

    return tuple(sorted(code for code, info in parameters_for(res_type).items()
                        if info.type == "reference" and info.expression))


@cache
def _revincludes() -> dict[str, tuple[str, ...]]:
    """Target type -> `Source:param` of every reference parameter that can point at it."""
    from sharedcare.fhir.search.extract import parameters_for

    out: dict[str, list[str]] = {}
    for source in sorted(resource_types()):
        for code, info in parameters_for(source).items():
            if info.type == "reference" and info.expression:
                for target in info.targets or sorted(resource_types()):
                    out.setdefault(target, []).append(f"{source}:{code}")
    return {k: tuple(sorted(set(v))) for k, v in out.items()}


def _audit_event() -> dict[str, Any]:
    """AuditEvent is the audit trail, served read-only by access/audit_service.py: read and search by
    the parameters it implements (`agent-organization` is this server's own)."""
    from sharedcare.access.audit_service import PARAMS
    from sharedcare.fhir.search.extract import parameters_for

    standard = parameters_for("AuditEvent")
    params = [{"name": p, "type": standard[p].type, "definition": standard[p].url} for p in sorted(PARAMS)
              if p in standard]
    params.append({"name": "agent-organization", "type": "token",
                   "documentation": "ODS code of the organisation the agent acted for"})
    return {"type": "AuditEvent", "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
            "supportedProfile": ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read",
                                 "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query"],
            "interaction": [{"code": "read"}, {"code": "search-type"}], "versioning": "no-version",
            "readHistory": False, "updateCreate": False, "conditionalCreate": False,
            "conditionalRead": "not-supported", "conditionalUpdate": False, "conditionalDelete": "not-supported",
            "searchParam": params}


def _person() -> dict[str, Any]:
    """Person is the patient index's (fhir/mpi_routes.py): read, and search by the Patient it links."""
    from sharedcare.fhir.search.extract import parameters_for

    standard = parameters_for("Person")
    return {"type": "Person", "profile": "http://hl7.org/fhir/StructureDefinition/Person",
            "documentation": "The person behind linked source Patient records, kept by the patient index. Only "
                             "links to Patients the caller may see are shown.",
            "interaction": [{"code": "read"}, {"code": "search-type"}], "versioning": "no-version",
            "readHistory": False, "updateCreate": False, "conditionalCreate": False,
            "conditionalRead": "not-supported", "conditionalUpdate": False, "conditionalDelete": "not-supported",
            "searchParam": [{"name": p, "type": "reference", "definition": standard[p].url}
                            for p in ("link", "patient")],
            "operation": [{"name": name, "definition": f"https://sharedcare.example/OperationDefinition/Person-{name}"}
                          for name in ("review-queue", "review-decide", "merge", "unmerge", "unlink",
                                       "link-history")]}


@cache
def capability_statement(base_url: str, software_date: str = "2026-11-24") -> dict[str, Any]:
    """Built once per base URL (callers must not change it)."""
    resources = []
    for res_type in sorted(resource_types()):
        operations = [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}]
        if res_type == "Patient":
            operations.append({"name": "everything",
                               "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"})
            operations.append({"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"})
        writable = res_type not in SERVER_WRITTEN
        if res_type == "AuditEvent":
            resources.append(_audit_event())
            continue
        if res_type == "Person":
            resources.append(_person())
            continue
        resources.append({
            "type": res_type,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
            "interaction": [{"code": c} for c in (TYPE_INTERACTIONS if writable else READ_INTERACTIONS)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": writable,
            "conditionalCreate": writable,
            "conditionalRead": "not-supported",
            "conditionalUpdate": writable,
            "conditionalDelete": "single" if writable else "not-supported",
            "searchInclude": ["*", *(f"{res_type}:{p}" for p in _reference_params(res_type))],
            "searchRevInclude": list(_revincludes().get(res_type, ())),
            "searchParam": searchable(res_type),
            "operation": operations,
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
            # Bulk loads by a registered source's system client (fhir/import_routes.py).
            "operation": [{"name": "import", "definition": "https://sharedcare.example/OperationDefinition/import"}],
        }],
    }
