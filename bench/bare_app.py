"""The app the read benchmark serves: the real sharedcare app, plus one bench-only route on the same
stack (FastAPI, uvicorn, the same middleware) that returns the same stored bytes from memory with no
database, policy or audit. The ratio between the two is what the store's read path costs."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from sharedcare.app import create_app, open_services
from sharedcare.fhir.formats import JSON_TYPE
from sharedcare.settings import get_settings
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
