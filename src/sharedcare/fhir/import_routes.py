"""Bulk loads over FHIR: `$import` of NDJSON by a registered source (ingest/bulk_import.py), in the
asynchronous request pattern of FHIR Bulk Data.

    POST /fhir/$import                          the NDJSON as the body (Content-Type application/fhir+ndjson;
                                                Content-Encoding gzip accepted)
                                                -> 202, Content-Location: the job's status URL
    GET  /fhir/$import-poll-status/{job}        202 with X-Progress while parts are waiting;
                                                200 with the manifest (output counts by type, errors) when done
    GET  /fhir/$import-poll-status/{job}/errors the lines and parts not written, as NDJSON OperationOutcomes

Only a source's own SMART system client may import (its token names the client the source is
registered with, `sharedcare sources add --client-id`), and only resource types its scopes let it
create and update. The file is committed to the inbox, whole, before the 202: from then on it is
processed like any feed's message, and the same file sent again is the same job, stored once.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sharedcare.access.context import Caller
from sharedcare.errors import (
    BadRequest,
    Forbidden,
    Issue,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)
from sharedcare.fhir import jsonio
from sharedcare.fhir import responses as resp
from sharedcare.fhir.definitions import resource_types
from sharedcare.ingest import bulk_import, sources
from sharedcare.storage import inbox_store
from sharedcare.storage.repository import fhir_instant

if TYPE_CHECKING:
    from sharedcare.fhir.routes import FhirApi

NDJSON_TYPES = ("application/fhir+ndjson", "application/ndjson", "application/x-ndjson")


def install_import_routes(api: FhirApi) -> None:
    r = api.route
    engine = api.repo.engine

    def source_of(caller: Caller) -> inbox_store.Source:
        if caller.kind != "system" or caller.client_id is None:
            raise Forbidden("$import is for a source's system client (SMART backend services)")
        source = sources.of_client(engine, caller)
        if source is None:
            raise Forbidden("this client is not the client of a registered source")
        if not source.active or "fhir" not in source.feeds:
            raise Forbidden("the source is disabled or not registered to send FHIR")
        return source

    @r("POST", "/$import")
    async def kick_off(request: Request) -> Response:
        caller = api.caller(request)
        source = await run_in_threadpool(source_of, caller)
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if media in ("application/fhir+json", "application/json"):
            raise BadRequest("send the NDJSON itself as the body (Content-Type: application/fhir+ndjson); "
                             "this node does not fetch import files from URLs")
        if media not in NDJSON_TYPES:
            raise UnsupportedMediaType("$import takes NDJSON: Content-Type application/fhir+ndjson")
        data = await api.body(request, api.settings.max_import_bytes)
        if not data:
            raise BadRequest("the request has no body")
        data = _decoded(data, request.headers.get("content-encoding"), api.settings.max_import_bytes)
        try:
            job = bulk_import.split(source.source_id, data)
        except bulk_import.NotNdjson as exc:
            raise BadRequest(str(exc)) from None
        # A line naming no FHIR type is that line's dead letter, not a refusal of the file.
        for res_type in sorted(job.types & set(resource_types())):
            if not all(api.repo.policy.may_write(caller, res_type, None, i) for i in ("create", "update")):
                raise Forbidden(f"you may not create and update {res_type} resources")
        await run_in_threadpool(inbox_store.receive, engine, job.items, ack_code="AA")
        await run_in_threadpool(api.repo.record, caller, "operation", 202, query="$import")
        status_url = f"{api.base}/$import-poll-status/{job.job_id}"
        outcome = operation_outcome([Issue("information", "informational",
                                           f"accepted: {job.lines} lines in {len(job.items)} parts")])
        return resp.fhir_response(outcome, "json", 202, {"Content-Location": status_url})

    @r("GET", "/$import-poll-status/{job_id}")
    async def poll(request: Request, job_id: str) -> Response:
        caller = api.caller(request)
        parts = await run_in_threadpool(_parts, caller, job_id)
        chunks = [p for p in parts if ":c" in p.message_key]
        waiting = sum(p.status == inbox_store.PENDING for p in parts)
        if waiting:
            return Response(status_code=202, headers={
                "X-Progress": f"{len(chunks) - waiting} of {len(chunks)} parts written", "Retry-After": "1"})
        counts: dict[str, int] = {}
        for p in chunks:
            if p.status == inbox_store.DONE and p.outcome:
                for res_type, n in (jsonio.loads(p.outcome).get("written") or {}).items():
                    counts[res_type] = counts.get(res_type, 0) + int(n)
        errors = sum(p.status == inbox_store.DEAD for p in parts)
        manifest: dict[str, Any] = {
            "transactionTime": fhir_instant(min(p.received for p in parts)),
            "request": f"{api.base}/$import", "requiresAccessToken": True,
            "output": [{"type": t, "count": n} for t, n in sorted(counts.items())],
            "error": ([{"type": "OperationOutcome", "count": errors,
                        "url": f"{api.base}/$import-poll-status/{job_id}/errors"}] if errors else [])}
        return Response(jsonio.dumps(manifest), media_type="application/json")

    @r("GET", "/$import-poll-status/{job_id}/errors")
    async def errors(request: Request, job_id: str) -> Response:
        caller = api.caller(request)
        parts = await run_in_threadpool(_parts, caller, job_id)
        lines = [jsonio.dumps(operation_outcome([Issue(
            "error", "processing", f"{p.error or 'not written'} (inbox message {p.seq})")]))
            for p in parts if p.status == inbox_store.DEAD]
        return Response(b"".join(line + b"\n" for line in lines), media_type="application/fhir+ndjson")

    def _parts(caller: Caller, job_id: str) -> list[inbox_store.Part]:
        """The job's parts, for its own source's client only (anyone else: as if there were no job)."""
        if not (len(job_id) == 40 and all(c in "0123456789abcdef" for c in job_id)):
            raise NotFound("there is no such import")
        try:
            source = source_of(caller)
        except Forbidden:
            raise NotFound("there is no such import") from None
        parts = inbox_store.parts(engine, bulk_import.job_prefix(job_id), source.source_id)
        api.repo.record(caller, "operation", 200 if parts else 404, query="$import-poll-status")
        if not parts:
            raise NotFound("there is no such import")
        return parts



def _decoded(data: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before any Content-Encoding (gzip, as bulk clients send large files), within
    the same limit once decompressed."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return data
    if coding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaType("$import takes a body as it is or gzip-compressed (Content-Encoding: gzip)")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error:
        raise BadRequest("the body is not valid gzip") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"an import is limited to {limit} bytes once decompressed")
    return out
