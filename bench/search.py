"""Search benchmark: `python -m bench.search [--sizes 10000,30000,100000] [--backends sqlite,postgresql]`.

For each backend and size (patients, about 100 resources each) it fills a database with the
project's own storage code (no HTTP: the rows the Repository would write), serves it with the real
app under uvicorn pinned to core 0, and measures, side by side in the same run:

- latency (one client, sequential, many different values, every kind in turn within a time budget):
  p50 and p99 of the first page of token, date, string, chained and `_include` searches and of
  `Patient/$everything`, each against the same first page fetched by hand-written SQL on the same
  database (pinned to core 0 too), with a read by id as the reference for the fixed cost of a request;
- throughput of token and date searches with `wrk` (pinned to core 1), against the hand-written SQL
  run back to back on one connection;
- the SQL the server runs for each kind of search (captured from `storage.search` in-process) with
  its per-statement time and query plan (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN ANALYZE` on
  PostgreSQL).

The code measured is a snapshot of src/ taken (and checked) at the start, which this process, its
fill workers and the server all import, so edits to src/ during a run do not mix versions.

Filled databases are cached in bench/results/search-cache/ (keyed by backend and size) so re-runs do
not refill; a larger size grows a copy of (or, when the disk is short, the very) database of the
next smaller size, and a size that cannot fit on the disk (leaving 8 GiB free) is skipped with its
projected size and fill time. PostgreSQL runs from the machine's binaries as the `postgres` user in
a cluster kept in that folder. Results: stdout, bench/results/search-latest.json and a markdown
section in bench/results/search-latest.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2 as httpx
from tests.support.postgres import pg_binary

from bench.run import RESULTS, ROOT, SYNTHEA, Server, cpu_model, ensure_wrk, free_port, lua_headers, wrk

CACHE = RESULTS / "search-cache"
MANIFEST = CACHE / "manifest.json"
GEN_VERSION = 1  # bump when the generated data changes: cached databases of other versions are refilled
SEED = 20261128
PER_PATIENT = 100  # resources per generated patient, on average
BIG_PATIENTS = (0, 5_000, 9_999)  # patient numbers that get ~1,000 resources (for $everything)
BIG_SIZE = 1_000
AUTHOR = "system:local"  # the system caller's agent id (what the server writes as author)
SHARED_TYPES = frozenset({"Organization", "Practitioner", "Location", "PractitionerRole"})
FREE_MARGIN = 8 * 2**30  # bytes of disk always left free for everyone else
DEFAULT_BYTES_PER_PATIENT = {"sqlite": 715_000, "postgresql": 730_000}  # measured; a fill updates them
GOALS = {  # from the issue: milliseconds (p50, p99) and searches per second
    "token": {"p50": 5.0, "p99": 50.0, "rps": 300.0},
    "date": {"p50": 5.0, "p99": 50.0, "rps": 300.0},
    "condition": {"p50": 5.0, "p99": 50.0},
    "chained": {"p50": 20.0},
    "include_encounter": {"p50": 20.0},
    "include_observation": {"p50": 20.0},
    "everything": {"p50": 50.0},
}
KIND_LABEL = {
    "token": "Observation?code=<loinc> (token; 10 common + 10 rare codes)",
    "date": "Observation?date=ge<month>&date=lt<next month> (date)",
    "condition": "Condition?code=<snomed> (token)",
    "family": "Patient?family=<prefix or name> (string)",
    "chained": "Observation?subject:Patient.family=<name>&code=<loinc> (chained)",
    "include_encounter": "Encounter?patient=<id>&_include=Encounter:practitioner",
    "include_observation": "Observation?patient=<id>&_include=Observation:subject",
    "everything": "Patient/<id with ~1,000 resources>/$everything (first page)",
    "read": "Patient/<id> (read by id, no search: the fixed cost of an audited request, for reference)",
}
KINDS = tuple(KIND_LABEL)


# -- the data: Synthea bundles replicated as templates -----------------------------------------------

@dataclass
class TemplateEntry:
    url: str  # the bundle's fullUrl
    res_type: str
    raw: bytes  # the resource without its id, as JSON
    refs: tuple[str, ...]  # fullUrls of this bundle that it references (in any string)


@dataclass
class Template:
    name: str
    entries: list[TemplateEntry]  # everything but the shared resources, the Patient first
    deps: list[list[int]]  # per entry: indexes of the (non-shared, non-Patient) entries it references


@dataclass
class World:
    templates: list[Template]
    shared: list[TemplateEntry]  # Organizations and Practitioners, created once per database
    families: list[str]
    family_cum: list[float]
    givens: list[str]


_WORLD: World | None = None


def _strings(obj: Any) -> Iterator[str]:
    stack = [obj]
    while stack:
        cur = stack.pop()
        for v in (cur.values() if isinstance(cur, dict) else cur):
            if isinstance(v, str):
                yield v
            elif isinstance(v, (dict, list)):
                stack.append(v)


def _family_pool(n: int = 20_000) -> list[str]:
    syllables = [a + b for a in "bcdfghklmnprstvwyz" for b in "aeiou"] + ["al", "an", "ar", "el", "en", "or"]
    rng = random.Random(SEED)
    out: dict[str, None] = {}
    while len(out) < n:
        name = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 3, 3, 4))))
        out[name.capitalize()] = None
    return list(out)


def world() -> World:
    """The templates (parsed once per process)."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    from sharedcare.fhir import jsonio

    files = sorted(SYNTHEA.glob("*.json"))
    if not files:
        raise SystemExit(f"Synthea bundles not found in {SYNTHEA}")
    shared: list[TemplateEntry] = []
    for f in files:
        if f.name.startswith(("hospital", "practitioner")):
            for e in jsonio.loads(f.read_bytes())["entry"]:
                res = {k: v for k, v in e["resource"].items() if k != "id"}
                shared.append(TemplateEntry(e["fullUrl"], res["resourceType"], jsonio.dumps(res), ()))
    shared_urls = {s.url for s in shared}
    templates, givens = [], []
    for f in files:
        if f.name.startswith(("hospital", "practitioner")) or f.suffix != ".json":
            continue
        bundle = jsonio.loads(f.read_bytes())
        urls = {e["fullUrl"] for e in bundle["entry"]}
        entries: list[TemplateEntry] = []
        for e in bundle["entry"]:
            res = {k: v for k, v in e["resource"].items() if k != "id"}
            if res["resourceType"] in SHARED_TYPES:
                if e["fullUrl"] not in shared_urls:
                    raise SystemExit(f"{f.name}: {res['resourceType']} {e['fullUrl']} is not in the shared bundles")
                continue
            refs = tuple(dict.fromkeys(s for s in _strings(res) if s in urls))
            entry = TemplateEntry(e["fullUrl"], res["resourceType"], jsonio.dumps(res), refs)
            if res["resourceType"] == "Patient":
                entries.insert(0, entry)
                givens += [g for n in res.get("name", []) for g in n.get("given", [])]
            else:
                entries.append(entry)
        index = {e.url: i for i, e in enumerate(entries)}
        deps = [[index[r] for r in e.refs if r in index and index[r] != 0] for e in entries]
        templates.append(Template(f.stem, entries, deps))
    families = _family_pool()
    weights = [1 / (r + 20) for r in range(len(families))]  # Zipf-like: a few common names, many rare
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    _WORLD = World(templates, shared, families, [c / total for c in cum], sorted(set(givens)))
    return _WORLD


def _pick(entries: list[TemplateEntry], deps: list[list[int]], p: float, rng: random.Random) -> list[int]:
    """A consistent subsample: each encounter (and each resource that hangs off no other resource)
    is kept with probability p; anything that references a dropped resource is dropped with it."""
    keep = [True] + [rng.random() < p if (e.res_type == "Encounter" or not deps[i]) else True
                     for i, e in enumerate(entries) if i > 0]
    changed = True
    while changed:
        changed = False
        for i, d in enumerate(deps):
            if keep[i] and any(not keep[j] for j in d):
                keep[i] = False
                changed = True
    return [i for i, k in enumerate(keep) if k]


def _vary_patient(body: dict[str, Any], n: int, rng: random.Random, w: World) -> None:
    for name in body.get("name", []):
        name["family"] = w.families[bisect.bisect_left(w.family_cum, rng.random())]
        if name.get("given"):
            name["given"] = [rng.choice(w.givens)]
    if "birthDate" in body:
        born = date.fromisoformat(body["birthDate"]) + timedelta(days=rng.randint(-200, 200))
        body["birthDate"] = born.isoformat()
    for ident in body.get("identifier", []):
        if isinstance(ident.get("value"), str):
            ident["value"] = f"{ident['value']}-{n}"


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass
class Batch:
    """What the storage layer would write for some resources: current rows without their history
    sequence number (given in order by the loader), and index and compartment rows per table."""

    resources: list[tuple[Any, ...]] = field(default_factory=list)  # res_type, res_id, lu, pk, source, security, data
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    patients: list[tuple[int, str, int]] = field(default_factory=list)  # number, id, resources

    def add(self, res_type: str, res_id: str, body: dict[str, Any], now: str) -> str:
        """The Repository's write of a new resource (Unit.write): server meta, the served bytes, the
        index and compartment rows. Returns the home partition."""
        from sharedcare.fhir import jsonio
        from sharedcare.storage import codec, indexing

        meta = dict(body.get("meta") or {})
        meta["versionId"] = "1"
        meta["lastUpdated"] = now + "+00:00"
        doc = {"resourceType": res_type, "id": res_id, "meta": meta}
        doc.update((k, v) for k, v in body.items() if k not in doc)
        data = jsonio.dumps(doc)
        rows = indexing.rows_for(res_type, res_id, doc)
        security = " ".join(sorted(str(s.get("code")) for s in meta.get("security", []) if s.get("code"))) or None
        self.resources.append((res_type, res_id, now, rows.partition_key, meta.get("source"), security,
                               codec.encode(data)))
        for table, table_rows in rows.by_table.items():
            if table_rows:
                self.rows.setdefault(table, []).extend(table_rows)
        if rows.patients:
            self.rows.setdefault("compartment", []).extend((res_type, res_id, p) for p in rows.patients)
        return rows.partition_key


def make_shared(now: str) -> tuple[Batch, dict[str, str]]:
    from sharedcare.fhir import jsonio
    from sharedcare.storage.repository import new_id

    batch, mapping = Batch(), {}
    for s in world().shared:
        res_id = new_id()
        mapping[s.url] = f"{s.res_type}/{res_id}"
        batch.add(s.res_type, res_id, jsonio.loads(s.raw), now)
    _floats(batch)
    return batch, mapping


def make_patients(start: int, stop: int, shared: dict[str, str]) -> Batch:
    """Patients number start..stop-1 with their resources (in a worker process)."""
    from sharedcare.fhir import jsonio
    from sharedcare.storage.repository import new_id

    w = world()
    batch = Batch()
    shared_b = {k.encode(): v.encode() for k, v in shared.items()}
    for n in range(start, stop):
        rng = random.Random(f"{SEED}:{n}")
        now = _now()
        if n in BIG_PATIENTS:  # several templates' full records, all for one patient
            order = rng.sample(range(len(w.templates)), len(w.templates))
            chosen: list[tuple[Template, list[int]]] = []
            total = 0
            for t in order:
                tmpl = w.templates[t]
                chosen.append((tmpl, list(range(len(tmpl.entries)))))
                total += len(tmpl.entries) - 1
                if total >= BIG_SIZE:
                    break
        else:
            tmpl = w.templates[rng.randrange(len(w.templates))]
            p = min(1.0, (PER_PATIENT - 1) / (len(tmpl.entries) - 1))
            chosen = [(tmpl, _pick(tmpl.entries, tmpl.deps, p, rng))]
        patient_id = new_id()
        mapping = dict(shared_b)
        for tmpl, keep in chosen:
            mapping[tmpl.entries[0].url.encode()] = f"Patient/{patient_id}".encode()
            for j in keep:
                if j:
                    e = tmpl.entries[j]
                    mapping[e.url.encode()] = f"{e.res_type}/{new_id()}".encode()
        count = 0
        for i, (tmpl, keep) in enumerate(chosen):
            for j in keep:
                if j == 0 and i > 0:
                    continue  # one Patient: the other templates' patients are this one
                e = tmpl.entries[j]
                raw = e.raw
                for url in e.refs:  # what a transaction does to references to its fullUrls
                    quoted = b'"' + url.encode() + b'"'
                    raw = raw.replace(quoted, b'"' + mapping[url.encode()] + b'"')
                body = jsonio.loads(raw)
                if j == 0:
                    _vary_patient(body, n, rng, w)
                    res_id = patient_id
                else:
                    res_id = mapping[e.url.encode()].decode().split("/", 1)[1]
                batch.add(e.res_type, res_id, body, now)
                count += 1
        batch.patients.append((n, patient_id, count))
    _floats(batch)
    return batch


def _floats(batch: Batch) -> None:
    """Numeric columns as the Core type binds them (indexing._inserter does the same)."""
    from sqlalchemy import Numeric

    from sharedcare.storage.tables import INDEX_TABLES

    for table in INDEX_TABLES:
        rows = batch.rows.get(table.name)
        cols = [i for i, c in enumerate(table.columns) if isinstance(c.type, Numeric)]
        if not rows or not cols:
            continue
        out = []
        for row in rows:
            values = list(row)
            for i in cols:
                if values[i] is not None:
                    values[i] = float(values[i])
            out.append(tuple(values))
        batch.rows[table.name] = out


# -- loading: the same rows into SQLite or PostgreSQL -----------------------------------------------

HISTORY_COLS = ("seq", "res_type", "res_id", "version_id", "last_updated", "method", "partition_key", "source",
                "security", "deleted", "data", "author")
CURRENT_COLS = ("res_type", "res_id", "version_id", "last_updated", "created_seq", "partition_key", "source",
                "security", "deleted", "data")


def _table_columns() -> dict[str, tuple[str, ...]]:
    from sharedcare.storage.tables import INDEX_TABLES, compartment

    return {t.name: tuple(c.name for c in t.columns) for t in (*INDEX_TABLES, compartment)}


class Sink:
    """Writes batches in large transactions, assigning history sequence numbers in order."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.columns = _table_columns()

    def write(self, batch: Batch) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def finish(self) -> float:
        """Commit, ANALYZE; the seconds ANALYZE took."""
        raise NotImplementedError

    def rows_of(self, batch: Batch) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        hist, cur = [], []
        self.seqs: dict[tuple[str, str], int] = {}
        for res_type, res_id, lu, pk, source, security, data in batch.resources:
            self.seq += 1
            self.seqs[(res_type, res_id)] = self.seq
            hist.append((self.seq, res_type, res_id, 1, lu, "POST", pk, source, security, False, data, AUTHOR))
            cur.append((res_type, res_id, 1, lu, self.seq, pk, source, security, False, data))
        return hist, cur

    def index_rows(self, table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Index rows as the Repository writes them: where the table keeps the resource's created_seq
        (its history sequence number), that goes in too (the extractor's rows do not carry it)."""
        cols = self.columns[table]
        if "created_seq" not in cols or not rows or len(rows[0]) != len(cols) - 1:
            return rows
        pos = cols.index("created_seq")
        seqs = self.seqs
        return [(*r[:pos], seqs[(r[0], r[1])], *r[pos:]) for r in rows]


class SqliteSink(Sink):
    def __init__(self, path: Path, seq: int) -> None:
        super().__init__(seq)
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "cache_size=-2000000", "temp_store=MEMORY",
                       "wal_autocheckpoint=100000"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.execute("BEGIN")

    def write(self, batch: Batch) -> None:
        hist, cur = self.rows_of(batch)
        ex = self.conn.executemany
        ex(f"INSERT INTO resource_history ({','.join(HISTORY_COLS)}) VALUES ({','.join('?' * len(HISTORY_COLS))})",
           hist)
        ex(f"INSERT INTO resource ({','.join(CURRENT_COLS)}) VALUES ({','.join('?' * len(CURRENT_COLS))})", cur)
        for table, rows in batch.rows.items():
            cols = self.columns[table]
            ex(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
               self.index_rows(table, rows))

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def finish(self) -> float:
        self.conn.execute("COMMIT")
        start = time.perf_counter()
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA optimize")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
        return time.perf_counter() - start


class PostgresSink(Sink):
    """COPY into PostgreSQL. Filling a new database, the secondary indexes are dropped first and
    built at the end (`finish`): maintaining a dozen B-trees row by row made a 30k-patient fill take
    25 min, where building them from sorted runs takes minutes. Primary keys stay throughout."""

    def __init__(self, conninfo: str, seq: int, *, defer_indexes: bool = False) -> None:
        import psycopg

        super().__init__(seq)
        self.conn = psycopg.connect(conninfo)
        self.conn.execute("SET synchronous_commit = off")
        self.deferred: list[tuple[str, str]] = []
        if defer_indexes:
            self.deferred = [(r[0], r[1]) for r in self.conn.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)")]
            for name, _ in self.deferred:
                self.conn.execute(f"DROP INDEX {name}")
            self.conn.commit()

    def _copy(self, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({','.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def write(self, batch: Batch) -> None:
        hist, cur = self.rows_of(batch)
        self._copy("resource_history", HISTORY_COLS, hist)
        self._copy("resource", CURRENT_COLS, cur)
        for table, rows in batch.rows.items():
            self._copy(table, self.columns[table], self.index_rows(table, rows))

    def commit(self) -> None:
        self.conn.commit()

    def finish(self) -> float:
        self.conn.execute("SELECT setval(pg_get_serial_sequence('resource_history', 'seq'), "
                          "(SELECT max(seq) FROM resource_history))")
        self.conn.commit()
        self.conn.autocommit = True
        start = time.perf_counter()
        if self.deferred:
            self.conn.execute("SET maintenance_work_mem = '1GB'")
            for name, definition in self.deferred:
                t0 = time.perf_counter()
                self.conn.execute(definition)
                print(f"  built {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        self.conn.execute("VACUUM ANALYZE")
        self.conn.close()
        return time.perf_counter() - start


def fill(sink: Sink, start: int, stop: int, shared: dict[str, str], workers: int,
         check_disk: Callable[[], None]) -> dict[str, Any]:
    """Patients start..stop-1 generated by `workers` processes (chunks of 20, a bounded number in
    flight) and written by this one, one transaction per ~500 patients."""
    import multiprocessing

    world()  # parsed before forking: the workers inherit it
    chunk = 20
    tasks = [(s, min(stop, s + chunk)) for s in range(start, stop, chunk)]
    ctx = multiprocessing.get_context("fork")
    resources = 0
    big: list[str] = []
    begun = time.perf_counter()
    with ctx.Pool(workers) as pool:
        pending: list[Any] = []
        done = 0
        for t in tasks:
            pending.append(pool.apply_async(make_patients, (*t, shared)))
            if len(pending) < 4 * workers:
                continue
            resources += _drain(sink, pending.pop(0).get(), big)
            done += chunk
            if done % 500 == 0:
                sink.commit()
            if done % 5000 == 0:
                check_disk()
                rate = done / (time.perf_counter() - begun)
                print(f"  {start + done:,} patients, {resources:,} resources "
                      f"({rate:,.0f} patients/s, {resources / (time.perf_counter() - begun):,.0f} resources/s)",
                      flush=True)
        for p in pending:
            resources += _drain(sink, p.get(), big)
    sink.commit()
    return {"resources": resources, "big": big}


def _drain(sink: Sink, batch: Batch, big: list[str]) -> int:
    sink.write(batch)
    big += [pid for n, pid, _ in batch.patients if n in BIG_PATIENTS]
    return len(batch.resources)


# -- PostgreSQL: a cluster of our own, from the machine's binaries -----------------------------------

class PgCluster:
    """A PostgreSQL cluster kept in the cache folder, run as `postgres` (it refuses root), listening
    on a free loopback port. Pinned to core 0 while serving benchmarks (its backends inherit it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port: int | None = None
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            raise SystemExit(f"{' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")
        return done

    def start(self, *, pin: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C")
        if self._run(pg_binary("pg_ctl"), "-D", str(self.data), "status", check=False).returncode == 0:
            self.stop()  # left running by an interrupted run of this benchmark
        self.port = free_port()
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c shared_buffers=2GB "
                "-c effective_cache_size=12GB -c maintenance_work_mem=1GB -c max_wal_size=2GB "
                "-c min_wal_size=256MB -c max_connections=200")
        taskset = ["taskset", "-c", "0"] if pin else []
        self._run(*taskset, pg_binary("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                  "-w", "start")
        self.sql("CHECKPOINT")  # WAL beyond max_wal_size (e.g. left by an earlier setting) goes now

    def stop(self) -> None:
        self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        self.port = None

    def conninfo(self, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(statement)

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def db_bytes(self, db: str) -> int:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_database_size(%s)", (db,)).fetchone()
        return int(row[0]) if row else 0


# -- the cache of filled databases --------------------------------------------------------------------

def load_manifest() -> dict[str, Any]:
    if MANIFEST.exists():
        data: dict[str, Any] = json.loads(MANIFEST.read_text())
        if data.get("gen") == GEN_VERSION:
            return data
    return {"gen": GEN_VERSION, "sqlite": {}, "postgresql": {}, "rates": {}}


def save_manifest(m: dict[str, Any]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(json.dumps(m, indent=2))


def sqlite_path(size: int) -> Path:
    return CACHE / f"sqlite-{size}.db"


def pg_db(size: int) -> str:
    return f"search_{size}"


def free_bytes() -> int:
    CACHE.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(CACHE).free


class Store:
    """Filled databases by backend and size, with the disk kept in check."""

    def __init__(self, pg: PgCluster | None, workers: int, max_fill_minutes: float) -> None:
        self.m = load_manifest()
        self.pg = pg
        self.workers = workers
        self.max_fill_minutes = max_fill_minutes

    def _drop(self, backend: str, size: int) -> None:
        print(f"  evicting the cached {backend} database of {size:,} patients (disk)", flush=True)
        self.m[backend].pop(str(size), None)
        save_manifest(self.m)
        if backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{sqlite_path(size)}{suffix}").unlink(missing_ok=True)
        elif self.pg is not None and self.pg.port:
            self.pg.sql(f"DROP DATABASE IF EXISTS {pg_db(size)}")

    def _bytes_per_patient(self, backend: str) -> float:
        got = self.m["rates"].get(backend, {}).get("bytes_per_patient")
        return float(got or DEFAULT_BYTES_PER_PATIENT[backend])

    def _make_room(self, backend: str, need: float, keep: set[tuple[str, int]]) -> None:
        others = sorted(((b, int(s)) for b in ("sqlite", "postgresql") for s in self.m[b]
                         if (b, int(s)) not in keep), key=lambda bs: (bs[0] == backend, -bs[1]))
        while free_bytes() < need + FREE_MARGIN and others:
            b, s = others.pop(0)
            if b == "postgresql" and (self.pg is None or not self.pg.port):
                continue
            self._drop(b, s)

    def ensure(self, backend: str, size: int) -> dict[str, Any] | None:
        """The cached database of `size` patients, filled (or grown) now if need be; None if the
        projected fill time is beyond the limit or the disk cannot hold it."""
        entry = self.m[backend].get(str(size))
        if entry and self._exists(backend, size):
            print(f"[{backend} {size:,}] cached: {entry['resources']:,} resources, filled in "
                  f"{entry['fill_s'] / 60:.1f} min", flush=True)
            return dict(entry)
        self.m[backend].pop(str(size), None)
        smaller = sorted((int(s) for s in self.m[backend] if int(s) < size and self._exists(backend, int(s))),
                         reverse=True)
        base = smaller[0] if smaller else 0
        rate = self.m["rates"].get(backend, {}).get("patients_per_s")
        projected = (size - base) / rate / 60 if rate else None
        if projected is not None and projected > self.max_fill_minutes:
            print(f"[{backend} {size:,}] skipped: filling {size - base:,} more patients is projected to take "
                  f"{projected:.0f} min (limit {self.max_fill_minutes:.0f})", flush=True)
            return {"skipped": True, "reason": f"the fill would take longer than {self.max_fill_minutes:g} min",
                    "projected_fill_min": round(projected, 1),
                    "projected_gib": round(self._bytes_per_patient(backend) * size / 2**30)}
        need = self._bytes_per_patient(backend) * (size - base) * 1.1
        base_bytes = self._bytes_per_patient(backend) * base
        evictable = sum(self.m[b][k].get("bytes", 0) for b in ("sqlite", "postgresql") for k in self.m[b]
                        if (b, int(k)) != (backend, base))
        if free_bytes() + evictable < need + FREE_MARGIN:
            print(f"[{backend} {size:,}] skipped: about {need / 2**30:.0f} GiB more needed; "
                  f"{free_bytes() / 2**30:.0f} GiB free (+{evictable / 2**30:.0f} GiB of other cached databases), "
                  f"{FREE_MARGIN / 2**30:.0f} GiB always left free", flush=True)
            return {"skipped": True, "reason": f"disk: about {need / 2**30:.0f} GiB more needed, "
                    f"{(free_bytes() + evictable - FREE_MARGIN) / 2**30:.0f} GiB available",
                    "projected_fill_min": round(projected, 1) if projected is not None else None,
                    "projected_gib": round(self._bytes_per_patient(backend) * size / 2**30)}
        if free_bytes() < need + FREE_MARGIN:  # evict only what growing the base in place needs
            self._make_room(backend, need, {(backend, base)} if base else set())
        copy_base = bool(base) and free_bytes() > need + base_bytes + FREE_MARGIN
        if free_bytes() < need + FREE_MARGIN:
            print(f"[{backend} {size:,}] skipped: about {need / 2**30:.0f} GiB needed, "
                  f"{free_bytes() / 2**30:.0f} GiB free", flush=True)
            return {"skipped": True, "reason": f"disk: about {need / 2**30:.0f} GiB needed"}
        return self._fill(backend, size, base, copy_base)

    def _exists(self, backend: str, size: int) -> bool:
        if backend == "sqlite":
            return sqlite_path(size).exists()
        return True  # the manifest is written only after a database is complete

    def _fill(self, backend: str, size: int, base: int, copy_base: bool) -> dict[str, Any]:
        from sqlalchemy import text

        from sharedcare.storage import database

        how = ("growing a copy of" if copy_base else "growing") + f" the {base:,}-patient database" if base \
            else "new database"
        print(f"[{backend} {size:,}] filling ({how}) with {self.workers} generator processes", flush=True)
        began = time.perf_counter()
        prior = dict(self.m[backend][str(base)]) if base else None
        if backend == "sqlite":
            path = sqlite_path(size)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if base:
                src = sqlite_path(base)
                with contextlib.closing(sqlite3.connect(src)) as c:
                    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if copy_base:
                    shutil.copyfile(src, path)
                else:
                    src.rename(path)
                    self.m[backend].pop(str(base))
                    save_manifest(self.m)
            url = f"sqlite:///{path}"
        else:
            assert self.pg is not None
            self.pg.sql(f"DROP DATABASE IF EXISTS {pg_db(size)}")
            if base and copy_base:
                self.pg.sql(f"CREATE DATABASE {pg_db(size)} TEMPLATE {pg_db(base)}")
            elif base:
                self.pg.sql(f"ALTER DATABASE {pg_db(base)} RENAME TO {pg_db(size)}")
                self.m[backend].pop(str(base))
                save_manifest(self.m)
            else:
                self.pg.sql(f"CREATE DATABASE {pg_db(size)}")
            url = self.pg.url(pg_db(size))
        engine = database.make_engine(url)
        database.upgrade(engine)
        with engine.connect() as conn:
            seq = int(conn.execute(text("SELECT coalesce(max(seq), 0) FROM resource_history")).scalar_one())
        engine.dispose()
        sink: Sink = SqliteSink(sqlite_path(size), seq) if backend == "sqlite" else \
            PostgresSink(self.pg.conninfo(pg_db(size)), seq, defer_indexes=not base)  # type: ignore[union-attr]
        big: list[str] = list(prior["big"]) if prior else []
        resources = prior["resources"] if prior else 0
        if prior:
            shared = prior["shared"]
        else:
            batch, shared = make_shared(_now())
            sink.write(batch)
            resources += len(batch.resources)

        def check_disk() -> None:
            if free_bytes() < 3 * 2**30:
                raise SystemExit("less than 3 GiB of disk left: stopping the fill")
        out = fill(sink, base, size, shared, self.workers, check_disk)
        filled = time.perf_counter() - began
        analyze_s = sink.finish()
        total = time.perf_counter() - began
        size_bytes = sum(Path(f"{sqlite_path(size)}{s}").stat().st_size for s in ("", "-wal")
                         if Path(f"{sqlite_path(size)}{s}").exists()) if backend == "sqlite" \
            else self.pg.db_bytes(pg_db(size))  # type: ignore[union-attr]
        entry = {"patients": size, "resources": resources + out["resources"], "big": big + out["big"],
                 "shared": shared, "fill_s": round(total + (prior["fill_s"] if prior else 0), 1),
                 "fill_this_step_s": round(total, 1), "analyze_s": round(analyze_s, 1), "bytes": size_bytes,
                 "grown_from": base}
        self.m[backend][str(size)] = entry
        self.m["rates"][backend] = {"patients_per_s": (size - base) / filled,
                                    "bytes_per_patient": size_bytes / size}
        save_manifest(self.m)
        print(f"[{backend} {size:,}] filled: {entry['resources']:,} resources in {total / 60:.1f} min "
              f"({(size - base) / filled:,.0f} patients/s, {out['resources'] / filled:,.0f} resources/s; "
              f"ANALYZE and deferred indexes {analyze_s:.0f} s), {size_bytes / 2**30:.1f} GiB", flush=True)
        return dict(entry)


# -- what to ask: query values drawn from the database -----------------------------------------------

@dataclass
class Case:
    kind: str
    path: str  # /fhir/... with the query string
    sql: list[tuple[str, dict[str, Any]]]  # the hand-written statements (run in order)
    params: dict[str, Any] = field(default_factory=dict)  # values for the later statements and checks
    label: str = ""


def _prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


# The hand-written statements. Where the schema keeps the resource's created_seq in the index rows
# (their lookup index is then in search order), the page is cut on the index alone and only its 20
# rows are read from `resource`, found by created_seq (unique per resource: its first version's history
# sequence number): index rows exist only for current resources (a delete removes them).
# Otherwise (an older schema) the index is joined to `resource` and ordered by its created_seq.
CUT = ("SELECT r.res_id, r.data FROM ({inner}) p JOIN resource r ON r.res_type = p.res_type AND "
       "r.created_seq = p.created_seq ORDER BY p.created_seq")
SQL_TOKEN = CUT.replace("{inner}", "SELECT t.res_type, t.created_seq FROM idx_token t WHERE "
                        "t.res_type = :rt AND t.param = 'code' AND t.code = :code ORDER BY t.created_seq LIMIT 20")
SQL_DATE = CUT.replace("{inner}", "SELECT d.res_type, d.created_seq FROM idx_date d WHERE "
                       "d.res_type = 'Observation' AND d.param = 'date' AND d.low >= :lo AND d.low < :hi "
                       "ORDER BY d.created_seq LIMIT 20")
# With the window index (migration 0006): a one-month window of single instants is one month's rows,
# already in search order (the Synthea observations have no long or several-valued dates).
SQL_DATE_WINDOW = CUT.replace("{inner}", "SELECT d.res_type, d.created_seq FROM idx_date d WHERE "
                              "d.res_type = 'Observation' AND d.param = 'date' AND d.bucket = :month AND "
                              "d.low >= :lo AND d.low < :hi ORDER BY d.created_seq LIMIT 20")
# Chained, in two steps as an application would: the patients with the name, then their observations.
# A prefix is given both as a range (SQLite's index takes it) and as LIKE (PostgreSQL's takes that,
# its lookup index ordering `value` by character: migration 0010).
SQL_NAMED = ("SELECT DISTINCT s.res_id FROM idx_string s WHERE s.res_type = 'Patient' AND s.param = 'family' "
             "AND s.value >= :lo AND s.value < :hi AND s.value LIKE :like")
SQL_CHAINED = CUT.replace("{inner}", "SELECT x.res_type, x.created_seq FROM idx_reference x JOIN idx_token t "
                          "ON t.res_type = x.res_type AND t.created_seq = x.created_seq "
                          "WHERE x.res_type = 'Observation' AND "
                          "x.param = 'subject' AND x.target_type = 'Patient' AND x.target_id IN ({ids}) AND "
                          "t.param = 'code' AND t.code = :code ORDER BY x.created_seq LIMIT 20")
SQL_BY_PATIENT = CUT.replace("{inner}", "SELECT x.res_type, x.created_seq FROM idx_reference x WHERE "
                             "x.res_type = :rt AND x.param = 'patient' AND x.target_id = :pid "
                             "ORDER BY x.created_seq LIMIT 20")
# Older schema: no created_seq in the index rows.
JOINED = {
    SQL_TOKEN: "SELECT r.res_id, r.data FROM idx_token t JOIN resource r ON r.res_type = t.res_type AND "
               "r.res_id = t.res_id WHERE t.res_type = :rt AND t.param = 'code' AND t.code = :code AND NOT r.deleted "
               "ORDER BY r.created_seq LIMIT 20",
    SQL_DATE: "SELECT r.res_id, r.data FROM idx_date d JOIN resource r ON r.res_type = d.res_type AND "
              "r.res_id = d.res_id WHERE d.res_type = 'Observation' AND d.param = 'date' AND d.low >= :lo AND "
              "d.low < :hi AND NOT r.deleted ORDER BY r.created_seq LIMIT 20",
    SQL_CHAINED: "SELECT r.res_id, r.data FROM idx_reference x JOIN idx_token t ON t.res_type = x.res_type AND "
                 "t.res_id = x.res_id JOIN resource r ON r.res_type = x.res_type AND r.res_id = x.res_id "
                 "WHERE x.res_type = 'Observation' AND x.param = 'subject' AND x.target_type = 'Patient' AND "
                 "x.target_id IN ({ids}) AND t.param = 'code' AND t.code = :code AND NOT r.deleted "
                 "ORDER BY r.created_seq LIMIT 20",
    SQL_BY_PATIENT: "SELECT r.res_id, r.data FROM idx_reference x JOIN resource r ON r.res_type = x.res_type AND "
                    "r.res_id = x.res_id WHERE x.res_type = :rt AND x.param = 'patient' AND x.target_id = :pid "
                    "AND NOT r.deleted ORDER BY r.created_seq LIMIT 20",
}
SQL_FAMILY = ("SELECT r.res_id, r.data FROM resource r WHERE r.res_type = 'Patient' AND NOT r.deleted AND "
              "r.res_id IN (SELECT s.res_id FROM idx_string s WHERE s.res_type = 'Patient' AND s.param = 'family' "
              "AND s.value >= :lo AND s.value < :hi AND s.value LIKE :like) ORDER BY r.created_seq LIMIT 20")
SQL_READ = "SELECT r.res_id, r.data FROM resource r WHERE r.res_type = 'Patient' AND r.res_id = :pid"
SQL_INCLUDED = ("SELECT DISTINCT p.res_type, p.res_id, p.data FROM idx_reference y JOIN resource p ON "
                "p.res_type = y.target_type AND p.res_id = y.target_id WHERE y.res_type = :rt AND y.param = :param "
                "AND y.res_id IN ({ids}) AND NOT p.deleted")
SQL_EVERYTHING = ("SELECT r.res_type, r.res_id, r.data FROM resource r JOIN ("
                  "SELECT c.res_type AS t, c.res_id AS i FROM compartment c WHERE c.patient_id = :pid "
                  "UNION SELECT x.target_type, x.target_id FROM compartment c JOIN idx_reference x ON "
                  "x.res_type = c.res_type AND x.res_id = c.res_id JOIN resource s ON s.res_type = x.target_type "
                  "AND s.res_id = x.target_id AND s.partition_key = '_shared' WHERE c.patient_id = :pid AND "
                  "x.url IS NULL) k ON r.res_type = k.t AND r.res_id = k.i WHERE NOT r.deleted "
                  "ORDER BY r.created_seq LIMIT 20")


def workload(conn: Any, entry: dict[str, Any], n: int) -> dict[str, list[Case]]:
    """`n` cases per kind (fewer for $everything), drawn reproducibly from what is stored."""
    from sqlalchemy import text

    rng = random.Random(SEED)

    def rows(sql: str, **kw: Any) -> list[Any]:
        return list(conn.execute(text(sql), kw).all())

    from sharedcare.storage.tables import idx_date, idx_token
    in_index = "created_seq" in idx_token.c
    windows = "bucket" in idx_date.c

    def sql_of(template: str) -> str:
        return template if in_index else JOINED[template]

    def codes(rt: str) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in rows(
            "SELECT code, count(*) AS n FROM idx_token WHERE res_type = :rt AND param = 'code' AND code IS NOT NULL "
            "GROUP BY code ORDER BY n DESC, code", rt=rt)]

    out: dict[str, list[Case]] = {k: [] for k in KINDS}
    for kind, rt in (("token", "Observation"), ("condition", "Condition")):
        found = codes(rt)
        common, rare = found[:10], found[-10:]
        for i in range(n):
            code, count = (common if i % 2 == 0 else rare)[(i // 2) % 10]
            out[kind].append(Case(kind, f"/fhir/{rt}?" + urlencode({"code": code}),
                                  [(sql_of(SQL_TOKEN), {"rt": rt, "code": code})],
                                  label=f"{'common' if i % 2 == 0 else 'rare'} ({count:,} stored)"))
    # Months of the years that hold at least 2% of the observations' dates (Synthea: mostly the last ten).
    years = rows("SELECT substr(low, 1, 4) AS y, count(*) AS n FROM idx_date WHERE res_type = 'Observation' "
                 "AND param = 'date' GROUP BY substr(low, 1, 4)")
    total = sum(r[1] for r in years) or 1
    busy = sorted(int(r[0]) for r in years if r[1] >= 0.02 * total and r[0].isdigit()) or [2019]
    months = [(y, m) for y in range(busy[0], busy[-1] + 1) for m in range(1, 13)]
    for y, m in rng.sample(months, min(n, len(months))) * (1 + n // len(months)):
        if len(out["date"]) >= n:
            break
        first, after = date(y, m, 1).isoformat(), date(y + (m == 12), m % 12 + 1, 1).isoformat()
        query = urlencode([("date", f"ge{first}"), ("date", f"lt{after}")])
        out["date"].append(Case("date", "/fhir/Observation?" + query,
                                [(SQL_DATE_WINDOW if windows else sql_of(SQL_DATE),
                                  {"lo": f"{first}T00:00:00.000000", "hi": f"{after}T00:00:00.000000",
                                   **({"month": first[:7]} if windows else {})})]))
    patients = [r[0] for r in rows("SELECT res_id FROM resource WHERE res_type = 'Patient' ORDER BY created_seq")]
    big = set(entry["big"])
    normal = [p for p in patients if p not in big]
    sample = rng.sample(normal, min(len(normal), n))
    names = {r[0]: r[1] for r in rows(
        "SELECT res_id, min(value) FROM idx_string WHERE res_type = 'Patient' AND param = 'family' "
        f"AND res_id IN ({','.join(repr(p) for p in sample)}) GROUP BY res_id")}
    for i, pid in enumerate(sample):
        name = names.get(pid)
        if not name:
            continue
        value = name[:3] if i % 2 == 0 else name
        low, high = _prefix_range(value)
        out["family"].append(Case("family", "/fhir/Patient?" + urlencode({"family": value}),
                                  [(SQL_FAMILY, {"lo": low, "hi": high, "like": value + "%"})],
                                  label="prefix" if i % 2 == 0 else "name"))
        obs_codes = [r[0] for r in rows(
            "SELECT t.code FROM idx_reference x JOIN idx_token t ON t.res_type = x.res_type AND t.res_id = x.res_id "
            "AND t.param = 'code' WHERE x.res_type = 'Observation' AND x.param = 'subject' AND x.target_id = :p",
            p=pid)]
        if obs_codes:
            code = rng.choice(sorted(obs_codes))
            low, high = _prefix_range(name)
            out["chained"].append(Case("chained", "/fhir/Observation?" + urlencode(
                {"subject:Patient.family": name, "code": code}),
                [(sql_of(SQL_CHAINED), {"lo": low, "hi": high, "like": name + "%", "code": code})]))
        for kind, rt, param in (("include_encounter", "Encounter", "practitioner"),
                                ("include_observation", "Observation", "subject")):
            out[kind].append(Case(kind, f"/fhir/{rt}?" + urlencode({"patient": pid, "_include": f"{rt}:{param}"}),
                                  [(sql_of(SQL_BY_PATIENT), {"rt": rt, "pid": pid})], {"rt": rt, "param": param}))
        out["read"].append(Case("read", f"/fhir/Patient/{pid}", [(SQL_READ, {"pid": pid})]))
    bigs = sorted(big)
    for i in range(max(1, n // 2)):
        pid = bigs[i % len(bigs)]
        out["everything"].append(Case("everything", f"/fhir/Patient/{pid}/$everything",
                                      [(SQL_EVERYTHING, {"pid": pid})]))
    for cases in out.values():
        rng.shuffle(cases)
    return out


# -- running: the server, the client, the hand-written SQL ------------------------------------------

def on_core(core: int) -> None:
    os.sched_setaffinity(0, {core})


def run_sql(conn: Any, case: Case) -> tuple[list[str], set[str]]:
    """The hand-written statements of a case: the first page's ids (in order) and included ids."""
    from sqlalchemy import text

    from sharedcare.storage import codec

    sql, params = case.sql[0]
    if case.kind == "chained":
        named = [r[0] for r in conn.execute(text(SQL_NAMED), params).all()]
        if not named:
            return [], set()
        sql = sql.replace("{ids}", ",".join(f":p{k}" for k in range(len(named))))
        params = {**params, **{f"p{k}": v for k, v in enumerate(named)}}
    page = conn.execute(text(sql), params).all()
    ids = [r[-2] for r in page]
    for r in page:  # the JSON as the server serves it (stored rows are compressed: storage/codec.py)
        codec.decode_opt(r[-1])
    included: set[str] = set()
    if case.kind.startswith("include") and ids:
        marks = ",".join(f":i{k}" for k in range(len(ids)))
        inc = conn.execute(text(SQL_INCLUDED.format(ids=marks)),
                           {"rt": case.params["rt"], "param": case.params["param"],
                            **{f"i{k}": v for k, v in enumerate(ids)}}).all()
        for r in inc:
            codec.decode_opt(r[-1])
        included = {r[1] for r in inc} - set(ids)
    return ids, included


def api_ids(body: bytes) -> tuple[list[str], set[str]]:
    import orjson

    bundle = orjson.loads(body)
    match, inc = [], set()
    for e in bundle.get("entry", []):
        rid = e["fullUrl"].rsplit("/", 1)[1]
        if e.get("search", {}).get("mode") == "include":
            inc.add(rid)
        elif e.get("search", {}).get("mode") == "match":
            match.append(rid)
    return match, inc


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class Samples:
    api: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)
    labels: dict[str, list[float]] = field(default_factory=dict)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    spent: float = 0.0

    def summary(self) -> dict[str, Any]:
        api, sql = self.api, self.sql
        return {"n": len(api), "api_p50": round(pct(api, 50), 2), "api_p99": round(pct(api, 99), 2),
                "api_max": round(max(api), 1), "sql_p50": round(pct(sql, 50), 3), "sql_p99": round(pct(sql, 99), 3),
                "ratio_p50": round(pct(api, 50) / pct(sql, 50), 2) if pct(sql, 50) > 0 else None,
                "mismatches": len(self.mismatches), "mismatch_examples": self.mismatches[:3],
                "by_label": {k: {"n": len(v), "p50": round(pct(v, 50), 2), "p99": round(pct(v, 99), 2)}
                             for k, v in self.labels.items()}}


def latency(server: Server, engine: Any, cases: dict[str, list[Case]], budget: float,
            min_cases: int = 3) -> dict[str, Samples]:
    """Each case once through the API (client on core 1) and once by hand-written SQL (on core 0, where
    the server runs), interleaved and alternating which goes first; the kinds in turn (case i of every
    kind, then case i + 1), each until its cases or its time budget (API + SQL seconds) run out."""
    out = {kind: Samples() for kind in cases}
    longest = max(len(c) for c in cases.values())
    with httpx.Client(base_url=server.base, timeout=900, headers=server.headers) as http, engine.connect() as conn:
        for i in range(longest):
            for kind, kind_cases in cases.items():
                got = out[kind]
                if i >= len(kind_cases) or (got.spent > budget and len(got.api) >= min_cases):
                    continue
                case = kind_cases[i]
                for step in ((0, 1) if i % 2 == 0 else (1, 0)):
                    if step == 0:
                        on_core(1)
                        t0 = time.perf_counter()
                        r = http.get(case.path)
                        body = r.content
                        t_api = (time.perf_counter() - t0) * 1000
                    else:
                        on_core(0)
                        t0 = time.perf_counter()
                        ids, inc = run_sql(conn, case)
                        t_sql = (time.perf_counter() - t0) * 1000
                        conn.rollback()
                on_core(1)
                if r.status_code != 200:
                    raise SystemExit(f"{case.path}: HTTP {r.status_code} {body[:300]!r}")
                got.api.append(t_api)
                got.sql.append(t_sql)
                got.cases.append(case)
                got.spent += (t_api + t_sql) / 1000
                if case.label:
                    got.labels.setdefault(case.label.split(" ")[0], []).append(t_api)
                match, included = ([json.loads(body)["id"]], set()) if kind == "read" else api_ids(body)
                if match != ids or (kind.startswith("include") and included != inc):
                    got.mismatches.append({"path": case.path, "api": match[:5], "sql": ids[:5],
                                           "api_included": len(included), "sql_included": len(inc)})
    return out


def throughput(server: Server, engine: Any, cases: list[Case], workdir: Path, seconds: int,
               p50_ms: float) -> dict[str, Any]:
    """wrk (core 1) cycling through the cases' URLs: 32 connections as bench/run.py, or 4 for a longer
    run when one search takes longer than 100 ms (32 would only queue); against the hand-written SQL
    run back to back on one connection on core 0 for the same cases."""
    script = workdir / f"search-{cases[0].kind}.lua"
    paths = ",".join(json.dumps(c.path) for c in cases)
    script.write_text(lua_headers(server.headers) +
                      f"paths = {{{paths}}}\ni = 0\nrequest = function()\n  i = i % #paths + 1\n"
                      "  return wrk.format(\"GET\", paths[i])\nend\n")
    fast = p50_ms < 100
    api = wrk(f"{server.base}/", script, connections=32 if fast else 4,
              duration=seconds if fast else max(seconds, 30), timeout_s=120)
    on_core(0)
    done, t0 = 0, time.perf_counter()
    with engine.connect() as conn:
        while time.perf_counter() - t0 < max(3, seconds // 2) or done < 3:
            run_sql(conn, cases[done % len(cases)])
            conn.rollback()
            done += 1
    sql_rate = done / (time.perf_counter() - t0)
    on_core(1)
    return {**api, "sql_per_s": round(sql_rate, 1), "ratio": round(api["rps"] / sql_rate, 3)}


# -- what the server runs: statements captured from storage.search, timed and explained ---------------

def explain(engine: Any, case: Case, base_url: str) -> list[dict[str, Any]]:
    """The statements `storage.search` runs for this case (the server's code, in-process, on core 0),
    each with its time in that run and its plan (PostgreSQL: EXPLAIN ANALYZE, which runs it again)."""
    from urllib.parse import parse_qsl, urlsplit

    from sqlalchemy import event, true

    from sharedcare.fhir.search import query as search_query
    from sharedcare.storage import search

    captured: list[list[Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append([statement, parameters, time.perf_counter()])

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if captured and captured[-1][0] == statement and len(captured[-1]) == 3:
            captured[-1].append(time.perf_counter() - captured[-1][2])

    def visible(_table: Any) -> Any:
        return true()  # the node's own caller's rule (AccessPolicy: no condition)

    parts = urlsplit(case.path)
    segs = parts.path.split("/")[2:]
    on_core(0)
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        with engine.connect() as conn:
            if segs[-1] == "$everything":
                search.everything_page(conn, [segs[1]], types=(), since=None, count=20, cursor=None,
                                       visible=visible, base_url=base_url)
            else:
                q = search_query.parse(segs[0], parse_qsl(parts.query), default_count=20, max_count=1000)
                search.page(conn, q, visible, None, base_url)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    out = []
    pg = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        for statement, params, _t0, *elapsed in captured:
            if pg:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + statement, params).all())
            else:
                plan = _sqlite_plan(conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all())
            conn.rollback()
            # The time of the statement (and its fetch: the driver fetches as it executes) in the capture.
            out.append({"ms": round(elapsed[0] * 1000, 3) if elapsed else None, "sql": _inline(statement, params, pg),
                        "plan": plan})
    on_core(1)
    return out


def _sqlite_plan(rows: list[Any]) -> str:
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return "\n".join(lines)


def _inline(statement: str, params: Any, pg: bool) -> str:
    """The statement with its values in place (for reading only)."""
    def lit(v: Any) -> str:
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    if pg and isinstance(params, dict):
        return re.sub(r"%\((\w+)\)s", lambda m: lit(params[m.group(1)]), statement)
    values = list(params or ())
    return re.sub(r"\?", lambda m: lit(values.pop(0)) if values else "?", statement)


# -- one backend at one size ------------------------------------------------------------------------

def bench_one(backend: str, size: int, entry: dict[str, Any], url: str, args: argparse.Namespace,
              workdir: Path) -> dict[str, Any]:
    from sqlalchemy import text

    from sharedcare.storage import database

    engine = database.make_engine(url)
    t0 = time.perf_counter()
    from alembic.runtime.migration import MigrationContext

    def revision() -> str | None:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    before = revision()
    database.upgrade(engine)  # a cached database gets the schema of the code measured (as a deployment would)
    if revision() != before:  # the migration rebuilt indexes: their statistics are gone
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        print(f"  migrated from {before} to {revision()} and ANALYZEd in {time.perf_counter() - t0:.0f} s",
              flush=True)
    t0 = time.perf_counter()
    with engine.connect() as conn:
        cases = workload(conn, entry, args.cases)
        counts = {r[0]: r[1] for r in conn.execute(text(
            "SELECT res_type, count(*) FROM resource GROUP BY res_type")).all()}
        big_sizes = [int(conn.execute(text("SELECT count(*) FROM compartment WHERE patient_id = :p"),
                                      {"p": p}).scalar_one()) for p in entry["big"]]
    print(f"  workload drawn in {time.perf_counter() - t0:.1f} s", flush=True)
    result: dict[str, Any] = {
        "backend": backend, "patients": size, "resources": sum(counts.values()),
        "by_type": dict(Counter(counts).most_common(8)), "everything_patient_resources": big_sizes,
        "fill_min": round(entry["fill_s"] / 60, 1), "db_gib": round(entry["bytes"] / 2**30, 1),
        "budget_s": args.budget, "code": code_state(), "latency": {}, "throughput": {}, "plans": {}}
    with Server(url, RESULTS / "search-server.log", app="sharedcare.app:create_app", factory=True,
                env={"SHAREDCARE_LOG_LEVEL": "WARNING"}, start_s=120) as server:
        on_core(1)
        with httpx.Client(base_url=server.base, timeout=900, headers=server.headers) as http:  # warm-up
            for kind in KINDS:
                for case in cases[kind][-2:]:
                    http.get(case.path)
        t0 = time.perf_counter()
        samples = latency(server, engine, cases, args.budget)
        print(f"  latency measured in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        for kind in KINDS:
            got = samples[kind]
            lat = got.summary()
            result["latency"][kind] = lat
            order = sorted(range(len(got.api)), key=got.api.__getitem__)
            median, slowest = got.cases[order[len(order) // 2]], got.cases[order[-1]]
            mid = order[len(order) // 2]
            if kind != "read":  # the statements the server runs, with their plans
                result["plans"][kind] = {"median": {"path": median.path, "api_ms": round(got.api[mid], 1),
                                                    "statements": explain(engine, median, server.base_url)}}
                if _met(kind, lat, None).startswith("missed"):
                    result["plans"][kind]["slowest"] = {"path": slowest.path, "api_ms": round(got.api[order[-1]], 1),
                                                        "statements": explain(engine, slowest, server.base_url)}
            print(f"  {kind:20} n {lat['n']:4} | API p50 {lat['api_p50']:9.2f} ms  p99 {lat['api_p99']:9.2f} ms | "
                  f"SQL p50 {lat['sql_p50']:8.3f} ms  p99 {lat['sql_p99']:8.3f} ms | x{lat['ratio_p50']}"
                  + (f" | {lat['mismatches']} mismatching pages" if lat["mismatches"] else ""), flush=True)
        for rnd in range(args.rounds):
            for kind in ("token", "date"):
                tp = throughput(server, engine, cases[kind], workdir, args.seconds, result["latency"][kind]["api_p50"])
                result["throughput"].setdefault(kind, []).append(tp)
                print(f"  {kind:20} wrk {tp['rps']:8.1f}/s ({tp['connections']} connections, {tp['requests']} in "
                      f"{tp['seconds']} s, p50 {tp['p50_ms']} ms, p99 {tp['p99_ms']} ms, {tp['errors']} errors, "
                      f"{tp['timeouts']} timeouts) | SQL {tp['sql_per_s']:8.1f}/s | ratio {tp['ratio']} "
                      f"(round {rnd + 1})", flush=True)
    engine.dispose()
    return result


# -- reporting --------------------------------------------------------------------------------------

def _met(kind: str, lat: dict[str, Any], tp: list[dict[str, Any]] | None) -> str:
    goal = GOALS.get(kind)
    if not goal:
        return "–"
    misses = []
    if "p50" in goal and lat["api_p50"] > goal["p50"]:
        misses.append("p50")
    if "p99" in goal and lat["api_p99"] > goal["p99"]:
        misses.append("p99")
    if "rps" in goal and tp and max(t["rps"] for t in tp) < goal["rps"]:
        misses.append("throughput")
    return "met" if not misses else "missed: " + ", ".join(misses)


def _goal_text(kind: str) -> str:
    g = GOALS.get(kind, {})
    parts = []
    if "p50" in g:
        parts.append(f"p50 ≤ {g['p50']:g} ms")
    if "p99" in g:
        parts.append(f"p99 ≤ {g['p99']:g} ms")
    if "rps" in g:
        parts.append(f"≥ {g['rps']:g}/s")
    return ", ".join(parts) or "–"


def print_table(r: dict[str, Any]) -> None:
    print(f"\n== {r['backend']}, {r['patients']:,} patients, {r['resources']:,} resources "
          f"({r['db_gib']} GiB, filled in {r['fill_min']} min) ==")
    print(f"{'search':22}{'API p50':>10}{'API p99':>10}{'SQL p50':>10}{'ratio':>8}  goal / result")
    for kind in KINDS:
        lat = r["latency"][kind]
        tp = r["throughput"].get(kind)
        print(f"{kind:22}{lat['api_p50']:>10.2f}{lat['api_p99']:>10.2f}{lat['sql_p50']:>10.3f}"
              f"{lat['ratio_p50']:>8}  {_goal_text(kind)}: {_met(kind, lat, tp)}")
    for kind, runs in r["throughput"].items():
        print(f"{kind + ' throughput':22}" + ", ".join(f"{t['rps']}/s (SQL {t['sql_per_s']}/s, ratio {t['ratio']})"
                                                      for t in runs))


def _what(sql: str) -> str:
    """A statement's role, from its text."""
    low = sql.lower()
    if low.lstrip().startswith("select count("):
        cap = re.search(r"limit (\d+)", low)
        count = f"count ≤ {cap.group(1)}" if cap else "count"
        return f"{count} + snapshot" if "max(resource_history.seq)" in low else count
    if "max(resource_history.seq)" in low:
        return "snapshot"
    head = low.split("where", 1)[0]
    if "from idx_reference" in head and "order by" not in low:
        return "include refs"
    if "from idx_date" in head and "bucket" in low and "order by" not in low:
        return "several-valued probe"
    if "order by" not in low and "from idx_" in head:
        return "chain targets"
    if "order by" not in low:
        return "fetch by id"  # included resources, or a date window's candidates
    return "candidates" if "several" in low else "page"


def markdown(results: dict[str, Any]) -> str:
    lines = [f"## Search ({results['date']}, `{results['command']}`)", ""]
    m = results["machine"]
    lines += [" ".join((
        f"Machine: {m['cores']} vCPU ({m['cpu']}), {m['ram_gib']} GiB RAM; SQLite {m['sqlite']} (WAL,",
        f"synchronous=FULL: the server's settings), PostgreSQL {m.get('postgresql', '–')} (shared_buffers 2GB,",
        "effective_cache_size 12GB, max_wal_size 2GB, other settings default, fsync on). The server (uvicorn, the",
        "real app) and PostgreSQL run on core 0; the latency client and `wrk` on core 1 (32 connections for",
        f"{results['seconds']} s as in bench/run.py, or 4 connections for 30 s when one search takes over",
        "100 ms); the hand-written SQL on core 0 through the same engine (SQLAlchemy `text()` on a plain",
        "connection). Every search is audited as in production. Measured code:",
        ", ".join(sorted({f"commit {r['code']['commit']}" + (" + uncommitted changes" if r["code"]["dirty"] else "")
                          + f" (src/ sha256 {r['code']['src_sha256']})" for r in results["runs"] if "code" in r})),
    )) + ".", ""]
    lines += ["Data: Synthea R4 bundles (../shared/conformance/synthea-r4) replicated as templates: each patient "
              "is a template's record subsampled to about 100 resources (whole encounters kept or dropped), "
              "with fresh server ids, references rewritten, family names drawn from a Zipf-like pool of 20,000 "
              "and birth dates shifted; three patients hold ~1,000 resources each. Shared Organizations and "
              "Practitioners are stored once. Rows are written by the project's own code "
              "(`indexing.rows_for`, the Repository's columns), not through HTTP, then ANALYZEd.", ""]
    lines += [" ".join((
        "Latency: every case once through the API and once by hand-written SQL that returns the same first page",
        "(same ids in the same order, and the same included resources, checked for every case), interleaved;",
        f"kinds in turn, each within a time budget of {results['budget']:g} s per size (so slow kinds have fewer",
        "cases: n below). The hand-written SQL cuts the page on the index table (its rows ordered by their",
        "`created_seq`, LIMIT 20), then reads those 20 rows from `resource`; chained and `_include` searches take",
        "two statements (the named patients' ids, then their observations; the page, then its included",
        "resources); `$everything` is a UNION of the compartment and the shared resources it references.",
        "`ratio` = API p50 ÷ SQL p50 (the API's time includes HTTP, parsing the query, the Bundle and the audit",
        "record). Throughput ratio = searches/s through the API ÷ hand-written SQL run back to back on one",
        "connection.")), ""]
    for backend in results["backends"]:
        runs = [r for r in results["runs"] if r["backend"] == backend and not r.get("skipped")]
        skipped = [r for r in results["runs"] if r["backend"] == backend and r.get("skipped")]
        if not runs and not skipped:
            continue
        lines += [f"### {backend}", ""]
        if runs:
            sizes = [r["patients"] for r in runs]
            head = "| search | goal | " + " | ".join(f"{s // 1000}k p50 / p99 (ms)" for s in sizes) + \
                f" | SQL p50 at {sizes[-1] // 1000}k (ms) | ratio at {sizes[-1] // 1000}k | slope p50 " \
                f"{sizes[0] // 1000}k→{sizes[-1] // 1000}k | result at {sizes[-1] // 1000}k |"
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            last = runs[-1]
            for kind in KINDS:
                cells = [f"{r['latency'][kind]['api_p50']:.1f} / {r['latency'][kind]['api_p99']:.1f}" for r in runs]
                lat = last["latency"][kind]
                slope = lat["api_p50"] / runs[0]["latency"][kind]["api_p50"] if len(runs) > 1 else float("nan")
                lines.append(f"| {KIND_LABEL[kind]} | {_goal_text(kind)} | " + " | ".join(cells) +
                             f" | {lat['sql_p50']:.2f} | {lat['ratio_p50']} | "
                             f"{'–' if slope != slope else f'×{slope:.1f}'} | "
                             f"{_met(kind, lat, last['throughput'].get(kind))} |")
            lines.append("")
            head = "| throughput (wrk) | goal | " + " | ".join(f"{s // 1000}k" for s in sizes) + \
                f" | hand-written SQL at {sizes[-1] // 1000}k | ratio |"
            lines += [head, "|" + "---|" * (head.count("|") - 1)]
            for kind in ("token", "date"):
                cells = [" / ".join(f"{t['rps']:.0f}/s" for t in r["throughput"][kind]) for r in runs]
                tps = last["throughput"][kind]
                lines.append(f"| {kind} searches | ≥ 300/s | " + " | ".join(cells) +
                             f" | {' / '.join(str(round(t['sql_per_s'])) for t in tps)}/s | "
                             f"{' / '.join(str(t['ratio']) for t in tps)} |")
            lines.append("")
            lines += ["| size | resources | fill | database |", "|---|---|---|---|"]
            for r in runs:
                lines.append(f"| {r['patients']:,} patients | {r['resources']:,} | {r['fill_min']} min | "
                             f"{r['db_gib']} GiB |")
            lines.append("")
            mism = [(r["patients"], k, r["latency"][k]["mismatches"]) for r in runs for k in KINDS
                    if r["latency"][k]["mismatches"]]
            if mism:
                lines.append("Pages that differed between the API and the hand-written SQL: " + ", ".join(
                    f"{k} at {p:,} ({n})" for p, k, n in mism) + ".")
                lines.append("")
        for r in skipped:
            why = r.get("reason") or "the fill would take too long"
            proj = f"; projected fill time {r['projected_fill_min']:g} min" if r.get("projected_fill_min") else ""
            size = f"; projected size {r['projected_gib']} GiB" if r.get("projected_gib") else ""
            lines += [f"{r['patients']:,} patients: not measured ({why}{proj}{size}).", ""]
        if runs:
            last = runs[-1]
            lines += [f"Where the time goes at {last['patients'] // 1000}k: the statements `storage.search` runs for "
                      "each kind's median case, timed in-process (the server's code, the same database, core 0), "
                      "against that case's time through the API:", "",
                      "| search | API (ms) | statements (ms, in order) | what they are |", "|---|---|---|---|"]
            for kind in KINDS:
                plan = last["plans"].get(kind, {}).get("median")
                if not plan:
                    continue
                stmts = plan["statements"]
                lines.append(f"| {kind} | {plan['api_ms']} | " + " + ".join(f"{s['ms'] or 0:.2f}" for s in stmts)
                             + " | " + ", ".join(_what(s["sql"]) for s in stmts) + " |")
            lines.append("")
            slow = [k for k in KINDS if _met(k, last["latency"][k], last["throughput"].get(k)).startswith("missed")]
            for kind in slow:
                plan = last["plans"][kind].get("slowest") or last["plans"][kind]["median"]
                stmts = sorted(plan["statements"], key=lambda s: -(s["ms"] or 0))
                in_db = sum(s["ms"] or 0 for s in plan["statements"])
                share = ("most of it in these statements" if in_db >= plan["api_ms"] / 2 else
                         "most of it outside the database (HTTP, Python, the Bundle, the audit record; a read by id "
                         f"takes {last['latency']['read']['api_p50']} ms)")
                lines += [f"Slowest `{kind}` search at {last['patients'] // 1000}k: `{plan['path']}`, "
                          f"{plan['api_ms']} ms through the API, {share}: "
                          + " + ".join(f"{s['ms'] or 0:.1f} ms ({_what(s['sql'])})" for s in plan["statements"])
                          + ". The costliest statement and its plan:", "", "```sql", stmts[0]["sql"][:1500], "```",
                          "```", stmts[0]["plan"][:2500], "```", ""]
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------

def code_state() -> dict[str, Any]:
    """Which code is measured (recorded when the snapshot was taken)."""
    snap = os.environ.get("SEARCH_BENCH_CODE")
    if snap and (Path(snap) / "STATE.json").exists():
        state: dict[str, Any] = json.loads((Path(snap) / "STATE.json").read_text())
        return state
    return {"commit": "?", "dirty": [], "src_sha256": "?"}


def snapshot_code() -> Path:
    """A copy of src/ as it is now, for the whole run: the benchmark process, its fill workers and
    the server all import it (PYTHONPATH), so edits made to src/ meanwhile do not mix versions. It is
    checked (a search of each kind on an empty database) and taken again a minute later if src/ was
    caught half-edited."""
    import hashlib

    def git(*a: str) -> str:
        got = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return got.stdout.strip()
    for attempt in range(10):
        digest = hashlib.sha256()
        for f in sorted((ROOT / "src" / "sharedcare").rglob("*.py")):
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
        sha = digest.hexdigest()[:12]
        snap = CACHE / "code" / sha
        if not (snap / "STATE.json").exists():
            shutil.rmtree(snap, ignore_errors=True)
            shutil.copytree(ROOT / "src" / "sharedcare", snap / "sharedcare",
                            ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "PYTHONPATH": f"{snap}{os.pathsep}{ROOT}", "SEARCH_BENCH_CODE": str(snap)}
        check = subprocess.run([sys.executable, "-m", "bench.search", "--check-code"], cwd=ROOT, env=env,
                               capture_output=True, text=True, check=False, timeout=600)
        if check.returncode == 0:
            (snap / "STATE.json").write_text(json.dumps({
                "commit": git("rev-parse", "--short", "HEAD"),
                "dirty": git("status", "--porcelain", "src").splitlines(),
                "src_sha256": sha, "taken": time.strftime("%Y-%m-%d %H:%M:%S")}))
            for other in (CACHE / "code").iterdir():
                if other != snap:
                    shutil.rmtree(other, ignore_errors=True)
            return snap
        shutil.rmtree(snap, ignore_errors=True)
        print(f"src/ does not work as it is now (attempt {attempt + 1}; being edited?): "
              f"{check.stderr.strip().splitlines()[-1:] }; trying again in a minute", flush=True)
        time.sleep(60)
    raise SystemExit("src/ did not pass the search check in ten minutes")


def check_code() -> None:
    """A search of each kind the benchmark runs, on an empty database, with the code imported."""
    import tempfile

    from sqlalchemy import true

    from sharedcare.fhir.search import query as search_query
    from sharedcare.storage import database, search

    with tempfile.TemporaryDirectory() as tmp:
        engine = database.make_engine(f"sqlite:///{tmp}/check.db")
        database.upgrade(engine)
        with engine.connect() as conn:
            for res_type, items in (
                    ("Observation", [("code", "1234-5")]), ("Observation", [("date", "ge2019-01-01"),
                                                                            ("date", "lt2019-02-01")]),
                    ("Patient", [("family", "ab")]), ("Observation", [("subject:Patient.family", "ab"),
                                                                       ("code", "1")]),
                    ("Encounter", [("patient", "x"), ("_include", "Encounter:practitioner")])):
                q = search_query.parse(res_type, items, default_count=20, max_count=1000)
                search.page(conn, q, lambda _t: true(), None, "http://127.0.0.1/fhir")
            search.everything_page(conn, ["x"], types=(), since=None, count=20, cursor=None,
                                   visible=lambda _t: true(), base_url="http://127.0.0.1/fhir")
        engine.dispose()
    import sharedcare

    print(sharedcare.__file__)


def _sizes(raw: str) -> list[int]:
    out = []
    for part in raw.split(","):
        part = part.strip().lower()
        out.append(int(float(part[:-1]) * 1000) if part.endswith("k") else int(part))
    return sorted(set(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,30000,100000", help="patients per database (comma-separated)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--cases", type=int, default=200, help="searches per kind ($everything: half)")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds of searching per kind and size (API + SQL); at least 3 cases each")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per kind (interleaved)")
    parser.add_argument("--workers", type=int, default=2, help="generator processes while filling")
    parser.add_argument("--max-fill-minutes", type=float, default=45.0,
                        help="skip a size whose projected fill time is longer")
    parser.add_argument("--code", help="measure an earlier snapshot of src/ (its name in search-cache/code/) "
                        "instead of taking one now, e.g. to finish an interrupted run on the same code")
    parser.add_argument("--check-code", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check_code:
        check_code()
        return
    if not os.environ.get("SEARCH_BENCH_CODE"):
        snap = CACHE / "code" / args.code if args.code else snapshot_code()
        if not (snap / "STATE.json").exists():
            raise SystemExit(f"no snapshot {args.code!r} in {CACHE / 'code'}")
        state = json.loads((snap / "STATE.json").read_text())
        print(f"measuring snapshot {snap.name} of src/ (commit {state['commit']}"
              f"{' + uncommitted changes' if state['dirty'] else ''}, taken {state['taken']})", flush=True)
        env = {**os.environ, "PYTHONPATH": f"{snap}{os.pathsep}{ROOT}", "SEARCH_BENCH_CODE": str(snap)}
        os.execve(sys.executable, [sys.executable, "-m", "bench.search", *sys.argv[1:]], env)
    import sharedcare

    assert str(sharedcare.__file__).startswith(os.environ["SEARCH_BENCH_CODE"]), sharedcare.__file__
    sizes = _sizes(args.sizes)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    ensure_wrk()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "command": "uv run python -m bench.search " + " ".join(sys.argv[1:]),
        "seconds": args.seconds, "budget": args.budget, "backends": backends, "runs": [],
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gib": round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30), "sqlite": sqlite3.sqlite_version}}
    workdir = CACHE / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    pg = PgCluster(CACHE / "pg") if "postgresql" in backends else None
    try:
        for backend in backends:
            store = Store(pg, args.workers, args.max_fill_minutes)
            for size in sizes:
                if backend == "postgresql":
                    assert pg is not None
                    pg.start(pin=False)  # filling uses both cores
                entry = store.ensure(backend, size)
                if entry is None or entry.get("skipped"):
                    results["runs"].append({"backend": backend, "patients": size, **(entry or {}), "skipped": True})
                    continue
                if backend == "postgresql":
                    assert pg is not None
                    pg.stop()
                    pg.start(pin=True)
                    results["machine"]["postgresql"] = pg.version()
                    url = pg.url(pg_db(size))
                else:
                    url = f"sqlite:///{sqlite_path(size)}"
                print(f"[{backend} {size:,}] measuring", flush=True)
                one = bench_one(backend, size, entry, url, args, workdir)
                results["runs"].append(one)
                print_table(one)
                RESULTS.mkdir(parents=True, exist_ok=True)
                (RESULTS / "search-latest.json").write_text(json.dumps(results, indent=2))
            if pg is not None and backend == "postgresql":
                pg.stop()
    finally:
        if pg is not None and pg.port:
            pg.stop()
    (RESULTS / "search-latest.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "search-latest.md").write_text(markdown(results))
    print(f"\nwritten: {RESULTS / 'search-latest.json'} and {RESULTS / 'search-latest.md'}")


if __name__ == "__main__":
    main()
