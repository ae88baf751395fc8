"""Files put into the inbox by the node's operator (`sharedcare ingest`): HL7 v2 messages and batch
files (FHS/BHS ... BTS/FTS) as a source sent them. Each message goes through the same checks and the
same inbox as one received over MLLP, except the transport (the operator is trusted with the file);
its MSH-4 must name a registered source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sharedcare.ingest import sources
from sharedcare.ingest.hl7v2 import ack
from sharedcare.ingest.hl7v2.message import ParseError, decode, split_batch
from sharedcare.ingest.inbox import Inbox

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
    problems: list[str] = field(default_factory=list)


def ingest_files(inbox: Inbox, files: list[Path], *, process: bool = True) -> Report:
    report = Report()
    for path in files:
        try:
            batch = split_batch(decode(path.read_bytes()))
        except OSError:
            report.unreadable += 1
            report.problems.append(f"{path.name}: cannot be read")
            continue
        except ParseError as exc:
            report.unreadable += 1
            report.problems.append(f"{path.name}: not an HL7 v2 file or batch ({exc.reason})")
            continue
        for n, text in enumerate(batch.messages, 1):
            receipt = inbox.receive(text.encode("utf-8"), OPERATOR)
            if receipt.outcome == ack.ACCEPT:
                report.duplicates += receipt.duplicate
                report.stored += not receipt.duplicate
            else:
                report.refused += 1
                why = receipt.error.reason if receipt.error is not None else "refused"
                report.problems.append(f"{path.name}, message {n}: {why}")
    if process:
        for outcome in inbox.drain():
            if outcome.status == "done":
                report.done += 1
            elif outcome.status == "dead":
                report.dead += 1
        from sharedcare.storage import inbox_store

        report.pending = inbox_store.counts(inbox.engine).get(inbox_store.PENDING, 0)
    return report
