"""HL7 v2 over MLLP: `python -m bench.ingest [--people N] [--backend sqlite|postgresql] [--connections C]`.

A synthetic London of N people is generated and its hospital and mental health feeds split into ADT
and ORU^R01 messages (the trusts registered as sources). Then, side by side, each on core 0 with the
load generator on core 1:

- `echo`: an MLLP listener of the same stack (bench/mllp_echo.py: the same framing and asyncio
  server) that answers every message with a fixed AA and stores nothing: the floor of the transport;
- `sharedcare mllp`: each message parsed, checked against the registry and committed to the inbox
  before its AA (the durable-commit ACK), with the inbox worker processing behind it.

C connections each send their share of the messages one at a time, waiting for each ACK, as MLLP
senders do. Reported: messages acknowledged a second (ADT and ORU separately) and the ratio to the echo
server; then how long the worker took to write every message into the store (messages and resources a
second), and the time from a message's ACK until its Patient is searchable (p50/p95, sampled), against
the issue's goals (ADT >= 500/s, ORU >= 200/s, searchable within 5 s at p95).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.run import RESULTS, ROOT, free_port, pinned_pg_database
from sharedcare.ingest.hl7v2.mllp import END, START, frame


def messages(people: int, workdir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """ADT and ORU messages of a synthetic London's trusts, in feed order, and the trusts' codes."""
    from sharedcare import synth
    from sharedcare.ingest.hl7v2.message import parse, split_batch

    synth.generate(people, 11, date(2026, 4, 1), workdir / "london")
    out: dict[str, list[str]] = {"ADT": [], "ORU": []}
    trusts = []
    for path in sorted((workdir / "london" / "feeds").glob("*/*.hl7")):
        trusts.append(path.stem)
        for text in split_batch(path.read_text(encoding="utf-8")).messages:
            kind = parse(text).message_type
            if kind in out:
                out[kind].append(text)
    return out, trusts


def prepare(database_url: str, trusts: list[str]) -> None:
    from sharedcare.ingest import sources
    from sharedcare.storage import database
    from sharedcare.storage.inbox_store import Source

    engine = database.make_engine(database_url)
    try:
        database.upgrade(engine)
        for ods in trusts:
            sources.register(engine, Source(ods, ods, f"Trust {ods}", ("hl7v2",)))
    finally:
        engine.dispose()


class Listener:
    """A listener process on core 0: `sharedcare mllp`, or the echo server."""

    def __init__(self, database_url: str, log: Path, *, echo: bool = False, worker: str = "listener") -> None:
        self.port = free_port()
        args = ([sys.executable, "-m", "bench.mllp_echo", str(self.port)] if echo else
                [sys.executable, "-m", "sharedcare.cli", "mllp", "--port", str(self.port),
                 *(["--no-worker"] if worker != "listener" else [])])
        env = {**os.environ, "SHAREDCARE_DATABASE_URL": database_url, "SHAREDCARE_MLLP_ALLOW_PLAIN_LOOPBACK": "1",
               "SHAREDCARE_LOG_LEVEL": "WARNING"}
        self.log = log.open("ab")
        self.proc = subprocess.Popen(["taskset", "-c", "0", *args], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.env = env
        self.worker: subprocess.Popen[bytes] | None = None
        deadline = time.monotonic() + 60
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"the listener did not start (see {log})")
        if worker == "separate":
            self.start_worker()

    def start_worker(self) -> None:
        """The inbox worker in a process of its own, on core 1 with the load generator."""
        self.worker = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "sharedcare.cli", "inbox", "work"],
                                       cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def close(self) -> None:
        for proc in (self.proc, self.worker):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
        self.log.close()


async def _sender(port: int, batch: list[str], acked: list[float], codes: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for text in batch:
            writer.write(frame(text))
            await writer.drain()
            data = await reader.readuntil(END + b"\r")
            reply = data[data.find(START) + 1:-2].decode("utf-8", "replace")
            code = next((s.split("|")[1] for s in reply.split("\r") if s.startswith("MSA")), "?")
            codes[code] = codes.get(code, 0) + 1
            acked.append(time.perf_counter())
    finally:
        writer.close()


def send(port: int, texts: list[str], connections: int) -> dict[str, Any]:
    """Send `texts` over `connections` connections (round robin by position); rate and ACK codes."""
    acked: list[float] = []
    codes: dict[str, int] = {}

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(_sender(port, texts[i::connections], acked, codes) for i in range(connections)))
        return time.perf_counter() - started

    seconds = asyncio.run(main())
    return {"messages": len(texts), "seconds": round(seconds, 2), "per_s": round(len(texts) / seconds), "codes": codes}


def drained(database_url: str, timeout_s: float = 3600) -> float:
    """Wait until the inbox has nothing pending; when that was (perf_counter)."""
    from sharedcare.storage import database, inbox_store

    engine = database.make_engine(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if inbox_store.counts(engine).get(inbox_store.PENDING, 0) == 0:
                return time.perf_counter()
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise SystemExit("the inbox did not drain in time")


def store_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from sharedcare.storage import database
    from sharedcare.storage.tables import inbox_message, resource

    engine = database.make_engine(database_url)
    try:
        with engine.connect() as conn:
            resources = conn.execute(select(func.count()).select_from(resource)).scalar_one()
            by_status = dict(conn.execute(select(inbox_message.c.status, func.count()).group_by(
                inbox_message.c.status)).all())
    finally:
        engine.dispose()
    return {"resources": resources, **{str(k): v for k, v in by_status.items()}}


PACED = 200  # ADT messages sent at a steady rate, for the time from ACK to searchable
PACE_PER_S = 20


def visibility(port: int, database_url: str, texts: list[str]) -> dict[str, Any]:
    """Send `texts` one at a time at PACE_PER_S, noting when each was acknowledged; then the time from
    each ACK until the inbox row was done (committed with what it wrote: searchable from then)."""
    from datetime import UTC, datetime

    from sharedcare.ingest.hl7v2.message import parse
    from sharedcare.storage import database, inbox_store

    acked: dict[str, float] = {}

    async def main() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for text in texts:
                sent = time.perf_counter()
                writer.write(frame(text))
                await writer.drain()
                await reader.readuntil(END + b"\r")
                acked[parse(text).control_id] = time.time()
                await asyncio.sleep(max(0.0, 1 / PACE_PER_S - (time.perf_counter() - sent)))
        finally:
            writer.close()

    asyncio.run(main())
    drained(database_url)
    engine = database.make_engine(database_url)
    try:
        rows = {m.message_key: m for m in inbox_store.messages(engine, limit=len(texts) + 1000, payload=False)}
    finally:
        engine.dispose()
    waits = sorted(datetime.fromisoformat(rows[k].processed).replace(tzinfo=UTC).timestamp() - t  # type: ignore[arg-type]
                   for k, t in acked.items() if k in rows and rows[k].processed)
    pick = lambda q: round(waits[min(len(waits) - 1, int(q * len(waits)))] * 1000)  # noqa: E731
    return {"messages": len(waits), "rate_per_s": PACE_PER_S, "p50_ms": pick(0.5), "p95_ms": pick(0.95),
            "max_ms": round(waits[-1] * 1000)}


def bench(people: int, workdir: Path, connections: int, database_url: str | None = None, *,
          worker: str = "listener") -> dict[str, Any]:
    texts, trusts = messages(people, workdir)
    url = database_url or f"sqlite:///{workdir / 'ingest.db'}"
    prepare(url, trusts)
    result: dict[str, Any] = {"people": people, "connections": connections,
                              "worker": worker}
    echo = Listener(url, workdir / "echo.log", echo=True)
    try:
        result["echo"] = {kind: send(echo.port, texts[kind], connections) for kind in texts}
    finally:
        echo.close()
    paced = texts["ADT"][-PACED:]  # kept back for the latency phase
    texts["ADT"] = texts["ADT"][:-PACED]
    listener = Listener(url, workdir / "mllp.log", worker=worker)
    try:
        started = time.perf_counter()
        result["mllp"] = {}
        for kind in ("ADT", "ORU"):
            result["mllp"][kind] = send(listener.port, texts[kind], connections)
        acked = time.perf_counter()
        if worker == "after":  # nothing processed while receiving: the worker starts once all are acknowledged
            listener.start_worker()
            started = acked
        done = drained(url)
        total = len(texts["ADT"]) + len(texts["ORU"])
        counts = store_counts(url)
        result["processing"] = {
            "messages": total, "seconds_after_last_ack": round(done - acked, 1),
            "seconds_from_first_message": round(done - started, 1),
            "messages_per_s": round(total / (done - started)), "resources": counts["resources"],
            "resources_per_s": round(counts["resources"] / (done - started)), "inbox": counts}
        result["visible"] = visibility(listener.port, url, paced)
    finally:
        listener.close()
    for kind in ("ADT", "ORU"):
        result["mllp"][kind]["ratio_to_echo"] = round(result["mllp"][kind]["per_s"] / result["echo"][kind]["per_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--worker", choices=("listener", "separate", "after"), default="listener",
                        help="where the inbox worker runs: in the listener's process (core 0), in a process of its "
                             "own (core 1), or (after) only once every message is acknowledged, to see receiving alone")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the load generator on core 1; the listeners run on core 0
    with tempfile.TemporaryDirectory(prefix="sharedcare-bench-ingest-") as tmp:
        if args.backend == "postgresql":
            with pinned_pg_database("ingest") as (url, version):
                result = bench(args.people, Path(tmp), args.connections, url,
                               worker=args.worker) | {"backend": version}
        else:
            result = bench(args.people, Path(tmp), args.connections,
                           worker=args.worker) | {"backend": "SQLite"}
    for kind, goal in (("ADT", 500), ("ORU", 200)):
        m, e = result["mllp"][kind], result["echo"][kind]
        print(f"MLLP {kind} [{result['backend']}, {args.connections} connections, worker: {result['worker']}]: "
              f"{m['per_s']}/s acknowledged "
              f"after the inbox commit (goal >= {goal}/s), echo server {e['per_s']}/s, ratio {m['ratio_to_echo']}; "
              f"acks {m['codes']}")
    p = result["processing"]
    print(f"processing: {p['messages']} messages written to the store {p['seconds_after_last_ack']} s after the last "
          f"ACK ({p['messages_per_s']} messages/s, {p['resources_per_s']} resources/s from the first message); "
          f"inbox {p['inbox']}")
    v = result["visible"]
    print(f"searchable after ACK at {v['rate_per_s']} messages/s: p50 {v['p50_ms']} ms, p95 {v['p95_ms']} ms, "
          f"max {v['max_ms']} ms (goal p95 <= 5,000 ms)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
