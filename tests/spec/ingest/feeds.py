"""Small HL7 v2 messages and an inbox on the test store, for the ingestion tests."""

from __future__ import annotations

from typing import Any

from sharedcare.app import Services
from sharedcare.ingest import sources
from sharedcare.ingest.inbox import Inbox
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from sharedcare.storage.inbox_store import Source

LOOPBACK = sources.Peer("127.0.0.1", True, None)
ELSEWHERE = sources.Peer("192.0.2.10", False, None)
NHS = "https://fhir.nhs.uk/Id/nhs-number"
MRN = "https://sharedcare.example/Id/hl7v2/RJ7/RJ7"


def inbox(store: Services, settings: Settings, **changes: Any) -> Inbox:
    relaxed = settings.model_copy(update={"mllp_allow_plain_loopback": True, "inbox_retry_seconds": (0.0, 0.0, 0.0),
                                          **changes})
    return Inbox(store.repo, relaxed)


def register(store: Services, source_id: str = "RJ7", ods: str = "RJ7", **extra: Any) -> Source:
    return sources.register(store.engine, Source(source_id, ods, f"Trust {ods}", ("hl7v2",), **extra))


def adt(trigger: str, control: str, *, when: str = "20250727141000", mrn: str = "RJ70000002",
        family: str = "Ibrahim", facility: str = "RJ7", visit: str = "RJ7V000000001", patient_class: str = "I",
        discharged: str = "", version: str = "2.4", processing: str = "P", structure: str = "ADT_A01",
        accept_ack: str = "") -> str:
    pv1 = (f"PV1|1|{patient_class}|Ward 4^^^St George's Hospital|E|||||||||||||||{visit}|||||||||||||||||||||||||"
           f"20250727141000|{discharged}")
    msh = (f"MSH|^~\\&|PAS|{facility}|SHAREDCARE|LONDON|{when}||ADT^{trigger}^{structure}|{control}|{processing}|"
           f"{version}|||{accept_ack}||GBR|UNICODE UTF-8")
    return "\r".join([
        msh, f"EVN|{trigger}|{when}||||{when}",
        f"PID|1||{mrn}^^^RJ7^MR~9625315403^^^NHS^NH||{family}^Hassan^^^^^L||19660111|M|||^^London^^NW7 3QL^GB^H",
        pv1]) + "\r"


def msa(ack_text: str) -> list[str]:
    """The MSA fields of an acknowledgement."""
    line = next(s for s in ack_text.split("\r") if s.startswith("MSA"))
    return line.split("|")


def err(ack_text: str) -> list[str] | None:
    line = next((s for s in ack_text.split("\r") if s.startswith("ERR")), None)
    return line.split("|") if line else None


def stored(store: Services) -> list[inbox_store.Message]:
    return inbox_store.messages(store.engine, limit=10_000)
