"""Running the MLLP listener and the inbox worker together, in `sharedcare mllp` or beside the web
app in `sharedcare serve` (when SHAREDCARE_MLLP_PORT is set)."""

from __future__ import annotations

import asyncio
import logging
import ssl

from sharedcare.errors import ConfigurationError
from sharedcare.ingest import sources
from sharedcare.ingest.hl7v2 import ack, mllp
from sharedcare.ingest.hl7v2.message import APPLICATION_INTERNAL_ERROR, ParseError
from sharedcare.ingest.inbox import Inbox
from sharedcare.settings import Settings

log = logging.getLogger("sharedcare.mllp")


def tls_for(settings: Settings, host: str) -> ssl.SSLContext | None:
    """The listener's TLS, when configured. The development relaxations are refused, and so is plain
    TCP, on any address beyond loopback."""
    configured = [settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_tls_client_ca]
    if any(configured) and not all(configured):
        raise ConfigurationError("MLLP over TLS needs SHAREDCARE_MLLP_TLS_CERT, _TLS_KEY and _TLS_CLIENT_CA together")
    if not mllp.is_loopback(host):
        if settings.mllp_allow_plain_loopback or settings.auto_register_sources:
            raise ConfigurationError("SHAREDCARE_MLLP_ALLOW_PLAIN_LOOPBACK and SHAREDCARE_AUTO_REGISTER_SOURCES are "
                                     "for development on loopback only; the listener listens beyond it")
        if not all(configured):
            raise ConfigurationError("an MLLP listener beyond loopback must use TLS with client certificates")
    cert, key, client_ca = configured
    if cert is not None and key is not None and client_ca is not None:
        return mllp.server_tls(cert, key, client_ca)
    return None


def handler(inbox: Inbox) -> mllp.Handler:
    async def handle(payload: bytes, peer: sources.Peer) -> str | None:
        try:
            return (await inbox.receive_async(payload, peer)).ack
        except Exception as exc:  # whatever went wrong, the sender is told to send it again: nothing was stored
            log.error("mllp: a message could not be received (%s)", type(exc).__name__)
            return ack.ack(None, ack.ERROR, ParseError("the message could not be received: send it again",
                                                       APPLICATION_INTERNAL_ERROR))
    return handle


async def run(inbox: Inbox, settings: Settings, host: str, port: int, stop: asyncio.Event,
              started: asyncio.Future[int] | None = None, *, worker: bool = True) -> None:
    """Listen, and process unless `worker` is False, until `stop` is set; `started` gets the port once
    listening."""
    tls = tls_for(settings, host)
    listener = mllp.Listener(handler(inbox), max_bytes=settings.max_mllp_message_bytes)
    bound = await listener.start(host, port, tls)
    log.info("mllp: listening on %s:%d (%s)", host, bound, "TLS" if tls else "plain, loopback only")
    if started is not None:
        started.set_result(bound)
    processing = asyncio.create_task(inbox.run(stop)) if worker else None
    try:
        await stop.wait()
    finally:
        await listener.close()
        if processing is not None:
            await processing
