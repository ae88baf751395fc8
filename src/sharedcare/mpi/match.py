"""`Patient/$match` (FHIR R4 operation; issue 6, item 5): the stored Patients most likely to be the
person an input Patient describes, each with a score and a match grade.

Candidates are the patient index's records (storage/mpi_store.py) of Patients the caller may see that
share a blocking key with the input (an NHS number; a birth date with a family name that sounds alike;
a birth date with the first given name; family and given name with the birth year; a postcode with
the birth year). Each is scored on its stored features (a restricted address's place left out) and
decided (`decide.py`) against the input; candidates graded certainly-not are not returned. The input
is never stored: an NHS number failing its check is treated as absent, as it is for stored records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sharedcare.mpi.comparisons import features
from sharedcare.mpi.decide import Decision, Outcome, Thresholds, decide
from sharedcare.mpi.model import MatchModel
from sharedcare.mpi.normalise import from_patient

GRADE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/match-grade"


class MatchInputError(ValueError):
    """A $match request that cannot be answered (the message says why)."""


@dataclass(frozen=True)
class MatchRequest:
    patient: dict[str, Any]
    only_certain: bool
    count: int | None


def parse_request(body: Any, *, max_count: int) -> MatchRequest:
    """The operation's Parameters: `resource` (a Patient, required), `onlyCertainMatches` (boolean),
    `count` (a positive integer, at most `max_count`)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise MatchInputError("Patient/$match takes a Parameters resource")
    params = [p for p in body.get("parameter") or [] if isinstance(p, dict)]
    resources = [p.get("resource") for p in params if p.get("name") == "resource"]
    if len(resources) != 1 or not isinstance(resources[0], dict) or resources[0].get("resourceType") != "Patient":
        raise MatchInputError("Patient/$match needs exactly one 'resource' parameter holding a Patient")
    only_certain, count = False, None
    for p in params:
        if p.get("name") == "onlyCertainMatches":
            if not isinstance(p.get("valueBoolean"), bool):
                raise MatchInputError("'onlyCertainMatches' takes a valueBoolean")
            only_certain = p["valueBoolean"]
        elif p.get("name") == "count":
            value = p.get("valueInteger")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MatchInputError("'count' takes a positive valueInteger")
            count = min(value, max_count)
        elif p.get("name") != "resource":
            raise MatchInputError(f"Patient/$match has no parameter {p.get('name')!r}")
    return MatchRequest(resources[0], only_certain, count)


def choose(model: MatchModel, thresholds: Thresholds, request: MatchRequest,
           candidates: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[int, Decision]]:
    """Which candidates ((id, features) of stored records) to return, best first: (index in
    `candidates`, decision). Certainly-not is left out; with `only_certain`, only a single certain
    match is returned (none if there are two or more, which is for a person to resolve); at most
    `count`."""
    wanted = features(from_patient(request.patient))
    decided = [(i, decide(model, wanted, dict(f), thresholds)) for i, (_, f) in enumerate(candidates)]
    kept = sorted(((i, d) for i, d in decided if d.outcome is not Outcome.NO_MATCH),
                  key=lambda pair: -pair[1].score.weight)
    if request.only_certain:
        certain = [(i, d) for i, d in kept if d.grade == "certain"]
        return certain if len(certain) == 1 else []
    return kept[:request.count] if request.count is not None else kept
