"""Signing in through external OpenID Connect identity providers (issue 5): staff through a provider
like NHS CIS2 (National RBAC role profiles, role selection, assurance level) and patients through one
like NHS login (P9 only). The provider here is a real one on a loopback port (tests/support/fake_idp.py);
the app under test speaks to it over HTTP exactly as it would to CIS2 or NHS login.

Security cases: AN4 (P5 refused), AN5 (no role refused), CF5 (provider down: fail closed, sessions go on).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from pydantic import SecretStr

from sharedcare.access import accounts
from sharedcare.access.context import Caller, system_caller
from sharedcare.access.oauth import register_client
from sharedcare.access.oidc import acr_enough
from sharedcare.app import Services, create_app
from sharedcare.errors import ConfigurationError
from sharedcare.settings import Settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.oauth import ClientRow, OAuthStore
from tests.spec.access.test_signin import PASSWORD, authorize_url, code_from, csrf_of, exchange, pkce, sign_in, tokens
from tests.support.fake_idp import FakeIdP, Registration, new_key
from tests.support.live_server import free_port

STAFF_ID, PATIENT_ID = "sharedcare-staff", "sharedcare-patient"
STAFF_SECRET = "staff-client-secret-at-the-provider-0123456789"
STAFF_CALLBACK = "http://testserver/auth/oidc/staff/callback"
PATIENT_CALLBACK = "http://testserver/auth/oidc/patient/callback"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def role(person_roleid: str, org: str, job_role: str,
         name: str = "Clinical Practitioner Access Role") -> dict[str, str]:
    """One item of CIS2's nhsid_nrbac_roles claim."""
    return {"person_orgid": "555000000010", "person_roleid": person_roleid, "org_code": org,
            "role_code": f"S8000:G8000:{job_role}", "role_name": f'"Clinical":"Clinical Provision":"{name}"'}


TWO_ROLES = [role("555000000101", "RJ1", "R8000"), role("555000000102", "RRU", "R8003")]
CIS2_AAL3 = {"acr": "AAL3_ANY", "authentication_assurance_level": "3", "id_assurance_level": "3", "amr": ["SCAL"]}
P9 = {"identity_proofing_level": "P9", "vot": "P9.Cp.Cd", "nhs_number": "9000000009", "vtm": "https://example/tm"}


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    server = FakeIdP().start()
    yield server
    server.stop()


@pytest.fixture
def oidc_settings(settings: Settings, idp: FakeIdP, tmp_path: Path) -> Settings:
    """Staff sign in with client_secret_basic (like a CIS2 client secret), patients with
    private_key_jwt (as NHS login asks), both at the fake provider."""
    key = RSAKey.generate_key(2048)
    key_file = tmp_path / "nhs-login-client.pem"
    key_file.write_bytes(key.as_pem(private=True))
    idp.register(STAFF_ID, Registration("client_secret_basic", (STAFF_CALLBACK,), secret=STAFF_SECRET))
    idp.register(PATIENT_ID, Registration("private_key_jwt", (PATIENT_CALLBACK,),
                                          jwks={"keys": [key.as_dict(private=False)]}))
    return settings.model_copy(update={
        "staff_oidc_issuer": idp.issuer, "staff_oidc_client_id": STAFF_ID,
        "staff_oidc_client_secret": SecretStr(STAFF_SECRET),
        "patient_oidc_issuer": idp.issuer, "patient_oidc_client_id": PATIENT_ID,
        "patient_oidc_private_key_file": key_file,
    })


@pytest.fixture
def web(store: Services, oidc_settings: Settings) -> Iterator[TestClient]:
    """A browser on the app (no credentials)."""
    with TestClient(create_app(oidc_settings, store), base_url="http://testserver") as c:
        yield c


@pytest.fixture
def app_client(store: Services) -> ClientRow:
    return register_client(OAuthStore(store.engine), "Care app", kind="app",
                           redirect_uris=("https://app.example.org/callback",),
                           scope="user/*.rs patient/*.rs launch/patient offline_access")[0]


def at_provider(web: TestClient, provider: str, next_url: str | None = None) -> httpx.Response:
    """Start signing in, let the provider approve at once, and bring its answer back to the app."""
    start = web.get(f"/auth/oidc/{provider}/start", params={"next": next_url} if next_url else {},
                    follow_redirects=False)
    assert start.status_code == 302, start.text
    approved = httpx.get(start.headers["location"], follow_redirects=False)  # the browser at the provider
    assert approved.status_code == 302, approved.text
    back = urlsplit(approved.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"http://testserver/auth/oidc/{provider}/callback"
    return web.get(f"{back.path}?{back.query}", follow_redirects=False)


def no_session(web: TestClient, response: httpx.Response) -> bool:
    return ("sharedcare_session" not in response.headers.get("set-cookie", "")
            and web.get("/auth/session", follow_redirects=False).headers.get("location") == "/auth/login")


# staff (NHS CIS2) ----------------------------------------------------------------------------------

def test_staff_choose_one_of_two_role_profiles_and_the_app_reads_a_record_with_the_token(
        web: TestClient, store: Services, oidc_settings: Settings, idp: FakeIdP, app_client: ClientRow) -> None:
    with store.repo.unit(system_caller(organisation="RJ1"), "create", "Patient") as unit:
        written = unit.create({"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9000000009"}]})
    idp.claims = CIS2_AAL3
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES, "uid": idp.sub}
    verifier, challenge = pkce()
    url = authorize_url(app_client.client_id, challenge, "user/*.rs offline_access")
    assert web.get(url, follow_redirects=False).headers["location"].startswith("/auth/login?")

    back = at_provider(web, "staff", url)
    assert back.status_code == 303
    assert back.headers["location"].startswith("/auth/role?")  # two usable profiles: choose one here
    choose = web.get(back.headers["location"])
    assert "RJ1" in choose.text
    assert "RRU" in choose.text
    chosen = web.post("/auth/role", data={"csrf": csrf_of(choose), "profile": "RJ1|R8000", "next": url},
                      follow_redirects=False)
    assert chosen.headers["location"] == url
    session = web.get("/auth/session").text
    assert "R8000" in session
    assert "RJ1" in session
    assert "AAL3_ANY" in session  # the assurance level is kept with the session

    body = exchange(web, app_client.client_id, code_from(web.get(url, follow_redirects=False)), verifier).json()
    caller = tokens(store, oidc_settings).authenticate("Bearer " + body["access_token"])
    # The token carries the sign-in's assurance (CIS2 acr AAL3_ANY) as a level, for step-up checks (AN3).
    assert caller == Caller(kind="user", agent_id=f"cis2:{idp.sub}", role="R8000", organisation="RJ1",
                            scopes=("user/*.rs", "offline_access"), client_id=app_client.client_id, aal=3)
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    read = web.get(f"/fhir/Patient/{written.stored.res_id}", headers=bearer)
    assert read.status_code == 200, read.text
    assert read.json()["id"] == written.stored.res_id


def test_the_role_selected_at_cis2_is_taken_without_asking_again(web: TestClient, idp: FakeIdP) -> None:
    idp.claims = {**CIS2_AAL3, "selected_roleid": "555000000102"}
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES}
    back = at_provider(web, "staff")
    assert back.headers["location"] == "/auth/session"
    assert "(R8003) at RRU" in web.get("/auth/session").text


def test_the_only_usable_role_profile_is_taken(web: TestClient, idp: FakeIdP) -> None:
    idp.userinfo = {"nhsid_nrbac_roles": [role("555000000101", "RJ1", "R8000"),
                                          role("555000000103", "RJ1", "R9999", "Unknown Role")]}
    back = at_provider(web, "staff")
    assert back.headers["location"] == "/auth/session"
    assert "(R8000) at RJ1" in web.get("/auth/session").text


@pytest.mark.parametrize("userinfo", [
    {},  # no nhsid_nrbac_roles at all
    {"nhsid_nrbac_roles": []},
    {"nhsid_nrbac_roles": [role("555000000103", "RJ1", "R9999", "Unknown Role")]},  # a job role we do not know
    {"nhsid_nrbac_roles": [{"person_roleid": "555000000104", "org_code": "RJ1"}]},  # no role code
    {"nhsid_nrbac_roles": "S8000:G8000:R8000"},  # not a list
], ids=["absent", "empty", "unknown-job-role", "no-role-code", "malformed"])
def test_staff_with_no_usable_role_profile_are_refused_with_guidance_and_no_session(
        web: TestClient, idp: FakeIdP, userinfo: dict[str, Any]) -> None:
    idp.userinfo = userinfo
    r = at_provider(web, "staff")
    assert r.status_code == 403
    assert "Registration Authority" in r.text
    assert no_session(web, r)


def test_a_selected_role_that_grants_nothing_here_is_refused(web: TestClient, idp: FakeIdP) -> None:
    idp.claims = {"selected_roleid": "555000000103"}
    idp.userinfo = {"nhsid_nrbac_roles": [*TWO_ROLES, role("555000000103", "RJ1", "R9999", "Unknown Role")]}
    r = at_provider(web, "staff")
    assert r.status_code == 403
    assert "choose another role" in r.text
    assert no_session(web, r)


def test_an_acr_below_the_one_asked_for_is_refused(store: Services, oidc_settings: Settings, idp: FakeIdP) -> None:
    strict = oidc_settings.model_copy(update={"staff_oidc_acr_values": "AAL3_ANY"})
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES[:1]}
    with TestClient(create_app(strict, store), base_url="http://testserver") as web:
        idp.claims = {"acr": "AAL2_OR_AAL3_ANY"}
        r = at_provider(web, "staff")
        assert r.status_code == 403
        assert no_session(web, r)
        assert idp.calls.authorize[-1]["acr_values"] == "AAL3_ANY"
        idp.claims = {"acr": "AAL3_ANY"}
        assert at_provider(web, "staff").status_code == 303


def test_an_app_asking_for_aal3_steps_the_person_up_at_cis2(web: TestClient, store: Services, oidc_settings: Settings,
                                                            idp: FakeIdP, app_client: ClientRow) -> None:
    """AN3 end to end: a session signed in at AAL2 gets no code for an app asking `acr_values=AAL3_ANY`;
    the page offers to sign in again at CIS2, which is asked for AAL3_ANY; the new session's token
    carries AAL3, and break-glass is then allowed."""
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES[:1]}
    idp.claims = {"acr": "AAL2_OR_AAL3_ANY"}  # a password and a one-time code, say
    verifier, challenge = pkce()
    url = authorize_url(app_client.client_id, challenge, "user/*.rs offline_access", acr_values="AAL3_ANY")
    assert at_provider(web, "staff", url).headers["location"] == url
    weak = web.get(url, follow_redirects=False)
    assert weak.status_code == 401
    link = re.search(r'href="(/auth/oidc/staff/start\?[^"]+)"', weak.text)
    assert link, weak.text
    start = web.get(html.unescape(link[1]), follow_redirects=False)
    idp.claims = CIS2_AAL3  # the smartcard
    approved = httpx.get(start.headers["location"], follow_redirects=False)
    assert idp.calls.authorize[-1]["acr_values"] == "AAL3_ANY"  # CIS2 was asked for the stronger method
    back = urlsplit(approved.headers["location"])
    assert web.get(f"{back.path}?{back.query}", follow_redirects=False).headers["location"] == url
    body = exchange(web, app_client.client_id, code_from(web.get(url, follow_redirects=False)), verifier).json()
    assert tokens(store, oidc_settings).authenticate("Bearer " + body["access_token"]).aal == 3


@pytest.mark.parametrize(("acr", "required", "enough"), [
    ("AAL3_ANY", "AAL3_ANY", True), ("AAL3_ANY", "AAL2_OR_ABOVE", True), ("AAL2_OR_ABOVE", "AAL3_ANY", False),
    ("AAL2_OR_AAL3_ANY", "AAL3_ANY", False), (None, "AAL2_OR_ABOVE", False), ("custom-strong", "custom-strong", True),
    ("other", "custom-strong", False),
])
def test_an_acr_is_enough_when_asked_for_or_at_least_as_strong(acr: str | None, required: str, enough: bool) -> None:
    assert acr_enough(acr, frozenset(required.split())) is enough


# patients (NHS login) ------------------------------------------------------------------------------

def test_a_p9_patient_signs_in_and_the_token_names_their_patient_record(
        web: TestClient, store: Services, oidc_settings: Settings, idp: FakeIdP, app_client: ClientRow) -> None:
    with store.repo.unit(system_caller(), "create", "Patient") as unit:
        mine = unit.create({"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9000000009"}]})
    idp.sub = "4a0f1c2e-8d67-4f5b-9f6e-1b2c3d4e5f60"
    idp.claims = P9
    verifier, challenge = pkce()
    url = authorize_url(app_client.client_id, challenge, "patient/*.rs launch/patient")
    back = at_provider(web, "patient", url)
    assert back.headers["location"] == url
    body = exchange(web, app_client.client_id, code_from(web.get(url, follow_redirects=False)), verifier).json()
    assert body["patient"] == mine.stored.res_id
    caller = tokens(store, oidc_settings).authenticate("Bearer " + body["access_token"])
    assert (caller.kind, caller.agent_id, caller.nhs_number, caller.patient) == (
        "patient", f"nhslogin:{idp.sub}", "9000000009", mine.stored.res_id)
    asked = idp.calls.authorize[-1]
    assert orjson.loads(asked["vtr"]) == ["P9.Cp.Cd", "P9.Cp.Ck", "P9.Cm"]
    sent = idp.calls.token[-1]
    assert "client_secret" not in sent
    assert sent["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_claims_from_userinfo_count_too(web: TestClient, idp: FakeIdP) -> None:
    idp.userinfo = P9  # NHS login gives them in userinfo as well as in the ID token
    assert at_provider(web, "patient").headers["location"] == "/auth/session"


@pytest.mark.parametrize("claims", [
    {**P9, "identity_proofing_level": "P5", "vot": "P5.Cp.Cd"},
    {**P9, "identity_proofing_level": "P0", "vot": "P0.Cp.Cd"},
    {**P9, "vot": "P5.Cp.Cd"},  # the vector of trust disagrees with the level
    {"nhs_number": "9000000009"},  # no proofing level at all
], ids=["P5", "P0", "P5-vot", "no-level"])
def test_a_patient_below_p9_is_refused_and_gets_no_session(web: TestClient, idp: FakeIdP,
                                                           claims: dict[str, Any]) -> None:
    idp.claims = claims
    r = at_provider(web, "patient")
    assert r.status_code == 403
    assert "P9" in r.text
    assert no_session(web, r)


@pytest.mark.parametrize("nhs_number", [None, "9000000008", "900 000 0009"])
def test_a_p9_patient_without_a_valid_nhs_number_is_refused(web: TestClient, idp: FakeIdP,
                                                             nhs_number: str | None) -> None:
    idp.claims = {k: v for k, v in {**P9, "nhs_number": nhs_number}.items() if v is not None}
    r = at_provider(web, "patient")
    assert r.status_code == 403
    assert no_session(web, r)


# the ID token ----------------------------------------------------------------------------------------

def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _set(**changes: Any) -> Any:
    def hook(header: dict[str, Any], claims: dict[str, Any]) -> None:
        claims.update(changes)
    return hook


def _alg_none(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _hs256_with_the_client_secret(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "HS256", "kid": header["kid"]}, claims, OctKey.import_key(STAFF_SECRET),
                      algorithms=["HS256"])


def _another_key_same_kid(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode(header, claims, new_key(header["kid"]), algorithms=["RS256"])


def _unknown_kid(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode({**header, "kid": "not-published"}, claims, new_key("not-published"), algorithms=["RS256"])


def _rs512(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode({**header, "alg": "RS512"}, claims, _rs512.key, algorithms=["RS512"])  # type: ignore[attr-defined]


def _drop(name: str) -> Any:
    def hook(header: dict[str, Any], claims: dict[str, Any]) -> None:
        claims.pop(name)
    return hook


def _tampered(header: dict[str, Any], claims: dict[str, Any]) -> str:
    token = jwt.encode(header, claims, _tampered.key, algorithms=["RS256"])  # type: ignore[attr-defined]
    head, _, rest = token.partition(".")
    _, _, signature = rest.partition(".")
    return f"{head}.{_b64({**claims, 'sub': '555000000999'})}.{signature}"


@pytest.mark.parametrize("hook", [
    _set(iss="https://elsewhere.example"),
    _set(aud="another-client"),
    _set(aud=[STAFF_ID, "another-client"]),  # several audiences and no azp
    _set(azp="another-client"),
    _set(exp=1_000_000_000),
    _set(iat=4_000_000_000),
    _set(nonce="not-the-nonce"),
    _drop("nonce"),
    _drop("exp"),
    _alg_none,
    _hs256_with_the_client_secret,
    _another_key_same_kid,
    _unknown_kid,
    _rs512,  # an algorithm the provider does not advertise
    _tampered,
], ids=["wrong-iss", "wrong-aud", "extra-aud", "wrong-azp", "expired", "future-iat", "bad-nonce", "no-nonce",
        "no-exp", "alg-none", "hs256", "other-key", "unknown-kid", "alg-not-advertised", "tampered"])
def test_an_id_token_that_fails_a_check_signs_nobody_in(web: TestClient, idp: FakeIdP, hook: Any) -> None:
    _rs512.key = _tampered.key = idp.key  # type: ignore[attr-defined]
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES}
    idp.id_token_hook = hook
    r = at_provider(web, "staff")
    assert r.status_code == 400, r.text
    assert "could not be completed" in r.text
    assert no_session(web, r)


def test_a_rotated_signing_key_is_fetched_again(web: TestClient, idp: FakeIdP) -> None:
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES[:1]}
    assert at_provider(web, "staff").status_code == 303
    fetched = idp.calls.jwks
    idp.rotate()
    assert at_provider(web, "staff").status_code == 303
    assert idp.calls.jwks == fetched + 1  # the new kid was not in the cached set
    assert at_provider(web, "staff").status_code == 303
    assert idp.calls.jwks == fetched + 1  # and now it is


def test_userinfo_about_someone_else_is_refused(web: TestClient, idp: FakeIdP) -> None:
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES, "sub": "555000000999"}
    r = at_provider(web, "staff")
    assert r.status_code == 400
    assert no_session(web, r)


# state, PKCE and the redirect after signing in --------------------------------------------------------

def test_the_authorization_request_carries_state_nonce_and_an_s256_challenge(web: TestClient, idp: FakeIdP) -> None:
    start = web.get("/auth/oidc/staff/start", follow_redirects=False)
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    assert asked["code_challenge_method"] == ["S256"]
    assert len(asked["code_challenge"][0]) == 43
    assert len(asked["state"][0]) >= 43
    assert len(asked["nonce"][0]) >= 43
    assert asked["scope"] == ["openid profile nationalrbacaccess"]
    assert asked["redirect_uri"] == [STAFF_CALLBACK]
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("sharedcare_oidc=")
    assert "HttpOnly" in cookie


def test_a_wrong_state_is_refused_and_the_code_is_never_spent(web: TestClient, idp: FakeIdP) -> None:
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES}
    start = web.get("/auth/oidc/staff/start", follow_redirects=False)
    approved = httpx.get(start.headers["location"], follow_redirects=False)
    query = parse_qs(urlsplit(approved.headers["location"]).query)
    r = web.get("/auth/oidc/staff/callback", params={"code": query["code"][0], "state": "forged-state"},
                follow_redirects=False)
    assert r.status_code == 400
    assert no_session(web, r)
    assert idp.calls.token == []


def test_an_answer_without_the_browsers_cookie_is_refused(store: Services, oidc_settings: Settings,
                                                          web: TestClient, idp: FakeIdP) -> None:
    """Login CSRF: an attacker's own code and state, delivered to someone else's browser."""
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES}
    start = web.get("/auth/oidc/staff/start", follow_redirects=False)
    approved = urlsplit(httpx.get(start.headers["location"], follow_redirects=False).headers["location"])
    with TestClient(create_app(oidc_settings, store), base_url="http://testserver") as victim:
        r = victim.get(f"{approved.path}?{approved.query}", follow_redirects=False)
        assert r.status_code == 400
        assert no_session(victim, r)


@pytest.mark.parametrize("next_url", [
    "https://evil.example/", "//evil.example/path", "/\\evil.example", "javascript:alert(1)", "evil.example",
    "/ok\r\nLocation: https://evil.example",
])
def test_next_may_only_be_a_path_on_this_site(web: TestClient, idp: FakeIdP, next_url: str) -> None:
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES[:1]}
    assert at_provider(web, "staff", next_url).headers["location"] == "/auth/session"


def test_next_on_this_site_is_followed(web: TestClient, idp: FakeIdP) -> None:
    idp.claims = P9
    assert at_provider(web, "patient", "/auth/session?from=app").headers["location"] == "/auth/session?from=app"


def test_an_error_from_the_provider_is_shown_and_signs_nobody_in(web: TestClient, idp: FakeIdP) -> None:
    start = web.get("/auth/oidc/staff/start", follow_redirects=False)
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    r = web.get("/auth/oidc/staff/callback", params={"error": "access_denied", "state": state},
                follow_redirects=False)
    assert r.status_code == 400
    assert no_session(web, r)


# the provider is down (CF5) ----------------------------------------------------------------------------

@pytest.fixture
def staff_account(store: Services) -> None:
    accounts.add(AccountStore(store.engine), "jo.bloggs", "staff", PASSWORD, roles=(("F84001", "R8009"),))


def test_an_unreachable_provider_fails_closed_and_sessions_go_on(store: Services, oidc_settings: Settings,
                                                                staff_account: None) -> None:
    dead = oidc_settings.model_copy(update={"staff_oidc_issuer": f"http://127.0.0.1:{free_port()}",
                                            "oidc_timeout_seconds": 2.0})
    with TestClient(create_app(dead, store), base_url="http://testserver") as web:
        assert sign_in(web, "jo.bloggs").status_code == 303
        r = web.get("/auth/oidc/staff/start", follow_redirects=False)
        assert r.status_code == 503
        assert "not working at the moment" in r.text
        assert "location" not in r.headers
        assert "sharedcare_session" not in r.headers.get("set-cookie", "")
        assert "jo.bloggs" in web.get("/auth/session").text  # the session made before still works


@pytest.mark.parametrize("endpoint", ["token", "userinfo", "jwks"])
def test_a_provider_failing_mid_sign_in_fails_closed_and_the_earlier_session_goes_on(
        web: TestClient, idp: FakeIdP, endpoint: str) -> None:
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES[:1]}
    assert at_provider(web, "staff").status_code == 303
    assert "(R8000) at RJ1" in web.get("/auth/session").text
    idp.fail = {endpoint}
    idp.rotate()  # so the key set is fetched again
    r = at_provider(web, "staff")
    assert r.status_code == 503
    assert "not working at the moment" in r.text
    assert "sharedcare_session" not in r.headers.get("set-cookie", "")
    assert "(R8000) at RJ1" in web.get("/auth/session").text


def test_a_provider_that_says_it_is_unavailable_fails_closed(web: TestClient, idp: FakeIdP) -> None:
    start = web.get("/auth/oidc/staff/start", follow_redirects=False)
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    r = web.get("/auth/oidc/staff/callback", params={"error": "temporarily_unavailable", "state": state})
    assert r.status_code == 503
    assert no_session(web, r)


# configuration and the sign-in page -----------------------------------------------------------------

def test_the_sign_in_page_offers_the_configured_providers(web: TestClient, anonymous_client: TestClient) -> None:
    page = web.get("/auth/login", params={"next": "/auth/authorize?x=1"}).text
    assert "Sign in with NHS CIS2" in page
    assert "Sign in with NHS login" in page
    assert "/auth/oidc/staff/start?next=%2Fauth%2Fauthorize%3Fx%3D1" in page
    plain = anonymous_client.get("/auth/login").text
    assert "NHS CIS2" not in plain
    assert anonymous_client.get("/auth/oidc/staff/start", follow_redirects=False).status_code == 404


@pytest.mark.parametrize("changes", [
    {"staff_oidc_client_secret": None},  # no way to authenticate
    {"staff_oidc_issuer": "http://idp.example.org"},  # not https
    {"patient_oidc_private_key_file": Path("/nonexistent/key.pem")},
    {"staff_oidc_scopes": "profile nationalrbacaccess"},  # no openid
])
def test_a_provider_set_up_wrongly_stops_start_up(store: Services, oidc_settings: Settings,
                                                  changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        create_app(oidc_settings.model_copy(update=changes), store)


def test_a_staff_provider_may_use_client_secret_post(store: Services, oidc_settings: Settings,
                                                     idp: FakeIdP) -> None:
    idp.register(STAFF_ID, Registration("client_secret_post", (STAFF_CALLBACK,), secret=STAFF_SECRET))
    idp.userinfo = {"nhsid_nrbac_roles": TWO_ROLES[:1]}
    post = oidc_settings.model_copy(update={"staff_oidc_auth_method": "client_secret_post"})
    with TestClient(create_app(post, store), base_url="http://testserver") as web:
        assert at_provider(web, "staff").status_code == 303
    assert idp.calls.token[-1]["client_secret"] == STAFF_SECRET
