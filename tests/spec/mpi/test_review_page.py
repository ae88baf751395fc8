"""The staff pages of the patient index's review queue (web/review.py): a member of staff whose role
grants the review-matches activity (R8010, Clerical Access Role) sees the open possible matches,
compares the two records side by side and links them or keeps them apart with a reason. The decision
form needs the session's CSRF token; anyone else is refused, and a visitor is sent to sign in."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from sharedcare.access import accounts
from sharedcare.app import Services
from sharedcare.storage.accounts import AccountStore

PASSWORD = "correct horse battery"
ORG = "F84001"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Pair:
    review: str  # the review id
    patient: str  # the Patient the review names first
    other: str
    score: float


@pytest.fixture
def staff(store: Services) -> None:
    account_store = AccountStore(store.engine)
    accounts.add(account_store, "cleo.clerk", "staff", PASSWORD, roles=((ORG, "R8010"),))  # Clerical Access Role
    accounts.add(account_store, "rita.reception", "staff", PASSWORD, roles=((ORG, "R8009"),))  # Receptionist


def patient(given: str, gender: str, nhs_number: str | None = None) -> dict[str, Any]:
    """A Patient registered with the staff's own practice (so they may see it)."""
    doc: dict[str, Any] = {
        "resourceType": "Patient", "name": [{"family": "Smith", "given": [given]}], "gender": gender,
        "birthDate": "1980-03-14", "address": [{"line": ["1 High Street"], "city": "Leeds", "postalCode": "LS1 4AP"}],
        "generalPractitioner": [{"identifier": {"system": ODS, "value": ORG}}]}
    if nhs_number:
        doc["identifier"] = [{"system": NHS, "value": nhs_number}]
    return doc


def queue(client: TestClient, **params: str) -> list[dict[str, Any]]:
    """The reviews of `$review-queue`, each as {part name: value}."""
    r = client.get("/fhir/Person/$review-queue", params=params)
    assert r.status_code == 200, r.text
    return [{p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in review["part"]}
            for review in r.json()["parameter"] if review["name"] == "review"]


@pytest.fixture
def pair(client: TestClient, staff: None) -> Pair:
    """Two records of perhaps one man: John with an NHS number, and Jon (a nickname) without one and
    recorded female. The index holds them back from linking (different sex) and queues them."""
    ids = set()
    for doc in (patient("John", "male", "9000000009"), patient("Jon", "female")):
        r = client.post("/fhir/Patient", json=doc, headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        ids.add(r.json()["id"])
    [review] = queue(client)
    refs = {review["patient"]["reference"], review["other"]["reference"]}
    assert refs == {f"Patient/{i}" for i in ids}
    return Pair(review["id"], review["patient"]["reference"].removeprefix("Patient/"),
                review["other"]["reference"].removeprefix("Patient/"), float(review["score"]))


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def sign_in(client: TestClient, username: str) -> None:
    form = client.get("/auth/login")
    r = client.post("/auth/login", data={"username": username, "password": PASSWORD, "csrf": csrf_of(form)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def decide(client: TestClient, review: str, csrf: str | None, **form: str) -> httpx.Response:
    data = {**form, **({"csrf": csrf} if csrf is not None else {})}
    return client.post(f"/mpi/review/{review}", data=data, follow_redirects=False)


def person_of(client: TestClient, patient_id: str) -> set[str]:
    """The Patients linked to the person of `patient_id`."""
    bundle = client.get("/fhir/Person", params={"link": f"Patient/{patient_id}"}).json()
    [entry] = bundle["entry"]
    return {link["target"]["reference"].removeprefix("Patient/") for link in entry["resource"]["link"]}


def text_of(html: str) -> str:
    """A page's text with its tags taken out and its spaces made single."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def still_open(client: TestClient, pair: Pair) -> None:
    assert [r["id"] for r in queue(client)] == [pair.review]
    assert person_of(client, pair.patient) == {pair.patient}
    assert person_of(client, pair.other) == {pair.other}


# the pages --------------------------------------------------------------------------------------------

def test_the_list_shows_the_open_possible_match(client: TestClient, pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    r = client.get("/mpi/review")
    assert r.status_code == 200, r.text
    assert {k: r.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
    text = text_of(r.text)
    assert f"Patient/{pair.patient}" in text
    assert f"Patient/{pair.other}" in text
    assert f"{math.floor(pair.score * 1000) / 10:.1f}%" in text  # rounded down: never 100% short of certain
    assert "Probable" in text
    assert "The recorded sex is different" in text  # the guard that held it back, in plain words
    assert "1 in all" in text
    assert f'href="/mpi/review/{pair.review}"' in r.text
    assert "<caption>" in r.text
    assert 'scope="col"' in r.text
    assert "Next page" not in text  # one page only


def test_the_item_page_shows_both_records_side_by_side_and_how_they_compare(client: TestClient,
                                                                             pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    r = client.get(f"/mpi/review/{pair.review}")
    assert r.status_code == 200, r.text
    assert {k: r.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
    text = text_of(r.text)
    for shown in (f"Patient/{pair.patient}", f"Patient/{pair.other}", "John Smith", "Jon Smith", "900 000 0009",
                  "14 March 1980", "Male", "Female", "LS1 4AP", "1 High Street, Leeds, LS1 4AP",
                  "NHS number: 900 000 0009"):
        assert shown in text, shown
    # Each comparison with the level the pair agrees at (mpi/comparisons.py), in plain words.
    for field, agreement in (("NHS number", "Missing from one or both records"), ("Family name", "The same"),
                             ("First name", "Nickname"), ("Date of birth", "The same"), ("Sex", "Different"),
                             ("Postcode", "The same")):
        assert f"{field} {agreement}" in text, field
    assert "<th scope=\"row\">Address</th><td>" in r.text  # every comparison has its row
    # The decision form: a labelled, required reason, the two decisions, and the session's CSRF token.
    assert f'action="/mpi/review/{pair.review}"' in r.text
    assert '<label class="nhsuk-label" for="reason">' in r.text
    assert re.search(r'<textarea[^>]*id="reason"[^>]*name="reason"[^>]*required', r.text)
    assert re.search(r'name="decision" value="link">Same person: link</button>', r.text)
    assert re.search(r'name="decision" value="apart">Different people: keep apart</button>', r.text)
    assert csrf_of(r)
    assert 'role="alert"' not in r.text


def test_keeping_apart_with_a_reason_closes_the_review(client: TestClient, pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    csrf = csrf_of(client.get(f"/mpi/review/{pair.review}"))
    r = decide(client, pair.review, csrf, decision="apart", reason="Different people: PDS shows two records")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/mpi/review?decided=apart"
    listed = client.get(r.headers["location"])
    assert "You kept the two records apart" in listed.text
    assert pair.review not in listed.text  # no longer open
    assert queue(client) == []
    [kept] = queue(client, status="kept-apart")
    assert (kept["id"], kept["reason"], kept["decidedBy"]) == (
        pair.review, "Different people: PDS shows two records", "user:cleo.clerk")
    assert person_of(client, pair.patient) == {pair.patient}  # still two persons
    # The closed review shows its decision and offers no form.
    closed = client.get(f"/mpi/review/{pair.review}")
    assert closed.status_code == 200
    assert "Kept apart: different people" in closed.text
    assert "Different people: PDS shows two records" in closed.text
    assert "<form" not in closed.text


def test_linking_puts_both_records_in_one_person(client: TestClient, pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    csrf = csrf_of(client.get(f"/mpi/review/{pair.review}"))
    r = decide(client, pair.review, csrf, decision="link", reason="Same man: the sex was recorded wrongly")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/mpi/review?decided=link"
    assert "You linked the two records" in client.get(r.headers["location"]).text
    assert person_of(client, pair.patient) == {pair.patient, pair.other}
    assert person_of(client, pair.other) == {pair.patient, pair.other}
    assert queue(client) == []
    assert [r["id"] for r in queue(client, status="linked")] == [pair.review]


@pytest.mark.parametrize(("form", "field"), [
    ({"decision": "link", "reason": "   "}, "reason"),
    ({"decision": "link"}, "reason"),
    ({"reason": "Typed before choosing <b>a decision</b>"}, "decision-link"),
    ({"decision": "merge", "reason": "Not a decision the page offers"}, "decision-link"),
])
def test_a_decision_missing_something_is_shown_again_with_the_error_and_changes_nothing(
        client: TestClient, pair: Pair, form: dict[str, str], field: str) -> None:
    sign_in(client, "cleo.clerk")
    csrf = csrf_of(client.get(f"/mpi/review/{pair.review}"))
    r = decide(client, pair.review, csrf, **form)
    assert r.status_code == 400, r.text
    summary = re.search(r'<div class="nhsuk-error-summary"[^>]*role="alert".*?</div>\s*</div>', r.text, re.S)
    assert summary, r.text
    assert "There is a problem" in summary[0]
    assert f'href="#{field}"' in summary[0]
    assert f'id="{field}"' in r.text  # the link leads to the field
    # Nothing typed is lost (and what was typed is escaped); the form is there to try again.
    typed = form.get("reason", "")
    assert f">{typed.replace('<', '&lt;').replace('>', '&gt;')}</textarea>" in r.text
    assert "<b>" not in r.text
    assert csrf_of(r) == csrf
    still_open(client, pair)


def test_a_review_already_decided_cannot_be_decided_again(client: TestClient, pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    csrf = csrf_of(client.get(f"/mpi/review/{pair.review}"))
    assert decide(client, pair.review, csrf, decision="apart", reason="Two people").status_code == 303
    r = decide(client, pair.review, csrf, decision="link", reason="Changed my mind")
    assert r.status_code == 409, r.text
    assert 'role="alert"' in r.text
    assert "already closed" in r.text
    assert person_of(client, pair.patient) == {pair.patient}
    [kept] = queue(client, status="kept-apart")
    assert kept["reason"] == "Two people"


@pytest.mark.parametrize("csrf", [None, "", "x" * 43])
def test_a_decision_without_the_sessions_csrf_token_is_refused(client: TestClient, pair: Pair,
                                                              csrf: str | None) -> None:
    sign_in(client, "cleo.clerk")
    r = decide(client, pair.review, csrf, decision="link", reason="Same person")
    assert r.status_code == 403
    assert "This form has expired" in r.text
    still_open(client, pair)


def test_staff_without_the_review_role_are_refused(client: TestClient, pair: Pair) -> None:
    sign_in(client, "rita.reception")
    csrf = csrf_of(client.get("/auth/session"))  # the session's token (its sign-out form)
    for r in (client.get("/mpi/review"), client.get(f"/mpi/review/{pair.review}"),
              decide(client, pair.review, csrf, decision="link", reason="Same person")):
        assert r.status_code == 403, r.text
        assert "You cannot review possible matches" in r.text
        assert "Patient/" not in r.text
    still_open(client, pair)


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client: TestClient, pair: Pair) -> None:
    for path in ("/mpi/review", f"/mpi/review/{pair.review}"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303
        location = urlsplit(r.headers["location"])
        assert location.path == "/auth/login"
        assert parse_qs(location.query) == {"next": [path]}
    r = decide(client, pair.review, "x" * 43, decision="link", reason="Same person")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/login?")
    still_open(client, pair)


def test_records_the_reviewer_may_not_see_are_not_shown_nor_decided_blind(client: TestClient, staff: None) -> None:
    for doc in (patient("John", "male", "9000000009"), patient("Jon", "female")):
        del doc["generalPractitioner"]  # registered nowhere the clerk's organisation cares for
        assert client.post("/fhir/Patient", json=doc, headers=FHIR_JSON).status_code == 201
    [review] = queue(client)
    sign_in(client, "cleo.clerk")
    r = client.get(f"/mpi/review/{review['id']}")
    assert r.status_code == 200, r.text
    assert "You cannot see these records" in r.text
    for hidden in ("Smith", "John", "14 March 1980", "LS1 4AP", "900 000 0009"):
        assert hidden not in r.text
    assert "How the records compare" not in r.text  # nor how the unseen records agree
    assert "<form" not in r.text


def test_an_unknown_review_is_not_found(client: TestClient, pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    assert client.get("/mpi/review/00000000-0000-0000-0000-000000000000").status_code == 404
    csrf = csrf_of(client.get(f"/mpi/review/{pair.review}"))
    r = decide(client, "00000000-0000-0000-0000-000000000000", csrf, decision="link", reason="Same")
    assert r.status_code == 404
    still_open(client, pair)


def test_the_list_pages_on_after_the_last_review_seen(client: TestClient, pair: Pair) -> None:
    sign_in(client, "cleo.clerk")
    later = client.get("/mpi/review", params={"after": pair.review})
    assert later.status_code == 200
    assert f"/mpi/review/{pair.review}" not in later.text
    assert "There are no more possible matches" in later.text
    assert 'href="/mpi/review">First page' in later.text
    assert client.get("/mpi/review", params={"after": "<not an id>"}).status_code == 400
