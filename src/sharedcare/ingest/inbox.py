"""The inbox: every inbound message is stored before it is acknowledged, then processed once, in order
per patient per source, retried with backoff, and kept as a dead letter with its reason when it
cannot be processed (docs/ingest.md; the SQL is storage/inbox_store.py).

Receiving (`receive_hl7`) does only what must come before the acknowledgement: read the header, check
it (processing id, version, control id, a message type we map) and the sender against the source
registry, and commit the message. Everything else (mapping, validation, the patient index) happens
when it is processed, so a mapping fault becomes a dead letter that can be replayed after a fix, not
a message the sender was told we refused.

Processing (`process_due`, `run`) writes each message as its source, in one transaction with the
inbox row's `done`: a crash leaves it pending, and another worker (or process) that picks the same
message finds it claimed and leaves it. A database that cannot be reached is not the message's fault:
the worker waits and tries again, without counting an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from sharedcare.access.audit import AuditRecord
from sharedcare.access.context import system_caller
from sharedcare.errors import ServiceUnavailable
from sharedcare.fhir.bundles import BundleProcessor
from sharedcare.ingest import apply, bulk_import, csv_feed, fhir_feed, sources
from sharedcare.ingest.apply import describe
from sharedcare.ingest.hl7v2 import ack, mapping
from sharedcare.ingest.hl7v2 import patient as pid_map
from sharedcare.ingest.hl7v2.message import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    REQUIRED_FIELD_MISSING,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    Message,
    ParseError,
    decode,
    parse,
)
from sharedcare.settings import Settings
from sharedcare.storage import dialects, inbox_store
from sharedcare.storage.committer import Job
from sharedcare.storage.repository import Repository
from sharedcare.storage.tables import INBOX_KEY

log = logging.getLogger("sharedcare.inbox")

VERSIONS = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9")
PROCESSING_IDS = ("P",)  # production only: training (T) and debugging (D) messages never reach a record
GROUP = 25  # most messages processed in one transaction (each in a savepoint of its own, as its source)
SOURCE_TTL_S = 1.0  # how long a source's registration is used before it is read again
# How long one processing transaction may run once it has done a message: on SQLite it holds the one
# write lock every acknowledgement waits for, so it is kept short (measured: 50 ms gave ADT ACKs at
# 224/s, 10 ms at 583/s, processing 81 -> 72 messages/s); PostgreSQL has no such lock and does better
# with fewer, larger commits (10 ms there: ADT 325 -> 189/s).
GROUP_SECONDS = 0.05
GROUP_SECONDS_SQLITE = 0.01


class Unavailable(Exception):
    """The store could not be reached: nothing was processed; try again later."""


@dataclass(frozen=True)
class Receipt:
    """What receiving one message decided: accepted (A), not stored (E: send again) or refused (R);
    the acknowledgement to send; the reason; whether it had been received before."""

    outcome: str
    ack: str | None
    error: ParseError | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class Outcome:
    seq: int
    status: str  # done, pending (to be retried), dead, skipped (another worker had it)


class Inbox:
    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo = repo
        self.engine = repo.engine
        self.settings = settings
        self.retry_seconds: Sequence[float] = tuple(settings.inbox_retry_seconds)
        self.processor = BundleProcessor(repo, settings.base_url, settings.max_bundle_entries, settings.max_page_size,
                                         lambda unit, entry: (400, None))
        self.wake = threading.Event()
        self.group_seconds = GROUP_SECONDS_SQLITE if dialects.is_sqlite(self.engine) else GROUP_SECONDS
        # Sources by (ODS, application), looked up at most once a second: a message's check needs no
        # database round trip, and a change of registration takes effect within a second.
        self._found: dict[tuple[str, str | None], tuple[float, inbox_store.Source | None]] = {}

    # -- receiving -------------------------------------------------------------------------------
    def receive_hl7(self, payload: bytes, peer: sources.Peer) -> str | None:
        """The acknowledgement to send for one message (None when the sender asked for none)."""
        return self.receive(payload, peer).ack

    def receive(self, payload: bytes, peer: sources.Peer) -> Receipt:
        """Check and store one HL7 v2 message; what was decided, with the acknowledgement to send."""
        admitted = self._admit(payload, peer)
        if isinstance(admitted, Receipt):
            return admitted
        msg, item = admitted
        try:
            received = inbox_store.receive(self.engine, [item], ack_code=ack.code(msg, ack.ACCEPT))[0]
        except (DBAPIError, ServiceUnavailable) as exc:
            return self._not_stored(msg, exc)
        return self._stored(msg, received)

    async def receive_async(self, payload: bytes, peer: sources.Peer) -> Receipt:
        """`receive` for the MLLP listener: the message is committed in the store's next group commit
        (storage/committer.py) with those arriving on other connections meanwhile, one flush to disk
        for all of them, and acknowledged once that commit is done."""
        admitted = self._admit(payload, peer)
        if isinstance(admitted, Receipt):
            return admitted
        msg, item = admitted
        code = ack.code(msg, ack.ACCEPT)

        def store(conn: Connection) -> tuple[inbox_store.Received, list[AuditRecord]]:
            return inbox_store.receive_on(conn, [item], ack_code=code)[0], []
        try:
            received: inbox_store.Received = await self.repo.committer.submit_async(Job(run=store))
        except Exception as exc:  # not stored, whatever the reason: the sender is told to send it again
            return self._not_stored(msg, exc)
        return self._stored(msg, received)

    def _find_source(self, engine: Engine, ods: str, system: str | None) -> inbox_store.Source | None:
        key = (ods.upper(), system.upper() if system else None)
        hit = self._found.get(key)
        if hit is not None and time.monotonic() - hit[0] < SOURCE_TTL_S:
            return hit[1]
        found = inbox_store.find_source(engine, ods, system)
        self._found[key] = (time.monotonic(), found)
        return found

    def _admit(self, payload: bytes, peer: sources.Peer) -> Receipt | tuple[Message, inbox_store.Incoming]:
        """Read and check a message and its sender: the refusal to send, or the message to store."""
        try:
            msg = parse(decode(payload))
        except ParseError as exc:
            return Receipt(ack.REJECT, ack.ack(None, ack.REJECT, exc), exc)
        try:
            self._check_header(msg)
            source = sources.identify(self.engine, msg.sending_facility, msg.sending_application or None, "hl7v2", peer,
                                      allow_plain_loopback=self.settings.mllp_allow_plain_loopback,
                                      auto_register=self.settings.auto_register_sources, find=self._find_source)
        except ParseError as exc:
            return self._receipt(msg, ack.REJECT, exc)
        except sources.Refused as exc:
            return self._receipt(msg, ack.REJECT, ParseError(exc.reason, UNKNOWN_KEY_IDENTIFIER, segment="MSH",
                                                             position=1, field_no=4))
        except (DBAPIError, ServiceUnavailable) as exc:
            return self._not_stored(msg, exc)
        return msg, inbox_store.Incoming(source.source_id, msg.control_id, "hl7v2", payload,
                                         *_order_keys(msg, source), digest=digest(msg))

    def _not_stored(self, msg: Message, exc: BaseException) -> Receipt:
        log.error("inbox: a message could not be stored (%s); the sender was told to send it again",
                  type(exc).__name__)
        return self._receipt(msg, ack.ERROR, ParseError("the message could not be stored: send it again",
                                                        APPLICATION_INTERNAL_ERROR))

    def _stored(self, msg: Message, received: inbox_store.Received) -> Receipt:
        self.wake.set()
        if received.conflict:  # never drop a message silently because its sender reused a control id
            return self._receipt(msg, ack.REJECT, ParseError(
                "MSH-10 (message control id) was used before for a different message from this source",
                DUPLICATE_KEY_IDENTIFIER, segment="MSH", position=1, field_no=10))
        if received.duplicate:
            first = (received.ack_code or "AA")[1]
            return Receipt(first, ack.ack(msg, first) if ack.wanted(msg, ack.ACCEPT) else None, None, True)
        return self._receipt(msg, ack.ACCEPT)

    @staticmethod
    def _receipt(msg: Message, outcome: str, error: ParseError | None = None) -> Receipt:
        return Receipt(outcome, ack.ack(msg, outcome, error) if ack.wanted(msg, outcome) else None, error)

    @staticmethod
    def _check_header(msg: Message) -> None:
        if not msg.control_id:
            raise ParseError("MSH-10 (message control id) is empty", REQUIRED_FIELD_MISSING, segment="MSH",
                             position=1, field_no=10)
        if len(msg.control_id) > INBOX_KEY:
            raise ParseError("MSH-10 (message control id) is too long", DATA_TYPE_ERROR, segment="MSH",
                             position=1, field_no=10)
        if msg.processing_id not in PROCESSING_IDS:
            raise ParseError("only production messages (MSH-11 P) are accepted", UNSUPPORTED_PROCESSING_ID,
                             segment="MSH", position=1, field_no=11)
        if msg.version not in VERSIONS:
            raise ParseError("this HL7 version (MSH-12) is not accepted", UNSUPPORTED_VERSION_ID, segment="MSH",
                             position=1, field_no=12)
        mapping.check_supported(msg)

    # -- processing ------------------------------------------------------------------------------
    def process_due(self, limit: int = 100) -> list[Outcome]:
        """Process the messages whose time has come; raises Unavailable when the store is unreachable.

        Up to `GROUP` messages, of any sources, are processed in one transaction, each in a savepoint
        of its own and written as its own source: a message that fails rolls back alone and is
        marked failed after the others commit."""
        try:
            due = inbox_store.due(self.engine, limit)
        except DBAPIError as exc:
            raise Unavailable(type(exc).__name__) from None
        picked: list[inbox_store.Message] = []
        seen: set[tuple[str, str | None]] = set()
        for m in due:
            key = (m.source_id, m.patient_key)
            if m.patient_key is not None and key in seen:
                continue  # the patient's next message waits for this round's to be done
            seen.add(key)
            picked.append(m)
        out: list[Outcome] = []
        while picked:
            if picked[0].kind == bulk_import.KIND:  # a bulk part, alone
                done = self.process(picked[:1])
            else:
                run = list(itertools.takewhile(lambda m: m.kind != bulk_import.KIND, picked[:GROUP]))
                done = self.process(run)
            out += done
            picked = picked[len(done):]
        return out

    def process(self, group: list[inbox_store.Message]) -> list[Outcome]:
        """Process messages in one transaction, each in its own savepoint and written as its own
        source, from the first until `group_seconds` have passed: the outcomes of those it took, in
        order. The time bound keeps the transaction short, since on SQLite it holds the one write lock
        that every acknowledgement waits for. Bulk parts are read, validated and translated before the
        transaction opens, so it holds the lock for the writing only."""
        out: list[Outcome] = []
        failed: list[tuple[inbox_store.Message, BaseException]] = []
        try:
            # Read afresh for each group: a fix to a source's registration applies to the next replay.
            found = {sid: inbox_store.get_source(self.engine, sid) for sid in {m.source_id for m in group}}
        except DBAPIError as exc:
            raise Unavailable(type(exc).__name__) from None
        prepared = {m.seq: self._prepared(m, source) for m in group
                    if m.kind == bulk_import.KIND and (source := found[m.source_id]) is not None}
        deadline = time.monotonic() + self.group_seconds
        try:
            with self.repo.savepoints(system_caller(self.repo.node_id)) as batch:
                for m in group:
                    if (out or failed) and time.monotonic() > deadline:
                        break
                    source = found[m.source_id]
                    if source is None:
                        failed.append((m, ParseError("the message's source is no longer registered",
                                                     UNKNOWN_KEY_IDENTIFIER)))
                        continue
                    # The operator's own loads write as the node; a source's messages as its organisation.
                    ods = None if source.source_id == inbox_store.NODE_SOURCE else source.ods
                    caller = system_caller(self.repo.node_id, organisation=ods)
                    try:
                        if m.kind == bulk_import.KIND:
                            with batch.unit(caller) as unit:
                                if not inbox_store.claim(unit.conn, m.seq):
                                    out.append(Outcome(m.seq, "skipped"))
                                    continue
                                result = bulk_import.apply_chunk(unit, m, prepared[m.seq], ods=ods)
                                inbox_store.mark_done(unit.conn, m.seq, json.dumps(result))
                            out.append(Outcome(m.seq, inbox_store.DONE))
                            continue
                        mapped = self._mapped(m, source)
                        with batch.unit(caller) as unit:
                            if m.patient_key is not None:
                                unit.lock("inbox", m.source_id, m.patient_key)
                            if not inbox_store.claim(unit.conn, m.seq):
                                out.append(Outcome(m.seq, "skipped"))
                                continue
                            outcome = apply.apply(unit, self.processor, mapped, ods=ods,
                                                  message_ref=apply.message_identifier(m.source_id, m.message_key),
                                                  activity="UPDATE")
                            inbox_store.mark_done(unit.conn, m.seq, json.dumps(outcome))
                        out.append(Outcome(m.seq, inbox_store.DONE))
                    except (OperationalError, ServiceUnavailable):
                        raise
                    except DBAPIError as exc:
                        if exc.connection_invalidated:
                            raise
                        failed.append((m, exc))
                    except Exception as exc:  # any fault of the message (or its mapping): retried, then dead
                        failed.append((m, exc))
        except (OperationalError, ServiceUnavailable) as exc:
            raise Unavailable(type(exc).__name__) from None
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable(type(exc).__name__) from None
            raise
        results = {o.seq: o for o in out} | {m.seq: self._failed(m, exc) for m, exc in failed}
        return [results[m.seq] for m in group if m.seq in results]

    def _prepared(self, m: inbox_store.Message, source: inbox_store.Source) -> bulk_import.Prepared:
        """A bulk part read and validated, its local codes translated by the source's ConceptMaps as
        every feed's are."""
        from sharedcare.ingest import concept_maps

        ready = bulk_import.prepare(m)
        found = concept_maps.translate_for(self.repo, source, mapping.Mapped(
            {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": line.doc} for line in ready.good]}))
        ready.warnings += [w for w in found.warnings if w not in ready.warnings][:bulk_import.MAX_WARNINGS]
        return ready

    def _mapped(self, m: inbox_store.Message, source: inbox_store.Source) -> mapping.Mapped:
        """What a stored message says, as a transaction to apply (mapped now, so a fixed mapping
        applies to a replayed dead letter), its local codes translated by the source's ConceptMaps as
        they are now (ingest/concept_maps.py)."""
        from sharedcare.ingest import concept_maps

        ctx = mapping.Context(source.source_id, source.ods, source.name)
        if m.kind == "hl7v2":
            mapped = mapping.map_message(parse(decode(m.payload)), ctx)
        elif m.kind == "fhir":
            mapped = fhir_feed.as_transaction(m.payload)
        elif m.kind == "csv":
            mapped = csv_feed.map_stored(m.payload, source, ctx)
        else:
            raise ParseError(f"the inbox holds a message of an unknown kind ({m.kind})", APPLICATION_INTERNAL_ERROR)
        return concept_maps.translate_for(self.repo, source, mapped)

    # -- receiving other feeds -------------------------------------------------------------------
    def receive_items(self, items: list[inbox_store.Incoming]) -> list[inbox_store.Received]:
        """Store feed messages already checked and keyed by their feed (FHIR bundles and resources, CSV
        rows), in one transaction; raises Unavailable when the store cannot be reached."""
        try:
            received = inbox_store.receive(self.engine, items, ack_code="AA")
        except (DBAPIError, ServiceUnavailable) as exc:
            raise Unavailable(type(exc).__name__) from None
        self.wake.set()
        return received

    def _failed(self, m: inbox_store.Message, exc: BaseException) -> Outcome:
        retry_in = self.retry_seconds[m.attempts] if m.attempts < len(self.retry_seconds) else None
        try:
            status = inbox_store.mark_failed(self.engine, m.seq, describe(exc), retry_in=retry_in)
        except OperationalError as db:
            raise Unavailable(type(db).__name__) from None
        if status == inbox_store.DEAD:
            log.warning("inbox: message %d from source %s is a dead letter after %d attempts (%s); "
                        "see `sharedcare inbox list --status dead`", m.seq, m.source_id, m.attempts + 1,
                        type(exc).__name__)
        return Outcome(m.seq, status)

    def drain(self, *, max_rounds: int = 10_000) -> list[Outcome]:
        """Process until nothing is due now (messages waiting to be retried later stay pending)."""
        done: list[Outcome] = []
        for _ in range(max_rounds):
            got = self.process_due()
            if not got:
                break
            done += got
        return done

    def alert_silent_sources(self, at: datetime | None = None) -> list[str]:
        """Say in the log which feeds have gone silent for longer than expected (once per silence)."""
        moment = at or datetime.now(UTC)
        silent = inbox_store.silent_sources(self.engine, moment)
        for s in silent:
            log.warning("feed alert: source %s has sent nothing for more than %d minutes", s.source_id,
                        s.expected_minutes)
            inbox_store.change_source(self.engine, s.source_id, silence_alerted=inbox_store.now(moment))
        return [s.source_id for s in silent]

    async def run(self, stop: asyncio.Event, *, poll_s: float = 1.0, backoff_s: float = 5.0) -> None:
        """Process the inbox until `stop` is set: at once when a message arrives in this process, and
        every `poll_s` seconds for messages stored by other processes or due for a retry."""
        last_check = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self.wake.clear()
            try:
                worked = await asyncio.to_thread(self.process_due)
                if loop.time() - last_check > 60:
                    await asyncio.to_thread(self.alert_silent_sources)
                    last_check = loop.time()
            except Unavailable as exc:
                log.error("inbox: the store cannot be reached (%s); trying again in %.0f s", exc, backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff_s)
                continue
            except Exception as exc:  # never let the worker die; the kind only, no content
                log.error("inbox: processing round failed (%s)", type(exc).__name__)
                worked = []
            if worked:
                continue
            waiter = asyncio.ensure_future(asyncio.to_thread(self.wake.wait, poll_s))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                self.wake.set()  # lets the waiting thread go
            await waiter


def _order_keys(msg: Message, source: inbox_store.Source) -> tuple[str | None, str | None]:
    """The patient a message is about (the source's own identifier for them) and when the source says
    it happened, for ordering one patient's messages; (None, None) when it names no patient."""
    pid = msg.first("PID")
    event = mapping.recorded_at(msg)
    moment = apply.instant(event) if event else None
    when = inbox_store.now(moment) if moment is not None else None
    if pid is None:
        return None, when
    try:
        found = pid_map.key(pid_map.identifiers(pid, mapping.Context(source.source_id, source.ods),
                                                mapping.Mapped({})))
    except ParseError:
        return None, when
    return f"{found['system']}|{found['value']}"[:300], when


def digest(msg: Message) -> str:
    """What a message says, as a SHA-256: its segments with MSH-7 (when it was sent) left out, so a
    sender's resend of the same message matches even if it stamped the header again."""
    msh = list(msg.msh.fields)
    if len(msh) > 7:
        msh[7] = ""
    text = "\r".join([msg.enc.field.join(msh[:1] + msh[2:]), *(s.enc.field.join(s.fields) for s in msg.segments[1:])])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
