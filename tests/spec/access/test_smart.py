"""SMART on FHIR v2 for backend systems (issue 5): discovery, client credentials with a secret or a
signed JWT assertion (SMART Backend Services), scope narrowing, revocation, rate limits, and the
`sharedcare clients` commands."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from typer.testing import CliRunner

from sharedcare.access.context import Caller
from sharedcare.access.oauth import register_client
from sharedcare.access.tokens import TokenService
from sharedcare.app import Services
from sharedcare.cli import app as cli
from sharedcare.settings import Settings, get_settings
from sharedcare.storage.oauth import ClientRow, OAuthStore

TOKEN_URL = "http://testserver/auth/token"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, another key
JWKS = json.dumps({"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]})


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def register(store: Services, scope: str = "system/*.rs", **kwargs: Any) -> tuple[ClientRow, str | None]:
    return register_client(OAuthStore(store.engine), "GP feed", scope=scope, **kwargs)


def tokens(store: Services, settings: Settings) -> TokenService:
    return TokenService(OAuthStore(store.engine), settings)


def test_the_smart_configuration_describes_this_server(client: TestClient) -> None:
    r = client.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    config = r.json()
    assert config["issuer"] == "http://testserver/fhir"
    assert config["token_endpoint"] == TOKEN_URL
    assert config["authorization_endpoint"] == "http://testserver/auth/authorize"
    assert config["revocation_endpoint"] == "http://testserver/auth/revoke"
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert set(config["grant_types_supported"]) == {"authorization_code", "client_credentials", "refresh_token"}
    assert config["response_types_supported"] == ["code"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
            "context-standalone-patient", "permission-v2", "permission-patient", "permission-user",
            } <= set(config["capabilities"])
    assert "sso-openid-connect" not in config["capabilities"]  # no id_token is issued


def test_a_system_client_gets_a_token_with_http_basic(client: TestClient, store: Services,
                                                      settings: Settings) -> None:
    registered, secret = register(store, organisation="F84001")
    assert secret is not None
    r = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/Observation.rs"},
                    headers=basic(registered.client_id, secret))
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Observation.rs"
    assert body["expires_in"] == 900
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert tokens(store, settings).authenticate("Bearer " + body["access_token"]) == Caller(
        kind="system", agent_id=f"client:{registered.client_id}", organisation="F84001",
        scopes=("system/Observation.rs",), client_id=registered.client_id, purpose="TREAT")


def test_a_client_registered_for_post_sends_its_secret_in_the_body(client: TestClient, store: Services) -> None:
    registered, secret = register(store, auth_method="client_secret_post")
    assert secret is not None
    form = {"grant_type": "client_credentials", "scope": "system/*.rs", "client_id": registered.client_id}
    assert client.post("/auth/token", data={**form, "client_secret": secret}).status_code == 200
    # ...and only there: the method it registered is the one it must use
    assert client.post("/auth/token", data=form, headers=basic(registered.client_id, secret)).status_code == 401


@pytest.mark.parametrize("wrong", ["secret", "client_id", "no credentials"])
def test_wrong_client_credentials_are_invalid_client(client: TestClient, store: Services, wrong: str) -> None:
    registered, secret = register(store)
    assert secret is not None
    headers = {"secret": basic(registered.client_id, secret + "x"), "client_id": basic("nobody", secret),
               "no credentials": {}}[wrong]
    r = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    assert "access_token" not in r.json()


def test_a_disabled_client_gets_no_token_and_its_tokens_stop(client: TestClient, store: Services,
                                                             settings: Settings) -> None:
    registered, secret = register(store)
    assert secret is not None
    form = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    issued = client.post("/auth/token", data=form, headers=basic(registered.client_id, secret)).json()["access_token"]
    assert OAuthStore(store.engine).disable_client(registered.client_id)
    r = client.post("/auth/token", data=form, headers=basic(registered.client_id, secret))
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    with pytest.raises(Exception, match="not valid"):
        tokens(store, settings).authenticate(f"Bearer {issued}")


@pytest.mark.parametrize(("registered", "requested", "granted"), [
    ("system/*.rs", "system/Observation.rs", "system/Observation.rs"),
    ("system/*.rs", "system/*.cruds", "system/*.rs"),
    ("system/Patient.rs system/Observation.rs", "system/*.read", "system/Patient.rs system/Observation.rs"),
    ("system/*.rs", "system/Patient.r system/Encounter.s offline_access", "system/Patient.r system/Encounter.s"),
    ("system/Observation.rs?category=vital-signs", "system/Observation.cruds",
     "system/Observation.rs?category=vital-signs"),
])
def test_the_scope_granted_is_what_was_asked_narrowed_to_what_is_registered(
        client: TestClient, store: Services, registered: str, requested: str, granted: str) -> None:
    row, secret = register(store, scope=registered)
    assert secret is not None
    r = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": requested},
                    headers=basic(row.client_id, secret))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == granted


@pytest.mark.parametrize("requested", ["system/Patient.rs", "user/*.rs", "", "system/Observation.xyz"])
def test_a_scope_with_nothing_registered_in_it_is_invalid_scope(client: TestClient, store: Services,
                                                                 requested: str) -> None:
    row, secret = register(store, scope="system/Observation.rs")
    assert secret is not None
    r = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": requested},
                    headers=basic(row.client_id, secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope")


def test_an_unknown_grant_type_and_a_json_body_are_refused(client: TestClient, store: Services) -> None:
    row, secret = register(store)
    assert secret is not None
    r = client.post("/auth/token", data={"grant_type": "password", "scope": "system/*.rs"},
                    headers=basic(row.client_id, secret))
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")
    r = client.post("/auth/token", json={"grant_type": "client_credentials"}, headers=basic(row.client_id, secret))
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")


# private_key_jwt (SMART Backend Services) ---------------------------------------------------------

def claims(client_id: str, **changes: Any) -> dict[str, Any]:
    base = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": int(time.time()) + 240,
            "jti": str(uuid.uuid4())}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def signed(payload: dict[str, Any], key: Any = RSA, alg: str = "RS384") -> str:
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, payload, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}."


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    head = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    secret = RSA.as_pem(private=False)
    return f"{head}.{body}.{b64(hmac.new(secret, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


def with_assertion(client: TestClient, assertion: str, **extra: str) -> Any:
    return client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs",
                                            "client_assertion_type": ASSERTION, "client_assertion": assertion,
                                            **extra})


@pytest.fixture
def jwt_client(store: Services) -> ClientRow:
    return register(store, auth_method="private_key_jwt", jwks=JWKS)[0]


@pytest.mark.parametrize(("key", "alg"), [(RSA, "RS384"), (EC, "ES384")])
def test_a_signed_assertion_authenticates_a_backend_service(client: TestClient, jwt_client: ClientRow, key: Any,
                                                            alg: str) -> None:
    r = with_assertion(client, signed(claims(jwt_client.client_id), key, alg))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/*.rs"


@pytest.mark.parametrize("mutation", [
    "expired", "wrong aud", "wrong iss", "wrong sub", "no jti", "exp more than five minutes ahead", "alg none",
    "HS256 with the public key", "another key", "RS256", "wrong assertion type"])
def test_a_bad_assertion_is_invalid_client(client: TestClient, jwt_client: ClientRow, mutation: str) -> None:
    cid = jwt_client.client_id
    assertion = {
        "expired": lambda: signed(claims(cid, exp=int(time.time()) - 10)),
        "wrong aud": lambda: signed(claims(cid, aud="http://testserver/fhir")),
        "wrong iss": lambda: signed(claims(cid, iss="someone-else")),
        "wrong sub": lambda: signed(claims(cid, sub="someone-else")),
        "no jti": lambda: signed(claims(cid, jti=None)),
        "exp more than five minutes ahead": lambda: signed(claims(cid, exp=int(time.time()) + 600)),
        "alg none": lambda: unsigned(claims(cid)),
        "HS256 with the public key": lambda: hs256_with_public_key(claims(cid)),
        "another key": lambda: signed(claims(cid), OTHER),
        "RS256": lambda: signed(claims(cid), RSA, "RS256"),
        "wrong assertion type": lambda: signed(claims(cid)),
    }[mutation]()
    extra = {"client_assertion_type": "urn:example:other"} if mutation == "wrong assertion type" else {}
    r = with_assertion(client, assertion, **extra)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


def test_an_assertion_is_used_once(client: TestClient, jwt_client: ClientRow) -> None:
    assertion = signed(claims(jwt_client.client_id))
    assert with_assertion(client, assertion).status_code == 200
    r = with_assertion(client, assertion)
    assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
    assert "jti" in r.json()["error_description"]


# revocation and rate limits ------------------------------------------------------------------------

def test_a_revoked_access_token_stops_at_once(client: TestClient, store: Services, settings: Settings) -> None:
    row, secret = register(store)
    assert secret is not None
    auth = basic(row.client_id, secret)
    token = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                        headers=auth).json()["access_token"]
    assert tokens(store, settings).authenticate(f"Bearer {token}").client_id == row.client_id
    r = client.post("/auth/revoke", data={"token": token}, headers=auth)
    assert r.status_code == 200
    with pytest.raises(Exception, match="not valid"):
        tokens(store, settings).authenticate(f"Bearer {token}")
    assert client.post("/auth/revoke", data={"token": "never-issued"}, headers=auth).status_code == 200
    assert client.post("/auth/revoke", data={"token": token}, headers=basic(row.client_id, "x")).status_code == 401


def test_another_clients_token_is_not_revoked(client: TestClient, store: Services, settings: Settings) -> None:
    mine, my_secret = register(store)
    theirs, their_secret = register(store)
    assert my_secret is not None
    assert their_secret is not None
    token = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                        headers=basic(mine.client_id, my_secret)).json()["access_token"]
    assert client.post("/auth/revoke", data={"token": token},
                       headers=basic(theirs.client_id, their_secret)).status_code == 200
    assert tokens(store, settings).authenticate(f"Bearer {token}").client_id == mine.client_id


@pytest.fixture
def strict_client(store: Services, settings: Settings) -> Iterator[TestClient]:
    from sharedcare.app import create_app

    with TestClient(create_app(settings.model_copy(update={"auth_failures_per_minute": 3}), store),
                    base_url="http://testserver") as c:
        yield c


def test_failed_token_requests_beyond_the_limit_get_429(strict_client: TestClient, store: Services) -> None:
    row, secret = register(store)
    assert secret is not None
    form = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    for _ in range(3):
        assert strict_client.post("/auth/token", data=form, headers=basic(row.client_id, "guess")).status_code == 401
    r = strict_client.post("/auth/token", data=form, headers=basic(row.client_id, secret))  # even the right secret
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60


# sharedcare clients --------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SHAREDCARE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SHAREDCARE_BASE_URL", "https://care.example.org/fhir")
    monkeypatch.setenv("SHAREDCARE_GC_FREEZE", "false")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_clients_add_prints_the_secret_once_and_list_never_does(env: Path) -> None:
    r = runner.invoke(cli, ["clients", "add", "Practice feed", "--scope", "system/*.cruds", "--organisation",
                            "F84001", "--json"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert set(made) == {"client_id", "client_secret", "token_endpoint"}
    assert made["token_endpoint"] == "https://care.example.org/auth/token"
    listed = runner.invoke(cli, ["clients", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert made["client_secret"] not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert row["client_id"] == made["client_id"]
    assert row["organisation"] == "F84001"
    assert row["disabled"] is False


def test_clients_add_an_app_and_a_jwt_client(env: Path) -> None:
    app = runner.invoke(cli, ["clients", "add", "Patient app", "--kind", "app", "--scope",
                              "patient/*.rs offline_access", "--redirect-uri", "https://app.example.org/cb",
                              "--redirect-uri", "http://localhost:3000/cb", "--json"])
    assert app.exit_code == 0, app.output
    assert "client_secret" not in json.loads(app.stdout)  # a public client has no secret
    jwks = env / "jwks.json"
    jwks.write_text(JWKS)
    backend = runner.invoke(cli, ["clients", "add", "Bulk export", "--scope", "system/*.rs", "--auth-method",
                                  "private_key_jwt", "--jwks", str(jwks), "--json"])
    assert backend.exit_code == 0, backend.output
    assert "client_secret" not in json.loads(backend.stdout)


def test_clients_disable(env: Path) -> None:
    made = json.loads(runner.invoke(cli, ["clients", "add", "Feed", "--scope", "system/*.rs", "--json"]).stdout)
    r = runner.invoke(cli, ["clients", "disable", made["client_id"]])
    assert r.exit_code == 0, r.output
    assert json.loads(runner.invoke(cli, ["clients", "list", "--json"]).stdout)[0]["disabled"] is True
    assert runner.invoke(cli, ["clients", "disable", "no-such-client"]).exit_code == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--scope", "system/*.nope"], "cruds"),
    (["--scope", "openid"], "resource scope"),
    (["--scope", "patient/*.rs"], "system/ scopes"),
    (["--scope", "system/*.rs", "--organisation", "not an ods"], "ODS"),
    (["--scope", "system/*.rs", "--auth-method", "magic"], "auth method"),
    (["--scope", "system/*.rs", "--auth-method", "none"], "must authenticate"),
    (["--scope", "system/*.rs", "--auth-method", "private_key_jwt"], "--jwks"),
    (["--scope", "system/*.rs", "--jwks", "JWKS"], "--jwks"),
    (["--scope", "system/*.rs", "--auth-method", "private_key_jwt", "--jwks", "PRIVATE"], "public keys only"),
    (["--scope", "system/*.rs", "--auth-method", "private_key_jwt", "--jwks", "MISSING"], "cannot be read"),
    (["--scope", "system/*.rs", "--kind", "robot"], "system"),
    (["--scope", "system/*.rs", "--redirect-uri", "https://x.example/cb"], "redirect"),
    (["--kind", "app", "--scope", "user/*.rs"], "redirect URI"),
    (["--kind", "app", "--scope", "user/*.rs", "--redirect-uri", "http://app.example.org/cb"], "https"),
    (["--kind", "app", "--scope", "user/*.rs", "--redirect-uri", "/cb"], "https"),
    (["--kind", "app", "--scope", "system/*.rs", "--redirect-uri", "https://x.example/cb"], "not system/"),
])
def test_clients_add_refuses_bad_input_with_exit_2(env: Path, args: list[str], message: str) -> None:
    (env / "JWKS").write_text(JWKS)
    (env / "PRIVATE").write_text(json.dumps({"keys": [RSA.as_dict(private=True)]}))
    args = [str(env / a) if a in ("JWKS", "PRIVATE", "MISSING") else a for a in args]
    r = runner.invoke(cli, ["clients", "add", "Feed", *args, "--json"])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert json.loads(runner.invoke(cli, ["clients", "list", "--json"]).stdout) == []


def test_a_client_id_that_no_database_text_can_hold_is_an_unknown_client(client: TestClient) -> None:
    """Found by Schemathesis on PostgreSQL: a NUL in client_id was a server error, not an unknown client."""
    assert client.get("/auth/authorize", params={"client_id": "a\x00b", "response_type": "code"}).status_code == 400
    refused = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "a\x00b",
                                               "client_secret": "x", "scope": "system/*.rs"})
    assert refused.status_code in (400, 401)
    assert refused.json()["error"] in ("invalid_client", "invalid_request")
