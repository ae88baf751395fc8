"""The MLLP listener (HL7's Minimal Lower Layer Protocol, release 2): each message framed as
`<VT> message <FS><CR>`, answered on the same connection, one at a time and in order.

Robust against what real and hostile senders do: bytes outside a frame are dropped, a frame larger
than the limit closes the connection (nothing of it is stored), a connection idle too long is closed,
and whatever goes wrong with one message is answered (AE) or the connection closed; the listener itself
never stops. Over TLS the client certificate's SHA-256 fingerprint is handed to the inbox, which binds
it to the sending source (ingest/sources.identify).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from sharedcare.ingest.sources import Peer

log = logging.getLogger("sharedcare.mllp")

START, END, CR = b"\x0b", b"\x1c", b"\x0d"
Handler = Callable[[bytes, Peer], Awaitable[str | None]]


def frame(message: str) -> bytes:
    return START + message.encode("utf-8") + END + CR


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def server_tls(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS for the listener: its own certificate, and a client certificate required of every feed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _peer(writer: asyncio.StreamWriter) -> Peer:
    name = writer.get_extra_info("peername")
    address = str(name[0]) if isinstance(name, tuple) and name else ""
    cert_sha256 = None
    tls = writer.get_extra_info("ssl_object")
    if tls is not None:
        der = tls.getpeercert(binary_form=True)
        if der:
            cert_sha256 = hashlib.sha256(der).hexdigest()
    return Peer(address, is_loopback(address), cert_sha256)


class Listener:
    def __init__(self, handler: Handler, *, max_bytes: int = 8 * 1024 * 1024, idle_s: float = 300.0) -> None:
        self.handler = handler
        self.max_bytes = max_bytes
        self.idle_s = idle_s
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen; the port (useful when 0 asked for a free one)."""
        self.server = await asyncio.start_server(self._connection, host, port, ssl=tls, limit=2 ** 16)
        sock = self.server.sockets[0]
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer, _peer(writer))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # one connection's fault never stops the listener; the kind only
            log.error("mllp: a connection failed (%s)", type(exc).__name__)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        buffer = bytearray()
        while True:
            data = await asyncio.wait_for(reader.read(2 ** 16), self.idle_s)
            if not data:
                return
            buffer += data
            while True:
                start = buffer.find(START)
                if start == -1:
                    buffer.clear()  # bytes outside any frame
                    break
                if start:
                    del buffer[:start]
                end = buffer.find(END)
                if end == -1:
                    if len(buffer) > self.max_bytes:
                        log.warning("mllp: a frame over %d bytes from a peer; connection closed", self.max_bytes)
                        return
                    break
                payload = bytes(buffer[1:end])
                del buffer[:end + 1]
                if buffer[:1] == CR:
                    del buffer[:1]
                if len(payload) > self.max_bytes:
                    return
                reply = await self.handler(payload, peer)
                if reply is not None:
                    writer.write(frame(reply))
                    await writer.drain()


async def send(host: str, port: int, messages: list[str], *, tls: ssl.SSLContext | None = None,
               timeout_s: float = 30.0) -> list[str]:
    """A minimal MLLP client (for `sharedcare` tools and tests): send each message, wait for its
    acknowledgement, and return them."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), timeout_s)
    replies = []
    try:
        for message in messages:
            writer.write(frame(message))
            await writer.drain()
            data = await asyncio.wait_for(reader.readuntil(END + CR), timeout_s)
            replies.append(data[data.find(START) + 1:-2].decode("utf-8"))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return replies
