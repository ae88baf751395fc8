"""SMART on FHIR clients, issued tokens, authorization codes and web sessions: the only SQL for
`oauth_client`, `oauth_token`, `oauth_code` and `web_session`.

Every value handed out (client secret, token, code, session cookie) arrives here already hashed
(SHA-256 hex); nothing in this module sees a secret. Times are UTC ISO strings of one fixed width
(`now()`), so they compare correctly as text on both backends.

One-use values are claimed with a conditional UPDATE (`... WHERE used = false`) and its row count,
so two requests racing with the same code or refresh token cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sharedcare.storage import dialects
from sharedcare.storage.tables import oauth_client, oauth_code, oauth_token, web_session

# A private_key_jwt assertion's `jti` is kept as an `oauth_token` row of this kind until the
# assertion expires: the primary key makes a replay fail, across every worker process.
JTI = "jti"


def now(delta_seconds: float = 0) -> str:
    """UTC now (plus delta) as fixed-width text: 2026-01-02T03:04:05.123456+00:00."""
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).isoformat(timespec="microseconds")


def at(epoch_seconds: float) -> str:
    """A POSIX time in the same fixed-width text."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="microseconds")


class ClientExists(Exception):
    """A client with this id is already registered (nothing was changed)."""


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    name: str
    kind: str  # system, app
    auth_method: str  # client_secret_basic, client_secret_post, private_key_jwt, none
    secret_hash: str | None
    jwks: str | None
    redirect_uris: tuple[str, ...]
    scope: str
    organisation: str | None
    created: str
    disabled: bool


@dataclass(frozen=True)
class TokenRow:
    token_hash: str
    kind: str  # access, refresh (or JTI)
    family: str
    client_id: str
    scope: str
    context: str
    issued: str
    expires: str
    revoked: bool = False
    used: bool = False


@dataclass(frozen=True)
class CodeRow:
    code_hash: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    context: str
    expires: str
    used: bool = False


@dataclass(frozen=True)
class SessionRow:
    session_hash: str
    username: str
    context: str
    csrf: str
    created: str
    expires: str
    revoked: bool = False


def _client(r: Row[Any]) -> ClientRow:
    m = r._mapping
    return ClientRow(m["client_id"], m["name"], m["kind"], m["auth_method"], m["secret_hash"], m["jwks"],
                     tuple((m["redirect_uris"] or "").split()), m["scope"], m["organisation"], m["created"],
                     bool(m["disabled"]))


class OAuthStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._access: dialects.RawStatement | None = None

    # clients -------------------------------------------------------------------------------------

    def add_client(self, row: ClientRow) -> None:
        """Register a client (ClientExists when the id is taken; nothing changes then)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(oauth_client).values(
                    client_id=row.client_id, name=row.name, kind=row.kind, auth_method=row.auth_method,
                    secret_hash=row.secret_hash, jwks=row.jwks, redirect_uris=" ".join(row.redirect_uris) or None,
                    scope=row.scope, organisation=row.organisation, created=row.created, disabled=row.disabled))
        except IntegrityError as exc:
            raise ClientExists(row.client_id) from exc

    def client(self, client_id: str) -> ClientRow | None:
        """The registered client, or None. A client id as a caller sent it may hold anything; one with
        a NUL character names no client (and PostgreSQL text could not even compare it)."""
        if "\x00" in client_id or len(client_id) > 64:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(select(oauth_client).where(oauth_client.c.client_id == client_id)).first()
        return _client(r) if r is not None else None

    def clients(self) -> list[ClientRow]:
        with self.engine.connect() as conn:
            return [_client(r) for r in conn.execute(select(oauth_client).order_by(oauth_client.c.client_id))]

    def disable_client(self, client_id: str) -> bool:
        """Disable a client and revoke every token issued to it; False when there is no such client."""
        with self.engine.begin() as conn:
            found = conn.execute(update(oauth_client).where(oauth_client.c.client_id == client_id)
                                 .values(disabled=True)).rowcount
            conn.execute(update(oauth_token).where(oauth_token.c.client_id == client_id).values(revoked=True))
        return bool(found)

    # tokens --------------------------------------------------------------------------------------

    def add_tokens(self, rows: list[TokenRow]) -> None:
        """Store issued tokens together (an access token and its refresh token, or neither)."""
        with self.engine.begin() as conn:
            conn.execute(insert(oauth_token), [
                {"token_hash": r.token_hash, "kind": r.kind, "family": r.family, "client_id": r.client_id,
                 "scope": r.scope, "context": r.context, "issued": r.issued, "expires": r.expires,
                 "revoked": r.revoked, "used": r.used} for r in rows])

    def access_context(self, token_hash: str, at_time: str) -> str | None:
        """The caller context of a live access token: one SELECT on the primary key, compiled once and
        run on the driver (it runs on every API request; a connection lost to a database restart is
        retried once on a fresh one)."""
        if self._access is None:
            self._access = dialects.RawStatement(self.engine, select(oauth_token.c.context).where(
                oauth_token.c.token_hash == bindparam("h"), oauth_token.c.kind == "access",
                oauth_token.c.revoked.is_(False), oauth_token.c.expires > bindparam("t")))
        row = self._access.fetch_one(self.engine, {"h": token_hash, "t": at_time})
        return str(row[0]) if row is not None else None

    def token(self, token_hash: str) -> TokenRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(oauth_token).where(oauth_token.c.token_hash == token_hash)).first()
        return TokenRow(**{**r._mapping, "revoked": bool(r.revoked), "used": bool(r.used)}) if r else None

    def use_refresh(self, token_hash: str) -> bool:
        """Mark an unused, unrevoked refresh token used; False when it was already used or revoked."""
        with self.engine.begin() as conn:
            return conn.execute(update(oauth_token).where(
                oauth_token.c.token_hash == token_hash, oauth_token.c.kind == "refresh",
                oauth_token.c.used.is_(False), oauth_token.c.revoked.is_(False)).values(used=True)).rowcount == 1

    def revoke_token(self, token_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(oauth_token).where(oauth_token.c.token_hash == token_hash).values(revoked=True))

    def live_tokens_naming(self, agent_id: str) -> list[TokenRow]:
        """Access and refresh tokens, neither revoked nor expired, whose caller context may be
        `agent_id`'s (a text match: callers check the parsed context)."""
        pattern = '%"agent_id":"' + agent_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + '"%'
        with self.engine.connect() as conn:
            rows = conn.execute(select(oauth_token).where(
                oauth_token.c.kind.in_(["access", "refresh"]), oauth_token.c.revoked.is_(False),
                oauth_token.c.expires > now(), oauth_token.c.context.like(pattern, escape="\\"))).all()
        return [TokenRow(**{**r._mapping, "revoked": bool(r.revoked), "used": bool(r.used)}) for r in rows]

    def revoke_tokens(self, token_hashes: list[str]) -> None:
        if token_hashes:
            with self.engine.begin() as conn:
                conn.execute(update(oauth_token).where(oauth_token.c.token_hash.in_(token_hashes)).values(revoked=True))

    def revoke_sessions_of(self, username: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(update(web_session).where(web_session.c.username == username,
                                                          web_session.c.revoked.is_(False))
                                .values(revoked=True)).rowcount

    def revoke_family(self, family: str) -> int:
        """Revoke every token of one family (one sign-in, or one authorization code); how many."""
        with self.engine.begin() as conn:
            return conn.execute(update(oauth_token).where(oauth_token.c.family == family,
                                                          oauth_token.c.kind != JTI).values(revoked=True)).rowcount

    def claim_jti(self, key_hash: str, client_id: str, expires: str) -> bool:
        """Remember an assertion id until it expires; False when it was seen and has not expired."""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(oauth_token).where(oauth_token.c.token_hash == key_hash,
                                                       oauth_token.c.kind == JTI, oauth_token.c.expires <= now()))
                conn.execute(insert(oauth_token).values(
                    token_hash=key_hash, kind=JTI, family=key_hash[:36], client_id=client_id, scope="", context="{}",
                    issued=now(), expires=expires, revoked=True, used=True))
        except IntegrityError:
            return False
        return True

    # authorization codes -------------------------------------------------------------------------

    def add_code(self, row: CodeRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(oauth_code).values(
                code_hash=row.code_hash, client_id=row.client_id, redirect_uri=row.redirect_uri,
                code_challenge=row.code_challenge, scope=row.scope, context=row.context, expires=row.expires,
                used=row.used))

    def code(self, code_hash: str) -> CodeRow | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(oauth_code).where(oauth_code.c.code_hash == code_hash)).first()
        return CodeRow(**{**r._mapping, "used": bool(r.used)}) if r else None

    def use_code(self, code_hash: str) -> bool:
        """Mark an unused code used; False when it had been used already."""
        with self.engine.begin() as conn:
            return conn.execute(update(oauth_code).where(oauth_code.c.code_hash == code_hash,
                                                         oauth_code.c.used.is_(False)).values(used=True)).rowcount == 1

    # web sessions --------------------------------------------------------------------------------

    def add_session(self, row: SessionRow) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(web_session).values(
                session_hash=row.session_hash, username=row.username, context=row.context, csrf=row.csrf,
                created=row.created, expires=row.expires, revoked=row.revoked))

    def session(self, session_hash: str, at_time: str) -> SessionRow | None:
        """A session that is neither revoked nor expired."""
        with self.engine.connect() as conn:
            r = conn.execute(select(web_session).where(
                web_session.c.session_hash == session_hash, web_session.c.revoked.is_(False),
                web_session.c.expires > at_time)).first()
        return SessionRow(**{**r._mapping, "revoked": bool(r.revoked)}) if r else None

    def set_session_context(self, session_hash: str, context: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(web_session).where(web_session.c.session_hash == session_hash)
                         .values(context=context))

    def revoke_session(self, session_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(web_session).where(web_session.c.session_hash == session_hash).values(revoked=True))

    # housekeeping --------------------------------------------------------------------------------

    def purge_expired(self, before: str | None = None) -> int:
        """Delete tokens, codes and sessions that expired before `before` (default now); how many.
        Expired rows are refused anyway; this only keeps the tables small."""
        cut = before or now()
        with self.engine.begin() as conn:
            return sum(conn.execute(delete(t).where(t.c.expires < cut)).rowcount
                       for t in (oauth_token, oauth_code, web_session))
