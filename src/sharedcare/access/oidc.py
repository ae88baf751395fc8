"""Signing in through an external OpenID Connect identity provider: `staff` like NHS CIS2 and
`patient` like NHS login. The node is a relying party (OpenID Connect Core 1.0, authorization code
flow); `signin.py` turns the identity into a web session and `web/auth.py` holds the routes.

- `RelyingParty.start`: a fresh `state`, `nonce` and PKCE verifier (S256). The browser goes to the
  provider's authorization endpoint; the three are kept in a short-lived HttpOnly cookie
  (`PendingSignIn`) that binds the answer to the browser that asked.
- `RelyingParty.finish`: `state` must be the cookie's; the code is swapped at the provider's token
  endpoint (client authentication by private_key_jwt, client_secret_basic or client_secret_post);
  the ID token is verified with joserfc against the provider's JWKS (an asymmetric `alg` the provider
  advertises, never `none` or HS*; `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`); userinfo is read when
  the provider has an endpoint for it, and must be about the same `sub`.
- `staff_identity` / `patient_identity`: the claims become who is signing in, or a refusal: staff
  need a National RBAC role profile whose SDS job role this node knows (AN5); patients need identity
  proofing level P9 and an NHS number (AN4).

Discovery documents and key sets are cached in memory for five minutes; an ID token whose key id is
not in the cached set fetches the set again once (key rotation). A provider that cannot be reached or
answers with a server error is `ProviderUnavailable` (503): sign-in fails closed, with no fallback,
and sessions already made never call the provider (CF5).

Nothing here logs a token, code, claim or NHS number: errors carry a reason for the log written by
this module, and a message for the person that quotes nothing the provider sent.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx2 as httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.jws import extract_compact
from nhs_number.validate import is_valid

from sharedcare.access import assurance
from sharedcare.access.accounts import ODS_CODE
from sharedcare.access.oauth import ASSERTION_TYPE, endpoints, pkce_challenge
from sharedcare.access.roles import JOB_ROLES
from sharedcare.errors import ConfigurationError
from sharedcare.settings import Settings

ProviderName = Literal["staff", "patient"]
PROVIDERS: tuple[ProviderName, ...] = ("staff", "patient")
LABELS: dict[ProviderName, str] = {"staff": "NHS CIS2", "patient": "NHS login"}
AGENT_PREFIX: dict[ProviderName, str] = {"staff": "cis2", "patient": "nhslogin"}
# Signatures a provider's ID token may carry: public-key algorithms only, so a token can never be
# made with something the node knows (an HS* MAC keyed with a client secret) or with nothing (`none`).
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
ASSERTION_RSA = ("RS512", "RS384", "RS256", "PS512", "PS384", "PS256")  # NHS login asks for RS512
ASSERTION_EC = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
CACHE_SECONDS = 300
PENDING_SECONDS = 600  # how long the person may take at the provider
CLOCK_SKEW = 60
MAX_ID_TOKEN_AGE = 600  # an ID token is fresh from the token endpoint
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_NEXT = 2048
MAX_SUBJECT = 150  # the session keeps "<prefix>:<sub>" in 200 characters
_JOB_ROLE = re.compile(r"R\d{4}")
_NHS_NUMBER = re.compile(r"\d{10}")
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
_COOKIE = re.compile(r"[A-Za-z0-9_-]{1,4000}")

UNAVAILABLE = ("Signing in with {label} is not working at the moment. Try again in a few minutes. If you are "
               "already signed in, you can carry on.")
FAILED = "The sign-in with {label} could not be completed. Go back and try again."


class SignInError(Exception):
    """An external sign-in that made no session: `message` is for the person (it quotes nothing the
    provider sent); `reason` is for the log (no token, code, claim or NHS number)."""

    status = 400
    title = "Sign-in problem"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(reason)
        self.message, self.reason = message, reason


class SignInFailed(SignInError):
    """The provider's answer could not be trusted or used (state, code, ID token, userinfo)."""


class SignInRefused(SignInError):
    """The provider identified the person, but they may not use this service that way (AN4, AN5)."""

    status = 403
    title = "You cannot sign in here"


class ProviderUnavailable(SignInError):
    """The provider could not be reached or answered with an error of its own (CF5): fail closed."""

    status = 503
    title = "Sign-in is not available"


# configuration -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProviderConfig:
    name: ProviderName
    issuer: str
    client_id: str
    auth_method: str
    client_secret: str | None
    private_key: Key | None
    scopes: str
    redirect_uri: str
    extra: tuple[tuple[str, str], ...]  # acr_values (staff), vtr (patient)
    required_acr: frozenset[str]
    timeout: float

    @property
    def label(self) -> str:
        return LABELS[self.name]


def _loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")


def _secure_url(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.hostname) and (parts.scheme == "https" or _loopback_http(url))


def _import_key(data: bytes | dict[str, Any], kty: object) -> Key:
    """An RSA, EC or OKP key (never a symmetric one, whatever the data says)."""
    if kty == "RSA":
        return RSAKey.import_key(data)
    if kty == "EC":
        return ECKey.import_key(data)
    if kty == "OKP":
        return OKPKey.import_key(data)
    raise ValueError("not an asymmetric key type")


def load_private_key(path: Path) -> Key:
    """A private key from a PEM file or a JWK (JSON); ConfigurationError when it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"the OIDC private key file cannot be read: {exc.strerror}") from None
    key: Key | None = None
    try:
        if data.lstrip().startswith(b"{"):
            jwk = orjson.loads(data)
            key = _import_key(jwk, jwk.get("kty"))
        else:
            for kty in ("RSA", "EC", "OKP"):
                try:
                    key = _import_key(data, kty)
                    break
                except (JoseError, ValueError, TypeError):
                    continue
    except (JoseError, ValueError, TypeError, AttributeError):
        key = None
    if not isinstance(key, RSAKey | ECKey | OKPKey) or not key.is_private:
        raise ConfigurationError("the OIDC private key file holds no RSA, EC or OKP private key")
    return key


def configured_providers(settings: Settings) -> dict[ProviderName, ProviderConfig]:
    """The providers whose issuer and client id are both set; ConfigurationError for one that is set
    up wrongly (no way to authenticate, an issuer that is not https)."""
    root = endpoints(settings).login.removesuffix("/auth/login")
    out: dict[ProviderName, ProviderConfig] = {}
    for name in PROVIDERS:
        issuer = getattr(settings, f"{name}_oidc_issuer")
        client_id = getattr(settings, f"{name}_oidc_client_id")
        if not issuer or not client_id:
            continue
        if not _secure_url(issuer):
            raise ConfigurationError(f"SHAREDCARE_{name.upper()}_OIDC_ISSUER must be https (http only on loopback)")
        secret = getattr(settings, f"{name}_oidc_client_secret")
        key_file = getattr(settings, f"{name}_oidc_private_key_file")
        method = getattr(settings, f"{name}_oidc_auth_method") or (
            "private_key_jwt" if key_file else "client_secret_basic")
        key = load_private_key(key_file) if method == "private_key_jwt" and key_file else None
        env = f"SHAREDCARE_{name.upper()}_OIDC"
        if method == "private_key_jwt" and key is None:
            raise ConfigurationError(f"{name} OIDC private_key_jwt needs {env}_PRIVATE_KEY_FILE")
        if method != "private_key_jwt" and (secret is None or not secret.get_secret_value()):
            raise ConfigurationError(f"{name} OIDC {method} needs {env}_CLIENT_SECRET")
        scopes = getattr(settings, f"{name}_oidc_scopes")
        if "openid" not in scopes.split():
            raise ConfigurationError(f"SHAREDCARE_{name.upper()}_OIDC_SCOPES must include openid")
        extra: list[tuple[str, str]] = []
        required: frozenset[str] = frozenset()
        if name == "staff" and settings.staff_oidc_acr_values:
            extra.append(("acr_values", settings.staff_oidc_acr_values))
            required = frozenset(settings.staff_oidc_acr_values.split())
        if name == "patient" and settings.patient_oidc_vtr:
            extra.append(("vtr", settings.patient_oidc_vtr))
        out[name] = ProviderConfig(
            name, issuer, client_id,
            method, secret.get_secret_value() if secret is not None and method != "private_key_jwt" else None, key,
            scopes, f"{root}/auth/oidc/{name}/callback", tuple(extra), required, settings.oidc_timeout_seconds)
    return out


# the browser's half of the flow ------------------------------------------------------------------

def local_path(value: str | None) -> str | None:
    """`value` when it is a path on this site (so never an open redirect), else None."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


def pending_cookie_name(secure: bool) -> str:
    return f"{'__Host-' if secure else ''}sharedcare_oidc"


@dataclass(frozen=True)
class PendingSignIn:
    """What a started sign-in keeps in the browser's cookie until the provider sends it back."""

    provider: str
    state: str
    nonce: str
    verifier: str
    next: str | None
    created: float

    def to_cookie(self) -> str:
        data = {"p": self.provider, "s": self.state, "n": self.nonce, "v": self.verifier, "x": self.next,
                "t": int(self.created)}
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    @classmethod
    def from_cookie(cls, value: str | None) -> PendingSignIn | None:
        if not value or not _COOKIE.fullmatch(value):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        p, s, n, v, x, t = (data.get(k) for k in "psnvxt")
        if not all(isinstance(i, str) and i for i in (p, s, n, v)) or not isinstance(t, int) or isinstance(t, bool):
            return None
        return cls(str(p), str(s), str(n), str(v), local_path(x) if isinstance(x, str) else None, float(t))


# who signed in -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExternalIdentity:
    """A person an external provider vouched for, as this node will treat them."""

    provider: ProviderName
    agent_id: str  # cis2:<sub> or nhslogin:<sub>
    kind: Literal["user", "patient"]
    roles: tuple[tuple[str, str], ...] = ()  # staff: usable role profiles (ODS organisation, SDS job role)
    selected: tuple[str, str] | None = None  # staff: the profile chosen at the provider, or the only one
    nhs_number: str | None = None  # patient
    assurance: str | None = None  # CIS2 acr (AAL3_ANY) or AAL<n>; NHS login vot (P9.Cp.Cd)


def job_role(role_code: object) -> str | None:
    """The SDS job role (R-code) of a National RBAC role code like S8000:G8000:R8000."""
    if not isinstance(role_code, str):
        return None
    found = [part for part in role_code.split(":") if _JOB_ROLE.fullmatch(part)]
    return found[-1] if found else None


NO_ROLES = ("Your NHS CIS2 account has no role that gives access to this service. Ask your organisation's "
            "Registration Authority to give you the role you need, then sign in again.")
ROLE_GRANTS_NOTHING = ("The role you chose in NHS CIS2 does not give access to this service. Sign in again and "
                       "choose another role.")
NOT_P9 = ("To see health records you need to prove who you are to NHS login with photo ID (high level "
          "verification, P9). Your NHS login is not verified to that level yet.")
NO_NHS_NUMBER = "Your NHS login did not give us an NHS number, so we cannot find your record."
AAL_TOO_LOW = ("This service needs you to sign in to NHS CIS2 with a stronger method (such as a smartcard). "
               "Sign in again with one.")


def acr_enough(acr: object, required: frozenset[str]) -> bool:
    """Whether an ID token's acr meets the configured ones: one of them, or a level at least the
    lowest they name (a step-up to AAL3 answers AAL3_ANY where AAL2_OR_ABOVE is configured)."""
    if acr in required:
        return True
    need = [n for n in (assurance.level(r) for r in required) if n is not None]
    got = assurance.level(acr)
    return bool(need) and got is not None and got >= min(need)


def staff_identity(sub: str, claims: Mapping[str, Any]) -> ExternalIdentity:
    """A member of staff from CIS2 claims: each `nhsid_nrbac_roles` item is a role profile
    (`person_roleid`, `org_code`, `role_code`); only those whose job role this node knows count, and
    `selected_roleid` picks one of them. SignInRefused when none counts (AN5) or the selected one does not."""
    profiles: list[tuple[str, str]] = []
    by_id: dict[str, tuple[str, str]] = {}
    items = claims.get("nhsid_nrbac_roles")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        org, role = item.get("org_code"), job_role(item.get("role_code"))
        if not isinstance(org, str) or not ODS_CODE.fullmatch(org) or role not in JOB_ROLES:
            continue  # an unknown job role grants nothing
        profile = (org, str(role))
        if profile not in profiles:
            profiles.append(profile)
        if isinstance(item.get("person_roleid"), str):
            by_id[item["person_roleid"]] = profile
    if not profiles:
        raise SignInRefused(NO_ROLES, "no usable role profile")
    selected = claims.get("selected_roleid")
    chosen = profiles[0] if len(profiles) == 1 else None
    if selected is not None and selected != "":
        chosen = by_id.get(selected) if isinstance(selected, str) else None
        if chosen is None:
            raise SignInRefused(ROLE_GRANTS_NOTHING, "the selected role profile is not usable")
    acr, level = claims.get("acr"), claims.get("authentication_assurance_level")
    assurance = acr if isinstance(acr, str) and acr else f"AAL{level}" if isinstance(level, str | int) else None
    return ExternalIdentity("staff", f"{AGENT_PREFIX['staff']}:{sub}", "user", tuple(profiles), chosen,
                            assurance=assurance)


def patient_identity(sub: str, claims: Mapping[str, Any]) -> ExternalIdentity:
    """A patient from NHS login claims: `identity_proofing_level` must be P9 (and `vot`, when sent,
    a P9 vector), and `nhs_number` a valid NHS number. SignInRefused otherwise (AN4)."""
    level, vot = claims.get("identity_proofing_level"), claims.get("vot")
    if level != "P9" or (vot is not None and (not isinstance(vot, str) or vot.split(".")[0] != "P9")):
        raise SignInRefused(NOT_P9, "identity proofing below P9")
    nhs = claims.get("nhs_number")
    if not isinstance(nhs, str) or not _NHS_NUMBER.fullmatch(nhs) or not is_valid(nhs):
        raise SignInRefused(NO_NHS_NUMBER, "no valid NHS number")
    return ExternalIdentity("patient", f"{AGENT_PREFIX['patient']}:{sub}", "patient", nhs_number=nhs,
                            assurance=vot if isinstance(vot, str) else level)


# the relying party -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Cached:
    value: dict[str, Any]
    fetched: float


class RelyingParty:
    """One configured provider. Thread-safe; its caches live as long as the app."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._metadata: _Cached | None = None
        self._jwks: _Cached | None = None

    @property
    def label(self) -> str:
        return self.config.label

    def _unavailable(self, reason: str) -> ProviderUnavailable:
        return ProviderUnavailable(UNAVAILABLE.format(label=self.label), reason)

    def _failed(self, reason: str) -> SignInFailed:
        return SignInFailed(FAILED.format(label=self.label), reason)

    # HTTP ------------------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=self.config.timeout, follow_redirects=False)

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise self._unavailable(f"{what} answered {response.status_code}")
        if response.status_code >= 400:
            error = ""
            try:
                body = response.json()
                code = body.get("error") if isinstance(body, dict) else None
                error = f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
            except ValueError:
                pass
            raise self._failed(f"{what} refused the request: {response.status_code}{error}")
        if response.status_code != 200 or len(response.content) > MAX_RESPONSE_BYTES:
            raise self._unavailable(f"{what} answered {response.status_code} or too much")
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self._unavailable(f"{what} did not answer JSON") from None
        if not isinstance(data, dict):
            raise self._unavailable(f"{what} did not answer a JSON object")
        return data

    def _get(self, url: str, what: str) -> dict[str, Any]:
        try:
            with self._client() as client:
                return self._json(client.get(url, headers={"Accept": "application/json"}), what)
        except httpx.HTTPError as exc:
            raise self._unavailable(f"{what} unreachable ({type(exc).__name__})") from None

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached); ProviderUnavailable when it cannot be had."""
        cached = self._metadata
        if cached is not None and time.monotonic() - cached.fetched < CACHE_SECONDS:
            return cached.value
        doc = self._get(f"{self.config.issuer.rstrip('/')}/.well-known/openid-configuration", "discovery")
        if doc.get("issuer") != self.config.issuer:
            raise self._unavailable("the discovery document names another issuer")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(field), str) or not self._trusted_url(doc[field]):
                raise self._unavailable(f"the discovery document has no usable {field}")
        if "userinfo_endpoint" in doc and (not isinstance(doc["userinfo_endpoint"], str)
                                           or not self._trusted_url(doc["userinfo_endpoint"])):
            raise self._unavailable("the discovery document has no usable userinfo_endpoint")
        with self._lock:
            self._metadata = _Cached(doc, time.monotonic())
        return doc

    def _trusted_url(self, url: str) -> bool:
        return urlsplit(url).scheme == "https" or (_loopback_http(url) and _loopback_http(self.config.issuer))

    def _key_set(self, meta: dict[str, Any], refresh: bool) -> dict[str, Any]:
        cached = self._jwks
        if not refresh and cached is not None and time.monotonic() - cached.fetched < CACHE_SECONDS:
            return cached.value
        jwks = self._get(meta["jwks_uri"], "jwks")
        if not isinstance(jwks.get("keys"), list):
            raise self._unavailable("the JWKS has no keys")
        with self._lock:
            self._jwks = _Cached(jwks, time.monotonic())
        return jwks

    def _signing_key(self, meta: dict[str, Any], kid: object, alg: str) -> Key:
        kty = KEY_TYPE[alg[:2]]
        for refresh in (False, True):  # a key id not in the cached set: fetch it again once
            keys = [k for k in self._key_set(meta, refresh)["keys"] if isinstance(k, dict) and k.get("kty") == kty
                    and k.get("use") in (None, "sig")]
            found = [k for k in keys if k.get("kid") == kid] if kid is not None else keys
            if len(found) == 1:
                try:
                    return _import_key(found[0], kty)
                except (JoseError, ValueError, TypeError):
                    raise self._failed("the provider's key cannot be read") from None
            if kid is None:
                break
        raise self._failed("the ID token is signed by a key the provider does not publish")

    # the flow --------------------------------------------------------------------------------------

    def start(self, next_url: str | None, aal: int | None = None) -> tuple[str, PendingSignIn]:
        """Where to send the browser, and what to keep in its cookie. `aal`: ask the staff provider for
        at least this assurance level (its `acr_values`, in place of the configured ones), for step-up."""
        meta = self.metadata()
        pending = PendingSignIn(self.config.name, secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                                secrets.token_urlsafe(48), local_path(next_url), time.time())
        params = {"response_type": "code", "client_id": self.config.client_id,
                  "redirect_uri": self.config.redirect_uri, "scope": self.config.scopes, "state": pending.state,
                  "nonce": pending.nonce, "code_challenge": pkce_challenge(pending.verifier),
                  "code_challenge_method": "S256", **dict(self.config.extra)}
        if aal is not None and self.config.name == "staff":
            params["acr_values"] = assurance.acr_values(aal)
        endpoint = meta["authorization_endpoint"]
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{urlencode(params)}", pending

    def finish(self, pending: PendingSignIn | None, params: Mapping[str, str]) -> ExternalIdentity:
        """Check the provider's answer and say who signed in; a SignInError otherwise."""
        if pending is None or pending.provider != self.config.name:
            raise self._failed("no sign-in was started in this browser")
        if time.time() - pending.created > PENDING_SECONDS:
            raise self._failed("the sign-in was started too long ago")
        state = params.get("state") or ""
        if not secrets.compare_digest(state.encode(), pending.state.encode()):
            raise self._failed("the state does not match")
        error = params.get("error")
        if error is not None:
            safe = error if _ERROR_CODE.fullmatch(error) else "other"
            if error in ("server_error", "temporarily_unavailable"):
                raise self._unavailable(f"the provider answered {safe}")
            raise self._failed(f"the provider answered {safe}")
        code = params.get("code")
        if not code:
            raise self._failed("the provider sent no code")
        meta = self.metadata()
        tokens = self._token(meta, code, pending.verifier)
        claims = self.verify_id_token(meta, tokens["id_token"], pending.nonce)
        sub = claims["sub"]
        if isinstance(meta.get("userinfo_endpoint"), str):
            info = self._userinfo(meta["userinfo_endpoint"], tokens["access_token"])
            if info.get("sub") != sub:
                raise self._failed("userinfo is about someone else")
            claims = {**info, **claims}  # the signed ID token wins where both speak
        if self.config.required_acr and not acr_enough(claims.get("acr"), self.config.required_acr):
            raise SignInRefused(AAL_TOO_LOW, "acr is not one asked for")
        return staff_identity(sub, claims) if self.config.name == "staff" else patient_identity(sub, claims)

    def _token(self, meta: dict[str, Any], code: str, verifier: str) -> dict[str, str]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.config.redirect_uri,
                "code_verifier": verifier}
        headers = {"Accept": "application/json"}
        cid = self.config.client_id
        if self.config.auth_method == "client_secret_basic":
            pair = f"{quote_plus(cid)}:{quote_plus(self.config.client_secret or '')}"  # RFC 6749 §2.3.1
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif self.config.auth_method == "client_secret_post":
            form |= {"client_id": cid, "client_secret": self.config.client_secret or ""}
        else:
            form |= {"client_id": cid, "client_assertion_type": ASSERTION_TYPE,
                     "client_assertion": self._assertion(meta)}
        try:
            with self._client() as client:
                body = self._json(client.post(meta["token_endpoint"], data=form, headers=headers), "token endpoint")
        except httpx.HTTPError as exc:
            raise self._unavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
        if not isinstance(body.get("id_token"), str) or not isinstance(body.get("access_token"), str):
            raise self._failed("the token response has no id_token or access_token")
        return {"id_token": body["id_token"], "access_token": body["access_token"]}

    def _assertion(self, meta: dict[str, Any]) -> str:
        """A private_key_jwt client assertion (RFC 7523): iss = sub = client id, aud = token endpoint."""
        key = self.config.private_key
        assert key is not None  # configured_providers guarantees a key for private_key_jwt
        supported = meta.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(key, RSAKey):
            algs = [a for a in ASSERTION_RSA if not isinstance(supported, list) or a in supported] or ["RS512"]
        elif isinstance(key, ECKey):
            algs = [ASSERTION_EC.get(key.curve_name, "ES256")]
        else:
            algs = ["EdDSA"]
        now = int(time.time())
        header: dict[str, Any] = {"alg": algs[0], "typ": "JWT"}
        if key.kid:
            header["kid"] = key.kid
        claims = {"iss": self.config.client_id, "sub": self.config.client_id, "aud": meta["token_endpoint"],
                  "jti": str(uuid.uuid4()), "iat": now, "exp": now + 300}
        return jwt.encode(header, claims, key, algorithms=[algs[0]])

    def verify_id_token(self, meta: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
        """The claims of an ID token that passes every check of OpenID Connect Core §3.1.3.7."""
        try:
            header = extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError, TypeError):
            raise self._failed("the ID token is not a signed JWT") from None
        alg = header.get("alg")
        advertised = meta.get("id_token_signing_alg_values_supported")
        allowed = (set(advertised) if isinstance(advertised, list) else {"RS256"}) & ASYMMETRIC
        if not isinstance(alg, str) or alg not in allowed:
            raise self._failed("the ID token is not signed with an asymmetric algorithm the provider advertises")
        key = self._signing_key(meta, header.get("kid"), alg)
        try:
            claims: dict[str, Any] = jwt.decode(id_token, key, algorithms=[alg]).claims
        except (JoseError, ValueError, TypeError):
            raise self._failed("the ID token's signature does not verify") from None
        now, cid = time.time(), self.config.client_id
        aud, azp, exp, iat = claims.get("aud"), claims.get("azp"), claims.get("exp"), claims.get("iat")
        if claims.get("iss") != self.config.issuer:
            raise self._failed("the ID token is from another issuer")
        if not (aud == cid or (isinstance(aud, list) and cid in aud and (len(aud) == 1 or azp == cid))):
            raise self._failed("the ID token is for another client")
        if azp is not None and azp != cid:
            raise self._failed("the ID token was issued to another client")
        if not _number(exp) or exp <= now - CLOCK_SKEW:
            raise self._failed("the ID token has expired")
        if not _number(iat) or iat > now + CLOCK_SKEW or iat < now - MAX_ID_TOKEN_AGE:
            raise self._failed("the ID token's issue time is wrong")
        given = claims.get("nonce")
        if not isinstance(given, str) or not secrets.compare_digest(given.encode(), nonce.encode()):
            raise self._failed("the ID token's nonce does not match")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT:
            raise self._failed("the ID token has no usable sub")
        return claims

    def _userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        try:
            with self._client() as client:
                return self._json(client.get(url, headers={"Authorization": f"Bearer {access_token}",
                                                           "Accept": "application/json"}), "userinfo")
        except httpx.HTTPError as exc:
            raise self._unavailable(f"userinfo unreachable ({type(exc).__name__})") from None


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def relying_parties(settings: Settings) -> dict[str, RelyingParty]:
    """A RelyingParty for each configured provider (ConfigurationError for a wrong configuration)."""
    return {name: RelyingParty(config) for name, config in configured_providers(settings).items()}
