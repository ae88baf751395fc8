"""The SMART on FHIR v2 authorization server: discovery, client authentication, the token grants
(client credentials, authorization code with PKCE, refresh token), revocation and authorization codes.

Errors follow RFC 6749 §5.2 (`OAuthError`). Every secret (client secret, code, token) is stored
only as its SHA-256 (`tokens.digest`) and compared with `secrets.compare_digest`. Which scopes are
granted: `narrow` intersects what was asked with what the client is registered for, and
`for_account` keeps what a person's kind of account may hold. The browser side of the
authorization code flow (the authorization request, sign-in, sessions) is `signin.py`; registering
clients is `register_client` below.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from sharedcare.access import accounts as local_accounts
from sharedcare.access import scopes as smart
from sharedcare.access.accounts import ODS_CODE
from sharedcare.access.context import TREAT, Caller
from sharedcare.access.tokens import TokenService, digest, new_secret
from sharedcare.settings import Settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.oauth import ClientRow, CodeRow, OAuthStore, TokenRow, at, now

log = logging.getLogger("sharedcare.access")

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")  # what SMART Backend Services asks servers to support
MAX_ASSERTION_SECONDS = 300
CODE_SECONDS = 60
GRANTS = ("authorization_code", "client_credentials", "refresh_token")
REFRESH_SCOPES = frozenset({"offline_access", "online_access"})
# What a person's account may hold beyond resource scopes (no OpenID Connect: no id_token is issued).
ACCOUNT_EXTRAS = {"user": REFRESH_SCOPES, "patient": REFRESH_SCOPES | {"launch/patient"}}


class OAuthError(Exception):
    """An RFC 6749 error response: `error` code, a description (never a secret), and the status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="sharedcare"'} if self.status == 401 else {}


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


@dataclass(frozen=True)
class Endpoints:
    fhir: str
    authorize: str
    token: str
    revoke: str
    login: str


def endpoints(settings: Settings) -> Endpoints:
    """The server's URLs, beside the FHIR base (…/fhir -> …/auth/token)."""
    fhir = settings.base_url.rstrip("/")
    root = fhir.removesuffix("/fhir") if fhir.endswith("/fhir") else fhir.rsplit("/", 1)[0]
    return Endpoints(fhir, f"{root}/auth/authorize", f"{root}/auth/token", f"{root}/auth/revoke",
                     f"{root}/auth/login")


def smart_configuration(settings: Settings) -> dict[str, object]:
    """`/.well-known/smart-configuration` (SMART App Launch 2.0)."""
    urls = endpoints(settings)
    return {
        "issuer": urls.fhir,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "revocation_endpoint": urls.revoke,
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS[:3]),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "grant_types_supported": list(GRANTS),
        "scopes_supported": ["system/*.cruds", "user/*.cruds", "patient/*.cruds", "launch/patient",
                             "offline_access", "online_access"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-standalone", "client-public", "client-confidential-symmetric",
                         "client-confidential-asymmetric", "context-standalone-patient", "permission-v2",
                         "permission-patient", "permission-user", "permission-offline", "permission-online"],
    }


# scopes --------------------------------------------------------------------------------------------

def _meet(a: smart.Scope, b: smart.Scope) -> smart.Scope | None:
    """What both scopes allow, or None."""
    if a.context != b.context:
        return None
    if a.resource_type != b.resource_type and "*" not in (a.resource_type, b.resource_type):
        return None
    res_type = b.resource_type if a.resource_type == "*" else a.resource_type
    restriction = a.restriction + tuple(p for p in b.restriction if p not in a.restriction)
    perms = "".join(p for p in smart.PERMISSIONS if p in a.permissions and p in b.permissions
                    and (not restriction or p in "rs"))
    return smart.Scope(a.context, res_type, perms, restriction) if perms else None


def narrow(requested: str, allowed: str) -> list[str]:
    """The scopes of `requested` that `allowed` covers, each narrowed to what both allow
    (`system/*.rs` allowed and `system/*.cruds` asked gives `system/*.rs`). Identity and launch
    scopes pass only when `allowed` names them. ScopeError for a malformed requested scope."""
    allowed_items = allowed.split()
    allowed_scopes = [s for s in (smart.parse(i) for i in allowed_items) if s is not None]
    out: list[str] = []
    for item in requested.split():
        asked = smart.parse(item)
        met = [item] if asked is None and item in allowed_items else \
            [str(m) for m in (_meet(asked, s) for s in allowed_scopes) if m] if asked is not None else []
        out += [m for m in met if m not in out]
    return out


def for_account(kind: str, granted: list[str]) -> list[str]:
    """The scopes a signed-in person may hold: staff (`user` callers) only `user/` resource scopes,
    patients only `patient/` ones, each with their identity and refresh scopes."""
    context = {"user": "user", "patient": "patient"}.get(kind)
    return [s for s in granted if s in ACCOUNT_EXTRAS.get(kind, ())
            or (context is not None and s.startswith(context + "/"))]


def grants_resources(granted: list[str]) -> bool:
    """Whether any of the scopes gives access to resources (not only identity or refresh)."""
    return any(smart.parse(s) is not None for s in granted)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def code_family(code_hash: str) -> str:
    """The token family of tokens issued from one authorization code (so code reuse can revoke them)."""
    return str(uuid.UUID(code_hash[:32]))


# client authentication -----------------------------------------------------------------------------

def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("the Basic credentials are malformed") from None
    if not sep:
        raise invalid_client("the Basic credentials are malformed")
    return unquote_plus(client_id), unquote_plus(secret)  # RFC 6749 §2.3.1: form-encoded first


def claimed_client_id(form: Mapping[str, str], authorization: str | None) -> str | None:
    """The client a token request says it is (before checking it): for rate limiting."""
    try:
        basic = _basic(authorization)
        if basic:
            return basic[0]
        if form.get("client_assertion"):
            iss = orjson.loads(extract_compact(form["client_assertion"].encode()).payload).get("iss")
            return iss if isinstance(iss, str) else None
    except (OAuthError, JoseError, ValueError):
        return None
    return form.get("client_id")


class AuthorizationServer:
    def __init__(self, store: OAuthStore, tokens: TokenService, settings: Settings,
                 accounts: AccountStore | None = None) -> None:
        self.store = store
        self.tokens = tokens
        self.urls = endpoints(settings)
        self.accounts = accounts if accounts is not None else AccountStore(store.engine)

    def authenticate_client(self, form: Mapping[str, str], authorization: str | None) -> ClientRow:
        """The client, authenticated by the method it registered; invalid_client (401) otherwise."""
        basic = _basic(authorization)
        presented = [m for m, there in (("client_secret_basic", basic), ("client_secret_post", "client_secret" in form),
                                        ("private_key_jwt", "client_assertion" in form)) if there]
        if len(presented) > 1:
            raise OAuthError("invalid_request", "use one client authentication method")
        method = presented[0] if presented else "none"
        if method == "private_key_jwt":
            client_id = claimed_client_id(form, None)
        else:
            client_id = basic[0] if basic else form.get("client_id")
        if not client_id or len(client_id) > 64 or form.get("client_id") not in (None, client_id):
            raise invalid_client("the client is not identified")
        client = self.store.client(client_id)
        if client is None or client.disabled or client.auth_method != method:
            raise invalid_client("client authentication failed")
        if method in SECRET_METHODS:
            secret = basic[1] if basic else form.get("client_secret", "")
            if not client.secret_hash or not secrets.compare_digest(digest(secret), client.secret_hash):
                raise invalid_client("client authentication failed")
        elif method == "private_key_jwt":
            self._verify_assertion(client, form)
        return client

    def _verify_assertion(self, client: ClientRow, form: Mapping[str, str]) -> None:
        """SMART Backend Services: an RS384/ES384 JWT signed with a registered key, iss = sub =
        client_id, aud = the token endpoint, expiring within five minutes, its jti used once."""
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise invalid_client("client_assertion_type must be " + ASSERTION_TYPE)
        try:
            keys = KeySet.import_key_set(orjson.loads(client.jwks or "{}"))
            claims = jwt.decode(form["client_assertion"], keys, algorithms=list(ASSERTION_ALGORITHMS)).claims
        except (JoseError, ValueError, KeyError, TypeError):
            raise invalid_client("the client assertion is not signed by a registered key with RS384 or ES384") \
                from None
        aud = claims.get("aud")
        exp, jti, t = claims.get("exp"), claims.get("jti"), time.time()
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise invalid_client("the client assertion's iss and sub must be the client id")
        if aud != self.urls.token and not (isinstance(aud, list) and self.urls.token in aud):
            raise invalid_client("the client assertion's aud must be the token endpoint")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= t:
            raise invalid_client("the client assertion has expired")
        if exp > t + MAX_ASSERTION_SECONDS + 5:  # a few seconds for clocks that differ
            raise invalid_client("the client assertion may last at most five minutes")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise invalid_client("the client assertion needs a jti")
        if not self.store.claim_jti(digest(f"{client.client_id}\x00{jti}"), client.client_id, at(exp)):
            log.warning("client assertion replay refused")
            raise invalid_client("the client assertion's jti has been used")

    # grants ----------------------------------------------------------------------------------------

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, object]:
        """The token endpoint: a token response, or OAuthError."""
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant not in GRANTS:
            raise OAuthError("unsupported_grant_type", "the grant types are " + ", ".join(GRANTS))
        client = self.authenticate_client(form, authorization)
        if (grant == "client_credentials") != (client.kind == "system"):
            raise OAuthError("unauthorized_client", "system clients use client_credentials, apps the other grants")
        if grant == "client_credentials":
            return self._client_credentials(client, form)
        if grant == "authorization_code":
            return self._authorization_code(client, form)
        return self._refresh(client, form)

    def _client_credentials(self, client: ClientRow, form: Mapping[str, str]) -> dict[str, object]:
        granted = [s for s in self._narrow(form.get("scope", ""), client.scope)
                   if s.startswith("system/") or (client.organisation is not None and s.startswith("user/"))]
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes is registered for this client")
        scope = " ".join(granted)
        caller = Caller(kind="system", agent_id=f"client:{client.client_id}", purpose=TREAT,
                        organisation=client.organisation, scopes=tuple(granted), client_id=client.client_id)
        issued = self.tokens.issue(caller, client.client_id, scope)
        return {"access_token": issued.access_token, "token_type": "Bearer", "expires_in": issued.expires_in,
                "scope": scope}

    def _narrow(self, requested: str, allowed: str) -> list[str]:
        if not requested.strip():
            raise OAuthError("invalid_scope", "scope is required")
        try:
            return narrow(requested, allowed)
        except smart.ScopeError as exc:
            raise OAuthError("invalid_scope", str(exc)[:200]) from None

    def _authorization_code(self, client: ClientRow, form: Mapping[str, str]) -> dict[str, object]:
        code, verifier = form.get("code", ""), form.get("code_verifier", "")
        if not code or not verifier:
            raise OAuthError("invalid_request", "code and code_verifier are required")
        code_hash = digest(code)
        row = self.store.code(code_hash)
        if row is None:
            raise OAuthError("invalid_grant", "the code is not valid")
        if row.used or not self.store.use_code(code_hash):
            # RFC 6749 §4.1.2: a code used twice revokes what it gave.
            self.store.revoke_family(code_family(code_hash))
            log.warning("authorization code reuse: its tokens were revoked")
            raise OAuthError("invalid_grant", "the code has been used")
        if row.client_id != client.client_id or row.redirect_uri != form.get("redirect_uri") or row.expires <= now():
            raise OAuthError("invalid_grant", "the code is not valid for this client, redirect_uri or time")
        if not secrets.compare_digest(pkce_challenge(verifier), row.code_challenge):
            raise OAuthError("invalid_grant", "the code_verifier does not match the code_challenge")
        return self._respond(client, Caller.from_json(row.context), row.scope, code_family(code_hash), None)

    def _refresh(self, client: ClientRow, form: Mapping[str, str]) -> dict[str, object]:
        token_hash = digest(form.get("refresh_token", ""))
        row = self.store.token(token_hash)
        if row is None or row.kind != "refresh" or row.client_id != client.client_id or row.revoked:
            raise OAuthError("invalid_grant", "the refresh token is not valid")
        if not row.used and row.expires <= now():
            raise OAuthError("invalid_grant", "the refresh token has expired")
        if row.used or not self.store.use_refresh(token_hash):
            # A spent refresh token presented again: one of the two holders is not the client.
            self.store.revoke_family(row.family)
            log.warning("refresh token reuse: its family was revoked")
            raise OAuthError("invalid_grant", "the refresh token has been used")
        caller = Caller.from_json(row.context)
        if not local_accounts.still_valid(self.accounts, caller):
            # The account was disabled or lost the role profile since: nothing it held lives on.
            self.store.revoke_family(row.family)
            raise OAuthError("invalid_grant", "the account is disabled or no longer holds this role")
        scope = row.scope
        if form.get("scope"):
            narrowed = self._narrow(form["scope"], row.scope)
            if not grants_resources(narrowed):
                raise OAuthError("invalid_scope", "a refresh may only narrow the scopes granted")
            scope = " ".join(narrowed)
        return self._respond(client, caller, scope, row.family, row)

    def _respond(self, client: ClientRow, caller: Caller, scope: str, family: str,
                 refreshed: TokenRow | None) -> dict[str, object]:
        caller = dataclasses.replace(caller, scopes=tuple(scope.split()))
        refresh = bool(REFRESH_SCOPES & set(scope.split()))
        issued = self.tokens.issue(caller, client.client_id, scope, family=family, refresh=refresh,
                                   refresh_expires=refreshed.expires if refreshed else None)
        out: dict[str, object] = {"access_token": issued.access_token, "token_type": "Bearer",
                                  "expires_in": issued.expires_in, "scope": scope}
        if issued.refresh_token:
            out["refresh_token"] = issued.refresh_token
        if caller.kind == "patient" and caller.patient:
            out["patient"] = caller.patient
        return out

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """RFC 7009: revoke a token issued to this client (a refresh token takes its family with
        it). An unknown token, or another client's, is ignored: the answer is the same."""
        client = self.authenticate_client(form, authorization)
        token = form.get("token")
        if not token:
            raise OAuthError("invalid_request", "token is required")
        row = self.store.token(digest(token))
        if row is None or row.client_id != client.client_id or row.kind not in ("access", "refresh"):
            return
        if row.kind == "refresh":
            self.store.revoke_family(row.family)
        else:
            self.store.revoke_token(row.token_hash)

    def issue_code(self, client: ClientRow, redirect_uri: str, code_challenge: str, scope: str,
                   caller: Caller) -> str:
        """A one-use authorization code, bound to the client, redirect URI and PKCE challenge, for
        CODE_SECONDS."""
        code = secrets.token_urlsafe(32)
        self.store.add_code(CodeRow(digest(code), client.client_id, redirect_uri, code_challenge, scope,
                                    caller.to_json(), now(CODE_SECONDS)))
        return code


# registration --------------------------------------------------------------------------------------

class ClientError(ValueError):
    """A client could not be registered as asked; the message says why (nothing was registered)."""


_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not (parts.scheme == "https" or (parts.scheme == "http" and local)) or not parts.hostname or parts.fragment:
        raise ClientError(f"{uri!r}: a redirect URI is an absolute https URL without a fragment "
                          "(http only for localhost or 127.0.0.1)")


def _check_jwks(jwks: str) -> str:
    try:
        data = orjson.loads(jwks)
        keys = data["keys"] if isinstance(data, dict) else None
    except (ValueError, KeyError):
        keys = None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ClientError('the JWKS must be JSON with a non-empty "keys" list')
    if any(_PRIVATE_MEMBERS & set(k) for k in keys):
        raise ClientError("the JWKS must hold public keys only (it has private or symmetric key material)")
    if any(k.get("kty") not in ("RSA", "EC") or (k.get("kty") == "EC" and k.get("crv") != "P-384") for k in keys):
        raise ClientError("the JWKS keys must be RSA (for RS384) or EC P-384 (for ES384)")
    try:
        KeySet.import_key_set(data)
    except (JoseError, ValueError, TypeError):
        raise ClientError("the JWKS keys cannot be read") from None
    return orjson.dumps(data).decode()


def register_client(store: OAuthStore, name: str, *, scope: str, kind: str = "system",
                    auth_method: str | None = None, organisation: str | None = None, jwks: str | None = None,
                    redirect_uris: tuple[str, ...] = ()) -> tuple[ClientRow, str | None]:
    """Register a client after checking every part of the request (ClientError, and nothing
    registered, when any part is wrong). Returns the client and its secret, which exists only when
    the auth method uses one: it is shown once, and only its SHA-256 is kept."""
    if kind not in ("system", "app"):
        raise ClientError("a client is a system (client credentials) or an app (authorization code)")
    method = auth_method or ("client_secret_basic" if kind == "system" else "none")
    if method not in AUTH_METHODS:
        raise ClientError(f"the auth method is one of {', '.join(AUTH_METHODS)}")
    if not name.strip() or len(name) > 200:
        raise ClientError("a client name is 1 to 200 characters")
    try:
        parsed = [(item, smart.parse(item)) for item in scope.split()]
    except smart.ScopeError as exc:
        raise ClientError(str(exc)) from None
    if not any(p is not None for _, p in parsed):
        raise ClientError("a client needs at least one resource scope, e.g. system/*.rs")
    if kind == "system":
        if method == "none":
            raise ClientError("a system client must authenticate (a secret or private_key_jwt)")
        # A source organisation's system may also hold user/ scopes: it acts for its staff with them
        # (access/on_behalf.py).
        contexts = ("system", "user") if organisation is not None else ("system",)
        if any(p is None or p.context not in contexts for _, p in parsed):
            raise ClientError("a system client's scopes are system/ scopes (and user/ scopes for a source "
                              "organisation's system acting for its staff)")
        if redirect_uris:
            raise ClientError("a system client has no redirect URIs")
    else:
        if organisation is not None:
            raise ClientError("--organisation is for system clients (a source organisation's system)")
        if any(p is not None and p.context == "system" for _, p in parsed):
            raise ClientError("an app's scopes are patient/ or user/ scopes, not system/")
        if not redirect_uris:
            raise ClientError("an app needs at least one redirect URI")
        for uri in redirect_uris:
            _check_redirect_uri(uri)
    if organisation is not None and not ODS_CODE.fullmatch(organisation):
        raise ClientError(f"{organisation!r} is not an ODS organisation code")
    if (method == "private_key_jwt") != (jwks is not None):
        raise ClientError("private_key_jwt needs --jwks (a file of public keys), and only it takes one")
    secret = new_secret() if method in SECRET_METHODS else None
    row = ClientRow(str(uuid.uuid4()), name.strip(), kind, method, digest(secret) if secret else None,
                    _check_jwks(jwks) if jwks is not None else None, tuple(dict.fromkeys(redirect_uris)),
                    " ".join(dict.fromkeys(scope.split())), organisation, now(), False)
    store.add_client(row)
    return row, secret
