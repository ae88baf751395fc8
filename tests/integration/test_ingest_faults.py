"""Ingestion under faults (security cases CF2 and CF3): a listener killed with SIGKILL between
receiving and storing, or between storing and acknowledging, loses and duplicates nothing; a
database outage means no positive acknowledgement, and an orderly drain afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sharedcare.app import Services, open_services
from sharedcare.ingest import sources
from sharedcare.ingest.hl7v2 import mllp
from sharedcare.ingest.inbox import Inbox, Unavailable
from sharedcare.settings import Settings
from sharedcare.storage import database, inbox_store
from sharedcare.storage.inbox_store import Source
from tests.spec.ingest.feeds import LOOPBACK, adt, msa, register
from tests.support.live_server import free_port
from tests.support.postgres import PostgresServer


def _listener(database_url: str, port: int, log: Path, crash_at: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "SHAREDCARE_DATABASE_URL": database_url, "SHAREDCARE_MLLP_ALLOW_PLAIN_LOOPBACK": "1",
           "CRASH_AT": crash_at}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.mllp_crash", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the listener exited early; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the listener did not start")


def _send(port: int, message: str) -> str | None:
    try:
        return asyncio.run(mllp.send("127.0.0.1", port, [message], timeout_s=20))[0]
    except (asyncio.IncompleteReadError, ConnectionError):
        return None  # the connection went with the process: no acknowledgement


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["before-store", "after-store"])
def test_cf2_a_listener_killed_mid_message_loses_and_duplicates_nothing(
        store: Services, settings: Settings, tmp_path: Path, crash_at: str) -> None:
    register(store)
    port = free_port()
    crashing = _listener(settings.database_url, port, tmp_path / "crash.log", crash_at)
    assert _send(port, adt("A01", "CF2-1")) is None  # killed: the sender had no ACK
    crashing.wait(30)
    assert crashing.returncode == -9
    stored_before = len(inbox_store.messages(store.engine))
    assert stored_before == (0 if crash_at == "before-store" else 1)
    port = free_port()
    healthy = _listener(settings.database_url, port, tmp_path / "healthy.log")
    try:
        reply = _send(port, adt("A01", "CF2-1"))  # the sender sends it again, as MLLP senders do
        assert reply is not None
        assert msa(reply)[1] == "AA"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = inbox_store.messages(store.engine)
            if rows and all(m.status == "done" for m in rows):
                break
            time.sleep(0.1)
        assert [(m.message_key, m.status) for m in inbox_store.messages(store.engine)] == [("CF2-1", "done")]
    finally:
        healthy.terminate()
        healthy.wait(30)


@pytest.mark.slow
def test_cf3_while_the_database_is_down_nothing_is_acknowledged_and_the_backlog_drains_after() -> None:
    pg = PostgresServer().start()
    try:
        url = pg.create_database("outage")
        engine = database.make_engine(url)
        database.upgrade(engine)
        engine.dispose()
        settings = Settings(database_url=url, base_url="http://testserver/fhir", gc_freeze=False)
        svc = open_services(settings)
        try:
            sources.register(svc.engine, Source("RJ7", "RJ7", "Trust RJ7", ("hl7v2",)))
            box = Inbox(svc.repo, settings.model_copy(update={"mllp_allow_plain_loopback": True}))
            first = box.receive_hl7(adt("A01", "O1").encode(), LOOPBACK)
            assert first is not None
            assert msa(first)[1] == "AA"
            pg.pause()
            down = box.receive_hl7(adt("A08", "O2", when="20250728100000").encode(), LOOPBACK)
            assert down is not None
            assert msa(down)[1] == "AE"
            with pytest.raises(Unavailable):
                box.process_due()
            pg.resume()
            deadline = time.monotonic() + 30
            again = None
            while time.monotonic() < deadline:  # the pool's broken connections are replaced
                again = box.receive_hl7(adt("A08", "O2", when="20250728100000").encode(), LOOPBACK)
                if again is not None and msa(again)[1] == "AA":
                    break
                time.sleep(0.2)
            assert again is not None
            assert msa(again)[1] == "AA"
            done = []
            while time.monotonic() < deadline and len(done) < 2:
                try:
                    done += [o for o in box.drain() if o.status == "done"]
                except Unavailable:
                    time.sleep(0.2)
            rows = inbox_store.messages(svc.engine)
            assert sorted((m.message_key, m.status) for m in rows) == [("O1", "done"), ("O2", "done")]
        finally:
            svc.committer.close()
            svc.engine.dispose()
    finally:
        pg.stop()
