"""The browser side of the authorization code flow: the authorization request, local-account sign-in,
web sessions, role profile choice and CSRF.

- A session is a random cookie value; only its SHA-256 is stored (`web_session`), with the caller
  context chosen at sign-in and a per-session CSRF token every form must send back.
- A staff account with several role profiles chooses one after signing in (like NHS CIS2 role
  selection); until then the session grants nothing. One with a single profile takes it.
- A patient's session carries their NHS number and the id of their Patient record, when there is one.
- A person vouched for by an external identity provider (`oidc.py`: NHS CIS2, NHS login) gets the
  same kind of session, under the username `<provider>:<subject>` (`cis2:…`, `nhslogin:…`), which no
  local account can have (local usernames hold no colon). Their role profiles and the provider's
  assurance level are kept in the session's context beside the caller, since there is no account.
- Errors in an authorization request go back to the client's redirect URI, except when the client
  or the redirect URI itself is wrong: then the user sees an error page and is never redirected.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

from sharedcare.access import accounts, assurance
from sharedcare.access import scopes as smart
from sharedcare.access.context import Caller, system_caller
from sharedcare.access.oauth import AuthorizationServer, endpoints, for_account, grants_resources, narrow
from sharedcare.access.oidc import ExternalIdentity
from sharedcare.access.tokens import digest
from sharedcare.fhir.search import query as search_query
from sharedcare.settings import Settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.oauth import ClientRow, OAuthStore, SessionRow, now
from sharedcare.storage.repository import Repository

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA-256), unpadded
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")
MAX_STATE = 1024
EXTERNAL = "external"  # the key of an external sign-in's role profiles and assurance in the session context


def is_external(username: str) -> bool:
    """Whether a session's username is an external identity (`cis2:…`), not a local account."""
    return ":" in username


def cookie_names(settings: Settings) -> tuple[str, str, bool]:
    """(session cookie, sign-in form CSRF cookie, secure): `__Host-` names on https, which the
    browser keeps only when Secure, host-only and for path /."""
    secure = settings.base_url.startswith("https://")
    prefix = "__Host-" if secure else ""
    return f"{prefix}sharedcare_session", f"{prefix}sharedcare_csrf", secure


def new_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """Whether a form's CSRF token is the expected one (constant time; both must be present)."""
    return bool(expected and given and _TOKEN.fullmatch(given) and secrets.compare_digest(expected, given))


# The pages of this server a sign-in may return to: an authorization request, or a staff page.
_NEXT = re.compile(r"/auth/authorize\?.*|/mpi/review(/[A-Za-z0-9.-]{1,64})?(\?[A-Za-z0-9=&%._-]*)?"
                   r"|/admin/(feeds|inbox)(/[0-9]{1,18})?(\?[A-Za-z0-9=&%._-]*)?")


def safe_next(value: str | None) -> str | None:
    """Where to go after signing in: only back to an authorization request or a staff page on this
    server (never another site: an open redirect would help a phishing page)."""
    return value if value and _NEXT.fullmatch(value) and "\\" not in value else None


def redirect_to(uri: str, params: dict[str, str | None]) -> str:
    """`uri` with `params` added to its query (None values left out)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


class AuthorizeError(Exception):
    """An authorization request naming an unknown client or an unregistered redirect URI: shown as
    an error page, never redirected."""


class AuthorizeRedirect(Exception):
    """An authorization request error returned to the client's redirect URI (`location`)."""

    def __init__(self, location: str) -> None:
        super().__init__("authorization error")
        self.location = location


@dataclass(frozen=True)
class AuthorizeRequest:
    client: ClientRow
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    aal: int | None = None  # the assurance `acr_values` asks for (the lowest level it names)


@dataclass(frozen=True)
class Session:
    session_hash: str
    username: str
    caller: Caller
    csrf: str
    roles: tuple[tuple[str, str], ...]  # a staff account's role profiles (organisation, job role)
    assurance: str | None = None  # an external provider's assurance level (CIS2 acr, NHS login vot)

    @property
    def needs_role(self) -> bool:
        return self.caller.kind == "user" and self.caller.role is None


class SignIn:
    def __init__(self, store: OAuthStore, account_store: AccountStore, repo: Repository,
                 server: AuthorizationServer, settings: Settings) -> None:
        self.store = store
        self.accounts = account_store
        self.repo = repo
        self.server = server
        self.fhir = endpoints(settings).fhir
        self.session_seconds = settings.session_seconds
        self.local_aal = settings.local_account_aal

    # the authorization request ---------------------------------------------------------------------

    def parse_authorize(self, params: list[tuple[str, str]]) -> AuthorizeRequest:
        """Check an authorization request; AuthorizeError or AuthorizeRedirect when it is wrong."""
        names = [k for k, _ in params]
        repeated = {k for k in names if names.count(k) > 1}
        p = dict(params)
        client = self.store.client(p["client_id"]) if p.get("client_id") and len(p["client_id"]) <= 64 else None
        if client is None or client.disabled or client.kind != "app" or "client_id" in repeated:
            raise AuthorizeError("The application asking you to sign in is not registered here.")
        redirect_uri = p.get("redirect_uri", "")
        if "redirect_uri" in repeated or redirect_uri not in client.redirect_uris:
            raise AuthorizeError("The application sent a return address that is not registered for it.")
        state = p.get("state")

        def fail(error: str, description: str) -> AuthorizeRedirect:
            return AuthorizeRedirect(redirect_to(redirect_uri, {"error": error, "error_description": description,
                                                                "state": state}))
        if repeated:
            raise fail("invalid_request", "a parameter is repeated")
        if p.get("response_type") != "code":
            raise fail("unsupported_response_type", "response_type must be code")
        if not state or len(state) > MAX_STATE:
            raise fail("invalid_request", f"state is required (at most {MAX_STATE} characters)")
        if p.get("code_challenge_method") != "S256" or not _CHALLENGE.fullmatch(p.get("code_challenge", "")):
            raise fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
        if p.get("aud", "").rstrip("/") != self.fhir:
            raise fail("invalid_request", "aud must be this server's FHIR base URL")
        try:
            allowed = narrow(p.get("scope", ""), client.scope)
        except smart.ScopeError:
            raise fail("invalid_scope", "a requested scope is malformed") from None
        if not grants_resources(allowed):
            raise fail("invalid_scope", "none of the requested scopes is registered for this application")
        levels = [n for n in (assurance.level(v) for v in p.get("acr_values", "").split()) if n is not None]
        return AuthorizeRequest(client, redirect_uri, p.get("scope", ""), state, p["code_challenge"],
                                min(levels) if levels else None)

    @staticmethod
    def assurance_short(request: AuthorizeRequest, session: Session) -> bool:
        """Whether the application asked (`acr_values`) for a stronger sign-in than this session's."""
        caller = session.caller
        return request.aal is not None and caller.kind == "user" and (caller.aal or 0) < request.aal

    def grant(self, request: AuthorizeRequest, session: Session) -> str:
        """Issue a code for the signed-in person; the redirect location (with code and state)."""
        granted = for_account(session.caller.kind, narrow(request.scope, request.client.scope))
        if not grants_resources(granted):
            raise AuthorizeRedirect(redirect_to(request.redirect_uri, {
                "error": "invalid_scope", "error_description": "none of the requested scopes is open to this account",
                "state": request.state}))
        caller = dataclasses.replace(session.caller, scopes=tuple(granted), client_id=request.client.client_id)
        code = self.server.issue_code(request.client, request.redirect_uri, request.code_challenge,
                                      " ".join(granted), caller)
        return redirect_to(request.redirect_uri, {"code": code, "state": request.state})

    # sessions --------------------------------------------------------------------------------------

    def sign_in(self, username: str, password: str) -> tuple[str, Session] | None:
        """A new session (cookie value, session) for the right password; None otherwise."""
        account = accounts.authenticate(self.accounts, username, password)
        if account is None:
            return None
        if account.kind == "patient":
            caller = Caller(kind="patient", agent_id=f"patient:{account.username}", nhs_number=account.nhs_number,
                            patient=self._patient_id(account.nhs_number))
        else:
            only = account.roles[0] if len(account.roles) == 1 else (None, None)
            caller = Caller(kind="user", agent_id=f"user:{account.username}", organisation=only[0], role=only[1],
                            aal=self.local_aal)
        return self._start(account.username, caller, account.roles)

    def sign_in_external(self, identity: ExternalIdentity) -> tuple[str, Session]:
        """A new session (cookie value, session) for a person an external provider vouched for: a
        patient with their NHS number (and Patient record), or staff in the role profile chosen at the
        provider, or the only one they hold; with several and none chosen, they choose here."""
        if identity.kind == "patient":
            caller = Caller(kind="patient", agent_id=identity.agent_id, nhs_number=identity.nhs_number,
                            patient=self._patient_id(identity.nhs_number))
        else:
            organisation, role = identity.selected or (None, None)
            caller = Caller(kind="user", agent_id=identity.agent_id, organisation=organisation, role=role,
                            aal=assurance.level(identity.assurance))
        return self._start(identity.agent_id, caller, identity.roles, identity.assurance)

    def _start(self, username: str, caller: Caller, roles: tuple[tuple[str, str], ...],
               assurance: str | None = None) -> tuple[str, Session]:
        value = new_token()
        row = SessionRow(digest(value), username, _context(username, caller, roles, assurance), new_token(), now(),
                         now(self.session_seconds))
        self.store.add_session(row)
        return value, Session(row.session_hash, username, caller, row.csrf, roles, assurance)

    def _patient_id(self, nhs_number: str | None) -> str | None:
        if not nhs_number:
            return None
        items = [("identifier", f"{NHS_NUMBER}|{nhs_number}")]
        query = search_query.parse("Patient", items, default_count=1, max_count=1)
        page = self.repo.search(system_caller(), query, urlencode(items))
        return page.items[0].res_id if page.items else None

    def session(self, cookie: str | None) -> Session | None:
        """The live session of a cookie value, for an account that is still enabled; None otherwise.
        A role profile the account no longer holds is dropped (the person chooses again)."""
        if not cookie or not _TOKEN.fullmatch(cookie):
            return None
        row = self.store.session(digest(cookie), now())
        if row is None:
            return None
        assurance: str | None = None
        if is_external(row.username):  # no account: what the provider said at sign-in, kept with the session
            extra: dict[str, Any] = orjson.loads(row.context).get(EXTERNAL) or {}
            roles = tuple((str(o), str(r)) for o, r in extra.get("roles") or ())
            assurance = extra.get("assurance")
        else:
            account = self.accounts.get(row.username)
            if account is None or account.disabled:
                return None
            roles = account.roles
        caller = Caller.from_json(row.context)
        if caller.kind == "user" and caller.role and (caller.organisation, caller.role) not in roles:
            caller = dataclasses.replace(caller, organisation=None, role=None)
        return Session(row.session_hash, row.username, caller, row.csrf, roles, assurance)

    def choose_role(self, session: Session, organisation: str, role: str) -> bool:
        """Act in one of the account's role profiles from now on; False when it holds no such profile."""
        if session.caller.kind != "user" or (organisation, role) not in session.roles:
            return False
        caller = dataclasses.replace(session.caller, organisation=organisation, role=role)
        self.store.set_session_context(session.session_hash,
                                       _context(session.username, caller, session.roles, session.assurance))
        return True

    def sign_out(self, session: Session) -> None:
        self.store.revoke_session(session.session_hash)


def _context(username: str, caller: Caller, roles: tuple[tuple[str, str], ...], assurance: str | None) -> str:
    """What a session row keeps: the caller, and for an external sign-in its role profiles and
    assurance level too (`Caller.from_json` ignores the extra key)."""
    if not is_external(username):
        return caller.to_json()
    data = orjson.loads(caller.to_json())
    data[EXTERNAL] = {"roles": [list(r) for r in roles], "assurance": assurance}
    return orjson.dumps(data).decode()
