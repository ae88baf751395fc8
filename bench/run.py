"""Run the benchmarks and print side-by-side ratios: `python -m bench.run [--quick] [--only ...]`.

The server runs on core 0 and the load generator (wrk) on core 1 (`taskset`), on loopback only.
Every loop is bounded in time and count. Results go to stdout and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = Path(os.environ.get("SHAREDCARE_SHARED_DIR", ROOT.parent / "shared")) / "conformance" / "synthea-r4"
RESULTS = ROOT / "bench" / "results"
DURATION = 10  # seconds per wrk run


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for the HTTP benchmarks: apt-get install wrk")
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn on core 0 serving `app`: by default bench.bare_app (the real app plus the bare routes);
    bench/search.py serves the real app alone (`sharedcare.app:create_app`, a factory)."""

    def __init__(self, database_url: str, log: Path, *, app: str = "bench.bare_app:app", factory: bool = False,
                 env: dict[str, str] | None = None, start_s: float = 60) -> None:
        self.port = free_port()
        self.env = {**os.environ, "SHAREDCARE_DATABASE_URL": database_url,
                    "SHAREDCARE_BASE_URL": f"http://127.0.0.1:{self.port}/fhir", **(env or {})}
        self.log_path = log
        self.log = log.open("ab")
        self.app, self.factory, self.start_s = app, factory, start_s
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", self.app, *(["--factory"] if self.factory else []),
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=1).status_code == 200:
                    self.token = mint(self.database_url, NODE)
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        raise SystemExit(f"the bench server did not start (see {self.log_path})")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """Credentials of the node's all-scopes system client (every /fhir request needs a token)."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def base_url(self) -> str:
        return f"{self.base}/fhir"


NODE = {"kind": "system", "agent_id": "client:bench", "scopes": ["system/*.cruds"], "client_id": "bench"}


def mint(database_url: str, caller: dict[str, Any]) -> str:
    """A bearer token for `caller` (a Caller as JSON fields), minted on the store as the node may."""
    from sharedcare.access.context import Caller
    from sharedcare.access.tokens import TokenService
    from sharedcare.settings import Settings
    from sharedcare.storage import database
    from sharedcare.storage.oauth import OAuthStore

    engine = database.make_engine(database_url)
    try:
        who = Caller.from_json(json.dumps(caller))
        # A day: the longest benchmark runs outlast the default 15 minutes.
        settings = Settings(database_url=database_url, access_token_seconds=86_400)
        return TokenService(OAuthStore(engine), settings).issue_for(who, "bench", " ".join(who.scopes))
    finally:
        engine.dispose()


def lua_headers(headers: dict[str, str]) -> str:
    return "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())


def wrk(url: str, script: Path, *, connections: int = 32, duration: int = DURATION,
        timeout_s: int | None = None) -> dict[str, Any]:
    """wrk on core 1; `timeout_s` raises wrk's per-request timeout (2 s by default) for slow requests."""
    out = subprocess.run(
        ["taskset", "-c", "1", ensure_wrk(), "-t1", f"-c{connections}", f"-d{duration}s",
         *(["--timeout", f"{timeout_s}s"] if timeout_s else []), "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=duration + 60 + (timeout_s or 0)).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)

    def latency(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s|m)\b", out)
        if not m:
            return float("nan")
        return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)], 2)
    return {"rps": round(float(rps.group(1)), 1) if rps else 0.0, "requests": int(done.group(1)) if done else 0,
            "p50_ms": latency("50"), "p99_ms": latency("99"), "connections": connections, "seconds": duration,
            "errors": int(non2xx.group(1)) if non2xx else 0, "timeouts": int(timeouts.group(1)) if timeouts else 0}


def patient(i: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "https://example.org/mrn", "value": f"B{i}"}],
            "name": [{"family": f"Bench{i}", "given": ["Ann"]}], "gender": "female", "birthDate": "1970-01-01",
            "address": [{"line": ["1 High Street"], "city": "London", "postalCode": "SW1A 1AA"}]}


def fill(database_url: str, count: int, batch: int = 500) -> list[str]:
    """Store `count` Patients (with an Observation each after the first 1,000) through the Repository in
    large transactions: the real write path (validation aside), so indexes and audit are all there."""
    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services
    from sharedcare.settings import Settings

    svc = open_services(Settings(database_url=database_url))
    try:
        return write_batches(svc, system_caller(), count, lambda unit, i: unit.create(patient(i)).stored.res_id,
                             batch)
    finally:
        svc.committer.close()
        svc.engine.dispose()


def write_batches(svc: Any, caller: Any, count: int, write: Any, batch: int = 500) -> list[str]:
    """`write(unit, i)` for i in range(count), `batch` to a transaction; the ids it returns."""
    ids: list[str] = []
    for start in range(0, count, batch):
        with svc.repo.unit(caller, "create") as unit:
            ids += [write(unit, i) for i in range(start, min(count, start + batch))]
    return ids


def lua_read(ids: list[str], prefix: str, workdir: Path, headers: dict[str, str] | None = None,
             seed: int = 7) -> Path:
    """A wrk script requesting `prefix` + one of (a sample of) `ids` at random, with `headers`."""
    sample = random.Random(seed).sample(ids, min(len(ids), 2000))
    name = prefix.strip("/").replace("/", "-").replace("?", "-").replace("=", "")
    script = workdir / f"read-{name}.lua"
    script.write_text(
        lua_headers(headers or {}) +
        "ids = {" + ",".join(f'"{i}"' for i in sample) + "}\n"
        "request = function()\n"
        f'  return wrk.format("GET", "{prefix}" .. ids[math.random(#ids)])\nend\n')
    return script


def lua_create(workdir: Path, headers: dict[str, str]) -> Path:
    body = json.dumps(patient(0)).replace('"', '\\"')
    script = workdir / "create.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/fhir+json"\n' + lua_headers(headers))
    return script


def bench_read_create(database_url: str, stored: int, workdir: Path) -> dict[str, Any]:
    ids = fill(database_url, stored)
    with Server(database_url, workdir / "server.log") as srv:
        wrk(f"{srv.base}/", lua_read(ids, "/fhir/Patient/", workdir, srv.headers), duration=3)  # warm-up
        read = wrk(f"{srv.base}/", lua_read(ids, "/fhir/Patient/", workdir, srv.headers))
        bare = wrk(f"{srv.base}/", lua_read(ids, "/bare/Patient/", workdir))
        unaudited = wrk(f"{srv.base}/", lua_read(ids, "/unaudited/Patient/", workdir))
        create = wrk(f"{srv.base}/fhir/Patient", lua_create(workdir, srv.headers), connections=16)
    return {"stored": stored, "read": read, "bare": bare, "read_ratio": round(read["rps"] / bare["rps"], 3),
            "unaudited": unaudited, "unaudited_ratio": round(unaudited["rps"] / bare["rps"], 3), "create": create}


STAFF = {"kind": "user", "agent_id": "user:bench.clinician", "role": "R8000", "organisation": "BGP",
         "scopes": ["user/*.cruds"], "client_id": "bench"}


def fill_access(database_url: str, count: int, batch: int = 500) -> list[str]:
    """`count` Patients registered at practice BGP, each with an Observation, all written by another
    organisation's system (BTR): a clinician at BGP sees them through the relationship table (the
    policy's longest path), not as their own organisation's records."""
    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services
    from sharedcare.settings import Settings

    svc = open_services(Settings(database_url=database_url))
    ods = "https://fhir.nhs.uk/Id/ods-organization-code"
    with svc.repo.unit(system_caller(), "update") as unit:
        unit.write("Organization", "bench-gp", {"resourceType": "Organization", "id": "bench-gp",
                                                "identifier": [{"system": ods, "value": "BGP"}]}, method="PUT")

    def write(unit: Any, i: int) -> str:
        pid: str = unit.create(patient(i) | {"generalPractitioner": [{"reference": "Organization/bench-gp"}]}
                               ).stored.res_id
        unit.create({"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
                     "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                     "valueQuantity": {"value": 120, "unit": "mm[Hg]"}})
        return pid

    try:
        return write_batches(svc, system_caller(organisation="BTR"), count, write, batch)
    finally:
        svc.committer.close()
        svc.engine.dispose()


def bench_policy(database_url: str, stored: int, workdir: Path) -> dict[str, Any]:
    """Policy and audit overhead on read and search: the same requests by a clinician whose access
    comes through a legitimate relationship (token, policy condition, audit record), by the node's own
    client (token and audit; its policy condition is empty), and unguarded (no token, no policy, no
    audit), side by side in one run, each twice in alternating order."""
    ids = fill_access(database_url, stored)
    out: dict[str, Any] = {"stored_patients": stored}
    with Server(database_url, workdir / "server.log") as srv:
        staff = {"Authorization": f"Bearer {mint(database_url, STAFF)}"}
        variants = {"staff": ("/fhir", staff), "node": ("/fhir", srv.headers), "unguarded": ("/unguarded", {})}
        for kind, path in (("read", "/Patient/"), ("search", "/Observation?patient=")):
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            wrk(f"{srv.base}/", lua_read(ids, f"/fhir{path}", workdir, staff), duration=3)  # warm-up
            for order in (list(variants), list(reversed(variants))):
                for name in order:
                    prefix, headers = variants[name]
                    runs[name].append(wrk(f"{srv.base}/", lua_read(ids, f"{prefix}{path}", workdir, headers)))
            best = {name: max(r["rps"] for r in got) for name, got in runs.items()}
            out[kind] = {"runs": runs, "rps": best,
                         "staff_ratio": round(best["staff"] / best["unguarded"], 3),
                         "node_ratio": round(best["node"] / best["unguarded"], 3),
                         "policy_ratio": round(best["staff"] / best["node"], 3)}
    return out


@contextlib.contextmanager
def pinned_pg_database(name: str) -> Iterator[tuple[str, str]]:
    """A migrated database `name` on a PostgreSQL cluster of the benchmark's own (bench/search.py),
    pinned to core 0 with the server, since the database's work is the server side's too: yields its
    URL and the server's version; the cluster is removed afterwards."""
    from bench.search import PgCluster
    from sharedcare.storage import database

    root = Path(tempfile.mkdtemp(prefix="sharedcare-bench-pg-"))
    root.chmod(0o755)  # PostgreSQL runs as its own user and must reach its folder
    pg = PgCluster(root / "pg")
    pg.start(pin=True)
    try:
        pg.sql(f"CREATE DATABASE {name}")
        url = pg.url(name)
        engine = database.make_engine(url)
        try:
            database.upgrade(engine)
        finally:
            engine.dispose()
        yield url, f"PostgreSQL {pg.version()}"
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def bench_policy_pg(workdir: Path, stored: int) -> dict[str, Any]:
    """`bench_policy` on PostgreSQL (`pinned_pg_database`)."""
    with pinned_pg_database("policy") as (url, version):
        return bench_policy(url, stored, workdir) | {"backend": version}


def report_policy(r: dict[str, Any]) -> None:
    for kind in ("read", "search"):
        got = r[kind]
        print(f"policy+audit [{r.get('backend', 'SQLite')}, {kind}, {r['stored_patients']:,} patients]: "
              f"clinician {got['rps']['staff']}/s, "
              f"node client {got['rps']['node']}/s, unguarded {got['rps']['unguarded']}/s; overhead "
              f"{1 - got['staff_ratio']:.1%} (goal at most 15%), of which policy {1 - got['policy_ratio']:.1%}")


def bench_load(database_url: str, raw_url: str, workdir: Path) -> dict[str, Any]:
    """Synthea transaction bundles through the API, against raw inserts of the same rows: posted one at
    a time (the server waits for each request body and each commit's flush), and two at a time (one
    bundle is received and parsed while another commits, which is what the server can sustain)."""
    files = sorted(SYNTHEA.glob("*.json"), key=lambda p: (not p.name.startswith(("hospital", "practitioner")),
                                                          p.name))
    if not files:
        raise SystemExit(f"Synthea bundles not found in {SYNTHEA}")
    bodies = [f.read_bytes() for f in files]
    rates = {}
    for clients in (1, 2):
        url = database_url.replace(".db", f"-{clients}.db")
        fill(url, 0)
        with Server(url, workdir / "server.log") as srv:
            rates[clients] = post_bundles(srv.base, bodies, clients, srv.headers)
    raw_rate = len_resources(bodies) / raw_insert(raw_url, bodies)
    return {"resources": len_resources(bodies), "api_per_s": round(rates[2]), "api_per_s_one_client": round(rates[1]),
            "raw_per_s": round(raw_rate), "ratio": round(rates[2] / raw_rate, 3),
            "ratio_one_client": round(rates[1] / raw_rate, 3)}


def len_resources(bodies: list[bytes]) -> int:
    import orjson

    return sum(len(orjson.loads(b)["entry"]) for b in bodies)


def post_bundles(base: str, bodies: list[bytes], clients: int, headers: dict[str, str]) -> float:
    """Post every bundle (hospitals and practitioners first, then patients in file order) from
    `clients` concurrent clients; resources stored per second."""
    from concurrent.futures import ThreadPoolExecutor

    def post(body: bytes) -> int:
        with httpx.Client(timeout=300) as http:
            r = http.post(f"{base}/fhir", content=body, headers={"Content-Type": "application/fhir+json", **headers})
            r.raise_for_status()
            return len(r.json()["entry"])

    start = time.perf_counter()
    # The shared organisations and practitioners go first, alone: patients' bundles refer to them.
    stored = sum(post(b) for b in bodies[:2])
    with ThreadPoolExecutor(clients) as pool:
        stored += sum(pool.map(post, bodies[2:]))
    return stored / (time.perf_counter() - start)


def raw_insert(database_url: str, bodies: list[bytes]) -> float:
    """The same rows (current + history, the same JSON bytes, ids made the same way) with plain
    executemany, one transaction per bundle, in a fresh database of the same kind: the floor the store
    is measured against."""
    import orjson
    from sqlalchemy import insert

    from sharedcare.storage import database
    from sharedcare.storage.repository import new_id
    from sharedcare.storage.tables import resource, resource_history

    engine = database.make_engine(database_url)
    database.upgrade(engine)
    start = time.perf_counter()
    seq = 0
    for body in bodies:
        entries = orjson.loads(body)["entry"]
        hist, cur = [], []
        for e in entries:
            seq += 1
            res = e["resource"]
            data = orjson.dumps(res)
            row = {"res_type": res["resourceType"], "res_id": new_id(), "version_id": 1,
                   "last_updated": "2026-01-01T00:00:00.000000", "partition_key": "_shared", "deleted": False,
                   "data": data}
            hist.append({**row, "method": "POST"})
            cur.append({**row, "created_seq": seq})
        with engine.connect().execution_options(write=True) as conn, conn.begin():
            conn.execute(insert(resource_history), hist)
            conn.execute(insert(resource), cur)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="slope up to 100k stored resources, not 1M")
    parser.add_argument("--only", default="read,policy,load,slope",
                        help="comma-separated: read, policy, policy-pg, load, slope")
    args = parser.parse_args()
    only = set(args.only.split(","))
    ensure_wrk()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="sharedcare-bench-") as tmp:
        work = Path(tmp)
        if "read" in only:
            results["read_create"] = bench_read_create(f"sqlite:///{work / 'read.db'}", 10_000, work)
            report_read(results["read_create"])
        if "policy" in only:
            results["policy"] = bench_policy(f"sqlite:///{work / 'policy.db'}", 10_000, work)
            report_policy(results["policy"])
        if "policy-pg" in only:
            results["policy_pg"] = bench_policy_pg(work, 10_000)
            report_policy(results["policy_pg"])
        if "load" in only:
            results["load"] = bench_load(f"sqlite:///{work / 'load.db'}", f"sqlite:///{work / 'raw.db'}", work)
            load = results["load"]
            print(f"synthea load: {load['api_per_s']} resources/s through the API from two clients (goal 2,000), "
                  f"{load['api_per_s_one_client']}/s from one; raw inserts {load['raw_per_s']}/s; ratio "
                  f"{load['ratio']} ({load['ratio_one_client']} from one client)")
        if "slope" in only:
            sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
            results["slope"] = []
            for size in sizes:
                one = bench_read_create(f"sqlite:///{work / f'slope-{size}.db'}", size, work)
                results["slope"].append(one)
                report_read(one)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))


def report_read(r: dict[str, Any]) -> None:
    print(f"[{r['stored']:,} stored] read {r['read']['rps']}/s (p50 {r['read']['p50_ms']} ms, p99 "
          f"{r['read']['p99_ms']} ms; goal 1,500/s) vs bare {r['bare']['rps']}/s: ratio {r['read_ratio']} "
          f"(goal 0.5); create {r['create']['rps']}/s (goal 400/s; p99 {r['create']['p99_ms']} ms); diagnostic: "
          f"the same read without its audit record {r['unaudited']['rps']}/s, ratio {r['unaudited_ratio']}")


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    m = re.search(r"model name\s*:\s*(.+)", text)
    return m.group(1).strip() if m else "unknown"


if __name__ == "__main__":
    main()
