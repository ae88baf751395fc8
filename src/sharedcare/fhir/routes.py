"""The FHIR REST routes at /fhir: thin handlers that parse the request, call one service, render.

Every interaction runs as a caller (the node's system context until sign-in exists) through the
Repository, which applies the access policy and writes the audit record.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sharedcare.access import grants, on_behalf
from sharedcare.access.context import Caller
from sharedcare.access.tokens import TokenService
from sharedcare.errors import (
    BadRequest,
    Issue,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)
from sharedcare.fhir import formats, interactions, jsonio
from sharedcare.fhir import responses as resp
from sharedcare.fhir.access_routes import install_access_routes
from sharedcare.fhir.bundles import BundleProcessor, Entry
from sharedcare.fhir.capability import capability_statement
from sharedcare.fhir.definitions import resource_types
from sharedcare.fhir.formats import Format
from sharedcare.fhir.import_routes import install_import_routes
from sharedcare.fhir.mpi_routes import install_mpi_routes
from sharedcare.fhir.search import query as search_query
from sharedcare.fhir.search import shape
from sharedcare.fhir.validation import validate
from sharedcare.ingest import push
from sharedcare.settings import Settings
from sharedcare.storage.grants import GrantStore
from sharedcare.storage.oauth import OAuthStore
from sharedcare.storage.repository import Repository, Unit

log = logging.getLogger("sharedcare.fhir")

PREFIX = "/fhir"
Handler = Callable[..., Awaitable[Response]]


class FhirApi:
    """Holds what the handlers need; `install` serves them at /fhir on the app."""

    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self.base = settings.base_url.rstrip("/")
        self.bundles = BundleProcessor(repo, self.base, settings.max_bundle_entries, settings.max_page_size,
                                       self._bundle_read)
        self.tokens = TokenService(OAuthStore(repo.engine), settings)
        self._table: dict[int, list[tuple[tuple[str, ...], int, str, Handler]]] = {}
        self._routes()

    # -- request helpers ----------------------------------------------------------------------------
    def caller(self, request: Request) -> Caller:
        """Who is asking: set by `dispatch` from the request's bearer token before any handler runs."""
        caller: Caller = request.state.caller
        return caller

    async def authenticate(self, request: Request) -> Caller:
        """The caller of a bearer token (Unauthorized otherwise). On SQLite the primary-key lookup
        runs inline (microseconds); elsewhere in a worker thread, off the event loop."""
        header = request.headers.get("authorization")
        if self.repo.engine.dialect.name == "sqlite":
            caller = self.tokens.authenticate(header)
        else:
            caller = await run_in_threadpool(self.tokens.authenticate, header)
        caller = caller.with_ip(request.client.host if request.client else None)
        request.state.caller = caller  # a refusal below is audited as the client's
        caller = on_behalf.acting_for(caller, request.headers)
        request.state.caller = caller
        found = on_behalf.launch(request.headers)
        if found is not None:
            await run_in_threadpool(self._launch, caller, *found)
        return caller

    def _launch(self, caller: Caller, patient_id: str, context: str) -> None:
        """Record the relationship a launch context asserts (once while it lasts; audited)."""
        if not self.repo.exists("Patient", patient_id):
            raise NotFound("Patient resource not found")
        grants.ensure_launch(GrantStore(self.repo.engine), caller, patient_id, context, datetime.now(UTC))

    @staticmethod
    def fmt(request: Request) -> Format:
        return formats.response_format(request.headers.get("accept"), request.query_params.get("_format"))

    async def body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused (413) beyond `limit` bytes (the node's request limit by default)."""
        limit = limit or self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request bodies are limited to {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request bodies are limited to {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def resource_body(self, request: Request, res_type: str | None = None) -> Any:
        if res_type is not None:
            interactions.check_type(res_type)
        data = await self.body(request)
        if not data:
            raise BadRequest("the request has no body")
        return formats.parse_body(data, request.headers.get("content-type"))

    def write_response(self, request: Request, result: interactions.EntryResult, fmt: Format) -> Response:
        stored = result.stored
        if stored is None:
            return Response(status_code=204)
        headers = resp.version_headers(stored, self.base, location=result.status == 201)
        mode = resp.prefer(request.headers.get("prefer")).get("return", "representation")
        if mode == "minimal":
            return Response(status_code=result.status, headers=headers)
        if mode == "OperationOutcome":
            issues = result.warnings or []
            oo = operation_outcome(issues or [Issue("information", "informational", "the interaction succeeded")])
            return resp.fhir_response(oo, fmt, result.status, headers)
        return resp.fhir_response(stored.data, fmt, result.status, headers)

    @staticmethod
    def query_string(request: Request) -> str:
        # From the ASGI scope: building `request.url` (scheme, host, path) cost ~3% of a search's time.
        raw: bytes = request.scope.get("query_string", b"")
        return raw.decode("latin-1")

    @staticmethod
    def if_match(request: Request) -> int | None:
        return interactions.parse_if_match(request.headers.get("if-match"))

    @staticmethod
    def delete_response(result: interactions.EntryResult) -> Response:
        return Response(status_code=204, headers={"ETag": result.stored.etag} if result.stored else None)

    async def _in_unit(self, request: Request, interaction: str, res_type: str,
                       action: Callable[[Unit], interactions.EntryResult]) -> interactions.EntryResult:
        """Run one write interaction in a unit of its own, off the event loop."""
        return await self.repo.write_async(self.caller(request), interaction, res_type, action)

    # -- reads inside bundles -----------------------------------------------------------------------
    def _bundle_read(self, unit: Unit, entry: Entry) -> tuple[int, Any]:
        """A GET entry of a batch or transaction: a read by id, or a search (first page)."""
        parts = entry.path.split("/")
        interactions.check_type(parts[0])
        if len(parts) == 2:
            stored = unit.read(parts[0], parts[1])
            unit.audit("read", 200, stored)
            return 200, jsonio.loads(stored.data or b"{}")
        if len(parts) == 1:
            q = search_query.parse(parts[0], parse_qsl(entry.query, keep_blank_values=True),
                                   default_count=self.settings.default_page_size,
                                   max_count=self.settings.max_page_size)
            page = unit.search(q)
            self_link = f"{self.base}/{parts[0]}?{q.canonical()}"
            return 200, jsonio.loads(resp.searchset(page, self.base, self_link, {}))
        raise BadRequest(f"Bundle.entry[{entry.index}]: a GET entry reads Type/id or searches Type?criteria")

    # -- routes -------------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self._route

        @r("GET", "/metadata")
        async def metadata(request: Request) -> Response:
            return resp.fhir_response(capability_statement(self.base), self.fmt(request))

        @r("POST", "")
        async def batch_or_transaction(request: Request) -> Response:
            fmt = self.fmt(request)
            bundle = await self.resource_body(request)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise BadRequest("POST to the base URL takes a Bundle")
            caller = self.caller(request)
            source = await run_in_threadpool(push.source_of, self.repo, caller)
            if source is not None and bundle.get("type") == "transaction":  # a source's message, kept in the inbox
                result = await run_in_threadpool(push.transaction, self.repo, self.bundles, caller, source, bundle)
            else:
                result = await run_in_threadpool(self.bundles.process, caller, bundle)
            return resp.fhir_response(result, fmt)

        @r("GET", "/_history")
        async def history_system(request: Request) -> Response:
            return await self._history(request, None, None)

        @r("GET", "/{res_type}")
        async def search_type(request: Request, res_type: str) -> Response:
            return await self._search(request, res_type, list(request.query_params.multi_items()))

        @r("POST", "/{res_type}/_search")
        async def search_post(request: Request, res_type: str) -> Response:
            form = await request.form()
            items = list(request.query_params.multi_items()) + [(k, str(v)) for k, v in form.multi_items()]
            return await self._search(request, res_type, items)

        @r("POST", "/{res_type}")
        async def create(request: Request, res_type: str) -> Response:
            fmt, body = self.fmt(request), await self.resource_body(request, res_type)
            cond = request.headers.get("if-none-exist")
            result = await self._in_unit(request, "create", res_type,
                                         lambda u: interactions.create(u, res_type, body, if_none_exist=cond))
            return self.write_response(request, result, fmt)

        @r("POST", "/{res_type}/$validate")
        async def validate_type(request: Request, res_type: str) -> Response:
            return await self._validate(request, res_type, None)

        @r("POST", "/{res_type}/{res_id}/$validate")
        async def validate_instance(request: Request, res_type: str, res_id: str) -> Response:
            return await self._validate(request, res_type, res_id)

        @r("PUT", "/{res_type}")
        async def conditional_update(request: Request, res_type: str) -> Response:
            fmt, body = self.fmt(request), await self.resource_body(request, res_type)
            criteria, if_match = self.query_string(request), self.if_match(request)
            result = await self._in_unit(request, "update", res_type, lambda u: interactions.conditional_update(
                u, res_type, criteria, body, if_match=if_match, max_count=self.settings.max_page_size))
            return self.write_response(request, result, fmt)

        @r("DELETE", "/{res_type}")
        async def conditional_delete(request: Request, res_type: str) -> Response:
            interactions.check_type(res_type)
            criteria = self.query_string(request)
            result = await self._in_unit(request, "delete", res_type, lambda u: interactions.conditional_delete(
                u, res_type, criteria, self.settings.max_page_size))
            return self.delete_response(result)

        @r("GET", "/{res_type}/_history")
        async def history_type(request: Request, res_type: str) -> Response:
            interactions.check_type(res_type)
            return await self._history(request, res_type, None)

        @r("GET", "/{res_type}/{res_id}")
        async def read(request: Request, res_type: str, res_id: str) -> Response:
            fmt = self.fmt(request)
            interactions.check_type(res_type)
            stored = await self.repo.read_async(self.caller(request), res_type, res_id)
            return resp.fhir_response(stored.data, fmt, 200, resp.version_headers(stored, self.base))

        @r("PUT", "/{res_type}/{res_id}")
        async def update(request: Request, res_type: str, res_id: str) -> Response:
            fmt, body = self.fmt(request), await self.resource_body(request, res_type)
            if_match = self.if_match(request)
            result = await self._in_unit(request, "update", res_type, lambda u: interactions.update(
                u, res_type, res_id, body, if_match=if_match))
            return self.write_response(request, result, fmt)

        @r("PATCH", "/{res_type}/{res_id}")
        async def patch(request: Request, res_type: str, res_id: str) -> Response:
            fmt = self.fmt(request)
            interactions.check_type(res_type)
            if formats.PATCH_TYPE not in (request.headers.get("content-type") or ""):
                raise UnsupportedMediaType("PATCH takes a JSON Patch document (application/json-patch+json)")
            ops, if_match = jsonio.loads(await self.body(request)), self.if_match(request)
            result = await self._in_unit(request, "patch", res_type, lambda u: interactions.patch(
                u, res_type, res_id, ops, if_match=if_match))
            return self.write_response(request, result, fmt)

        @r("DELETE", "/{res_type}/{res_id}")
        async def delete(request: Request, res_type: str, res_id: str) -> Response:
            interactions.check_type(res_type)
            if_match = self.if_match(request)
            result = await self._in_unit(request, "delete", res_type, lambda u: interactions.delete(
                u, res_type, res_id, if_match=if_match))
            return self.delete_response(result)

        @r("GET", "/{res_type}/{res_id}/_history")
        async def history_instance(request: Request, res_type: str, res_id: str) -> Response:
            interactions.check_type(res_type)
            return await self._history(request, res_type, res_id)

        @r("GET", "/Patient/{res_id}/$everything")
        async def everything(request: Request, res_id: str) -> Response:
            return await self._everything(request, res_id)

        @r("POST", "/Patient/$match")
        async def match(request: Request) -> Response:
            return await self._match(request)

        @r("GET", "/{comp_type}/{comp_id}/{res_type}")
        async def compartment_search(request: Request, comp_type: str, comp_id: str, res_type: str) -> Response:
            interactions.check_type(comp_type)
            if res_type == "*":
                raise BadRequest("a compartment search names one resource type (e.g. /Patient/123/Observation)")
            return await self._search(request, res_type, list(request.query_params.multi_items()),
                                      (comp_type, interactions.check_id(comp_id)))

        @r("GET", "/{res_type}/{res_id}/_history/{version}")
        async def vread(request: Request, res_type: str, res_id: str, version: str) -> Response:
            fmt = self.fmt(request)
            interactions.check_type(res_type)
            if not version.isdigit():
                raise BadRequest("a version id is a whole number")
            stored = await self.repo.vread_async(self.caller(request), res_type, res_id, int(version))
            return resp.fhir_response(stored.data, fmt, 200, resp.version_headers(stored, self.base))

        install_access_routes(self)
        self.mpi = install_mpi_routes(self)
        install_import_routes(self)
        for candidates in self._table.values():  # literal segments win over parameters (_history, $validate)
            candidates.sort(key=lambda c: c[1])

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register a handler for `method` on a FHIR URL pattern (e.g. "/{res_type}/{res_id}")."""
        return self._route(method, pattern)

    def _route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        segments = tuple(seg for seg in pattern.split("/") if seg)

        def add(handler: Handler) -> Handler:
            params = sum(seg.startswith("{") for seg in segments)
            self._table.setdefault(len(segments), []).append((segments, params, method, handler))
            return handler
        return add

    async def dispatch(self, request: Request) -> Response:
        """Route a request under /fhir by the FHIR URL grammar: the segment count picks the few
        candidate patterns, literal segments are compared, the rest are the handler's arguments."""
        parts = [p for p in request.scope["path"][len(PREFIX):].split("/") if p]
        method = request.method
        if not (method == "GET" and parts == ["metadata"]):  # the CapabilityStatement is public
            request.state.caller = await self.authenticate(request)
        matched: int | None = None  # parameters of the most literal pattern that matches the path
        for segments, params, candidate_method, handler in self._table.get(len(parts), ()):
            if matched is not None and params > matched:
                break  # a more literal pattern owns this path (GET /metadata is not a type)
            args: list[str] = []
            for seg, part in zip(segments, parts, strict=True):
                if seg[0] == "{":
                    args.append(part)
                elif seg != part:
                    break
            else:
                if candidate_method == method:
                    return await handler(request, *args)
                matched = params
        if matched is not None or len(parts) > 2:
            raise MethodNotAllowed("this interaction is not supported at this URL")
        raise NotFound("no such endpoint")

    def install(self, app: FastAPI) -> None:
        """Serve the API at /fhir on `app` (one route: `dispatch` does the FHIR routing)."""
        for path in (PREFIX, PREFIX + "/{path:path}"):
            app.add_api_route(path, self.dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                              include_in_schema=False)

    async def _search(self, request: Request, res_type: str, items: list[tuple[str, str]],
                      compartment: tuple[str, str] | None = None) -> Response:
        fmt = self.fmt(request)
        interactions.check_type(res_type)
        strict = resp.prefer(request.headers.get("prefer")).get("handling") == "strict"
        q = search_query.parse(res_type, items, default_count=self.settings.default_page_size,
                               max_count=self.settings.max_page_size, strict=strict, compartment=compartment)
        page = await self.repo.search_async(self.caller(request), q, self.query_string(request))
        path = f"{self.base}/{compartment[0]}/{compartment[1]}/{res_type}" if compartment else f"{self.base}/{res_type}"
        params = [*q.link_params(), ("_count", str(q.count))]

        def link(cursor: str | None) -> str | None:
            return f"{path}?" + urlencode([*params, ("_cursor", cursor)]) if cursor else None
        subset = (lambda data: shape.subset(data, q.summary, q.elements)) if q.summary or q.elements else None
        warnings = [f"the search parameter {name!r} is unknown or not supported here and was ignored"
                    for name in q.ignored]
        body = resp.searchset(page, self.base, f"{path}?" + urlencode(params),
                              {"next": link(page.next_cursor), "previous": link(page.previous_cursor)},
                              shape=subset, warnings=warnings)
        return resp.fhir_response(body, fmt)

    async def _everything(self, request: Request, res_id: str) -> Response:
        """Patient/$everything with _since, _type and _count; paged like a search."""
        fmt = self.fmt(request)
        interactions.check_id(res_id)
        params = request.query_params
        count = self.settings.default_page_size
        if "_count" in params:
            count = min(search_query.parse(None, [("_count", params["_count"])], default_count=count,
                                           max_count=self.settings.max_page_size).count, self.settings.max_page_size)
        since = search_query.date_range(params["_since"])[1] if params.get("_since") else None
        types = tuple(t for t in params.get("_type", "").split(",") if t)
        unknown = [t for t in types if t not in resource_types()]
        if unknown:
            raise BadRequest(f"_type names unknown resource types: {', '.join(unknown)[:200]}")
        mdm = params.get("_mdm", "false")
        if mdm not in ("true", "false"):
            raise BadRequest("_mdm is true or false")
        page = await run_in_threadpool(lambda: self.repo.everything(
            self.caller(request), res_id, types=types, since=since, count=count,
            cursor_token=params.get("_cursor"), query_string=self.query_string(request), mdm=mdm == "true"))
        keep = [(k, v) for k, v in params.multi_items() if k in ("_since", "_type", "_mdm")] + [("_count", str(count))]
        path = f"{self.base}/Patient/{res_id}/$everything"

        def link(cursor: str | None) -> str | None:
            return f"{path}?" + urlencode([*keep, ("_cursor", cursor)]) if cursor else None
        body = resp.searchset(page, self.base, f"{path}?" + urlencode(keep),
                              {"next": link(page.next_cursor), "previous": link(page.previous_cursor)})
        return resp.fhir_response(body, fmt)

    async def _history(self, request: Request, res_type: str | None, res_id: str | None) -> Response:
        fmt = self.fmt(request)
        params = request.query_params
        count = min(int(params["_count"]) if params.get("_count", "").isdigit() else self.settings.default_page_size,
                    self.settings.max_page_size)
        since = None
        if params.get("_since"):
            _, since, _ = search_query.date_range(params["_since"])
        page = await run_in_threadpool(
            lambda: self.repo.history(self.caller(request), res_type, res_id, count=count, since=since,
                                      cursor_token=params.get("_cursor"), query_string=self.query_string(request)))
        path = "/".join(p for p in (res_type, res_id) if p)
        prefix = f"{self.base}/{path}/_history" if path else f"{self.base}/_history"
        keep = [(k, v) for k, v in params.multi_items() if k in ("_since",)]
        self_link = f"{prefix}?" + urlencode([*keep, ("_count", str(count))])
        next_link = f"{prefix}?" + urlencode([*keep, ("_count", str(count)), ("_cursor", page.next_cursor)]) \
            if page.next_cursor else None
        return resp.fhir_response(resp.history_bundle(page, self.base, self_link, next_link), fmt)

    async def _match(self, request: Request) -> Response:
        """Patient/$match (mpi/match.py): the input is never stored; answered as a searchset whose
        entries carry a score and a match grade."""
        from sharedcare.mpi import match as mpi_match
        from sharedcare.mpi import packaged
        from sharedcare.storage.mpi_store import record_values

        fmt = self.fmt(request)
        body = await self.resource_body(request)
        try:
            wanted = mpi_match.parse_request(body, max_count=self.settings.max_page_size)
        except mpi_match.MatchInputError as exc:
            raise BadRequest(str(exc)) from None
        shipped = packaged.load()
        values = record_values("", wanted.patient, restricted=False, node=self.settings.node_id, now="")

        def choose(candidates: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[int, Any]]:
            return mpi_match.choose(shipped.model, shipped.thresholds, wanted, candidates)
        chosen = await run_in_threadpool(self.repo.match, self.caller(request), values, choose)
        return resp.fhir_response(resp.match_bundle(chosen, self.base, mpi_match.GRADE_EXTENSION), fmt)

    async def _validate(self, request: Request, res_type: str, res_id: str | None) -> Response:
        """$validate: the body is a resource or a Parameters with a `resource` parameter; never stored."""
        fmt = self.fmt(request)
        interactions.check_type(res_type)
        body = await self.resource_body(request)
        if isinstance(body, dict) and body.get("resourceType") == "Parameters" and res_type != "Parameters":
            found = [p.get("resource") for p in body.get("parameter", []) if p.get("name") == "resource"]
            if not found:
                raise BadRequest("$validate with Parameters needs a 'resource' parameter")
            body = found[0]
        if not isinstance(body, dict) or body.get("resourceType") != res_type:
            raise BadRequest(f"$validate on {res_type} needs a {res_type} resource")
        issues = await run_in_threadpool(validate, body)
        await run_in_threadpool(self.repo.record, self.caller(request), "operation", 200, res_type=res_type,
                                query="$validate")
        if not issues:
            issues = [Issue("information", "informational", "the resource is valid")]
        return resp.fhir_response(operation_outcome(issues), fmt, 200)


