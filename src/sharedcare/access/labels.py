"""What a resource says about who may see it, computed when it is written (safety properties 2 and 4).

The Repository stores these facts with each version, in the same transaction, and the policy joins on
them inside every query:

- `security`: the labels that keep a resource within the organisation that wrote it. `confidential`
  when the source labelled it restricted or very restricted (v3 Confidentiality R or V) and
  `sensitive:<set>` for each sensitive code set (assisted conception, sexual health, termination of
  pregnancy, gender reassignment: access/sensitive_codes.json) that any of its codings is in. A client
  cannot lower them: they come from the content, not from a label the client sets.
- restrictions about a person: an `objection` (an active Consent that denies sharing for privacy) and a
  `restricted-address` (a Patient labelled R or V, like a PDS S-flagged patient: the record is shared,
  but never their address or contact details), and `flagged` (a Patient labelled CEL, VIP or EMP, v3
  ActCode: a public figure or a member of staff, whose every look alerts privacy officers).
- legitimate relationships (access/relationships.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from sharedcare.access.relationships import Relationship, ods_value, relationships
from sharedcare.errors import ConfigurationError
from sharedcare.fhir import jsonio

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
RESTRICTED = frozenset({"R", "V"})
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONFIDENTIAL = "confidential"
SENSITIVE = "sensitive:"
OBJECTION = "objection"
RESTRICTED_ADDRESS = "restricted-address"
FLAGGED = "flagged"  # looks at this person alert privacy officers
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# v3 ActCode information sensitivity policies for people whose records attract curiosity: celebrity
# (CEL, and VIP, its older synonym) and employee (EMP: staff of the organisations themselves).
FLAGGING = frozenset({"CEL", "VIP", "EMP"})


# ICD-10 as NHS systems send it: with or without the dot, sometimes with an X filler ("B24X"), under
# the WHO or the UK edition's system. Codes of these systems are compared in one form (no dot, no filler).
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10_SYSTEMS = frozenset({ICD10, "http://hl7.org/fhir/sid/icd-10-uk"})


def match_key(system: str, code: str) -> tuple[str, str]:
    """The form in which a coding is looked up in the code sets."""
    if system in ICD10_SYSTEMS:
        code = code.strip().upper().replace(".", "")
        return ICD10, code[:-1] if len(code) == 4 and code.endswith("X") else code
    return system, code


@dataclass(frozen=True)
class CodeSets:
    """Sensitive code sets: (system, code), in `match_key` form -> the sets it is in."""

    by_code: Mapping[tuple[str, str], str | frozenset[str]]
    version: str = ""

    def sets_of(self, system: str, code: str) -> frozenset[str]:
        found = self.by_code.get(match_key(system, code))
        if found is None:
            return frozenset()
        return frozenset((found,)) if isinstance(found, str) else found


def load_code_sets(path: Path | None = None) -> CodeSets:
    """The sensitive code sets: the file at `path` (same shape as the packaged default,
    access/sensitive_codes.json, documented in docs/sensitive-codes.md) or the default."""
    try:
        raw = path.read_bytes() if path is not None else \
            resources.files("sharedcare.access").joinpath("sensitive_codes.json").read_bytes()
        data = orjson.loads(raw)
        by_code: dict[tuple[str, str], frozenset[str]] = {}
        for name, body in data["sets"].items():
            for c in body["codes"]:
                if not (isinstance(c.get("system"), str) and isinstance(c.get("code"), str)):
                    raise ValueError(f"set {name}: every code needs a system and a code")
                key = match_key(c["system"], c["code"])
                by_code[key] = by_code.get(key, frozenset()) | {name}
        return CodeSets(by_code, str(data.get("version", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        where = str(path) if path is not None else "the packaged default"
        raise ConfigurationError(f"the sensitive code sets ({where}) cannot be read: {exc}") from None


@dataclass(frozen=True)
class AccessFacts:
    security: str | None  # space-separated labels, None when nothing keeps it within its source
    restrictions: tuple[tuple[str, str], ...]  # (patient id, kind)
    relationships: tuple[Relationship, ...]


def facts(resource: dict[str, Any], code_sets: CodeSets) -> AccessFacts:
    res_type = resource.get("resourceType")
    restricted = _restricted(resource)
    labels: set[str] = set()
    restrictions: list[tuple[str, str]] = []
    if res_type == "Patient":
        if isinstance(resource.get("id"), str):
            if restricted:
                restrictions.append((resource["id"], RESTRICTED_ADDRESS))
            if _labelled(resource, ACT_CODE, FLAGGING):
                restrictions.append((resource["id"], FLAGGED))
    elif restricted:
        labels.add(CONFIDENTIAL)
    if code_sets.by_code:
        labels.update(SENSITIVE + name for name in _sets_coded(resource, code_sets))
    if res_type == "Consent":
        patient = _objector(resource)
        if patient is not None:
            restrictions.append((patient, OBJECTION))
    return AccessFacts(" ".join(sorted(labels)) or None, tuple(restrictions), tuple(relationships(resource)))


def ods_code(organisation: dict[str, Any]) -> str | None:
    """An Organization's ODS code (its first identifier in the ODS system), or None."""
    return next((code for ident in organisation.get("identifier") or [] if (code := ods_value(ident))), None)


def _restricted(resource: dict[str, Any]) -> bool:
    return _labelled(resource, CONFIDENTIALITY, RESTRICTED)


def _labelled(resource: dict[str, Any], system: str, codes: frozenset[str]) -> bool:
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    return isinstance(labels, list) and any(
        isinstance(s, dict) and s.get("system") == system and s.get("code") in codes for s in labels)


def _codings(node: Any) -> Iterator[tuple[str, str]]:
    """Every (system, code) pair anywhere in the resource (contained resources included)."""
    if isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        if isinstance(system, str) and isinstance(code, str):
            yield system, code
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _codings(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                yield from _codings(item)


def _sets_coded(resource: dict[str, Any], code_sets: CodeSets) -> set[str]:
    found: set[str] = set()
    for system, code in _codings(resource):
        found |= code_sets.sets_of(system, code)
    return found


def _objector(consent: dict[str, Any]) -> str | None:
    """The patient of an active Consent that denies sharing for privacy, else None."""
    if consent.get("status") != "active":
        return None
    scope = consent.get("scope")
    codings = scope.get("coding") if isinstance(scope, dict) else None
    if not isinstance(codings, list) or not any(
            isinstance(c, dict) and c.get("system") == CONSENT_SCOPE and c.get("code") == "patient-privacy"
            for c in codings):
        return None
    provision = consent.get("provision")
    if not isinstance(provision, dict) or provision.get("type") != "deny":
        return None
    ref = (consent.get("patient") or {}).get("reference") if isinstance(consent.get("patient"), dict) else None
    if isinstance(ref, str) and ref.startswith("Patient/") and ref[8:] and "/" not in ref[8:]:
        return ref[8:]
    return None


REDACTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "REDACTED",
            "display": "redacted"}
_CONTACT_DETAILS = ("address", "telecom")


def without_contact_details(data: bytes) -> bytes:
    """A Patient with no address or contact details (its own, its contacts', its photo kept), labelled
    REDACTED so that whoever reads it knows something was withheld (a restricted-address patient)."""
    doc = jsonio.loads(data)  # decimals parsed exactly
    for key in _CONTACT_DETAILS:
        doc.pop(key, None)
    for contact in doc.get("contact") or []:
        if isinstance(contact, dict):
            for key in _CONTACT_DETAILS:
                contact.pop(key, None)
    meta = doc.setdefault("meta", {})
    meta["security"] = [*(meta.get("security") or []), REDACTED]
    return jsonio.dumps(doc)
