"""The master patient index's online match: `python -m bench.mpi [--people N]`.

A synthetic London of N people is generated, and every source record of it is stored as a Patient (the
GP's, each hospital's, the ambulance service's, 111's, the councils'), as the feeds will store them.
Then, side by side on the same server:

- `POST /fhir/Patient/$match` with the demographics of one of 500 sampled source records (its
  blocking searches, scoring and decision), and
- `GET /fhir/Patient?identifier=...` for the same records' NHS numbers (one indexed search), the
  baseline of the same stack.

It also reports how fast the Patients were stored with the index linking each one, and how the index
linked them against the synthetic truth (pairwise precision and recall, share of records reviewed).

`--batch`: batch deduplication instead. Every record is stored with linking deferred, then all are
linked in one pass (`sharedcare mpi rebuild`), timed beside the time it took to store them.

wrk at one connection (the latency of one record's match, not throughput), server on core 0; p50, p99
and requests a second.
The goal (issue 6) is a p99 of at most 20 ms for one record's online match.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.run import RESULTS, Server, lua_headers, pinned_pg_database, write_batches, wrk
from sharedcare.mpi.evaluate import pairwise, synth_patients

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def load(database_url: str, bodies: list[dict[str, Any]], *, defer: bool = False) -> tuple[list[str], float]:
    """Store every Patient, each linked by the index as it is written (with `defer`, all linked in one
    pass at the end, as `sharedcare load --defer-linking` does); their ids and the seconds taken."""
    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services
    from sharedcare.settings import Settings
    from sharedcare.storage import mpi_store

    svc = open_services(Settings(database_url=database_url))
    try:
        svc.repo.link_patients = not defer
        started = time.perf_counter()
        ids = write_batches(svc, system_caller(), len(bodies), lambda unit, i: unit.create(bodies[i]).stored.res_id)
        if defer:
            mpi_store.rebuild(svc.engine, node="bench")
        return ids, time.perf_counter() - started
    finally:
        svc.committer.close()
        svc.engine.dispose()


def lua_posts(path: str, bodies: list[str], workdir: Path, headers: dict[str, str], name: str) -> Path:
    script = workdir / f"{name}.lua"
    quoted = ",".join("[==[" + b + "]==]" for b in bodies)
    script.write_text(lua_headers({**headers, "Content-Type": "application/fhir+json"}) +
                      f"bodies = {{{quoted}}}\n"
                      "request = function()\n"
                      f'  return wrk.format("POST", "{path}", nil, bodies[math.random(#bodies)])\nend\n')
    return script


def lua_gets(paths: list[str], workdir: Path, headers: dict[str, str], name: str) -> Path:
    script = workdir / f"{name}.lua"
    script.write_text(lua_headers(headers) + "paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
                      "request = function()\n  return wrk.format(\"GET\", paths[math.random(#paths)])\nend\n")
    return script


def index_quality(database_url: str, ids: list[str], truth: list[str]) -> dict[str, Any]:
    """How the index linked the stored Patients, against the synthetic truth: pairwise precision and
    recall of its persons, and the share of records with an open review."""
    from sqlalchemy import func, select

    from sharedcare.storage import database
    from sharedcare.storage.tables import mpi_link, mpi_review

    engine = database.make_engine(database_url)
    try:
        with engine.connect() as conn:
            person = dict(conn.execute(select(mpi_link.c.res_id, mpi_link.c.person_id)).all())
            reviewed = conn.execute(select(func.count(func.distinct(mpi_review.c.res_id)))
                                    .where(mpi_review.c.status == "open")).scalar_one()
    finally:
        engine.dispose()
    figures, persons = pairwise((person[i], t) for i, t in zip(ids, truth, strict=True))
    return {"persons": persons, "linked_pairs": figures.linked, "true_pairs": figures.true_pairs,
            "precision": round(figures.precision, 5), "recall": round(figures.recall, 5),
            "review_share": round(reviewed / len(ids), 4)}


def bench(people: int, workdir: Path, *, seed: int = 5, database_url: str | None = None,
          defer: bool = False) -> dict[str, Any]:
    from sharedcare import synth

    synth.generate(people, seed, date(2026, 4, 1), workdir / "london")
    records = synth_patients(workdir / "london" / "truth")
    bodies, truth = [b for b, _ in records], [t for _, t in records]
    url = database_url or f"sqlite:///{workdir / 'mpi.db'}"
    ids, seconds = load(url, bodies, defer=defer)
    quality = index_quality(url, ids, truth) | {"load_per_s": round(len(ids) / seconds), "deferred": defer}
    if url.startswith("postgresql"):  # statistics now, not whenever autovacuum comes round
        from sharedcare.storage import database

        engine = database.make_engine(url)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        finally:
            engine.dispose()
    sample = random.Random(seed).sample([b for b in bodies if any(i["system"] == NHS for i in b["identifier"])],
                                        min(500, len(bodies)))
    posts = [json.dumps({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
        k: v for k, v in b.items() if k != "identifier"} | {"identifier": [i for i in b["identifier"]
                                                                           if i["system"] == NHS]}}]})
             for b in sample]
    gets = [f"/fhir/Patient?identifier={NHS}|{next(i['value'] for i in b['identifier'] if i['system'] == NHS)}"
            for b in sample]
    with Server(url, workdir / "server.log", app="sharedcare.app:create_app", factory=True) as srv:
        match_script = lua_posts("/fhir/Patient/$match", posts, workdir, srv.headers, "match")
        search_script = lua_gets(gets, workdir, srv.headers, "search")
        wrk(f"{srv.base}/", match_script, connections=1, duration=3)  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {"match": [], "search": []}
        for order in (("match", "search"), ("search", "match")):
            for name in order:
                runs[name].append(wrk(f"{srv.base}/", match_script if name == "match" else search_script,
                                      connections=1))
    best = {name: min(got, key=lambda r: r["p99_ms"]) for name, got in runs.items()}
    return {"people": people, "patients": len(bodies), "runs": runs, "best": best, "index": quality,
            "p99_ratio": round(best["match"]["p99_ms"] / best["search"]["p99_ms"], 2)}


def batch(people: int, workdir: Path, *, seed: int = 5, database_url: str | None = None) -> dict[str, Any]:
    """Batch deduplication: every source record stored with linking deferred (`sharedcare load
    --defer-linking`), then linked in one pass (`mpi_store.rebuild`, what `sharedcare mpi rebuild`
    runs), timed; beside it, the same records stored with no index at all (the store's own floor)."""
    from sharedcare import synth
    from sharedcare.access.context import system_caller
    from sharedcare.app import open_services
    from sharedcare.settings import Settings
    from sharedcare.storage import mpi_store

    synth.generate(people, seed, date(2026, 4, 1), workdir / "london")
    records = synth_patients(workdir / "london" / "truth")
    bodies, truth = [b for b, _ in records], [t for _, t in records]
    url = database_url or f"sqlite:///{workdir / 'batch.db'}"
    svc = open_services(Settings(database_url=url))
    try:
        svc.repo.link_patients = False
        started = time.perf_counter()
        ids = write_batches(svc, system_caller(), len(bodies), lambda unit, i: unit.create(bodies[i]).stored.res_id)
        stored = time.perf_counter() - started
        started = time.perf_counter()
        linked = mpi_store.rebuild(svc.engine, node="bench")
        dedup = time.perf_counter() - started
    finally:
        svc.committer.close()
        svc.engine.dispose()
    return {"people": people, "records": len(bodies), "linked": linked, "store_s": round(stored, 1),
            "dedup_s": round(dedup, 1), "dedup_per_s": round(linked / dedup),
            "ratio_to_store": round(dedup / stored, 2), "index": index_quality(url, ids, truth)}


def bench_pg(people: int, workdir: Path, *, defer: bool = False) -> dict[str, Any]:
    """`bench` on PostgreSQL (`bench.run.pinned_pg_database`)."""
    with pinned_pg_database("mpi") as (url, version):
        return bench(people, workdir, database_url=url, defer=defer) | {"backend": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000, help="people in the synthetic London")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--batch", action="store_true", help="time batch deduplication (store, then link all)")
    parser.add_argument("--defer", action="store_true",
                        help="load with linking deferred to one pass at the end (faster for large populations)")
    args = parser.parse_args()
    if args.batch:
        with tempfile.TemporaryDirectory(prefix="sharedcare-bench-mpi-") as tmp:
            if args.backend == "postgresql":
                with pinned_pg_database("mpi") as (url, _version):
                    done = batch(args.people, Path(tmp), database_url=url)
            else:
                done = batch(args.people, Path(tmp))
        q = done["index"]
        print(f"batch deduplication [{args.backend}, {done['people']:,} people]: {done['records']:,} records linked in "
              f"{done['dedup_s']} s ({done['dedup_per_s']:,}/s); storing them took {done['store_s']} s (ratio "
              f"{done['ratio_to_store']}); {q['persons']:,} persons, pairwise precision {q['precision']}, recall "
              f"{q['recall']}, open reviews for {q['review_share']:.1%} of records")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "mpi-batch.json").write_text(json.dumps(done, indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="sharedcare-bench-mpi-") as tmp:
        result = bench_pg(args.people, Path(tmp), defer=args.defer) if args.backend == "postgresql" \
            else bench(args.people, Path(tmp), defer=args.defer)
    m, s = result["best"]["match"], result["best"]["search"]
    print(f"Patient/$match [{result.get('backend', 'SQLite')}, {result['people']:,} people, "
          f"{result['patients']:,} Patients]: "
          f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, {m['rps']}/s one at a time (goal p99 <= 20 ms); "
          f"identifier search p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, {s['rps']}/s; "
          f"p99 ratio {result['p99_ratio']}")
    q = result["index"]
    print(f"index on load{' (linking deferred)' if q['deferred'] else ''}: {q['load_per_s']:,} Patients/s stored "
          f"and linked; {q['persons']:,} persons; "
          f"pairwise precision {q['precision']}, recall {q['recall']} against the truth; "
          f"open reviews for {q['review_share']:.1%} of records")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mpi.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
