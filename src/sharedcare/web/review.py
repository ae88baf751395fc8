"""The staff pages of the patient index's review queue (possible matches): server-rendered, for a
member of staff signed in with a role that grants the review-matches activity (SDS R8010, Clerical
Access Role). Each page calls `mpi/service.MpiService`, which checks and audits every call.

    GET  /mpi/review               open possible matches, oldest first, 20 a page (`after`: the last id seen)
    GET  /mpi/review/{review_id}   one, the two records side by side, with the decision form
    POST /mpi/review/{review_id}   decide: link (one person) or keep apart, with a reason

A visitor who is not signed in is sent to sign in (and a member of staff who has not chosen a role
profile to choose one); a caller the service refuses gets a 403 page. The decision form carries the
session's CSRF token. Pages are escaped HTML with no script; nothing of a record is ever logged.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sharedcare.access.context import Caller
from sharedcare.access.signin import Session, SignIn
from sharedcare.errors import BadRequest, FhirError, Forbidden, NotFound
from sharedcare.mpi.normalise import NHS_NUMBER_SYSTEM
from sharedcare.mpi.service import DECISIONS, MpiService, ReviewItem
from sharedcare.settings import Settings
from sharedcare.storage.mpi_store import ReviewRow
from sharedcare.web import openapi
from sharedcare.web.auth import StaffPages, page, redirect

if TYPE_CHECKING:
    from sharedcare.app import Services

log = logging.getLogger("sharedcare.mpi")

PAGE_SIZE = 20
# What the pages act with: the session's caller (its role profile decides what it may do), reading
# Patients only. The service needs no more: keeping the index is the role's activity, not a scope.
PAGE_SCOPES = ("user/Patient.rs",)
_REVIEW_ID = re.compile(r"[A-Za-z0-9-]{1,64}")

# The guards that held a pair back from an automatic link (mpi/decide.py), in plain words.
GUARDS = {
    "different-nhs-numbers": "The NHS numbers are different",
    "given-names-differ": "The first names are different",
    "sex-differs": "The recorded sex is different",
    "name-and-birth-date-only": "Only the name and date of birth agree",
}
GRADES = {"certain": "Certain", "probable": "Probable", "possible": "Possible"}
STATUSES = {"open": "Waiting for review", "linked": "Linked: the same person",
            "kept-apart": "Kept apart: different people", "withdrawn": "Withdrawn (a record changed or was deleted)"}
# The comparisons of the side-by-side (mpi/comparisons.py), in plain words.
FIELDS = {"nhs_number": "NHS number", "family": "Family name", "given": "First name", "birth_date": "Date of birth",
          "sex": "Sex", "postcode": "Postcode", "address": "Address"}
AGREEMENTS = {"exact": "The same", "missing": "Missing from one or both records", "different": "Different"}
_EDIT = re.compile(r"edit distance <= (\d+)")
CONFIRMATIONS = {"link": "You linked the two records: they are now one person.",
                 "apart": "You kept the two records apart: they will not be linked or offered for review again."}
SEXES = {"male": "Male", "female": "Female", "other": "Other", "unknown": "Unknown"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


class ReviewRoutes(StaffPages):
    def __init__(self, services: Services, settings: Settings, signin: SignIn) -> None:
        super().__init__(signin, settings, PAGE_SCOPES)
        self.service = MpiService(services.repo)

    # -- pages --------------------------------------------------------------------------------------

    async def queue_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None or session.needs_role:
            return self.sign_in(request, session)
        after = request.query_params.get("after") or None
        if after is not None and not _REVIEW_ID.fullmatch(after):
            return page("message.html", 400, title="There is no such page", back="/mpi/review",
                        message="This page of the review queue does not exist.")
        caller = self.caller(session, request)
        try:
            rows, total = await run_in_threadpool(
                lambda: self.service.queue(caller, status="open", count=PAGE_SIZE, after=after))
        except Forbidden:
            return refused()
        except FhirError as exc:
            return page("message.html", exc.status, title="The review queue could not be shown",
                        message=sentence(str(exc)), back="/mpi/review")
        decided = request.query_params.get("decided")
        return page("review_list.html", title="Possible matches to review", rows=[row_view(r) for r in rows],
                    total=total, after=after, confirmation=CONFIRMATIONS.get(decided or ""),
                    next=f"/mpi/review?{urlencode({'after': rows[-1].review_id})}" if len(rows) == PAGE_SIZE
                    else None)

    async def item_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None or session.needs_role:
            return self.sign_in(request, session)
        return await self._item(self.caller(session, request), session, request.path_params["review_id"])

    async def decide(self, request: Request) -> Response:
        posted = await self.posted(request, unreadable="The decision could not be read")
        if isinstance(posted, Response):
            return posted
        session, form = posted
        review_id = request.path_params["review_id"]
        if not _REVIEW_ID.fullmatch(review_id):
            return not_found()
        caller = self.caller(session, request)
        decision, reason = form.get("decision", ""), form.get("reason", "")
        try:
            await run_in_threadpool(self.service.decide, caller, review_id, decision, reason)
        except Forbidden:
            return refused()
        except NotFound:
            return not_found()
        except FhirError as exc:
            field = None
            if isinstance(exc, BadRequest):
                field = "reason" if not reason.strip() else "decision-link" if decision not in DECISIONS else None
            return await self._item(caller, session, review_id, status=exc.status, reason=reason,
                                    error={"message": sentence(str(exc)), "field": field})
        log.info("a possible match was decided on the review page (%s)", decision)
        return redirect(f"/mpi/review?{urlencode({'decided': decision})}")

    # -- helpers ------------------------------------------------------------------------------------

    async def _item(self, caller: Caller, session: Session, review_id: str, *, status: int = 200,
                    reason: str = "", error: dict[str, Any] | None = None) -> Response:
        if not _REVIEW_ID.fullmatch(review_id):
            return not_found()
        try:
            item = await run_in_threadpool(self.service.review, caller, review_id)
        except Forbidden:
            return refused()
        except NotFound:
            return not_found()
        except FhirError as exc:
            return page("message.html", exc.status, title="This possible match could not be shown",
                        message=sentence(str(exc)), back="/mpi/review")
        return page("review_item.html", status, title="Are these records the same person?", csrf=session.csrf,
                    reason=reason, error=error, **item_view(item))


def refused() -> Response:
    return page("message.html", 403, title="You cannot review possible matches", message=(
        "Reviewing possible matches in the patient index needs a role that allows it, such as the "
        "Clerical Access Role (R8010). Sign in with, or choose, a role profile that has it."),
        links=[{"href": "/auth/session", "label": "See who you are signed in as"}])


def not_found() -> Response:
    return page("message.html", 404, title="Page not found", back="/mpi/review",
                message="There is no such possible match in the review queue.")


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- what the templates show -----------------------------------------------------------------------

def row_view(row: ReviewRow) -> dict[str, Any]:
    return {
        "id": row.review_id,
        "href": f"/mpi/review/{row.review_id}",
        "patient": f"Patient/{row.res_id}",
        "other": f"Patient/{row.other_id}",
        "score": percent(row.score),
        "grade": GRADES.get(row.grade, row.grade),
        "held_back": [GUARDS.get(g, g) for g in row.held_back],
        "created": instant(row.created),
        "created_iso": row.created[:19] + "Z",
        "status": row.status,
        "status_text": STATUSES.get(row.status, row.status),
        "decided": instant(row.decided) if row.decided else None,
        "decided_by": row.decided_by,
        "reason": row.reason,
    }


def item_view(item: ReviewItem) -> dict[str, Any]:
    sides = [patient_view(p) for p in item.patients] if item.patients is not None else None
    comparisons = [{"field": FIELDS.get(name, name), "agreement": agreement(label)}
                   for name, label in item.levels.items()]
    return {"review": row_view(item.row), "sides": sides, "comparisons": comparisons}


def percent(score: float) -> str:
    """A match probability as a percentage to one place, rounded down: a pair short of certain never
    shows as 100%."""
    return f"{math.floor(score * 1000) / 10:.1f}%"


def instant(stored: str) -> str:
    """A stored UTC instant (`YYYY-MM-DDTHH:MM:SS...`) as people read it."""
    return f"{readable_date(stored[:10])} at {stored[11:16]} UTC" if len(stored) >= 16 else stored


def readable_date(value: str) -> str:
    """A FHIR date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) as people read it: 14 March 1980."""
    parts = value.split("-")
    try:
        if len(parts) == 3:
            return f"{int(parts[2])} {MONTHS[int(parts[1]) - 1]} {parts[0]}"
        if len(parts) == 2:
            return f"{MONTHS[int(parts[1]) - 1]} {parts[0]}"
    except (ValueError, IndexError):
        return value
    return value


def agreement(label: str) -> str:
    """A comparison level's label (mpi/service.level_label) in plain words."""
    if label in AGREEMENTS:
        return AGREEMENTS[label]
    edit = _EDIT.fullmatch(label)
    if edit:
        most = int(edit[1])
        return f"Nearly the same ({most} character{'s' if most > 1 else ''} or fewer different)"
    return sentence(label)


def nhs_number(value: str) -> str:
    return f"{value[:3]} {value[3:6]} {value[6:]}" if len(value) == 10 and value.isdigit() else value


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def patient_view(patient: dict[str, Any]) -> dict[str, Any]:
    """What the side-by-side shows of one Patient."""
    names = []
    for name in _dicts(patient.get("name")):
        text = name.get("text") if isinstance(name.get("text"), str) else None
        family = name["family"] if isinstance(name.get("family"), str) else ""
        text = text or " ".join([*_strings(name.get("prefix")), *_strings(name.get("given")), family]).strip()
        use = name.get("use")
        names.append(f"{text} ({use})" if isinstance(use, str) and use not in ("official", "usual") else text)
    identifiers, numbers = [], []
    for ident in _dicts(patient.get("identifier")):
        value, system = ident.get("value"), ident.get("system")
        if not isinstance(value, str):
            continue
        if system == NHS_NUMBER_SYSTEM:
            numbers.append(nhs_number(value))
            identifiers.append({"system": "NHS number", "value": nhs_number(value)})
        else:
            kind = (ident.get("type") or {}).get("text") if isinstance(ident.get("type"), dict) else None
            identifiers.append({"system": kind or (system if isinstance(system, str) else "No system"),
                                "value": value})
    addresses, postcodes = [], []
    for address in _dicts(patient.get("address")):
        postcode = address.get("postalCode") if isinstance(address.get("postalCode"), str) else None
        if postcode:
            postcodes.append(postcode.upper())
        parts = [*_strings(address.get("line")),
                 *[address[k] for k in ("city", "district") if isinstance(address.get(k), str)],
                 *([postcode.upper()] if postcode else [])]
        text = address.get("text") if isinstance(address.get("text"), str) else ", ".join(parts)
        use = address.get("use")
        addresses.append(f"{text} ({use})" if isinstance(use, str) and use != "home" else text)
    birth = patient.get("birthDate")
    gender = patient.get("gender")
    return {
        "reference": f"Patient/{patient.get('id', '')}",
        "names": names,
        "nhs_numbers": numbers,
        "birth_date": readable_date(birth) if isinstance(birth, str) else None,
        "sex": SEXES.get(gender, gender) if isinstance(gender, str) else None,
        "postcodes": postcodes,
        "addresses": addresses,
        "identifiers": identifiers,
    }


def install_review(app: FastAPI, services: Services, settings: Settings, signin: SignIn) -> None:
    """Mount the review queue's pages on `app`; `signin` is the sign-in service whose sessions they read
    (web/auth.install_auth)."""
    routes = ReviewRoutes(services, settings, signin)
    for path, endpoint, methods in (
        ("/mpi/review", routes.queue_page, ["GET"]),
        ("/mpi/review/{review_id}", routes.item_page, ["GET"]),
        ("/mpi/review/{review_id}", routes.decide, ["POST"]),
    ):
        # Described in the OpenAPI document of the non-FHIR routes (web/openapi.py).
        app.add_api_route(path, endpoint, methods=methods, openapi_extra=openapi.ROUTES[(methods[0], path)])
