"""Every HL7 v2 message of the conformance corpus (../shared/conformance/hl7v2: other senders'
messages, US and UK conventions, v2.3 to v2.8, LF and BOM included) is either accepted and mapped, or
refused with a precise reason: an HL7 error code (table 0357) and words saying what is wrong. What
only its mapping finds broken (an ORU with no OBR) is acknowledged, as the header was fine, and kept
as a dead letter whose reason is such a code (tiered validation: nothing is lost). None may fail for
a reason of ours (an internal error), a server error or a crash.

The corpus's examples reuse a handful of control ids (MSG00001) under one sending facility, which a
live feed never may (a reused id for a different message is refused, 205: see test_inbox.py); each
message here gets its own, so each is judged on what it says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sharedcare.app import Services, open_services
from sharedcare.ingest.files import OPERATOR
from sharedcare.ingest.hl7v2.ack import ERROR_TEXT
from sharedcare.ingest.hl7v2.message import ParseError, decode, parse, split_batch
from sharedcare.ingest.inbox import Inbox
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from tests.support.conformance import conformance_files


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Inbox]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'store.db'}",
                        base_url="http://testserver/fhir", inbox_retry_seconds=(), gc_freeze=False)
    svc = open_services(settings)
    try:
        yield svc, Inbox(svc.repo, settings)
    finally:
        svc.committer.close()
        svc.engine.dispose()


def _with_control_id(text: str, control: str) -> str:
    """The message with MSH-10 replaced (the rest untouched)."""
    segments = text.split("\r")
    sep = segments[0][3]
    fields = segments[0].split(sep)
    while len(fields) < 11:
        fields.append("")
    fields[9] = control  # fields[0] is "MSH", so MSH-n is fields[n - 1]
    return "\r".join([sep.join(fields), *segments[1:]])


@pytest.mark.parametrize("path", conformance_files("hl7v2", "*.hl7"))
def test_each_corpus_message_is_mapped_or_refused_with_a_precise_reason(
        path: Path, corpus_store: tuple[Services, Inbox]) -> None:
    svc, box = corpus_store
    try:
        batch = split_batch(decode(path.read_bytes()))
    except ParseError as exc:  # a batch refused whole must say why, in HL7's terms
        refused = exc
        assert (refused.code in ERROR_TEXT, bool(refused.reason)) == (True, True)
        return
    for n, text in enumerate(batch.messages, 1):
        try:
            facility = parse(text).sending_facility
        except ParseError:
            facility = ""
        if facility and inbox_store.find_source(svc.engine, facility, None) is None:
            # Corpus facilities are not ODS codes, so they are registered here, not through `sources add`.
            inbox_store.add_source(svc.engine, inbox_store.Source(f"c-{len(inbox_store.sources(svc.engine))}",
                                                                  facility, facility, ("hl7v2",)))
        receipt = box.receive(_with_control_id(text, f"{path.stem}-{n}").encode("utf-8"), OPERATOR)
        if receipt.outcome != "A":
            assert receipt.outcome == "R", f"message {n}: not stored ({receipt.error})"
            assert receipt.error is not None
            assert receipt.error.code in ERROR_TEXT
            assert len(receipt.error.reason) > 10
            continue
        outcomes = box.drain()
        assert outcomes, f"message {n} was stored but not processed"
        for outcome in outcomes:
            stored = inbox_store.message(svc.engine, outcome.seq)
            assert stored is not None
            if stored.status == "dead":
                assert stored.error is not None
                assert stored.error.startswith("HL7 error 1"), f"message {n}: {stored.error}"
            else:
                assert stored.status == "done", f"message {n}: {stored.error}"
