"""The administrator's service for feeds (issue 7): the source registry and the inbox's dead letters, as
the admin pages (web/feeds.py) use them. Each call is checked (the caller's role grants the
administrator activity: SDS R8015, Systems Support Access Role) and audited (`Repository.record`),
refused or not.

Administrators never see record content: what this service hands back is metadata (who sent what,
when, its status and our own reasons and warnings) and never a message's payload, nor the patient key
it is ordered by (the source's identifier for the patient).

The SQL is storage/inbox_store.py; this module only composes its functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlencode

from sharedcare.access.context import Caller
from sharedcare.access.roles import Activity
from sharedcare.errors import BadRequest, Conflict, Forbidden, NotFound
from sharedcare.ingest import sources as registry
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import FEEDS, Source
from sharedcare.storage.repository import Repository

PAGE_SIZE = 50  # dead letters a page
# inbox_store.messages has no cursor: a later page is read as the first `page * PAGE_SIZE` and cut, so
# the pages reach only so far back (a source's own dead letters can be filtered to).
MAX_PAGES = 20
SETTABLE = ("active", "disabled")  # what an administrator sets; `review` is only ever set on first contact
MAX_NAME = 200
MAX_SYSTEM = 64  # feed_source.system


def may_administer(caller: Caller) -> bool:
    """Staff whose role profile grants the administrator activity; no other kind of caller."""
    return caller.kind == "user" and Activity.ADMINISTRATOR in caller.activities


def is_silent(source: Source, at: datetime | None = None) -> bool:
    """An active source expected to send every so often that has sent nothing for longer (whether
    or not the "gone silent" alert has been raised: inbox_store.silent_sources is the alert's list)."""
    if source.status != "active" or not source.expected_minutes:
        return False
    last = source.last_received or source.created
    return last < inbox_store.now((at or datetime.now(UTC)) - timedelta(minutes=source.expected_minutes))


@dataclass(frozen=True)
class SourceState:
    source: Source
    silent: bool


@dataclass(frozen=True)
class Letter:
    """One inbox message as an administrator sees it: never its payload or patient key."""

    seq: int
    source_id: str
    message_key: str
    kind: str
    received: str
    status: str
    attempts: int
    next_attempt: str | None
    reason: str | None
    processed: str | None
    written: tuple[str, ...] = ()
    merged: int = 0
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboxView:
    counts: dict[str, int]  # pending, done, dead (each present, 0 when none)
    oldest_pending: str | None  # when the oldest pending message was received
    dead: list[Letter]  # this page of dead letters, newest first
    more: bool  # there is a next page
    source_ids: list[str]  # every registered source, for the filter


@dataclass(frozen=True)
class Registration:
    """A source as typed into the registration form (text, as typed)."""

    source_id: str
    ods: str
    name: str
    feeds: tuple[str, ...]
    system: str = ""
    expected_minutes: str = ""
    cert_sha256: str = ""


class InvalidRegistration(BadRequest):
    """A registration that cannot be accepted: the message says why, `field` which part."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class SourceTaken(Conflict):
    """A source with that id is registered already."""

    field = "source_id"


# The part of the form each of ingest/sources.check's reasons is about (by how the reason begins).
_REASON_FIELDS = (("a source id", "source_id"), ("an ODS code", "ods"), ("a source needs a name", "name"),
                  ("feeds", "feeds"), ("the expected interval", "expected_minutes"),
                  ("a certificate fingerprint", "cert_sha256"))


def letter(m: inbox_store.Message) -> Letter:
    outcome: dict[str, Any] = {}
    if m.outcome:
        try:
            loaded = json.loads(m.outcome)
        except ValueError:
            loaded = None
        outcome = loaded if isinstance(loaded, dict) else {}
    written = outcome.get("written")
    warnings = outcome.get("warnings")
    merged = outcome.get("merged")
    return Letter(m.seq, m.source_id, m.message_key, m.kind, m.received, m.status, m.attempts, m.next_attempt,
                  m.error, m.processed,
                  tuple(str(w) for w in written) if isinstance(written, list) else (),
                  merged if isinstance(merged, int) else 0,
                  tuple(str(w) for w in warnings) if isinstance(warnings, list) else ())


def _operation(name: str, **params: str | int | None) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return f"{name}?{urlencode(given)}" if given else name


class FeedAdmin:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.engine = repo.engine

    def _require(self, caller: Caller, operation: str) -> None:
        """Refuse (audited) a caller whose role does not grant the administrator activity."""
        if not may_administer(caller):
            self.repo.record(caller, "operation", 403, query=operation)
            raise Forbidden("managing feeds needs the administrator activity")

    def _refuse(self, caller: Caller, operation: str, exc: BadRequest | Conflict | NotFound) -> NoReturn:
        self.repo.record(caller, "operation", exc.status, query=operation)
        raise exc

    # -- the source registry ----------------------------------------------------------------------

    def sources(self, caller: Caller, at: datetime | None = None) -> list[SourceState]:
        """Every registered source, with whether it has gone silent."""
        self._require(caller, "$feed-sources")
        found = inbox_store.sources(self.engine)
        self.repo.record(caller, "operation", 200, query="$feed-sources")
        return [SourceState(s, is_silent(s, at)) for s in found]

    def register(self, caller: Caller, form: Registration) -> Source:
        """Register a source (active at once); InvalidRegistration or SourceTaken, nothing stored."""
        operation = "$feed-register"
        self._require(caller, operation)
        try:
            source = self._source(form)
        except InvalidRegistration as exc:
            self._refuse(caller, operation, exc)
        operation = _operation(operation, source=source.source_id)
        try:
            stored = registry.register(self.engine, source)
        except registry.InvalidSource as exc:
            self._refuse(caller, operation, InvalidRegistration(str(exc), _field_of(str(exc))))
        except inbox_store.SourceExists:
            self._refuse(caller, operation, SourceTaken("a source with that id is registered already; "
                                                        "nothing was changed"))
        self.repo.record(caller, "operation", 201, query=operation)
        return stored

    @staticmethod
    def _source(form: Registration) -> Source:
        expected: int | None = None
        minutes = form.expected_minutes.strip()
        if minutes:
            if not minutes.isdigit() or len(minutes) > 6:
                raise InvalidRegistration("the expected interval is a whole number of minutes, at least 1",
                                          "expected_minutes")
            expected = int(minutes)
        system = form.system.strip()
        if len(system) > MAX_SYSTEM or not system.isprintable():
            raise InvalidRegistration(f"the application (HL7 MSH-3) is at most {MAX_SYSTEM} printable characters",
                                      "system")
        name = form.name.strip()
        if len(name) > MAX_NAME or not name.isprintable():
            raise InvalidRegistration(f"a source's name is at most {MAX_NAME} printable characters", "name")
        fingerprint: str | None = None
        if form.cert_sha256.strip():
            try:
                fingerprint = registry.fingerprint(form.cert_sha256)
            except registry.InvalidSource as exc:
                raise InvalidRegistration(str(exc), "cert_sha256") from None
        feeds = tuple(f for f in FEEDS if f in form.feeds)  # in the registry's order, each once
        unknown = [f for f in form.feeds if f not in FEEDS]
        if unknown:
            feeds = (*feeds, *unknown)  # left for the registry to refuse with its reason
        return Source(form.source_id.strip(), form.ods.strip().upper(), name, feeds, system=system or None,
                      expected_minutes=expected, cert_sha256=fingerprint)

    def set_status(self, caller: Caller, source_id: str, status: str) -> Source:
        """Enable (approving one in review) or disable a source; the source as it was before."""
        operation = _operation("$feed-status", source=source_id, status=status)
        self._require(caller, operation)
        if status not in SETTABLE:
            self._refuse(caller, operation, BadRequest(f"a source's status is set to one of: {', '.join(SETTABLE)}"))
        before = inbox_store.get_source(self.engine, source_id)
        if before is None or not inbox_store.change_source(self.engine, source_id, status=status):
            self._refuse(caller, operation, NotFound("no source has that id"))
        self.repo.record(caller, "operation", 200, query=operation)
        return before

    # -- the inbox --------------------------------------------------------------------------------

    def inbox(self, caller: Caller, *, source_id: str | None = None, page: int = 1) -> InboxView:
        """The counts by status, the oldest pending message's arrival, and a page of dead letters
        (all sources', or one's), newest first."""
        operation = _operation("$inbox", source=source_id, page=page if page != 1 else None)
        self._require(caller, operation)
        if not 1 <= page <= MAX_PAGES:
            self._refuse(caller, operation, BadRequest(f"the dead letters are shown {MAX_PAGES} pages deep; "
                                                       "filter by source to see further"))
        by_status = inbox_store.counts(self.engine)
        counts = {s: by_status.get(s, 0) for s in (inbox_store.PENDING, inbox_store.DONE, inbox_store.DEAD)}
        oldest = inbox_store.oldest_pending(self.engine)
        start = (page - 1) * PAGE_SIZE
        read = inbox_store.messages(self.engine, status=inbox_store.DEAD, source_id=source_id,
                                    limit=PAGE_SIZE + 1, offset=start, payload=False)
        dead = [letter(m) for m in read[:PAGE_SIZE]]
        ids = [s.source_id for s in inbox_store.sources(self.engine)]
        self.repo.record(caller, "operation", 200, query=operation)
        return InboxView(counts, oldest, dead, len(read) > PAGE_SIZE, ids)

    def message(self, caller: Caller, seq: int) -> Letter:
        operation = _operation("$inbox-message", seq=seq)
        self._require(caller, operation)
        found = inbox_store.message(self.engine, seq)
        if found is None:
            self._refuse(caller, operation, NotFound("no message has that number"))
        self.repo.record(caller, "operation", 200, query=operation)
        return letter(found)

    def replay(self, caller: Caller, *, seq: int | None = None, source_id: str | None = None) -> int:
        """Put one dead letter, or every dead letter of a source, back to be processed; how many."""
        operation = _operation("$inbox-replay", seq=seq, source=source_id)
        self._require(caller, operation)
        if (seq is None) == (source_id is None):
            self._refuse(caller, operation, BadRequest("replay one dead letter or a source's dead letters"))
        n = inbox_store.replay(self.engine, [seq] if seq is not None else None, source_id=source_id)
        self.repo.record(caller, "operation", 200, query=_operation("$inbox-replay", seq=seq, source=source_id,
                                                                   replayed=n))
        return n


def _field_of(reason: str) -> str | None:
    return next((field for start, field in _REASON_FIELDS if reason.startswith(start)), None)

