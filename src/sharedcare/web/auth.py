"""Routes of the SMART authorization server and local sign-in. Each parses the request, calls one
service (`access/oauth.py`, `access/signin.py`) in a worker thread, and answers.

    GET      /fhir/.well-known/smart-configuration   discovery (public JSON)
    POST     /auth/token                             token endpoint (RFC 6749; JSON, no-store)
    POST     /auth/revoke                            token revocation (RFC 7009)
    GET      /auth/authorize                         authorization request (code, PKCE S256)
    GET/POST /auth/login                             local sign-in
    GET      /auth/oidc/{provider}/start             sign in through NHS CIS2 (staff) or NHS login (patient)
    GET      /auth/oidc/{provider}/callback          the identity provider's answer
    GET/POST /auth/role                              role profile choice (staff with several)
    GET      /auth/session                           who is signed in
    POST     /auth/logout                            sign out

Every POST form carries a CSRF token: the sign-in form a double-submit cookie (there is no session
yet), the others the session's own token. Pages are plain escaped HTML with no script. An external
sign-in is bound to the browser by `state` in a short-lived cookie instead (access/oidc.py).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sharedcare.access.context import Caller
from sharedcare.access.oauth import AuthorizationServer, OAuthError, claimed_client_id, smart_configuration
from sharedcare.access.oidc import (
    PENDING_SECONDS,
    PendingSignIn,
    ProviderUnavailable,
    SignInError,
    SignInFailed,
    local_path,
    pending_cookie_name,
    relying_parties,
)
from sharedcare.access.ratelimit import RateLimiter, key
from sharedcare.access.roles import JOB_ROLES
from sharedcare.access.signin import (
    AuthorizeError,
    AuthorizeRedirect,
    Session,
    SignIn,
    cookie_names,
    csrf_ok,
    new_token,
    safe_next,
)
from sharedcare.access.tokens import TokenService
from sharedcare.settings import Settings
from sharedcare.storage.accounts import AccountStore
from sharedcare.storage.oauth import OAuthStore
from sharedcare.web import openapi

if TYPE_CHECKING:
    from sharedcare.app import Services

log = logging.getLogger("sharedcare.access")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
JSON_HEADERS = {**SECURITY_HEADERS, "Pragma": "no-cache"}
MAX_FORM_BYTES = 64 * 1024
_pages = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                     autoescape=select_autoescape(default=True, default_for_string=True))


class FormError(Exception):
    """A POST body that is not a small, well-formed urlencoded form with each field once."""


async def read_form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise FormError("the body must be application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form is malformed") from None
    if len({k for k, _ in pairs}) != len(pairs):
        raise FormError("a parameter is repeated")
    return dict(pairs)


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_pages.get_template(template).render(**context), status, headers=SECURITY_HEADERS)


def redirect(location: str, status: int = 303) -> RedirectResponse:
    return RedirectResponse(location, status, headers=SECURITY_HEADERS)


def oauth_error(exc: OAuthError, retry_after: int | None = None) -> JSONResponse:
    headers = {**JSON_HEADERS, **exc.headers}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(exc.to_json(), exc.status, headers=headers)


def forbidden() -> HTMLResponse:
    return page("message.html", 403, title="This form has expired",
                message="The form was not sent from this site's current page. Go back, reload it and try again.")


def role_name(code: str | None) -> str | None:
    return JOB_ROLES[code].display if code in JOB_ROLES else code


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def session_of(signin: SignIn, request: Request, cookie: str) -> Session | None:
    """The live session the request's `cookie` names, or None (read in a worker thread)."""
    return await run_in_threadpool(signin.session, request.cookies.get(cookie))


class StaffPages:
    """What the staff pages (web/review.py, web/feeds.py) share about who is using them: the session
    the browser's cookie names, the caller a page acts as, the way to sign in and come back, and a
    POST's form read and checked against the session's CSRF token. A page's routes extend it, naming
    the scopes their caller acts with."""

    def __init__(self, signin: SignIn, settings: Settings, scopes: tuple[str, ...]) -> None:
        self.signin = signin
        self.scopes = scopes
        self.session_cookie = cookie_names(settings)[0]

    async def session(self, request: Request) -> Session | None:
        """The live session the request's session cookie names, or None (read in a worker thread)."""
        return await session_of(self.signin, request, self.session_cookie)

    def caller(self, session: Session, request: Request) -> Caller:
        """Who a page acts as: the session's caller with the pages' scopes only, from the client's address."""
        return dataclasses.replace(session.caller, scopes=self.scopes).with_ip(client_ip(request))

    def sign_in(self, request: Request, session: Session | None) -> Response:
        """To the sign-in page (or, signed in without a role profile, to choose one), then back here."""
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/auth/{'role' if session is not None else 'login'}?{urlencode({'next': here})}")

    async def posted(self, request: Request, *, unreadable: str) -> tuple[Session, dict[str, str]] | Response:
        """A POST's session and form, or the answer to give instead, checked in this order: with no
        session, to sign in; a form that cannot be read (`read_form`), a 400 page titled `unreadable`;
        a form without the session's CSRF token, 403 (`forbidden`); signed in without a role profile,
        to choose one."""
        session = await self.session(request)
        if session is None:
            return self.sign_in(request, session)
        try:
            form = await read_form(request)
        except FormError:
            return page("message.html", 400, title=unreadable,
                        message="The form could not be read. Go back, reload the page and try again.")
        if not csrf_ok(session.csrf, form.get("csrf")):
            return forbidden()
        if session.needs_role:
            return self.sign_in(request, session)
        return session, form


class AuthRoutes:
    def __init__(self, services: Services, settings: Settings) -> None:
        store = OAuthStore(services.engine)
        self.settings = settings
        self.tokens = TokenService(store, settings)
        self.server = AuthorizationServer(store, self.tokens, settings)
        self.signin = SignIn(store, AccountStore(services.engine), services.repo, self.server, settings)
        self.limiter = RateLimiter(settings.auth_failures_per_minute)
        self.session_cookie, self.csrf_cookie, self.secure = cookie_names(settings)
        self.providers = relying_parties(settings)
        self.oidc_cookie = pending_cookie_name(self.secure)

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(smart_configuration(self.settings),
                            headers={"Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff"})

    # token endpoint --------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        return await self._oauth(request, self.server.token)

    async def revoke(self, request: Request) -> Response:
        return await self._oauth(request, self.server.revoke)

    async def _oauth(self, request: Request, action: Any) -> Response:
        authorization = request.headers.get("authorization")
        try:
            form = await read_form(request)
        except FormError as exc:
            return oauth_error(OAuthError("invalid_request", str(exc)))
        claimed = claimed_client_id(form, authorization)
        keys = [key("ip", client_ip(request))] + ([key("client", claimed)] if claimed else [])
        wait = self.limiter.retry_after(*keys)
        if wait:
            return oauth_error(OAuthError("temporarily_unavailable", "too many failed requests; retry later", 429),
                               wait)
        try:
            body = await run_in_threadpool(action, form, authorization)
        except OAuthError as exc:
            self.limiter.failed(*keys)
            log.info("token endpoint refused a request (%s)", exc.error)
            return oauth_error(exc)
        return JSONResponse(body if body is not None else {}, headers=JSON_HEADERS)

    # authorization request and sign-in ------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        try:
            auth_request = await run_in_threadpool(self.signin.parse_authorize, request.query_params.multi_items())
        except AuthorizeError as exc:
            return page("message.html", 400, title="Sign-in problem", message=str(exc))
        except AuthorizeRedirect as exc:
            return redirect(exc.location, 302)
        session = await self._session(request)
        here = urlencode({"next": f"{request.url.path}?{request.url.query}"})
        if session is None:
            return redirect(f"/auth/login?{here}")
        if session.needs_role:
            return redirect(f"/auth/role?{here}")
        if self.signin.assurance_short(auth_request, session):
            again = urlencode({"next": f"{request.url.path}?{request.url.query}", "aal": auth_request.aal})
            links = [{"href": f"/auth/oidc/staff/start?{again}", "label": f"Sign in again with {rp.label}"}
                     for name, rp in self.providers.items() if name == "staff"]
            return page("message.html", 401, title="A stronger sign-in is needed", links=links, message=(
                f"This application needs you to sign in with a stronger method (AAL{auth_request.aal}, such as a "
                "smartcard) than you used. Sign in again with one."))
        try:
            location = await run_in_threadpool(self.signin.grant, auth_request, session)
        except AuthorizeRedirect as exc:
            location = exc.location
        return redirect(location, 302)

    async def login_form(self, request: Request) -> Response:
        csrf = request.cookies.get(self.csrf_cookie) or ""
        csrf = csrf if csrf_ok(csrf, csrf) else new_token()
        return self._login_page(csrf, safe_next(request.query_params.get("next")))

    def _login_page(self, csrf: str, next_url: str | None, status: int = 200, error: str | None = None) -> Response:
        query = f"?{urlencode({'next': next_url})}" if next_url else ""
        providers = [{"href": f"/auth/oidc/{name}/start{query}", "label": rp.label}
                     for name, rp in self.providers.items()]
        response = page("login.html", status, title="Sign in", csrf=csrf, next=next_url, error=error,
                        providers=providers)
        response.set_cookie(self.csrf_cookie, csrf, httponly=True, secure=self.secure, samesite="lax", path="/")
        return response

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError:
            return page("message.html", 400, title="Sign-in problem", message="The form could not be read.")
        csrf = request.cookies.get(self.csrf_cookie) or ""
        if not csrf_ok(csrf, form.get("csrf")):
            return forbidden()
        username, next_url = form.get("username", "").strip().lower(), safe_next(form.get("next"))
        keys = (key("ip", client_ip(request)), key("user", username))
        wait = self.limiter.retry_after(*keys)
        if wait:
            refused = page("message.html", 429, title="Too many attempts",
                           message="There have been too many failed sign-ins. Wait a minute and try again.")
            refused.headers["Retry-After"] = str(wait)
            return refused
        result = await run_in_threadpool(self.signin.sign_in, username, form.get("password", ""))
        if result is None:
            self.limiter.failed(*keys)
            log.info("sign-in refused")
            return self._login_page(csrf, next_url, 401, "The username or password is not right.")
        value, session = result
        old = await self._session(request)
        if old is not None:
            await run_in_threadpool(self.signin.sign_out, old)
        target = next_url or "/auth/session"
        response = redirect(f"/auth/role?{urlencode({'next': target})}" if session.needs_role else target)
        response.set_cookie(self.session_cookie, value, max_age=self.settings.session_seconds, httponly=True,
                            secure=self.secure, samesite="lax", path="/")
        return response

    async def role_form(self, request: Request) -> Response:
        session = await self._session(request)
        next_url = safe_next(request.query_params.get("next"))
        if session is None:
            return redirect("/auth/login" + (f"?{urlencode({'next': next_url})}" if next_url else ""))
        return self._roles_page(session, next_url)

    def _roles_page(self, session: Session, next_url: str | None, status: int = 200,
                    error: str | None = None) -> Response:
        profiles = [{"value": f"{org}|{role}", "organisation": org, "role": role, "role_name": role_name(role)}
                    for org, role in session.roles]
        return page("roles.html", status, title="Choose your role", profiles=profiles, csrf=session.csrf,
                    next=next_url, error=error)

    async def choose_role(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError:
            return forbidden()
        session = await self._session(request)
        if session is None or not csrf_ok(session.csrf, form.get("csrf")):
            return forbidden()
        next_url = safe_next(form.get("next"))
        organisation, _, role = form.get("profile", "").partition("|")
        if not await run_in_threadpool(self.signin.choose_role, session, organisation, role):
            return self._roles_page(session, next_url, 400, "Choose one of the roles listed.")
        return redirect(next_url or "/auth/session")

    async def session_page(self, request: Request) -> Response:
        session = await self._session(request)
        if session is None:
            return redirect("/auth/login")
        caller = session.caller
        return page("session.html", title="Signed in", username=session.username, role=caller.role,
                    role_name=role_name(caller.role), assurance=session.assurance,
                    organisation=caller.organisation, needs_role=session.needs_role, csrf=session.csrf)

    async def logout(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError:
            return forbidden()
        session = await self._session(request)
        if session is not None:
            if not csrf_ok(session.csrf, form.get("csrf")):
                return forbidden()
            await run_in_threadpool(self.signin.sign_out, session)
        response = page("message.html", title="Signed out", message="You have signed out.", back="/auth/login")
        response.delete_cookie(self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    # external identity providers (NHS CIS2, NHS login) --------------------------------------------

    async def oidc_start(self, request: Request) -> Response:
        rp = self.providers.get(request.path_params["provider"])
        if rp is None:
            return page("message.html", 404, title="Page not found", message="This way of signing in is not set up.")
        try:
            asked = request.query_params.get("aal")
            aal = int(asked) if asked in ("1", "2", "3") else None  # step-up: ask the provider for this level
            location, pending = await run_in_threadpool(rp.start, local_path(request.query_params.get("next")), aal)
        except SignInError as exc:
            return self._oidc_refused(request, exc)
        response = redirect(location, 302)
        response.set_cookie(self.oidc_cookie, pending.to_cookie(), max_age=PENDING_SECONDS, httponly=True,
                            secure=self.secure, samesite="lax", path="/")
        return response

    async def oidc_callback(self, request: Request) -> Response:
        name = request.path_params["provider"]
        rp = self.providers.get(name)
        if rp is None:
            return page("message.html", 404, title="Page not found", message="This way of signing in is not set up.")
        ip = key("ip", client_ip(request))
        wait = self.limiter.retry_after(ip)
        if wait:
            refused = page("message.html", 429, title="Too many attempts",
                           message="There have been too many failed sign-ins. Wait a minute and try again.")
            refused.headers["Retry-After"] = str(wait)
            return refused
        pending = PendingSignIn.from_cookie(request.cookies.get(self.oidc_cookie))
        items = request.query_params.multi_items()
        try:
            if len({k for k, _ in items}) != len(items):
                raise SignInFailed(f"The sign-in with {rp.label} could not be completed. Go back and try again.",
                                   "a parameter is repeated")
            identity = await run_in_threadpool(rp.finish, pending, dict(items))
            value, session = await run_in_threadpool(self.signin.sign_in_external, identity)
        except SignInError as exc:
            if isinstance(exc, SignInFailed):  # an answer that could not be trusted, not a refusal
                self.limiter.failed(ip)
            return self._oidc_refused(request, exc)
        old = await self._session(request)
        if old is not None:
            await run_in_threadpool(self.signin.sign_out, old)
        log.info("external sign-in (%s)", name)
        target = (pending.next if pending else None) or "/auth/session"
        response = redirect(f"/auth/role?{urlencode({'next': target})}" if session.needs_role else target)
        response.set_cookie(self.session_cookie, value, max_age=self.settings.session_seconds, httponly=True,
                            secure=self.secure, samesite="lax", path="/")
        response.delete_cookie(self.oidc_cookie, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    def _oidc_refused(self, request: Request, exc: SignInError) -> Response:
        """The page for an external sign-in that made no session (the browser's own session, if it
        has one, is left as it was)."""
        provider = request.path_params["provider"]
        if isinstance(exc, ProviderUnavailable):
            log.warning("external sign-in unavailable (%s: %s)", provider, exc.reason)
        else:
            log.info("external sign-in refused (%s: %s)", provider, exc.reason)
        response = page("message.html", exc.status, title=exc.title, message=exc.message, back="/auth/login")
        if exc.status == 503:
            response.headers["Retry-After"] = "60"
        response.delete_cookie(self.oidc_cookie, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response

    async def _session(self, request: Request) -> Session | None:
        return await session_of(self.signin, request, self.session_cookie)


def install_auth(app: FastAPI, services: Services, settings: Settings) -> SignIn:
    """Mount discovery, the token, revocation and authorization endpoints and the sign-in pages on
    `app`. Returns the sign-in service, whose sessions the other staff pages read."""
    routes = AuthRoutes(services, settings)
    # Ahead of the FHIR API's catch-all /fhir/{path} route, whatever order they are installed in.
    discovery = "/fhir/.well-known/smart-configuration"
    app.router.routes.insert(0, APIRoute(discovery, routes.discovery, methods=["GET"],
                                         openapi_extra=openapi.ROUTES[("GET", discovery)]))
    for path, endpoint, methods in (
        ("/auth/token", routes.token, ["POST"]),
        ("/auth/revoke", routes.revoke, ["POST"]),
        ("/auth/authorize", routes.authorize, ["GET"]),
        ("/auth/login", routes.login_form, ["GET"]),
        ("/auth/login", routes.login, ["POST"]),
        ("/auth/role", routes.role_form, ["GET"]),
        ("/auth/role", routes.choose_role, ["POST"]),
        ("/auth/session", routes.session_page, ["GET"]),
        ("/auth/oidc/{provider}/start", routes.oidc_start, ["GET"]),
        ("/auth/oidc/{provider}/callback", routes.oidc_callback, ["GET"]),
        ("/auth/logout", routes.logout, ["POST"]),
    ):
        # Described in the OpenAPI document of the non-FHIR routes (web/openapi.py).
        app.add_api_route(path, endpoint, methods=methods, openapi_extra=openapi.ROUTES[(methods[0], path)])
    return routes.signin
