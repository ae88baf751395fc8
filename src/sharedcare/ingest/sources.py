"""The source registry: who may send, how they prove it, and whether a message is theirs.

A source is one organisation's sending system: its ODS code (HL7 MSH-4, and `meta.source` on what it
writes), the application name it sends as (MSH-3; none means any of the organisation's systems), the
feeds it uses, the TLS client certificate bound to it (its SHA-256 fingerprint), the SMART system
client its FHIR pushes use, how often it is expected to send, and the local code systems it uses.

A feed writes as its source's system (`system_caller(organisation=ods)`): it may change only what that
source wrote, and finds only its own records when it looks a patient up, so a source writes only
about the patients it sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from sharedcare.access.context import Caller
from sharedcare.errors import Forbidden
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import FEEDS, Source

_ODS = re.compile(r"^[A-Z0-9]{3,10}$")
_SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


class InvalidSource(ValueError):
    """A registration that cannot be accepted; the message says which part and why."""


class Refused(Exception):
    """A message from a sender that may not send it: the reason (written by us, quoting nothing)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(value: str) -> str:
    """A certificate fingerprint as stored: 64 lower-case hex digits (colons and case ignored)."""
    text = value.replace(":", "").strip().lower()
    if not _FINGERPRINT.fullmatch(text):
        raise InvalidSource("a certificate fingerprint is the SHA-256 of the certificate: 64 hexadecimal digits")
    return text


def check(source: Source) -> Source:
    if not _SOURCE_ID.fullmatch(source.source_id):
        raise InvalidSource("a source id is 1-64 letters, digits, dots, hyphens or underscores")
    if source.source_id == inbox_store.NODE_SOURCE:
        raise InvalidSource(f"the source id {inbox_store.NODE_SOURCE!r} is the node's own (its operator's loads)")
    if not _ODS.fullmatch(source.ods):
        raise InvalidSource("an ODS code is 3-10 upper-case letters and digits")
    if not source.name.strip():
        raise InvalidSource("a source needs a name")
    unknown = [f for f in source.feeds if f not in FEEDS]
    if unknown or not source.feeds:
        raise InvalidSource(f"feeds are one or more of: {', '.join(FEEDS)}")
    if source.expected_minutes is not None and source.expected_minutes < 1:
        raise InvalidSource("the expected interval is a whole number of minutes, at least 1")
    if source.status not in inbox_store.SOURCE_STATUSES:
        raise InvalidSource(f"a source's status is one of: {', '.join(inbox_store.SOURCE_STATUSES)}")
    return source


def register(engine: Engine, source: Source) -> Source:
    """Register a source (InvalidSource, or SourceExists for a taken id)."""
    return inbox_store.add_source(engine, check(source))


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection: its address, whether it is a loopback address, and
    the SHA-256 of the TLS client certificate it presented (None over plain TCP)."""

    address: str
    loopback: bool
    cert_sha256: str | None
    trusted: bool = False  # files put in by the node's operator (`sharedcare ingest`): no transport to check
    source_id: str | None = None  # the one source it may speak for (a drop folder's): any other is refused


def identify(engine: Engine, ods: str, system: str | None, feed: str, peer: Peer, *,
             allow_plain_loopback: bool, auto_register: bool,
             find: Callable[[Engine, str, str | None], Source | None] = inbox_store.find_source) -> Source:
    """The registered source a message from `peer` says it comes from (MSH-4 `ods`, MSH-3 `system`),
    if the peer may speak for it; else Refused.

    A source with a certificate bound to it accepts only connections presenting that certificate.
    Plain connections are accepted only from loopback addresses, and only where the development
    setting allows them. An unknown sender is refused, or (development setting) registered for review."""
    if peer.cert_sha256 is None and not peer.trusted and not (allow_plain_loopback and peer.loopback):
        raise Refused("a feed must connect over TLS with its client certificate")
    if not ods:
        raise Refused("MSH-4 names no sending facility")
    source = find(engine, ods, system)
    if peer.source_id is not None and (source is None or source.source_id != peer.source_id):
        raise Refused("MSH-4 (and MSH-3) name a source other than the one whose folder the file is in")
    if source is None:
        if not auto_register or not _ODS.fullmatch(ods.upper()):
            raise Refused("the sending facility is not a registered source")
        slug = re.sub(r"[^A-Za-z0-9._-]", "-", f"{ods.upper()}.{system}" if system else ods.upper())[:64]
        try:
            source = register(engine, Source(slug, ods.upper(), f"{ods.upper()} (registered on first contact)",
                                             (feed,), system=system or None, status="review"))
        except inbox_store.SourceExists:
            found = inbox_store.get_source(engine, slug)
            if found is None:
                raise Refused("the sending facility is not a registered source") from None
            source = found
    if not source.active:
        raise Refused("the source is disabled")
    if feed not in source.feeds:
        raise Refused(f"the source is not registered to send {feed}")
    if peer.trusted:
        return source
    if source.cert_sha256 is not None and peer.cert_sha256 != source.cert_sha256:
        raise Refused("the client certificate is not the one registered for this source")
    if source.cert_sha256 is None and peer.cert_sha256 is not None:
        raise Refused("no client certificate is registered for this source")
    return source


def of_client(engine: Engine, caller: Caller) -> Source | None:
    """The registered source whose SMART system client is calling (whatever its status), if any; a
    client acting for another organisation than its source's is refused."""
    if caller.kind != "system" or caller.client_id is None:
        return None
    source = inbox_store.source_for_client(engine, caller.client_id)
    if source is not None and caller.organisation is not None and caller.organisation != source.ods:
        raise Forbidden("the client acts for another organisation than its source")
    return source
