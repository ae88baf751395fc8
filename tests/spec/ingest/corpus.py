"""The conformance corpus's HL7 v2 messages by type (../shared/conformance, read where they are, never
copied), as pytest params for the mapping specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sharedcare.fhir.validation import validate_or_raise
from sharedcare.ingest.hl7v2 import mapping
from sharedcare.ingest.hl7v2.message import Message, ParseError, parse
from tests.support.conformance import conformance_files

FOLDER = "hl7v2/microsoft-fhir-converter/data/SampleData/Hl7v2"
# HL7 table 0357, the codes a refusal may carry in ERR-3.
HL7_ERROR_CODES = frozenset({"100", "101", "102", "103", "200", "201", "202", "203", "204", "205", "206", "207"})


def messages_of(kind: str, trigger: str) -> list[Any]:
    """Params for the corpus's messages of one type and trigger (the param that skips when the corpus
    is missing is kept, so a missing corpus is a skip, or under CI a failure)."""
    out = []
    for param in conformance_files(FOLDER, "*.hl7"):
        path = param.values[0]
        if not isinstance(path, Path) or not path.is_file():
            out.append(param)
            continue
        try:
            msg = parse(path.read_text(encoding="utf-8", errors="replace"))
        except ParseError:
            continue
        if (msg.message_type, msg.trigger) == (kind, trigger):
            out.append(param)
    return out


def mapped_or_refused(path: Path) -> tuple[Message, list[str] | None]:
    """A corpus message mapped as a conformance source's (`X99`): the message, and the resource types of
    its bundle in order, having checked that the first is the Patient and that every resource is valid;
    or None for the types when the mapper refused the message, having checked that it refused with one
    of HL7_ERROR_CODES (the code for the ACK's ERR segment)."""
    msg = parse(path.read_text(encoding="utf-8"))
    refused: ParseError | None = None
    try:
        got = mapping.map_message(msg, mapping.Context("conformance", "X99"))
    except ParseError as exc:
        refused = exc
    if refused is not None:
        assert refused.code in HL7_ERROR_CODES, refused.code
        return msg, None
    kinds = [e["resource"]["resourceType"] for e in got.bundle["entry"]]
    assert kinds[0] == "Patient", kinds
    for entry in got.bundle["entry"]:
        validate_or_raise(entry["resource"])
    return msg, kinds
