"""Concurrency and durability against a real server process (security cases CV1, CV3, CF1).

Each runs on both backends. The server is a real `sharedcare serve` on a loopback port; requests come
from many threads at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from sharedcare.app import Services
from sharedcare.settings import Settings
from tests.support.live_server import LiveServer

NHS = "https://fhir.nhs.uk/Id/nhs-number"
JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def server(store: Services, settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(settings.database_url, tmp_path).start()
    yield srv
    srv.stop()


def patient(nhs: str = "9434765919") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}], "name": [{"family": "Race"}]}


def test_cv3_parallel_conditional_creates_make_exactly_one_resource(server: LiveServer) -> None:
    headers = {**JSON, "If-None-Exist": f"identifier={NHS}|9434765919"}
    with httpx.Client(timeout=60, headers=server.headers) as http, ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: http.post(f"{server.base}/Patient", json=patient(), headers=headers)
                                 .status_code, range(50)))
        assert statuses.count(201) == 1
        assert set(statuses) <= {200, 201}
        assert http.get(f"{server.base}/Patient?identifier={NHS}|9434765919").json()["total"] == 1


def test_cv3_parallel_conditional_creates_inside_transactions(server: LiveServer) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": patient("9434765870"),
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={NHS}|9434765870"}}]}
    with httpx.Client(timeout=60, headers=server.headers) as http, ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: http.post(server.base, json=bundle, headers=JSON).status_code, range(20)))
        assert set(statuses) == {200}
        assert http.get(f"{server.base}/Patient?identifier={NHS}|9434765870").json()["total"] == 1


def test_cv1_parallel_if_match_updates_exactly_one_wins(server: LiveServer) -> None:
    trials = 25
    with httpx.Client(timeout=60, headers=server.headers) as http:
        created = http.post(f"{server.base}/Patient", json=patient(), headers=JSON).json()
        for trial in range(trials):
            version = trial + 1
            barrier = threading.Barrier(2)

            def put(family: str, version: int = version, barrier: threading.Barrier = barrier) -> int:
                body = {**created, "name": [{"family": family}]}
                barrier.wait()
                return http.put(f"{server.base}/Patient/{created['id']}", json=body,
                                headers={**JSON, "If-Match": f'W/"{version}"'}).status_code

            with ThreadPoolExecutor(max_workers=2) as pool:
                statuses = sorted(pool.map(put, ("A", "B")))
            assert statuses == [200, 412], f"trial {trial}"
        history = http.get(f"{server.base}/Patient/{created['id']}/_history?_count=100").json()
        assert history["total"] == trials + 1  # no lost updates


@pytest.mark.slow
def test_cf1_a_transaction_killed_mid_flight_is_all_or_nothing(store: Services, settings: Settings,
                                                               tmp_path: Path) -> None:
    """kill -9 the server at random moments during a 1,000-entry transaction; after each restart the
    transaction is fully present or fully absent, with no orphaned index rows."""
    rng = random.Random(1234)  # a fixed seed: the same kill points every run
    entries = [{"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:012d}", "resource": patient(),
                "request": {"method": "POST", "url": "Patient"}} for i in range(1000)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    outcomes = set()
    expected_total = 0
    for _ in range(6):
        srv = LiveServer(settings.database_url, tmp_path).start()
        result: dict[str, int] = {}

        def send(srv: LiveServer = srv, result: dict[str, int] = result) -> None:
            try:
                result["status"] = httpx.post(srv.base, json=bundle, headers={**JSON, **srv.headers},
                                              timeout=120).status_code
            except httpx.HTTPError:
                result["status"] = -1

        t = threading.Thread(target=send)
        t.start()
        time.sleep(rng.uniform(0.05, 1.5))
        srv.kill()
        t.join()
        srv = LiveServer(settings.database_url, tmp_path).start()
        total = httpx.get(f"{srv.base}/Patient?_count=0", headers=srv.headers).json()["total"]
        srv.stop()
        assert total - expected_total in (0, 1000)
        outcomes.add(total - expected_total)
        expected_total = total
    with store.engine.connect() as conn:
        from sqlalchemy import func, select

        from sharedcare.storage.tables import idx_token, resource

        resources = conn.execute(select(func.count()).select_from(resource)).scalar_one()
        orphans = conn.execute(select(func.count()).select_from(idx_token).where(
            ~idx_token.c.res_id.in_(select(resource.c.res_id)))).scalar_one()
    assert resources == expected_total
    assert orphans == 0
