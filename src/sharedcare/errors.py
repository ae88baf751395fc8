"""Every error sharedcare raises on purpose, and how each maps to an OperationOutcome and HTTP status.

    SharedcareError
     ├── ConfigurationError            a setting or installed file is wrong; not a client's fault
     └── FhirError                     has .status and .issues -> OperationOutcome
          ├── BadRequest               400 invalid / structure / value (bad syntax, bad parameter)
          │    └── InvalidResource     400 (or 422 for business rules) with one issue per failing path
          ├── Unauthorized             401 login
          ├── Forbidden                403 forbidden (a search outside the caller's scope)
          ├── NotFound                 404 not-found (also: a resource the caller may not see)
          ├── MethodNotAllowed         405 not-supported
          ├── NotAcceptable            406 not-supported (Accept we cannot produce)
          ├── Conflict                 409 conflict (id clash, dependants)
          ├── Gone                     410 deleted
          ├── PreconditionFailed       412 conflict (stale If-Match, several conditional matches)
          ├── PayloadTooLarge          413 too-costly
          ├── UnsupportedMediaType     415 not-supported
          ├── UnprocessableEntity      422 processing (valid FHIR that breaks a rule)
          ├── PreconditionRequired     428 required (If-Match needed)
          ├── TooManyRequests          429 throttled
          ├── ServiceUnavailable       503 transient (e.g. audit store unavailable: fail closed)
          └── StorageCorrupt           500 exception (stored bytes that cannot be decoded: never served
                                       as an empty or partial record)

Safety property 1 is enforced here: diagnostics are written by our code and must never quote record
content (names, identifiers, free text); they may name element paths, parameter names and types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class SharedcareError(Exception):
    """Base of every error raised on purpose."""


class ConfigurationError(SharedcareError):
    """A setting or an installed file is wrong or missing."""


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    severity: str  # fatal | error | warning | information
    code: str  # an IssueType code: invalid, structure, required, value, invariant, not-found, ...
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(SharedcareError):
    """An error a FHIR client sees as an HTTP status with an OperationOutcome."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid"

    def __init__(self, diagnostics: str = "", *, issues: list[Issue] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics or (issues[0].diagnostics if issues else self.__class__.__name__))
        self.issues: list[Issue] = issues or [Issue("error", self.code, diagnostics)]
        self.headers: dict[str, str] = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status, code = 400, "invalid"


class InvalidResource(BadRequest):
    """The resource is not valid FHIR R4: one issue per failing path."""

    status, code = 400, "invalid"


class Unauthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class Gone(FhirError):
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class UnprocessableEntity(FhirError):
    status, code = 422, "processing"


class PreconditionRequired(FhirError):
    status, code = 428, "required"


class TooManyRequests(FhirError):
    status, code = 429, "throttled"


class ServiceUnavailable(FhirError):
    status, code = 503, "transient"


class StorageCorrupt(FhirError):
    """Stored bytes that cannot be turned back into the resource they were written from."""

    status, code = 500, "exception"
