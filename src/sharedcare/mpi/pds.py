"""National tracing: a client for the NHS Personal Demographics Service (PDS) FHIR API, and a
PDS-compatible sandbox that sharedcare serves itself from a synthetic London (issue 6, item 6).

The client uses the two PDS interactions the index needs:
- `GET {base}/Patient/{nhs_number}`: the national record for a number (to verify it);
- `GET {base}/Patient?family=&given=&gender=&birthdate=eqYYYY-MM-DD&address-postalcode=&_fuzzy-match=
  &_max-results=`: a trace by demographics; best first, each with `search.score`.

What comes back is read into `Traced`: the NHS number, the name, birth date, gender and postcode,
whether the person has died, and whether their record is restricted (PDS's S flag: security label
`R` or `V` in `meta.security`; their address, contact details and GP are withheld). A number found
by either interaction is verified: the national record holds it.

The sandbox answers the same two interactions from a synthetic London's `truth/people.csv`. Beyond
the demographics it needs nothing. It is not PDS: its matching is deliberately simple (below), and
it never changes. Searches need `family` and `birthdate`; when more people match than
`_max-results` allows, it answers with no Patients and a warning, as a trace service must not
offer a list of strangers to pick from.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sharedcare.errors import ConfigurationError, SharedcareError
from sharedcare.mpi.normalise import (
    NHS_NUMBER_SYSTEM,
    family_key,
    given_words,
    nhs_number,
    postcode,
    same_given_name,
)

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
VERIFICATION_EXTENSION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
VERIFICATION_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
MAX_RESULTS = 50


class PdsError(SharedcareError):
    """PDS refused the request (the message carries its reason) or answered something unreadable."""


class PdsUnavailable(PdsError):
    """PDS could not be reached, or failed; try again later."""


@dataclass(frozen=True)
class Traced:
    nhs_number: str
    family: str | None
    given: tuple[str, ...]
    birth_date: str | None
    gender: str | None
    postcode: str | None
    deceased: str | None  # the date of death, when PDS records one
    restricted: bool
    gp: str | None  # the registered practice's ODS code (withheld for restricted records)
    score: float | None = None  # a trace's match score (0 to 1)


def read_patient(patient: Mapping[str, Any], score: float | None = None) -> Traced:
    """A PDS Patient resource as `Traced` (PdsError if it carries no valid NHS number)."""
    numbers = [nhs_number(i.get("value")) for i in patient.get("identifier") or []
               if isinstance(i, Mapping) and i.get("system") == NHS_NUMBER_SYSTEM]
    number = next((n for n in numbers if n), None) or nhs_number(str(patient.get("id") or ""))
    if number is None:
        raise PdsError("PDS answered a Patient without a valid NHS number")
    names = [n for n in patient.get("name") or [] if isinstance(n, Mapping)]
    name = next((n for n in names if n.get("use") in (None, "usual", "official")), names[0] if names else {})
    addresses = [a for a in patient.get("address") or [] if isinstance(a, Mapping)]
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    labels = {s.get("code") for s in (patient.get("meta") or {}).get("security") or []
              if isinstance(s, Mapping) and s.get("system") == CONFIDENTIALITY}
    gps = [g for g in patient.get("generalPractitioner") or [] if isinstance(g, Mapping)]
    gp = next((str((g.get("identifier") or {}).get("value")) for g in gps
               if (g.get("identifier") or {}).get("system") == ODS), None)
    deceased = patient.get("deceasedDateTime")
    return Traced(number, name.get("family"), tuple(name.get("given") or ()), patient.get("birthDate"),
                  patient.get("gender"), home.get("postalCode"), str(deceased)[:10] if deceased else None,
                  bool(labels & {"R", "V"}), gp, score)


class PdsClient:
    """Talks to a PDS FHIR API at `base_url` (ending `/FHIR/R4`). `http` is the HTTP client to use
    (its own by default: a timeout, no redirects); `token` a bearer token for PDS, when needed."""

    def __init__(self, base_url: str, *, http: httpx.Client | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False)
        self._headers = {"Accept": "application/fhir+json", **({"Authorization": f"Bearer {token}"} if token else {})}

    def _get(self, path: str, params: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
        try:
            response = self._http.get(f"{self.base_url}{path}", params=tuple(params or ()),
                                      headers=self._headers)
        except httpx.HTTPError as exc:
            raise PdsUnavailable(f"PDS could not be reached ({type(exc).__name__})") from None
        if response.status_code >= 500:
            raise PdsUnavailable(f"PDS failed ({response.status_code})")
        try:
            body = response.json()
        except ValueError:
            raise PdsError(f"PDS answered {response.status_code} with something that is not JSON") from None
        return response.status_code, body

    @staticmethod
    def _reason(body: Any) -> str:
        issues = body.get("issue") if isinstance(body, dict) else None
        if isinstance(issues, list) and issues and isinstance(issues[0], dict):
            return str(issues[0].get("diagnostics") or issues[0].get("code") or "no reason given")
        return "no reason given"

    def get(self, number: str) -> Traced | None:
        """The national record for an NHS number; None when PDS holds none. An invalid number is
        refused here, without asking PDS."""
        checked = nhs_number(number)
        if checked is None:
            raise PdsError("not a valid NHS number")
        status, body = self._get(f"/Patient/{checked}")
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict) or body.get("resourceType") != "Patient":
            raise PdsError(f"PDS refused the request: {self._reason(body)}")
        return read_patient(body)

    def trace(self, *, family: str, birth_date: str, given: str | None = None, gender: str | None = None,
              postcode: str | None = None, fuzzy: bool = True, max_results: int = 1) -> list[Traced]:
        """People matching the demographics, best first (none when PDS finds none, or too many)."""
        if not 1 <= max_results <= MAX_RESULTS:
            raise PdsError(f"max_results must be between 1 and {MAX_RESULTS}")
        params = [("family", family), ("birthdate", f"eq{birth_date}"), ("_max-results", str(max_results))]
        params += [(k, v) for k, v in (("given", given), ("gender", gender), ("address-postalcode", postcode))
                   if v]
        if fuzzy:
            params.append(("_fuzzy-match", "true"))
        status, body = self._get("/Patient", params)
        if status != 200 or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise PdsError(f"PDS refused the trace: {self._reason(body)}")
        return [read_patient(e["resource"], (e.get("search") or {}).get("score"))
                for e in body.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") == "Patient"]

    def verify(self, number: str, *, family: str | None = None, birth_date: str | None = None) -> bool:
        """Whether PDS holds this NHS number for someone with this family name and birth date (each
        compared when given)."""
        found = self.get(number)
        if found is None:
            return False
        if birth_date and found.birth_date != birth_date:
            return False
        return not (family and family_key(found.family) != family_key(family))


# -- the sandbox -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    nhs_number: str
    given: str
    family: str
    gender: str
    birth_date: str
    postcode: str | None
    practice: str | None
    died_on: str | None
    restricted: bool = False


def people_from_synth(people_csv: Path, restricted: Iterable[str] = ()) -> list[Person]:
    """The people of a synthetic London (`truth/people.csv`); `restricted` NHS numbers are S-flagged."""
    flagged = set(restricted)
    try:
        with people_csv.open(newline="", encoding="utf-8") as handle:
            return [Person(row["nhs_number"], row["given"], row["family"], row["sex"], row["birth_date"],
                           row["postcode"] or None, row["practice"] or None, row["died_on"] or None,
                           row["nhs_number"] in flagged)
                    for row in csv.DictReader(handle)]
    except OSError as exc:
        raise ConfigurationError(f"the PDS sandbox's people cannot be read from {people_csv}: "
                                 f"{exc.strerror or type(exc).__name__}") from None
    except KeyError as exc:
        raise ConfigurationError(f"{people_csv} is not a synthetic London people.csv (no column {exc})") from None


def _patient(person: Person) -> dict[str, Any]:
    verified = {"url": VERIFICATION_EXTENSION, "valueCodeableConcept": {"coding": [
        {"system": VERIFICATION_SYSTEM, "code": "01", "display": "Number present and verified"}]}}
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": person.nhs_number,
        "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R" if person.restricted else "U"}]},
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": person.nhs_number, "extension": [verified]}],
        "name": [{"use": "usual", "family": person.family, "given": [person.given]}],
        "gender": person.gender, "birthDate": person.birth_date,
    }
    if person.died_on:
        patient["deceasedDateTime"] = f"{person.died_on}T00:00:00+00:00"
    if not person.restricted:
        if person.postcode:
            patient["address"] = [{"use": "home", "postalCode": person.postcode}]
        if person.practice:
            patient["generalPractitioner"] = [{"type": "Organization",
                                               "identifier": {"system": ODS, "value": person.practice}}]
    return patient


def _outcome(status: int, code: str, diagnostics: str) -> JSONResponse:
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": diagnostics}]}, status_code=status,
        media_type="application/fhir+json")


def _alike(a: str, b: str) -> bool:
    """Fuzzy agreement of two name words: one edit or one swap of neighbours apart, or sounding alike."""
    import jellyfish

    return bool(jellyfish.damerau_levenshtein_distance(a, b) <= 1 or jellyfish.metaphone(a) == jellyfish.metaphone(b))


def _given_alike(a: str, b: str) -> bool:
    return same_given_name(a, b) or _alike(a, b)


def _score(person: Person, family: str, given: str | None, gender: str | None, pc: str | None,
           fuzzy: bool) -> float | None:
    """1.0 when everything asked for agrees exactly, 0.8 a field for fuzzy agreement (a `_fuzzy-match`
    trace: names one edit apart, sounding alike, or a nickname); None when anything asked disagrees."""
    given_word = next(iter(given_words([given])), None) if given else None
    fields = (
        (family_key(family), family_key(person.family), _alike),
        (given_word, next(iter(given_words([person.given])), None), _given_alike),
        (gender, person.gender, None),
        (postcode(pc) if pc else None, postcode(person.postcode), None),
    )
    points, asked = 0.0, 0
    for wanted, held, loose in fields:
        if wanted is None:
            continue
        asked += 1
        if wanted == held:
            points += 1.0
        elif fuzzy and held is not None and loose is not None and loose(wanted, held):
            points += 0.8
        else:
            return None
    return round(points / asked, 4) if asked else None


def sandbox_router(people: Iterable[Person]) -> APIRouter:
    """The sandbox's routes, to mount at a prefix ending `/FHIR/R4`."""
    by_number = {p.nhs_number: p for p in people}
    by_birth: dict[str, list[Person]] = {}
    for p in by_number.values():
        by_birth.setdefault(p.birth_date, []).append(p)
    router = APIRouter()

    @router.get("/Patient/{number}")
    async def read(number: str) -> JSONResponse:
        checked = nhs_number(number)
        if checked is None:
            return _outcome(400, "value", "INVALID_RESOURCE_ID: not a valid NHS number")
        person = by_number.get(checked)
        if person is None:
            return _outcome(404, "not-found", "RESOURCE_NOT_FOUND: no record for this NHS number")
        return JSONResponse(_patient(person), media_type="application/fhir+json")

    @router.get("/Patient")
    async def search(request: Request) -> JSONResponse:
        q = request.query_params
        family, birth = q.get("family"), (q.get("birthdate") or "").removeprefix("eq")
        if not family or not birth:
            return _outcome(400, "required", "MISSING_VALUE: a trace needs family and birthdate")
        try:
            limit = int(q.get("_max-results", "1"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_RESULTS:
            return _outcome(400, "value", f"INVALID_VALUE: _max-results must be 1 to {MAX_RESULTS}")
        fuzzy = q.get("_fuzzy-match") == "true"
        scored = [(s, p) for p in by_birth.get(birth, [])
                  if (s := _score(p, family, q.get("given"), q.get("gender"), q.get("address-postalcode"), fuzzy))
                  is not None]
        scored.sort(key=lambda sp: (-sp[0], sp[1].nhs_number))
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
        if len(scored) > limit:
            bundle["entry"] = [{"search": {"mode": "outcome"}, "resource": {
                "resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "multiple-matches",
                                                               "diagnostics": "TOO_MANY_MATCHES: add demographics"}]}}]
        elif scored:
            bundle["total"] = len(scored)
            bundle["entry"] = [{"fullUrl": f"{str(request.base_url).rstrip('/')}{request.url.path}/{p.nhs_number}",
                                "search": {"score": s}, "resource": _patient(p)} for s, p in scored]
        return JSONResponse(bundle, media_type="application/fhir+json")

    return router
