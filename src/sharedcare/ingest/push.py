"""A source's transaction Bundle pushed over the FHIR API (`POST /fhir` by the source's own system
client), kept in the inbox like any feed's message.

The Bundle is written as the REST API writes it (the client's own scopes, its audit records, one
transaction, the transaction-response), and in that same transaction it is kept in the inbox as
done, with one Provenance naming what it wrote. Its key is `Bundle.identifier`, else its id, else a
digest of the Bundle: the same Bundle pushed again is not applied again, and is answered with the
response it got the first time; a key used before for a different Bundle is refused (409), never
applied over the first. A batch Bundle's entries stand alone and are written by the API as they
are, without the inbox.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sharedcare.access.context import Caller, system_caller
from sharedcare.errors import Conflict
from sharedcare.fhir import jsonio
from sharedcare.fhir.bundles import BundleProcessor, parse_entries
from sharedcare.ingest import apply, fhir_feed, sources
from sharedcare.ingest.hl7v2.mapping import Mapped
from sharedcare.storage import inbox_store
from sharedcare.storage.repository import Repository, Unit


def source_of(repo: Repository, caller: Caller) -> inbox_store.Source | None:
    """The registered, active FHIR source whose system client is calling, if any."""
    source = sources.of_client(repo.engine, caller)
    return source if source is not None and source.active and "fhir" in source.feeds else None


def transaction(repo: Repository, processor: BundleProcessor, caller: Caller, source: inbox_store.Source,
                bundle: dict[str, Any]) -> dict[str, Any]:
    """Write a source's transaction Bundle once (see the module docstring); the transaction-response."""
    payload = jsonio.dumps(bundle)
    digest = hashlib.sha256(payload).hexdigest()
    key = fhir_feed.bundle_key(bundle, f"sha256:{digest}")
    entries = parse_entries(bundle, processor.max_entries)
    with repo.unit(caller, "transaction") as unit:
        unit.lock("push", source.source_id, key)
        earlier = inbox_store.by_key(unit.conn, source.source_id, key)
        if earlier is not None:
            if earlier.digest != digest:
                raise Conflict("this Bundle's identifier was used before by this source for a different Bundle")
            if earlier.status == inbox_store.DONE and earlier.outcome:
                stored: dict[str, Any] = jsonio.loads(earlier.outcome).get("response") or {}
                if stored:
                    return stored
        response = processor.transaction_in(unit, entries, keep=apply.keep_newer)
        written = ["/".join((e["response"].get("location") or "").split("/")[:2]) for e in response["entry"]]
        written = [w for w in written if w]
        seq = earlier.seq if earlier is not None else inbox_store.store_done(
            unit.conn, inbox_store.Incoming(source.source_id, key, "fhir", payload, digest=digest))
        if written:
            _provenance(unit, source, written, key)
        inbox_store.mark_done(unit.conn, seq, jsonio.dumps({"written": written, "response": response}).decode())
        return response


def _provenance(unit: Unit, source: inbox_store.Source, written: list[str], key: str) -> None:
    """The message's Provenance, written by the source's own system in the client's transaction: a record
    of what arrived, which the client's scopes need not cover."""
    recorder = unit.alongside(system_caller(unit.repo.node_id, organisation=source.ods))
    recorder.create(apply.provenance(written, Mapped({}), source.ods, apply.message_identifier(source.source_id, key),
                                     "UPDATE"))
