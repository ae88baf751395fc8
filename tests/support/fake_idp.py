"""A real OpenID Connect provider on a free loopback port, for the external sign-in tests: discovery,
JWKS, an authorization endpoint that approves at once with the claims the test chose, a token endpoint
that checks the code, the redirect URI, PKCE (S256) and client authentication (client_secret_basic,
client_secret_post or private_key_jwt), and userinfo. ID tokens are RS256, signed with a joserfc RSA key.

A test steers it through attributes: `claims` (added to the next ID tokens), `userinfo` (added to
userinfo answers), `id_token_hook` (sees the header and claims before signing; may change them, or
return a whole token of its own), `fail` (endpoint names that answer 503) and `rotate()` (a new
signing key with a new key id).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.live_server import free_port

IdTokenHook = Callable[[dict[str, Any], dict[str, Any]], str | None]


@dataclass
class Registration:
    """A client registered at the provider."""

    auth_method: str  # client_secret_basic, client_secret_post, private_key_jwt
    redirect_uris: tuple[str, ...]
    secret: str | None = None
    jwks: dict[str, Any] | None = None


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    sub: str


@dataclass
class Calls:
    authorize: list[dict[str, str]] = field(default_factory=list)
    token: list[dict[str, str]] = field(default_factory=list)
    jwks: int = 0
    discovery: int = 0


def new_key(kid: str | None = None) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid or uuid.uuid4().hex[:12]})


class FakeIdP:
    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.clients: dict[str, Registration] = {}
        self.key = new_key()
        self.published: list[RSAKey] = [self.key]
        self.sub = "555000000001"
        self.claims: dict[str, Any] = {}
        self.userinfo: dict[str, Any] = {}
        self.id_token_hook: IdTokenHook | None = None
        self.fail: set[str] = set()
        self.calls = Calls()
        self._codes: dict[str, Grant] = {}
        self._access: dict[str, str] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # steering ----------------------------------------------------------------------------------------

    def register(self, client_id: str, registration: Registration) -> None:
        self.clients[client_id] = registration

    def rotate(self) -> RSAKey:
        """Sign with a new key, published beside the old one."""
        self.key = new_key()
        self.published.append(self.key)
        return self.key

    # endpoints -------------------------------------------------------------------------------------

    def _down(self, name: str) -> Response | None:
        return JSONResponse({"error": "temporarily_unavailable"}, 503) if name in self.fail else None

    async def discovery(self, request: Request) -> Response:
        self.calls.discovery += 1
        return self._down("discovery") or JSONResponse({
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS512"],
            "code_challenge_methods_supported": ["S256"],
        })

    async def jwks(self, request: Request) -> Response:
        self.calls.jwks += 1
        return self._down("jwks") or JSONResponse({"keys": [k.as_dict(private=False) for k in self.published]})

    async def authorize(self, request: Request) -> Response:
        p = dict(request.query_params)
        self.calls.authorize.append(p)
        down = self._down("authorize")
        if down:
            return down
        client = self.clients.get(p.get("client_id", ""))
        if client is None or p.get("redirect_uri") not in client.redirect_uris:
            return JSONResponse({"error": "unknown client or redirect_uri"}, 400)
        ok = (p.get("response_type") == "code" and p.get("code_challenge_method") == "S256"
              and p.get("code_challenge") and p.get("state") and p.get("nonce")
              and "openid" in p.get("scope", "").split())
        if not ok:
            error = urlencode({"error": "invalid_request", "state": p.get("state", "")})
            return RedirectResponse(f"{p['redirect_uri']}?{error}", 302)
        code = secrets.token_urlsafe(24)
        self._codes[code] = Grant(p["client_id"], p["redirect_uri"], p["code_challenge"], p["nonce"], self.sub)
        return RedirectResponse(f"{p['redirect_uri']}?{urlencode({'code': code, 'state': p['state']})}", 302)

    def _client_ok(self, request: Request, form: dict[str, str]) -> str | None:
        """The authenticated client id, or None."""
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            reg = self.clients.get(client_id)
            ok = reg is not None and reg.auth_method == "client_secret_basic" and reg.secret == secret
            return client_id if ok else None
        if "client_secret" in form:
            reg = self.clients.get(form.get("client_id", ""))
            ok = reg is not None and reg.auth_method == "client_secret_post" and reg.secret == form["client_secret"]
            return form["client_id"] if ok else None
        if "client_assertion" in form:
            reg = self.clients.get(form.get("client_id", ""))
            if reg is None or reg.auth_method != "private_key_jwt" or reg.jwks is None:
                return None
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return None
            try:
                claims = jwt.decode(form["client_assertion"], KeySet.import_key_set(reg.jwks),  # type: ignore[arg-type]
                                    algorithms=["RS512"]).claims
            except JoseError:
                return None
            ok = (claims.get("iss") == claims.get("sub") == form["client_id"]
                  and claims.get("aud") == f"{self.issuer}/token" and claims.get("exp", 0) > time.time()
                  and claims.get("jti"))
            return form["client_id"] if ok else None
        return None

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.calls.token.append(form)
        down = self._down("token")
        if down:
            return down
        client_id = self._client_ok(request, form)
        if client_id is None:
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = self._codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (grant is None or grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri")
                or form.get("grant_type") != "authorization_code" or challenge != grant.challenge):
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": self.key.kid}
        claims: dict[str, Any] = {"iss": self.issuer, "sub": grant.sub, "aud": client_id, "iat": now,
                                  "exp": now + 300, "auth_time": now, "nonce": grant.nonce, **self.claims}
        made = self.id_token_hook(header, claims) if self.id_token_hook else None
        id_token = made if made is not None else jwt.encode(header, claims, self.key, algorithms=[header["alg"]])
        access = secrets.token_urlsafe(24)
        self._access[access] = grant.sub
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token},
                            headers={"Cache-Control": "no-store"})

    async def userinfo_endpoint(self, request: Request) -> Response:
        down = self._down("userinfo")
        if down:
            return down
        sub = self._access.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if sub is None:
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse({"sub": sub, **self.userinfo})

    # serving ---------------------------------------------------------------------------------------

    def start(self) -> FakeIdP:
        app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo_endpoint),
        ])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off",
                                http="h11", ws="none", loop="asyncio", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-idp", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake identity provider did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
