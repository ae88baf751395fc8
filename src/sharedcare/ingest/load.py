"""The operator's loads (`sharedcare load`): FHIR files put through the inbox, the path every feed takes,
then processed at once.

A `.json` file is a transaction or batch Bundle (or one resource), an `.ndjson` file a bulk load of
resources (ingest/bulk_import.py, as `$import`). They are written as the node itself (the node's own
source, with no source organisation), or as a registered source when one is named. Each file is
stored before it is processed, once however often it is loaded, and written in the same transactions,
with the same dead letters and Provenance, as a source's message. An operator's file does not change
by waiting, so what cannot be written is a dead letter at once, not retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sharedcare.fhir import jsonio
from sharedcare.ingest import bulk_import, fhir_feed
from sharedcare.ingest.inbox import Inbox
from sharedcare.storage import inbox_store


@dataclass
class Loaded:
    """What one file gave: resources written, messages already loaded before, and why any failed."""

    name: str
    written: int = 0
    already: int = 0
    failures: list[str] = field(default_factory=list)


def load_files(inbox: Inbox, files: list[Path], source: inbox_store.Source | None = None,
               progress: Callable[[Loaded], None] | None = None) -> list[Loaded]:
    """Store each file in the inbox as `source` (the node's own by default) and process it."""
    inbox.retry_seconds = ()
    source = source or inbox_store.node_source(inbox.engine)
    out: list[Loaded] = []
    for path in files:
        result = _load(inbox, path, source)
        out.append(result)
        if progress is not None:
            progress(result)
    return out


def _load(inbox: Inbox, path: Path, source: inbox_store.Source) -> Loaded:
    result = Loaded(path.name)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".ndjson"):
        result.failures.append("load takes FHIR .json and .ndjson files (`sharedcare ingest` takes HL7 v2 and CSV)")
        return result
    try:
        data = path.read_bytes()
    except OSError:
        result.failures.append("cannot be read")
        return result
    if suffix == ".ndjson":
        try:
            items = bulk_import.split(source.source_id, data).items
        except bulk_import.NotNdjson as exc:
            result.failures.append(str(exc))
            return result
    else:
        split = fhir_feed.split(source.source_id, data, path.name)
        result.failures += split.problems
        items = split.items
    received = inbox.receive_items(items) if items else []
    result.already = sum(r.duplicate for r in received)
    mine = {r.seq for r in received if not r.duplicate}
    if not mine:
        return result
    inbox.drain()
    jobs: set[str] = set()
    for seq in sorted(mine):
        message = inbox_store.message(inbox.engine, seq)
        if message is None:
            continue
        if message.kind == bulk_import.KIND:
            jobs.add(message.message_key.rsplit(":c", 1)[0])
        if message.status == inbox_store.DEAD:
            result.failures.append(message.error or "not written")
        elif message.status == inbox_store.DONE and message.outcome:
            written = jsonio.loads(message.outcome).get("written")
            result.written += sum(written.values()) if isinstance(written, dict) else len(written or ())
    for job in sorted(jobs):  # the lines split off the file's parts, each a dead letter of its own
        parts = inbox_store.parts(inbox.engine, job + ":l", source.source_id)
        result.failures += [p.error or "not written" for p in parts if p.status == inbox_store.DEAD]
    return result
