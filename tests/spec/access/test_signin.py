"""SMART on FHIR v2 for people (issue 5): an app sends the person to sign in with their local account
(staff choose a role profile), gets a one-use code bound to its PKCE challenge and redirect URI,
and swaps it for tokens; refresh tokens rotate, and a reused one revokes its family. Every form
carries a CSRF token, and every page forbids framing, sniffing, referrers and caching."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from sharedcare.access import accounts
from sharedcare.access.context import Caller, system_caller
from sharedcare.access.oauth import register_client
from sharedcare.access.tokens import TokenService
from sharedcare.app import Services, create_app
from sharedcare.errors import Unauthorized
from sharedcare.settings import Settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.oauth import ClientRow, OAuthStore

REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture
def app_client(store: Services) -> ClientRow:
    """A public app (no secret) that may ask for staff and patient scopes."""
    return register_client(OAuthStore(store.engine), "Care app", kind="app", redirect_uris=(REDIRECT,),
                           scope="user/*.rs patient/*.rs launch/patient offline_access")[0]


@pytest.fixture
def people(store: Services) -> None:
    account_store = AccountStore(store.engine)
    accounts.add(account_store, "amara.okafor", "staff", PASSWORD, roles=(("RRU", "R8003"), ("RJ1", "R8000")))
    accounts.add(account_store, "jo.bloggs", "staff", PASSWORD, roles=(("F84001", "R8009"),))
    accounts.add(account_store, "pat.9000000009", "patient", PASSWORD, nhs_number="9000000009")


def authorize_url(app_id: str, challenge: str, scope: str = "user/*.rs offline_access", **changes: str) -> str:
    params = {"response_type": "code", "client_id": app_id, "redirect_uri": REDIRECT, "scope": scope,
              "state": "st-42", "code_challenge": challenge, "code_challenge_method": "S256",
              "aud": "http://testserver/fhir", **changes}
    return str(httpx.URL("/auth/authorize", params={k: v for k, v in params.items() if v != "-"}))


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def sign_in(client: TestClient, username: str, next_url: str | None = None, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/auth/login", params={"next": next_url} if next_url else {})
    data = {"username": username, "password": password, "csrf": csrf_of(form)}
    return client.post("/auth/login", data={**data, "next": next_url} if next_url else data, follow_redirects=False)


def code_from(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-42"]
    return query["code"][0]


def exchange(client: TestClient, client_id: str, code: str, verifier: str, **changes: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client_id,
            "code_verifier": verifier, **changes}
    return client.post("/auth/token", data=form)


def staff_code(client: TestClient, app_client: ClientRow, challenge: str, username: str = "jo.bloggs",
               scope: str = "user/*.rs offline_access") -> str:
    url = authorize_url(app_client.client_id, challenge, scope)
    assert sign_in(client, username, url).headers["location"] == url
    return code_from(client.get(url, follow_redirects=False))


def tokens(store: Services, settings: Settings) -> TokenService:
    return TokenService(OAuthStore(store.engine), settings)


# the full flow ----------------------------------------------------------------------------------------

def test_staff_with_two_role_profiles_choose_one_and_the_token_carries_it(
        client: TestClient, store: Services, settings: Settings, app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    url = authorize_url(app_client.client_id, challenge, "user/*.rs patient/*.rs offline_access")
    first = client.get(url, follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"].startswith("/auth/login?")
    signed_in = sign_in(client, "amara.okafor", url)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"].startswith("/auth/role?")  # two profiles: choose one first
    choose = client.get(signed_in.headers["location"])
    assert "RRU" in choose.text
    assert "RJ1" in choose.text
    chosen = client.post("/auth/role", data={"csrf": csrf_of(choose), "profile": "RJ1|R8000", "next": url},
                         follow_redirects=False)
    assert chosen.headers["location"] == url
    code = code_from(client.get(url, follow_redirects=False))
    r = exchange(client, app_client.client_id, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "user/*.rs offline_access"  # staff get no patient/ scopes
    assert "patient" not in body
    assert body["refresh_token"]
    assert r.headers["cache-control"] == "no-store"
    # A local password sign-in counts as AAL1 (settings.local_account_aal), carried into the token.
    assert tokens(store, settings).authenticate("Bearer " + body["access_token"]) == Caller(
        kind="user", agent_id="user:amara.okafor", role="R8000", organisation="RJ1",
        scopes=("user/*.rs", "offline_access"), client_id=app_client.client_id, aal=1)


def test_staff_with_one_role_profile_take_it(client: TestClient, store: Services, settings: Settings,
                                             app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    body = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    caller = tokens(store, settings).authenticate("Bearer " + body["access_token"])
    assert (caller.organisation, caller.role) == ("F84001", "R8009")


def test_a_patient_gets_patient_scopes_and_their_patient_id(client: TestClient, store: Services,
                                                            settings: Settings, app_client: ClientRow,
                                                            people: None) -> None:
    with store.repo.unit(system_caller(), "create", "Patient") as unit:
        mine = unit.create({"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9000000009"}]})
        unit.create({"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9000000017"}]})
    verifier, challenge = pkce()
    url = authorize_url(app_client.client_id, challenge, "patient/*.rs user/*.rs launch/patient")
    assert sign_in(client, "pat.9000000009", url).headers["location"] == url
    body = exchange(client, app_client.client_id, code_from(client.get(url, follow_redirects=False)),
                    verifier).json()
    assert body["patient"] == mine.stored.res_id
    assert body["scope"] == "patient/*.rs launch/patient"
    assert "refresh_token" not in body  # neither offline_access nor online_access was asked for
    caller = tokens(store, settings).authenticate("Bearer " + body["access_token"])
    assert (caller.kind, caller.agent_id, caller.nhs_number, caller.patient) == (
        "patient", "patient:pat.9000000009", "9000000009", mine.stored.res_id)


def test_a_wrong_password_shows_the_form_again(client: TestClient, people: None) -> None:
    r = sign_in(client, "jo.bloggs", password="not the password")
    assert r.status_code == 401
    assert "not right" in r.text
    assert "Set-Cookie" not in r.headers or "sharedcare_session" not in r.headers["set-cookie"]


# PKCE, codes and redirect URIs -------------------------------------------------------------------------

def test_a_wrong_verifier_gets_no_token(client: TestClient, app_client: ClientRow, people: None) -> None:
    _, challenge = pkce()
    r = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), pkce()[0])
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(("change", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": "-"}, "invalid_request"),
    ({"code_challenge": "-"}, "invalid_request"),
    ({"aud": "https://elsewhere.example/fhir"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "system/*.rs"}, "invalid_scope"),
    ({"scope": "user/*.nope"}, "invalid_scope"),
])
def test_a_bad_authorization_request_is_sent_back_to_the_app(client: TestClient, app_client: ClientRow,
                                                             change: dict[str, str], error: str) -> None:
    _, challenge = pkce()
    r = client.get(authorize_url(app_client.client_id, challenge, **change), follow_redirects=False)
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert location.netloc == "app.example.org"
    assert parse_qs(location.query)["error"] == [error]
    assert parse_qs(location.query)["state"] == ["st-42"]
    assert "code" not in parse_qs(location.query)


@pytest.mark.parametrize("change", [
    {"redirect_uri": "https://evil.example/callback"},
    {"redirect_uri": REDIRECT + "/more"},
    {"redirect_uri": "-"},
    {"client_id": "no-such-app"},
])
def test_an_unregistered_redirect_uri_or_client_shows_an_error_page_and_never_redirects(
        client: TestClient, app_client: ClientRow, change: dict[str, str]) -> None:
    _, challenge = pkce()
    r = client.get(authorize_url(app_client.client_id, challenge, **change), follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")


def test_a_staff_account_asking_only_for_patient_scopes_gets_invalid_scope(
        client: TestClient, app_client: ClientRow, people: None) -> None:
    _, challenge = pkce()
    url = authorize_url(app_client.client_id, challenge, "patient/*.rs")
    sign_in(client, "jo.bloggs", url)
    r = client.get(url, follow_redirects=False)
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_scope"]


def test_a_code_is_bound_to_its_redirect_uri_and_client(client: TestClient, store: Services,
                                                        app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    code = staff_code(client, app_client, challenge)
    r = exchange(client, app_client.client_id, code, verifier, redirect_uri="https://app.example.org/other")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")
    other = register_client(OAuthStore(store.engine), "Other app", kind="app", redirect_uris=(REDIRECT,),
                            scope="user/*.rs")[0]
    code = staff_code(client, app_client, challenge)
    r = exchange(client, other.client_id, code, verifier)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


def test_a_reused_code_is_refused_and_revokes_the_tokens_it_gave(client: TestClient, store: Services,
                                                                 settings: Settings, app_client: ClientRow,
                                                                 people: None) -> None:
    verifier, challenge = pkce()
    code = staff_code(client, app_client, challenge)
    first = exchange(client, app_client.client_id, code, verifier).json()
    again = exchange(client, app_client.client_id, code, verifier)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    with pytest.raises(Unauthorized):
        tokens(store, settings).authenticate("Bearer " + first["access_token"])
    r = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                         "client_id": app_client.client_id})
    assert r.json()["error"] == "invalid_grant"


# refresh tokens ---------------------------------------------------------------------------------------

def refresh(client: TestClient, client_id: str, token: str, **extra: str) -> httpx.Response:
    return client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                            "client_id": client_id, **extra})


def test_a_refresh_token_rotates(client: TestClient, store: Services, settings: Settings, app_client: ClientRow,
                                 people: None) -> None:
    verifier, challenge = pkce()
    first = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    second = refresh(client, app_client.client_id, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["scope"] == first["scope"]
    caller = tokens(store, settings).authenticate("Bearer " + body["access_token"])
    assert (caller.agent_id, caller.role) == ("user:jo.bloggs", "R8009")
    assert refresh(client, app_client.client_id, body["refresh_token"]).status_code == 200


def test_a_reused_refresh_token_revokes_its_whole_family(client: TestClient, store: Services, settings: Settings,
                                                         app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    first = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    second = refresh(client, app_client.client_id, first["refresh_token"]).json()
    stolen = refresh(client, app_client.client_id, first["refresh_token"])
    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    for access in (first["access_token"], second["access_token"]):
        with pytest.raises(Unauthorized):
            tokens(store, settings).authenticate(f"Bearer {access}")
    assert refresh(client, app_client.client_id, second["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_refresh_may_narrow_but_not_widen(client: TestClient, app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    first = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    narrowed = refresh(client, app_client.client_id, first["refresh_token"], scope="user/Patient.rs offline_access")
    assert narrowed.json()["scope"] == "user/Patient.rs offline_access"
    widened = refresh(client, app_client.client_id, narrowed.json()["refresh_token"], scope="user/*.cruds")
    assert widened.json()["scope"] == "user/Patient.rs"  # only what the refresh token held


def test_revoking_a_refresh_token_revokes_its_family(client: TestClient, store: Services, settings: Settings,
                                                     app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    first = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    r = client.post("/auth/revoke", data={"token": first["refresh_token"], "client_id": app_client.client_id})
    assert r.status_code == 200
    with pytest.raises(Unauthorized):
        tokens(store, settings).authenticate("Bearer " + first["access_token"])
    assert refresh(client, app_client.client_id, first["refresh_token"]).json()["error"] == "invalid_grant"


# CSRF, sessions and page headers -------------------------------------------------------------------------

@pytest.mark.parametrize("csrf", [None, "", "forged-token-forged-token-forged"])
def test_sign_in_without_the_forms_csrf_token_is_forbidden(client: TestClient, people: None,
                                                           csrf: str | None) -> None:
    client.get("/auth/login")
    data = {"username": "jo.bloggs", "password": PASSWORD}
    r = client.post("/auth/login", data=data if csrf is None else {**data, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403
    assert "sharedcare_session" not in r.headers.get("set-cookie", "")


def test_a_role_choice_and_a_sign_out_need_the_sessions_csrf_token(client: TestClient, people: None) -> None:
    sign_in(client, "amara.okafor")
    page = client.get("/auth/role")
    assert client.post("/auth/role", data={"profile": "RJ1|R8000"}).status_code == 403
    assert client.post("/auth/role", data={"profile": "RJ1|R8000", "csrf": "x" * 43}).status_code == 403
    assert client.post("/auth/logout", data={"csrf": "x" * 43}).status_code == 403
    assert "amara.okafor" in client.get("/auth/session").text  # still signed in
    assert client.post("/auth/logout", data={"csrf": csrf_of(page)}).status_code == 200
    assert client.get("/auth/session", follow_redirects=False).headers["location"] == "/auth/login"


def test_a_role_not_held_cannot_be_chosen(client: TestClient, people: None) -> None:
    sign_in(client, "amara.okafor")
    page = client.get("/auth/role")
    r = client.post("/auth/role", data={"profile": "F84001|R8000", "csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 400
    assert "working as" not in client.get("/auth/session").text


def test_the_session_cookie_is_http_only_and_lax_and_only_its_hash_is_stored(client: TestClient, store: Services,
                                                                            people: None) -> None:
    r = sign_in(client, "jo.bloggs")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("sharedcare_session=")  # __Host- and Secure come with an https base URL
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    value = client.cookies["sharedcare_session"]
    with store.engine.connect() as conn:
        from sqlalchemy import select

        from sharedcare.storage.tables import web_session
        assert conn.execute(select(web_session.c.session_hash)).scalars().all() == [
            hashlib.sha256(value.encode()).hexdigest()]


@pytest.mark.parametrize("path", ["/auth/login", "/auth/session", "/auth/role"])
def test_every_page_forbids_framing_sniffing_referrers_and_caching(client: TestClient, people: None,
                                                                   path: str) -> None:
    sign_in(client, "amara.okafor")
    r = client.get(path)
    assert r.status_code == 200
    assert {k: r.headers.get(k) for k in PAGE_HEADERS} == PAGE_HEADERS
    assert "<script" not in r.text


def test_pages_escape_what_they_show(client: TestClient) -> None:
    r = client.get("/auth/login", params={"next": '/auth/authorize?x="><script>alert(1)</script>'})
    assert "<script>" not in r.text
    assert "&lt;script&gt;" in r.text or "&#34;&gt;&lt;script" in r.text


@pytest.fixture
def strict_client(store: Services, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"auth_failures_per_minute": 3}), store),
                    base_url="http://testserver") as c:
        yield c


def test_failed_sign_ins_beyond_the_limit_get_429(strict_client: TestClient, people: Any) -> None:
    for _ in range(3):
        assert sign_in(strict_client, "jo.bloggs", password="wrong password!").status_code == 401
    r = sign_in(strict_client, "jo.bloggs")  # even the right password, for now
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_on_https_the_cookies_are_host_only_and_secure(store: Services, settings: Settings, people: None) -> None:
    https = settings.model_copy(update={"base_url": "https://testserver/fhir"})
    with TestClient(create_app(https, store), base_url="https://testserver") as secure_client:
        r = sign_in(secure_client, "jo.bloggs")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-sharedcare_session=")
    assert "Secure" in cookie
    assert "Path=/" in cookie
    assert "Domain" not in cookie


# account changes reach what was already issued --------------------------------------------------------

def test_disabling_an_account_ends_its_sessions_and_tokens_at_once(
        client: TestClient, store: Services, settings: Settings, app_client: ClientRow, people: None) -> None:
    verifier, challenge = pkce()
    first = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    assert client.get("/auth/session").status_code == 200  # signed in
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert client.get("/fhir/Patient", headers=bearer).status_code == 200
    revoked = accounts.disable(AccountStore(store.engine), OAuthStore(store.engine), "jo.bloggs")
    assert revoked == 2  # the access token and the refresh token
    assert client.get("/fhir/Patient", headers=bearer).status_code == 401
    assert refresh(client, app_client.client_id, first["refresh_token"]).json()["error"] == "invalid_grant"
    assert client.get("/auth/session", follow_redirects=False).status_code != 200  # the session is over
    assert sign_in(client, "jo.bloggs").status_code == 401  # and no new one
    accounts.enable(AccountStore(store.engine), "jo.bloggs")
    assert sign_in(client, "jo.bloggs").status_code == 303
    # Enabling brings nothing back: the old tokens stay revoked.
    assert client.get("/fhir/Patient", headers=bearer).status_code == 401


def test_removing_a_role_profile_ends_the_tokens_acting_in_it_and_keeps_the_others(
        client: TestClient, store: Services, settings: Settings, app_client: ClientRow, people: None) -> None:
    def token_in(profile: str) -> dict[str, Any]:
        verifier, challenge = pkce()
        url = authorize_url(app_client.client_id, challenge)
        with TestClient(create_app(settings, store), base_url="http://testserver") as web:
            sign_in(web, "amara.okafor", url)
            choose = web.get(f"/auth/role?{urlencode({'next': url})}")
            web.post("/auth/role", data={"csrf": csrf_of(choose), "profile": profile, "next": url})
            body: dict[str, Any] = exchange(web, app_client.client_id, code_from(web.get(url, follow_redirects=False)),
                                            verifier).json()
            return body

    trust, community = token_in("RJ1|R8000"), token_in("RRU|R8003")
    revoked = accounts.set_roles(AccountStore(store.engine), OAuthStore(store.engine), "amara.okafor",
                                 (("RRU", "R8003"),))
    assert revoked == 2  # the RJ1 profile's access and refresh tokens
    with pytest.raises(Unauthorized):
        tokens(store, settings).authenticate(f"Bearer {trust['access_token']}")
    assert refresh(client, app_client.client_id, trust["refresh_token"]).json()["error"] == "invalid_grant"
    kept = tokens(store, settings).authenticate(f"Bearer {community['access_token']}")
    assert (kept.organisation, kept.role) == ("RRU", "R8003")
    assert refresh(client, app_client.client_id, community["refresh_token"]).status_code == 200


def test_a_refresh_is_refused_once_the_account_no_longer_holds_the_role(
        client: TestClient, store: Services, settings: Settings, app_client: ClientRow, people: None) -> None:
    """Even a refresh token the revocation missed (written by another process at that moment) is
    checked against the account when it is used, and its family is revoked."""
    verifier, challenge = pkce()
    first = exchange(client, app_client.client_id, staff_code(client, app_client, challenge), verifier).json()
    AccountStore(store.engine).set_roles("jo.bloggs", (("F84001", "R8010"),))  # behind the back of the tokens
    refused = refresh(client, app_client.client_id, first["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    with pytest.raises(Unauthorized):  # the family went with it
        tokens(store, settings).authenticate(f"Bearer {first['access_token']}")


@pytest.mark.parametrize(("username", "roles", "message"), [
    ("nobody.here", (("RJ1", "R8000"),), "no account"),
    ("pat.9000000009", (("RJ1", "R8000"),), "only staff"),
    ("amara.okafor", (), "at least one role"),
    ("amara.okafor", (("RJ1", "R9999"),), "not a known SDS job role"),
])
def test_bad_role_changes_are_refused_and_change_nothing(store: Services, people: None, username: str,
                                                         roles: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(accounts.AccountError, match=message):
        accounts.set_roles(AccountStore(store.engine), OAuthStore(store.engine), username, roles)
    kept = AccountStore(store.engine).get("amara.okafor")
    assert kept is not None
    assert kept.roles == (("RJ1", "R8000"), ("RRU", "R8003"))


@pytest.mark.parametrize(("wanted", "kept"), [
    ("/auth/authorize?client_id=app&state=1", True),
    ("/mpi/review", True),
    ("/mpi/review/5f0c1a2b-0000-4000-8000-000000000001", True),
    ("/mpi/review?after=5f0c1a2b-0000-4000-8000-000000000001", True),
    ("https://evil.example/mpi/review", False),
    ("//evil.example/mpi/review", False),
    ("/mpi/review/../../auth/logout", False),
    ("/mpi/reviewer", False),
    ("/fhir/Patient", False),
    ("", False),
])
def test_sign_in_returns_only_to_this_servers_own_pages(wanted: str, kept: bool) -> None:
    from sharedcare.access.signin import safe_next

    assert (safe_next(wanted) == wanted) is kept
    assert safe_next(wanted) in (wanted, None)
