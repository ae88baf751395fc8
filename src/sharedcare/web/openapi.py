"""OpenAPI descriptions of the routes outside the FHIR API (sign-in, tokens, discovery, health, and
the patient index's review pages).

The FHIR API at /fhir is described by its CapabilityStatement (`/fhir/metadata`); these are the other
routes, served at `/openapi.json` so they can be checked by Schemathesis (tests/integration/
test_openapi.py) and read by integrators. The handlers parse their own forms (access/oauth.py,
web/auth.py, web/review.py), so the parameters are declared here.
"""

from __future__ import annotations

from typing import Any

FORM = "application/x-www-form-urlencoded"
HTML = {"text/html": {"schema": {"type": "string"}}}
JSON_ANY = {"application/json": {"schema": {"type": "object"}}}


def _query(*names: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": n in required, "schema": {"type": "string"}} for n in names]


def _form(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"required": True, "content": {FORM: {"schema": {
        "type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(required)}}}}


def _responses(*statuses: int, content: dict[str, Any]) -> dict[str, Any]:
    return {str(s): {"description": f"HTTP {s}", "content": content} for s in statuses}


TOKEN_RESPONSES = _responses(200, 400, 401, 429, content=JSON_ANY)
PAGE_RESPONSES = {**_responses(200, 400, 403, 404, 429, 503, content=HTML),
                  **{str(s): {"description": "redirect"} for s in (302, 303)}}
# The review pages answer a decision on a review already closed with 409.
REVIEW_RESPONSES = {**PAGE_RESPONSES, **_responses(409, content=HTML)}
REVIEW_ID = {"name": "review_id", "in": "path", "required": True, "schema": {"type": "string"}}

# (method, path) -> the `openapi_extra` of the route
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/auth/token"): {
        "summary": "OAuth 2.0 token endpoint (client credentials, authorization code with PKCE, refresh)",
        "requestBody": _form("grant_type", "scope", "code", "redirect_uri", "code_verifier", "refresh_token",
                             "client_id", "client_secret", "client_assertion_type", "client_assertion",
                             required=("grant_type",)),
        "responses": TOKEN_RESPONSES},
    ("POST", "/auth/revoke"): {
        "summary": "Token revocation (RFC 7009)",
        "requestBody": _form("token", "token_type_hint", "client_id", "client_secret", required=("token",)),
        "responses": TOKEN_RESPONSES},
    ("GET", "/auth/authorize"): {
        "summary": "Authorization request (SMART App Launch, PKCE S256)",
        "parameters": _query("response_type", "client_id", "redirect_uri", "scope", "state", "aud",
                             "code_challenge", "code_challenge_method", "acr_values"),
        # 401: the session was signed in more weakly than `acr_values` asks (step-up).
        "responses": {**PAGE_RESPONSES, **_responses(401, content=HTML)}},
    ("GET", "/auth/login"): {"summary": "Sign-in page", "parameters": _query("next"), "responses": PAGE_RESPONSES},
    ("POST", "/auth/login"): {"summary": "Sign in with a local account",
                              "requestBody": _form("username", "password", "csrf", "next"),
                              "responses": PAGE_RESPONSES},
    ("GET", "/auth/role"): {"summary": "Choose a role profile", "parameters": _query("next"),
                            "responses": PAGE_RESPONSES},
    ("POST", "/auth/role"): {"summary": "Choose a role profile", "requestBody": _form("profile", "csrf", "next"),
                             "responses": PAGE_RESPONSES},
    ("GET", "/auth/session"): {"summary": "The signed-in session", "responses": PAGE_RESPONSES},
    ("POST", "/auth/logout"): {"summary": "Sign out", "requestBody": _form("csrf"), "responses": PAGE_RESPONSES},
    ("GET", "/auth/oidc/{provider}/start"): {
        "summary": "Start sign-in at an external OpenID Connect provider (staff or patient)",
        "parameters": [{"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}},
                       *_query("next", "aal")],
        "responses": PAGE_RESPONSES},
    ("GET", "/auth/oidc/{provider}/callback"): {
        "summary": "Return from an external OpenID Connect provider",
        "parameters": [{"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}},
                       *_query("code", "state", "error", "error_description")],
        "responses": PAGE_RESPONSES},
    ("GET", "/mpi/review"): {"summary": "The patient index's possible matches waiting for review (staff)",
                             "parameters": _query("after", "decided"), "responses": REVIEW_RESPONSES},
    ("GET", "/mpi/review/{review_id}"): {"summary": "One possible match, the two records side by side",
                                         "parameters": [REVIEW_ID], "responses": REVIEW_RESPONSES},
    ("POST", "/mpi/review/{review_id}"): {
        "summary": "Decide a possible match: link (one person) or keep apart, with a reason",
        "parameters": [REVIEW_ID], "requestBody": _form("csrf", "decision", "reason"),
        "responses": REVIEW_RESPONSES},
    ("GET", "/admin/feeds"): {"summary": "The registered sources of data, with forms to register, approve or "
                                         "disable one (administrators)", "parameters": _query("done", "source"),
                              "responses": REVIEW_RESPONSES},
    ("POST", "/admin/feeds"): {
        "summary": "Register a source", "responses": REVIEW_RESPONSES,
        "requestBody": _form("csrf", "source_id", "ods", "name", "system", "expected_minutes", "cert_sha256",
                             "feed-hl7v2", "feed-fhir", "feed-csv")},
    ("POST", "/admin/feeds/{source_id}/status"): {
        "summary": "Enable, approve or disable a source",
        "parameters": [{"name": "source_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": _form("csrf", "status"), "responses": REVIEW_RESPONSES},
    ("GET", "/admin/inbox"): {"summary": "The inbox's counts and its dead letters (administrators)",
                              "parameters": _query("source", "page", "replayed"), "responses": REVIEW_RESPONSES},
    ("POST", "/admin/inbox/replay"): {"summary": "Replay a dead letter, or all of a source's",
                                      "requestBody": _form("csrf", "seq", "source"), "responses": REVIEW_RESPONSES},
    ("GET", "/admin/inbox/{seq}"): {
        "summary": "One inbound message's status, reason and outcome (never its content)",
        "parameters": [{"name": "seq", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": REVIEW_RESPONSES},
    ("GET", "/fhir/.well-known/smart-configuration"): {
        "summary": "SMART on FHIR discovery", "responses": _responses(200, content=JSON_ANY)},
    ("GET", "/health/live"): {"summary": "Liveness", "responses": _responses(200, content=JSON_ANY)},
    ("GET", "/health/ready"): {"summary": "Readiness (the database answers)",
                               "responses": _responses(200, 503, content=JSON_ANY)},
    ("GET", "/"): {"summary": "Home page", "responses": _responses(200, content=HTML)},
}
