"""`$import` of NDJSON, measured against raw inserts of the same rows into the same kind of database:
`python -m bench.bulk_import [--copies N] [--backend sqlite|postgresql] [--workers N]`.

The Synthea bundles of the conformance set become NDJSON (references to their fullUrls rewritten to
Type/id), copied `--copies` times under fresh ids. A source's system client posts the file to
`$import` on the real app (uvicorn on core 0, with its inbox worker, or with `--workers N` that many
`sharedcare inbox work` processes), and the client polls the status URL (core 1) until the manifest
says every part is written: resources per second from the POST to
the manifest, validation included. The floor is the same rows (current + history, the same JSON
bytes) inserted with plain executemany, one transaction per 250 (the import's part), into a fresh
database of the same kind (bench/run.py raw_insert).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson

from bench.run import ROOT, SYNTHEA, Server, mint, pinned_pg_database, raw_insert

CLIENT = {"kind": "system", "agent_id": "client:bench-gp", "scopes": ["system/*.cruds"], "client_id": "bench-gp"}


def ndjson_lines(copies: int) -> list[bytes]:
    """The Synthea resources as NDJSON lines, `copies` times under fresh ids (references follow)."""
    bundles = [orjson.loads(f.read_bytes()) for f in sorted(SYNTHEA.glob("*.json"))]
    if not bundles:
        raise SystemExit(f"Synthea bundles not found in {SYNTHEA}")
    lines: list[bytes] = []
    for copy in range(copies):
        for bundle in bundles:
            ids = {e["fullUrl"]: (e["resource"]["resourceType"],
                                  str(uuid.uuid5(uuid.NAMESPACE_URL, f"{copy}{e['fullUrl']}")))
                   for e in bundle["entry"] if "fullUrl" in e}

            def fix(value: Any, ids: dict[str, tuple[str, str]] = ids) -> Any:
                if isinstance(value, dict):
                    return {k: (f"{ids[v][0]}/{ids[v][1]}" if k == "reference" and isinstance(v, str) and v in ids
                                else fix(v)) for k, v in value.items()}
                if isinstance(value, list):
                    return [fix(v) for v in value]
                return value
            for entry in bundle["entry"]:
                res = fix(entry["resource"])
                if entry.get("fullUrl") in ids:
                    res["id"] = ids[entry["fullUrl"]][1]
                lines.append(orjson.dumps(res))
    return lines


def prepare(database_url: str) -> None:
    from sharedcare.ingest import sources
    from sharedcare.storage import database
    from sharedcare.storage.inbox_store import Source

    engine = database.make_engine(database_url)
    try:
        database.upgrade(engine)
        sources.register(engine, Source("BENCHGP", "BENCHGP", "Bench practice", ("fhir",), client_id="bench-gp"))
    finally:
        engine.dispose()


def import_rate(database_url: str, body: bytes, resources: int, workdir: Path, workers: int) -> dict[str, Any]:
    """With `workers` 0 the server's own inbox worker writes the parts; otherwise that many
    `sharedcare inbox work` processes do (the n-th on core n % 2), the server only receiving."""
    prepare(database_url)
    env = {"SHAREDCARE_INBOX_WORKER": "0" if workers else "1", "SHAREDCARE_LOG_LEVEL": "WARNING",
           "SHAREDCARE_MAX_IMPORT_BYTES": str(len(body) + 1024)}
    worker_env = {**os.environ, "SHAREDCARE_DATABASE_URL": database_url, "SHAREDCARE_LOG_LEVEL": "WARNING"}
    log = (workdir / "workers.log").open("ab")
    procs = [subprocess.Popen(["taskset", "-c", str(n % 2), sys.executable, "-m", "sharedcare.cli", "inbox", "work"],
                              cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT) for n in range(workers)]
    try:
        return _timed(database_url, body, resources, workdir, env) | {"workers": workers or "in the server"}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        log.close()


def _timed(database_url: str, body: bytes, resources: int, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    with Server(database_url, workdir / "server.log", app="sharedcare.app:create_app", factory=True,
                env=env) as srv:
        headers = {"Authorization": f"Bearer {mint(database_url, CLIENT)}"}
        with httpx.Client(timeout=600) as http:
            start = time.perf_counter()
            got = http.post(f"{srv.base_url}/$import", content=body,
                            headers={**headers, "Content-Type": "application/fhir+ndjson"})
            got.raise_for_status()
            accepted = time.perf_counter() - start
            status = got.headers["content-location"]
            while True:
                poll = http.get(status, headers=headers)
                if poll.status_code == 200:
                    break
                poll.raise_for_status()
                time.sleep(0.05)
            elapsed = time.perf_counter() - start
    manifest = poll.json()
    written = sum(o["count"] for o in manifest["output"])
    errors = sum(e["count"] for e in manifest["error"])
    return {"resources": resources, "written": written, "errors": errors, "accepted_s": round(accepted, 2),
            "elapsed_s": round(elapsed, 2), "per_s": round(written / elapsed)}


def floor_rate(database_url: str, lines: list[bytes]) -> float:
    """Raw inserts of the same resources, one transaction per part of 250 (bench/run.py raw_insert)."""
    from sharedcare.ingest.bulk_import import CHUNK_LINES

    bodies = [orjson.dumps({"entry": [{"resource": orjson.loads(line)} for line in lines[i:i + CHUNK_LINES]]})
              for i in range(0, len(lines), CHUNK_LINES)]
    return len(lines) / raw_insert(database_url, bodies)


def _create_database(url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=3, help="copies of the Synthea set (3,699 resources each)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, default=0,
                        help="separate `sharedcare inbox work` processes (0: the server's own worker)")
    args = parser.parse_args()
    lines = ndjson_lines(args.copies)
    body = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        workdir = Path(tmp)
        if args.backend == "sqlite":
            result = import_rate(f"sqlite:///{workdir / 'import.db'}", body, len(lines), workdir, args.workers)
            raw = floor_rate(f"sqlite:///{workdir / 'raw.db'}", lines)
        else:
            with pinned_pg_database("bench_import") as (url, _version):
                result = import_rate(url, body, len(lines), workdir, args.workers)
                raw_url = url.rsplit("/", 1)[0] + "/bench_import_raw"
                _create_database(url, "bench_import_raw")
                raw = floor_rate(raw_url, lines)
    result |= {"backend": args.backend, "raw_per_s": round(raw), "ratio": round(result["per_s"] / raw, 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
