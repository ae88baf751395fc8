"""The MLLP listener over real sockets: framing, acknowledgement after the commit, one connection's
faults never reaching another, and the listener surviving whatever it is sent (IV7)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sharedcare.app import Services
from sharedcare.ingest import runner
from sharedcare.ingest.hl7v2 import mllp
from sharedcare.ingest.inbox import Inbox
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from tests.spec.ingest.feeds import adt, msa, register


class Running:
    def __init__(self, inbox: Inbox, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.port = 0
        ready = threading.Event()

        async def main() -> None:
            started: asyncio.Future[int] = self.loop.create_future()
            task = asyncio.create_task(runner.run(inbox, settings, "127.0.0.1", 0, self.stop, started))
            self.port = await started
            ready.set()
            await task

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def send(self, *messages: str) -> list[str]:
        return asyncio.run(mllp.send("127.0.0.1", self.port, list(messages)))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def listener(store: Services, settings: Settings) -> Iterator[Running]:
    register(store)
    relaxed = settings.model_copy(update={"mllp_allow_plain_loopback": True, "inbox_retry_seconds": (0.0,)})
    running = Running(Inbox(store.repo, relaxed), relaxed)
    yield running
    running.close()


def wait_done(store: Services, n: int, timeout: float = 10.0) -> list[inbox_store.Message]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = inbox_store.messages(store.engine)
        if len([m for m in rows if m.status == "done"]) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError("the inbox did not process the messages in time")


def test_messages_on_one_connection_are_acknowledged_in_order_and_processed(listener: Running,
                                                                            store: Services) -> None:
    replies = listener.send(adt("A01", "L1"), adt("A02", "L2", when="20250728093000"),
                            adt("A03", "L3", when="20250810161000", discharged="20250810161000"))
    assert [msa(r)[1:3] for r in replies] == [["AA", "L1"], ["AA", "L2"], ["AA", "L3"]]
    rows = wait_done(store, 3)
    assert {m.message_key for m in rows} == {"L1", "L2", "L3"}


def test_bytes_outside_frames_are_ignored_and_a_frame_may_arrive_in_pieces(listener: Running) -> None:
    raw = mllp.frame(adt("A01", "P1"))
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
        s.sendall(b"noise before the frame\r\n")
        for i in range(0, len(raw), 7):
            s.sendall(raw[i:i + 7])
            time.sleep(0.001)
        data = b""
        while not data.endswith(mllp.END + mllp.CR):
            data += s.recv(4096)
    assert msa(data[1:-2].decode())[1] == "AA"


def test_an_oversized_frame_closes_only_its_connection(store: Services, settings: Settings) -> None:
    register(store)
    small = settings.model_copy(update={"mllp_allow_plain_loopback": True, "max_mllp_message_bytes": 2048})
    running = Running(Inbox(store.repo, small), small)
    try:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as s:
            s.sendall(mllp.START + b"MSH|" + b"x" * 5000)
            assert s.recv(10) == b""  # closed, nothing answered
        assert msa(running.send(adt("A01", "OK1"))[0])[1] == "AA"
        assert [m.message_key for m in inbox_store.messages(store.engine)] == ["OK1"]
    finally:
        running.close()


def _mutations(seed: int) -> list[bytes]:
    """IV7: messages with fuzzed delimiters, missing or broken MSH, wrong versions, embedded CR LF,
    over-long fields and random bytes."""
    rng = random.Random(seed)
    base = adt("A01", "F0").encode()
    out = [b"", b"MSH", b"MSH|", b"MSH|^~\\&", b"\x00\xff\xfe" * 50, b"PID|1||x\r", base.replace(b"|", b"^"),
           base.replace(b"\r", b"\r\n"), base.replace(b"2.4", b"9.9"), base + b"ZZZ|" + b"y" * 100_000,
           base.replace(b"MSH|^~\\&", b"MSH|||||"), base.replace(b"ADT^A01", b""), b"\x0b" * 10]
    for _ in range(150):
        chars = bytearray(base)
        for _ in range(rng.randint(1, 20)):
            chars[rng.randrange(len(chars))] = rng.choice(b"|^~\\&\r\n\x0b\x1c\x00\xffAZ09")
        out.append(bytes(chars))
    return out


def test_iv7_mutated_and_malformed_messages_never_bring_the_listener_down(listener: Running,
                                                                          store: Services) -> None:
    answered = 0
    for i, payload in enumerate(_mutations(7)):
        body = payload.replace(mllp.START, b"").replace(mllp.END, b"")
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
            s.sendall(mllp.START + body + mllp.END + mllp.CR)
            s.settimeout(10)
            data = b""
            while not data.endswith(mllp.END + mllp.CR):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        if data:
            answered += 1
            code = msa(data[1:-2].decode("utf-8", "replace"))[1]
            assert code in ("AA", "AR", "AE", "CA", "CR", "CE"), f"mutation {i}"
    assert answered >= 150
    # and it still works
    assert msa(listener.send(adt("A01", "AFTER"))[0])[1] == "AA"
