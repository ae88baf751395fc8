"""The app the read benchmark serves: the real sharedcare app, plus bench-only routes on the same
stack (FastAPI, uvicorn, the same middleware):

- /bare/Patient/{id} returns the same stored bytes from memory with no database, policy or audit.
  The ratio of the real read to it is what the store's read path costs.
- /unaudited/Patient/{id} is the real read (the same policy-restricted SELECT and response) without
  its audit record: a diagnostic that splits that cost into the lookup and the durable audit record.
  It exists only in this benchmark app; the product never serves data unaudited (safety property 3).
- /unguarded/Patient/{id} and /unguarded/Observation?... are the real read and search with no token,
  no access policy and no audit record: the baseline of the policy and audit overhead."""

from __future__ import annotations

from sqlalchemy import select, true
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sharedcare.access.context import system_caller
from sharedcare.app import create_app, open_services
from sharedcare.fhir import responses
from sharedcare.fhir.formats import JSON_TYPE
from sharedcare.fhir.search import query as search_query
from sharedcare.settings import get_settings
from sharedcare.storage import dialects, repository, search
from sharedcare.storage.tables import resource

settings = get_settings()
services = open_services(settings)
with services.engine.connect() as conn:
    CACHE = {r.res_id: r.data for r in conn.execute(
        select(resource.c.res_id, resource.c.data).where(resource.c.res_type == "Patient"))}

app = create_app(settings, services)


@app.get("/bare/Patient/{res_id}")
async def bare(res_id: str) -> Response:
    return Response(CACHE[res_id], media_type=JSON_TYPE)


CALLER = system_caller(settings.node_id)
BASE = settings.base_url.rstrip("/")


@app.get("/unaudited/Patient/{res_id}")
async def unaudited(res_id: str) -> Response:
    stored, error, _record = services.repo._read(CALLER, "Patient", res_id)
    if error is not None:
        raise error
    assert stored is not None
    return Response(stored.data, media_type=JSON_TYPE, headers=responses.version_headers(stored, BASE))


# The same read and search with no token, no access policy (the node's caller: no condition) and no
# audit record: what the policy and audit overhead is measured against (bench/run.py `policy`).
@app.get("/unguarded/Patient/{res_id}")
async def unguarded_read(res_id: str) -> Response:
    return await unaudited(res_id)


@app.get("/unguarded/Observation")
async def unguarded_search(request: Request) -> Response:
    q = search_query.parse("Observation", list(request.query_params.multi_items()),
                           default_count=settings.default_page_size, max_count=settings.max_page_size)

    def run() -> bytes:
        with services.engine.connect().execution_options(**dialects.read_options(services.engine)) as conn:
            result = search.page(conn, q, lambda _table: true(), None, BASE)
        return responses.searchset(repository._page(result), BASE, f"{BASE}/Observation?{q.canonical()}", {})
    return Response(await run_in_threadpool(run), media_type=JSON_TYPE)
