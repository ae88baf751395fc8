"""Bearer tokens: issuing them, and turning the one on a request back into its Caller.

Tokens are opaque random values (256 bits); only their SHA-256 is stored, with the Caller context
granted when they were issued. `authenticate` runs on every API request: one SELECT on the primary
key, and no cache, so a revoked token stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sharedcare.access.context import Caller
from sharedcare.errors import Unauthorized
from sharedcare.settings import Settings
from sharedcare.storage.oauth import OAuthStore, TokenRow, now

REALM = 'Bearer realm="sharedcare"'
# RFC 6750 §2.1: b64token characters.
_B64TOKEN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def digest(value: str) -> str:
    """SHA-256 hex of a secret: what is stored instead of it (the values are 256 random bits, so a
    slow hash would add nothing)."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


class TokenService:
    """Issues access (and refresh) tokens and authenticates bearer tokens.

    Build one per process: `TokenService(OAuthStore(services.engine), settings)`.
    """

    def __init__(self, store: OAuthStore, settings: Settings) -> None:
        self.store = store
        self.access_seconds = settings.access_token_seconds
        self.refresh_seconds = settings.refresh_token_seconds

    def authenticate(self, authorization: str | None) -> Caller:
        """The Caller of a live access token in an `Authorization: Bearer ...` header.

        Raises Unauthorized (401) with a `WWW-Authenticate` challenge otherwise; the challenge adds
        `error="invalid_token"` when a bearer token was presented (malformed, unknown, expired or
        revoked), and nothing when there was none (no header, or another scheme).
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":  # no token at all, or another scheme: a plain challenge
            raise Unauthorized("this request needs a bearer token", headers={"WWW-Authenticate": REALM})
        token = token.strip()
        invalid = {"WWW-Authenticate": REALM + ', error="invalid_token"'}
        if not token or not set(token) <= _B64TOKEN or len(token) > 512:
            raise Unauthorized("the bearer token is malformed", headers=invalid)
        context = self.store.access_context(digest(token), now())
        if context is None:
            raise Unauthorized("the bearer token is not valid (unknown, expired or revoked)", headers=invalid)
        return Caller.from_json(context)

    def issue(self, caller: Caller, client_id: str, scope: str, *, family: str | None = None,
              refresh: bool = False, refresh_expires: str | None = None) -> Issued:
        """Mint an access token (and a refresh token when asked) carrying `caller`.

        Tokens of one `family` are revoked together; a refresh token expires at `refresh_expires`
        (rotation passes the first one's end on) or `refresh_token_seconds` from now.
        """
        family = family or str(uuid.uuid4())
        access = new_secret()
        context, issued = caller.to_json(), now()
        rows = [TokenRow(digest(access), "access", family, client_id, scope, context, issued,
                         now(self.access_seconds))]
        refresh_token = None
        if refresh:
            refresh_token = new_secret()
            rows.append(TokenRow(digest(refresh_token), "refresh", family, client_id, scope, context, issued,
                                 refresh_expires or now(self.refresh_seconds)))
        self.store.add_tokens(rows)
        return Issued(access, self.access_seconds, scope, refresh_token)

    def issue_for(self, caller: Caller, client_id: str, scope: str) -> str:
        """An access token for `caller`, minted directly: for the node's own use (tests, the demo)
        only; it bypasses client authentication and scope negotiation."""
        return self.issue(caller, client_id, scope).access_token
