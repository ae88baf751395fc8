"""The administrator's pages for feeds (issue 7): the source registry and the inbox's dead letters,
server-rendered, for a member of staff signed in with a role that grants the administrator activity
(SDS R8015, Systems Support Access Role). Each page calls `ingest/admin.FeedAdmin`, which checks and
audits every call.

    GET  /admin/feeds                      every registered source, its status and whether it has gone
                                           silent; forms to approve, enable or disable, and to register one
    POST /admin/feeds                      register a source
    POST /admin/feeds/{source_id}/status   enable (approve one in review) or disable a source
    GET  /admin/inbox                      counts by status, the oldest pending message's age, and the
                                           dead letters, newest first, 50 a page (`page`; `source` filters)
    GET  /admin/inbox/{seq}                one message's metadata and outcome
    POST /admin/inbox/replay               put one dead letter (`seq`), or a source's (`source`), back

Administrators never see record content: the pages show metadata and our own reasons and warnings,
never a message's payload. A visitor who is not signed in is sent to sign in (and a member of staff who
has not chosen a role profile to choose one); a caller the service refuses gets a 403 page. Every form
that changes something carries the session's CSRF token (the inbox's source filter is a GET form and
changes nothing). Pages are escaped HTML with no script; nothing of a record is ever logged.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sharedcare.access.context import Caller
from sharedcare.access.signin import Session, SignIn
from sharedcare.errors import FhirError, Forbidden, NotFound
from sharedcare.ingest.admin import (
    MAX_PAGES,
    FeedAdmin,
    InboxView,
    InvalidRegistration,
    Letter,
    Registration,
    SourceState,
    SourceTaken,
)
from sharedcare.settings import Settings
from sharedcare.storage.inbox_store import FEEDS
from sharedcare.web import openapi
from sharedcare.web.auth import StaffPages, page, redirect
from sharedcare.web.review import instant, sentence

if TYPE_CHECKING:
    from sharedcare.app import Services

log = logging.getLogger("sharedcare.ingest")

# The pages read no records: the session's caller acts with no scopes (the role's activity is all the
# service asks for).
PAGE_SCOPES: tuple[str, ...] = ()
_SOURCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # ingest/sources.py's shape of a source id
_SEQ = re.compile(r"[1-9][0-9]{0,17}")
FEED_NAMES = {"hl7v2": "HL7 v2", "fhir": "FHIR", "csv": "CSV"}
SOURCE_STATUSES = {"active": "Active", "review": "Waiting for approval", "disabled": "Disabled"}
MESSAGE_STATUSES = {"pending": "Pending", "done": "Done", "dead": "Dead letter"}
FIELDS = ("source_id", "ods", "name", "system", "expected_minutes", "cert_sha256")
CHANGED = {"approved": "was approved: it may send now.", "enabled": "was enabled: it may send now.",
           "disabled": "was disabled: what it sends is refused from now on; what it sent stays.",
           "registered": "was registered."}


class FeedRoutes(StaffPages):
    def __init__(self, services: Services, settings: Settings, signin: SignIn) -> None:
        super().__init__(signin, settings, PAGE_SCOPES)
        self.service = FeedAdmin(services.repo)

    # -- the source registry ----------------------------------------------------------------------

    async def feeds_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None or session.needs_role:
            return self.sign_in(request, session)
        done, source = request.query_params.get("done", ""), request.query_params.get("source", "")
        confirmation = (f"Source {source} {CHANGED[done]}" if done in CHANGED and _SOURCE_ID.fullmatch(source)
                        else None)
        return await self._feeds(self.caller(session, request), session, confirmation=confirmation)

    async def register(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        caller = self.caller(session, request)
        registration = Registration(
            form.get("source_id", ""), form.get("ods", ""), form.get("name", ""),
            tuple(f for f in FEEDS if form.get(f"feed-{f}") == "on"), system=form.get("system", ""),
            expected_minutes=form.get("expected_minutes", ""), cert_sha256=form.get("cert_sha256", ""))
        try:
            stored = await run_in_threadpool(self.service.register, caller, registration)
        except Forbidden:
            return refused()
        except (InvalidRegistration, SourceTaken) as exc:
            return await self._feeds(caller, session, status=exc.status, typed=form,
                                     error={"message": sentence(str(exc)), "field": exc.field})
        except FhirError as exc:
            return await self._feeds(caller, session, status=exc.status, typed=form,
                                     error={"message": sentence(str(exc)), "field": None})
        log.info("a source was registered on the admin page")
        return redirect(f"/admin/feeds?{urlencode({'done': 'registered', 'source': stored.source_id})}")

    async def set_status(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        source_id = request.path_params["source_id"]
        if not _SOURCE_ID.fullmatch(source_id):
            return not_found("There is no such source.", "/admin/feeds")
        status = form.get("status", "")
        try:
            before = await run_in_threadpool(self.service.set_status, self.caller(session, request), source_id,
                                             status)
        except Forbidden:
            return refused()
        except NotFound:
            return not_found("There is no such source.", "/admin/feeds")
        except FhirError as exc:
            return page("message.html", exc.status, title="The source could not be changed",
                        message=sentence(str(exc)), back="/admin/feeds")
        done = "disabled" if status == "disabled" else "approved" if before.status == "review" else "enabled"
        log.info("a source's status was changed on the admin page (%s)", status)
        return redirect(f"/admin/feeds?{urlencode({'done': done, 'source': source_id})}")

    # -- the inbox --------------------------------------------------------------------------------

    async def inbox_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None or session.needs_role:
            return self.sign_in(request, session)
        source = request.query_params.get("source") or None
        page_text = request.query_params.get("page") or "1"
        if (source is not None and not _SOURCE_ID.fullmatch(source)) or not _SEQ.fullmatch(page_text) or \
                int(page_text) > MAX_PAGES:
            return page("message.html", 400, title="There is no such page", back="/admin/inbox", message=(
                f"This page of the inbox does not exist. The dead letters are shown {MAX_PAGES} pages deep: "
                "filter by source to see further."))
        number, caller = int(page_text), self.caller(session, request)
        try:
            view = await run_in_threadpool(lambda: self.service.inbox(caller, source_id=source, page=number))
        except Forbidden:
            return refused()
        except FhirError as exc:
            return page("message.html", exc.status, title="The inbox could not be shown",
                        message=sentence(str(exc)), back="/admin/inbox")
        replayed = request.query_params.get("replayed", "")
        return page("feeds_inbox.html", title="The inbox", csrf=session.csrf, source=source, page_number=number,
                    confirmation=replay_text(int(replayed)) if replayed.isdigit() and len(replayed) < 10 else None,
                    **inbox_view(view, source, number))

    async def message_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None or session.needs_role:
            return self.sign_in(request, session)
        seq = request.path_params["seq"]
        if not _SEQ.fullmatch(seq):
            return not_found("There is no such message in the inbox.", "/admin/inbox")
        try:
            found = await run_in_threadpool(self.service.message, self.caller(session, request), int(seq))
        except Forbidden:
            return refused()
        except NotFound:
            return not_found("There is no such message in the inbox.", "/admin/inbox")
        except FhirError as exc:
            return page("message.html", exc.status, title="The message could not be shown",
                        message=sentence(str(exc)), back="/admin/inbox")
        return page("feeds_message.html", title=f"Message {found.seq}", csrf=session.csrf, message=letter_view(found))

    async def replay(self, request: Request) -> Response:
        posted = await self._posted(request)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        seq_text, source = form.get("seq", "").strip(), form.get("source", "").strip()
        if (bool(seq_text) == bool(source) or (seq_text and not _SEQ.fullmatch(seq_text))
                or (source and not _SOURCE_ID.fullmatch(source))):
            return page("message.html", 400, title="Nothing was replayed", back="/admin/inbox",
                        message="Choose one dead letter, or a source whose dead letters to replay.")
        seq, caller = int(seq_text) if seq_text else None, self.caller(session, request)
        try:
            n = await run_in_threadpool(lambda: self.service.replay(caller, seq=seq, source_id=source or None))
        except Forbidden:
            return refused()
        except FhirError as exc:
            return page("message.html", exc.status, title="Nothing was replayed", message=sentence(str(exc)),
                        back="/admin/inbox")
        log.info("dead letters were replayed on the admin page (%d)", n)
        return redirect(f"/admin/inbox?{urlencode({**({'source': source} if source else {}), 'replayed': n})}")

    # -- helpers ----------------------------------------------------------------------------------

    async def _feeds(self, caller: Caller, session: Session, *, status: int = 200,
                     confirmation: str | None = None, typed: dict[str, str] | None = None,
                     error: dict[str, Any] | None = None) -> Response:
        try:
            states = await run_in_threadpool(self.service.sources, caller)
        except Forbidden:
            return refused()
        except FhirError as exc:
            return page("message.html", exc.status, title="The sources could not be shown",
                        message=sentence(str(exc)), back="/admin/feeds")
        # The registration form as it was typed (after an error), or empty with HL7 v2 ticked.
        feeds = [{"value": f, "label": FEED_NAMES[f],
                  "checked": typed.get(f"feed-{f}") == "on" if typed is not None else f == "hl7v2"} for f in FEEDS]
        return page("feeds.html", status, title="Feeds: the registered sources", csrf=session.csrf,
                    sources=[source_view(s) for s in states], confirmation=confirmation, error=error,
                    typed={name: (typed or {}).get(name, "") for name in FIELDS}, feeds=feeds)

    async def _posted(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        """A POST's session and form, or the answer to give instead (StaffPages.posted)."""
        return await self.posted(request, unreadable="The form could not be read")


def refused() -> Response:
    return page("message.html", 403, title="You cannot manage feeds", message=(
        "Managing the sources that send data and the inbox's dead letters needs a role that allows it, such "
        "as the Systems Support Access Role (R8015). Sign in with, or choose, a role profile that has it."),
        links=[{"href": "/auth/session", "label": "See who you are signed in as"}])


def not_found(message: str, back: str) -> Response:
    return page("message.html", 404, title="Page not found", back=back, message=message)


def replay_text(n: int) -> str:
    if n == 0:
        return "No dead letters were put back: there were none to replay."
    return f"{n} dead letter{'s were' if n != 1 else ' was'} put back to be processed."


# -- what the templates show -----------------------------------------------------------------------

def minutes_text(minutes: int) -> str:
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def age(stored: str, at: datetime | None = None) -> str:
    """How long ago a stored UTC instant was, as people say it: 3 minutes, 2 hours 5 minutes, 4 days."""
    try:
        then = datetime.fromisoformat(stored).replace(tzinfo=UTC)
    except ValueError:
        return stored
    seconds = max(0, int(((at or datetime.now(UTC)) - then).total_seconds()))
    if seconds < 60:
        return "less than a minute"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours % 24} hour{'s' if hours % 24 != 1 else ''}"
                                                          if hours % 24 else "")
    if hours:
        return f"{hours} hour{'s' if hours != 1 else ''}" + (f" {minutes_text(minutes % 60)}" if minutes % 60 else "")
    return minutes_text(minutes)


def source_view(state: SourceState) -> dict[str, Any]:
    s = state.source
    return {
        "id": s.source_id,
        "ods": s.ods,
        "name": s.name,
        "system": s.system,
        "feeds": ", ".join(FEED_NAMES.get(f, f) for f in s.feeds),
        "status": s.status,
        "status_text": SOURCE_STATUSES.get(s.status, s.status),
        "expected": f"Every {minutes_text(s.expected_minutes)}" if s.expected_minutes else None,
        "last_received": instant(s.last_received) if s.last_received else None,
        "certificate": bool(s.cert_sha256),
        "silent": state.silent,
        "action": f"/admin/feeds/{s.source_id}/status",
        "dead_href": f"/admin/inbox?{urlencode({'source': s.source_id})}",
    }


def letter_view(m: Letter) -> dict[str, Any]:
    return {
        "seq": m.seq,
        "href": f"/admin/inbox/{m.seq}",
        "source": m.source_id,
        "key": m.message_key,
        "kind": FEED_NAMES.get(m.kind, m.kind),
        "received": instant(m.received),
        "status": m.status,
        "status_text": MESSAGE_STATUSES.get(m.status, m.status),
        "attempts": m.attempts,
        "next_attempt": instant(m.next_attempt) if m.next_attempt else None,
        "reason": m.reason,
        "processed": instant(m.processed) if m.processed else None,
        "written": list(m.written),
        "merged": m.merged,
        "warnings": list(m.warnings),
    }


def inbox_view(view: InboxView, source: str | None, number: int) -> dict[str, Any]:
    def at_page(n: int) -> str:
        return f"/admin/inbox?{urlencode({**({'source': source} if source else {}), 'page': n})}"

    return {
        "counts": [{"status": MESSAGE_STATUSES[k], "n": n} for k, n in view.counts.items()],
        "oldest_pending": age(view.oldest_pending) if view.oldest_pending else None,
        "dead": [letter_view(m) for m in view.dead],
        "source_ids": view.source_ids,
        "next": at_page(number + 1) if view.more and number < MAX_PAGES else None,
        "previous": at_page(number - 1) if number > 1 else None,
    }


def install_feeds(app: FastAPI, services: Services, settings: Settings, signin: SignIn) -> None:
    """Mount the administrator's feed pages on `app`; `signin` is the sign-in service whose sessions
    they read (web/auth.install_auth)."""
    routes = FeedRoutes(services, settings, signin)
    for path, endpoint, methods in (
        ("/admin/feeds", routes.feeds_page, ["GET"]),
        ("/admin/feeds", routes.register, ["POST"]),
        ("/admin/feeds/{source_id}/status", routes.set_status, ["POST"]),
        ("/admin/inbox", routes.inbox_page, ["GET"]),
        ("/admin/inbox/replay", routes.replay, ["POST"]),
        ("/admin/inbox/{seq}", routes.message_page, ["GET"]),
    ):
        app.add_api_route(path, endpoint, methods=methods, openapi_extra=openapi.ROUTES[(methods[0], path)])
