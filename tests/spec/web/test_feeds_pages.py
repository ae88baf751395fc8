"""The administrator's pages for feeds (web/feeds.py, issue 7): a member of staff whose role grants the
administrator activity (R8015, Systems Support Access Role) sees the registered sources and the inbox's
dead letters with their reasons (never a message's payload), approves, enables and disables sources,
registers new ones and replays dead letters. Every form that changes something needs the session's
CSRF token; anyone else is refused, and a visitor is sent to sign in. Both backends (`store`)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from sharedcare.access import accounts
from sharedcare.app import Services
from sharedcare.ingest import sources
from sharedcare.storage import audit_store, inbox_store
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.inbox_store import Source

PASSWORD = "correct horse battery"
ORG = "F84001"
SECRET = "ZEBEDEE-MCGILLICUDDY"  # in the payload only: never shown to an administrator
REASON = "HL7 error 102: PID-7 is not a valid date (PID-7)"
FINGERPRINT = "AB:" * 31 + "AB"
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.fixture
def staff(store: Services) -> None:
    account_store = AccountStore(store.engine)
    accounts.add(account_store, "sam.support", "staff", PASSWORD, roles=((ORG, "R8015"),))  # Systems Support
    accounts.add(account_store, "cleo.clerk", "staff", PASSWORD, roles=((ORG, "R8010"),))  # Clerical


def payload(control: str) -> bytes:
    return (f"MSH|^~\\&|PAS|RJ7|SHAREDCARE|LONDON|20250727141000||ADT^A01^ADT_A01|{control}|P|2.4\r"
            f"PID|1||RJ70000002^^^RJ7^MR||{SECRET}^Hassan||1966011X|M\r").encode()


def dead_letter(store: Services, control: str = "M1", source_id: str = "RJ7") -> int:
    """A message stored from the source and marked dead with REASON; its number."""
    if inbox_store.get_source(store.engine, source_id) is None:
        sources.register(store.engine, Source(source_id, "RJ7", f"Trust {source_id}", ("hl7v2",)))
    [received] = inbox_store.receive(store.engine, [inbox_store.Incoming(
        source_id, control, "hl7v2", payload(control), patient_key=f"mrn|{SECRET}")], ack_code="AA")
    assert inbox_store.mark_failed(store.engine, received.seq, REASON, retry_in=None) == "dead"
    return received.seq


@pytest.fixture
def letter(store: Services, staff: None) -> int:
    return dead_letter(store)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def sign_in(client: TestClient, username: str) -> None:
    form = client.get("/auth/login")
    r = client.post("/auth/login", data={"username": username, "password": PASSWORD, "csrf": csrf_of(form)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def text_of(page: str) -> str:
    """A page's text with its tags taken out and its spaces made single."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def post(client: TestClient, path: str, csrf: str | None, **form: str) -> httpx.Response:
    return client.post(path, data={**form, **({"csrf": csrf} if csrf is not None else {})}, follow_redirects=False)


def status_of(store: Services, seq: int) -> str:
    found = inbox_store.message(store.engine, seq)
    assert found is not None
    return found.status


def audited(store: Services, agent: str) -> list[tuple[str, int, str]]:
    rows = audit_store.search(store.engine, audit_store.AuditFilter(agent=agent), 50)
    return [(r["interaction"], r["status"], r["query"]) for r in rows]


def registration(**changes: str) -> dict[str, str]:
    return {"source_id": "RVR-EPR", "ods": "RVR", "name": "Epsom and St Helier EPR", "feed-hl7v2": "on",
            "system": "EPR", "expected_minutes": "30", "cert_sha256": FINGERPRINT, **changes}


# who may use the pages ----------------------------------------------------------------------------

def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(anonymous_client: TestClient, store: Services,
                                                             letter: int) -> None:
    for path in ("/admin/feeds", "/admin/inbox", f"/admin/inbox/{letter}", "/admin/inbox?source=RJ7"):
        r = anonymous_client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        location = urlsplit(r.headers["location"])
        assert location.path == "/auth/login"
        assert parse_qs(location.query) == {"next": [path]}
        assert SECRET not in r.text
    for path, form in (("/admin/inbox/replay", {"seq": str(letter)}), ("/admin/feeds/RJ7/status",
                                                                      {"status": "disabled"}),
                       ("/admin/feeds", registration())):
        r = post(anonymous_client, path, "x" * 43, **form)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/auth/login?")
    assert status_of(store, letter) == "dead"
    assert [s.source_id for s in inbox_store.sources(store.engine)] == ["RJ7"]
    assert inbox_store.sources(store.engine)[0].status == "active"


def test_staff_without_the_administrator_activity_are_refused_and_audited(
        anonymous_client: TestClient, store: Services, letter: int) -> None:
    client = anonymous_client
    sign_in(client, "cleo.clerk")  # Clerical Access Role: reviews matches, does not administer
    csrf = csrf_of(client.get("/auth/session"))  # the session's token (its sign-out form)
    for r in (client.get("/admin/feeds"), client.get("/admin/inbox"), client.get(f"/admin/inbox/{letter}"),
              post(client, "/admin/inbox/replay", csrf, seq=str(letter)),
              post(client, "/admin/inbox/replay", csrf, source="RJ7"),
              post(client, "/admin/feeds/RJ7/status", csrf, status="disabled"),
              post(client, "/admin/feeds", csrf, **registration())):
        assert r.status_code == 403, r.text
        assert "You cannot manage feeds" in r.text
        assert "R8015" in r.text
        for hidden in (SECRET, REASON, "Trust RJ7"):
            assert hidden not in r.text
    assert status_of(store, letter) == "dead"
    assert [(s.source_id, s.status) for s in inbox_store.sources(store.engine)] == [("RJ7", "active")]
    refusals = [(i, s) for i, s, q in audited(store, "user:cleo.clerk") if q and q.startswith(("$feed", "$inbox"))]
    assert refusals == [("operation", 403)] * 7



def test_signing_in_from_a_feed_page_comes_back_to_it(anonymous_client: TestClient, staff: None) -> None:
    sent = anonymous_client.get("/admin/inbox?source=RJ7", follow_redirects=False)
    form = anonymous_client.get(sent.headers["location"])
    r = anonymous_client.post("/auth/login", follow_redirects=False, data={
        "username": "sam.support", "password": PASSWORD, "csrf": csrf_of(form), "next": "/admin/inbox?source=RJ7"})
    assert r.status_code == 303
    assert r.headers["location"] == "/admin/inbox?source=RJ7"

# what an administrator sees ------------------------------------------------------------------------

def test_an_administrator_sees_the_sources(anonymous_client: TestClient, store: Services, staff: None) -> None:
    sources.register(store.engine, Source("RJ7", "RJ7", "St George's PAS", ("hl7v2", "fhir"), system="PAS",
                                          expected_minutes=60))
    sources.register(store.engine, Source("RVR.EPR", "RVR", "RVR (registered on first contact)", ("hl7v2",),
                                          system="EPR", status="review"))
    an_hour_ago = inbox_store.now(datetime.now(UTC) - timedelta(hours=1))
    sources.register(store.engine, Source("RAX", "RAX", "Kingston lab", ("csv",), expected_minutes=15,
                                          created=an_hour_ago))
    inbox_store.receive(store.engine, [inbox_store.Incoming("RJ7", "K1", "hl7v2", payload("K1"))], ack_code="AA")
    sign_in(anonymous_client, "sam.support")
    r = anonymous_client.get("/admin/feeds")
    assert r.status_code == 200, r.text
    assert {k: r.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
    assert "<script" not in r.text
    rows = {m[1]: text_of(m[0]) for m in re.finditer(r'<tr>\s*<th scope="row">([^<]+)<br>.*?</tr>', r.text, re.S)}
    assert set(rows) == {"RAX", "RJ7", "RVR.EPR"}
    assert "St George's PAS RJ7 PAS HL7 v2, FHIR Active Every 60 minutes" in rows["RJ7"]
    assert "Silent" not in rows["RJ7"]  # it sent a moment ago
    assert "Never" not in rows["RJ7"]
    assert "Disable RJ7" in rows["RJ7"]
    assert "RAX Any of the organisation's CSV Active Silent: nothing received for longer than expected" in rows["RAX"]
    assert "Never" in rows["RAX"]
    assert "Waiting for approval" in rows["RVR.EPR"]
    assert "Not set" in rows["RVR.EPR"]
    assert "Approve RVR.EPR" in rows["RVR.EPR"]
    assert 'action="/admin/feeds/RVR.EPR/status"' in r.text
    # Every form carries the session's CSRF token.
    assert r.text.count("<form") == r.text.count('name="csrf"') == 4  # three sources' and the registration
    # The registration form: labelled fields, the feeds as separate boxes (HL7 v2 ticked to start with).
    for name in ("source_id", "ods", "name", "system", "expected_minutes", "cert_sha256"):
        assert f'<label class="nhsuk-label" for="{name}">' in r.text, name
    assert re.search(r'name="feed-hl7v2" value="on" checked>', r.text)
    assert re.search(r'name="feed-fhir" value="on">', r.text)


def test_an_administrator_sees_a_dead_letters_reason_but_never_its_payload(
        anonymous_client: TestClient, store: Services, letter: int) -> None:
    inbox_store.receive(store.engine, [inbox_store.Incoming("RJ7", "P1", "hl7v2", payload("P1"))], ack_code="AA")
    sign_in(anonymous_client, "sam.support")
    inbox = anonymous_client.get("/admin/inbox")
    assert inbox.status_code == 200, inbox.text
    assert {k: inbox.headers[k] for k in PAGE_HEADERS} == PAGE_HEADERS
    text = text_of(inbox.text)
    assert "Pending 1 Done 0 Dead letter 1" in text
    assert re.search(r"Oldest pending message Received (less than a minute|1 minute) ago", text)
    assert f"{letter} RJ7 M1 HL7 v2" in text
    assert REASON in text
    assert f'href="/admin/inbox/{letter}"' in inbox.text
    shown = anonymous_client.get(f"/admin/inbox/{letter}")
    assert shown.status_code == 200, shown.text
    text = text_of(shown.text)
    for part in ("Status Dead letter", "Attempts 1", f"Reason {REASON}", "Next attempt None", "Source RJ7",
                 "Message key M1"):
        assert part in text, part
    assert "Processed Not yet" not in text  # a dead letter's processed time is when it died
    for page in (inbox, shown, anonymous_client.get("/admin/feeds"), anonymous_client.get("/admin/inbox?source=RJ7")):
        assert SECRET not in page.text
        assert "RJ70000002" not in page.text
        assert "MSH|" not in page.text
        assert "<script" not in page.text


def test_a_done_messages_page_shows_what_it_wrote_and_its_warnings(anonymous_client: TestClient, store: Services,
                                                                    staff: None) -> None:
    sources.register(store.engine, Source("RJ7", "RJ7", "Trust RJ7", ("hl7v2",)))
    [received] = inbox_store.receive(store.engine, [inbox_store.Incoming("RJ7", "D1", "hl7v2", payload("D1"))],
                                     ack_code="AA")
    with store.engine.begin() as conn:
        inbox_store.mark_done(conn, received.seq, json.dumps({
            "written": ["Patient/p1", "Encounter/e1"], "merged": 0,
            "warnings": ["PV1: no visit number (PV1-19) or admission time (PV1-44): no encounter written"]}))
    sign_in(anonymous_client, "sam.support")
    r = anonymous_client.get(f"/admin/inbox/{received.seq}")
    assert r.status_code == 200, r.text
    text = text_of(r.text)
    assert "Status Done" in text
    assert "What it wrote Patient/p1 Encounter/e1" in text
    assert "Warnings PV1: no visit number (PV1-19)" in text
    assert "<form" not in r.text  # nothing to replay
    assert SECRET not in r.text
    for path in ("/admin/inbox/999999", "/admin/inbox/0", "/admin/inbox/x", "/admin/inbox/replay"):
        missing = anonymous_client.get(path)
        assert missing.status_code in (404, 405), path
        assert SECRET not in missing.text


def listed(page: httpx.Response) -> list[int]:
    """The numbers of the dead letters a page of the inbox lists, in its order."""
    return [int(n) for n in re.findall(r'<th scope="row"><a href="/admin/inbox/(\d+)">', page.text)]


def test_the_dead_letters_page_50_at_a_time_newest_first_and_filter_by_source(
        anonymous_client: TestClient, store: Services, staff: None) -> None:
    seqs = [dead_letter(store, f"M{n}") for n in range(51)]
    other = dead_letter(store, "O1", source_id="RJ7-LAB")
    sign_in(anonymous_client, "sam.support")
    first = anonymous_client.get("/admin/inbox")
    assert listed(first) == [other, *reversed(seqs)][:50]
    assert 'href="/admin/inbox?page=2" rel="next">Next page' in first.text
    second = anonymous_client.get("/admin/inbox?page=2")
    assert listed(second) == [seqs[1], seqs[0]]
    assert "Next page" not in second.text
    assert 'href="/admin/inbox?page=1" rel="prev">' in second.text
    mine = anonymous_client.get("/admin/inbox?source=RJ7-LAB")
    assert listed(mine) == [other]
    assert "Replay every dead letter of RJ7-LAB" in mine.text
    assert '<option value="RJ7-LAB" selected>' in mine.text
    for bad in ("?page=0", "?page=x", "?page=21", "?source=%3Cb%3E"):
        r = anonymous_client.get(f"/admin/inbox{bad}")
        assert r.status_code == 400, bad
        assert "<b>" not in r.text


# replaying dead letters ----------------------------------------------------------------------------

@pytest.mark.parametrize("csrf", [None, "", "x" * 43])
def test_a_replay_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
        anonymous_client: TestClient, store: Services, letter: int, csrf: str | None) -> None:
    sign_in(anonymous_client, "sam.support")
    for form in ({"seq": str(letter)}, {"source": "RJ7"}):
        r = post(anonymous_client, "/admin/inbox/replay", csrf, **form)
        assert r.status_code == 403
        assert "This form has expired" in r.text
    assert status_of(store, letter) == "dead"
    assert not [q for _, _, q in audited(store, "user:sam.support") if q.startswith("$inbox-replay")]


def test_a_replay_with_the_token_puts_the_dead_letter_back_and_is_audited(
        anonymous_client: TestClient, store: Services, letter: int) -> None:
    sign_in(anonymous_client, "sam.support")
    page = anonymous_client.get(f"/admin/inbox/{letter}")
    assert 'action="/admin/inbox/replay"' in page.text
    r = post(anonymous_client, "/admin/inbox/replay", csrf_of(page), seq=str(letter))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin/inbox?replayed=1"
    after = anonymous_client.get(r.headers["location"])
    assert "1 dead letter was put back to be processed." in text_of(after.text)
    assert "There are no dead letters." in text_of(after.text)
    replayed = inbox_store.message(store.engine, letter)
    assert replayed is not None
    assert (replayed.status, replayed.attempts, replayed.next_attempt) == ("pending", 0, None)
    assert ("operation", 200, f"$inbox-replay?seq={letter}&replayed=1") in audited(store, "user:sam.support")


def test_replaying_a_sources_dead_letters_puts_back_only_that_sources(anonymous_client: TestClient,
                                                                       store: Services, letter: int) -> None:
    second = dead_letter(store, "M2")
    elsewhere = dead_letter(store, "O1", source_id="RJ7-LAB")
    sign_in(anonymous_client, "sam.support")
    csrf = csrf_of(anonymous_client.get("/admin/inbox?source=RJ7"))
    r = post(anonymous_client, "/admin/inbox/replay", csrf, source="RJ7")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin/inbox?source=RJ7&replayed=2"
    assert "2 dead letters were put back to be processed." in anonymous_client.get(r.headers["location"]).text
    assert [status_of(store, s) for s in (letter, second, elsewhere)] == ["pending", "pending", "dead"]
    assert ("operation", 200, "$inbox-replay?source=RJ7&replayed=2") in audited(store, "user:sam.support")
    again = post(anonymous_client, "/admin/inbox/replay", csrf, source="RJ7")
    assert "No dead letters were put back" in anonymous_client.get(again.headers["location"]).text
    for form in ({}, {"seq": str(letter), "source": "RJ7"}, {"seq": "one"}):
        assert post(anonymous_client, "/admin/inbox/replay", csrf, **form).status_code == 400, form


# the source registry -------------------------------------------------------------------------------

def registered(store: Services) -> list[str]:
    return [s.source_id for s in inbox_store.sources(store.engine)]


@pytest.mark.parametrize(("changes", "field", "reason", "status"), [
    ({"ods": "R!7"}, "ods", "An ODS code is 3-10 upper-case letters and digits", 400),
    ({"source_id": "has space"}, "source_id", "A source id is 1-64 letters, digits", 400),
    ({"name": "  "}, "name", "A source needs a name", 400),
    ({"feed-hl7v2": ""}, "feeds", "Feeds are one or more of: hl7v2, fhir, csv", 400),
    ({"expected_minutes": "soon"}, "expected_minutes", "The expected interval is a whole number of minutes", 400),
    ({"expected_minutes": "0"}, "expected_minutes", "The expected interval is a whole number of minutes", 400),
    ({"cert_sha256": "<b>abc</b>"}, "cert_sha256", "A certificate fingerprint is the SHA-256", 400),
    ({"source_id": "RJ7"}, "source_id", "A source with that id is registered already", 409),
])
def test_a_registration_with_a_bad_value_shows_the_reason_and_stores_nothing(
        anonymous_client: TestClient, store: Services, letter: int, changes: dict[str, str], field: str,
        reason: str, status: int) -> None:
    sign_in(anonymous_client, "sam.support")
    csrf = csrf_of(anonymous_client.get("/admin/feeds"))
    form = registration(**changes)
    if form["feed-hl7v2"] == "":
        del form["feed-hl7v2"]
    r = post(anonymous_client, "/admin/feeds", csrf, **form)
    assert r.status_code == status, r.text
    summary = re.search(r'<div class="nhsuk-error-summary"[^>]*role="alert".*?</div>\s*</div>', r.text, re.S)
    assert summary, r.text
    assert "There is a problem" in summary[0]
    assert reason in summary[0]
    assert f'href="#{field}"' in summary[0]
    assert f'id="{field}"' in r.text  # the link leads to the field
    # Nothing typed is lost (and what was typed is escaped); the form is there to try again.
    assert 'value="Epsom and St Helier EPR"' in r.text or field == "name"
    assert "<b>" not in r.text
    assert csrf_of(r) == csrf
    assert registered(store) == ["RJ7"]
    assert inbox_store.sources(store.engine)[0].name == "Trust RJ7"  # the taken id's source is unchanged
    assert [s for _, s, q in audited(store, "user:sam.support") if q.startswith("$feed-register")] == [status]


def test_a_registration_stores_the_source_active(anonymous_client: TestClient, store: Services, staff: None) -> None:
    sign_in(anonymous_client, "sam.support")
    csrf = csrf_of(anonymous_client.get("/admin/feeds"))
    r = post(anonymous_client, "/admin/feeds", csrf, **registration(ods="rvr", **{"feed-fhir": "on"}))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin/feeds?done=registered&source=RVR-EPR"
    assert "Source RVR-EPR was registered." in anonymous_client.get(r.headers["location"]).text
    stored = inbox_store.get_source(store.engine, "RVR-EPR")
    assert stored is not None
    assert (stored.ods, stored.name, stored.feeds, stored.system, stored.expected_minutes, stored.cert_sha256,
            stored.status) == ("RVR", "Epsom and St Helier EPR", ("hl7v2", "fhir"), "EPR", 30, "ab" * 32, "active")
    assert ("operation", 201, "$feed-register?source=RVR-EPR") in audited(store, "user:sam.support")
    without = post(anonymous_client, "/admin/feeds", csrf, source_id="RAX", ods="RAX", name="Kingston lab",
                   **{"feed-csv": "on"})
    assert without.status_code == 303, without.text
    lab = inbox_store.get_source(store.engine, "RAX")
    assert lab is not None
    assert (lab.system, lab.expected_minutes, lab.cert_sha256, lab.feeds) == (None, None, None, ("csv",))


def test_approving_a_source_in_review_makes_it_active(anonymous_client: TestClient, store: Services,
                                                      staff: None) -> None:
    sources.register(store.engine, Source("RVR.EPR", "RVR", "RVR (registered on first contact)", ("hl7v2",),
                                          system="EPR", status="review"))
    sign_in(anonymous_client, "sam.support")
    csrf = csrf_of(anonymous_client.get("/admin/feeds"))
    r = post(anonymous_client, "/admin/feeds/RVR.EPR/status", csrf, status="active")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/admin/feeds?done=approved&source=RVR.EPR"
    listed = anonymous_client.get(r.headers["location"])
    assert "Source RVR.EPR was approved: it may send now." in listed.text
    assert "Disable RVR.EPR" in listed.text
    found = inbox_store.get_source(store.engine, "RVR.EPR")
    assert found is not None
    assert found.status == "active"
    assert ("operation", 200, "$feed-status?source=RVR.EPR&status=active") in audited(store, "user:sam.support")


def test_a_source_is_disabled_and_enabled_again(anonymous_client: TestClient, store: Services, letter: int) -> None:
    sign_in(anonymous_client, "sam.support")
    csrf = csrf_of(anonymous_client.get("/admin/feeds"))
    off = post(anonymous_client, "/admin/feeds/RJ7/status", csrf, status="disabled")
    assert off.headers["location"] == "/admin/feeds?done=disabled&source=RJ7"
    listed = anonymous_client.get(off.headers["location"])
    assert "Source RJ7 was disabled" in listed.text
    assert "Enable RJ7" in listed.text
    assert [s.status for s in inbox_store.sources(store.engine)] == ["disabled"]
    on = post(anonymous_client, "/admin/feeds/RJ7/status", csrf, status="active")
    assert on.headers["location"] == "/admin/feeds?done=enabled&source=RJ7"
    assert [s.status for s in inbox_store.sources(store.engine)] == ["active"]
    for path, form, expected in (("/admin/feeds/RJ7/status", {"status": "review"}, 400),
                                 ("/admin/feeds/NOPE/status", {"status": "disabled"}, 404),
                                 ("/admin/feeds/%3Cb%3E/status", {"status": "disabled"}, 404)):
        r = post(anonymous_client, path, csrf, **form)
        assert r.status_code == expected, path
        assert "<b>" not in r.text
    refused = post(anonymous_client, "/admin/feeds/RJ7/status", None, status="disabled")
    assert refused.status_code == 403
    assert [s.status for s in inbox_store.sources(store.engine)] == ["active"]


def test_a_confirmation_names_only_a_well_formed_source(anonymous_client: TestClient, store: Services,
                                                        staff: None) -> None:
    sign_in(anonymous_client, "sam.support")
    r = anonymous_client.get("/admin/feeds", params={"done": "approved", "source": "<b>x</b>"})
    assert r.status_code == 200
    assert 'role="status"' not in r.text
    assert "<b>" not in r.text
