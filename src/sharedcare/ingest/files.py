"""Files put into the inbox by the node's operator (`sharedcare ingest`), as a source sent them: HL7 v2
messages and batch files (FHS/BHS ... BTS/FTS), each message through the same checks and the same inbox
as one received over MLLP except the transport (the operator is trusted with the file), its MSH-4
naming a registered source; FHIR Bundles and NDJSON (ingest/fhir_feed.py) and CSV extracts
(ingest/csv_feed.py), from the source the operator names. The drop folder (ingest/dropfolder.py) puts
each file in through `ingest_file`, bound to the source whose folder it is in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sharedcare.ingest import csv_feed, fhir_feed, sources
from sharedcare.ingest.hl7v2 import ack
from sharedcare.ingest.hl7v2.message import ParseError, decode, split_batch
from sharedcare.ingest.inbox import Inbox
from sharedcare.storage import inbox_store

OPERATOR = sources.Peer("local file", True, None, trusted=True)


@dataclass
class Report:
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    unreadable: int = 0
    done: int = 0
    dead: int = 0
    pending: int = 0
    unavailable: int = 0  # HL7 v2 messages not stored because the store could not be reached (send again)
    problems: list[str] = field(default_factory=list)


def ingest_files(inbox: Inbox, files: list[Path], *, process: bool = True, source_id: str | None = None) -> Report:
    """Put files into the inbox: `.hl7` as their MSH-4 source sent them; `.json`, `.ndjson` (FHIR) and
    `.csv` (an extract, by the source's column mapping) as `source_id` sent them. Then process the
    inbox, unless `process` is False."""
    report = Report()
    source = inbox_store.get_source(inbox.engine, source_id) if source_id is not None else None
    if source_id is not None and source is None:
        report.unreadable += len(files)
        report.problems.append("no source has that id")
        return report
    for path in files:
        ingest_file(inbox, path, source, report)
    if process:
        for outcome in inbox.drain():
            if outcome.status == "done":
                report.done += 1
            elif outcome.status == "dead":
                report.dead += 1
        report.pending = inbox_store.counts(inbox.engine).get(inbox_store.PENDING, 0)
    return report


def ingest_file(inbox: Inbox, path: Path, source: inbox_store.Source | None, report: Report, *,
                peer: sources.Peer = OPERATOR) -> None:
    """Put one file into the inbox, counting into `report`: FHIR and CSV as `source` sent them, HL7 v2
    as `peer` may send (the operator: the source each message's MSH-4 names; a drop folder: its own
    source only). Raises Unavailable when FHIR or CSV items cannot be stored; an HL7 v2 message that
    cannot be is counted in `report.unavailable` (and refused)."""
    suffix = path.suffix.lower()
    if suffix in (".json", ".ndjson", ".csv"):
        _ingest_feed_file(inbox, path, source, report)
        return
    try:
        batch = split_batch(decode(path.read_bytes()))
    except OSError:
        report.unreadable += 1
        report.problems.append(f"{path.name}: cannot be read")
        return
    except ParseError as exc:
        report.unreadable += 1
        report.problems.append(f"{path.name}: not an HL7 v2 file or batch ({exc.reason})")
        return
    for n, text in enumerate(batch.messages, 1):
        receipt = inbox.receive(text.encode("utf-8"), peer)
        if receipt.outcome == ack.ACCEPT:
            report.duplicates += receipt.duplicate
            report.stored += not receipt.duplicate
        else:
            report.refused += 1
            report.unavailable += receipt.outcome == ack.ERROR
            why = receipt.error.reason if receipt.error is not None else "refused"
            report.problems.append(f"{path.name}, message {n}: {why}")


def _ingest_feed_file(inbox: Inbox, path: Path, source: inbox_store.Source | None, report: Report) -> None:
    kind = "csv" if path.suffix.lower() == ".csv" else "fhir"
    if source is None:
        report.unreadable += 1
        report.problems.append(f"{path.name}: a FHIR or CSV file needs --source, the source that sent it")
        return
    if not source.active or kind not in source.feeds:
        report.refused += 1
        why = f"not registered to send {kind}" if source.active else "disabled"
        report.problems.append(f"{path.name}: the source is {why}")
        return
    try:
        data = path.read_bytes()
    except OSError:
        report.unreadable += 1
        report.problems.append(f"{path.name}: cannot be read")
        return
    split = csv_feed.split(source, data, path.name) if kind == "csv" else fhir_feed.split(source.source_id, data,
                                                                                          path.name)
    report.refused += len(split.problems)
    report.problems += split.problems
    for received in inbox.receive_items(split.items) if split.items else []:
        if received.conflict:
            report.refused += 1
            report.problems.append(f"{path.name}: a message key was used before for different content")
        else:
            report.duplicates += received.duplicate
            report.stored += not received.duplicate
